//! `postfix check`, in Postfix's two halves. The fatal half creates
//! missing queue directories and reads main.cf and master.cf: any problem
//! there stops `postfix start`. The warning half looks at owners and
//! modes (the queue tree, root's directories, the set-gid programs), at
//! damaged messages, and at the programs master.cf names.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libmail::config::main_cf::{decode, logical_lines};
use libmail::config::master_cf::{parse_entry, MasterEntry};
use libmail::config::ConfigError;
use libmail::log::{self, Severity};

use crate::instance::Instance;
use crate::services;

/// Problems found by the fatal half, each already logged as `fatal:`.
pub type Failed = usize;

/// The fatal half: on success, master.cf's entries for the warning half.
pub fn fatal_checks(instance: &Instance) -> Result<Vec<MasterEntry>, Failed> {
    if let Err(err) = instance.layout.create_missing() {
        log::error(err);
        log::log(
            Severity::Fatal,
            "unable to create missing queue directories",
        );
        return Err(1);
    }
    let mut failed = 0;
    for err in instance.config.validate() {
        log::log(Severity::Fatal, err);
        failed += 1;
    }
    match read_master_cf(&instance.master_cf()) {
        Ok(entries) if failed == 0 => Ok(entries),
        Ok(_) => Err(failed),
        Err(errors) => {
            for text in &errors {
                log::log(Severity::Fatal, text);
            }
            Err(failed + errors.len())
        }
    }
}

/// Every entry of master.cf, or every bad line (file and line named),
/// not just the first as a daemon reading it would stop at.
fn read_master_cf(path: &Path) -> Result<Vec<MasterEntry>, Vec<String>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(vec![format!("no {} file found", path.display())])
        }
        Err(source) => {
            let op = "open";
            let path = path.to_path_buf();
            return Err(vec![ConfigError::Io { op, path, source }.to_string()]);
        }
    };
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (line, text) in logical_lines(&decode(&bytes)) {
        match parse_entry(&text, line) {
            Ok(entry) => entries.push(entry),
            Err(reason) => errors.push(
                ConfigError::MasterCf {
                    path: path.to_path_buf(),
                    line,
                    reason,
                }
                .to_string(),
            ),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// How much to say about master.cf programs this build lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// `postfix check`: one warning per entry.
    Each,
    /// `postfix start`: one line for all of them.
    Summary,
}

/// The warning half: logs each problem as `warning:`.
pub fn warning_checks(instance: &Instance, entries: &[MasterEntry], detail: Detail) {
    for problem in instance.layout.check() {
        log::warning(problem);
    }
    let root = if instance.unprivileged() {
        instance.layout.accounts.me
    } else {
        0
    };
    let owner = if root == 0 {
        "root"
    } else {
        instance.layout.accounts.me_name.as_str()
    };
    for dir in [&instance.config_dir, &instance.daemon_directory] {
        check_root_tree(dir, root, owner);
    }
    check_setgid_programs(instance);
    check_corrupt(instance);
    let notes =
        services::check_programs(entries, &instance.daemon_directory, &instance.master_cf());
    match detail {
        Detail::Each => notes.iter().for_each(log::warning),
        Detail::Summary => {
            if let Some(line) = services::summary(&notes) {
                log::warning(line);
            }
        }
    }
}

/// Postfix's root-owned trees ($config_directory, $daemon_directory):
/// everything owned by root (the user, in unprivileged mode) and not
/// writable by group or others.
fn check_root_tree(top: &Path, uid: u32, owner: &str) {
    let mut pending = vec![top.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.uid() != uid {
            log::warning(format_args!("not owned by {owner}: {}", path.display()));
        }
        if !meta.file_type().is_symlink() && meta.mode() & 0o022 != 0 {
            log::warning(format_args!("group or other writable: {}", path.display()));
        }
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
}

/// postdrop and postqueue, once this build has them, must be set-gid
/// setgid_group and executable by everyone.
fn check_setgid_programs(instance: &Instance) {
    for name in ["postdrop", "postqueue"] {
        let path = instance.command_directory.join(name);
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        let accounts = &instance.layout.accounts;
        if !accounts.unprivileged && meta.gid() != accounts.setgid_gid {
            let group = &accounts.setgid_group;
            log::warning(format_args!(
                "not owned by group {group}: {}",
                path.display()
            ));
        }
        if meta.mode() & 0o2111 != 0o2111 {
            log::warning(format_args!(
                "not set-gid or not owner+group+world executable: {}",
                path.display()
            ));
        }
    }
}

/// Every file in corrupt/ is a message that could not be read.
fn check_corrupt(instance: &Instance) {
    let corrupt = instance.queue_directory.join("corrupt");
    let Ok(entries) = fs::read_dir(&corrupt) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let name = entry.file_name();
            log::warning(format_args!(
                "damaged message: corrupt/{}",
                name.to_string_lossy()
            ));
        }
    }
}
