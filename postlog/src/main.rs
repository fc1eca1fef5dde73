#![forbid(unsafe_code)]
//! postlog: Postfix-compatible logging for shell scripts (postlog(1)).
//! Logs its arguments as one record, or each line of standard input as a
//! record, with the tag `$syslog_name/postlog` (or `-t`) and the severity
//! of `-p`, wherever the mail system logs: syslog or $maillog_file.
//!
//! As in Postfix 3.7: options end at the first text word; `-i` is
//! accepted and ignored (the pid is always logged); `-p fatal` and
//! `-p panic` only label the record, then pause one second and exit 0;
//! records are echoed to standard error only when it is a terminal, while
//! postlog's own errors always go there.
//!
//! postlog is installed set-gid (setgid_group) so that it may write
//! where the mail system logs. A set-gid run therefore trusts no
//! caller-chosen configuration: `-c` or MAIL_CONFIG must name the default
//! directory or one listed in its alternate_config_directories, and TZ is
//! dropped from the environment.

use std::io::BufRead;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgAction, Command};
use libmail::config::{self, Config};
use libmail::log::{self, line, Severity, Stderr};
use libmail::msg;

const USAGE: &str = "usage: postlog [-c config_dir] [-i] [-p priority] [-t tag] [-v] [text]";

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    config_dir: Option<PathBuf>,
    severity: Severity,
    tag: Option<String>,
    verbose: u8,
    /// Words to log as one record; empty means: read standard input.
    text: Vec<String>,
}

fn command() -> Command {
    Command::new("postlog")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(Arg::new("config_dir").short('c').num_args(1))
        .arg(Arg::new("pid").short('i').action(ArgAction::SetTrue))
        .arg(Arg::new("priority").short('p').num_args(1))
        .arg(
            Arg::new("tag")
                .short('t')
                .num_args(1)
                .allow_hyphen_values(true),
        )
        .arg(Arg::new("verbose").short('v').action(ArgAction::Count))
        // Options end at the first word of text, as with Postfix's getopt.
        .arg(
            Arg::new("text")
                .num_args(0..)
                .action(ArgAction::Append)
                .trailing_var_arg(true),
        )
}

/// Parses the arguments after the program name.
fn parse(args: Vec<String>) -> Result<Options, String> {
    let argv = std::iter::once("postlog".to_string()).chain(args);
    let matches = command()
        .try_get_matches_from(argv)
        .map_err(|_| USAGE.to_string())?;
    let text = |name: &str| matches.get_one::<String>(name).cloned();
    let severity = match text("priority") {
        None => Severity::Info,
        Some(name) => {
            Severity::from_name(&name).ok_or_else(|| format!("bad severity: \"{name}\""))?
        }
    };
    Ok(Options {
        config_dir: text("config_dir").map(PathBuf::from),
        severity,
        tag: text("tag"),
        verbose: matches.get_count("verbose"),
        text: matches
            .get_many::<String>("text")
            .map(|words| words.cloned().collect())
            .unwrap_or_default(),
    })
}

/// Running with other privileges than the caller's (installed set-gid)?
fn privileged() -> bool {
    use nix::unistd::{getegid, geteuid, getgid, getuid};
    getuid() != geteuid() || getgid() != getegid()
}

/// A set-gid postlog reads only a configuration the administrator
/// blessed: the default directory, or one named in its
/// alternate_config_directories (Postfix's mail_conf_checkdir()). The
/// error is what to do about it.
fn check_trusted(dir: &Path, explicit: bool, default: &Path) -> Result<(), String> {
    if !explicit || dir == default {
        return Ok(());
    }
    let main = Config::load(Some(default)).map_err(|e| e.to_string())?;
    let blessed = main
        .list("alternate_config_directories")
        .map_err(|e| e.to_string())?;
    if blessed.iter().any(|d| Path::new(d) == dir) {
        return Ok(());
    }
    Err(format!(
        "specify \"alternate_config_directories = {}\" in {}/main.cf",
        dir.display(),
        default.display()
    ))
}

/// Reads main.cf, with the set-gid precautions when they apply.
fn load_config(options: &Options) -> Result<Config, String> {
    let (dir, explicit) = config::config_directory(options.config_dir.as_deref());
    if privileged() {
        // chrono reads the zone file that TZ names; a caller must not
        // make a set-gid program open files of its choosing.
        std::env::remove_var("TZ");
        let default = Path::new(config::DEFAULT_CONFIG_DIRECTORY);
        if let Err(reason) = check_trusted(&dir, explicit, default) {
            msg::set_program(EARLY_NAME);
            let dir = dir.display();
            log::error(format_args!(
                "untrusted configuration directory name: {dir}"
            ));
            return Err(reason);
        }
    }
    Config::load(options.config_dir.as_deref()).map_err(|e| e.to_string())
}

