//! postdrop's work: take the request stream that sendmail writes, check
//! it, and turn it into a file in the maildrop queue. Nothing becomes
//! visible unless the stream is whole: an open first, exactly one sender,
//! and an end; anything less leaves nothing behind.

use std::io::{Read, Write};

use libmail::cleanup::Request;
use libmail::ipc::{self, Decoder, IpcError};
use libmail::maildrop;
use libmail::queue::{Committed, Queue, QueueError, QueueWriter, MAILDROP};
use thiserror::Error;

use crate::protocol::{self, DropStatus};

#[derive(Debug, Error)]
pub enum DropError {
    #[error("malformed input: {0}")]
    Malformed(String),
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("message file too big")]
    TooBig,
    #[error("{0}")]
    Reply(IpcError),
}

impl DropError {
    /// The status sendmail is told.
    pub fn status(&self) -> DropStatus {
        match self {
            DropError::Malformed(text) => DropStatus::Bad(text.clone()),
            DropError::Queue(QueueError::Usage { what, .. }) => DropStatus::Bad(what.to_string()),
            DropError::Queue(err) => DropStatus::Write(err.to_string()),
            DropError::TooBig => DropStatus::Size,
            DropError::Reply(err) => DropStatus::Write(err.to_string()),
        }
    }
}

fn malformed(text: impl Into<String>) -> DropError {
    DropError::Malformed(text.into())
}

/// The maildrop file being written, and what the stream has said so far.
struct Drop {
    writer: QueueWriter,
    has_sender: bool,
    content_size: u64,
    /// message_size_limit; 0 for none.
    size_limit: u64,
    uid: u32,
}

/// Reads requests from `input` and writes the maildrop file; answers on
/// `reply`. Returns the committed file, or why there is none.
pub fn receive(
    queue: &Queue,
    input: &mut impl Read,
    reply: &mut impl Write,
    size_limit: u64,
    uid: u32,
) -> Result<Committed, DropError> {
    let mut decoder = Decoder::new();
    let mut next = || match ipc::receive(input, &mut decoder) {
        Ok(message) => Request::from_message(&message).map_err(|e| malformed(e.to_string())),
        Err(IpcError::Closed) => Err(malformed("premature end of input")),
        Err(err) => Err(malformed(err.to_string())),
    };
    let Request::Open(flags) = next()? else {
        return Err(malformed("first request is not open"));
    };
    let mut drop = Drop {
        writer: queue.create(MAILDROP)?,
        has_sender: false,
        content_size: 0,
        size_limit,
        uid,
    };
    if flags.extract {
        drop.writer.attribute(maildrop::FLAGS, maildrop::EXTRACT)?;
    }
    send(reply, &protocol::opened(drop.writer.id().as_str()))?;
    loop {
        match next()? {
            Request::End => break,
            request => drop.apply(request)?,
        }
    }
    if !drop.has_sender {
        return Err(malformed("no sender"));
    }
    Ok(drop.writer.commit()?)
}

fn send(reply: &mut impl Write, message: &ipc::Message) -> Result<(), DropError> {
    ipc::send(reply, message).map_err(DropError::Reply)?;
    reply.flush().map_err(|e| DropError::Reply(e.into()))
}

