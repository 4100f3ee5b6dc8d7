//! The audit writer: calls hand records to a bounded channel ([`AuditSink`]); one thread
//! ([`AuditWriter`]) takes them in batches (up to `max_batch` rows, or whatever is waiting when the
//! channel is momentarily empty), chains and inserts them in one transaction, then checkpoints the
//! chain head.
//!
//! Nothing is dropped: when the channel is full the sender waits (`record().await`, or
//! `record_blocking`). A row whose `record` returned `Ok` is in the channel; [`AuditSink::flush`]
//! returns once every row recorded before it is committed. [`AuditWriter::shutdown`] (and dropping the
//! writer) stops accepting rows, drains the channel and commits everything before it returns.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::AuditError;
use super::chain::{self, AuditKey, GENESIS, Head, Table, Tag, Val, canonical};
use super::db::{self, OpenOptions, classify};
use super::record::{AuditRecord, auth_mode_str, mask_jwt_like};

/// Tuning of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// How many records the channel holds before senders wait.
    pub capacity: usize,
    /// The most rows committed in one transaction.
    pub max_batch: usize,
    /// How long a write waits for another process's lock before it counts as failed (and is retried).
    pub busy_timeout: Duration,
    /// At shutdown, how long the writer keeps retrying a failing commit before it gives up.
    pub shutdown_grace: Duration,
    /// After a batch, how long the writer keeps polling the channel (every 250 µs) before it parks.
    /// Under steady load senders then never wake a parked thread; commits wait at most 250 µs more.
    pub linger: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            capacity: 8192,
            max_batch: 1000,
            busy_timeout: db::DEFAULT_BUSY_TIMEOUT,
            shutdown_grace: Duration::from_secs(10),
            linger: Duration::from_millis(5),
        }
    }
}

/// What the writer did, returned by [`AuditWriter::shutdown`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Rows committed by this writer.
    pub rows: u64,
    /// Transactions committed.
    pub batches: u64,
    /// The chain position of the last row committed (0 if none ever was).
    pub last_seq: i64,
}

enum Msg {
    Record(Box<AuditRecord>),
    Flush(oneshot::Sender<Result<i64, AuditError>>),
    Wake,
}

#[derive(Debug, Default)]
struct Shared {
    /// The last chain position committed.
    committed_seq: AtomicI64,
    /// The last failure, cleared by the next successful commit.
    failing: Mutex<Option<AuditError>>,
}

/// The handle calls use to hand records to the writer. Cheap to clone; one per task is fine.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Record(_) => "Record",
            Msg::Flush(_) => "Flush",
            Msg::Wake => "Wake",
        })
    }
}

impl AuditSink {
    /// Hand a record to the writer; waits only while the channel is full. `Ok` means the record is
    /// queued (it will be committed before the writer exits); `Err(Closed)` means the writer has
    /// shut down and the record was not taken.
    pub async fn record(&self, record: impl Into<AuditRecord>) -> Result<(), AuditError> {
        self.tx
            .send(Msg::Record(Box::new(record.into())))
            .await
            .map_err(|_| AuditError::Closed)
    }

    /// [`AuditSink::record`] for threads outside an async runtime (it panics inside one, as tokio's
    /// `blocking_send` does).
    pub fn record_blocking(&self, record: impl Into<AuditRecord>) -> Result<(), AuditError> {
        self.tx
            .blocking_send(Msg::Record(Box::new(record.into())))
            .map_err(|_| AuditError::Closed)
    }

    /// Wait until every record handed over before this call is committed; returns the chain position
    /// of the last committed row. Fails (without losing the rows, which the writer keeps retrying)
    /// if the commit failed.
    pub async fn flush(&self) -> Result<i64, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// [`AuditSink::flush`] for threads outside an async runtime.
    pub fn flush_blocking(&self) -> Result<i64, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .blocking_send(Msg::Flush(tx))
            .map_err(|_| AuditError::Closed)?;
        rx.blocking_recv().map_err(|_| AuditError::Closed)?
    }

    /// The chain position of the last committed row (0 before the first commit of this writer).
    pub fn committed_seq(&self) -> i64 {
        self.shared.committed_seq.load(Ordering::Acquire)
    }

    /// The writer's last failure, if its last commit failed (it is retrying).
    pub fn last_error(&self) -> Option<AuditError> {
        self.shared.failing.lock().ok().and_then(|g| g.clone())
    }
}

