//! Writes queue files through libmail::queue, for the tests of postcat and
//! the queue (a test fixture, not a product feature, not installed).
//!
//! `make_queue_file [-c config_dir] [-q queue] [-f sender] [-a name=value]
//! [-o orig] [-N notify] [-O orcpt] [-E envid] [-R ret] [-T seconds]
//! [-x extracted_rcpt] [-n count] recipient...` reads a message on
//! standard input, splits it into header fields and body (the body starts
//! with the empty line), commits it to the queue named by -q (default
//! incoming) of the instance that main.cf describes, and prints the queue
//! ID. `-o`, `-N` and `-O` apply to every recipient. `-n` writes the same
//! message that many times (for counting system calls per message).

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use libmail::config::Config;
use libmail::msg;
use libmail::queue::{Queue, QueueError, Recipient, INCOMING};

#[derive(Default)]
struct Args {
    config_dir: Option<PathBuf>,
    queue: Option<String>,
    sender: String,
    attributes: Vec<(String, String)>,
    orig: String,
    notify: u8,
    orcpt: String,
    envid: Option<String>,
    ret: u8,
    arrival: Option<u64>,
    extracted: Vec<String>,
    count: usize,
    recipients: Vec<String>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        count: 1,
        ..Args::default()
    };
    while let Some(arg) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "-c" => args.config_dir = Some(PathBuf::from(value()?)),
            "-q" => args.queue = Some(value()?),
            "-f" => args.sender = value()?,
            "-a" => {
                let pair = value()?;
                let (name, val) = pair.split_once('=').ok_or("-a takes name=value")?;
                args.attributes.push((name.into(), val.into()));
            }
            "-o" => args.orig = value()?,
            "-N" => args.notify = number(&value()?)?,
            "-O" => args.orcpt = value()?,
            "-E" => args.envid = Some(value()?),
            "-R" => args.ret = number(&value()?)?,
            "-T" => args.arrival = Some(number(&value()?)?),
            "-x" => args.extracted.push(value()?),
            "-n" => args.count = number(&value()?)?,
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ => args.recipients.push(arg),
        }
    }
    Ok(args)
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("bad number: {text}"))
}

/// Header fields (continuation lines joined to theirs) and the body.
fn split_message(text: &[u8]) -> (Vec<Vec<u8>>, &[u8]) {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let continued = matches!(line.first(), Some(b' ' | b'\t'));
        match fields.last_mut() {
            Some(field) if continued => field.extend_from_slice(line),
            _ if is_header(line) => fields.push(line.to_vec()),
            _ => break,
        }
        at += line.len();
    }
    (fields, &text[at..])
}

fn is_header(line: &[u8]) -> bool {
    let name_end = line.iter().position(|&b| b == b':');
    name_end.is_some_and(|end| end > 0 && line[..end].iter().all(|b| b.is_ascii_graphic()))
}

fn write_one(queue: &Queue, args: &Args, text: &[u8]) -> Result<String, QueueError> {
    let mut file = queue.create(args.queue.as_deref().unwrap_or(INCOMING))?;
    if let Some(seconds) = args.arrival {
        file.set_arrival_time(UNIX_EPOCH + Duration::from_secs(seconds))?;
    }
    file.sender(&args.sender)?;
    for (name, value) in &args.attributes {
        file.attribute(name, value)?;
    }
    if let Some(envid) = &args.envid {
        file.dsn_envid(envid)?;
    }
    if args.ret != 0 {
        file.dsn_ret(args.ret)?;
    }
    for address in &args.recipients {
        file.recipient(&Recipient {
            address: address.clone(),
            orig_recipient: args.orig.clone(),
            dsn_orcpt: args.orcpt.clone(),
            dsn_notify: args.notify,
            ..Recipient::default()
        })?;
    }
    let (fields, body) = split_message(text);
    for field in &fields {
        file.header(field)?;
    }
    file.body(body)?;
    for address in &args.extracted {
        file.recipient(&Recipient::new(address))?;
    }
    Ok(file.commit()?.id.to_string())
}

fn main() {
    msg::set_program("make_queue_file");
    let args = parse(std::env::args().skip(1)).unwrap_or_else(|e| msg::fatal(e));
    let config = Config::load(args.config_dir.as_deref()).unwrap_or_else(|e| msg::fatal(e));
    let queue = Queue::from_config(&config).unwrap_or_else(|e| msg::fatal(e));
    let mut text = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut text) {
        msg::fatal(format_args!("read stdin: {err}"));
    }
    for _ in 0..args.count {
        match write_one(&queue, &args, &text) {
            Ok(id) => println!("{id}"),
            Err(err) => msg::fatal(err),
        }
    }
}
