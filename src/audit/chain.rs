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
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;

use super::AuditError;
use super::db::classify;

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
        self.tag_of(b"lastmile-audit-row-v1", &[prev, canonical])
    }

    fn head_mac(&self, seq: i64, tag: &Tag) -> Tag {
        self.tag_of(b"lastmile-audit-head-v1", &[&seq.to_be_bytes(), tag])
    }

    pub(crate) fn anchor_mac(&self, seq: i64, tag: &Tag, pruned_at_ms: i64) -> Tag {
        self.tag_of(
            b"lastmile-audit-anchor-v1",
            &[&seq.to_be_bytes(), tag, &pruned_at_ms.to_be_bytes()],
        )
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

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One column value of an audited row, as it is MAC'd and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

impl Val {
    pub(crate) fn opt_text(s: Option<impl Into<String>>) -> Val {
        s.map_or(Val::Null, |s| Val::Text(s.into()))
    }

    fn from_ref(v: ValueRef<'_>) -> Val {
        match v {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(i) => Val::Int(i),
            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
            // Not written by lastmile: encode so that it can never match what was MAC'd.
            ValueRef::Real(r) => Val::Text(format!("\u{0}real:{r}")),
            ValueRef::Blob(b) => Val::Text(format!("\u{0}blob:{}", hex(b))),
        }
    }
}

/// The three audited tables and their MAC'd columns (every column but `seq` and `tag`), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Executions,
    Sessions,
    Edge,
}

impl Table {
    pub(crate) const ALL: [Table; 3] = [Table::Executions, Table::Sessions, Table::Edge];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Executions => "tool_executions",
            Table::Sessions => "sessions",
            Table::Edge => "edge_events",
        }
    }

    pub(crate) fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Executions => &[
                "execution_id",
                "started_at_ms",
                "finished_at_ms",
                "duration_us",
                "session_id",
                "jti",
                "subject",
                "tier",
                "transport",
                "server",
                "tool",
                "arguments",
                "status",
                "error",
                "redactions",
            ],
            Table::Sessions => &[
                "session_id",
                "event",
                "reason",
                "mode",
                "subject",
                "tier",
                "jti",
                "expires_at_ms",
                "transport",
                "at_ms",
            ],
            Table::Edge => &[
                "at_ms",
                "check_name",
                "reason",
                "method",
                "path",
                "user_agent",
                "remote_addr",
                "requests_per_minute",
            ],
        }
    }

    /// The column whose value is the row's time (prune and `--since` use it).
    pub(crate) fn time_column(self) -> &'static str {
        match self {
            Table::Executions => "started_at_ms",
            Table::Sessions | Table::Edge => "at_ms",
        }
    }

    pub(crate) fn insert_sql(self) -> String {
        let cols = self.columns();
        let marks: Vec<String> = (1..=cols.len() + 2).map(|i| format!("?{i}")).collect();
        format!(
            "INSERT INTO {} (seq, {}, tag) VALUES ({})",
            self.name(),
            cols.join(", "),
            marks.join(", ")
        )
    }

    fn select_sql(self) -> String {
        format!(
            "SELECT seq, {}, tag FROM {} ORDER BY seq",
            self.columns().join(", "),
            self.name()
        )
    }
}

/// The bytes a row's tag covers: table, position, then each column with a type byte and length.
pub(crate) fn canonical(table: Table, seq: i64, values: &[Val]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(table.name().as_bytes());
    out.push(0);
    out.extend_from_slice(&seq.to_be_bytes());
    for v in values {
        match v {
            Val::Null => out.push(0),
            Val::Int(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Val::Text(s) => {
                out.push(2);
                out.extend_from_slice(&(s.len() as u64).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    out
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

/// Write the head checkpoint (atomically: a temporary file renamed over the old one).
pub(crate) fn write_head(key: &AuditKey, path: &Path, head: Head) -> std::io::Result<()> {
    let mac = key.head_mac(head.seq, &head.tag);
    let text = format!(
        "lastmile-audit-head v1\nseq {}\ntag {}\nmac {}\n",
        head.seq,
        hex(&head.tag),
        hex(&mac)
    );
    let tmp = path.with_extension("head.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// What reading the head checkpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadFile {
    Missing,
    Forged,
    Valid(Head),
}

pub(crate) fn read_head(key: &AuditKey, path: &Path) -> std::io::Result<HeadFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HeadFile::Missing),
        Err(e) => return Err(e),
    };
    let mut seq = None;
    let mut tag = None;
    let mut mac = None;
    let mut lines = text.lines();
    if lines.next() != Some("lastmile-audit-head v1") {
        return Ok(HeadFile::Forged);
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
        return Ok(HeadFile::Forged);
    };
    if !ct_eq(&key.head_mac(seq, &tag), &mac) {
        return Ok(HeadFile::Forged);
    }
    Ok(HeadFile::Valid(Head { seq, tag }))
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

/// Check (or, on a fresh file, record) which key chains this database.
pub(crate) fn check_key(conn: &Connection, key: &AuditKey, path: &Path) -> Result<(), AuditError> {
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
        None => {
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('key_check', ?1)",
                [&mine],
            )
            .map_err(err)?;
            Ok(())
        }
    }
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
                    values.push(Val::from_ref(r.get_ref(i)?));
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
) -> Result<VerifyReport, AuditError> {
    check_key(conn, key, path)?;
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
        let want = key.row_tag(&prev, &canonical(row.table, row.seq, &row.values));
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
                // The checkpoint lags (a crash between commit and checkpoint): its row must match.
                report.past_checkpoint = last_seq - h.seq;
                let at = tag_at(conn, key, path, anchor, h.seq)?;
                if at != Some(h.tag) {
                    report.broken = Some(ChainBreak::CheckpointMismatch { seq: h.seq });
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
    let mut prev = anchor.map_or(GENESIS, |a| a.tag);
    let mut found = None;
    walk_rows(conn, path, |row| {
        let t = key.row_tag(&prev, &canonical(row.table, row.seq, &row.values));
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
        let content = canonical(broken.table, pos, &broken.values);
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
    fn canonical_separates_null_from_empty_and_int_from_text() {
        let a = canonical(Table::Sessions, 1, &[Val::Null]);
        let b = canonical(Table::Sessions, 1, &[Val::Text(String::new())]);
        let c = canonical(Table::Sessions, 1, &[Val::Int(1)]);
        let d = canonical(Table::Sessions, 1, &[Val::Text("1".into())]);
        let e = canonical(Table::Sessions, 2, &[Val::Null]);
        let f = canonical(Table::Edge, 1, &[Val::Null]);
        let all = [a, b, c, d, e, f];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "{i} vs {j}");
            }
        }
    }

    #[test]
    fn head_file_round_trips_and_catches_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.head");
        let key = AuditKey::from_bytes(vec![7u8; 32]).unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Missing);
        let head = Head {
            seq: 42,
            tag: [9u8; 32],
        };
        write_head(&key, &path, head).unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Valid(head));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("seq 42", "seq 41")).unwrap();
        assert_eq!(read_head(&key, &path).unwrap(), HeadFile::Forged);
        let other = AuditKey::from_bytes(vec![8u8; 32]).unwrap();
        write_head(&key, &path, head).unwrap();
        assert_eq!(read_head(&other, &path).unwrap(), HeadFile::Forged);
    }
}
