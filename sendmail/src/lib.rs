#![forbid(unsafe_code)]
//! sendmail(1) and postdrop(1): local mail submission. sendmail reads a
//! message and writes it, as cleanup requests, to postdrop, which checks
//! the stream and makes it a file in the maildrop queue for pickup(8).

pub mod address;
pub mod client;
pub mod input;
pub mod options;
pub mod postdrop;
pub mod protocol;
pub mod standalone;
pub mod submission;

/// sendmail(1)'s exit codes (sysexits.h).
pub mod exit {
    pub const USAGE: i32 = 64;
    pub const DATAERR: i32 = 65;
    pub const NOUSER: i32 = 67;
    pub const UNAVAILABLE: i32 = 69;
    pub const SOFTWARE: i32 = 70;
    pub const OSERR: i32 = 71;
    pub const TEMPFAIL: i32 = 75;
    pub const NOPERM: i32 = 77;
    pub const CONFIG: i32 = 78;
}

/// `PROGRAM: fatal: TEXT` on standard error and in the log, then exit with
/// `status` (Postfix's msg_fatal_status()).
pub fn fatal_status(status: i32, text: impl std::fmt::Display) -> ! {
    libmail::log::log(libmail::log::Severity::Fatal, text);
    std::process::exit(status)
}

/// The login name of a uid, as authorized_submit_users and the default
/// sender see it.
pub fn login_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|user| user.name)
}

/// Whether the user may submit mail (authorized_submit_users); `Err`
/// names the user as Postfix does, `name(uid)`.
pub fn check_submit_acl(config: &libmail::config::Config, uid: u32) -> Result<(), String> {
    let name = login_name(uid).unwrap_or_else(|| format!("uid:{uid}"));
    let acl = config
        .string("authorized_submit_users")
        .map_err(|e| e.to_string())?;
    let mut list = libmail::match_list::DomainList::new(&acl, false).map_err(|e| e.to_string())?;
    match list.matches(&name) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("User {name}({uid}) is not allowed to submit mail")),
        Err(err) => Err(format!(
            "authorized_submit_users lookup error for {name}: {err}"
        )),
    }
}
