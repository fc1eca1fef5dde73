#![forbid(unsafe_code)]
//! postcat: show the contents of queue files (postcat(1) of Postfix 3.7).
//!
//! `postcat [-bdehoqrv] [-c config_dir] [-s offset] [files...]` prints
//! each file's envelope records, header and body; `-e`, `-h` and `-b`
//! choose among them (all three by default). With `-q` the arguments are
//! queue IDs, looked up in maildrop, incoming, active, deferred, hold and
//! saved below $queue_directory; without files, standard input is read.
//! A damaged file is shown as far as it is sound, then `postcat: fatal:
//! FILE: what is damaged`, exit status 1.

mod print;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};
use libmail::config::Config;
use libmail::msg;
use libmail::queue::{is_safe_name, Data, Queue, QueueId, MESSAGE_QUEUES};

use print::{postcat, Show, Stop};

const USAGE: &str = "usage: postcat [-b (body text)] [-c config_dir] \
[-d (decimal record type)] [-e (envelope records)] [-h (header text)] \
[-o (record offsets)] [-q (access queue)] [-r (print records in file order)] \
[-s offset] [-v] [file(s)...]";

/// What the command line asked for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    show: Show,
    queue: bool,
    config_dir: Option<PathBuf>,
    names: Vec<String>,
}

fn flag(name: &'static str, short: char) -> Arg {
    Arg::new(name).short(short).action(ArgAction::SetTrue)
}

fn command() -> Command {
    Command::new("postcat")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(flag("body", 'b'))
        .arg(flag("decimal", 'd'))
        .arg(flag("envelope", 'e'))
        .arg(flag("header", 'h'))
        .arg(flag("offsets", 'o'))
        .arg(flag("queue", 'q'))
        // No pointer records in this format: file order is the only one.
        .arg(flag("raw", 'r'))
        .arg(Arg::new("verbose").short('v').action(ArgAction::Count))
        .arg(Arg::new("config_dir").short('c').num_args(1))
        .arg(Arg::new("skip").short('s').num_args(1))
        .arg(Arg::new("names").num_args(0..).action(ArgAction::Append))
}

/// Parses the arguments after the program name.
fn parse(args: Vec<String>) -> Result<Options, String> {
    let argv = std::iter::once("postcat".to_string()).chain(args);
    let m = command()
        .try_get_matches_from(argv)
        .map_err(|_| USAGE.to_string())?;
    let skip = match m.get_one::<String>("skip") {
        None => 0,
        Some(text) => text
            .parse()
            .map_err(|_| format!("invalid offset argument: {text}"))?,
    };
    let mut show = Show {
        envelope: m.get_flag("envelope"),
        header: m.get_flag("header"),
        body: m.get_flag("body"),
        offsets: m.get_flag("offsets"),
        decimal: m.get_flag("decimal"),
        verbose: m.get_count("verbose") > 0,
        skip,
    };
    // Nothing chosen: everything, as -beh.
    if !(show.envelope || show.header || show.body) {
        (show.envelope, show.header, show.body) = (true, true, true);
    }
    Ok(Options {
        show,
        queue: m.get_flag("queue"),
        config_dir: m.get_one::<String>("config_dir").map(PathBuf::from),
        names: m
            .get_many::<String>("names")
            .map(|n| n.cloned().collect())
            .unwrap_or_default(),
    })
}

/// A file to show and the name to show it under.
struct Input {
    data: Data,
    name: PathBuf,
}

/// `-q ID`: the file below $queue_directory, shown as `queue/ID` (the
/// path relative to the queue directory, as Postfix shows it).
fn queue_input(queue: &Queue, text: &str) -> Result<Input, String> {
    if !is_safe_name(text) {
        return Err(format!("bad mail queue ID: {text}"));
    }
    let not_found = || format!("open queue file {text}: No such file or directory");
    let id = QueueId::parse(text).ok_or_else(not_found)?;
    let mut tries = 0;
    loop {
        let (found, path) = queue
            .find(&id, &MESSAGE_QUEUES)
            .map_err(|e| e.with_hint())?;
        match Data::open(&path, false) {
            Ok(data) => {
                let name = queue.relative_path(&found, &id);
                return Ok(Input { data, name });
            }
            // Moved to another queue since we found it: look again.
            Err(err) if err.is_not_found() && tries == 0 => tries += 1,
            Err(err) => return Err(err.with_hint()),
        }
    }
}

fn file_input(path: &str) -> Result<Input, String> {
    let data = Data::open(Path::new(path), false).map_err(|e| e.to_string())?;
    Ok(Input {
        data,
        name: PathBuf::from(path),
    })
}

