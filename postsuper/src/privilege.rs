//! Who may run postsuper, and as whom it works. Root may, and works as
//! mail_owner, as Postfix's postsuper does: the daemons handle the queue
//! with those privileges, so directories it makes get the right owner,
//! and a compromised queue cannot lead root astray. mail_owner itself may
//! too: that is the unprivileged mode (DESIGN.md §6), where the whole
//! mail system runs as one user. Nobody else.

use nix::unistd::{Gid, Uid, User};

use libmail::config::Config;

use crate::error::SuperError;

pub const NOT_ROOT: &str = "use of this command is reserved for the superuser";

/// The account to switch to (None: already running as it).
pub fn check_caller(config: &Config) -> Result<Option<User>, SuperError> {
    if Uid::current() != Uid::effective() || Gid::current() != Gid::effective() {
        return Err(SuperError::Privilege(
            "this postfix command must not run as a set-uid process".into(),
        ));
    }
    let name = config.string("mail_owner")?;
    let owner = User::from_name(&name).ok().flatten();
    let me = Uid::current();
    match owner {
        Some(owner) if me.is_root() => Ok(Some(owner)),
        Some(owner) if owner.uid == me => Ok(None),
        None if me.is_root() => Err(SuperError::Privilege(format!(
            "file {}: parameter mail_owner: unknown user name value: {name}",
            config.main_cf_path().display()
        ))),
        _ => Err(SuperError::Privilege(NOT_ROOT.into())),
    }
}

/// Root becomes mail_owner, for good.
pub fn become_owner(owner: &User) -> Result<(), SuperError> {
    let failed = |what: &str, err: nix::Error| SuperError::Privilege(format!("{what}: {err}"));
    nix::unistd::setgroups(&[owner.gid]).map_err(|e| failed("setgroups", e))?;
    nix::unistd::setgid(owner.gid).map_err(|e| failed("setgid", e))?;
    nix::unistd::setuid(owner.uid).map_err(|e| failed("setuid", e))?;
    Ok(())
}
