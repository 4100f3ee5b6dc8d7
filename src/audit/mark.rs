//! The high-water mark: a MAC'd record of how far each audit log's chain reached, kept outside the
//! data folder (the CLI keeps it in the OS keyring), that only ever rises. The checkpoint file
//! `audit.head` sits beside the database, so whoever can delete rows can delete it too; the mark is
//! what still says "this log had N rows" after rows, prune anchor and checkpoint are all gone.
//!
//! One record holds the marks of every database the profile has used, each keyed by a hash of the
//! database's absolute path, so pointing `LASTMILE_DATA_DIR` elsewhere starts a new log rather than
//! looking like a wipe. The record is read and raised under the database's write lock.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::AuditError;
use super::chain::{AuditKey, ChainBreak, Head, Tag, ct_eq, hex, unhex};

/// Where the high-water mark is kept: one small text record (no secret in it, but it must live
/// where the data folder's owner alone cannot roll it back). The CLI implements it over the OS
/// keyring; the audit module only formats, MACs and checks what it holds.
pub trait HighWaterStore: Send + Sync {
    /// The record, or `None` if there is none yet.
    fn load(&self) -> Result<Option<String>, String>;
    /// Replace the record.
    fn store(&self, record: &str) -> Result<(), String>;
}

const HEADER: &str = "lastmile-audit-mark v1";

/// What the mark says about one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkState {
    /// No mark for this database.
    Missing,
    /// A line for this database whose MAC does not match.
    Forged,
    /// The highest head this database was seen to reach.
    Valid(Head),
}

/// The key of `db` in the record: a hash of its absolute path (the folder resolved, so two
/// spellings of one path agree).
pub(crate) fn db_id(db: &Path) -> String {
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty());
    let resolved = match dir.map(std::fs::canonicalize) {
        Some(Ok(dir)) => dir.join(db.file_name().unwrap_or_default()),
        _ => std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf()),
    };
    let digest = Sha256::digest(resolved.to_string_lossy().as_bytes());
    hex(&digest[..16])
}

fn parse_line(line: &str) -> Option<(&str, i64, Tag, Vec<u8>)> {
    let mut parts = line.split(' ');
    let id = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    let tag = Tag::try_from(unhex(parts.next()?)?).ok()?;
    let mac = unhex(parts.next()?)?;
    Some((id, seq, tag, mac))
}

fn state_in(record: &str, key: &AuditKey, id: &str) -> MarkState {
    let mut lines = record.lines();
    if lines.next() != Some(HEADER) {
        return MarkState::Forged;
    }
    for line in lines {
        if line.split(' ').next() != Some(id) {
            continue;
        }
        return match parse_line(line) {
            Some((_, seq, tag, mac)) if ct_eq(&key.mark_mac(id, seq, &tag), &mac) => {
                MarkState::Valid(Head { seq, tag })
            }
            _ => MarkState::Forged,
        };
    }
    MarkState::Missing
}

fn store_error(detail: String) -> AuditError {
    AuditError::MarkUnavailable { detail }
}

/// What the mark says about the database at `db`.
pub(crate) fn read_mark(
    store: &dyn HighWaterStore,
    key: &AuditKey,
    db: &Path,
) -> Result<MarkState, AuditError> {
    Ok(match store.load().map_err(store_error)? {
        None => MarkState::Missing,
        Some(record) => state_in(&record, key, &db_id(db)),
    })
}

/// Raise the mark of `db` to `head` unless it already records as much; a forged line is left as
/// it is (it is evidence). Returns whether the record was written. Call it under the database's
/// write lock, so that two writers never lower each other's mark.
pub(crate) fn raise_mark(
    store: &dyn HighWaterStore,
    key: &AuditKey,
    db: &Path,
    head: Head,
) -> Result<bool, AuditError> {
    let id = db_id(db);
    let record = store.load().map_err(store_error)?.unwrap_or_default();
    let mut kept: Vec<&str> = Vec::new();
    if record.lines().next() == Some(HEADER) {
        match state_in(&record, key, &id) {
            MarkState::Forged => return Ok(false),
            MarkState::Valid(h) if h.seq >= head.seq => return Ok(false),
            _ => {}
        }
        kept = record
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty() && l.split(' ').next() != Some(id.as_str()))
            .collect();
    } else if !record.is_empty() {
        // Not a record lastmile wrote: leave it for `verify` to report.
        return Ok(false);
    }
    let mac = key.mark_mac(&id, head.seq, &head.tag);
    let line = format!("{id} {} {} {}", head.seq, hex(&head.tag), hex(&mac));
    let mut out = String::from(HEADER);
    for l in kept.into_iter().chain(std::iter::once(line.as_str())) {
        out.push('\n');
        out.push_str(l);
    }
    out.push('\n');
    store.store(&out).map_err(store_error)?;
    Ok(true)
}

