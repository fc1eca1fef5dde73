//! Typed logging errors. Each renders as the text that follows
//! `PROGRAM: fatal: ` and reads like Postfix's message for the same fault.

use std::path::PathBuf;
use thiserror::Error;

use crate::config::ConfigError;
use crate::error::strerror;

#[derive(Debug, Error)]
pub enum LogError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// syslog_facility names no facility this system has.
    #[error("file {}: parameter syslog_facility: unrecognized value: {value}", main_cf.display())]
    Facility { main_cf: PathBuf, value: String },
    /// maillog_file lies outside every maillog_file_prefixes entry.
    #[error("maillog_file value '{path}' does not match any prefix in maillog_file_prefixes")]
    Prefix { path: String },
    #[error("open logfile '{}': {}", path.display(), strerror(source))]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("logfile '{}' write error: {}", path.display(), strerror(source))]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("syslog write error: {0}")]
    Syslog(String),
    /// `postfix logrotate` needs maillog_file, its suffix and compressor.
    #[error("empty '{0}' parameter value - logfile rotation failed")]
    EmptyParameter(&'static str),
    /// /dev/stdout and other devices are never renamed.
    #[error("not rotating '{0}'")]
    NotRotating(String),
    #[error("bad maillog_file_rotate_suffix value '{0}': not a valid strftime format")]
    Suffix(String),
    #[error("logfile '{}' rotation failed: {reason}", path.display())]
    Rotate { path: PathBuf, reason: String },
}
