//! One gateway session behind HTTP: a [`ClientSession`] and its hub, served by the same front as
//! stdio over in-process pipes, and the demultiplexer that hands what the front writes to the
//! HTTP exchange it belongs to.
//!
//! Every request that enters gets an id of lastmile's (`"h<n>"`), so requests of several HTTP
//! exchanges on one session (or, on 2026-07-28, of several clients of one identity) never
//! collide; a progress token is replaced by the same id. The front's answer, progress and
//! subscription notifications are found by that id and travel back on the exchange that asked,
//! with the client's own id and token restored. Anything else the front writes (a legacy
//! child's request to the client, a notification no request asked for) goes to the session's
//! `GET` stream, if one is open.
//!
//! Nothing reaches an exchange except what the front wrote, and the front scrubs everything it
//! writes with the session's redactor: this layer adds ids and framing, never content.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::resume::{self, Backlog, Claim, GET_STREAM, PostStream};
use crate::config::Tier;
use crate::gateway::{ClientSession, Face, Guarded, Hub, serve_front};
use crate::wire::{Envelope, Frame, FrameReader, Kind, RawObject, write_queued};

/// The in-process pipe to the front, each way.
const PIPE: usize = 256 * 1024;
/// Lines waiting to enter the front.
const INPUT_QUEUE: usize = 1024;
/// Messages waiting for one exchange (progress, then the answer).
const EXCHANGE_QUEUE: usize = 64;
/// Messages waiting for the `GET` stream.
const STREAM_QUEUE: usize = 256;

/// How long a resume waits for a live stream to hand over.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `_meta` key of a subscription's notifications (2026-07-28).
const SUBSCRIPTION_ID_META: &str = "io.modelcontextprotocol/subscriptionId";

/// Who a session belongs to: the verified identity, not a token (a refreshed token keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    pub(crate) subject: String,
    pub(crate) tier: Tier,
}

impl Owner {
    /// Every client without a credential (`optional` mode): not one principal.
    pub(crate) fn is_anonymous(&self) -> bool {
        self.tier == Tier::Anonymous && self.subject == crate::identity::ANONYMOUS_SUBJECT
    }
}

/// A message for one exchange.
pub(crate) enum Message {
    /// Progress or a subscription's notification (a line of JSON).
    Interim(Bytes),
    /// The answer; the exchange is over.
    Final(Bytes),
}

/// An exchange waiting for its answer.
struct Pending {
    /// The client's id (raw JSON text).
    client_id: String,
    /// The client's progress token (raw JSON text), replaced by lastmile's id.
    client_token: Option<String>,
    tx: mpsc::Sender<Message>,
}

/// One gateway session served over HTTP.
pub(crate) struct Instance {
    /// The `Mcp-Session-Id` (2025 versions); `None` for an identity's 2026-07-28 session.
    pub(crate) id: Option<String>,
    pub(crate) owner: Owner,
    pub(crate) client: Arc<ClientSession>,
    pub(crate) hub: Arc<Hub>,
    input: mpsc::Sender<Bytes>,
    pending: Mutex<HashMap<String, Pending>>,
    stream: Mutex<GetStream>,
    /// Request streams that may be taken over by a resume, by stream number.
    resumable: Mutex<HashMap<u64, mpsc::Sender<Claim>>>,
    next_stream: AtomicU64,
    /// How long a dropped request stream waits to be resumed.
    pub(crate) resume_window: std::time::Duration,
    /// Request streams parked now.
    parked: std::sync::atomic::AtomicUsize,
    next: AtomicU64,
    /// Milliseconds since `born` of the last request (idle sessions are closed).
    last_used: AtomicU64,
    born: Instant,
    /// Fired to end the session: the front drains its calls and stops.
    closing: CancellationToken,
    /// Fired once the front has ended.
    ended: CancellationToken,
}

/// The session's `GET` stream: the open connection (if any) and its last events, which are
/// kept even while none is open, so a reconnect with `Last-Event-ID` misses nothing kept.
#[derive(Default)]
struct GetStream {
    tx: Option<mpsc::Sender<Bytes>>,
    seq: u64,
    backlog: Backlog,
}

/// Why a request stream could not be taken over.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClaimError {
    /// It has ended or expired, or never was.
    Gone,
    /// Its connection did not let go in time; it may be tried again.
    Busy,
}

/// Why a message could not enter a session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The session is closing or closed.
    #[error("the session is closed")]
    Closed,
    /// The message is not one lastmile can forward.
    #[error("{0}")]
    Bad(String),
}

