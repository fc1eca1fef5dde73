//! Whose privileges a delivery runs with. local(8) runs as root and
//! takes on the recipient's (or the alias owner's, or default_privs')
//! uid and gid for each delivery: effective ids only, with the saved
//! uid kept as root so that it can switch back without a fork
//! (DESIGN.md §6, §11). Started by anybody else (unprivileged mode), it
//! delivers everything as itself.

use nix::unistd::{getegid, geteuid, getgroups, setegid, seteuid, setgroups, Gid, Uid};

/// A uid and gid to deliver as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

impl Identity {
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// The process's own privileges and how to switch away from them.
#[derive(Debug, Clone)]
pub struct Privileges {
    privileged: bool,
    own: Identity,
    own_groups: Vec<Gid>,
}

impl Privileges {
    /// Privileged when running as root, unless `unprivileged` says not
    /// to switch anyway (tests).
    pub fn detect(unprivileged: bool) -> Privileges {
        let own = Identity {
            uid: geteuid().as_raw(),
            gid: getegid().as_raw(),
        };
        Privileges {
            privileged: own.is_root() && !unprivileged,
            own,
            own_groups: getgroups().unwrap_or_default(),
        }
    }

    pub fn is_privileged(&self) -> bool {
        self.privileged
    }

    /// Who a delivery meant for `wanted` really runs as.
    pub fn effective(&self, wanted: Identity) -> Identity {
        if self.privileged {
            wanted
        } else {
            self.own
        }
    }

    /// For commands: the uid/gid the child takes, if it can take one.
    pub fn child_user(&self, wanted: Identity) -> Option<(u32, u32)> {
        self.privileged.then_some((wanted.uid, wanted.gid))
    }

    /// Runs `work` with the effective uid/gid of `who` (and `who`'s gid
    /// as the only group), then returns to root. Failing to return is
    /// fatal: going on with the wrong privileges is not an option.
    pub fn run_as<T>(&self, who: Identity, work: impl FnOnce() -> T) -> std::io::Result<T> {
        if !self.privileged || who == self.own {
            return Ok(work());
        }
        let gid = Gid::from_raw(who.gid);
        setgroups(&[gid])?;
        setegid(gid)?;
        if let Err(err) = seteuid(Uid::from_raw(who.uid)) {
            self.restore();
            return Err(err.into());
        }
        let result = work();
        self.restore();
        Ok(result)
    }

    fn restore(&self) {
        let restored = seteuid(Uid::from_raw(self.own.uid))
            .and_then(|()| setegid(Gid::from_raw(self.own.gid)))
            .and_then(|()| setgroups(&self.own_groups));
        if let Err(err) = restored {
            libmail::msg::fatal(format!("cannot restore root privileges: {err}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprivileged_mode_keeps_the_own_identity() {
        let p = Privileges::detect(true);
        let other = Identity {
            uid: 12345,
            gid: 12345,
        };
        assert!(!p.is_privileged());
        assert_eq!(p.effective(other).uid, geteuid().as_raw());
        assert_eq!(p.child_user(other), None);
        assert_eq!(
            p.run_as(other, || geteuid().as_raw()).unwrap(),
            geteuid().as_raw()
        );
    }

    /// Switching ids changes every thread of the process, so the check
    /// runs in a test process of its own (the test binary run again for
    /// this one test).
    #[test]
    fn privileged_switch_and_return() {
        if std::env::var_os("LOCAL_PRIVILEGE_TEST").is_some() {
            return switch_and_return();
        }
        if !geteuid().is_root() {
            return;
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "privileges::tests::privileged_switch_and_return"])
            .env("LOCAL_PRIVILEGE_TEST", "1")
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        assert!(String::from_utf8_lossy(&status.stdout).contains("1 passed"));
    }

    fn switch_and_return() {
        let p = Privileges::detect(false);
        assert!(p.is_privileged());
        let nobody = Identity {
            uid: 65534,
            gid: 65534,
        };
        let seen = p
            .run_as(nobody, || (geteuid().as_raw(), getegid().as_raw()))
            .unwrap();
        assert_eq!(seen, (65534, 65534));
        assert!(geteuid().is_root());
        assert_eq!(getegid().as_raw(), 0);
    }
}