/// The record tag: `-t` (with unprintable characters made `?`, as
/// Postfix does with this caller-supplied text), or `$syslog_name/postlog`.
fn tag(options: &Options, config: &Config) -> Result<String, String> {
    match &options.tag {
        Some(tag) => Ok(line::clean(tag)),
        None => {
            let name = config.string("syslog_name").map_err(|e| e.to_string())?;
            Ok(line::ident(&name, "postlog"))
        }
    }
}

/// One line of input as text: invalid UTF-8 becomes `?` like other
/// unprintable bytes.
fn line_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\u{FFFD}', "?")
}

fn log_input(severity: Severity) -> Result<(), String> {
    for chunk in std::io::stdin().lock().split(b'\n') {
        let bytes = chunk.map_err(|e| format!("read standard input: {e}"))?;
        log::try_log(severity, line_text(&bytes)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn run(options: &Options) -> Result<(), String> {
    let config = load_config(options)?;
    let tag = tag(options, &config)?;
    msg::set_program(&tag);
    log::set_verbose(u32::from(options.verbose));
    log::init_tagged(&config, &tag).map_err(|e| e.to_string())?;
    // From here on records go to the log, and to the screen only when
    // someone is watching it (Postfix's msg_vstream for postlog).
    log::set_stderr(Stderr::IfTerminal);
    let result = if options.text.is_empty() {
        log_input(options.severity)
    } else {
        log::try_log(options.severity, options.text.join(" ")).map_err(|e| e.to_string())
    };
    // postlog's own failure must be seen even without a terminal.
    log::set_stderr(Stderr::Always);
    result
}

/// The name on postlog's own messages until main.cf has been read (and
/// for good when it cannot be): `$syslog_name/postlog` with Postfix's
/// default syslog_name, as Postfix's postlog says it.
const EARLY_NAME: &str = "postfix/postlog";

/// Reports a failure and exits 1. `msg::set_program` keeps its first
/// name, so this is EARLY_NAME only if `run` had not yet chosen the tag.
fn fail(reason: String) -> ! {
    msg::set_program(EARLY_NAME);
    msg::fatal(reason)
}

fn main() -> ExitCode {
    // Arguments need not be UTF-8; such bytes are logged as `?`.
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| line_text(arg.as_bytes()))
        .collect();
    let options = parse(args).unwrap_or_else(|reason| fail(reason));
    if let Err(reason) = run(&options) {
        fail(reason);
    }
    // Postfix programs pause after a fatal or panic report; postlog(1)
    // documents that it does the same.
    if options.severity >= Severity::Fatal {
        std::thread::sleep(Duration::from_secs(1));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn defaults() {
        let options = parse(args(&["hello", "world"])).unwrap();
        assert_eq!(
            options,
            Options {
                config_dir: None,
                severity: Severity::Info,
                tag: None,
                verbose: 0,
                text: args(&["hello", "world"]),
            }
        );
        assert!(parse(vec![]).unwrap().text.is_empty());
    }

    #[test]
    fn options_end_at_the_first_word() {
        let options = parse(args(&["-c", "/d", "-iv", "-pwarn", "hi", "-p", "err"])).unwrap();
        assert_eq!(options.config_dir, Some(PathBuf::from("/d")));
        assert_eq!(options.severity, Severity::Warning);
        assert_eq!(options.verbose, 1);
        assert_eq!(options.text, args(&["hi", "-p", "err"]));
        let options = parse(args(&["-t", "my/tag", "--", "-x"])).unwrap();
        assert_eq!(options.tag.as_deref(), Some("my/tag"));
        assert_eq!(options.text, args(&["-x"]));
    }

    #[test]
    fn bad_options() {
        assert_eq!(parse(args(&["-x"])).unwrap_err(), USAGE);
        assert_eq!(parse(args(&["-p"])).unwrap_err(), USAGE);
        assert_eq!(
            parse(args(&["-p", "notice", "x"])).unwrap_err(),
            "bad severity: \"notice\""
        );
    }

    #[test]
    fn input_lines_keep_text_and_mark_bad_bytes() {
        assert_eq!(line_text(b"plain"), "plain");
        assert_eq!(line_text(b"bad \xff byte"), "bad ? byte");
    }

    #[test]
    fn set_gid_trusts_only_blessed_directories() {
        let default = std::env::temp_dir().join(format!("postlog-trust-{}", std::process::id()));
        std::fs::create_dir_all(&default).unwrap();
        std::fs::write(
            default.join("main.cf"),
            "alternate_config_directories = /etc/postfix-out, /etc/postfix-in\n",
        )
        .unwrap();
        assert!(check_trusted(&default, true, &default).is_ok());
        assert!(check_trusted(Path::new("/anything"), false, &default).is_ok());
        assert!(check_trusted(Path::new("/etc/postfix-in"), true, &default).is_ok());
        let err = check_trusted(Path::new("/tmp/mine"), true, &default).unwrap_err();
        assert_eq!(
            err,
            format!(
                "specify \"alternate_config_directories = /tmp/mine\" in {}/main.cf",
                default.display()
            )
        );
        let _ = std::fs::remove_dir_all(&default);
    }
}
