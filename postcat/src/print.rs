//! How postcat shows one queue file: Postfix 3.7's output format, record
//! by record in file order, with the section markers (`*** ENVELOPE
//! RECORDS path ***` ...), record names (`sender: `, `named_attribute:
//! name=value`), asctime() dates, and the content as it was written.
//! Output is written as far as the file is sound; the damage is then the
//! caller's fatal error.

use std::io::{self, Write};
use std::path::Path;

use libmail::queue::{
    asctime, attr, record_name, Data, Entry, QueueError, Recipient, Record, Walker,
};

/// What to show (postcat's -b -e -h -o -d -v -s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Show {
    pub envelope: bool,
    pub header: bool,
    pub body: bool,
    /// `-o`: each record's offset.
    pub offsets: bool,
    /// `-d`: each record's type as a decimal number.
    pub decimal: bool,
    /// `-v`: name the content records too.
    pub verbose: bool,
    /// `-s`: show nothing before this offset.
    pub skip: u64,
}

/// Why showing a file stopped.
#[derive(Debug)]
pub enum Stop {
    /// Not a queue file at all: Postfix warns and goes on.
    NotQueueFile,
    /// Damaged, or unreadable: fatal.
    Queue(QueueError),
    /// Standard output failed.
    Output(io::Error),
}

impl From<io::Error> for Stop {
    fn from(err: io::Error) -> Self {
        Stop::Output(err)
    }
}

/// Writes `name`'s records to `out` as `show` asks.
pub fn postcat(out: &mut dyn Write, data: &Data, name: &Path, show: Show) -> Result<(), Stop> {
    let walker = match Walker::new(data, name) {
        Ok(walker) => walker,
        Err(err) if err.damage() == Some(&libmail::queue::Damage::NotQueueFile) => {
            return Err(Stop::NotQueueFile)
        }
        Err(err) => return Err(Stop::Queue(err)),
    };
    let mut printer = Printer {
        out,
        name: &name.display().to_string(),
        show,
        text_open: false,
    };
    if show.envelope {
        writeln!(printer.out, "*** ENVELOPE RECORDS {} ***", printer.name)?;
    }
    for record in walker {
        let record = record.map_err(|err| {
            // What was shown stays shown, and ends with a newline.
            let _ = printer.close_text();
            Stop::Queue(err)
        })?;
        if record.offset >= show.skip {
            printer.record(&record)?;
        }
    }
    printer.out.flush()?;
    Ok(())
}

struct Printer<'a> {
    out: &'a mut dyn Write,
    name: &'a str,
    show: Show,
    /// The last content shown did not end with a newline.
    text_open: bool,
}

impl Printer<'_> {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        let env = self.show.envelope;
        match &record.entry {
            Entry::ContentStart if env => self.marker(record, "MESSAGE CONTENTS"),
            Entry::ExtractedStart => {
                self.close_text()?;
                if env {
                    self.marker(record, "HEADER EXTRACTED")?;
                }
                Ok(())
            }
            Entry::End if env => self.marker(record, "MESSAGE FILE END"),
            Entry::Header(text) if self.show.header => self.text(record, text),
            Entry::Body(text) if self.show.body => self.text(record, text),
            _ if env => self.envelope(record),
            _ => Ok(()),
        }
    }

    /// `[offset ][type ]` before a line.
    fn prefix(&mut self, record: &Record) -> io::Result<()> {
        if self.show.offsets {
            write!(self.out, "{:9} ", record.offset)?;
        }
        if self.show.decimal {
            write!(self.out, "{:3} ", record.kind)?;
        }
        Ok(())
    }

    fn marker(&mut self, record: &Record, what: &str) -> io::Result<()> {
        self.prefix(record)?;
        writeln!(self.out, "*** {what} {} ***", self.name)?;
        self.out.flush()
    }

    fn line(&mut self, record: &Record, text: &str) -> io::Result<()> {
        self.prefix(record)?;
        writeln!(self.out, "{text}")
    }

    /// Content bytes exactly as stored.
    fn text(&mut self, record: &Record, text: &[u8]) -> io::Result<()> {
        if self.show.offsets || self.show.decimal || self.show.verbose {
            self.close_text()?;
            self.prefix(record)?;
        }
        if self.show.verbose {
            write!(self.out, "{}: ", record_name(record.kind))?;
        }
        self.out.write_all(text)?;
        if let Some(&last) = text.last() {
            self.text_open = last != b'\n';
        }
        Ok(())
    }

    /// Ends a last line that had no newline, before what follows.
    fn close_text(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.text_open) {
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn envelope(&mut self, record: &Record) -> io::Result<()> {
        let name = record_name(record.kind);
        match &record.entry {
            Entry::Size(s) => {
                let fields = [
                    s.content_size,
                    s.content_offset,
                    s.recipient_count,
                    s.qmgr_options,
                    s.message_size,
                    s.smtputf8,
                ];
                let text: Vec<String> = fields.iter().map(|v| format!("{v:15}")).collect();
                self.line(record, &format!("{name}: {}", text.join(" ")))
            }
            Entry::Arrival(time) | Entry::Created(time) => {
                self.line(record, &format!("{name}: {}", asctime(*time)))
            }
            Entry::Recipient(rcpt) => self.recipient(record, rcpt),
            Entry::Attribute(attr_name, value) => {
                self.line(record, &format!("{name}: {attr_name}={value}"))
            }
            Entry::DsnEnvid(envid) => self.attribute(record, attr::DSN_ENVID, envid),
            Entry::DsnRet(flags) => self.attribute(record, attr::DSN_RET, &flags.to_string()),
            Entry::Sender(text)
            | Entry::Fullname(text)
            | Entry::ContentFilter(text)
            | Entry::Redirect(text) => self.line(record, &format!("{name}: {text}")),
            Entry::Skipped if self.show.verbose => self.line(record, "unknown_record_type:"),
            _ => Ok(()),
        }
    }

    fn attribute(&mut self, record: &Record, name: &str, value: &str) -> io::Result<()> {
        self.line(record, &format!("named_attribute: {name}={value}"))
    }

    /// A recipient as the records Postfix writes for one: its DSN
    /// attributes, original_recipient, then recipient (or
    /// done_recipient).
    fn recipient(&mut self, record: &Record, rcpt: &Recipient) -> io::Result<()> {
        if rcpt.dsn_notify != 0 {
            self.attribute(record, attr::DSN_NOTIFY, &rcpt.dsn_notify.to_string())?;
        }
        if !rcpt.dsn_orcpt.is_empty() {
            self.attribute(record, attr::DSN_ORCPT, &rcpt.dsn_orcpt)?;
        }
        self.line(
            record,
            &format!("original_recipient: {}", rcpt.orig_recipient),
        )?;
        let name = record_name(record.kind);
        self.line(record, &format!("{name}: {}", rcpt.address))
    }
}
