#![forbid(unsafe_code)]
//! postqueue(1): the queue operations any local user may run, as in
//! Postfix 3.7. `-p` (also `mailq`, `sendmail -bp`) and `-j` list the
//! queue through the showq(8) service; `-f` asks qmgr to retry all queued
//! mail; `-i ID` and `-s SITE` ask the flush(8) service to deliver one
//! message or one site's mail now.
//!
//! It is installed set-gid $setgid_group so that it can reach the
//! services in public/; it never reads the queue itself unless the mail
//! system is down and the caller is root or mail_owner. Every fatal error
//! exits with status 69 (EX_UNAVAILABLE), as Postfix's postqueue does.

mod access;
mod listing;

use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};
use libmail::config::Config;
use libmail::flush::{self, FlushStatus};
use libmail::queue::is_safe_name;

/// Postfix's postqueue exits with EX_UNAVAILABLE after any fatal error.
pub const EXIT_FATAL: i32 = 69;

const USAGE: &str = "usage: postqueue -f | postqueue -i queueid | postqueue -j | \
postqueue -p | postqueue -s site";

/// What was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Flush,
    FlushFile(String),
    Json,
    List,
    FlushSite(String),
}

#[derive(Debug, PartialEq, Eq)]
struct Options {
    mode: Mode,
    config_dir: Option<String>,
    verbose: u8,
}

/// `postqueue: fatal: TEXT` on standard error and in the log, exit 69.
pub fn fatal(text: impl std::fmt::Display) -> ! {
    libmail::log::log(libmail::log::Severity::Fatal, text);
    std::process::exit(EXIT_FATAL)
}

fn command() -> Command {
    let flag = |name: &'static str, short| Arg::new(name).short(short).action(ArgAction::SetTrue);
    let value = |name: &'static str, short| Arg::new(name).short(short).num_args(1);
    Command::new("postqueue")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(value("config_dir", 'c'))
        .arg(flag("flush", 'f'))
        .arg(value("queue_id", 'i'))
        .arg(flag("json", 'j'))
        .arg(flag("list", 'p'))
        .arg(value("site", 's'))
        .arg(Arg::new("verbose").short('v').action(ArgAction::Count))
}

/// Parses the arguments after the program name; exactly one mode, no
/// operands (Postfix's rules).
fn parse(args: Vec<String>) -> Result<Options, String> {
    let argv = std::iter::once("postqueue".to_string()).chain(args);
    let m = command()
        .try_get_matches_from(argv)
        .map_err(|_| USAGE.to_string())?;
    let text = |name: &str| m.get_one::<String>(name).cloned();
    let mut modes = Vec::new();
    if m.get_flag("flush") {
        modes.push(Mode::Flush);
    }
    if let Some(id) = text("queue_id") {
        modes.push(Mode::FlushFile(id));
    }
    if m.get_flag("json") {
        modes.push(Mode::Json);
    }
    if m.get_flag("list") {
        modes.push(Mode::List);
    }
    if let Some(site) = text("site") {
        modes.push(Mode::FlushSite(site));
    }
    match <[Mode; 1]>::try_from(modes) {
        Ok([mode]) => Ok(Options {
            mode,
            config_dir: text("config_dir"),
            verbose: m.get_count("verbose"),
        }),
        Err(_) => Err(USAGE.to_string()),
    }
}

/// At most 100 characters of what the user gave, for messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(100) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// Checks `-s` and `-i` arguments before anything is asked of a service.
fn check_arguments(mode: &Mode) -> Result<(), String> {
    match mode {
        Mode::FlushSite(site) if !access::valid_site(site) => Err(format!(
            "Cannot flush mail queue - invalid destination: \"{}\"",
            shorten(site)
        )),
        Mode::FlushFile(id) if !is_safe_name(id) => Err(format!(
            "Cannot flush queue ID - invalid name: \"{}\"",
            shorten(id)
        )),
        _ => Ok(()),
    }
}

const DOWN: &str = "Cannot flush mail queue - mail system is down";

/// `-f`: qmgr retries deferred mail, pickup looks at maildrop.
fn flush_queue(config: &Config) -> Result<(), String> {
    access::check_acl(config, access::Acl::Flush)?;
    let service = |param: &str| {
        let name = config.string(param).map_err(|e| e.to_string())?;
        libmail::trigger::public_service(config, &name).map_err(|e| e.to_string())
    };
    let qmgr = service("queue_service_name")?;
    if let Err(err) = libmail::trigger::flush_queue(config) {
        warn_unreachable(&qmgr, &err);
        return Err(DOWN.to_string());
    }
    let pickup = service("pickup_service_name")?;
    if let Err(err) = libmail::trigger::send_to_path(&pickup, libmail::trigger::WAKEUP) {
        warn_unreachable(&pickup, &err);
        return Err(DOWN.to_string());
    }
    Ok(())
}

