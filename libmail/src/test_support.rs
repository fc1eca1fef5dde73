//! Helpers shared by the unit tests of every module.

use std::path::PathBuf;

/// A new, empty directory under the system's temp directory, named for
/// the test (`tag`) and this process, so parallel test runs do not meet.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
