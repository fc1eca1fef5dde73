//! $config_directory/postfix-files, the installer's list of everything
//! it put in place with owner, group and mode (format in etc/postfix-files).
//! `postfix set-permissions` applies it to the installed programs, manual
//! pages and directories; configuration files ("conf") keep whatever the
//! administrator gave them, the queue tree is queue_layout's, and files at
//! fixed system paths (/etc/init.d/postfix) are the installer's: an
//! instance whose paths main.cf moved elsewhere (`-c`, tests) must not
//! touch the system's.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libmail::config::expand::references;
use libmail::config::Config;
use libmail::error::strerror;
use libmail::queue_layout::Layout;
use nix::unistd::{Group, User};

/// One line of postfix-files, with parameters expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: String,
    pub owner: String,
    /// `None` for "-": the group is left as it is.
    pub group: Option<String>,
    pub mode: u32,
    /// Flag "r": the owner applies to everything inside.
    pub recursive: bool,
    /// The path starts from an installation parameter (not a fixed
    /// system path such as /etc/init.d).
    pub from_parameter: bool,
}

/// Reads postfix-files. Entries that use a parameter set to "no"
/// (html_directory = no) are left out, as the installer leaves them out.
pub fn read(file: &Path, config: &Config) -> Result<Vec<Entry>, String> {
    let text = fs::read_to_string(file)
        .map_err(|e| format!("open {}: {}", file.display(), strerror(&e)))?;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |reason: &str| format!("{}, line {}: {reason}", file.display(), number + 1);
        let fields: Vec<&str> = line.split(':').collect();
        let [path, kind, owner, group, mode, flags] = fields[..] else {
            return Err(at("expected 6 fields separated by \":\""));
        };
        let uses_no = references(path)
            .iter()
            .any(|name| matches!(config.get(name), Ok(Some(value)) if value == "no"));
        if uses_no {
            continue;
        }
        let expand = |text: &str| {
            config
                .expand(text)
                .map(|e| e.value)
                .map_err(|e| at(&e.to_string()))
        };
        let mode = u32::from_str_radix(mode, 8).map_err(|_| at(&format!("bad mode \"{mode}\"")))?;
        entries.push(Entry {
            path: PathBuf::from(expand(path)?),
            kind: kind.to_string(),
            owner: expand(owner)?,
            group: if group == "-" {
                None
            } else {
                Some(expand(group)?)
            },
            mode,
            recursive: flags.split(',').any(|f| f == "r"),
            from_parameter: path.starts_with('$'),
        });
    }
    Ok(entries)
}

/// What applying the list changed, and what went wrong.
#[derive(Debug, Default)]
pub struct Outcome {
    pub changes: Vec<String>,
    /// Listed but not installed: worth a warning, nothing to repair.
    pub missing: Vec<String>,
    pub errors: Vec<String>,
}

/// Sets owners (unless unprivileged) and modes as the list says.
pub fn apply(entries: &[Entry], layout: &Layout) -> Outcome {
    let queue: HashSet<PathBuf> = layout.places().into_iter().map(|p| p.path).collect();
    let unprivileged = layout.accounts.unprivileged;
    let mut outcome = Outcome::default();
    for entry in entries {
        let skip = entry.kind == "conf" || !entry.from_parameter || queue.contains(&entry.path);
        if !skip {
            apply_entry(entry, unprivileged, &mut outcome);
        }
    }
    outcome
}