fn warn_unreachable(path: &std::path::Path, err: &std::io::Error) {
    let shown = path
        .strip_prefix(path.ancestors().nth(2).unwrap_or(path))
        .unwrap_or(path);
    libmail::msg::warning(format_args!(
        "cannot reach {}: {}",
        shown.display(),
        libmail::error::strerror(err)
    ));
}

/// `-s SITE`: the flush service delivers the site's deferred mail.
fn flush_site(config: &Config, site: &str) -> Result<(), String> {
    access::check_acl(config, access::Acl::Flush)?;
    match flush::send_site(config, site) {
        FlushStatus::Ok => Ok(()),
        FlushStatus::Bad => Err(format!("Invalid request: \"{site}\"")),
        FlushStatus::Fail => Err(DOWN.to_string()),
        FlushStatus::Deny => Err(format!(
            "Flush service is not configured for destination \"{site}\""
        )),
    }
}

/// `-i ID`: the flush service delivers one deferred message.
fn flush_file(config: &Config, queue_id: &str) -> Result<(), String> {
    access::check_acl(config, access::Acl::Flush)?;
    match flush::send_file(config, queue_id) {
        FlushStatus::Ok => Ok(()),
        FlushStatus::Bad => Err(format!("Invalid request: \"{queue_id}\"")),
        FlushStatus::Fail => Err(DOWN.to_string()),
        other => Err(format!(
            "Unexpected flush server reply status {}",
            other.code()
        )),
    }
}

fn run(options: &Options) -> Result<(), String> {
    let config = access::load_config(options.config_dir.as_deref())?;
    let _ = libmail::log::init(&config, "postqueue");
    // Verbose logging is for the superuser only (Postfix 2.3 and later).
    if options.verbose > 0 && nix::unistd::geteuid().is_root() {
        libmail::log::set_verbose(u32::from(options.verbose));
    }
    let queue_dir = config
        .string("queue_directory")
        .map_err(|e| e.to_string())?;
    std::env::set_current_dir(&queue_dir)
        .map_err(|e| format!("chdir {queue_dir}: {}", libmail::error::strerror(&e)))?;
    check_arguments(&options.mode)?;
    match &options.mode {
        Mode::List => listing::show_queue(&config, listing::Format::Text),
        Mode::Json => listing::show_queue(&config, listing::Format::Json),
        Mode::Flush => flush_queue(&config),
        Mode::FlushSite(site) => flush_site(&config, site),
        Mode::FlushFile(id) => flush_file(&config, id),
    }
}

fn main() -> ExitCode {
    libmail::msg::set_program("postqueue");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = parse(args).unwrap_or_else(|usage| fatal(usage));
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(text) => fatal(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn one_mode_and_no_operands() {
        let ok = parse(args(&["-c", "/etc/x", "-p", "-v", "-v"])).unwrap();
        assert_eq!(ok.mode, Mode::List);
        assert_eq!(ok.config_dir.as_deref(), Some("/etc/x"));
        assert_eq!(ok.verbose, 2);
        assert_eq!(parse(args(&["-j"])).unwrap().mode, Mode::Json);
        assert_eq!(parse(args(&["-f"])).unwrap().mode, Mode::Flush);
        assert_eq!(
            parse(args(&["-i", "ABC"])).unwrap().mode,
            Mode::FlushFile("ABC".into())
        );
        assert_eq!(
            parse(args(&["-sexample.com"])).unwrap().mode,
            Mode::FlushSite("example.com".into())
        );
        for bad in [
            &[][..],
            &["-p", "-j"],
            &["-p", "extra"],
            &["-x"],
            &["-i"],
            &["-p", "-p"],
        ] {
            assert_eq!(parse(args(bad)), Err(USAGE.to_string()), "{bad:?}");
        }
    }

    #[test]
    fn bad_arguments_are_refused_before_any_request() {
        let long = format!("-{}", "a".repeat(150));
        assert_eq!(
            check_arguments(&Mode::FlushFile("bad/id".into())),
            Err("Cannot flush queue ID - invalid name: \"bad/id\"".into())
        );
        assert_eq!(
            check_arguments(&Mode::FlushFile(long.clone())),
            Err(format!(
                "Cannot flush queue ID - invalid name: \"{}...\"",
                &long[..100]
            ))
        );
        assert_eq!(
            check_arguments(&Mode::FlushSite("bad site!".into())),
            Err("Cannot flush mail queue - invalid destination: \"bad site!\"".into())
        );
        assert!(check_arguments(&Mode::FlushSite("[192.0.2.1]".into())).is_ok());
        assert!(check_arguments(&Mode::FlushFile("4F9D1C2A3B".into())).is_ok());
        assert!(check_arguments(&Mode::List).is_ok());
    }
}
