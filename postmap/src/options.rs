//! The command line shared by postmap and postalias, and newaliases' own.

use std::path::PathBuf;

use clap::{Arg, ArgAction, Command};
use libmail::tables::source::Duplicates;
use libmail::tables::OpenOptions;

use crate::Format;

/// What to do with the tables named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Build each table from its source file (or stdin with `-i`).
    Build,
    /// `-q key`, or `-q -` for keys on stdin.
    Query(String),
    /// `-d key`, or `-d -` for keys on stdin.
    Delete(String),
    /// `-s`.
    Dump,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub action: Action,
    pub config_dir: Option<PathBuf>,
    /// `-N`: store a terminating null with keys and values.
    pub null_terminate: bool,
    /// `-f`: do not fold keys to lower case.
    pub no_fold: bool,
    /// Fold all of Unicode, not only ASCII ($smtputf8_enable).
    pub utf8: bool,
    /// `-i`: add the entries on stdin to the existing table.
    pub incremental: bool,
    /// `-o`: keep root's ownership instead of the source file owner's.
    pub keep_root: bool,
    /// `-p`: mode 0644 instead of the source file's mode.
    pub default_mode: bool,
    pub duplicates: Duplicates,
    pub verbose: bool,
    pub tables: Vec<String>,
}

pub fn usage(format: Format) -> String {
    format!(
        "usage: {} [-Nfinoprsvw] [-c config_dir] [-d key] [-q key] [map_type:]file...",
        format.program()
    )
}

fn flag(short: char, name: &'static str) -> Arg {
    Arg::new(name).short(short).action(ArgAction::SetTrue)
}

fn command(format: Format) -> Command {
    Command::new(format.program())
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(Arg::new("config_dir").short('c').num_args(1))
        .arg(
            Arg::new("query")
                .short('q')
                .num_args(1)
                .allow_hyphen_values(true),
        )
        .arg(
            Arg::new("delete")
                .short('d')
                .num_args(1)
                .allow_hyphen_values(true),
        )
        .args([
            flag('N', "null"),
            flag('n', "no_null"),
            flag('f', "no_fold"),
            flag('i', "incremental"),
            flag('o', "keep_root"),
            flag('p', "default_mode"),
            flag('r', "replace"),
            flag('s', "dump"),
            flag('w', "quiet_duplicates"),
            Arg::new("verbose").short('v').action(ArgAction::Count),
        ])
        .arg(Arg::new("tables").num_args(0..).action(ArgAction::Append))
}

impl Options {
    /// How tables are opened for `-q` and `-s`, and keys folded.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            fold: !self.no_fold,
            utf8: self.utf8,
        }
    }
}

/// Parses the arguments after the program name.
pub fn parse(format: Format, args: Vec<String>) -> Result<Options, String> {
    let argv = std::iter::once(format.program().to_string()).chain(args);
    let matches = command(format)
        .try_get_matches_from(argv)
        .map_err(|_| usage(format))?;
    let on = |name: &str| matches.get_flag(name);
    let text = |name: &str| matches.get_one::<String>(name).cloned();
    let action = match (text("query"), text("delete"), on("dump")) {
        (None, None, false) => Action::Build,
        (Some(key), None, false) => Action::Query(key),
        (None, Some(key), false) => Action::Delete(key),
        (None, None, true) => Action::Dump,
        _ => return Err("specify only one of -s -q or -d".to_string()),
    };
    let tables: Vec<String> = matches
        .get_many::<String>("tables")
        .map(|values| values.cloned().collect())
        .unwrap_or_default();
    if tables.is_empty() {
        return Err(usage(format));
    }
    let duplicates = if on("replace") {
        Duplicates::Replace
    } else if on("quiet_duplicates") {
        Duplicates::KeepFirst
    } else {
        Duplicates::WarnKeepFirst
    };
    Ok(Options {
        action,
        config_dir: text("config_dir").map(PathBuf::from),
        null_terminate: on("null") && !on("no_null"),
        no_fold: on("no_fold"),
        utf8: true,
        incremental: on("incremental"),
        keep_root: on("keep_root"),
        default_mode: on("default_mode"),
        duplicates,
        verbose: matches.get_count("verbose") > 0,
        tables,
    })
}

/// newaliases takes sendmail's `-v` and `-oA`-style options it ignores;
/// the tables come from $alias_database.
pub fn parse_newaliases(args: Vec<String>) -> Result<Options, String> {
    let mut verbose = false;
    for arg in &args {
        match arg.as_str() {
            "-v" => verbose = true,
            other if other.starts_with("-o") || other.starts_with("-O") => {}
            _ => return Err("usage: newaliases [-v]".to_string()),
        }
    }
    Ok(Options {
        action: Action::Build,
        config_dir: None,
        null_terminate: false,
        no_fold: false,
        utf8: true,
        incremental: false,
        keep_root: false,
        default_mode: false,
        duplicates: Duplicates::WarnKeepFirst,
        verbose,
        tables: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn actions() {
        let o = parse(Format::Map, args(&["-q", "-", "hash:/x"])).unwrap();
        assert_eq!(o.action, Action::Query("-".into()));
        let o = parse(Format::Map, args(&["-r", "-N", "/x", "/y"])).unwrap();
        assert_eq!(o.action, Action::Build);
        assert_eq!(o.duplicates, Duplicates::Replace);
        assert!(o.null_terminate);
        assert_eq!(o.tables, ["/x", "/y"]);
        assert!(parse(Format::Map, args(&["-s", "-q", "k", "/x"])).is_err());
    }

    #[test]
    fn no_tables_is_a_usage_error() {
        let err = parse(Format::Alias, args(&["-q", "x"])).err().unwrap();
        assert!(err.starts_with("usage: postalias "), "{err}");
    }
}
