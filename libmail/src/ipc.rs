//! The internal protocol between daemons (smtpd → cleanup, pickup →
//! cleanup, qmgr → delivery agents, showq ...): messages made of named
//! attributes, sent as length-delimited frames over UNIX stream sockets.
//!
//! A frame is a version byte, a 4-byte little-endian payload length, and
//! the payload: attributes, each a 1-byte name length, the name, a 4-byte
//! value length and the value bytes (values are bytes: addresses and
//! content need not be UTF-8). `Decoder` is a state machine that takes
//! bytes as they arrive and yields whole messages, so it is tested without
//! sockets; `send` and `receive` add blocking I/O for the daemons.

use std::io::{self, Read, Write};

use thiserror::Error;

/// The frame format version; a peer speaking another one is refused.
pub const VERSION: u8 = 1;

/// The largest payload accepted (content travels in many messages, never
/// one huge one).
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

const HEADER_LEN: usize = 5;

#[derive(Debug, Error)]
pub enum IpcError {
    #[error("unsupported protocol version {0}")]
    Version(u8),
    #[error("message too large: {0} bytes")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("attribute name too long: {0}")]
    NameTooLong(String),
    #[error("missing attribute: {0}")]
    Missing(String),
    #[error("bad value for attribute {name}: {reason}")]
    BadValue { name: String, reason: String },
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// An ordered list of named attributes; a name may repeat (recipients).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub attributes: Vec<(String, Vec<u8>)>,
}

impl Message {
    pub fn new() -> Message {
        Message::default()
    }

    /// Adds an attribute; builder style.
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Message {
        self.push(name, value);
        self
    }

    pub fn push(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.attributes
            .push((name.to_string(), value.as_ref().to_vec()));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.attributes
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// A required attribute as text.
    pub fn text(&self, name: &str) -> Result<&str, IpcError> {
        let value = self
            .get(name)
            .ok_or_else(|| IpcError::Missing(name.to_string()))?;
        std::str::from_utf8(value).map_err(|_| IpcError::BadValue {
            name: name.to_string(),
            reason: "not UTF-8".to_string(),
        })
    }

    /// A required attribute as a number.
    pub fn number(&self, name: &str) -> Result<u64, IpcError> {
        self.text(name)?.parse().map_err(|_| IpcError::BadValue {
            name: name.to_string(),
            reason: "not a number".to_string(),
        })
    }

    /// The frame for this message.
    pub fn encode(&self) -> Result<Vec<u8>, IpcError> {
        let mut payload = Vec::new();
        for (name, value) in &self.attributes {
            let name_len =
                u8::try_from(name.len()).map_err(|_| IpcError::NameTooLong(name.clone()))?;
            payload.push(name_len);
            payload.extend_from_slice(name.as_bytes());
            payload.extend_from_slice(&(value.len() as u32).to_le_bytes());
            payload.extend_from_slice(value);
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(IpcError::TooLarge(payload.len()));
        }
        let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
        frame.push(VERSION);
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&payload);
        Ok(frame)
    }
}

fn parse_payload(mut payload: &[u8]) -> Result<Message, IpcError> {
    let mut message = Message::new();
    while let Some((&name_len, rest)) = payload.split_first() {
        let name_len = name_len as usize;
        let name = rest
            .get(..name_len)
            .ok_or(IpcError::Malformed("truncated name"))?;
        let name = std::str::from_utf8(name).map_err(|_| IpcError::Malformed("name not UTF-8"))?;
        let rest = &rest[name_len..];
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(IpcError::Malformed("truncated value length"))?;
        let value_len = u32::from_le_bytes(len_bytes) as usize;
        let value = rest
            .get(4..4 + value_len)
            .ok_or(IpcError::Malformed("truncated value"))?;
        message.attributes.push((name.to_string(), value.to_vec()));
        payload = &rest[4 + value_len..];
    }
    Ok(message)
}

