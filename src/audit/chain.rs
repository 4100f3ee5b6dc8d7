//! The tamper-evident chain: every audited row has a position `seq` (shared by the three audited
//! tables) and `tag = HMAC-SHA256(key, prev_tag || canonical(row))`, so rewriting history needs the
//! key, not only SQL. The chain's head (last position and tag) is checkpointed, MAC'd, in a file beside
//! the database (`audit.head`) after every commit, so cutting rows off the end is caught; `prune`
//! leaves a MAC'd anchor (position and tag of the last pruned row) so the rest stays verifiable.
//!
//! Limits, stated plainly: whoever holds the key can rewrite everything; replacing the head file with
//! an older copy of itself and cutting the rows written since cannot be told apart from a crash that
//! lost them, unless the head is also shipped elsewhere (`audit export` to a SIEM does that).

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;

use super::AuditError;
use super::db::classify;
use super::layout::{Table, Val, canonical};
use super::mark::MarkState;

/// A tag: HMAC-SHA256 output.
pub type Tag = [u8; 32];

/// The tag before the first row.
pub const GENESIS: Tag = [0u8; 32];

/// The key that chains the rows. Held in a zeroizing box; its bytes never reach the database.
pub struct AuditKey(SecretSlice<u8>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey([redacted])")
    }
}

impl Clone for AuditKey {
    fn clone(&self) -> Self {
        AuditKey(SecretSlice::from(self.0.expose_secret().to_vec()))
    }
}

impl AuditKey {
    /// The fewest bytes a key may have.
    pub const MIN_LEN: usize = 16;

    /// A key from the secret the store holds (its UTF-8 bytes).
    pub fn from_secret(secret: &SecretString) -> Result<Self, AuditError> {
        Self::from_bytes(secret.expose_secret().as_bytes().to_vec())
    }

    /// A key from raw bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, AuditError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(AuditError::WeakKey {
                min: Self::MIN_LEN,
                got: bytes.len(),
            });
        }
        Ok(AuditKey(SecretSlice::from(bytes)))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an empty-key MAC
        // state type-wise only to avoid a panic path.
        match Hmac::<Sha256>::new_from_slice(self.0.expose_secret()) {
            Ok(m) => m,
            Err(_) => Hmac::<Sha256>::new(&Default::default()),
        }
    }

    /// `HMAC(key, domain || parts...)`.
    fn tag_of(&self, domain: &[u8], parts: &[&[u8]]) -> Tag {
        let mut m = self.mac();
        m.update(domain);
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// A value that identifies the key without revealing it (stored in `meta` to catch a wrong key).
    pub(crate) fn check_value(&self) -> String {
        hex(&self.tag_of(b"lastmile-audit-key-check-v1", &[]))
    }

    /// The tag of a row at `seq` following `prev`.
    pub(crate) fn row_tag(&self, prev: &Tag, canonical: &[u8]) -> Tag {
        self.row_mac().tag(prev, canonical)
    }

    /// The row MAC keyed once, for tagging many rows.
    pub(crate) fn row_mac(&self) -> RowMac {
        let mut m = self.mac();
        m.update(ROW_DOMAIN);
        RowMac(m)
    }

    fn head_mac(&self, seq: i64, tag: &Tag) -> Tag {
        self.tag_of(b"lastmile-audit-head-v1", &[&seq.to_be_bytes(), tag])
    }

    pub(crate) fn mark_mac(&self, db_id: &str, seq: i64, tag: &Tag) -> Tag {
        self.tag_of(
            b"lastmile-audit-mark-v1",
            &[db_id.as_bytes(), b"\n", &seq.to_be_bytes(), tag],
        )
    }

    pub(crate) fn anchor_mac(&self, seq: i64, tag: &Tag, pruned_at_ms: i64) -> Tag {
        self.tag_of(
            b"lastmile-audit-anchor-v1",
            &[&seq.to_be_bytes(), tag, &pruned_at_ms.to_be_bytes()],
        )
    }
}

const ROW_DOMAIN: &[u8] = b"lastmile-audit-row-v1";

/// HMAC-SHA256 with the key's pads and the row domain already absorbed: a batch keys it once and
/// each row costs only its own bytes. Tags equal [`AuditKey::row_tag`]'s.
#[derive(Clone)]
pub(crate) struct RowMac(Hmac<Sha256>);

