//! File modes of what the audit log keeps on disk. `audit.db` holds tool arguments and who called
//! what; it, its `-wal` and `-shm` files and the checkpoint `audit.head` are the owner's alone: created
//! 0600 and tightened to 0600 when found looser (group or other bits set). SQLite creates the `-wal`
//! and `-shm` files with the database file's mode, so creating the database 0600 first covers them.
//!
//! On Windows there are no mode bits: the files inherit the ACL of the data folder, which under the
//! user's profile is private to that user by default; nothing here changes it.

use std::path::{Path, PathBuf};

/// The files beside the database that hold its content or vouch for it.
pub(crate) fn companions(db: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [
        db.to_path_buf(),
        with("-wal"),
        with("-shm"),
        super::chain::head_path(db),
    ]
}

/// Create the database file, empty and 0600, if it does not exist, so that SQLite (and the
/// `-wal`/`-shm` files it derives from it) never make it world-readable.
pub(crate) fn create_private(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Drop group and other permissions from `path` if it exists and has any.
#[cfg(unix)]
pub(crate) fn tighten(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_file() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
        tracing::warn!(path = %path.display(), "tightened audit file mode from {:o} to {:o}", mode & 0o777, mode & 0o700);
    }
    Ok(())
}

/// Windows: no mode bits; the data folder's ACL applies.
#[cfg(not(unix))]
pub(crate) fn tighten(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Tighten the database and every file beside it.
pub(crate) fn tighten_all(db: &Path) -> std::io::Result<()> {
    for p in companions(db) {
        tighten(&p)?;
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_created_private_and_loose_ones_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"one").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        tighten(&p).unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let q = dir.path().join("audit.db");
        create_private(&q).unwrap();
        assert_eq!(mode(&q), 0o600);
    }
}
