//! The command line, read as Postfix's getopt("c:d:e:f:h:H:pr:sSv") reads
//! it: options may be clustered (`-sp`, `-dB822221522`), they end at the
//! first word that is not an option (or at `--`), and the words after
//! them name queues.

use std::path::PathBuf;

pub const USAGE: &str = "usage: postsuper [-c config_dir] [-d queue_id (delete)] \
[-e queue_id (expire)] [-f queue_id (expire and/or un-hold)] [-h queue_id (hold)] \
[-H queue_id (un-hold)] [-p (purge temporary files)] [-r queue_id (requeue)] \
[-s (structure fix)] [-S (redundant structure fix)][-v (verbose)] [queue...]";

/// What to do to a message, in the order postsuper does (and reports) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// `-r`: back to maildrop/, through pickup and cleanup again.
    Requeue,
    /// `-d`.
    Delete,
    /// `-e`: mark for expiration, leave it where it is.
    Expire,
    /// `-f`: mark for expiration and release it from hold.
    ExpireRelease,
    /// `-h`.
    Hold,
    /// `-H`.
    Release,
}

/// Which structure check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Structure {
    #[default]
    None,
    /// `-s`: short names must match the inode.
    Check,
    /// `-S`: long names too.
    Redundant,
}

/// The parsed command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub config_dir: Option<PathBuf>,
    pub verbose: u32,
    pub structure: Structure,
    pub purge: bool,
    /// Each `-d ID` (and the others) in command-line order; the ID may be
    /// `ALL` or `-`.
    pub requests: Vec<(Action, String)>,
    pub queues: Vec<String>,
}

impl Options {
    /// Whether `ALL` was given for `action`.
    pub fn all(&self, action: Action) -> bool {
        self.requests
            .iter()
            .any(|(a, id)| *a == action && id == "ALL")
    }

    /// Whether `action` was asked for at all (its count is reported).
    pub fn wants(&self, action: Action) -> bool {
        self.requests.iter().any(|(a, _)| *a == action)
    }

    /// Whether any action names messages one by one: those must not run
    /// after the structure check renamed files.
    pub fn has_ids(&self) -> bool {
        self.requests
            .iter()
            .any(|(action, id)| id != "ALL" && !self.all(*action))
    }

    /// With no option at all, postsuper checks the structure and purges
    /// temporary files.
    fn apply_default(&mut self) {
        if self.requests.is_empty() && self.structure == Structure::None && !self.purge {
            self.structure = Structure::Check;
            self.purge = true;
        }
    }
}

/// Why the command line was refused: the line getopt prints (if any),
/// then the usage as a fatal error.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError {
    pub getopt: Option<String>,
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Options, UsageError> {
    let mut options = Options::default();
    let mut words = args.iter();
    let mut rest: Vec<String> = Vec::new();
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        let Some(letters) = word.strip_prefix('-').filter(|l| !l.is_empty()) else {
            rest.push(word.clone());
            break;
        };
        for (at, letter) in letters.char_indices() {
            if takes_argument(letter) {
                let attached = &letters[at + letter.len_utf8()..];
                let value = if attached.is_empty() {
                    words.next().cloned().ok_or_else(|| UsageError {
                        getopt: Some(format!("option requires an argument -- '{letter}'")),
                    })?
                } else {
                    attached.to_string()
                };
                take(&mut options, letter, value);
                break;
            }
            flag(&mut options, letter)?;
        }
    }
    rest.extend(words.cloned());
    options.queues = rest;
    options.apply_default();
    Ok(options)
}

fn takes_argument(letter: char) -> bool {
    matches!(letter, 'c' | 'd' | 'e' | 'f' | 'h' | 'H' | 'r')
}

fn take(options: &mut Options, letter: char, value: String) {
    let action = match letter {
        'c' => {
            options.config_dir = Some(PathBuf::from(value));
            return;
        }
        'd' => Action::Delete,
        'e' => Action::Expire,
        'f' => Action::ExpireRelease,
        'h' => Action::Hold,
        'H' => Action::Release,
        _ => Action::Requeue,
    };
    options.requests.push((action, value));
}

fn flag(options: &mut Options, letter: char) -> Result<(), UsageError> {
    match letter {
        'p' => options.purge = true,
        's' if options.structure == Structure::None => options.structure = Structure::Check,
        's' => {}
        'S' => options.structure = Structure::Redundant,
        'v' => options.verbose += 1,
        _ => {
            return Err(UsageError {
                getopt: Some(format!("invalid option -- '{letter}'")),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Options, UsageError> {
        let args: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        parse(&args)
    }

    #[test]
    fn no_options_mean_structure_check_and_purge() {
        let options = parse_words(&[]).unwrap();
        assert_eq!(options.structure, Structure::Check);
        assert!(options.purge);
        let options = parse_words(&["-v", "deferred"]).unwrap();
        assert_eq!(options.structure, Structure::Check);
        assert_eq!(options.queues, ["deferred"]);
    }

    #[test]
    fn ids_and_queues() {
        let options = parse_words(&["-d", "ALL", "-dB8222215", "deferred", "hold"]).unwrap();
        assert_eq!(
            options.requests,
            [
                (Action::Delete, "ALL".to_string()),
                (Action::Delete, "B8222215".to_string())
            ]
        );
        assert!(options.all(Action::Delete));
        assert!(!options.has_ids(), "ALL makes the IDs moot");
        assert_eq!(options.queues, ["deferred", "hold"]);
        assert_eq!(options.structure, Structure::None);
        assert!(!options.purge);
        let options = parse_words(&["-h", "-", "-H", "ABC123"]).unwrap();
        assert!(options.has_ids());
        assert!(options.wants(Action::Release) && !options.wants(Action::Delete));
    }

    #[test]
    fn clusters_and_end_of_options() {
        let options = parse_words(&["-spv", "-c/etc/x", "--", "-d"]).unwrap();
        assert_eq!(options.structure, Structure::Check);
        assert!(options.purge);
        assert_eq!(options.verbose, 1);
        assert_eq!(options.config_dir, Some(PathBuf::from("/etc/x")));
        assert_eq!(options.queues, ["-d"]);
        let options = parse_words(&["-sS"]).unwrap();
        assert_eq!(options.structure, Structure::Redundant);
        // Options stop at the first queue name, as with Postfix's "+".
        let options = parse_words(&["-d", "ALL", "deferred", "-v"]).unwrap();
        assert_eq!(options.queues, ["deferred", "-v"]);
        assert_eq!(options.verbose, 0);
    }

    #[test]
    fn usage_errors() {
        assert_eq!(
            parse_words(&["-x"]).unwrap_err().getopt.as_deref(),
            Some("invalid option -- 'x'")
        );
        assert_eq!(
            parse_words(&["-s", "-d"]).unwrap_err().getopt.as_deref(),
            Some("option requires an argument -- 'd'")
        );
    }
}
