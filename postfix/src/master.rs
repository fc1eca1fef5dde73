//! Talking to the master daemon: is it running (its pid file exists and
//! is locked), signals to it, waiting for it to go, and starting it
//! (detached, or in the foreground in place of this process).
//!
//! master is started with a clean environment, as Postfix's postfix
//! command gives it: only what import_environment lists, plus
//! MAIL_CONFIG and a fixed PATH.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use libmail::error::strerror;
use libmail::pid_file::running;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::instance::Instance;

/// Postfix's PATH for the programs it runs (ROOT_PATH in sys_defs.h).
const ROOT_PATH: &str = "/bin:/usr/bin:/sbin:/usr/sbin";

/// How long master may take to write and lock its pid file.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// How often the pid file is looked at while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Sends `signal` to master.
pub fn signal(pid: i32, signal: Signal) -> Result<(), String> {
    kill(Pid::from_raw(pid), signal).map_err(|errno| format!("kill {pid}: {}", errno.desc()))
}

/// Kills master and everything in its process group (`postfix stop`
/// when master does not go in time, as Postfix's kill -9 -PID).
pub fn kill_group(pid: i32) {
    let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Waits until master no longer holds its pid file, calling `tick` after
/// each second that it still does. True if it went within `limit`.
pub fn wait_gone(pid_file: &Path, limit: Duration, mut tick: impl FnMut()) -> Result<bool, String> {
    let start = Instant::now();
    let mut seconds = 0;
    while start.elapsed() < limit {
        if running(pid_file)?.is_none() {
            return Ok(true);
        }
        sleep(POLL);
        if start.elapsed().as_secs() > seconds {
            seconds = start.elapsed().as_secs();
            tick();
        }
    }
    Ok(running(pid_file)?.is_none())
}

/// The master command line with Postfix's environment.
fn master_command(instance: &Instance, extra: &[&str]) -> Result<Command, String> {
    let mut command = Command::new(instance.master_program());
    command.arg("-c").arg(&instance.config_dir).args(extra);
    command.env_clear();
    let imports = instance
        .config
        .list("import_environment")
        .map_err(|e| e.to_string())?;
    for item in imports {
        match item.split_once('=') {
            Some((name, value)) => {
                command.env(name, value);
            }
            None => {
                if let Some(value) = std::env::var_os(&item) {
                    command.env(&item, value);
                }
            }
        }
    }
    command.env("MAIL_CONFIG", &instance.config_dir);
    command.env("PATH", ROOT_PATH);
    if instance.verbose > 0 {
        command.env("MAIL_VERBOSE", "");
    }
    if instance.debug {
        command.env("MAIL_DEBUG", "");
    }
    Ok(command)
}

/// Runs master, which detaches and exits 0 once its pid file is written
/// and locked. When our standard error is a pipe, master's goes to a
/// scratch file that is copied to ours once the first process exits: the
/// detached master may keep the descriptor, and a pipe would keep whoever
/// reads it (`$(postfix start)`) waiting for master to exit.
pub fn start_detached(instance: &Instance) -> Result<(), String> {
    let scratch = if stderr_is_pipe() {
        Some(scratch_file()?)
    } else {
        None
    };
    let stderr = match &scratch {
        Some(file) => Stdio::from(
            file.try_clone()
                .map_err(|e| format!("dup: {}", strerror(&e)))?,
        ),
        None => Stdio::inherit(),
    };
    let mut child = master_command(instance, &[])?
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("{}: {}", instance.master_program().display(), strerror(&e)))?;
    let deadline = Instant::now() + STARTUP_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => sleep(POLL),
            Ok(None) | Err(_) => break None,
        }
    };
    if let Some(file) = scratch {
        copy_to_stderr(file);
    }
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("master exited with {status}")),
        None => Err(format!(
            "master did not report within {} seconds",
            STARTUP_LIMIT.as_secs()
        )),
    }
}

fn stderr_is_pipe() -> bool {
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    File::from(fd)
        .metadata()
        .is_ok_and(|meta| meta.file_type().is_fifo())
}

/// An unnamed file for master's standard error: created, then removed
/// at once (the descriptors keep it).
fn scratch_file() -> Result<File, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let name = format!("postfix-start.{}.{nanos}", std::process::id());
    let path = std::env::temp_dir().join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("create {}: {}", path.display(), strerror(&e)))?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

fn copy_to_stderr(mut scratch: File) {
    let mut text = Vec::new();
    if scratch
        .rewind()
        .and_then(|()| scratch.read_to_end(&mut text))
        .is_ok()
    {
        let _ = io::stderr().write_all(&text);
    }
}

/// Replaces this process with master in the foreground (`start-fg`,
/// master -s). Returns only on failure.
pub fn exec_foreground(instance: &Instance) -> String {
    match master_command(instance, &["-s"]) {
        Ok(mut command) => {
            let err = command.exec();
            format!(
                "{}: {}",
                instance.master_program().display(),
                strerror(&err)
            )
        }
        Err(reason) => reason,
    }
}
