//! The queue directory tree and data_directory, described once: which
//! directories exist below $queue_directory, who owns them and with which
//! mode (Postfix's post-install and postfix-files rules). `postfix check`
//! and `postfix start` use `check` and `create_missing`, `postfix
//! set-permissions` uses `repair`; master and the daemons can use the same
//! table to find their directories.
//!
//! Ownership rules follow Postfix's postfix-script: the queue directory
//! itself and pid/ belong to root and are not group or other writable;
//! the message queues, private/ and public/ belong to mail_owner down to
//! the last file (sockets and fifos excepted: master creates those);
//! maildrop/ belongs to mail_owner, but the files inside to the users who
//! posted them; maildrop/ and public/ have the group setgid_group.
//!
//! In unprivileged mode (DESIGN.md §6: not root, or mail_owner is the
//! invoking user) everything belongs to that user: owners are checked
//! against it, groups are not checked, and `repair` changes modes only.

use std::fmt;
use std::fs::{self, DirBuilder, Metadata};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Group, Uid, User};
use thiserror::Error;

use crate::config::{Config, ConfigError};
use crate::error::strerror;

/// Who owns a directory of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Root,
    MailOwner,
}

/// One directory of the tree and its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dir {
    /// Below $queue_directory; "" is the queue directory itself.
    pub name: &'static str,
    pub owner: Owner,
    /// The directory's group must be setgid_group.
    pub setgid_group: bool,
    pub mode: u32,
    /// The owner applies to everything inside too (postfix-files "r").
    pub tree: bool,
}

const fn mail_queue(name: &'static str) -> Dir {
    Dir {
        name,
        owner: Owner::MailOwner,
        setgid_group: false,
        mode: 0o700,
        tree: true,
    }
}

/// The directories below (and including) $queue_directory, parents first.
pub const QUEUE_DIRS: [Dir; 15] = [
    Dir {
        name: "",
        owner: Owner::Root,
        setgid_group: false,
        mode: 0o755,
        tree: false,
    },
    mail_queue("active"),
    mail_queue("bounce"),
    mail_queue("corrupt"),
    mail_queue("defer"),
    mail_queue("deferred"),
    mail_queue("flush"),
    mail_queue("hold"),
    mail_queue("incoming"),
    mail_queue("private"),
    mail_queue("saved"),
    mail_queue("trace"),
    // Anyone in setgid_group may drop a file in; nobody may list it.
    Dir {
        name: "maildrop",
        owner: Owner::MailOwner,
        setgid_group: true,
        mode: 0o730,
        tree: false,
    },
    // setgid_group may reach the sockets inside.
    Dir {
        name: "public",
        owner: Owner::MailOwner,
        setgid_group: true,
        mode: 0o710,
        tree: true,
    },
    Dir {
        name: "pid",
        owner: Owner::Root,
        setgid_group: false,
        mode: 0o755,
        tree: false,
    },
];

/// $data_directory: caches and other files the mail system writes.
pub const DATA_DIR: Dir = mail_queue("");

/// Where master keeps its pid file, below $queue_directory.
pub const MASTER_PID_FILE: &str = "pid/master.pid";

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("file {}: parameter mail_owner: unknown user name value: {name}", main_cf.display())]
    UnknownUser { main_cf: PathBuf, name: String },
    #[error("file {}: parameter setgid_group: unknown group name: {name}", main_cf.display())]
    UnknownGroup { main_cf: PathBuf, name: String },
    #[error("file {}: parameter mail_owner: user {name} has privileged user ID", main_cf.display())]
    PrivilegedOwner { main_cf: PathBuf, name: String },
    #[error("{op} {}: {}", path.display(), strerror(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayoutError + 'a {
    move |source| LayoutError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The accounts the tree belongs to, resolved to numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    pub mail_owner: String,
    pub mail_uid: u32,
    pub setgid_group: String,
    pub setgid_gid: u32,
    /// Unprivileged mode: everything belongs to `me`, no owner changes.
    pub unprivileged: bool,
    /// The invoking (effective) user and its name.
    pub me: u32,
    pub me_name: String,
}