fn stdin_input() -> Result<Input, String> {
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("read stdin: {}", libmail::error::strerror(&e)))?;
    Ok(Input {
        data: Data::Bytes(bytes),
        name: PathBuf::from("stdin"),
    })
}

/// Shows one input; damage and output errors end the program.
fn show(out: &mut dyn Write, input: &Input, show: Show) -> Result<(), String> {
    match postcat(out, &input.data, &input.name, show) {
        Ok(()) => Ok(()),
        Err(Stop::NotQueueFile) => {
            let _ = out.flush();
            msg::warning(format_args!(
                "{}: input is not a valid queue file",
                input.name.display()
            ));
            Ok(())
        }
        Err(Stop::Queue(err)) => {
            let _ = out.flush();
            Err(err.to_string())
        }
        Err(Stop::Output(err)) => Err(format!("write error: {}", libmail::error::strerror(&err))),
    }
}

fn run(options: &Options) -> Result<(), String> {
    let config = Config::load(options.config_dir.as_deref()).map_err(|e| e.to_string())?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if options.names.is_empty() {
        return show(&mut out, &stdin_input()?, options.show);
    }
    let queue = if options.queue {
        Some(Queue::from_config(&config).map_err(|e| e.to_string())?)
    } else {
        None
    };
    for name in &options.names {
        let input = match &queue {
            Some(queue) => queue_input(queue, name),
            None => file_input(name),
        };
        let input = input.inspect_err(|_| {
            let _ = out.flush();
        })?;
        show(&mut out, &input, options.show)?;
    }
    out.flush()
        .map_err(|e| format!("write error: {}", libmail::error::strerror(&e)))
}

fn main() -> ExitCode {
    msg::set_program("postcat");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = parse(args).unwrap_or_else(|reason| msg::fatal(reason));
    if let Err(reason) = run(&options) {
        msg::fatal(reason);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmail::queue::{QueueSettings, Recipient, INCOMING};

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn default_shows_everything() {
        let options = parse(args(&["-q", "B822221522"])).unwrap();
        assert!(options.queue);
        assert!(options.show.envelope && options.show.header && options.show.body);
        assert_eq!(options.names, ["B822221522"]);
        let options = parse(args(&["-bh", "-c", "/etc/x", "file"])).unwrap();
        assert!(!options.show.envelope && options.show.header && options.show.body);
        assert_eq!(options.config_dir, Some(PathBuf::from("/etc/x")));
    }

    #[test]
    fn bad_options() {
        assert_eq!(parse(args(&["-x"])).unwrap_err(), USAGE);
        assert_eq!(
            parse(args(&["-s", "ten"])).unwrap_err(),
            "invalid offset argument: ten"
        );
    }

    fn sample() -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("postcat-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("incoming")).unwrap();
        let queue = Queue::new(QueueSettings::new(&dir)).unwrap();
        let mut w = queue.create(INCOMING).unwrap();
        w.sender("alice@example.com").unwrap();
        w.recipient(&Recipient::new("bob@example.com")).unwrap();
        w.header(b"Subject: hi\n").unwrap();
        w.body(b"\nno newline at the end").unwrap();
        let done = w.commit().unwrap();
        let bytes = std::fs::read(&done.path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        bytes
    }

    fn render(bytes: &[u8], show: Show) -> String {
        let mut out = Vec::new();
        let data = Data::Bytes(bytes.to_vec());
        postcat(&mut out, &data, Path::new("incoming/X"), show).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn sections_and_records() {
        let bytes = sample();
        let all = Show {
            envelope: true,
            header: true,
            body: true,
            ..Show::default()
        };
        let text = render(&bytes, all);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "*** ENVELOPE RECORDS incoming/X ***");
        assert!(lines[1].starts_with("message_size: "), "{text}");
        assert!(lines[2].starts_with("message_arrival_time: "), "{text}");
        assert!(lines[3].starts_with("create_time: "), "{text}");
        assert_eq!(
            &lines[4..],
            [
                "sender: alice@example.com",
                "original_recipient: ",
                "recipient: bob@example.com",
                "*** MESSAGE CONTENTS incoming/X ***",
                "Subject: hi",
                "",
                "no newline at the end",
                "*** HEADER EXTRACTED incoming/X ***",
                "*** MESSAGE FILE END incoming/X ***",
            ]
        );
        let body = Show {
            body: true,
            ..Show::default()
        };
        assert_eq!(render(&bytes, body), "\nno newline at the end\n");
        let header = Show {
            header: true,
            ..Show::default()
        };
        assert_eq!(render(&bytes, header), "Subject: hi\n");
    }
}