impl RowMac {
    /// The tag of a row following `prev`, over its canonical bytes.
    pub(crate) fn tag(&self, prev: &Tag, canonical: &[u8]) -> Tag {
        let mut m = self.0.clone();
        m.update(prev);
        m.update(canonical);
        m.finalize().into_bytes().into()
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The checkpoint file of the database at `db`: `audit.db` → `audit.head`.
pub fn head_path(db: &Path) -> PathBuf {
    db.with_extension("head")
}

/// The chain's head as checkpointed outside the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: i64,
    pub tag: Tag,
}

/// The checkpoint's text. Its length is fixed (the position is zero-padded to 19 digits, the most
/// an `i64` has), so a new head overwrites the old one in place, and older lastmile versions
/// still read it.
fn head_text(key: &AuditKey, head: Head) -> String {
    let mac = key.head_mac(head.seq, &head.tag);
    format!(
        "lastmile-audit-head v1\nseq {:019}\ntag {}\nmac {}\n",
        head.seq,
        hex(&head.tag),
        hex(&mac)
    )
}

/// Create or replace the head checkpoint whole (0600, renamed over the old one).
pub(crate) fn write_head(key: &AuditKey, path: &Path, head: Head) -> std::io::Result<()> {
    crate::util::write_atomic(path, head_text(key, head).as_bytes(), None)
}

/// Write `head` unless the checkpoint already vouches for as much or more. Two writers racing here
/// can leave the checkpoint one batch behind (which `verify` accepts), never ahead of the rows.
///
/// This runs once per committed batch, so an existing checkpoint is rewritten in place under an
/// exclusive lock on the file (one small write within the first sector, which a crash leaves
/// whole): replacing it by rename cost about 0.3 ms a batch on ext4, which forces the new file's
/// blocks out on every rename over an existing one. Readers take the shared lock, so none sees
/// a half-written head.
pub(crate) fn advance_head(key: &AuditKey, path: &Path, head: Head) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    // Missing, not writable in place (left read-only by hand), or on a file system without
    // locks: replaced whole, as before.
    let Ok(mut file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return write_head(key, path, head);
    };
    // Locked by someone else for long: this batch's checkpoint is skipped (the writer logs it,
    // and the checkpoint lags, which `verify` accepts) rather than waited for.
    if !lock_briefly(&file, false)? {
        drop(file);
        return write_head(key, path, head);
    }
    let mut old = String::new();
    // Unreadable (not UTF-8): as forged, so overwritten like any other bad checkpoint.
    if file.read_to_string(&mut old).is_err() {
        old.clear();
    }
    if let HeadFile::Valid(h) = parse_head(key, &old)
        && h.seq >= head.seq
    {
        return Ok(());
    }
    let text = head_text(key, head);
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())?;
    if old.len() != text.len() {
        file.set_len(text.len() as u64)?;
    }
    // Loosened by someone since it was created 0600: tightened again.
    super::files::tighten(path)
}

/// Take the exclusive or `shared` lock on `file`, trying for at most 100 ms: lastmile holds it
/// for microseconds, so a lock held longer is another program's, and must not hang the audit
/// writer. `Ok(true)` taken (released when `file` closes), `Ok(false)` locks unsupported here,
/// `Err` still held by someone else.
fn lock_briefly(file: &std::fs::File, shared: bool) -> std::io::Result<bool> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
    loop {
        let tried = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match tried {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "the checkpoint is locked by another program",
                ));
            }
            Err(std::fs::TryLockError::Error(_)) => return Ok(false),
        }
    }
}

/// What reading the head checkpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadFile {
    Missing,
    Forged,
    Valid(Head),
}

pub(crate) fn read_head(key: &AuditKey, path: &Path) -> std::io::Result<HeadFile> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HeadFile::Missing),
        Err(e) => return Err(e),
    };
    // Never while `advance_head` is rewriting it. Without the lock (a file system without locks,
    // or a lock someone else keeps) it is read as it is.
    let _ = lock_briefly(&file, true);
    let mut text = String::new();
    match file.read_to_string(&mut text) {
        Ok(_) => Ok(parse_head(key, &text)),
        // Not text: not a checkpoint lastmile wrote.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(HeadFile::Forged),
        Err(e) => Err(e),
    }
}