impl Accounts {
    /// Looks up mail_owner and setgid_group, and decides the mode: root
    /// with a mail_owner other than root is privileged; anybody else is
    /// unprivileged. Root with mail_owner = root is refused, as Postfix
    /// refuses a privileged mail_owner.
    pub fn lookup(
        mail_owner: &str,
        setgid_group: &str,
        main_cf: &Path,
    ) -> Result<Accounts, LayoutError> {
        let user =
            User::from_name(mail_owner)
                .ok()
                .flatten()
                .ok_or_else(|| LayoutError::UnknownUser {
                    main_cf: main_cf.to_path_buf(),
                    name: mail_owner.to_string(),
                })?;
        let group = Group::from_name(setgid_group)
            .ok()
            .flatten()
            .ok_or_else(|| LayoutError::UnknownGroup {
                main_cf: main_cf.to_path_buf(),
                name: setgid_group.to_string(),
            })?;
        let me = Uid::effective().as_raw();
        if me == 0 && user.uid.is_root() {
            return Err(LayoutError::PrivilegedOwner {
                main_cf: main_cf.to_path_buf(),
                name: mail_owner.to_string(),
            });
        }
        let me_name = User::from_uid(Uid::from_raw(me))
            .ok()
            .flatten()
            .map_or_else(|| me.to_string(), |u| u.name);
        Ok(Accounts {
            mail_owner: mail_owner.to_string(),
            mail_uid: user.uid.as_raw(),
            setgid_group: setgid_group.to_string(),
            setgid_gid: group.gid.as_raw(),
            unprivileged: me != 0,
            me,
            me_name,
        })
    }

    /// The uid and name a directory must have.
    fn owner(&self, owner: Owner) -> (u32, &str) {
        match (self.unprivileged, owner) {
            (true, _) => (self.me, &self.me_name),
            (false, Owner::Root) => (0, "root"),
            (false, Owner::MailOwner) => (self.mail_uid, &self.mail_owner),
        }
    }
}

/// One thing wrong with the tree, worded as Postfix's postfix-script
/// words it (the text follows `warning: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing(PathBuf),
    NotDirectory(PathBuf),
    Owner { path: PathBuf, owner: String },
    Group { path: PathBuf, group: String },
    Writable(PathBuf),
    Mode { path: PathBuf, mode: u32, want: u32 },
    Unreadable { path: PathBuf, reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing(path) => write!(f, "missing directory: {}", path.display()),
            Problem::NotDirectory(path) => write!(f, "not a directory: {}", path.display()),
            Problem::Owner { path, owner } => write!(f, "not owned by {owner}: {}", path.display()),
            Problem::Group { path, group } => {
                write!(f, "not owned by group {group}: {}", path.display())
            }
            Problem::Writable(path) => write!(f, "group or other writable: {}", path.display()),
            Problem::Mode { path, mode, want } => write!(
                f,
                "wrong permissions {mode:04o} (should be {want:04o}): {}",
                path.display()
            ),
            Problem::Unreadable { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

/// What `repair` did, and what it could not do.
#[derive(Debug, Default)]
pub struct Repair {
    /// One line per change: `created PATH`, `chown USER PATH`, `chmod 0700 PATH`.
    pub changes: Vec<String>,
    pub errors: Vec<LayoutError>,
}

/// A directory of the tree with its rules resolved to a path and numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub path: PathBuf,
    pub rule: Dir,
    pub uid: u32,
    pub owner_name: String,
    /// The group to check and set (privileged mode, setgid_group dirs).
    pub gid: Option<u32>,
}

/// The queue tree and data_directory of one Postfix instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub queue_directory: PathBuf,
    pub data_directory: PathBuf,
    pub accounts: Accounts,
}

impl Layout {
    /// The layout that main.cf describes.
    pub fn from_config(config: &Config) -> Result<Layout, LayoutError> {
        let accounts = Accounts::lookup(
            &config.string("mail_owner")?,
            &config.string("setgid_group")?,
            config.main_cf_path(),
        )?;
        Ok(Layout {
            queue_directory: PathBuf::from(config.string("queue_directory")?),
            data_directory: PathBuf::from(config.string("data_directory")?),
            accounts,
        })
    }

    /// master's pid file.
    pub fn master_pid_file(&self) -> PathBuf {
        self.queue_directory.join(MASTER_PID_FILE)
    }

