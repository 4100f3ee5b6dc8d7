//! The audit log: every forwarded request, session event and HTTP edge denial in one SQLite file per
//! profile (`audit.db` in its data folder), bound to the identity that made it, chained with an
//! HMAC so that edits, deletions, reordering and truncation are caught, and never holding a
//! credential.
//!
//! The gateway opens one [`AuditWriter`] at start, clones its [`AuditSink`] into every task, makes an
//! [`ExecutionId`] before each call ([`new_execution_id`]) and hands an [`ExecutionRecord`] to the
//! sink when the call ends; [`AuditWriter::shutdown`] commits everything on the way out. The CLI reads
//! with [`AuditReader`].
//!
//! ```no_run
//! # async fn call(key: lastmile::audit::AuditKey, who: lastmile::audit::SessionIdentity)
//! #     -> Result<(), lastmile::audit::AuditError> {
//! use lastmile::audit::{AuditWriter, ExecStatus, ExecutionRecord, new_execution_id};
//! let writer = AuditWriter::open(std::path::Path::new("audit.db"), key)?;
//! let sink = writer.sink();
//! let id = new_execution_id(); // goes into the span and the result's `_meta`
//! let pending = ExecutionRecord::begin(id, &who, "github", "create_issue", None);
//! // ... the call ...
//! sink.record(pending.finish(ExecStatus::Ok, None, 0)).await?;
//! // Any other forwarded request: its method and target, no arguments.
//! let read = ExecutionRecord::begin_request(new_execution_id(), &who, "resources/read", "github",
//!     "repo://acme/widgets/README.md");
//! sink.record(read.finish(ExecStatus::Ok, None, 0)).await?;
//! sink.flush().await?; // when durability must be awaited
//! tokio::task::spawn_blocking(move || writer.shutdown()).await.ok();
//! # Ok(()) }
//! ```
//!
//! Tamper evidence: rows are chained with an HMAC; the chain's head is vouched for by a MAC'd
//! checkpoint beside the database and by a MAC'd high-water mark kept elsewhere (a
//! [`HighWaterStore`], the OS keyring in the CLI). The writer appends only to a database that still
//! holds the rows those heads vouch for, checked under the database's write lock, so several
//! processes can append to one log.
//!
//! This module knows nothing of rmcp or of the secret store: the key and the mark's store are passed in.

use std::path::PathBuf;

mod chain;
mod db;
mod files;
mod layout;
mod mark;
mod query;
mod record;
mod writer;

#[cfg(test)]
mod tests;

pub use chain::{AuditKey, ChainBreak, VerifyReport, head_path};
pub use db::{DB_FILE_NAME, DEFAULT_BUSY_TIMEOUT, SCHEMA_VERSION, db_path};
pub use mark::{HighWaterStore, MemoryMark, forget_mark, missing_database_break};
pub use query::{AuditReader, ExecutionRow, Filter, PruneReport};
pub use record::{
    AuditRecord, EdgeEvent, ExecStatus, ExecutionId, ExecutionRecord, JWT_MASK, PendingExecution,
    SessionEvent, SessionIdentity, SessionRecord, Transport, mask_jwt_like, new_execution_id,
    now_ms,
};
pub use writer::{AuditSink, AuditWriter, Handoff, WriterOptions, WriterStats};

