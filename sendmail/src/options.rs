//! The sendmail(1) command line. Sendmail's options do not fit a modern
//! parser: `-oi`, `-qR site`, `-q` alone, `-Fname` glued to its value and
//! flags grouped as in `-ti`. This is getopt(3) with Postfix's option
//! string, plus the special cases, and options end at the first word that
//! is not one (no argument permutation).

use libmail::queue::{notify, ret};
use thiserror::Error;

/// What the command is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Post a message (the default, `-bm`).
    Enqueue,
    /// `-bp`, or invoked as `mailq`: postqueue -p.
    Mailq,
    /// `-q`: postqueue -f.
    FlushQueue,
    /// `-bi`, `-I`, or invoked as `newaliases`: postalias.
    Newaliases,
    /// `-bs`: SMTP on standard input and output.
    StandAlone,
    /// `-bd`, `-bl`: "postfix start".
    Daemon,
    /// `-bh`, `-bH`: nothing to do.
    Ignore,
}

/// Why the command line is unusable (always EX_USAGE).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsageError {
    #[error("usage: {0} [options]")]
    Usage(String),
    #[error("-{0} option not supported")]
    NotSupported(char),
    #[error("unsupported: -{0}{1}")]
    Unsupported(char, String),
    #[error("-B option needs 8BITMIME or 7BIT")]
    BadBody,
    #[error("-oA requires pathname")]
    AliasPath,
    #[error("specify: -qRsitename")]
    FlushSite,
    #[error("specify: -qIqueueid")]
    FlushId,
    #[error("-q{0} is not implemented")]
    BadQueueOption(char),
    #[error("{0}")]
    Conflict(&'static str),
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub mode: Mode,
    /// `-C`: the configuration directory (passed on as MAIL_CONFIG).
    pub config_dir: Option<String>,
    /// `-f` / `-r`.
    pub sender: Option<String>,
    /// `-F`.
    pub full_name: Option<String>,
    /// `-t`.
    pub extract: bool,
    /// A lone "." ends the input (cleared by `-i` and `-oi`).
    pub dot_ends_input: bool,
    /// `-B`: `7bit` or `8bit`.
    pub encoding: Option<&'static str>,
    /// `-N`, as `notify::*` bits; 0 when not given.
    pub dsn_notify: u8,
    /// `-R`, as `ret::*`; 0 when not given.
    pub dsn_ret: u8,
    /// `-V`.
    pub dsn_envid: Option<String>,
    /// `-G`: the rewrite context is `remote` instead of `local`.
    pub gateway: bool,
    /// `-oA`: alias databases for newaliases instead of $alias_database.
    pub alias_maps: Option<String>,
    /// `-qRsite`.
    pub flush_site: Option<String>,
    /// `-qIqueueid`.
    pub flush_id: Option<String>,
    /// `-q` with a time: a queue-run interval, meaningful only to a
    /// daemon.
    pub queue_interval: bool,
    /// `-bv`: verify recipients rather than deliver.
    pub verify: bool,
    /// The number of `-v`.
    pub verbose: u32,
    /// Warnings to print (ignored bad values), in order.
    pub warnings: Vec<String>,
    /// Words after the options: recipients.
    pub recipients: Vec<String>,
}

/// Postfix's option letters; `:` marks one that takes a value.
const GETOPT_LIST: &str = "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx";

impl Options {
    fn new(mode: Mode) -> Options {
        Options {
            mode,
            config_dir: None,
            sender: None,
            full_name: None,
            extract: false,
            dot_ends_input: true,
            encoding: None,
            dsn_notify: 0,
            dsn_ret: 0,
            dsn_envid: None,
            gateway: false,
            alias_maps: None,
            flush_site: None,
            flush_id: None,
            queue_interval: false,
            verify: false,
            verbose: 0,
            warnings: Vec::new(),
            recipients: Vec::new(),
        }
    }