fn apply_entry(entry: &Entry, unprivileged: bool, outcome: &mut Outcome) {
    let path = &entry.path;
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) => {
            let text = format!("{}: {}", path.display(), strerror(&err));
            let list = match err.kind() {
                std::io::ErrorKind::NotFound => &mut outcome.missing,
                _ => &mut outcome.errors,
            };
            return list.push(text);
        }
    };
    if !unprivileged {
        if let Err(reason) = set_owner(entry, &meta, outcome) {
            return outcome.errors.push(reason);
        }
    }
    // chown clears set-id bits, so the mode is looked at afresh.
    let mode = fs::metadata(path).map(|m| m.mode() & 0o7777).unwrap_or(0);
    if mode != entry.mode {
        match fs::set_permissions(path, fs::Permissions::from_mode(entry.mode)) {
            Ok(()) => outcome
                .changes
                .push(format!("chmod {:04o} {}", entry.mode, path.display())),
            Err(err) => {
                outcome
                    .errors
                    .push(format!("chmod {}: {}", path.display(), strerror(&err)))
            }
        }
    }
}

fn set_owner(entry: &Entry, meta: &fs::Metadata, outcome: &mut Outcome) -> Result<(), String> {
    let uid = User::from_name(&entry.owner)
        .ok()
        .flatten()
        .ok_or_else(|| {
            format!(
                "{}: unknown user name: {}",
                entry.path.display(),
                entry.owner
            )
        })?
        .uid
        .as_raw();
    let gid = match &entry.group {
        None => None,
        Some(name) => Some(
            Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| format!("{}: unknown group name: {name}", entry.path.display()))?
                .gid
                .as_raw(),
        ),
    };
    let mut targets = vec![(entry.path.clone(), meta.clone())];
    if entry.recursive && meta.is_dir() {
        collect_tree(&entry.path, &mut targets);
    }
    for (path, meta) in targets {
        if meta.uid() == uid && gid.is_none_or(|g| meta.gid() == g) {
            continue;
        }
        match std::os::unix::fs::lchown(&path, Some(uid), gid) {
            Ok(()) => outcome
                .changes
                .push(format!("chown {} {}", entry.owner, path.display())),
            Err(err) => {
                outcome
                    .errors
                    .push(format!("chown {}: {}", path.display(), strerror(&err)))
            }
        }
    }
    Ok(())
}

/// Everything below `top`, without following symbolic links.
fn collect_tree(top: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
    let mut pending = vec![top.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(meta) = fs::symlink_metadata(&path) {
                if meta.is_dir() {
                    pending.push(path.clone());
                }
                out.push((path, meta));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_expands_entries() {
        let dir = std::env::temp_dir().join(format!("postfix-manifest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let config = Config::from_text(
            &dir,
            "command_directory = /opt/sbin\nhtml_directory = no\nmail_owner = mail\n",
        )
        .expect("main.cf");
        let file = dir.join("postfix-files");
        let text = "# comment\n\n$command_directory/postfix:bin:root:-:755:\n\
                    $html_directory/index.html:file:root:-:644:\n\
                    $data_directory:dir:$mail_owner:-:700:r\n\
                    /etc/init.d/postfix:file:root:-:755:\n";
        fs::write(&file, text).expect("write");
        let entries = read(&file, &config).expect("read");
        let summary: Vec<(String, String, Option<String>, u32, bool, bool)> = entries
            .into_iter()
            .map(|e| {
                let path = e.path.display().to_string();
                (
                    path,
                    e.owner,
                    e.group,
                    e.mode,
                    e.recursive,
                    e.from_parameter,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "/opt/sbin/postfix".into(),
                    "root".into(),
                    None,
                    0o755,
                    false,
                    true
                ),
                (
                    "/var/lib/postfix".into(),
                    "mail".into(),
                    None,
                    0o700,
                    true,
                    true
                ),
                (
                    "/etc/init.d/postfix".into(),
                    "root".into(),
                    None,
                    0o755,
                    false,
                    false
                ),
            ]
        );
        fs::write(&file, "$command_directory/postfix:bin:root:-:755\n").expect("write");
        assert_eq!(
            read(&file, &config).unwrap_err(),
            format!(
                "{}, line 1: expected 6 fields separated by \":\"",
                file.display()
            )
        );
        let _ = fs::remove_dir_all(dir);
    }
}