impl Drop {
    fn apply(&mut self, request: Request) -> Result<(), DropError> {
        let w = &mut self.writer;
        match request {
            Request::Open(_) => return Err(malformed("second open request")),
            Request::Sender(address) => {
                if std::mem::replace(&mut self.has_sender, true) {
                    return Err(malformed("more than one sender"));
                }
                w.sender(&address)?;
            }
            Request::Fullname(name) => w.sender_fullname(&name)?,
            Request::Recipient(mut rcpt) => {
                rcpt.done = false;
                w.recipient(&rcpt)?;
            }
            Request::DsnEnvid(envid) => w.dsn_envid(&envid)?,
            Request::DsnRet(flags) => w.dsn_ret(flags)?,
            Request::Attribute(name, value) => {
                if maildrop::is_submitter_attribute(&name) && name != maildrop::FLAGS {
                    w.attribute(&name, &value)?;
                } else {
                    libmail::msg::warning(format_args!(
                        "uid={}: ignoring attribute record: {name}={value}",
                        self.uid
                    ));
                }
            }
            // The arrival time is the file's; a disposition is not the
            // submitter's to choose.
            Request::Arrival(_) | Request::Disposition(_) => {
                return Err(malformed("unexpected record type"))
            }
            Request::Content(bytes) => {
                self.content_size += bytes.len() as u64;
                if self.size_limit > 0 && self.content_size > self.size_limit {
                    return Err(DropError::TooBig);
                }
                w.body(&bytes)?;
            }
            Request::End => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmail::cleanup::{Disposition, Flags};
    use libmail::queue::{QueueFile, QueueSettings, Recipient};
    use std::path::PathBuf;

    fn temp_queue(name: &str) -> (PathBuf, Queue) {
        let dir = std::env::temp_dir().join(format!("postdrop-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(MAILDROP)).unwrap();
        let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
        (dir, queue)
    }

    fn stream(requests: &[Request]) -> Vec<u8> {
        requests
            .iter()
            .flat_map(|r| r.to_message().encode().unwrap())
            .collect()
    }

    fn good(extract: bool) -> Vec<Request> {
        vec![
            Request::Open(Flags {
                extract,
                ..Flags::default()
            }),
            Request::Attribute("rewrite_context".into(), "local".into()),
            Request::Fullname("Joe".into()),
            Request::Sender("joe@example.com".into()),
            Request::Recipient(Recipient::new("bob@example.com")),
            Request::Content(b"Subject: hi\n\nbody \xff\n".to_vec()),
            Request::End,
        ]
    }

    fn run(queue: &Queue, requests: &[Request]) -> (Result<Committed, DropError>, Vec<u8>) {
        let bytes = stream(requests);
        let mut reply = Vec::new();
        let result = receive(queue, &mut bytes.as_slice(), &mut reply, 0, 1000);
        (result, reply)
    }

    fn maildrop_count(queue: &Queue) -> usize {
        queue.scan(MAILDROP).unwrap().len()
    }

    #[test]
    fn a_whole_stream_makes_a_maildrop_file() {
        let (dir, queue) = temp_queue("good");
        let (result, reply) = run(&queue, &good(true));
        let committed = result.unwrap();
        let mut decoder = Decoder::new();
        decoder.push(&reply);
        let first = decoder.next_message().unwrap().unwrap();
        assert_eq!(first.text("queue_id").unwrap(), committed.id.as_str());
        let file = QueueFile::open(&committed.path).unwrap();
        let env = file.envelope();
        assert_eq!(env.sender, "joe@example.com");
        assert_eq!(env.sender_fullname.as_deref(), Some("Joe"));
        assert_eq!(env.recipients[0].address, "bob@example.com");
        assert_eq!(env.attribute("rewrite_context"), Some("local"));
        assert_eq!(env.attribute(maildrop::FLAGS), Some(maildrop::EXTRACT));
        assert_eq!(
            file.content().unwrap().text(),
            b"Subject: hi\n\nbody \xff\n"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn broken_streams_leave_nothing() {
        let (dir, queue) = temp_queue("broken");
        let full = good(false);
        // Truncated anywhere: no end.
        for cut in 0..full.len() - 1 {
            let (result, _) = run(&queue, &full[..cut]);
            assert!(matches!(result, Err(DropError::Malformed(_))), "cut {cut}");
        }
        // Truncated inside a frame.
        let bytes = stream(&full);
        let mut reply = Vec::new();
        let half = &bytes[..bytes.len() - 3];
        assert!(receive(&queue, &mut &half[..], &mut reply, 0, 1).is_err());
        // Two senders.
        let mut two = full.clone();
        two.insert(3, Request::Sender("other@example.com".into()));
        assert!(matches!(run(&queue, &two).0, Err(DropError::Malformed(_))));
        // No sender.
        let mut none = full.clone();
        none.remove(3);
        assert!(run(&queue, &none).0.is_err());
        // Not an open first.
        assert!(run(&queue, &full[1..]).0.is_err());
        // Things a user may not ask for.
        let mut disp = full.clone();
        disp.insert(2, Request::Disposition(Disposition::Hold("x".into())));
        assert!(run(&queue, &disp).0.is_err());
        // Garbage.
        let mut reply = Vec::new();
        assert!(receive(&queue, &mut &b"EHLO x\r\n"[..], &mut reply, 0, 1).is_err());
        assert_eq!(maildrop_count(&queue), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn foreign_attributes_are_dropped_and_size_is_limited() {
        let (dir, queue) = temp_queue("attrs");
        let mut reqs = good(false);
        reqs.insert(
            1,
            Request::Attribute("client_address".into(), "1.2.3.4".into()),
        );
        reqs.insert(
            1,
            Request::Attribute(maildrop::FLAGS.into(), "extract".into()),
        );
        let committed = run(&queue, &reqs).0.unwrap();
        let env = QueueFile::open(&committed.path).unwrap().into_envelope();
        assert_eq!(env.attribute("client_address"), None);
        assert_eq!(env.attribute(maildrop::FLAGS), None);
        let bytes = stream(&good(false));
        let mut reply = Vec::new();
        let big = receive(&queue, &mut bytes.as_slice(), &mut reply, 5, 1);
        assert!(matches!(big, Err(DropError::TooBig)));
        assert_eq!(DropError::TooBig.status(), DropStatus::Size);
        assert_eq!(maildrop_count(&queue), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
