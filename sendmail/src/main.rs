#![forbid(unsafe_code)]
//! sendmail(1): the Sendmail-compatible interface to Postfix. Posting
//! mail hands the message to postdrop(1); the other modes run the
//! command that does the work (postqueue, postalias, postfix, and for
//! `-bs` an SMTP session of our own).

use std::io::{self, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use libmail::config::Config;
use sendmail::client::{PipeError, Postdrop};
use sendmail::exit;
use sendmail::input::{FixEol, MessageReader};
use sendmail::options::{self, Mode, Options};
use sendmail::protocol::DropStatus;
use sendmail::submission::Submission;
use sendmail::{fatal_status, standalone};

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let argv0 = if args.is_empty() {
        "sendmail".to_string()
    } else {
        args.remove(0)
    };
    let program = argv0.rsplit('/').next().unwrap_or("sendmail").to_string();
    libmail::msg::set_program(&program);
    let opts = match options::parse(&argv0, &args) {
        Ok(opts) => opts,
        Err(err) => fatal_status(exit::USAGE, err),
    };
    if let Some(dir) = &opts.config_dir {
        std::env::set_var("MAIL_CONFIG", dir);
    }
    let config = match Config::load(None) {
        Ok(config) => config,
        Err(err) => fatal_status(exit::CONFIG, err),
    };
    let _ = libmail::log::init(&config, "sendmail");
    if opts.verbose > 1 {
        // One -v asks for a delivery report, more for verbose logging.
        libmail::log::set_verbose(opts.verbose - 1);
    }
    for warning in &opts.warnings {
        libmail::msg::warning(warning);
    }
    run(&config, &opts)
}

fn string(config: &Config, name: &str) -> String {
    config
        .string(name)
        .unwrap_or_else(|err| fatal_status(exit::CONFIG, err))
}

fn require_no_recipients(opts: &Options, what: &str) {
    if !opts.recipients.is_empty() {
        fatal_status(exit::USAGE, format_args!("{what} requires no recipient"));
    }
}

fn run(config: &Config, opts: &Options) -> ! {
    if opts.queue_interval && opts.mode != Mode::Daemon {
        std::process::exit(0);
    }
    let command_dir = PathBuf::from(string(config, "command_directory"));
    let verbose: Vec<&str> = (1..opts.verbose).map(|_| "-v").collect();
    match opts.mode {
        Mode::Enqueue => {
            if let Some(site) = &opts.flush_site {
                require_no_recipients(opts, "flush site");
                replace(
                    &command_dir,
                    "postqueue",
                    &[&["-s", site.as_str()], &verbose[..]].concat(),
                );
            }
            if let Some(id) = &opts.flush_id {
                require_no_recipients(opts, "flush queue_id");
                replace(
                    &command_dir,
                    "postqueue",
                    &[&["-i", id.as_str()], &verbose[..]].concat(),
                );
            }
            enqueue(config, opts, &command_dir);
            std::process::exit(0)
        }
        Mode::Mailq => {
            require_no_recipients(opts, "display queue mode");
            replace(&command_dir, "postqueue", &[&["-p"], &verbose[..]].concat())
        }
        Mode::FlushQueue => {
            require_no_recipients(opts, "flush queue mode");
            replace(&command_dir, "postqueue", &[&["-f"], &verbose[..]].concat())
        }
        Mode::Newaliases => {
            require_no_recipients(opts, "alias initialization mode");
            newaliases(config, opts, &command_dir, &verbose)
        }
        Mode::Daemon => {
            require_no_recipients(opts, "daemon mode");
            let path = command_dir.join("postfix");
            let started = Command::new(&path).args(&verbose).arg("start").spawn();
            std::process::exit(i32::from(started.is_err()))
        }
        Mode::StandAlone => {
            require_no_recipients(opts, "stand-alone mode");
            stand_alone(config, opts, command_dir)
        }
        Mode::Ignore => std::process::exit(0),
    }
}

/// Runs a command from $command_directory in place of this process.
fn replace(command_dir: &Path, name: &str, args: &[&str]) -> ! {
    let path = command_dir.join(name);
    let err = Command::new(&path).args(args).exec();
    fatal_status(
        exit::UNAVAILABLE,
        format_args!(
            "execvp {}: {}",
            path.display(),
            libmail::error::strerror(&err)
        ),
    )
}

/// `newaliases`: postalias on every $alias_database entry.
fn newaliases(config: &Config, opts: &Options, command_dir: &Path, verbose: &[&str]) -> ! {
    let maps = match &opts.alias_maps {
        Some(maps) => maps.clone(),
        None => string(config, "alias_database"),
    };
    let entries: Vec<&str> = maps
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    if entries.is_empty() {
        std::process::exit(0);
    }
    replace(command_dir, "postalias", &[verbose, &entries[..]].concat())
}

