//! Diagnostics in Postfix's form, `PROGRAM: warning: TEXT` and `PROGRAM:
//! fatal: TEXT`, on standard error. Library code that must warn and go on
//! (a skipped table line, a duplicate key) calls `warning`; the program
//! name is set once by `main`. These are `log`'s functions under their
//! older names: standard error as before, and the log too once
//! `log::init` has run (see log/mod.rs).

use std::sync::OnceLock;

static PROGRAM: OnceLock<String> = OnceLock::new();

/// Sets the name that prefixes every message; the first call wins.
pub fn set_program(name: &str) {
    let _ = PROGRAM.set(name.to_string());
}

/// The program name set by `set_program`, or the base name of argv[0].
pub fn program() -> &'static str {
    PROGRAM.get_or_init(|| {
        let argv0 = std::env::args().next().unwrap_or_default();
        match argv0.rsplit('/').next() {
            Some(base) if !base.is_empty() => base.to_string(),
            _ => "postfix".to_string(),
        }
    })
}

/// Prints `PROGRAM: warning: TEXT`.
pub fn warning(text: impl std::fmt::Display) {
    crate::log::warning(text);
}

/// Prints `PROGRAM: fatal: TEXT` and exits with status 1.
pub fn fatal(text: impl std::fmt::Display) -> ! {
    crate::log::fatal(text)
}

/// Prints `PROGRAM: TEXT` (Postfix's informational messages, as verbose
/// output).
pub fn info(text: impl std::fmt::Display) {
    crate::log::info(text);
}