    /// Every directory with its rules, parents first, data_directory last.
    pub fn places(&self) -> Vec<Place> {
        let queue = QUEUE_DIRS.iter().map(|rule| {
            let path = match rule.name {
                "" => self.queue_directory.clone(),
                name => self.queue_directory.join(name),
            };
            self.place(path, *rule)
        });
        let data = self.place(self.data_directory.clone(), DATA_DIR);
        queue.chain(std::iter::once(data)).collect()
    }

    fn place(&self, path: PathBuf, rule: Dir) -> Place {
        let (uid, name) = self.accounts.owner(rule.owner);
        let gid =
            (rule.setgid_group && !self.accounts.unprivileged).then_some(self.accounts.setgid_gid);
        Place {
            path,
            rule,
            uid,
            owner_name: name.to_string(),
            gid,
        }
    }

    /// Everything wrong with owners, groups and modes, in tree order.
    pub fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for place in self.places() {
            self.check_place(&place, &mut problems);
        }
        problems
    }

    fn check_place(&self, place: &Place, problems: &mut Vec<Problem>) {
        let meta = match fs::metadata(&place.path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                problems.push(Problem::Missing(place.path.clone()));
                return;
            }
            Err(err) => {
                problems.push(unreadable(&place.path, &err));
                return;
            }
        };
        if !meta.is_dir() {
            problems.push(Problem::NotDirectory(place.path.clone()));
            return;
        }
        self.check_dir(place, &meta, problems);
        if place.rule.tree {
            self.check_contents(place, problems);
        }
    }

    /// The directory itself: owner, group, mode, and for root's
    /// directories (and data_directory) no group or other write access.
    fn check_dir(&self, place: &Place, meta: &Metadata, problems: &mut Vec<Problem>) {
        let path = &place.path;
        if meta.uid() != place.uid {
            problems.push(Problem::Owner {
                path: path.clone(),
                owner: place.owner_name.clone(),
            });
        }
        if place.gid.is_some_and(|gid| meta.gid() != gid) {
            problems.push(Problem::Group {
                path: path.clone(),
                group: self.accounts.setgid_group.clone(),
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode != place.rule.mode {
            problems.push(Problem::Mode {
                path: path.clone(),
                mode,
                want: place.rule.mode,
            });
        }
        if place.rule.owner == Owner::Root && mode & 0o022 != 0 {
            problems.push(Problem::Writable(path.clone()));
        }
    }

    /// Everything below a "tree" directory belongs to its owner; below
    /// data_directory nothing is group or other writable either.
    fn check_contents(&self, place: &Place, problems: &mut Vec<Problem>) {
        let is_data = place.path == self.data_directory;
        let walked = walk(&place.path, &mut |path, meta| {
            if is_socket_or_fifo(meta) {
                return;
            }
            if meta.uid() != place.uid {
                problems.push(Problem::Owner {
                    path: path.to_path_buf(),
                    owner: place.owner_name.clone(),
                });
            }
            if is_data && !meta.file_type().is_symlink() && meta.mode() & 0o022 != 0 {
                problems.push(Problem::Writable(path.to_path_buf()));
            }
        });
        if let Err((path, err)) = walked {
            problems.push(unreadable(&path, &err));
        }
    }

    /// Creates the directories that do not exist, with their owners and
    /// modes (Postfix's post-install create-missing). Returns their paths.
    pub fn create_missing(&self) -> Result<Vec<PathBuf>, LayoutError> {
        let mut created = Vec::new();
        for place in self.places() {
            if fs::symlink_metadata(&place.path).is_ok() {
                continue;
            }
            self.create(&place)?;
            created.push(place.path);
        }
        Ok(created)
    }

    fn create(&self, place: &Place) -> Result<(), LayoutError> {
        let path = &place.path;
        if let Some(parent) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(io_error("create directory", parent))?;
        }
        DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(io_error("create directory", path))?;
        if !self.accounts.unprivileged {
            std::os::unix::fs::chown(path, Some(place.uid), place.gid)
                .map_err(io_error("chown", path))?;
        }
        set_mode(path, place.rule.mode)
    }

    /// Creates what is missing and sets owners (privileged mode only) and
    /// modes as they should be: the directories themselves, and the owner
    /// of everything inside a "tree" directory. Goes on after an error.
    pub fn repair(&self) -> Repair {
        let mut repair = Repair::default();
        for place in self.places() {
            self.repair_place(&place, &mut repair);
        }
        repair
    }

    fn repair_place(&self, place: &Place, repair: &mut Repair) {
        let path = &place.path;
        if fs::symlink_metadata(path).is_err() {
            match self.create(place) {
                Ok(()) => repair.changes.push(format!("created {}", path.display())),
                Err(err) => repair.errors.push(err),
            }
            return;
        }
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(err) => return repair.errors.push(io_error("stat", path)(err)),
        };
        if !self.accounts.unprivileged {
            self.repair_owner(place, &meta, repair);
        }
        let mode = meta.mode() & 0o7777;
        if mode != place.rule.mode {
            match set_mode(path, place.rule.mode) {
                Ok(()) => {
                    repair
                        .changes
                        .push(format!("chmod {:04o} {}", place.rule.mode, path.display()))
                }
                Err(err) => repair.errors.push(err),
            }
        }
    }

    fn repair_owner(&self, place: &Place, meta: &Metadata, repair: &mut Repair) {
        let path = &place.path;
        let group_wrong = place.gid.is_some_and(|gid| meta.gid() != gid);
        if meta.uid() != place.uid || group_wrong {
            match std::os::unix::fs::chown(path, Some(place.uid), place.gid) {
                Ok(()) => repair.changes.push(chown_text(place, path)),
                Err(err) => repair.errors.push(io_error("chown", path)(err)),
            }
        }
        if !place.rule.tree {
            return;
        }
        let walked = walk(path, &mut |inner, meta| {
            let group_wrong = place.gid.is_some_and(|gid| meta.gid() != gid);
            if is_socket_or_fifo(meta) || (meta.uid() == place.uid && !group_wrong) {
                return;
            }
            match std::os::unix::fs::lchown(inner, Some(place.uid), place.gid) {
                Ok(()) => repair.changes.push(chown_text(place, inner)),
                Err(err) => repair.errors.push(io_error("chown", inner)(err)),
            }
        });
        if let Err((path, err)) = walked {
            repair.errors.push(io_error("scan directory", &path)(err));
        }
    }
}

