//! The programs master.cf names: each must exist in $daemon_directory
//! (or where an absolute command says) and be executable. A stock Postfix
//! master.cf names Postfix daemons this build does not have (yet), or
//! whose work it does inside other programs; such an entry is accepted,
//! and named once with what happens instead.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libmail::config::master_cf::MasterEntry;
use libmail::error::strerror;

/// Postfix programs whose work postfix-rs does elsewhere, and where.
const DONE_ELSEWHERE: [(&str, &str); 3] = [
    (
        "bounce",
        "qmgr writes delivery status notifications itself, through cleanup",
    ),
    (
        "trivial-rewrite",
        "postfix-rs rewrites and resolves addresses inside the programs that need it",
    ),
    (
        "postlogd",
        "every postfix-rs program appends to maillog_file itself",
    ),
];

/// The daemon programs of Postfix 3.7.
const POSTFIX_DAEMONS: [&str; 28] = [
    "anvil",
    "bounce",
    "cleanup",
    "discard",
    "dnsblog",
    "error",
    "flush",
    "lmtp",
    "local",
    "nqmgr",
    "oqmgr",
    "pickup",
    "pipe",
    "postlogd",
    "postscreen",
    "proxymap",
    "qmgr",
    "qmqpd",
    "scache",
    "showq",
    "smtp",
    "smtpd",
    "spawn",
    "tlsmgr",
    "tlsproxy",
    "trivial-rewrite",
    "verify",
    "virtual",
];

/// Why an entry's program will not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lack {
    /// A Postfix daemon this build does not provide yet.
    NotYet,
    /// A Postfix daemon whose work is done elsewhere: how.
    Elsewhere(&'static str),
    /// Any other program that is missing or unusable: the reason.
    Broken(String),
    NotExecutable,
}

/// One master.cf entry whose program master cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub master_cf: PathBuf,
    pub line: usize,
    pub service: String,
    pub program: PathBuf,
    pub lack: Lack,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let program = self.program.display();
        write!(
            f,
            "{}: line {}: service \"{}\": ",
            self.master_cf.display(),
            self.line,
            self.service
        )?;
        match &self.lack {
            Lack::NotYet => write!(
                f,
                "{program} is not provided by this build yet; master will not start it"
            ),
            Lack::Elsewhere(how) => write!(
                f,
                "{program} is not needed ({how}); master will not start it"
            ),
            Lack::Broken(reason) => write!(f, "{program}: {reason}"),
            Lack::NotExecutable => write!(f, "{program} is not executable"),
        }
    }
}

/// Where master finds an entry's program.
pub fn program_path(entry: &MasterEntry, daemon_directory: &Path) -> PathBuf {
    if entry.command.starts_with('/') {
        PathBuf::from(&entry.command)
    } else {
        daemon_directory.join(&entry.command)
    }
}

/// A note for every entry whose program is missing or not executable.
pub fn check_programs(
    entries: &[MasterEntry],
    daemon_directory: &Path,
    master_cf: &Path,
) -> Vec<Note> {
    entries
        .iter()
        .filter_map(|entry| {
            let program = program_path(entry, daemon_directory);
            let lack = lack(&entry.command, &program)?;
            Some(Note {
                master_cf: master_cf.to_path_buf(),
                line: entry.line,
                service: entry.key(),
                program,
                lack,
            })
        })
        .collect()
}

fn lack(command: &str, program: &Path) -> Option<Lack> {
    match fs::metadata(program) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => None,
        Ok(_) => Some(Lack::NotExecutable),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let name = command.rsplit('/').next().unwrap_or(command);
            if let Some((_, how)) = DONE_ELSEWHERE.iter().find(|(n, _)| *n == name) {
                Some(Lack::Elsewhere(how))
            } else if POSTFIX_DAEMONS.contains(&name) {
                Some(Lack::NotYet)
            } else {
                Some(Lack::Broken(strerror(&err)))
            }
        }
        Err(err) => Some(Lack::Broken(strerror(&err))),
    }
}

/// One line for `postfix start` about the entries master will not start.
pub fn summary(notes: &[Note]) -> Option<String> {
    if notes.is_empty() {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for note in notes {
        let name = note
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| !names.contains(n)) {
            names.push(name);
        }
    }
    let count = notes.len();
    let services = if count == 1 { "service" } else { "services" };
    Some(format!(
        "{count} master.cf {services} will not be started, for want of a usable program ({}); \"postfix check\" names each",
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmail::config::master_cf::parse_entry;

    fn entries(lines: &[&str]) -> Vec<MasterEntry> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| parse_entry(l, i + 1).expect("entry"))
            .collect()
    }

    #[test]
    fn stock_entries_are_named_with_what_happens_instead() {
        let dir = std::env::temp_dir().join(format!("postfix-services-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        fs::write(dir.join("plain"), b"").expect("write");
        let list = entries(&[
            "smtp inet n - n - - smtpd",
            "rewrite unix - - n - - trivial-rewrite",
            "custom unix - - n - - custom",
            "plain unix - - n - - plain",
            "relay unix - - n - - smtp",
        ]);
        let master_cf = Path::new("/etc/postfix/master.cf");
        let notes: Vec<String> = check_programs(&list, &dir, master_cf)
            .iter()
            .map(ToString::to_string)
            .collect();
        let d = dir.display();
        assert_eq!(
            notes,
            [
                format!("/etc/postfix/master.cf: line 1: service \"smtp/inet\": {d}/smtpd is not provided by this build yet; master will not start it"),
                format!("/etc/postfix/master.cf: line 2: service \"rewrite/unix\": {d}/trivial-rewrite is not needed (postfix-rs rewrites and resolves addresses inside the programs that need it); master will not start it"),
                format!("/etc/postfix/master.cf: line 3: service \"custom/unix\": {d}/custom: No such file or directory"),
                format!("/etc/postfix/master.cf: line 4: service \"plain/unix\": {d}/plain is not executable"),
                format!("/etc/postfix/master.cf: line 5: service \"relay/unix\": {d}/smtp is not provided by this build yet; master will not start it"),
            ]
        );
        let notes = check_programs(&list, &dir, master_cf);
        assert_eq!(
            summary(&notes).expect("summary"),
            "5 master.cf services will not be started, for want of a usable program (smtpd, trivial-rewrite, custom, plain, smtp); \"postfix check\" names each"
        );
        let _ = fs::remove_dir_all(dir);
    }
}