fn parse_head(key: &AuditKey, text: &str) -> HeadFile {
    let mut seq = None;
    let mut tag = None;
    let mut mac = None;
    let mut lines = text.lines();
    if lines.next() != Some("lastmile-audit-head v1") {
        return HeadFile::Forged;
    }
    for line in lines {
        match line.split_once(' ') {
            Some(("seq", v)) => seq = v.parse::<i64>().ok(),
            Some(("tag", v)) => tag = unhex(v).and_then(|b| Tag::try_from(b).ok()),
            Some(("mac", v)) => mac = unhex(v),
            _ => {}
        }
    }
    let (Some(seq), Some(tag), Some(mac)) = (seq, tag, mac) else {
        return HeadFile::Forged;
    };
    if !ct_eq(&key.head_mac(seq, &tag), &mac) {
        return HeadFile::Forged;
    }
    HeadFile::Valid(Head { seq, tag })
}

/// The prune anchor stored in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Anchor {
    pub seq: i64,
    pub tag: Tag,
    pub pruned_at_ms: i64,
    pub mac_ok: bool,
}

pub(crate) fn read_anchor(
    conn: &Connection,
    key: &AuditKey,
    path: &Path,
) -> Result<Option<Anchor>, AuditError> {
    use rusqlite::OptionalExtension;
    let row: Option<(i64, Vec<u8>, i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, tag, pruned_at_ms, mac FROM chain_anchor WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(|e| classify(path, e))?;
    Ok(row.map(|(seq, tag, pruned_at_ms, mac)| {
        let tag_arr = Tag::try_from(tag.as_slice()).unwrap_or(GENESIS);
        let mac_ok = tag.len() == 32 && ct_eq(&key.anchor_mac(seq, &tag_arr, pruned_at_ms), &mac);
        Anchor {
            seq,
            tag: tag_arr,
            pruned_at_ms,
            mac_ok,
        }
    }))
}

/// Check which key chains this database; on a file that names none yet, record `key` when
/// `record` is set (the writer does; `verify` writes nothing).
pub(crate) fn check_key(
    conn: &Connection,
    key: &AuditKey,
    path: &Path,
    record: bool,
) -> Result<(), AuditError> {
    use rusqlite::OptionalExtension;
    let err = |e| classify(path, e);
    let stored: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(err)?;
    let mine = key.check_value();
    match stored {
        Some(v) if v == mine => Ok(()),
        Some(_) => Err(AuditError::WrongKey {
            path: path.to_path_buf(),
        }),
        None if record => {
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('key_check', ?1)",
                [&mine],
            )
            .map_err(err)?;
            Ok(())
        }
        None => Ok(()),
    }
}

/// The chain's end as the rows have it: the last row, else the prune anchor, else the genesis.
pub(crate) fn db_end(conn: &Connection, key: &AuditKey, path: &Path) -> Result<Head, AuditError> {
    use rusqlite::OptionalExtension;
    let mut end: Option<(i64, Vec<u8>)> = None;
    for t in Table::ALL {
        let last: Option<(i64, Vec<u8>)> = conn
            .prepare_cached(&format!(
                "SELECT seq, tag FROM {} ORDER BY seq DESC LIMIT 1",
                t.name()
            ))
            .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(|e| classify(path, e))?;
        if let Some(last) = last
            && end.as_ref().is_none_or(|(s, _)| last.0 > *s)
        {
            end = Some(last);
        }
    }
    let anchor = read_anchor(conn, key, path)?;
    Ok(match (end, anchor) {
        (Some((seq, _)), Some(a)) if a.seq >= seq => Head {
            seq: a.seq,
            tag: a.tag,
        },
        // A tag that is not 32 bytes was not written by lastmile; the chain after it will not
        // verify, which `verify` names.
        (Some((seq, tag)), _) => Head {
            seq,
            tag: Tag::try_from(tag.as_slice()).unwrap_or(GENESIS),
        },
        (None, Some(a)) => Head {
            seq: a.seq,
            tag: a.tag,
        },
        (None, None) => Head {
            seq: 0,
            tag: GENESIS,
        },
    })
}

/// The tag stored for position `seq`: its row's, the anchor's, or the genesis for 0.
fn stored_tag_at(
    conn: &Connection,
    anchor: Option<Anchor>,
    path: &Path,
    seq: i64,
) -> Result<Option<Tag>, AuditError> {
    use rusqlite::OptionalExtension;
    if seq == 0 {
        return Ok(Some(GENESIS));
    }
    if let Some(a) = anchor
        && a.seq == seq
    {
        return Ok(Some(a.tag));
    }
    for t in Table::ALL {
        let tag: Option<Vec<u8>> = conn
            .prepare_cached(&format!("SELECT tag FROM {} WHERE seq = ?1", t.name()))
            .and_then(|mut st| st.query_row([seq], |r| r.get(0)).optional())
            .map_err(|e| classify(path, e))?;
        if let Some(tag) = tag {
            return Ok(Tag::try_from(tag.as_slice()).ok());
        }
    }
    Ok(None)
}

