//! `postqueue -p` and `-j`: asks showq(8) on public/showq for the
//! listing and prints it as it arrives. When showq cannot be reached
//! because the mail system is down, root and mail_owner get the listing
//! read from the queue directly (with a warning); anybody else is told
//! that the report is unavailable.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use libmail::config::Config;
use libmail::ipc::{self, Decoder};
use libmail::queue::Queue;
use libmail::showq::{self, Entry, Reply, TextListing};

use crate::access::{self, Acl};

/// How long to wait for showq between two entries.
const SHOWQ_TIMEOUT: Duration = Duration::from_secs(3600);

/// Which listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Sendmail-style table (`-p`).
    Text,
    /// One JSON object per line (`-j`).
    Json,
}

/// Where the listing goes: standard output, in either format. A reader
/// that went away (`mailq | head`) ends the listing quietly.
struct Printer {
    out: io::BufWriter<io::Stdout>,
    text: Option<TextListing>,
    closed: bool,
}

impl Printer {
    fn new(format: Format, long_ids: bool) -> Printer {
        Printer {
            out: io::BufWriter::new(io::stdout()),
            text: (format == Format::Text).then(|| TextListing::new(long_ids)),
            closed: false,
        }
    }

    fn write(&mut self, text: &str) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        match self
            .out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())
        {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(err) => Err(format!(
                "output write error: {}",
                libmail::error::strerror(&err)
            )),
        }
    }

    /// Prints one entry; `false` once nobody reads any more.
    fn entry(&mut self, entry: &Entry) -> Result<bool, String> {
        let text = match &mut self.text {
            Some(listing) => listing.entry(entry),
            None => showq::json_line(entry),
        };
        self.write(&text)?;
        Ok(!self.closed)
    }

    fn finish(&mut self) -> Result<(), String> {
        let text = self.text.as_ref().map(TextListing::finish);
        self.write(text.as_deref().unwrap_or(""))
    }
}

/// Lists the queue in `format`.
pub fn show_queue(config: &Config, format: Format) -> Result<(), String> {
    access::check_acl(config, Acl::Mailq)?;
    let long_ids = config
        .bool("enable_long_queue_ids")
        .map_err(|e| e.to_string())?;
    let mut printer = Printer::new(format, long_ids);
    let service = config
        .string("showq_service_name")
        .map_err(|e| e.to_string())?;
    let path = libmail::trigger::public_service(config, &service).map_err(|e| e.to_string())?;
    let mail_name = config.string("mail_name").map_err(|e| e.to_string())?;
    match UnixStream::connect(&path) {
        Ok(stream) => from_showq(stream, &mut printer)?,
        Err(err) => {
            let why = format!(
                "Connect to the {mail_name} {service} service: {}",
                libmail::error::strerror(&err)
            );
            // No permission is not "down": say what really failed.
            if err.kind() == io::ErrorKind::PermissionDenied {
                return Err(why);
            }
            if !access::may_read_queue(config) {
                return Err(format!(
                    "Queue report unavailable - mail system is down ({why})"
                ));
            }
            libmail::msg::warning(format_args!(
                "Mail system is down -- accessing queue directly ({why})"
            ));
            from_queue(config, &mut printer)?;
        }
    }
    printer.finish()
}

const MALFORMED: &str = "malformed showq server response";

/// Reads the listing showq sends and prints it entry by entry.
fn from_showq(mut stream: UnixStream, printer: &mut Printer) -> Result<(), String> {
    stream
        .set_read_timeout(Some(SHOWQ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut decoder = Decoder::new();
    let greeting = ipc::receive(&mut stream, &mut decoder).map_err(|_| MALFORMED.to_string())?;
    if !showq::is_greeting(&greeting) {
        return Err(MALFORMED.to_string());
    }
    loop {
        let message = ipc::receive(&mut stream, &mut decoder).map_err(|_| MALFORMED.to_string())?;
        match Reply::from_message(&message).map_err(|_| MALFORMED.to_string())? {
            Reply::End => return Ok(()),
            Reply::Entry(entry) => {
                if !printer.entry(&entry)? {
                    return Ok(());
                }
            }
        }
    }
}

/// The listing read from the queue by this process (the mail system is
/// down; the caller may read the queue).
fn from_queue(config: &Config, printer: &mut Printer) -> Result<(), String> {
    let queue = Queue::from_config(config).map_err(|e| e.to_string())?;
    let empty_address = config
        .string("empty_address_recipient")
        .map_err(|e| e.to_string())?;
    showq::list(&queue, &empty_address, |entry| printer.entry(entry))?.map_err(|e| e.to_string())
}
