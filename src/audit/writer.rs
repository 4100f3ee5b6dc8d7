//! The audit writer: calls hand records to a bounded channel ([`AuditSink`]); one thread
//! ([`AuditWriter`]) takes them in batches (up to `max_batch` rows, or whatever is waiting when the
//! channel is momentarily empty), chains and inserts them in one transaction, then checkpoints the
//! chain head.
//!
//! Before each batch, under the database's write lock (`BEGIN IMMEDIATE`), the writer checks that
//! the database still holds the row every MAC'd head vouches for — the checkpoint file, the highest
//! head this writer has seen, and at open the keyring's high-water mark — and refuses
//! ([`AuditError::ChainBroken`]) when it does not. The checkpoint is written after the commit, so it
//! may lag the rows (a crash in between) but never lead them; several processes may append to one
//! log, each continuing from the rows' own end.
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

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::AuditError;
use super::chain::{self, AuditKey, ChainBreak, GENESIS, Head, HeadFile, Voucher};
use super::db::{self, OpenOptions, classify};
use super::layout::{EdgeRow, ExecRow, PreparedRow, SessionRow, Table, ValRef, canonical_into};
use super::mark::{self, HighWaterStore, MarkState};
use super::record::{AuditRecord, auth_mode_str, mask_jwt_like};

/// How often a lingering writer looks at its channel. A commit costs far more than a row (the
/// WAL write and the chain checkpoint's rewrite): at thousands of calls a second, 250 µs steps
/// made batches of one or two rows and about 35 µs of writer CPU per row; 2 ms steps gather
/// a dozen or more.
const POLL_STEP: Duration = Duration::from_millis(2);

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
    /// After a batch, how long the writer keeps polling the channel (a step of a few
    /// milliseconds) before it parks. Under steady load senders then never wake a parked thread,
    /// and each commit carries what came in during a step; a row waits at most one step more.
    pub linger: Duration,
    /// How often, while rows keep coming, the writer raises the high-water mark (a keyring write,
    /// under the database's write lock). It is raised at shutdown too.
    pub mark_interval: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            capacity: 8192,
            max_batch: 1000,
            busy_timeout: db::DEFAULT_BUSY_TIMEOUT,
            shutdown_grace: Duration::from_secs(10),
            linger: Duration::from_millis(5),
            mark_interval: Duration::from_secs(10),
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