/// Who vouches for a head: the checkpoint file beside the database, or the keyring's mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Voucher {
    HeadFile,
    Mark,
}

/// Whether the database (ending at `end`) still holds the row `head` vouches for: `None` if it
/// does (it may hold more: a head lags after a crash between commit and checkpoint), else the break.
/// A head the prune anchor has moved past cannot be checked and is accepted.
pub(crate) fn check_extends(
    conn: &Connection,
    key: &AuditKey,
    path: &Path,
    end: Head,
    head: Head,
    voucher: Voucher,
) -> Result<Option<ChainBreak>, AuditError> {
    if head.seq > end.seq {
        return Ok(Some(match voucher {
            Voucher::HeadFile => ChainBreak::Truncated {
                last_found: end.seq,
                checkpoint: head.seq,
            },
            Voucher::Mark => ChainBreak::BelowHighWater {
                last_found: end.seq,
                recorded: head.seq,
            },
        }));
    }
    let anchor = read_anchor(conn, key, path)?;
    if anchor.is_some_and(|a| a.seq > head.seq) {
        return Ok(None);
    }
    if stored_tag_at(conn, anchor, path, head.seq)? == Some(head.tag) {
        return Ok(None);
    }
    Ok(Some(match voucher {
        Voucher::HeadFile => ChainBreak::CheckpointMismatch { seq: head.seq },
        Voucher::Mark => ChainBreak::HighWaterMismatch { seq: head.seq },
    }))
}

/// One row of the chain as read back for verification.
#[derive(Debug, Clone)]
pub(crate) struct ChainRow {
    pub table: Table,
    pub seq: i64,
    pub values: Vec<Val>,
    pub tag: Vec<u8>,
}

impl ChainRow {
    fn canonical(&self) -> Vec<u8> {
        canonical(self.table, self.seq, self.values.iter().map(Val::view))
    }

    /// A name for the row a user can look up: its execution id or session id.
    pub(crate) fn describe(&self) -> String {
        let id = match (self.table, self.values.first()) {
            (Table::Executions, Some(Val::Text(id))) => format!(", execution {id}"),
            (Table::Sessions, Some(Val::Text(id))) => format!(", session {id}"),
            _ => String::new(),
        };
        format!("row {} ({}{id})", self.seq, self.table.name())
    }
}