impl Instance {
    /// Start the front of `client` and `hub` on in-process pipes.
    pub(crate) fn start(
        id: Option<String>,
        owner: Owner,
        client: Arc<ClientSession>,
        hub: Arc<Hub>,
        max_message: usize,
        resume_window: std::time::Duration,
    ) -> Arc<Self> {
        let (front_in, to_front) = tokio::io::duplex(PIPE);
        let (from_front, front_out) = tokio::io::duplex(PIPE);
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        tokio::spawn(write_queued(to_front, input_rx, CancellationToken::new()));
        let instance = Arc::new(Instance {
            id,
            owner,
            client: Arc::clone(&client),
            hub: Arc::clone(&hub),
            input,
            pending: Mutex::default(),
            stream: Mutex::default(),
            resumable: Mutex::default(),
            next_stream: AtomicU64::new(GET_STREAM + 1),
            resume_window,
            parked: std::sync::atomic::AtomicUsize::new(0),
            next: AtomicU64::new(1),
            last_used: AtomicU64::new(0),
            born: Instant::now(),
            closing: CancellationToken::new(),
            ended: CancellationToken::new(),
        });
        let guarded = Guarded::new(Face::new(hub, client));
        let closing = instance.closing.clone();
        let ended = instance.ended.clone();
        tokio::spawn(async move {
            serve_front(
                guarded,
                front_in,
                front_out,
                max_message,
                closing.cancelled_owned(),
            )
            .await;
            ended.cancel();
        });
        tokio::spawn(Arc::clone(&instance).demux(from_front, max_message));
        instance
    }