fn chown_text(place: &Place, path: &Path) -> String {
    match place.gid {
        Some(gid) => format!("chown {}:{gid} {}", place.owner_name, path.display()),
        None => format!("chown {} {}", place.owner_name, path.display()),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LayoutError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_error("chmod", path))
}

fn unreadable(path: &Path, err: &io::Error) -> Problem {
    Problem::Unreadable {
        path: path.to_path_buf(),
        reason: strerror(err),
    }
}

fn is_socket_or_fifo(meta: &Metadata) -> bool {
    let kind = meta.file_type();
    kind.is_socket() || kind.is_fifo()
}

/// Calls `visit` for everything below `top` (not `top` itself), without
/// following symbolic links. Stops at the first directory it cannot read.
fn walk(top: &Path, visit: &mut dyn FnMut(&Path, &Metadata)) -> Result<(), (PathBuf, io::Error)> {
    let mut pending = vec![top.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| (dir.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| (dir.clone(), e))?;
            let path = entry.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Removed meanwhile (a queue file delivered): nothing to check.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err((path, err)),
            };
            visit(&path, &meta);
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// Most permission trouble in the queue comes from owners or modes gone
/// wrong (a restore, a copy as root): the words the queue tools add to a
/// "Permission denied" to say how to put them right.
pub fn permission_hint(err: &std::io::Error) -> &'static str {
    match err.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (queue ownership or permissions are wrong: run \"postfix set-permissions\" as root)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        crate::test_support::temp_dir(&format!("queue-layout-{name}"))
    }

    /// A layout in unprivileged mode for the user running the tests, so
    /// that no owner needs changing.
    fn layout(top: &Path) -> Layout {
        let me = Uid::effective().as_raw();
        let gid = nix::unistd::Gid::effective().as_raw();
        Layout {
            queue_directory: top.join("spool"),
            data_directory: top.join("lib/postfix"),
            accounts: Accounts {
                mail_owner: "me".into(),
                mail_uid: me,
                setgid_group: "mine".into(),
                setgid_gid: gid,
                unprivileged: true,
                me,
                me_name: "me".into(),
            },
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").mode() & 0o7777
    }

    #[test]
    fn table_is_postfixs() {
        let names: Vec<&str> = QUEUE_DIRS.iter().map(|d| d.name).collect();
        assert_eq!(
            names,
            [
                "", "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
                "incoming", "private", "saved", "trace", "maildrop", "public", "pid"
            ]
        );
        let maildrop = QUEUE_DIRS[12];
        assert_eq!(
            (maildrop.mode, maildrop.setgid_group, maildrop.tree),
            (0o730, true, false)
        );
        let public = QUEUE_DIRS[13];
        assert_eq!((public.mode, public.setgid_group), (0o710, true));
        assert_eq!((DATA_DIR.owner, DATA_DIR.mode), (Owner::MailOwner, 0o700));
    }

    #[test]
    fn creates_missing_directories_with_their_modes() {
        let top = temp_dir("create");
        let layout = layout(&top);
        let problems = layout.check();
        assert_eq!(problems.len(), 16, "{problems:?}");
        assert!(matches!(problems[0], Problem::Missing(_)));
        let created = layout.create_missing().expect("create");
        assert_eq!(created.len(), 16);
        assert_eq!(mode(&top.join("spool")), 0o755);
        assert_eq!(mode(&top.join("spool/active")), 0o700);
        assert_eq!(mode(&top.join("spool/maildrop")), 0o730);
        assert_eq!(mode(&top.join("spool/public")), 0o710);
        assert_eq!(mode(&top.join("spool/pid")), 0o755);
        assert_eq!(mode(&top.join("lib/postfix")), 0o700);
        assert_eq!(layout.check(), []);
        assert!(layout.create_missing().expect("again").is_empty());
        let _ = fs::remove_dir_all(top);
    }

    #[test]
    fn reports_and_repairs_modes() {
        let top = temp_dir("modes");
        let layout = layout(&top);
        layout.create_missing().expect("create");
        let active = top.join("spool/active");
        let pid = top.join("spool/pid");
        set_mode(&active, 0o755).expect("chmod");
        set_mode(&pid, 0o777).expect("chmod");
        let text: Vec<String> = layout.check().iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                format!(
                    "wrong permissions 0755 (should be 0700): {}",
                    active.display()
                ),
                format!("wrong permissions 0777 (should be 0755): {}", pid.display()),
                format!("group or other writable: {}", pid.display()),
            ]
        );
        let repair = layout.repair();
        assert!(repair.errors.is_empty(), "{:?}", repair.errors);
        assert_eq!(repair.changes.len(), 2, "{:?}", repair.changes);
        assert_eq!(layout.check(), []);
        let _ = fs::remove_dir_all(top);
    }

    #[test]
    fn data_directory_contents_must_not_be_writable_by_others() {
        let top = temp_dir("data");
        let layout = layout(&top);
        layout.create_missing().expect("create");
        let cache = top.join("lib/postfix/verify_cache");
        fs::write(&cache, b"x").expect("write");
        set_mode(&cache, 0o666).expect("chmod");
        assert_eq!(layout.check(), [Problem::Writable(cache)]);
        let _ = fs::remove_dir_all(top);
    }

    #[test]
    fn a_file_where_a_directory_belongs() {
        let top = temp_dir("file");
        let layout = layout(&top);
        layout.create_missing().expect("create");
        let hold = top.join("spool/hold");
        fs::remove_dir(&hold).expect("rmdir");
        fs::write(&hold, b"").expect("write");
        assert_eq!(layout.check(), [Problem::NotDirectory(hold)]);
        let _ = fs::remove_dir_all(top);
    }

    #[test]
    fn problem_texts_are_postfixs() {
        let path = PathBuf::from("/var/spool/postfix/active");
        let owner = Problem::Owner {
            path: path.clone(),
            owner: "postfix".into(),
        };
        assert_eq!(
            owner.to_string(),
            "not owned by postfix: /var/spool/postfix/active"
        );
        let group = Problem::Group {
            path: PathBuf::from("/var/spool/postfix/public"),
            group: "postdrop".into(),
        };
        assert_eq!(
            group.to_string(),
            "not owned by group postdrop: /var/spool/postfix/public"
        );
    }
}