/// Every chained row in `seq` order, merged across the three tables, streamed to `f`.
pub(crate) fn walk_rows(
    conn: &Connection,
    path: &Path,
    mut f: impl FnMut(ChainRow) -> std::ops::ControlFlow<()>,
) -> Result<(), AuditError> {
    let err = |e| classify(path, e);
    let mut stmts = Vec::new();
    for t in Table::ALL {
        stmts.push((t, conn.prepare(&t.select_sql()).map_err(err)?));
    }
    let mut iters = Vec::new();
    for (t, stmt) in stmts.iter_mut() {
        let t = *t;
        let n = t.columns().len();
        let rows = stmt
            .query_map([], move |r| {
                let seq: i64 = r.get(0)?;
                let mut values = Vec::with_capacity(n);
                for i in 1..=n {
                    values.push(Val::from_sql(r.get_ref(i)?));
                }
                let tag = match r.get_ref(n + 1)? {
                    ValueRef::Blob(b) => b.to_vec(),
                    // Not a tag lastmile wrote: it can never match.
                    _ => Vec::new(),
                };
                Ok(ChainRow {
                    table: t,
                    seq,
                    values,
                    tag,
                })
            })
            .map_err(err)?;
        iters.push(rows.peekable());
    }
    loop {
        // Pick the iterator whose next row has the smallest seq.
        let mut best: Option<(usize, i64)> = None;
        for (i, it) in iters.iter_mut().enumerate() {
            match it.peek() {
                Some(Ok(row)) if best.is_none_or(|(_, s)| row.seq < s) => {
                    best = Some((i, row.seq));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => {
                    if let Some(Err(e)) = it.next() {
                        return Err(err(e));
                    }
                }
                None => {}
            }
        }
        let Some((i, _)) = best else { return Ok(()) };
        match iters[i].next() {
            Some(Ok(row)) => {
                if f(row).is_break() {
                    return Ok(());
                }
            }
            Some(Err(e)) => return Err(err(e)),
            None => return Ok(()),
        }
    }
}

/// The first broken link `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// A row's content no longer matches its tag.
    Edited {
        /// The row's position.
        seq: i64,
        /// Table and id of the row.
        row: String,
    },
    /// A row sits at another position than the one it was written at.
    Reordered {
        /// Where the row is now.
        seq: i64,
        /// Where it was written.
        written_at: i64,
        /// Table and id of the row.
        row: String,
    },
    /// Positions are missing between two rows (or before the first).
    Deleted {
        /// First missing position.
        from: i64,
        /// Last missing position.
        to: i64,
        /// The row after the gap, if any.
        next_row: Option<String>,
    },
    /// Two rows claim the same position.
    Duplicate {
        /// The position.
        seq: i64,
        /// The second row.
        row: String,
    },
    /// Rows are missing at the end: the checkpoint says more were written.
    Truncated {
        /// The last position in the database (0 when empty).
        last_found: i64,
        /// The last position the checkpoint recorded.
        checkpoint: i64,
    },
    /// The row at the checkpoint's position is not the row that was checkpointed.
    CheckpointMismatch {
        /// The position.
        seq: i64,
    },
    /// The checkpoint file is missing though the database has rows.
    CheckpointMissing {
        /// Where it should be.
        path: PathBuf,
    },
    /// The checkpoint file's MAC does not match (edited, or written with another key).
    CheckpointForged {
        /// The file.
        path: PathBuf,
    },
    /// The prune anchor's MAC does not match.
    AnchorForged {
        /// The position it claims.
        seq: i64,
    },
    /// The keyring's high-water mark records more rows than the database holds: rows were cut
    /// together with what would have shown it in the data folder (checkpoint, anchor).
    BelowHighWater {
        /// The last position in the database (0 when empty).
        last_found: i64,
        /// The position the mark records.
        recorded: i64,
    },
    /// The row at the mark's position is not the row the mark vouches for.
    HighWaterMismatch {
        /// The position.
        seq: i64,
    },
    /// The keyring's high-water mark does not carry a valid MAC.
    HighWaterForged,
    /// The database file is gone though the keyring's high-water mark records rows in it.
    DatabaseMissing {
        /// The file.
        path: PathBuf,
        /// The position the mark records.
        recorded: i64,
    },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::Edited { row, .. } => {
                write!(f, "{row} was edited: its content does not match its tag")
            }
            ChainBreak::Reordered {
                row, written_at, ..
            } => write!(f, "{row} was moved: it was written as row {written_at}"),
            ChainBreak::Deleted { from, to, next_row } => {
                let which = if from == to {
                    format!("row {from} was deleted")
                } else {
                    format!("rows {from} to {to} were deleted")
                };
                match next_row {
                    Some(next) => write!(f, "{which} (the gap is just before {next})"),
                    None => f.write_str(&which),
                }
            }
            ChainBreak::Duplicate { seq, row } => {
                write!(f, "{row} is a second row at position {seq}")
            }
            ChainBreak::Truncated {
                last_found,
                checkpoint,
            } => write!(
                f,
                "the log was truncated: rows {} to {checkpoint} are missing (the checkpoint recorded {checkpoint} rows, the last row found is {last_found})",
                last_found + 1
            ),
            ChainBreak::CheckpointMismatch { seq } => write!(
                f,
                "row {seq} is not the row that was checkpointed: the end of the log was rewritten"
            ),
            ChainBreak::CheckpointMissing { path } => write!(
                f,
                "the chain checkpoint {} is missing, so truncation cannot be ruled out",
                path.display()
            ),
            ChainBreak::CheckpointForged { path } => write!(
                f,
                "the chain checkpoint {} does not carry a valid MAC",
                path.display()
            ),
            ChainBreak::AnchorForged { seq } => {
                write!(f, "the prune anchor (row {seq}) does not carry a valid MAC")
            }
            ChainBreak::BelowHighWater {
                last_found,
                recorded,
            } => write!(
                f,
                "the log was cut: rows {} to {recorded} are missing (the keyring's high-water mark records {recorded} rows, the last row found is {last_found})",
                last_found + 1
            ),
            ChainBreak::HighWaterMismatch { seq } => write!(
                f,
                "row {seq} is not the row the keyring's high-water mark vouches for: the end of the log was rewritten"
            ),
            ChainBreak::HighWaterForged => {
                f.write_str("the keyring's high-water mark for this log does not carry a valid MAC")
            }
            ChainBreak::DatabaseMissing { path, recorded } => write!(
                f,
                "the audit database {} is gone, but the keyring's high-water mark records {recorded} rows written to it",
                path.display()
            ),
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows checked.
    pub rows: u64,
    /// Position of the last pruned row (the chain starts after it), if pruned.
    pub pruned_through: Option<i64>,
    /// Position of the last row (or of the anchor when every row is pruned); 0 when empty.
    pub last_seq: i64,
    /// Rows written after the last checkpoint (a crash between commit and checkpoint leaves some).
    pub past_checkpoint: i64,
    /// The first broken link, if any.
    pub broken: Option<ChainBreak>,
}

