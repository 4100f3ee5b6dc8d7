//! Files the CLI writes: folders made private (0700), files private (0600) from their first byte,
//! written whole or not at all (a temporary file in the same folder, then a rename).

use std::io::Write;
use std::path::Path;

use super::error::CliError;

/// Mode of every folder lastmile creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file lastmile writes.
pub(crate) const FILE_MODE: u32 = 0o600;

/// What [`ensure_private_dir`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirOutcome {
    /// The folder was made.
    Created,
    /// It existed with group or other access, which was removed.
    Tightened,
    /// It was already there and private.
    Unchanged,
}

/// Make `dir` (and its missing parents) with mode 0700; tighten an existing one that others can
/// read.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<DirOutcome, CliError> {
    if dir.is_dir() {
        return tighten(dir, DIR_MODE).map(|changed| {
            if changed {
                DirOutcome::Tightened
            } else {
                DirOutcome::Unchanged
            }
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| CliError::io("create", dir, e))?;
    set_mode(dir, DIR_MODE)?;
    Ok(DirOutcome::Created)
}

/// Remove group and other access from `path`; `true` if anything changed.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> Result<bool, CliError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| CliError::io("read", path, e))?;
    if meta.permissions().mode() & 0o077 == 0 {
        return Ok(false);
    }
    set_mode(path, mode)?;
    Ok(true)
}

#[cfg(not(unix))]
fn tighten(_path: &Path, _mode: u32) -> Result<bool, CliError> {
    Ok(false)
}

/// Set `path`'s mode (Unix); elsewhere the folder's inherited ACL applies.
#[cfg(unix)]
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| CliError::io("set the permissions of", path, e))
}

#[cfg(not(unix))]
pub(crate) fn set_mode(_path: &Path, _mode: u32) -> Result<(), CliError> {
    Ok(())
}

/// The mode bits of `path` (Unix), for reports.
#[cfg(unix)]
pub(crate) fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
pub(crate) fn mode_of(_path: &Path) -> Option<u32> {
    None
}

/// Write `bytes` to `path` atomically with mode 0600: readers see the old file or the new one,
/// never a part. `keep_mode` keeps an existing file's mode instead (for files lastmile rewrites
/// but does not own, like a Claude config).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], keep_mode: bool) -> Result<(), CliError> {
    let mode = if keep_mode { mode_of(path) } else { None };
    crate::util::write_atomic(path, bytes, mode).map_err(|e| CliError::io("write", path, e))
}

/// Write a new file with mode 0600; fails if it exists.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let result = crate::util::create_private(path, true).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    result.map_err(|e| CliError::io("write", path, e))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn folders_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        assert_eq!(ensure_private_dir(&dir).unwrap(), DirOutcome::Created);
        assert_eq!(mode_of(&dir), Some(0o700));
        assert_eq!(ensure_private_dir(&dir).unwrap(), DirOutcome::Unchanged);
        set_mode(&dir, 0o755).unwrap();
        assert_eq!(ensure_private_dir(&dir).unwrap(), DirOutcome::Tightened);
        let file = dir.join("f");
        write_atomic(&file, b"one", false).unwrap();
        assert_eq!(mode_of(&file), Some(0o600));
        write_atomic(&file, b"two", false).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(write_new_private(&file, b"x").is_err());
    }

    #[test]
    fn a_rewritten_file_keeps_its_mode_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("claude.json");
        std::fs::write(&file, b"{}").unwrap();
        set_mode(&file, 0o644).unwrap();
        write_atomic(&file, b"{\"a\":1}", true).unwrap();
        assert_eq!(mode_of(&file), Some(0o644));
    }
}
