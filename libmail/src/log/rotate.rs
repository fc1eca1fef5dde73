//! `postfix logrotate`'s work on maillog_file, in two steps as Postfix's
//! postfix-script does it: `rotate` renames the file to
//! `FILE.SUFFIX` (SUFFIX = strftime(maillog_file_rotate_suffix)) and puts
//! an empty file with the same owner and mode in its place; the caller then
//! tells master to reload, and `Rotation::compress` waits until every
//! writer has reopened (see file.rs) and runs maillog_file_compressor.
//!
//! The new file is created here, not left to the writers, because daemons
//! write as mail_owner after dropping root and may not create files in
//! /var/log; they can still reopen a file that they were allowed to write.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::format::{Item, StrftimeItems};
use chrono::NaiveDateTime;

use super::error::LogError;
use super::file::CHECK_INTERVAL;
use crate::config::Config;
use crate::error::strerror;

/// A renamed log file, not yet compressed.
#[derive(Debug)]
pub struct Rotation {
    /// maillog_file as configured.
    pub file: PathBuf,
    /// Where the old contents now are: `file.SUFFIX`.
    pub rotated: PathBuf,
    compressor: String,
    renamed_at: Instant,
}

/// Renames maillog_file to its rotated name and recreates it empty.
pub fn rotate(config: &Config) -> Result<Rotation, LogError> {
    let file = required(config, "maillog_file")?;
    let compressor = required(config, "maillog_file_compressor")?;
    let suffix_format = required(config, "maillog_file_rotate_suffix")?;
    if file.starts_with("/dev/") {
        return Err(LogError::NotRotating(file));
    }
    let now = chrono::Local::now().naive_local();
    let suffix = format_suffix(&suffix_format, &now)?;
    let file = PathBuf::from(file);
    let rotated = rotated_name(&file, &suffix);
    rename_and_recreate(&file, &rotated)?;
    Ok(Rotation {
        file,
        rotated,
        compressor,
        renamed_at: Instant::now(),
    })
}

impl Rotation {
    /// Waits until writers have left the renamed file, then compresses it
    /// with maillog_file_compressor (run directly, no shell, one argument:
    /// the file). Returns the rotated name given to the compressor.
    pub fn compress(self) -> Result<PathBuf, LogError> {
        let settle = CHECK_INTERVAL + Duration::from_millis(100);
        if let Some(left) = settle.checked_sub(self.renamed_at.elapsed()) {
            std::thread::sleep(left);
        }
        let fail = |reason: String| LogError::Rotate {
            path: self.file.clone(),
            reason,
        };
        let output = Command::new(&self.compressor)
            .arg(&self.rotated)
            .output()
            .map_err(|e| fail(format!("{}: {}", self.compressor, strerror(&e))))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr).trim().to_string();
            let reason = if said.is_empty() {
                format!("{} {}", self.compressor, output.status)
            } else {
                said
            };
            return Err(fail(reason));
        }
        Ok(self.rotated)
    }
}

fn required(config: &Config, name: &'static str) -> Result<String, LogError> {
    let value = config.string(name)?;
    if value.is_empty() {
        return Err(LogError::EmptyParameter(name));
    }
    Ok(value)
}

/// strftime(`format`) of `time`; a format with an unknown `%` conversion
/// is an error rather than a partial name.
pub fn format_suffix(format: &str, time: &NaiveDateTime) -> Result<String, LogError> {
    let items: Vec<Item> = StrftimeItems::new(format).collect();
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(LogError::Suffix(format.to_string()));
    }
    let mut suffix = String::new();
    write!(suffix, "{}", time.format_with_items(items.into_iter()))
        .map_err(|_| LogError::Suffix(format.to_string()))?;
    Ok(suffix)
}