/// Takes bytes as they arrive, yields whole messages.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, `None` until one has arrived; an error
    /// means the peer is not speaking this protocol and the connection
    /// should be dropped.
    pub fn next_message(&mut self) -> Result<Option<Message>, IpcError> {
        let Some(&version) = self.buffer.first() else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(IpcError::Version(version));
        }
        let Some(len_bytes) = self.buffer.get(1..HEADER_LEN) else {
            return Ok(None);
        };
        let len =
            u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(IpcError::TooLarge(len));
        }
        if self.buffer.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let message = parse_payload(&self.buffer[HEADER_LEN..HEADER_LEN + len])?;
        self.buffer.drain(..HEADER_LEN + len);
        Ok(Some(message))
    }

    /// Whether part of a message is waiting for the rest.
    pub fn is_partial(&self) -> bool {
        !self.buffer.is_empty()
    }
}

/// Sends one message (one write for the whole frame).
pub fn send(stream: &mut impl Write, message: &Message) -> Result<(), IpcError> {
    stream.write_all(&message.encode()?)?;
    Ok(())
}

/// Receives one message; `Closed` when the peer hung up between messages.
pub fn receive(stream: &mut impl Read, decoder: &mut Decoder) -> Result<Message, IpcError> {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(message) = decoder.next_message()? {
            return Ok(message);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(if decoder.is_partial() {
                IpcError::Malformed("connection closed inside a message")
            } else {
                IpcError::Closed
            });
        }
        decoder.push(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message::new()
            .with("request", "cleanup")
            .with("sender", "a@example.com")
            .with("recipient", "b@example.com")
            .with("recipient", "c@example.com")
            .with("content", [0u8, 0xff, b'\n', b'.'])
    }

    #[test]
    fn round_trip_and_accessors() {
        let message = sample();
        let mut decoder = Decoder::new();
        decoder.push(&message.encode().unwrap());
        let back = decoder.next_message().unwrap().unwrap();
        assert_eq!(back, message);
        assert_eq!(back.text("request").unwrap(), "cleanup");
        assert_eq!(back.all("recipient").count(), 2);
        assert!(matches!(back.text("nope"), Err(IpcError::Missing(_))));
        assert!(matches!(
            back.number("sender"),
            Err(IpcError::BadValue { .. })
        ));
        assert!(!decoder.is_partial());
    }

    #[test]
    fn byte_at_a_time_and_back_to_back() {
        let mut bytes = sample().encode().unwrap();
        bytes.extend(Message::new().with("n", "7").encode().unwrap());
        let mut decoder = Decoder::new();
        let mut got = Vec::new();
        for byte in bytes {
            decoder.push(&[byte]);
            while let Some(message) = decoder.next_message().unwrap() {
                got.push(message);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].number("n").unwrap(), 7);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut decoder = Decoder::new();
        decoder.push(b"EHLO x\r\n");
        assert!(matches!(
            decoder.next_message(),
            Err(IpcError::Version(b'E'))
        ));
        let mut decoder = Decoder::new();
        decoder.push(&[VERSION, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(decoder.next_message(), Err(IpcError::TooLarge(_))));
        // Every truncation of a valid payload inside a complete frame.
        let frame = sample().encode().unwrap();
        for cut in HEADER_LEN..frame.len() {
            let payload = &frame[HEADER_LEN..cut];
            let mut broken = vec![VERSION];
            broken.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            broken.extend_from_slice(payload);
            let mut decoder = Decoder::new();
            decoder.push(&broken);
            let _ = decoder.next_message();
        }
    }

    #[test]
    fn over_a_socket() {
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        send(&mut a, &sample()).unwrap();
        drop(a);
        let mut decoder = Decoder::new();
        assert_eq!(receive(&mut b, &mut decoder).unwrap(), sample());
        assert!(matches!(
            receive(&mut b, &mut decoder),
            Err(IpcError::Closed)
        ));
    }
}
