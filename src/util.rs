//! Small helpers shared by several modules.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The first `n` hex digits of SHA-256 over `parts` joined by NUL: a short, stable hash.
pub fn short_hash(parts: &[&str], n: usize) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(n);
    for b in digest.iter() {
        if out.len() >= n {
            break;
        }
        out.push_str(&format!("{b:02x}"));
    }
    out.truncate(n);
    out
}

/// Create a file with mode 0600 from its first byte (never readable by others, even briefly);
/// `exclusive` fails if it exists, else it is truncated.
pub(crate) fn create_private(path: &Path, exclusive: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if exclusive {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Write `bytes` to `path` whole or not at all: readers see the old file or the new one, never
/// a part. They go to a temporary sibling of its own (a random name, so concurrent writers, in
/// this process or another, never mix bytes or rename each other's file away), created 0600 or
/// with `mode` (Unix), synced, then renamed over `path`. Windows refuses a rename onto a file
/// another writer is replacing at that moment: there the rename is tried again, briefly. The
/// temporary file is removed on failure.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = create_private(&tmp, true)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        rename_over(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn rename_over(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::rename(tmp, dest) {
            Err(e)
                if cfg!(windows)
                    && e.kind() == std::io::ErrorKind::PermissionDenied
                    && tries < 50 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            done => return done,
        }
    }
}

/// A sibling path for a temporary file: same folder (so the rename is atomic), random suffix.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: u64 = {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    };
    path.with_file_name(format!(".{name}.lastmile-{suffix:016x}.tmp"))
}