fn real_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Posts one message from standard input.
fn enqueue(config: &Config, opts: &Options, command_dir: &Path) {
    if opts.verify {
        fatal_status(
            exit::USAGE,
            "unsupported: -bv (address verification is not available yet)",
        );
    }
    let uid = real_uid();
    if let Err(text) = sendmail::check_submit_acl(config, uid) {
        fatal_status(exit::NOPERM, text);
    }
    let sender = match &opts.sender {
        Some(text) => {
            let (address, more) = sendmail::address::first_address(text);
            if more {
                libmail::msg::warning(format_args!("-f option specified malformed sender: {text}"));
            }
            address
        }
        None => sendmail::login_name(uid).unwrap_or_else(|| {
            fatal_status(
                exit::OSERR,
                format_args!("no login name found for user ID {uid}"),
            )
        }),
    };
    let fix = string(config, "sendmail_fix_line_endings");
    let Some(fix) = FixEol::parse(&fix) else {
        fatal_status(
            exit::USAGE,
            format_args!("invalid sendmail_fix_line_endings value: {fix}"),
        );
    };
    let submission = Submission {
        extract: opts.extract,
        sender: sender.clone(),
        full_name: opts.full_name.clone().or_else(|| gecos_name(uid)),
        recipients: Submission::recipients_of(&opts.recipients),
        dsn_notify: opts.dsn_notify,
        dsn_ret: opts.dsn_ret,
        dsn_envid: opts.dsn_envid.clone(),
        rewrite_context: opts.rewrite_context().to_string(),
        encoding: opts.encoding.map(str::to_string),
    };
    let who = format!("{sender}({uid})");
    let fail = |err: PipeError| -> ! {
        match err {
            PipeError::Spawn { .. } => {
                fatal_status(exit::UNAVAILABLE, format_args!("{who}: {err}"))
            }
            PipeError::Lost(_) => fatal_status(exit::TEMPFAIL, format_args!("{who}: {err}")),
        }
    };
    if submission.recipients.is_empty() && !opts.extract {
        fatal_status(
            exit::USAGE,
            "Recipient addresses must be specified on the command line or via the -t option",
        );
    }
    let verbose = opts.verbose.saturating_sub(1);
    let mut pipe = Postdrop::start(
        command_dir,
        opts.config_dir.as_deref(),
        verbose,
        &submission.open(),
    )
    .unwrap_or_else(|e| fail(e));
    for request in submission.envelope() {
        pipe.send(&request).unwrap_or_else(|e| fail(e));
    }
    let stdin = io::stdin();
    let mut reader = MessageReader::new(BufReader::new(stdin.lock()), fix, opts.dot_ends_input);
    loop {
        match reader.next_piece() {
            Ok(Some(piece)) => pipe.content(&piece).unwrap_or_else(|e| fail(e)),
            Ok(None) => break,
            Err(err) => {
                pipe.abort();
                fatal_status(
                    exit::DATAERR,
                    format_args!("{who}: error reading input: {err}"),
                );
            }
        }
    }
    if submission.recipients.is_empty() && !reader.header_has_recipients() {
        pipe.abort();
        fatal_status(
            exit::USAGE,
            format_args!("{who}: No recipient addresses found in message header"),
        );
    }
    match pipe.finish().unwrap_or_else(|e| fail(e)) {
        DropStatus::Queued => {}
        status @ DropStatus::Bad(_) => {
            fatal_status(exit::SOFTWARE, format_args!("{who}: {}", status.text()))
        }
        status @ DropStatus::Write(_) => {
            fatal_status(exit::TEMPFAIL, format_args!("{who}: {}", status.text()))
        }
        status @ DropStatus::Size => {
            fatal_status(exit::UNAVAILABLE, format_args!("{who}: {}", status.text()))
        }
    }
}

/// The user's full name from the GECOS field (up to the first comma, `&`
/// standing for the capitalized login name), unless NAME is set.
fn gecos_name(uid: u32) -> Option<String> {
    if let Ok(name) = std::env::var("NAME") {
        if !name.is_empty() {
            return Some(name);
        }
    }
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    let gecos = user.gecos.to_string_lossy().to_string();
    let first = gecos.split(',').next().unwrap_or("").trim().to_string();
    if first.is_empty() {
        return None;
    }
    let mut login = user.name.clone();
    if let Some(c) = login.get_mut(0..1) {
        c.make_ascii_uppercase();
    }
    Some(first.replace('&', &login))
}

/// `sendmail -bs`.
fn stand_alone(config: &Config, opts: &Options, command_dir: PathBuf) -> ! {
    let uid = real_uid();
    if let Err(text) = sendmail::check_submit_acl(config, uid) {
        fatal_status(exit::NOPERM, text);
    }
    let hostname = string(config, "myhostname");
    let client = smtpd::Client::new("localhost", "127.0.0.1", 0);
    let mut settings = smtpd::Settings::new(&hostname, client);
    settings.mail_name = string(config, "mail_name");
    if let Ok(banner) = config.string("smtpd_banner") {
        settings.banner = banner;
    }
    if let Ok(limit) = config.size("message_size_limit") {
        settings.message_size_limit = limit;
    }
    let mut session = smtpd::Session::new(settings);
    let mut sink = standalone::PostdropSink::new(
        command_dir,
        opts.config_dir.clone(),
        opts.verbose.saturating_sub(1),
    );
    let stdin = io::stdin();
    let stdout = io::stdout();
    let result = standalone::run(
        &mut session,
        &mut sink,
        &mut stdin.lock(),
        &mut stdout.lock(),
    );
    match result {
        Ok(()) => std::process::exit(0),
        Err(err) => fatal_status(exit::TEMPFAIL, format_args!("stand-alone session: {err}")),
    }
}