// A record travels by value: boxing it would put a `malloc` in every hand-off, and the writer's
// frees of those boxes contend with it for the sender's arena (the hand-off's p99).
#[allow(clippy::large_enum_variant)]
enum Msg {
    Record(AuditRecord),
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

/// A record's hand-off to the writer ([`AuditSink::record`]): ready at once (queued, or refused
/// because the writer has shut down) unless the channel was full, when it waits for room.
pub type Handoff = futures::future::Either<
    futures::future::Ready<Result<(), AuditError>>,
    futures::future::BoxFuture<'static, Result<(), AuditError>>,
>;

impl AuditSink {
    /// Hand a record to the writer; waits only while the channel is full. `Ok` means the record is
    /// queued (it will be committed before the writer exits); `Err(Closed)` means the writer has
    /// shut down and the record was not taken.
    ///
    /// The hand-off is tried when this is called, not when the future is first polled: almost
    /// always there is room, and the record moves into the channel at once. The future then
    /// holds no copy of the record (every call's future is allocated at its largest state's
    /// size); only a full channel waits, on the heap.
    pub fn record(&self, record: impl Into<AuditRecord>) -> Handoff {
        use futures::future::{Either, FutureExt, ready};
        match self.tx.try_send(Msg::Record(record.into())) {
            Ok(()) => Either::Left(ready(Ok(()))),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Either::Left(ready(Err(AuditError::Closed)))
            }
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let tx = self.tx.clone();
                Either::Right(
                    async move { tx.send(msg).await.map_err(|_| AuditError::Closed) }.boxed(),
                )
            }
        }
    }

    /// [`AuditSink::record`] for threads outside an async runtime (it panics inside one, as tokio's
    /// `blocking_send` does).
    pub fn record_blocking(&self, record: impl Into<AuditRecord>) -> Result<(), AuditError> {
        self.tx
            .blocking_send(Msg::Record(record.into()))
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
        Self::open_guarded(path, key, opts, None)
    }

    /// [`AuditWriter::open_with`], also keeping the chain's high-water mark in `mark`: checked at
    /// open (a database that no longer reaches it is refused, [`AuditError::ChainBroken`]) and
    /// raised, under the database's write lock, at open, every `mark_interval` and at shutdown.
    pub fn open_guarded(
        path: &Path,
        key: AuditKey,
        opts: WriterOptions,
        mark: Option<Box<dyn HighWaterStore>>,
    ) -> Result<Self, AuditError> {
        let mut conn = db::open(
            path,
            OpenOptions {
                busy_timeout: opts.busy_timeout,
                ..OpenOptions::default()
            },
        )?;
        chain::check_key(&conn, &key, path, true)?;
        let head_path = chain::head_path(path);
        let start = guard_and_mark(
            &mut conn,
            &key,
            path,
            &head_path,
            Head {
                seq: 0,
                tag: GENESIS,
            },
            mark.as_deref(),
        )?;
        let (tx, rx) = mpsc::channel(opts.capacity.max(1));
        let shared = Arc::new(Shared::default());
        shared.committed_seq.store(start.seq, Ordering::Release);
        let stop = Arc::new(AtomicBool::new(false));
        let state = WriterState {
            conn,
            key,
            path: path.to_path_buf(),
            head_path,
            rx,
            stop: stop.clone(),
            shared: shared.clone(),
            opts,
            stats: WriterStats {
                last_seq: start.seq,
                ..WriterStats::default()
            },
            vouched: start,
            mark,
            marked_at: Instant::now(),
            marked_seq: start.seq,
            held: std::collections::VecDeque::new(),
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

/// `text` with JWT-shaped runs masked; the string itself when there is none (no copy).
fn masked(text: String, count: &mut u32) -> String {
    match mask_jwt_like(&text) {
        (std::borrow::Cow::Owned(out), n) => {
            *count += n;
            out
        }
        (std::borrow::Cow::Borrowed(_), _) => text,
    }
}

fn masked_opt(text: Option<String>, count: &mut u32) -> Option<String> {
    text.map(|t| masked(t, count))
}

impl PreparedRow {
    /// A record as its table's row: serialized, JWT-shaped text masked.
    pub(crate) fn from_record(record: AuditRecord) -> PreparedRow {
        let mut n = 0u32;
        match record {
            AuditRecord::Execution(r) => {
                let arguments = masked_opt(r.arguments, &mut n);
                let error = masked_opt(r.error, &mut n);
                let mut row = ExecRow {
                    execution_id: r.execution_id.hyphenated(),
                    started_at_ms: r.started_at_ms,
                    finished_at_ms: r.finished_at_ms,
                    duration_us: r.duration_us,
                    session_id: masked(r.identity.session_id, &mut n),
                    jti: masked_opt(r.identity.jti, &mut n),
                    subject: masked_opt(r.identity.subject, &mut n),
                    tier: r.identity.tier.as_str().into(),
                    transport: r.identity.transport.as_str().into(),
                    server: masked(r.server, &mut n),
                    tool: masked(r.tool, &mut n),
                    arguments,
                    status: r.status.as_str().into(),
                    error,
                    redactions: 0,
                    method: masked(r.method, &mut n),
                };
                row.redactions = i64::from(r.redactions.saturating_add(n));
                PreparedRow::Executions(row)
            }
            AuditRecord::Session(r) => PreparedRow::Sessions(SessionRow {
                session_id: masked(r.session_id, &mut n),
                event: r.event.as_str().into(),
                reason: masked_opt(r.reason, &mut n),
                mode: auth_mode_str(r.mode).into(),
                subject: masked_opt(r.subject, &mut n),
                tier: r.tier.map(|t| t.as_str().to_string()),
                jti: masked_opt(r.jti, &mut n),
                expires_at_ms: r.expires_at_ms,
                transport: r.transport.as_str().into(),
                at_ms: r.at_ms,
            }),
            AuditRecord::Edge(r) => {
                // Query strings can carry tokens (`?access_token=`): never store one.
                let path = r
                    .path
                    .split(['?', '#'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                PreparedRow::Edge(EdgeRow {
                    at_ms: r.at_ms,
                    check_name: masked(r.check, &mut n),
                    reason: masked(r.reason, &mut n),
                    method: masked(r.method, &mut n),
                    path: masked(path, &mut n),
                    user_agent: masked_opt(r.user_agent, &mut n),
                    remote_addr: masked_opt(r.remote_addr, &mut n),
                    requests_per_minute: r.requests_per_minute.map(i64::from),
                    count: i64::from(r.count),
                })
            }
        }
    }
}

fn broken(path: &Path, found: ChainBreak) -> AuditError {
    AuditError::ChainBroken {
        path: path.to_path_buf(),
        found,
    }
}

/// Under the write lock: fail unless the database still holds every head vouched for — `vouched`
/// (what this writer already knows) and the checkpoint file; returns the database's end and the
/// highest vouched head. The checkpoint may lag the rows (a crash between commit and checkpoint);
/// it may never lead them.
fn guard(
    conn: &Connection,
    key: &AuditKey,
    path: &Path,
    head_path: &Path,
    vouched: Head,
) -> Result<(Head, Head), AuditError> {
    let end = chain::db_end(conn, key, path)?;
    let mut best = vouched;
    let mut checked = None;
    match chain::read_head(key, head_path).map_err(|e| AuditError::Io {
        path: head_path.to_path_buf(),
        detail: e.to_string(),
    })? {
        HeadFile::Valid(h) => {
            if let Some(b) = chain::check_extends(conn, key, path, end, h, Voucher::HeadFile)? {
                return Err(broken(path, b));
            }
            checked = Some(h);
            if h.seq > best.seq {
                best = h;
            }
        }
        HeadFile::Forged => {
            return Err(broken(
                path,
                ChainBreak::CheckpointForged {
                    path: head_path.to_path_buf(),
                },
            ));
        }
        // Written before the first row ever is, so a log with rows and no checkpoint lost it.
        HeadFile::Missing if end.seq > 0 || vouched.seq > 0 => {
            return Err(broken(
                path,
                ChainBreak::CheckpointMissing {
                    path: head_path.to_path_buf(),
                },
            ));
        }
        HeadFile::Missing => {}
    }
    // What this writer itself saw vouched for: an older checkpoint copied back over a newer one
    // must not let a cut through. (When the checkpoint holds exactly that head, which is the
    // usual case, it was checked just above.)
    if vouched.seq > 0
        && checked != Some(vouched)
        && let Some(b) = chain::check_extends(conn, key, path, end, vouched, Voucher::HeadFile)?
    {
        return Err(broken(path, b));
    }
    Ok((end, best))
}

/// Under the write lock: check the keyring's mark too, then raise the mark and the checkpoint to
/// the database's end. Returns the end.
fn guard_and_mark(
    conn: &mut Connection,
    key: &AuditKey,
    path: &Path,
    head_path: &Path,
    vouched: Head,
    mark: Option<&dyn HighWaterStore>,
) -> Result<Head, AuditError> {
    let err = |e| classify(path, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let (end, _) = guard(&tx, key, path, head_path, vouched)?;
    if let Some(store) = mark {
        match mark::read_mark(store, key, path)? {
            MarkState::Valid(h) => {
                if let Some(b) = chain::check_extends(&tx, key, path, end, h, Voucher::Mark)? {
                    return Err(broken(path, b));
                }
            }
            MarkState::Forged => return Err(broken(path, ChainBreak::HighWaterForged)),
            MarkState::Missing => {}
        }
    }
    // Everything vouched for is there: vouch for the end (the checkpoint before any row lands).
    if let Err(e) = chain::advance_head(key, head_path, end) {
        tracing::warn!(path = %head_path.display(), error = %e, "cannot write the audit chain checkpoint");
    }
    if let Some(store) = mark
        && let Err(e) = mark::raise_mark(store, key, path, end)
    {
        tracing::warn!(error = %e, "cannot raise the audit high-water mark");
    }
    tx.commit().map_err(err)?;
    Ok(end)
}

/// Chain and insert `rows` in one transaction, after [`guard`] under the same write lock; returns
/// the new head.
pub(crate) fn commit_rows(
    conn: &mut Connection,
    key: &AuditKey,
    path: &Path,
    head_path: &Path,
    vouched: Head,
    rows: &[PreparedRow],
) -> Result<Head, AuditError> {
    let err = |e| classify(path, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    // Another process may have appended since our last batch: continue from the rows' own end.
    let (end, _) = guard(&tx, key, path, head_path, vouched)?;
    let (mut seq, mut prev) = (end.seq, end.tag);
    {
        let mut stmts = Vec::new();
        for t in Table::ALL {
            stmts.push(tx.prepare_cached(&t.insert_sql()).map_err(err)?);
        }
        // Keyed once per batch; the values and canonical bytes reuse one buffer each, and the
        // parameters are bound in place: a row allocates nothing here.
        let mac = key.row_mac();
        let mut values: Vec<ValRef<'_>> = Vec::with_capacity(32);
        let mut bytes: Vec<u8> = Vec::with_capacity(1024);
        for row in rows {
            seq += 1;
            let table = row.table();
            values.clear();
            row.push_values(&mut values);
            canonical_into(&mut bytes, table, seq, values.iter().copied());
            let tag = mac.tag(&prev, &bytes);
            let stmt = &mut stmts[table.index()];
            stmt.raw_bind_parameter(1, seq).map_err(err)?;
            for (i, v) in values.iter().enumerate() {
                stmt.raw_bind_parameter(i + 2, v).map_err(err)?;
            }
            stmt.raw_bind_parameter(values.len() + 2, tag)
                .map_err(err)?;
            stmt.raw_execute().map_err(err)?;
            prev = tag;
        }
    }
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
    /// The highest head this writer knows the database must still hold.
    vouched: Head,
    mark: Option<Box<dyn HighWaterStore>>,
    marked_at: Instant,
    marked_seq: i64,
    /// Messages taken off the channel while a commit was failing (records wait here, in order,
    /// for the next batch; flushes are answered at once).
    held: std::collections::VecDeque<Msg>,
}

impl WriterState {
    fn run(mut self) -> Result<WriterStats, AuditError> {
        let mut closed = false;
        let mut rows: Vec<PreparedRow> = Vec::with_capacity(self.opts.max_batch);
        let mut waiters: Vec<oneshot::Sender<Result<i64, AuditError>>> = Vec::new();
        let mut taken: Vec<Msg> = Vec::with_capacity(self.opts.max_batch);
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
            // Take what is waiting in one go: the channel then frees its slots at once, so
            // senders blocked on a full channel wake once per batch, not once per row.
            let mut room = self.opts.max_batch.saturating_sub(1);
            while room > 0
                && let Some(msg) = self.held.pop_front()
            {
                self.take(msg, &mut rows, &mut waiters);
                room -= 1;
            }
            if room > 0 && self.held.is_empty() && !self.rx.is_empty() {
                // Only this thread receives: with messages waiting this does not block.
                self.rx.blocking_recv_many(&mut taken, room);
                for msg in taken.drain(..) {
                    self.take(msg, &mut rows, &mut waiters);
                }
            }
            self.commit_until_done(&rows, &mut waiters)?;
            rows.clear();
            if self.marked_at.elapsed() >= self.opts.mark_interval {
                self.raise_mark();
            }
        }
        // The session ends: the mark records everything committed.
        self.raise_mark();
        Ok(self.stats)
    }

    /// Raise the high-water mark to the database's end (under the write lock), if there is a mark
    /// and rows were committed since it was last raised. A failure is logged; the rows are safe.
    fn raise_mark(&mut self) {
        self.marked_at = Instant::now();
        if self.mark.is_none() || self.stats.last_seq <= self.marked_seq {
            return;
        }
        match guard_and_mark(
            &mut self.conn,
            &self.key,
            &self.path,
            &self.head_path,
            self.vouched,
            self.mark.as_deref(),
        ) {
            Ok(end) => self.marked_seq = end.seq,
            Err(e) => tracing::error!(error = %e, "cannot raise the audit high-water mark"),
        }
    }

    /// The next message. A writer that just worked polls for up to `linger` before it parks: while
    /// calls keep coming it is never parked, so a sender never pays for waking a thread.
    fn next_message(&mut self) -> Option<Msg> {
        if let Some(msg) = self.held.pop_front() {
            return Some(msg);
        }
        let until = Instant::now() + self.opts.linger;
        let step = self.opts.linger.min(POLL_STEP);
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
            Msg::Record(r) => rows.push(PreparedRow::from_record(r)),
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
                commit_rows(
                    &mut self.conn,
                    &self.key,
                    &self.path,
                    &self.head_path,
                    self.vouched,
                    rows,
                )
                .map(Some)
            };
            match result {
                Ok(head) => {
                    if let Some(head) = head {
                        self.stats.rows += rows.len() as u64;
                        self.stats.batches += 1;
                        self.stats.last_seq = head.seq;
                        self.shared.committed_seq.store(head.seq, Ordering::Release);
                        self.vouched = head;
                        if let Err(e) = chain::advance_head(&self.key, &self.head_path, head) {
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
                    // A flush sent while this batch keeps failing is answered now: it would
                    // otherwise wait in the channel behind the retries (a session's last flush
                    // would hang its exit). Records keep their order for the next batch.
                    while self.held.len() < self.opts.capacity
                        && let Ok(msg) = self.rx.try_recv()
                    {
                        match msg {
                            Msg::Flush(w) => {
                                let _ = w.send(Err(e.clone()));
                            }
                            other => self.held.push_back(other),
                        }
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