/// The writer thread's owner. Open it once per gateway, hand out [`AuditWriter::sink`]s, and call
/// [`AuditWriter::shutdown`] on the way out (dropping it does the same, blocking the dropping thread).
#[derive(Debug)]
pub struct AuditWriter {
    sink: AuditSink,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<WriterStats, AuditError>>>,
    path: PathBuf,
}

impl AuditWriter {
    /// Open (create, upgrade) the database at `path` and start the writer thread. Fails with a named
    /// error when the database is locked, read-only, corrupt, from a newer schema, or chained with
    /// another key.
    pub fn open(path: &Path, key: AuditKey) -> Result<Self, AuditError> {
        Self::open_with(path, key, WriterOptions::default())
    }

    /// [`AuditWriter::open`] with explicit tuning.
    pub fn open_with(path: &Path, key: AuditKey, opts: WriterOptions) -> Result<Self, AuditError> {
        let conn = db::open(
            path,
            OpenOptions {
                busy_timeout: opts.busy_timeout,
                ..OpenOptions::default()
            },
        )?;
        chain::check_key(&conn, &key, path)?;
        let start_seq = read_chain_head(&conn, path)?.0;
        let (tx, rx) = mpsc::channel(opts.capacity.max(1));
        let shared = Arc::new(Shared::default());
        shared.committed_seq.store(start_seq, Ordering::Release);
        let stop = Arc::new(AtomicBool::new(false));
        let state = WriterState {
            conn,
            key,
            path: path.to_path_buf(),
            head_path: chain::head_path(path),
            rx,
            stop: stop.clone(),
            shared: shared.clone(),
            opts,
            stats: WriterStats {
                last_seq: start_seq,
                ..WriterStats::default()
            },
        };
        let thread = std::thread::Builder::new()
            .name("lastmile-audit".into())
            .spawn(move || state.run())
            .map_err(|e| AuditError::Io {
                path: path.to_path_buf(),
                detail: format!("cannot start the audit writer thread: {e}"),
            })?;
        Ok(AuditWriter {
            sink: AuditSink { tx, shared },
            stop,
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    /// A handle to hand records to this writer.
    pub fn sink(&self) -> AuditSink {
        self.sink.clone()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop taking records, commit every record already taken, and wait for the writer thread.
    /// Blocks; from async code call it in `tokio::task::spawn_blocking`.
    pub fn shutdown(mut self) -> Result<WriterStats, AuditError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<WriterStats, AuditError> {
        let Some(thread) = self.thread.take() else {
            return Ok(WriterStats::default());
        };
        self.stop.store(true, Ordering::Release);
        // Wake a writer parked on an empty channel. If the channel is full the writer is busy and
        // will see the flag after its batch.
        let _ = self.sink.tx.try_send(Msg::Wake);
        match thread.join() {
            Ok(result) => result,
            Err(_) => Err(AuditError::WriterPanicked),
        }
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        if self.thread.is_some()
            && let Err(e) = self.stop_and_join()
        {
            tracing::error!(error = %e, "audit writer did not shut down cleanly");
        }
    }
}

/// A record turned into its table's column values (serialized, masked), ready to be chained.
#[derive(Debug, Clone)]
pub(crate) struct PreparedRow {
    pub table: Table,
    pub values: Vec<Val>,
}

fn masked(text: &str, count: &mut u32) -> String {
    let (out, n) = mask_jwt_like(text);
    *count += n;
    out.into_owned()
}

fn masked_opt(text: Option<&str>, count: &mut u32) -> Val {
    match text {
        Some(t) => Val::Text(masked(t, count)),
        None => Val::Null,
    }
}

impl PreparedRow {
    pub(crate) fn from_record(record: &AuditRecord) -> PreparedRow {
        match record {
            AuditRecord::Execution(r) => {
                let mut n = 0u32;
                let arguments = r.arguments.as_ref().map(|v| masked(&v.to_string(), &mut n));
                let error = masked_opt(r.error.as_deref(), &mut n);
                let values = vec![
                    Val::Text(r.execution_id.to_string()),
                    Val::Int(r.started_at_ms),
                    Val::Int(r.finished_at_ms),
                    Val::Int(r.duration_us),
                    Val::Text(masked(&r.identity.session_id, &mut n)),
                    masked_opt(r.identity.jti.as_deref(), &mut n),
                    masked_opt(r.identity.subject.as_deref(), &mut n),
                    Val::Text(r.identity.tier.as_str().into()),
                    Val::Text(r.identity.transport.as_str().into()),
                    Val::Text(masked(&r.server, &mut n)),
                    Val::Text(masked(&r.tool, &mut n)),
                    Val::opt_text(arguments),
                    Val::Text(r.status.as_str().into()),
                    error,
                    Val::Int(i64::from(r.redactions.saturating_add(n))),
                ];
                PreparedRow {
                    table: Table::Executions,
                    values,
                }
            }
            AuditRecord::Session(r) => {
                let mut n = 0u32;
                let values = vec![
                    Val::Text(masked(&r.session_id, &mut n)),
                    Val::Text(r.event.as_str().into()),
                    masked_opt(r.reason.as_deref(), &mut n),
                    Val::Text(auth_mode_str(r.mode).into()),
                    masked_opt(r.subject.as_deref(), &mut n),
                    Val::opt_text(r.tier.map(|t| t.as_str())),
                    masked_opt(r.jti.as_deref(), &mut n),
                    r.expires_at_ms.map_or(Val::Null, Val::Int),
                    Val::Text(r.transport.as_str().into()),
                    Val::Int(r.at_ms),
                ];
                PreparedRow {
                    table: Table::Sessions,
                    values,
                }
            }
            AuditRecord::Edge(r) => {
                let mut n = 0u32;
                // Query strings can carry tokens (`?access_token=`): never store one.
                let path = r.path.split(['?', '#']).next().unwrap_or_default();
                let values = vec![
                    Val::Int(r.at_ms),
                    Val::Text(masked(&r.check, &mut n)),
                    Val::Text(masked(&r.reason, &mut n)),
                    Val::Text(masked(&r.method, &mut n)),
                    Val::Text(masked(path, &mut n)),
                    masked_opt(r.user_agent.as_deref(), &mut n),
                    masked_opt(r.remote_addr.as_deref(), &mut n),
                    r.requests_per_minute
                        .map_or(Val::Null, |v| Val::Int(i64::from(v))),
                ];
                PreparedRow {
                    table: Table::Edge,
                    values,
                }
            }
        }
    }
}

/// The chain's end as the writer's cache in the database has it: `(seq, tag)`.
fn read_chain_head(conn: &Connection, path: &Path) -> Result<(i64, Tag), AuditError> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row("SELECT seq, tag FROM chain_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(|e| classify(path, e))?;
    Ok(match row {
        Some((seq, tag)) => (seq, Tag::try_from(tag.as_slice()).unwrap_or(GENESIS)),
        None => (0, GENESIS),
    })
}

/// Chain and insert `rows` in one transaction; returns the new head.
pub(crate) fn commit_rows(
    conn: &mut Connection,
    key: &AuditKey,
    path: &Path,
    rows: &[PreparedRow],
) -> Result<Head, AuditError> {
    let err = |e| classify(path, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    // Read the head inside the write lock: another process may have appended since our last batch.
    let (mut seq, mut prev) = read_chain_head(&tx, path)?;
    {
        let mut stmts = Vec::new();
        for t in Table::ALL {
            stmts.push(tx.prepare_cached(&t.insert_sql()).map_err(err)?);
        }
        for row in rows {
            seq += 1;
            let tag = key.row_tag(&prev, &canonical(row.table, seq, &row.values));
            let stmt = match row.table {
                Table::Executions => &mut stmts[0],
                Table::Sessions => &mut stmts[1],
                Table::Edge => &mut stmts[2],
            };
            let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(row.values.len() + 2);
            params.push(&seq);
            for v in &row.values {
                params.push(v);
            }
            params.push(&tag);
            stmt.execute(params.as_slice()).map_err(err)?;
            prev = tag;
        }
    }
    tx.execute(
        "INSERT OR REPLACE INTO chain_head (id, seq, tag) VALUES (1, ?1, ?2)",
        rusqlite::params![seq, prev],
    )
    .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(Head { seq, tag: prev })
}

struct WriterState {
    conn: Connection,
    key: AuditKey,
    path: PathBuf,
    head_path: PathBuf,
    rx: mpsc::Receiver<Msg>,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    opts: WriterOptions,
    stats: WriterStats,
}

impl WriterState {
    fn run(mut self) -> Result<WriterStats, AuditError> {
        let mut closed = false;
        let mut rows: Vec<PreparedRow> = Vec::with_capacity(self.opts.max_batch);
        let mut waiters: Vec<oneshot::Sender<Result<i64, AuditError>>> = Vec::new();
        loop {
            if !closed && self.stop.load(Ordering::Acquire) {
                // Refuse new records (their senders get `Closed`), keep what is queued.
                self.rx.close();
                closed = true;
            }
            let Some(first) = self.next_message() else {
                break;
            };
            self.take(first, &mut rows, &mut waiters);
            while rows.len() < self.opts.max_batch {
                match self.rx.try_recv() {
                    Ok(msg) => self.take(msg, &mut rows, &mut waiters),
                    Err(_) => break,
                }
            }
            self.commit_until_done(&rows, &mut waiters)?;
            rows.clear();
        }
        Ok(self.stats)
    }

    /// The next message. A writer that just worked polls for up to `linger` before it parks: while
    /// calls keep coming it is never parked, so a sender never pays for waking a thread.
    fn next_message(&mut self) -> Option<Msg> {
        let until = Instant::now() + self.opts.linger;
        let step = self.opts.linger.min(Duration::from_micros(250));
        while !self.stop.load(Ordering::Acquire) {
            match self.rx.try_recv() {
                Ok(msg) => return Some(msg),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if step.is_zero() || Instant::now() >= until {
                break;
            }
            std::thread::sleep(step);
        }
        self.rx.blocking_recv()
    }

    fn take(
        &self,
        msg: Msg,
        rows: &mut Vec<PreparedRow>,
        waiters: &mut Vec<oneshot::Sender<Result<i64, AuditError>>>,
    ) {
        match msg {
            Msg::Record(r) => rows.push(PreparedRow::from_record(&r)),
            Msg::Flush(w) => waiters.push(w),
            Msg::Wake => {}
        }
    }

    /// Commit `rows`, retrying with backoff while it fails (rows are never dropped). Flush waiters
    /// hear of each failure; at shutdown, retries stop after `shutdown_grace`.
    fn commit_until_done(
        &mut self,
        rows: &[PreparedRow],
        waiters: &mut Vec<oneshot::Sender<Result<i64, AuditError>>>,
    ) -> Result<(), AuditError> {
        let mut backoff = Duration::from_millis(10);
        let mut give_up_at: Option<Instant> = None;
        loop {
            let result = if rows.is_empty() {
                Ok(None)
            } else {
                commit_rows(&mut self.conn, &self.key, &self.path, rows).map(Some)
            };
            match result {
                Ok(head) => {
                    if let Some(head) = head {
                        self.stats.rows += rows.len() as u64;
                        self.stats.batches += 1;
                        self.stats.last_seq = head.seq;
                        self.shared.committed_seq.store(head.seq, Ordering::Release);
                        if let Err(e) = chain::write_head(&self.key, &self.head_path, head) {
                            // The rows are committed; only truncation detection lags.
                            tracing::warn!(path = %self.head_path.display(), error = %e,
                                "cannot write the audit chain checkpoint");
                        }
                    }
                    if let Ok(mut f) = self.shared.failing.lock() {
                        *f = None;
                    }
                    for w in waiters.drain(..) {
                        let _ = w.send(Ok(self.stats.last_seq));
                    }
                    return Ok(());
                }
                Err(e) => {
                    tracing::error!(error = %e, rows = rows.len(), "audit commit failed; retrying");
                    if let Ok(mut f) = self.shared.failing.lock() {
                        *f = Some(e.clone());
                    }
                    for w in waiters.drain(..) {
                        let _ = w.send(Err(e.clone()));
                    }
                    if self.stop.load(Ordering::Acquire) {
                        let deadline = *give_up_at
                            .get_or_insert_with(|| Instant::now() + self.opts.shutdown_grace);
                        if Instant::now() >= deadline {
                            let queued = rows.len() + self.rx.len();
                            return Err(AuditError::Unwritten {
                                path: self.path.clone(),
                                rows: queued,
                                detail: e.to_string(),
                            });
                        }
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}