    /// Note a request now (for the idle check).
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_used.store(ms, Ordering::Relaxed);
    }

    /// How long since the last request, unless an exchange or the `GET` stream is open.
    pub(crate) fn idle_for(&self) -> Option<std::time::Duration> {
        let busy = self.pending.lock().map(|p| !p.is_empty()).unwrap_or(true)
            || self
                .stream
                .lock()
                .map(|s| s.tx.as_ref().is_some_and(|tx| !tx.is_closed()))
                .unwrap_or(true);
        if busy {
            return None;
        }
        let now = self.born.elapsed();
        let last = std::time::Duration::from_millis(self.last_used.load(Ordering::Relaxed));
        Some(now.saturating_sub(last))
    }

    /// Whether the session has ended or is ending.
    pub(crate) fn is_closed(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// End the session: calls in flight are cancelled and leave their audit rows, the children
    /// stop. Returns once the front has ended.
    pub(crate) async fn close(&self) {
        self.closing.cancel();
        self.end_streams();
        self.ended.cancelled().await;
        self.hub.stop_all().await;
    }

    /// Hand a request to the front; its answer (and progress, with a progress token) arrive on
    /// the returned receiver. The [`Exchange`] cancels the request if it is dropped unanswered.
    pub(crate) async fn request(
        self: &Arc<Self>,
        envelope: &mut Envelope<'_>,
    ) -> Result<(Exchange, mpsc::Receiver<Message>), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let client_id = envelope
            .id()
            .map(str::to_owned)
            .ok_or_else(|| SendError::Bad("a request needs an id".into()))?;
        let ours = format!("\"h{}\"", self.next.fetch_add(1, Ordering::Relaxed));
        let client_token = replace_progress_token(envelope, &ours)?;
        envelope.set_id(ours.clone());
        let (tx, rx) = mpsc::channel(EXCHANGE_QUEUE);
        if let Ok(mut p) = self.pending.lock() {
            p.insert(
                ours.clone(),
                Pending {
                    client_id,
                    client_token,
                    tx,
                },
            );
        }
        let exchange = Exchange {
            instance: Arc::clone(self),
            id: ours,
            answered: false,
        };
        let mut line = Vec::with_capacity(256);
        envelope.write(&mut line);
        self.send_line(line).await?;
        Ok((exchange, rx))
    }

    /// Hand a notification or a response (to a request the front made) to the front. A
    /// cancellation names the client's id: it is turned into lastmile's.
    pub(crate) async fn notify(&self, envelope: &mut Envelope<'_>) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if envelope.kind() == Kind::Notification
            && envelope.method().as_deref() == Some("notifications/cancelled")
        {
            // Clients that are not one principal cannot name their requests apart: each
            // cancels its own by closing it.
            if self.client.pooled() {
                return Ok(());
            }
            let mut params = envelope.params().ok().flatten().unwrap_or_default();
            let Some(theirs) = params.get("requestId").map(str::to_owned) else {
                return Ok(());
            };
            // Only this session's own requests can be cancelled, and only one that the id names
            // alone: two clients of one identity may use the same id.
            let ours = self.pending.lock().ok().and_then(|p| {
                let mut named = p.iter().filter(|(_, v)| v.client_id == theirs);
                match (named.next(), named.next()) {
                    (Some((ours, _)), None) => Some(ours.clone()),
                    _ => None,
                }
            });
            let Some(ours) = ours else { return Ok(()) };
            params.set("requestId", ours);
            let text = params.to_json();
            envelope.set_member("params", text);
        }
        let mut line = Vec::with_capacity(256);
        envelope.write(&mut line);
        self.send_line(line).await
    }

    /// Open the session's `GET` stream (a newer one replaces an older one): the kept events
    /// after `resume_after` (a reconnect's `Last-Event-ID`), then the live ones, as SSE events.
    /// With `prime`, a first event gives the client an id to come back with.
    pub(crate) fn open_stream(
        &self,
        resume_after: Option<u64>,
        prime: bool,
    ) -> (std::collections::VecDeque<Bytes>, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let mut first = std::collections::VecDeque::new();
        if let Ok(mut s) = self.stream.lock() {
            // Under the lock that `to_stream` takes to number an event: each event is either
            // in this replay or sent to the new connection, never both or neither.
            if let Some(seq) = resume_after {
                first = s.backlog.after(seq);
            } else if prime {
                first.push_back(resume::priming(GET_STREAM, s.seq));
            }
            s.tx = Some(tx);
        }
        (first, rx)
    }

    /// A number for a new request stream.
    pub(crate) fn next_stream(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// Let request stream `stream` be claimed by a resume: claims arrive on the receiver.
    pub(crate) fn resumable(&self, stream: u64) -> mpsc::Receiver<Claim> {
        let (tx, rx) = mpsc::channel(1);
        if let Ok(mut r) = self.resumable.lock() {
            r.insert(stream, tx);
        }
        rx
    }

    /// Request stream `stream` has ended.
    pub(crate) fn forget_resumable(&self, stream: u64) {
        if let Ok(mut r) = self.resumable.lock() {
            r.remove(&stream);
        }
    }

    /// Take over request stream `stream` (parked, or live on a connection that will end), with
    /// its kept events after `seq` first.
    pub(crate) async fn claim(&self, stream: u64, seq: u64) -> Result<PostStream, ClaimError> {
        let tx = self
            .resumable
            .lock()
            .ok()
            .and_then(|mut r| r.remove(&stream))
            .ok_or(ClaimError::Gone)?;
        let (claim, taken) = tokio::sync::oneshot::channel();
        // A stream stuck writing to a dead connection hands over when it is next polled; one
        // not polled for this long stays where it is (it takes claims again), and the client
        // may try again.
        let handed = async {
            tx.send(claim).await.ok()?;
            taken.await.ok()
        };
        match tokio::time::timeout(CLAIM_WAIT, handed).await {
            Ok(Some(stream)) => Ok(stream.resumed(seq)),
            Ok(None) => Err(ClaimError::Gone),
            Err(_) => Err(ClaimError::Busy),
        }
    }

    /// Count a parked request stream, unless `max` are parked already.
    pub(crate) fn try_park(&self, max: usize) -> bool {
        self.parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// A parked request stream has ended.
    pub(crate) fn unpark(&self) {
        self.parked.fetch_sub(1, Ordering::AcqRel);
    }

    fn end_streams(&self) {
        if let Ok(mut s) = self.stream.lock() {
            s.tx = None;
        }
        if let Ok(mut r) = self.resumable.lock() {
            r.clear();
        }
    }

    async fn send_line(&self, mut line: Vec<u8>) -> Result<(), SendError> {
        line.push(b'\n');
        self.input
            .send(Bytes::from(line))
            .await
            .map_err(|_| SendError::Closed)
    }

    /// Forget an exchange; unanswered, cancel its request at the front.
    fn abandon(&self, id: &str) {
        let removed = self.pending.lock().ok().and_then(|mut p| p.remove(id));
        if removed.is_some() && !self.is_closed() {
            let line = format!(
                "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{{\"requestId\":{id},\"reason\":\"the HTTP client went away\"}}}}\n"
            );
            let _ = self.input.try_send(Bytes::from(line));
        }
    }

    /// Every line the front writes goes to the exchange it belongs to, or to the `GET` stream.
    async fn demux<R: tokio::io::AsyncRead + Unpin>(self: Arc<Self>, from_front: R, max: usize) {
        let mut frames = FrameReader::new(from_front, max);
        while let Ok(Some(frame)) = frames.next_frame().await {
            let Frame::Message(line) = frame else {
                continue;
            };
            self.route_out(line).await;
        }
        // The front has ended: the session takes no more requests, and every exchange still
        // open ends without an answer.
        self.closing.cancel();
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
        self.end_streams();
    }

    async fn route_out(&self, line: Bytes) {
        let Ok(mut envelope) = Envelope::parse(&line) else {
            self.to_stream(line).await;
            return;
        };
        match envelope.kind() {
            Kind::Response | Kind::Error => {
                let pending = envelope
                    .id()
                    .and_then(|id| self.pending.lock().ok()?.remove(id));
                match pending {
                    Some(p) => {
                        envelope.set_id(p.client_id);
                        let _ = p.tx.send(Message::Final(to_bytes(&envelope))).await;
                    }
                    None => self.to_stream(line.clone()).await,
                }
            }
            Kind::Notification => {
                if let Some((tx, rewritten)) = self.for_exchange(&mut envelope) {
                    let _ = tx.send(Message::Interim(rewritten)).await;
                } else {
                    self.to_stream(line.clone()).await;
                }
            }
            Kind::Request => self.to_stream(line.clone()).await,
        }
    }

    /// The exchange a notification belongs to (by progress token or subscription id), with the
    /// notification rewritten to the client's token or id.
    fn for_exchange(&self, envelope: &mut Envelope<'_>) -> Option<(mpsc::Sender<Message>, Bytes)> {
        let method = envelope.method()?.into_owned();
        let params_text = envelope.params().ok()??.to_json();
        let mut params = RawObject::parse(&params_text).ok()?;
        let tx = if method == "notifications/progress" {
            let ours = params.get("progressToken")?.to_owned();
            let pending = self.pending.lock().ok()?;
            let p = pending.get(&ours)?;
            params.set("progressToken", p.client_token.clone()?);
            p.tx.clone()
        } else {
            let meta_text = params.get("_meta")?.to_owned();
            let mut meta = RawObject::parse(&meta_text).ok()?;
            let ours = meta.get(SUBSCRIPTION_ID_META)?.to_owned();
            let pending = self.pending.lock().ok()?;
            let p = pending.get(&ours)?;
            meta.set(SUBSCRIPTION_ID_META, p.client_id.clone());
            params.set("_meta", meta.to_json());
            p.tx.clone()
        };
        let text = params.to_json();
        envelope.set_member("params", text);
        Some((tx, to_bytes(envelope)))
    }

    async fn to_stream(&self, line: Bytes) {
        let resumable = self.id.is_some();
        let numbered = self.stream.lock().ok().map(|mut s| {
            s.seq += 1;
            let id = resumable.then_some((GET_STREAM, s.seq));
            let event = resume::event(id, &line);
            if resumable {
                let seq = s.seq;
                s.backlog.push(seq, event.clone());
            }
            (event, s.tx.clone())
        });
        match numbered {
            Some((event, Some(tx))) => {
                let _ = tx.send(event).await;
            }
            _ if resumable => tracing::debug!(
                "a message for the client is kept for a GET stream to come (none is open)"
            ),
            _ => tracing::debug!(
                "a message for the client was dropped: no GET stream is open on its session"
            ),
        }
    }
}

/// One HTTP exchange in flight; dropped before its answer, it cancels the request.
pub(crate) struct Exchange {
    instance: Arc<Instance>,
    id: String,
    answered: bool,
}

impl Exchange {
    /// The answer arrived: nothing to cancel.
    pub(crate) fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.answered {
            self.instance.abandon(&self.id);
        }
    }
}

fn to_bytes(envelope: &Envelope<'_>) -> Bytes {
    let mut out = Vec::with_capacity(256);
    envelope.write(&mut out);
    Bytes::from(out)
}

/// Replace `params._meta.progressToken` with `ours`; the client's token, if there was one.
fn replace_progress_token(
    envelope: &mut Envelope<'_>,
    ours: &str,
) -> Result<Option<String>, SendError> {
    let Some(params) = envelope
        .params()
        .map_err(|e| SendError::Bad(e.to_string()))?
    else {
        return Ok(None);
    };
    let Some(meta_text) = params.get("_meta") else {
        return Ok(None);
    };
    let mut meta = RawObject::parse(meta_text).map_err(|e| SendError::Bad(e.to_string()))?;
    let Some(token) = meta.get("progressToken").map(str::to_owned) else {
        return Ok(None);
    };
    meta.set("progressToken", ours.to_owned());
    let meta_json = meta.to_json();
    let mut params = params.clone();
    params.set("_meta", meta_json);
    let text = params.to_json();
    envelope.set_member("params", text);
    Ok(Some(token))
}