    /// The rewrite context for the submitted message.
    pub fn rewrite_context(&self) -> &'static str {
        if self.gateway {
            "remote"
        } else {
            "local"
        }
    }
}

/// The mode the program name implies (`mailq`, `newaliases`).
pub fn mode_for_name(argv0: &str) -> Mode {
    match argv0.rsplit('/').next().unwrap_or(argv0) {
        "mailq" => Mode::Mailq,
        "newaliases" => Mode::Newaliases,
        "smtpd" => Mode::Daemon,
        _ => Mode::Enqueue,
    }
}

/// Whether option `c` takes a value; `None` for an unknown option.
fn takes_value(c: char) -> Option<bool> {
    let at = GETOPT_LIST.find(c).filter(|_| c != ':')?;
    Some(GETOPT_LIST[at + 1..].starts_with(':'))
}

/// Parses the arguments after the program name.
pub fn parse(argv0: &str, args: &[String]) -> Result<Options, UsageError> {
    let program = argv0.rsplit('/').next().unwrap_or(argv0).to_string();
    let mut opts = Options::new(mode_for_name(argv0));
    let mut i = 0;
    while i < args.len() {
        let word = args[i].as_str();
        if word == "--" {
            i += 1;
            break;
        }
        if word == "-q" {
            // Not getopt compatible: -q takes no value here.
            set_flush_queue(&mut opts);
            i += 1;
            continue;
        }
        if !word.starts_with('-') || word == "-" {
            break;
        }
        i += 1;
        let letters: Vec<char> = word[1..].chars().collect();
        let mut at = 0;
        while at < letters.len() {
            let c = letters[at];
            at += 1;
            match takes_value(c) {
                None => return Err(UsageError::Usage(program)),
                Some(false) => flag(&mut opts, c)?,
                Some(true) => {
                    let value = if at < letters.len() {
                        letters[at..].iter().collect::<String>()
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(UsageError::Usage(program));
                    };
                    at = letters.len();
                    option(&mut opts, c, &value)?;
                }
            }
        }
    }
    opts.recipients = args[i..].to_vec();
    check_conflicts(&opts)?;
    Ok(opts)
}

fn set_flush_queue(opts: &mut Options) {
    if opts.mode == Mode::Daemon {
        opts.warnings
            .push("ignoring -q option in daemon mode".to_string());
    } else {
        opts.mode = Mode::FlushQueue;
    }
}

/// An option without a value.
fn flag(opts: &mut Options, c: char) -> Result<(), UsageError> {
    match c {
        'n' => return Err(UsageError::NotSupported(c)),
        'G' => opts.gateway = true,
        'I' => opts.mode = Mode::Newaliases,
        'i' => opts.dot_ends_input = false,
        't' => opts.extract = true,
        'v' => opts.verbose += 1,
        // -U (initial submission), -c, -m, -x: sendmail compatibility only.
        _ => {}
    }
    Ok(())
}

/// An option with its value.
fn option(opts: &mut Options, c: char, value: &str) -> Result<(), UsageError> {
    let first = value.chars().next().unwrap_or('\0');
    match c {
        'B' => {
            opts.encoding = Some(match value {
                "8BITMIME" => "8bit",
                "7BIT" => "7bit",
                _ => return Err(UsageError::BadBody),
            })
        }
        'C' => opts.config_dir = Some(config_dir_of(value)),
        'F' => opts.full_name = Some(value.to_string()),
        'N' => match notify_mask(value) {
            Some(mask) => opts.dsn_notify = mask,
            None => opts
                .warnings
                .push("bad -N option value -- ignored".to_string()),
        },
        'R' => match ret_code(value) {
            Some(code) => opts.dsn_ret = code,
            None => opts
                .warnings
                .push("bad -R option value -- ignored".to_string()),
        },
        'V' => envid(opts, value),
        'X' => return Err(UsageError::Unsupported(c, first.to_string())),
        'b' => mode_option(opts, first)?,
        'f' | 'r' => opts.sender = Some(value.to_string()),
        'o' => legacy_option(opts, value)?,
        'q' => queue_option(opts, value)?,
        // -A, -L, -O, -e, -h, -p: sendmail compatibility only.
        _ => {}
    }
    Ok(())
}

