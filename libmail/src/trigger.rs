//! Triggers: one-byte requests to a service that does not answer (master
//! waking pickup and qmgr, cleanup telling qmgr of new mail, postqueue -f).
//! The kind of endpoint decides how: a fifo is written, a UNIX stream
//! socket is connected to and written, a datagram socket is sent to.
//! Nobody waits: a service that is not running finds the work on its own
//! next scan.

use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};

use crate::config::master_cf::ServiceType;
use crate::config::{Config, ConfigError};

/// qmgr's requests (Postfix's QMGR_REQ_*).
pub mod qmgr {
    /// New mail in incoming/.
    pub const SCAN_INCOMING: &[u8] = b"I";
    /// Look at deferred/ now (postqueue -f).
    pub const SCAN_DEFERRED: &[u8] = b"D";
    /// Forget that destinations were dead (postqueue -f).
    pub const FLUSH_DEAD: &[u8] = b"F";
    /// Deliver what is waiting regardless of retry times.
    pub const SCAN_ALL: &[u8] = b"A";
}

/// The periodic wakeup master sends (`wakeup` in master.cf).
pub const WAKEUP: &[u8] = b"W";

/// Sends `request` to the service at `path`, whose type is `kind`.
pub fn send(kind: ServiceType, path: &Path, request: &[u8]) -> io::Result<()> {
    match kind {
        ServiceType::Fifo => std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .and_then(|mut fifo| fifo.write_all(request)),
        ServiceType::UnixDgram => {
            UnixDatagram::unbound().and_then(|socket| socket.send_to(request, path).map(|_| ()))
        }
        _ => UnixStream::connect(path).and_then(|mut socket| socket.write_all(request)),
    }
}

/// Sends `request` to whatever is at `path`: a fifo or a socket.
pub fn send_to_path(path: &Path, request: &[u8]) -> io::Result<()> {
    let kind = match std::fs::metadata(path)?.file_type().is_fifo() {
        true => ServiceType::Fifo,
        false => ServiceType::Unix,
    };
    send(kind, path, request)
}

/// Where a public service (qmgr, pickup, flush, showq) listens.
pub fn public_service(config: &Config, name: &str) -> Result<PathBuf, ConfigError> {
    let queue = config.string("queue_directory")?;
    Ok(Path::new(&queue).join("public").join(name))
}

/// Where qmgr listens ($queue_service_name in public/).
fn qmgr_service(config: &Config) -> Result<PathBuf, ConfigError> {
    public_service(config, &config.string("queue_service_name")?)
}

/// Tells qmgr that there is new mail; a qmgr that is not running will
/// find it on its own, so failure is not an error.
pub fn wake_qmgr(config: &Config, request: &[u8]) {
    if let Ok(path) = qmgr_service(config) {
        let _ = send_to_path(&path, request);
    }
}

/// Asks qmgr to retry all deferred mail now and to forget which
/// destinations it found dead (`postfix flush`, `postqueue -f`, ETRN).
/// Unlike `wake_qmgr`, failure matters: the caller says the mail system
/// is down.
pub fn flush_queue(config: &Config) -> io::Result<()> {
    let path = qmgr_service(config).map_err(|e| io::Error::other(e.to_string()))?;
    let request = [
        qmgr::FLUSH_DEAD,
        qmgr::SCAN_DEFERRED,
        qmgr::SCAN_ALL,
        qmgr::SCAN_INCOMING,
    ]
    .concat();
    send_to_path(&path, &request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    #[test]
    fn stream_socket_and_fifo_receive_the_request() {
        let dir = crate::test_support::temp_dir("trigger");
        let socket_path = dir.join("qmgr");
        let listener = UnixListener::bind(&socket_path).unwrap();
        send_to_path(&socket_path, qmgr::SCAN_INCOMING).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"I");

        let fifo_path = dir.join("pickup");
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Without a reader a fifo cannot be opened for writing: an error,
        // not a hang.
        assert!(send_to_path(&fifo_path, WAKEUP).is_err());
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo_path)
            .unwrap();
        send_to_path(&fifo_path, WAKEUP).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).unwrap(), 1);
        assert_eq!(&buf[..1], b"W");
        assert!(send_to_path(&dir.join("absent"), WAKEUP).is_err());
    }
}