/// `FILE.SUFFIX`.
pub fn rotated_name(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Renames `file` to `rotated` (never over an existing file: two
/// rotations within one suffix period must not lose the first one) and
/// puts an empty file with the old owner and mode in its place.
fn rename_and_recreate(file: &Path, rotated: &Path) -> Result<(), LogError> {
    let fail = |reason: String| LogError::Rotate {
        path: file.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(file).map_err(|e| fail(format!("stat: {}", strerror(&e))))?;
    if rotated.exists() {
        return Err(fail(format!("{} already exists", rotated.display())));
    }
    std::fs::rename(file, rotated)
        .map_err(|e| fail(format!("rename to {}: {}", rotated.display(), strerror(&e))))?;
    recreate(file, &meta).map_err(|e| fail(format!("create: {}", strerror(&e))))
}

/// A writer may have created the file first (with its own owner); either
/// way it ends up with the rotated file's owner and mode.
fn recreate(file: &Path, old: &std::fs::Metadata) -> std::io::Result<()> {
    let new: File = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(old.mode() & 0o7777)
        .open(file)?;
    let meta = new.metadata()?;
    if (meta.uid(), meta.gid()) != (old.uid(), old.gid()) {
        // Only root may give a file away; anyone else's file is theirs
        // already, so a refusal here changes nothing that matters.
        let _ = std::os::unix::fs::fchown(&new, Some(old.uid()), Some(old.gid()));
    }
    new.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(month: u32, day: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2024, month, day)
            .and_then(|d| d.and_hms_opt(3, 4, 5))
            .expect("valid test date")
    }

    fn temp_dir(name: &str) -> PathBuf {
        crate::test_support::temp_dir(&format!("log-rotate-{name}"))
    }

    fn config(dir: &Path, text: &str) -> Config {
        Config::from_text(dir, text).expect("main.cf")
    }

    #[test]
    fn default_suffix_and_name() {
        let suffix = format_suffix("%Y%m%d-%H%M%S", &at(3, 1)).unwrap();
        assert_eq!(suffix, "20240301-030405");
        assert_eq!(
            rotated_name(Path::new("/var/log/postfix.log"), &suffix),
            PathBuf::from("/var/log/postfix.log.20240301-030405")
        );
        assert_eq!(format_suffix("%Y%m%d", &at(12, 31)).unwrap(), "20241231");
    }

    #[test]
    fn bad_suffix_is_refused() {
        let err = format_suffix("%Q%Y", &at(1, 1)).unwrap_err();
        assert!(err.to_string().contains("'%Q%Y'"), "{err}");
    }

    #[test]
    fn empty_parameters_and_devices_are_refused() {
        let dir = temp_dir("refuse");
        let err = rotate(&config(&dir, "")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "empty 'maillog_file' parameter value - logfile rotation failed"
        );
        let text = "maillog_file = /dev/stdout\n";
        let err = rotate(&config(&dir, text)).unwrap_err();
        assert_eq!(err.to_string(), "not rotating '/dev/stdout'");
        let text = "maillog_file = /x\nmaillog_file_compressor =\n";
        let err = rotate(&config(&dir, text)).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("empty 'maillog_file_compressor'"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rotate_renames_recreates_and_compresses() {
        let dir = temp_dir("rotate");
        let log = dir.join("maillog");
        std::fs::write(&log, "old line\n").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o640)).unwrap();
        let text = format!(
            "maillog_file = {}\nmaillog_file_compressor = gzip\n",
            log.display()
        );
        let rotation = rotate(&config(&dir, &text)).expect("rotate");
        assert_eq!(rotation.file, log);
        let name = rotation
            .rotated
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(name.starts_with("maillog.") && name.len() == "maillog.YYYYmmdd-HHMMSS".len());
        assert_eq!(
            std::fs::read_to_string(&rotation.rotated).unwrap(),
            "old line\n"
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
        let mode = std::fs::metadata(&log).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let started = Instant::now();
        let rotated = rotation.compress().expect("compress");
        assert!(started.elapsed() >= CHECK_INTERVAL);
        assert!(!rotated.exists());
        assert!(rotated_name(&rotated, "gz").exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn existing_rotated_file_is_not_overwritten() {
        let dir = temp_dir("exists");
        let log = dir.join("maillog");
        let rotated = dir.join("maillog.1");
        std::fs::write(&log, "new\n").unwrap();
        std::fs::write(&rotated, "first\n").unwrap();
        let err = rename_and_recreate(&log, &rotated).unwrap_err().to_string();
        assert!(err.ends_with("maillog.1 already exists"), "{err}");
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "first\n");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "new\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn compressor_failure_is_reported() {
        let dir = temp_dir("compressfail");
        let log = dir.join("maillog");
        std::fs::write(&log, "x\n").unwrap();
        let text = format!(
            "maillog_file = {}\nmaillog_file_compressor = /nonexistent/gzip\n",
            log.display()
        );
        let rotation = rotate(&config(&dir, &text)).expect("rotate");
        let err = rotation.compress().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "logfile '{}' rotation failed: /nonexistent/gzip: ",
                log.display()
            )),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