/// `-C dir` or `-C dir/main.cf`.
fn config_dir_of(value: &str) -> String {
    match value.rsplit_once('/') {
        Some((dir, "main.cf")) if !dir.is_empty() => dir.to_string(),
        Some(("", "main.cf")) => "/".to_string(),
        _ => value.to_string(),
    }
}

fn envid(opts: &mut Options, value: &str) {
    if value.len() > 100 {
        opts.warnings
            .push("too long -V option value -- ignored".to_string());
    } else if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        opts.warnings
            .push("bad syntax in -V option value -- ignored".to_string());
    } else {
        opts.dsn_envid = Some(value.to_string());
    }
}

fn mode_option(opts: &mut Options, letter: char) -> Result<(), UsageError> {
    opts.mode = match letter {
        'd' | 'l' => {
            if opts.mode == Mode::FlushQueue {
                opts.warnings
                    .push("ignoring -q option in daemon mode".to_string());
            }
            Mode::Daemon
        }
        'h' | 'H' => Mode::Ignore,
        'i' => Mode::Newaliases,
        'm' => Mode::Enqueue,
        'p' => Mode::Mailq,
        's' => Mode::StandAlone,
        'v' => {
            opts.verify = true;
            return Ok(());
        }
        other => return Err(UsageError::Unsupported('b', other.to_string())),
    };
    Ok(())
}

/// `-o` options from sendmail.cf days: only -oi and -oA mean anything.
fn legacy_option(opts: &mut Options, value: &str) -> Result<(), UsageError> {
    match value.chars().next() {
        Some('A') if value.len() == 1 => return Err(UsageError::AliasPath),
        Some('A') => opts.alias_maps = Some(value[1..].to_string()),
        Some('i') => opts.dot_ends_input = false,
        _ => {}
    }
    Ok(())
}

fn queue_option(opts: &mut Options, value: &str) -> Result<(), UsageError> {
    let first = value.chars().next().unwrap_or('\0');
    if first.is_ascii_digit() {
        opts.queue_interval = true;
    } else if first == 'R' || first == 'S' {
        let site = &value[1..];
        if site.is_empty() {
            return Err(UsageError::FlushSite);
        }
        opts.flush_site = Some(site.to_string());
    } else if first == 'I' {
        let id = &value[1..];
        if id.is_empty() {
            return Err(UsageError::FlushId);
        }
        opts.flush_id = Some(id.to_string());
    } else {
        return Err(UsageError::BadQueueOption(first));
    }
    Ok(())
}

fn check_conflicts(opts: &Options) -> Result<(), UsageError> {
    let delivery = opts.mode == Mode::Enqueue;
    if opts.extract && !delivery {
        return Err(UsageError::Conflict("-t can be used only in delivery mode"));
    }
    if opts.flush_site.is_some() && !delivery {
        return Err(UsageError::Conflict(
            "-qR can be used only in delivery mode",
        ));
    }
    if opts.flush_id.is_some() && !delivery {
        return Err(UsageError::Conflict(
            "-qI can be used only in delivery mode",
        ));
    }
    if opts.verify {
        if opts.extract {
            return Err(UsageError::Conflict("-t option cannot be used with -bv"));
        }
        if opts.dsn_notify != 0 {
            return Err(UsageError::Conflict("-N option cannot be used with -bv"));
        }
        if opts.dsn_ret != 0 {
            return Err(UsageError::Conflict("-R option cannot be used with -bv"));
        }
    }
    Ok(())
}

