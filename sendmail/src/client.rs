//! sendmail's side of the pipe to postdrop: start `postdrop -r`, open the
//! maildrop file, stream requests, and learn the final status. Requests
//! are gathered and written in large pieces, as CleanupClient does.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use libmail::cleanup::Request;
use libmail::ipc::{self, Decoder, IpcError};
use thiserror::Error;

use crate::protocol::DropStatus;

/// Requests are collected up to this size before they are written.
const SEND_AT: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum PipeError {
    #[error("unable to execute {} -r: {source}", path.display())]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    /// postdrop went away or answered nonsense: the message is not queued.
    #[error("queue file write error")]
    Lost(#[source] IpcError),
}

/// A running postdrop with an open maildrop file.
pub struct Postdrop {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    decoder: Decoder,
    pending: Vec<u8>,
    queue_id: String,
}

impl Postdrop {
    /// Starts `COMMAND_DIR/postdrop -r`, sends `open`, and waits for the
    /// queue ID. `config_dir` is passed on as MAIL_CONFIG.
    pub fn start(
        command_dir: &Path,
        config_dir: Option<&str>,
        verbose: u32,
        open: &Request,
    ) -> Result<Postdrop, PipeError> {
        let path = command_dir.join("postdrop");
        let mut command = Command::new(&path);
        command.arg("-r");
        for _ in 0..verbose {
            command.arg("-v");
        }
        if let Some(dir) = config_dir {
            command.env("MAIL_CONFIG", dir);
        }
        let spawned = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
        let mut child = spawned.map_err(|source| PipeError::Spawn { path, source })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(PipeError::Lost(IpcError::Closed));
        };
        let mut postdrop = Postdrop {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            decoder: Decoder::new(),
            pending: Vec::with_capacity(SEND_AT + 1024),
            queue_id: String::new(),
        };
        postdrop.send(open)?;
        postdrop.flush()?;
        let reply = postdrop.receive()?;
        postdrop.queue_id = reply.text("queue_id").map_err(PipeError::Lost)?.to_string();
        Ok(postdrop)
    }

    /// The maildrop file's queue ID.
    pub fn queue_id(&self) -> &str {
        &self.queue_id
    }

    pub fn send(&mut self, request: &Request) -> Result<(), PipeError> {
        let frame = request.to_message().encode().map_err(PipeError::Lost)?;
        self.pending.extend_from_slice(&frame);
        if self.pending.len() >= SEND_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Content in frames no larger than the send buffer.
    pub fn content(&mut self, bytes: &[u8]) -> Result<(), PipeError> {
        for piece in bytes.chunks(SEND_AT) {
            self.send(&Request::Content(piece.to_vec()))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), PipeError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(PipeError::Lost(IpcError::Closed));
        };
        stdin
            .write_all(&self.pending)
            .and_then(|_| stdin.flush())
            .map_err(|e| PipeError::Lost(e.into()))?;
        self.pending.clear();
        Ok(())
    }

    fn receive(&mut self) -> Result<ipc::Message, PipeError> {
        ipc::receive(&mut self.stdout, &mut self.decoder).map_err(PipeError::Lost)
    }

    /// Ends the message and returns postdrop's verdict, once postdrop has
    /// exited. Queued means on disk.
    pub fn finish(mut self) -> Result<DropStatus, PipeError> {
        self.send(&Request::End)?;
        self.flush()?;
        self.stdin = None;
        let status = self
            .receive()
            .and_then(|m| DropStatus::from_message(&m).map_err(PipeError::Lost));
        let exited = self.child.wait();
        let status = status?;
        match exited {
            Ok(code) if status == DropStatus::Queued && !code.success() => Err(PipeError::Lost(
                IpcError::Malformed("postdrop failed after reporting success"),
            )),
            Ok(_) => Ok(status),
            Err(err) => Err(PipeError::Lost(err.into())),
        }
    }

    /// Gives up: postdrop sees the input end without `end` and removes
    /// its file.
    pub fn abort(mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}