impl VerifyReport {
    /// Whether the chain is intact.
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Walk the chain of the database at `path` (open as `conn`) and name the first broken link.
pub(crate) fn verify(
    conn: &Connection,
    key: &AuditKey,
    path: &Path,
    mark: Option<MarkState>,
) -> Result<VerifyReport, AuditError> {
    check_key(conn, key, path, false)?;
    let anchor = read_anchor(conn, key, path)?;
    let mut report = VerifyReport {
        rows: 0,
        pruned_through: anchor.map(|a| a.seq),
        last_seq: 0,
        past_checkpoint: 0,
        broken: None,
    };
    if let Some(a) = anchor
        && !a.mac_ok
    {
        report.broken = Some(ChainBreak::AnchorForged { seq: a.seq });
        return Ok(report);
    }
    let (mut expected, mut prev) = match anchor {
        Some(a) => (a.seq + 1, a.tag),
        None => (1, GENESIS),
    };
    let mut last_tag = prev;
    let mut broken_row: Option<ChainRow> = None;
    walk_rows(conn, path, |row| {
        use std::ops::ControlFlow;
        if row.seq < expected {
            report.broken = Some(ChainBreak::Duplicate {
                seq: row.seq,
                row: row.describe(),
            });
            return ControlFlow::Break(());
        }
        if row.seq > expected {
            report.broken = Some(ChainBreak::Deleted {
                from: expected,
                to: row.seq - 1,
                next_row: Some(row.describe()),
            });
            return ControlFlow::Break(());
        }
        let want = key.row_tag(&prev, &row.canonical());
        if !ct_eq(&want, &row.tag) {
            broken_row = Some(row);
            return ControlFlow::Break(());
        }
        report.rows += 1;
        prev = want;
        last_tag = want;
        expected += 1;
        ControlFlow::Continue(())
    })?;
    if let Some(row) = broken_row {
        report.broken = Some(classify_mismatch(conn, key, path, anchor, row)?);
        return Ok(report);
    }
    if report.broken.is_some() {
        return Ok(report);
    }
    let last_seq = expected - 1;
    report.last_seq = last_seq;
    let head = head_path(path);
    match read_head(key, &head).map_err(|e| AuditError::Io {
        path: head.clone(),
        detail: e.to_string(),
    })? {
        HeadFile::Missing => {
            if last_seq > 0 {
                report.broken = Some(ChainBreak::CheckpointMissing { path: head });
            }
        }
        HeadFile::Forged => report.broken = Some(ChainBreak::CheckpointForged { path: head }),
        HeadFile::Valid(h) => {
            if h.seq > last_seq {
                report.broken = Some(ChainBreak::Truncated {
                    last_found: last_seq,
                    checkpoint: h.seq,
                });
            } else if h.seq == last_seq {
                if h.tag != last_tag {
                    report.broken = Some(ChainBreak::CheckpointMismatch { seq: h.seq });
                }
            } else {
                // The checkpoint lags (a crash between commit and checkpoint): its row must match,
                // unless a prune has since removed it.
                report.past_checkpoint = last_seq - h.seq;
                let pruned = anchor.is_some_and(|a| a.seq > h.seq);
                let at = if pruned {
                    Some(h.tag)
                } else {
                    tag_at(conn, key, path, anchor, h.seq)?
                };
                if at != Some(h.tag) {
                    report.broken = Some(ChainBreak::CheckpointMismatch { seq: h.seq });
                }
            }
        }
    }
    if report.broken.is_some() {
        return Ok(report);
    }
    // The mark outlives the data folder: it catches a cut of the rows, the anchor and the
    // checkpoint together.
    match mark {
        None | Some(MarkState::Missing) => {}
        Some(MarkState::Forged) => report.broken = Some(ChainBreak::HighWaterForged),
        Some(MarkState::Valid(h)) => {
            if h.seq > last_seq {
                report.broken = Some(ChainBreak::BelowHighWater {
                    last_found: last_seq,
                    recorded: h.seq,
                });
            } else if anchor.is_none_or(|a| a.seq <= h.seq) {
                let at = if h.seq == last_seq {
                    Some(last_tag)
                } else {
                    tag_at(conn, key, path, anchor, h.seq)?
                };
                if at != Some(h.tag) {
                    report.broken = Some(ChainBreak::HighWaterMismatch { seq: h.seq });
                }
            }
        }
    }
    Ok(report)
}

/// The tag of the row at `seq` (or of the anchor), read from the verified walk.
fn tag_at(
    conn: &Connection,
    key: &AuditKey,
    path: &Path,
    anchor: Option<Anchor>,
    seq: i64,
) -> Result<Option<Tag>, AuditError> {
    if let Some(a) = anchor
        && a.seq == seq
    {
        return Ok(Some(a.tag));
    }
    if seq == 0 && anchor.is_none() {
        return Ok(Some(GENESIS));
    }
    let mut prev = anchor.map_or(GENESIS, |a| a.tag);
    let mut found = None;
    walk_rows(conn, path, |row| {
        let t = key.row_tag(&prev, &row.canonical());
        prev = t;
        if row.seq == seq {
            found = Some(t);
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(found)
}

/// How far from a broken row `verify` looks for the position a moved row was written at.
const REORDER_WINDOW: i64 = 32;

/// A row's tag did not match at its position: was it edited, or written elsewhere in the chain?
/// A moved row still matches its tag when MAC'd at its original position after the tag of the row
/// that originally preceded it, which (if only rows were moved) is still stored nearby.
fn classify_mismatch(
    conn: &Connection,
    key: &AuditKey,
    path: &Path,
    anchor: Option<Anchor>,
    broken: ChainRow,
) -> Result<ChainBreak, AuditError> {
    let lo = broken.seq - REORDER_WINDOW - 1;
    let hi = broken.seq + REORDER_WINDOW;
    let mut candidates: Vec<Tag> = vec![anchor.map_or(GENESIS, |a| a.tag)];
    walk_rows(conn, path, |row| {
        if row.seq > hi {
            return std::ops::ControlFlow::Break(());
        }
        if row.seq >= lo
            && let Ok(t) = Tag::try_from(row.tag.as_slice())
        {
            candidates.push(t);
        }
        std::ops::ControlFlow::Continue(())
    })?;
    let first = anchor.map_or(1, |a| a.seq + 1);
    for pos in (broken.seq - REORDER_WINDOW).max(first)..=hi {
        if pos == broken.seq {
            continue;
        }
        let content = canonical(broken.table, pos, broken.values.iter().map(Val::view));
        for before in &candidates {
            if ct_eq(&key.row_tag(before, &content), &broken.tag) {
                return Ok(ChainBreak::Reordered {
                    seq: broken.seq,
                    written_at: pos,
                    row: broken.describe(),
                });
            }
        }
    }
    Ok(ChainBreak::Edited {
        seq: broken.seq,
        row: broken.describe(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder (kept alive by the caller), the checkpoint's path in it, and the test key.
    fn checkpoint() -> (tempfile::TempDir, std::path::PathBuf, AuditKey) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.head");
        (dir, path, AuditKey::from_bytes(vec![7u8; 32]).unwrap())
    }

    /// The head at `seq`, its tag filled with `seq`'s low byte.
    fn head_at(seq: i64) -> Head {
        Head {
            seq,
            tag: [seq as u8; 32],
        }
    }

    #[test]
    fn key_debug_hides_bytes() {
        let key = AuditKey::from_bytes(b"0123456789abcdef-secret".to_vec()).unwrap();
        assert_eq!(format!("{key:?}"), "AuditKey([redacted])");
        assert!(matches!(
            AuditKey::from_bytes(b"short".to_vec()),
            Err(AuditError::WeakKey { .. })
        ));
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex("0001abff").unwrap(), bytes);
        assert!(unhex("0g").is_none());
    }

    #[test]
    fn head_file_round_trips_and_catches_edits() {
        let (_dir, path, key) = checkpoint();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Missing);
        let head = Head {
            seq: 42,
            tag: [9u8; 32],
        };
        write_head(&key, &path, head).unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Valid(head));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace(&format!("seq {:019}", 42), &format!("seq {:019}", 41)),
        )
        .unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Forged);
        let other = AuditKey::from_bytes(vec![8u8; 32]).unwrap();
        write_head(&key, &path, head).unwrap();
        assert_eq!(read_head(&other, &path).unwrap(), HeadFile::Forged);
    }

    #[test]
    fn a_head_is_advanced_in_place_over_an_older_versions_file_and_never_moves_back() {
        let (_dir, path, key) = checkpoint();
        let head = |seq| Head {
            seq,
            tag: [seq as u8; 32],
        };
        // What an older lastmile wrote: the position unpadded, a shorter file.
        let mac = key.head_mac(5, &head(5).tag);
        let old = format!(
            "lastmile-audit-head v1\nseq 5\ntag {}\nmac {}\n",
            hex(&head(5).tag),
            hex(&mac)
        );
        std::fs::write(&path, &old).unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Valid(head(5)));
        advance_head(&key, &path, head(7)).unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Valid(head(7)));
        let len = std::fs::metadata(&path).unwrap().len();
        // Never backwards, and the length never changes again.
        advance_head(&key, &path, head(6)).unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Valid(head(7)));
        advance_head(&key, &path, head(1_000_000)).unwrap();
        assert_eq!(
            read_head(&key, &path).unwrap(),
            HeadFile::Valid(head(1_000_000))
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        // A longer file (edited) is cut to the head, not left with a tail.
        let mut long = std::fs::read_to_string(&path).unwrap();
        long.push_str("padding that is not part of the head\n");
        std::fs::write(&path, long).unwrap();
        advance_head(&key, &path, head(1_000_001)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert_eq!(
            read_head(&key, &path).unwrap(),
            HeadFile::Valid(head(1_000_001))
        );
    }

    #[test]
    fn a_checkpoint_that_is_not_text_is_overwritten_and_cut_to_the_head() {
        let (_dir, path, key) = checkpoint();
        std::fs::write(&path, vec![0xff; 4096]).unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Forged);
        let head = head_at(3);
        advance_head(&key, &path, head).unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Valid(head));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            head_text(&key, head).len() as u64
        );
    }

    #[test]
    fn a_lock_another_program_keeps_on_the_checkpoint_hangs_nothing() {
        let (_dir, path, key) = checkpoint();
        write_head(&key, &path, head_at(1)).unwrap();
        // Held for the whole test, as a hostile program of the user could.
        let holder = std::fs::File::open(&path).unwrap();
        holder.lock().unwrap();
        // Windows locks are mandatory: there the read fails by name instead; either way it
        // returns.
        let read = read_head(&key, &path);
        #[cfg(unix)]
        assert_eq!(read.unwrap(), HeadFile::Valid(head_at(1)));
        #[cfg(not(unix))]
        drop(read);
        let head = head_at(2);
        // Skipped by name, not waited for; the next one, with the lock let go, lands.
        let e = advance_head(&key, &path, head).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        drop(holder);
        advance_head(&key, &path, head).unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Valid(head));
    }

    #[test]
    fn readers_never_see_a_half_written_head_while_writers_race() {
        let (_dir, path, key) = checkpoint();
        write_head(&key, &path, head_at(1)).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for w in 0..2i64 {
                let (key, path, stop) = (&key, &path, &stop);
                s.spawn(move || {
                    let mut seq = 2 + w;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let tag = [(seq % 251) as u8; 32];
                        // Starved of the lock for 100 ms (Wine's locks are slow), a write is
                        // skipped by name; nothing else may fail.
                        if let Err(e) = advance_head(key, path, Head { seq, tag }) {
                            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                        }
                        seq += 2;
                    }
                });
            }
            // Stop the writers before judging, so a failure cannot leave them spinning.
            let bad = (0..20_000)
                .map(|_| read_head(&key, &path).unwrap())
                .find(|found| !matches!(found, HeadFile::Valid(_)));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(bad, None);
        });
    }
}