/// Why the audit log could not be opened, written or read. Messages never hold a row's content.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// There is no audit database yet (readers do not create one).
    #[error(
        "no audit database at {path}\nhint: it is created the first time `lastmile serve` runs for this profile"
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Another process holds a lock on the database for longer than the busy timeout.
    #[error(
        "audit database {path} is locked by another process\nhint: stop the other lastmile (or sqlite3) process using this profile, or wait for it, then retry"
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The database (or its folder) cannot be written.
    #[error(
        "audit database {path} is read-only\nhint: give this user write access to the file and its folder, or set LASTMILE_DATA_DIR to a writable folder"
    )]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a SQLite database, or is damaged.
    #[error(
        "audit database {path} is corrupt: {detail}\nhint: move the file aside (keep it as evidence); lastmile starts a new log in its place"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// SQLite's words.
        detail: String,
    },
    /// The file was written by a newer lastmile.
    #[error(
        "audit database {path} has schema version {found}, newer than this lastmile understands (up to {supported})\nhint: upgrade lastmile, or move the file aside to start a new log"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: u32,
        /// The newest this build knows.
        supported: u32,
    },
    /// SQLite could not open the file at all.
    #[error(
        "cannot open audit database {path}: {detail}\nhint: check that its folder exists and is writable"
    )]
    CannotOpen {
        /// The file.
        path: PathBuf,
        /// SQLite's words.
        detail: String,
    },
    /// The disk is full.
    #[error(
        "audit database {path}: the disk is full\nhint: free space, or prune old rows with `lastmile audit prune --older-than 90d`"
    )]
    DiskFull {
        /// The file.
        path: PathBuf,
    },
    /// Any other SQLite failure.
    #[error(
        "audit database {path}: {detail}\nhint: run `lastmile audit verify`; report a bug if this repeats"
    )]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's words.
        detail: String,
    },
    /// A file beside the database could not be read or written.
    #[error("{path}: {detail}\nhint: check the permissions of the profile's data folder")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        detail: String,
    },
    /// The audit key is too short to chain with.
    #[error(
        "the audit key is {got} bytes; at least {min} are needed\nhint: recreate the profile's audit key"
    )]
    WeakKey {
        /// The least allowed.
        min: usize,
        /// What was given.
        got: usize,
    },
    /// The database was chained with another key.
    #[error(
        "audit database {path} was chained with a different audit key\nhint: restore the profile's audit key in the keyring, or move the database (and audit.head beside it) aside to start a new chain"
    )]
    WrongKey {
        /// The file.
        path: PathBuf,
    },
    /// The database no longer holds rows that a MAC'd head (the checkpoint file or the keyring's
    /// high-water mark) vouches for: the writer refuses to append to a cut chain.
    #[error(
        "refusing to append to the audit database {path}: {found}\nhint: keep {path} and audit.head beside it as evidence and run `lastmile audit verify`; to start a new log, move both aside and run `lastmile audit restart`"
    )]
    ChainBroken {
        /// The file.
        path: PathBuf,
        /// What was found.
        found: ChainBreak,
    },
    /// The high-water mark could not be read or written.
    #[error(
        "cannot read or write the audit log's high-water mark in the secret store: {detail}\nhint: run `lastmile secrets status`"
    )]
    MarkUnavailable {
        /// The store's words.
        detail: String,
    },
    /// The writer has shut down; the record was not taken.
    #[error("the audit writer has shut down\nhint: this happens only while lastmile is exiting")]
    Closed,
    /// The writer thread panicked.
    #[error("the audit writer stopped unexpectedly\nhint: this is a bug; the log file has details")]
    WriterPanicked,
    /// At shutdown, rows could not be committed within the grace period.
    #[error(
        "{rows} audit row(s) could not be committed to {path}: {detail}\nhint: the log file lists the failures; fix the database and run `lastmile audit verify`"
    )]
    Unwritten {
        /// The file.
        path: PathBuf,
        /// Rows not committed.
        rows: usize,
        /// The last failure.
        detail: String,
    },
}

impl AuditError {
    /// Whether this is a cut or rewritten chain (exit code `AUDIT_TAMPERED`) rather than a
    /// database that cannot be used (`AUDIT_UNAVAILABLE`).
    pub fn is_chain_break(&self) -> bool {
        matches!(self, AuditError::ChainBroken { .. })
    }
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds: `2026-11-28T10:00:00.123Z`.
pub fn format_utc_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Shift to a calendar whose years start on March 1st, in 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