/// Remove the mark of the database at `db`: after the user moved a cut log aside to keep it as
/// evidence and chose to start a new one. Returns whether there was a mark.
pub fn forget_mark(store: &dyn HighWaterStore, db: &Path) -> Result<bool, AuditError> {
    let id = db_id(db);
    let Some(record) = store.load().map_err(store_error)? else {
        return Ok(false);
    };
    let lines: Vec<&str> = record.lines().collect();
    let kept: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.split(' ').next() != Some(id.as_str()))
        .collect();
    if kept.len() == lines.len() {
        return Ok(false);
    }
    let mut out = kept.join("\n");
    out.push('\n');
    store.store(&out).map_err(store_error)?;
    Ok(true)
}

/// For `verify` when the database file itself is gone: the break, if the mark records rows in it.
pub fn missing_database_break(
    store: &dyn HighWaterStore,
    key: &AuditKey,
    db: &Path,
) -> Result<Option<ChainBreak>, AuditError> {
    Ok(match read_mark(store, key, db)? {
        MarkState::Valid(h) if h.seq > 0 => Some(ChainBreak::DatabaseMissing {
            path: db.to_path_buf(),
            recorded: h.seq,
        }),
        MarkState::Forged => Some(ChainBreak::HighWaterForged),
        _ => None,
    })
}

/// A [`HighWaterStore`] in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryMark(std::sync::Mutex<Option<String>>);

impl HighWaterStore for MemoryMark {
    fn load(&self) -> Result<Option<String>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.clone())
    }
    fn store(&self, record: &str) -> Result<(), String> {
        *self.0.lock().map_err(|e| e.to_string())? = Some(record.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuditKey {
        AuditKey::from_bytes(vec![3u8; 32]).unwrap()
    }

    #[test]
    fn marks_rise_per_database_and_catch_edits() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
        let store = MemoryMark::default();
        let k = key();
        assert_eq!(read_mark(&store, &k, &a).unwrap(), MarkState::Missing);
        let h = |seq| Head {
            seq,
            tag: [seq as u8; 32],
        };
        assert!(raise_mark(&store, &k, &a, h(5)).unwrap());
        assert!(raise_mark(&store, &k, &b, h(2)).unwrap());
        // Never lowered.
        assert!(!raise_mark(&store, &k, &a, h(4)).unwrap());
        assert_eq!(read_mark(&store, &k, &a).unwrap(), MarkState::Valid(h(5)));
        assert_eq!(read_mark(&store, &k, &b).unwrap(), MarkState::Valid(h(2)));
        // Another spelling of the same path is the same database.
        let other = dir.path().join(".").join("a.db");
        assert_eq!(
            read_mark(&store, &k, &other).unwrap(),
            MarkState::Valid(h(5))
        );
        // An edited line, or another key, does not verify.
        let text = store.load().unwrap().unwrap();
        let id = db_id(&a);
        let edited: String = text
            .lines()
            .map(|l| {
                if l.starts_with(&id) {
                    l.replacen(" 5 ", " 9 ", 1)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        store.store(&edited).unwrap();
        assert_eq!(read_mark(&store, &k, &a).unwrap(), MarkState::Forged);
        assert!(!raise_mark(&store, &k, &a, h(10)).unwrap(), "evidence kept");
        let other_key = AuditKey::from_bytes(vec![4u8; 32]).unwrap();
        assert_eq!(
            read_mark(&store, &other_key, &b).unwrap(),
            MarkState::Forged
        );
        assert!(forget_mark(&store, &a).unwrap());
        assert_eq!(read_mark(&store, &k, &a).unwrap(), MarkState::Missing);
        assert_eq!(read_mark(&store, &k, &b).unwrap(), MarkState::Valid(h(2)));
    }
}
