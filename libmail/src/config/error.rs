//! Typed configuration errors. Each renders as the text that follows
//! `PROGRAM: fatal: ` in a Postfix-style message.

use std::path::PathBuf;
use thiserror::Error;

use crate::error::strerror;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{op} {}: {}", path.display(), strerror(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}, line {line}: missing '=' after attribute name: \"{name}\"", path.display())]
    MissingEquals {
        path: PathBuf,
        line: usize,
        name: String,
    },
    #[error("{}, line {line}: missing attribute name", path.display())]
    MissingName { path: PathBuf, line: usize },
    #[error("file {}: line {line}: {reason}", path.display())]
    MasterCf {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{0}")]
    Expand(#[from] ExpandError),
    #[error("{location}{reason}")]
    BadValue { location: Location, reason: String },
}

/// Where a parameter value came from, for messages: `FILE, line N: `, or
/// nothing for a built-in default or a command-line override.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub path: Option<PathBuf>,
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(path) if self.line > 0 => write!(f, "{}, line {}: ", path.display(), self.line),
            Some(path) => write!(f, "{}: ", path.display()),
            None => Ok(()),
        }
    }
}

/// Failures of `$name` expansion.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ExpandError {
    /// A parameter refers to itself, directly or through others.
    #[error("unreasonable macro call nesting: \"{0}\"")]
    Loop(String),
    /// Malformed `${...}` syntax.
    #[error("{reason} in \"{text}\"")]
    Syntax { text: String, reason: String },
}
