#![forbid(unsafe_code)]
//! postmap and postalias: one program in two source formats. Both build
//! indexed tables (hash:, btree:, cdb:) from a source file, query any table
//! type (`-q`), list (`-s`) and delete (`-d`); postalias reads aliases(5)
//! files, and as `newaliases` rebuilds every table in $alias_database.

mod build;
mod options;
mod query;

use std::process::ExitCode;

use libmail::config::Config;
use libmail::msg;

pub use options::{Action, Options};

/// Which source format, hence which program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// postmap's `key whitespace value`.
    Map,
    /// aliases(5)'s `name: value, value`.
    Alias,
}

impl Format {
    pub fn program(self) -> &'static str {
        match self {
            Format::Map => "postmap",
            Format::Alias => "postalias",
        }
    }
}

/// How a run ended, beyond success.
pub enum Failure {
    /// `-q`/`-d`: no table had the key (exit 1, nothing printed).
    NotFound,
    /// A table could not answer now, e.g. its database is down (exit 75,
    /// EX_TEMPFAIL, so scripts can tell it from "not found").
    Temporary(String),
    /// Anything else: `fatal:` and exit 1.
    Fatal(String),
}

impl From<String> for Failure {
    fn from(text: String) -> Failure {
        Failure::Fatal(text)
    }
}

const EX_TEMPFAIL: u8 = 75;

/// The program: `format` says which source format; invoked as
/// `newaliases`, postalias rebuilds $alias_database.
pub fn main(format: Format) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let newaliases = format == Format::Alias && msg::program() == "newaliases";
    if !newaliases {
        msg::set_program(format.program());
    }
    let parsed = if newaliases {
        options::parse_newaliases(args)
    } else {
        options::parse(format, args)
    };
    let result = parsed
        .map_err(Failure::Fatal)
        .and_then(|options| run(format, newaliases, options));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::NotFound) => ExitCode::FAILURE,
        Err(Failure::Temporary(text)) => {
            eprintln!("{}: fatal: {text}", msg::program());
            ExitCode::from(EX_TEMPFAIL)
        }
        Err(Failure::Fatal(text)) => {
            eprintln!("{}: fatal: {text}", msg::program());
            ExitCode::FAILURE
        }
    }
}

fn run(format: Format, newaliases: bool, mut options: Options) -> Result<(), Failure> {
    let config = Config::load(options.config_dir.as_deref()).map_err(|e| e.to_string())?;
    for warning in &config.warnings {
        msg::warning(warning);
    }
    let default_type = config
        .string("default_database_type")
        .map_err(|e| e.to_string())?;
    options.utf8 = config.bool("smtputf8_enable").map_err(|e| e.to_string())?;
    if newaliases {
        let databases = config.string("alias_database").map_err(|e| e.to_string())?;
        options.tables = libmail::config::value::split_list(&databases)
            .into_iter()
            .map(str::to_string)
            .collect();
    }
    let specs: Vec<String> = options
        .tables
        .iter()
        .map(|table| with_type(table, &default_type))
        .collect();
    match &options.action {
        Action::Build => build::build_all(format, &options, &specs),
        Action::Query(key) => query::query(format, &options, &specs, key),
        Action::Delete(key) => build::delete(format, &options, &specs, key),
        Action::Dump => query::dump(format, &options, &specs),
    }
}

/// `type:name`, with $default_database_type when no type is given.
fn with_type(table: &str, default_type: &str) -> String {
    if libmail::tables::has_type(table) {
        table.to_string()
    } else {
        format!("{default_type}:{table}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_type_is_added() {
        assert_eq!(
            with_type("/etc/postfix/access", "hash"),
            "hash:/etc/postfix/access"
        );
        assert_eq!(with_type("cdb:/etc/x", "hash"), "cdb:/etc/x");
        assert_eq!(with_type("relative", "hash"), "hash:relative");
        assert_eq!(with_type(":x", "hash"), ":x");
    }
}