/// `-N never` or a comma list of success, delay, failure.
pub fn notify_mask(value: &str) -> Option<u8> {
    let mut mask = 0u8;
    for word in value.split(',').map(str::trim) {
        mask |= match word.to_ascii_lowercase().as_str() {
            "never" => notify::NEVER,
            "success" => notify::SUCCESS,
            "delay" => notify::DELAY,
            "failure" => notify::FAILURE,
            _ => return None,
        };
    }
    // NEVER excludes everything else.
    if mask & notify::NEVER != 0 && mask != notify::NEVER {
        return None;
    }
    Some(mask)
}

/// `-R full` or `-R hdrs`.
pub fn ret_code(value: &str) -> Option<u8> {
    match value.to_ascii_lowercase().as_str() {
        "full" => Some(ret::FULL),
        "hdrs" => Some(ret::HDRS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(argv0: &str, words: &[&str]) -> Result<Options, UsageError> {
        let args: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        parse(argv0, &args)
    }

    fn ok(words: &[&str]) -> Options {
        parse_words("sendmail", words).unwrap()
    }

    #[test]
    fn grouped_flags_and_glued_values() {
        let o = ok(&["-ti", "-FJoe User", "-f", "joe@example.com", "a@b", "c@d"]);
        assert!(o.extract);
        assert!(!o.dot_ends_input);
        assert_eq!(o.full_name.as_deref(), Some("Joe User"));
        assert_eq!(o.sender.as_deref(), Some("joe@example.com"));
        assert_eq!(o.recipients, ["a@b", "c@d"]);
        let o = ok(&["-tfjoe", "x"]);
        assert!(o.extract);
        assert_eq!(o.sender.as_deref(), Some("joe"));
        assert_eq!(ok(&["-r", "old@x"]).sender.as_deref(), Some("old@x"));
    }

    #[test]
    fn options_end_at_the_first_recipient_or_double_dash() {
        let o = ok(&["user", "-t"]);
        assert!(!o.extract);
        assert_eq!(o.recipients, ["user", "-t"]);
        assert_eq!(ok(&["--", "-odd"]).recipients, ["-odd"]);
    }

    #[test]
    fn dot_handling() {
        assert!(ok(&["u"]).dot_ends_input);
        assert!(!ok(&["-i", "u"]).dot_ends_input);
        assert!(!ok(&["-oi", "u"]).dot_ends_input);
        // Other -o options are accepted and change nothing.
        let o = ok(&["-oem", "-om", "-odb", "u"]);
        assert!(o.dot_ends_input);
        assert_eq!(o.mode, Mode::Enqueue);
        assert_eq!(
            ok(&["-oA/etc/aliases2"]).alias_maps.as_deref(),
            Some("/etc/aliases2")
        );
        assert_eq!(
            parse_words("sendmail", &["-oA"]),
            Err(UsageError::AliasPath)
        );
    }

    #[test]
    fn modes() {
        assert_eq!(ok(&["-bp"]).mode, Mode::Mailq);
        assert_eq!(ok(&["-q"]).mode, Mode::FlushQueue);
        assert_eq!(ok(&["-bi"]).mode, Mode::Newaliases);
        assert_eq!(ok(&["-I"]).mode, Mode::Newaliases);
        assert_eq!(ok(&["-bs"]).mode, Mode::StandAlone);
        assert_eq!(ok(&["-bd"]).mode, Mode::Daemon);
        assert_eq!(ok(&["-bl"]).mode, Mode::Daemon);
        assert_eq!(ok(&["-bh"]).mode, Mode::Ignore);
        assert_eq!(ok(&["-bm", "u"]).mode, Mode::Enqueue);
        assert!(ok(&["-bv", "u"]).verify);
        assert_eq!(
            parse_words("/usr/bin/mailq", &[]).unwrap().mode,
            Mode::Mailq
        );
        assert_eq!(
            parse_words("newaliases", &[]).unwrap().mode,
            Mode::Newaliases
        );
        assert_eq!(parse_words("mailq", &["-bm"]).unwrap().mode, Mode::Enqueue);
        assert_eq!(
            parse_words("sendmail", &["-bx"]),
            Err(UsageError::Unsupported('b', "x".into()))
        );
    }

    #[test]
    fn queue_options() {
        assert_eq!(
            ok(&["-qRexample.com"]).flush_site.as_deref(),
            Some("example.com")
        );
        // As in Postfix, the site is glued to -qR.
        assert_eq!(
            parse_words("sendmail", &["-qR", "example.com"]),
            Err(UsageError::FlushSite)
        );
        assert_eq!(
            ok(&["-qSexample.com"]).flush_site.as_deref(),
            Some("example.com")
        );
        assert_eq!(ok(&["-qIABC123"]).flush_id.as_deref(), Some("ABC123"));
        assert!(ok(&["-q30m"]).queue_interval);
        assert_eq!(
            parse_words("sendmail", &["-qR"]),
            Err(UsageError::FlushSite)
        );
        assert_eq!(
            parse_words("sendmail", &["-qX"]),
            Err(UsageError::BadQueueOption('X'))
        );
        assert!(parse_words("sendmail", &["-bp", "-qRx"]).is_err());
    }

    #[test]
    fn dsn_options() {
        let o = ok(&["-N", "success,delay", "-R", "hdrs", "-V", "env-1", "u"]);
        assert_eq!(o.dsn_notify, notify::SUCCESS | notify::DELAY);
        assert_eq!(o.dsn_ret, ret::HDRS);
        assert_eq!(o.dsn_envid.as_deref(), Some("env-1"));
        assert_eq!(ok(&["-Nnever"]).dsn_notify, notify::NEVER);
        assert_eq!(ok(&["-Rfull"]).dsn_ret, ret::FULL);
        let bad = ok(&["-N", "never,success", "-R", "most", "u"]);
        assert_eq!(bad.dsn_notify, 0);
        assert_eq!(bad.dsn_ret, 0);
        assert_eq!(bad.warnings.len(), 2);
        let long = "x".repeat(101);
        assert_eq!(ok(&["-V", &long]).dsn_envid, None);
    }

    #[test]
    fn other_options() {
        assert_eq!(ok(&["-B", "8BITMIME"]).encoding, Some("8bit"));
        assert_eq!(ok(&["-B7BIT"]).encoding, Some("7bit"));
        assert_eq!(
            parse_words("sendmail", &["-Bbinary"]),
            Err(UsageError::BadBody)
        );
        assert_eq!(
            ok(&["-C", "/etc/p2"]).config_dir.as_deref(),
            Some("/etc/p2")
        );
        assert_eq!(
            ok(&["-C/etc/p2/main.cf"]).config_dir.as_deref(),
            Some("/etc/p2")
        );
        assert_eq!(ok(&["-G"]).rewrite_context(), "remote");
        assert_eq!(ok(&[]).rewrite_context(), "local");
        assert_eq!(ok(&["-v", "-v"]).verbose, 2);
        // Accepted for compatibility, without effect.
        let o = ok(&[
            "-L", "label", "-U", "-x", "-m", "-c", "-hx", "-ex", "-pSMTP", "-Ax", "u",
        ]);
        assert_eq!(o.recipients, ["u"]);
        assert_eq!(
            parse_words("sendmail", &["-n"]),
            Err(UsageError::NotSupported('n'))
        );
        assert_eq!(
            parse_words("sendmail", &["-Xlog"]),
            Err(UsageError::Unsupported('X', "l".into()))
        );
        assert_eq!(
            parse_words("sendmail", &["-k"]),
            Err(UsageError::Usage("sendmail".into()))
        );
        assert_eq!(
            parse_words("sendmail", &["-f"]),
            Err(UsageError::Usage("sendmail".into()))
        );
    }

    #[test]
    fn conflicts() {
        assert!(matches!(
            parse_words("sendmail", &["-t", "-bp"]),
            Err(UsageError::Conflict(_))
        ));
        assert!(matches!(
            parse_words("sendmail", &["-bv", "-Nsuccess", "u"]),
            Err(UsageError::Conflict(_))
        ));
    }
}
