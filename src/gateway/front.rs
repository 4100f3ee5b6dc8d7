//! The front: lastmile's own JSON-RPC loop on the client's side of the session.
//!
//! Each line the client sends is framed here (bounded size: an oversized line gets a named error
//! and the connection goes on) and parsed once into its envelope. The hot path — `tools/call` —
//! is forwarded as bytes ([`super::call`]): only the id, the name and the progress token change,
//! the result is scrubbed as raw JSON text and audited from the envelope. Requests about tasks
//! go to their owning child the same way ([`super::tasks`]). Everything else
//! (the lifecycle, lists, prompts, resources, completions, logging) goes to the typed face behind
//! the gate ([`Guarded`]) over an in-process pipe, and what the face writes comes back through
//! here on its way to the client.
//!
//! One loop reads the client; raw calls in flight are futures polled by that loop (no task per
//! message); one writer task owns the client's output and coalesces what is queued. A client
//! that does not read holds everything back through the bounded queue.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rmcp::ServiceExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::guard::Guarded;
use super::hub::Hub;
use super::listen::{self, Listen, V_2026_07_28};
use super::session::ClientSession;
use crate::downstream::RawSink;
use crate::wire::{Envelope, Frame, FrameReader, Kind, RawObject, json_string, write_queued};

/// How many lines may wait for the client's output.
const OUT_QUEUE: usize = 1024;
/// How many lines may wait for the typed face.
const TYPED_QUEUE: usize = 256;
/// The in-process pipe to the typed face, each way.
const PIPE: usize = 256 * 1024;

/// How long calls in flight may take to end once the client has gone (each is cancelled first).
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// JSON-RPC: the line is not a message lastmile can read.
const PARSE_ERROR: i32 = -32700;
/// JSON-RPC: the message is not a valid request.
const INVALID_REQUEST: i32 = -32600;

/// What the front shares with the raw calls it runs.
pub(crate) struct Front {
    pub(crate) hub: Arc<Hub>,
    pub(crate) session: Arc<ClientSession>,
    pub(crate) out: Outbox,
    /// Raw calls in flight, by the client's id (raw JSON text), for `notifications/cancelled`.
    inflight: Mutex<HashMap<String, CancellationToken>>,
    /// Fired when the client has gone: every raw call's token is a child of it.
    closing: CancellationToken,
    /// Where the children's progress for raw calls goes.
    pub(crate) progress: Arc<dyn RawSink>,
    /// The typed face (for subscriptions made on behalf of `subscriptions/listen`).
    pub(crate) face: super::face::Face,
    /// Open `subscriptions/listen` subscriptions.
    listens: Mutex<Vec<Listen>>,
    /// The client spoke 2026-07-28: its notifications travel only on subscriptions.
    v2026: AtomicBool,
    /// The client opened with `initialize`: its requests are not read for a protocol version.
    initialized: AtomicBool,
    /// `server/discover` requests awaiting the face's answer: id → whether 2026-07-28 stays.
    discovers: Mutex<HashMap<String, bool>>,
    /// Children's requests for a 2026-07-28 client, carried inside the calls they belong to.
    pub(crate) bridge: Arc<super::bridge::Bridge>,
}

/// The lifecycle key naming the protocol version of one request.
const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
/// The lifecycle key carrying the client's capabilities on one request.
const CLIENT_CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";

/// The client's output queue.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Bytes>,
}

impl Outbox {
    /// Queue one message (without its line ending); waits while the queue is full.
    pub(crate) async fn send(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        let _ = self.tx.send(Bytes::from(line)).await;
    }
}

/// Progress for raw calls: scrubbed, and dropped once the session's token has expired or when
/// the client is not keeping up (progress is advisory).
struct ProgressSink {
    session: Arc<ClientSession>,
    out: Outbox,
}

impl RawSink for ProgressSink {
    fn deliver(&self, message: Vec<u8>) {
        if self.session.gate().live().is_err() {
            return;
        }
        let (clean, _) = self.session.redactor().scrub_bytes(&message);
        let mut line = clean.into_owned();
        line.push(b'\n');
        let _ = self.out.tx.try_send(Bytes::from(line));
    }
}

impl Front {
    /// Register a raw call in flight; its token fires on the client's `notifications/cancelled`.
    pub(crate) fn begin(&self, id: &str) -> CancellationToken {
        // A child of `closing`: a call that starts after the client left is cancelled too.
        let token = self.closing.child_token();
        if let Ok(mut map) = self.inflight.lock() {
            map.insert(id.to_owned(), token.clone());
        }
        token
    }

    /// A token for work of lastmile's own on the client's behalf: fired when the client has gone.
    pub(crate) fn token(&self) -> CancellationToken {
        self.closing.child_token()
    }

    /// Forget a finished raw call.
    pub(crate) fn end(&self, id: &str) {
        if let Ok(mut map) = self.inflight.lock() {
            map.remove(id);
        }
    }

    /// Fired when the client has gone.
    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// The client speaks 2026-07-28: notifications only on subscriptions, and no request from
    /// a child travels to it except inside a call.
    fn speaks_2026(&self) {
        if !self.v2026.swap(true, Ordering::Relaxed) {
            self.hub.upstream.set_stateless();
        }
    }

    /// A 2026-07-28 client's first call after `server/discover`: its capabilities come in the
    /// request's `_meta`, so the children can start with them and the call can take the raw
    /// path (and bridge its child's requests) like every later one.
    fn learn_client_2026(&self, envelope: &Envelope<'_>) {
        if self.initialized.load(Ordering::Relaxed)
            || lifecycle_meta(envelope, PROTOCOL_VERSION_META)
                .is_none_or(|v| v.trim_matches('"') < V_2026_07_28)
        {
            return;
        }
        let caps = lifecycle_meta(envelope, CLIENT_CAPABILITIES_META)
            .and_then(|c| serde_json::from_str::<rmcp::model::ClientCapabilities>(&c).ok());
        if let Some(caps) = caps {
            self.hub.upstream.set_capabilities(caps);
            self.hub.ensure_started();
            self.speaks_2026();
        }
    }

    /// Register an acknowledged subscription.
    pub(crate) fn add_listen(&self, listen: Listen) {
        self.speaks_2026();
        if let Ok(mut l) = self.listens.lock() {
            l.push(listen);
        }
    }

    /// Cancel every raw call in flight (the client went away).
    fn cancel_all(&self) {
        self.closing.cancel();
    }

    /// Cancel a raw call in flight by the client's id; false if none is.
    fn cancel(&self, id: &str) -> bool {
        match self.inflight.lock().ok().and_then(|mut m| m.remove(id)) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// A response to `id` (raw JSON text) whose `member` (`result` or `error`) `body` writes.
pub(crate) fn response_line(id: &str, member: &str, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(member.as_bytes());
    out.extend_from_slice(b"\":");
    body(&mut out);
    out.push(b'}');
    out
}

/// An error response to `id` (raw JSON text; `null` when unknown).
pub(crate) fn error_line(id: &str, code: i32, message: &str) -> Vec<u8> {
    let error = format!("{{\"code\":{code},\"message\":{}}}", json_string(message));
    response_line(id, "error", |out| out.extend_from_slice(error.as_bytes()))
}

/// Serve one client on `input`/`output` until its input ends or `shutdown` completes.
pub async fn serve<R, W>(
    guarded: Guarded,
    input: R,
    output: W,
    max_message: usize,
    shutdown: impl Future<Output = ()>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let hub = Arc::clone(guarded.face().hub());
    let session = Arc::clone(guarded.face().session());
    let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
    let writer = tokio::spawn(write_queued(output, out_rx, CancellationToken::new()));
    let out = Outbox { tx: out_tx };
    let (typed_tx, typed_rx) = mpsc::channel::<Bytes>(TYPED_QUEUE);
    let bridge = Arc::new(super::bridge::Bridge::new(format!(
        "{}/{}",
        session.gate().session.subject(),
        session.gate().session.tier()
    )));
    hub.upstream.set_bridge(bridge.clone());
    let front = Arc::new(Front {
        hub,
        session: Arc::clone(&session),
        out: out.clone(),
        inflight: Mutex::default(),
        closing: CancellationToken::new(),
        progress: Arc::new(ProgressSink {
            session,
            out: out.clone(),
        }),
        face: guarded.face().clone(),
        listens: Mutex::default(),
        v2026: AtomicBool::new(false),
        initialized: AtomicBool::new(false),
        discovers: Mutex::default(),
        bridge,
    });

    // The typed face, on its own pipes: it reads `face_in`, writes `face_out`.
    let (face_in, to_face) = tokio::io::duplex(PIPE);
    let (from_face, face_out) = tokio::io::duplex(PIPE);
    tokio::spawn(write_queued(to_face, typed_rx, CancellationToken::new()));
    let peer_upstream = Arc::clone(guarded.face().hub());
    let face_front = Arc::clone(&front);
    let face = tokio::spawn(async move {
        match guarded.serve((face_in, face_out)).await {
            Ok(service) => {
                // The lifecycle is open: the client's handle, for notifications to reach it
                // even when its requests so far took the raw paths.
                peer_upstream.upstream.set_peer(service.peer());
                let _ = service.waiting().await;
            }
            // A 2026-07-28 client whose requests all took the raw paths never opened the typed
            // face's lifecycle: nothing went wrong.
            Err(e) if face_front.v2026.load(Ordering::Relaxed) => {
                tracing::debug!("the typed face saw no request before the client left: {e}")
            }
            Err(e) => tracing::warn!("the client went away before the session started: {e}"),
        }
    });
    let relay = tokio::spawn(Arc::clone(&front).relay_face(from_face, max_message));

    let mut frames = FrameReader::new(input, max_message);
    let mut calls: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            frame = frames.next_frame() => {
                let line = match frame {
                    Ok(Some(Frame::Message(line))) => line,
                    Ok(Some(Frame::Oversized { len })) => {
                        let message = format!(
                            "message too large: {len} bytes, over the limit of {max_message} bytes; it was dropped\nhint: raise `max_message_bytes` under [defaults] in lastmile.toml"
                        );
                        out.send(error_line("null", INVALID_REQUEST, &message)).await;
                        continue;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("reading the client failed: {e}");
                        break;
                    }
                };
                match route(&front, &line) {
                    Route::Raw => calls.push(Box::pin(super::call::tools_call(Arc::clone(&front), line))),
                    Route::RawRead => calls.push(Box::pin(super::read::read(Arc::clone(&front), line))),
                    Route::Tasks => calls.push(Box::pin(super::tasks::handle(Arc::clone(&front), line))),
                    Route::Listen => calls.push(Box::pin(listen::listen(Arc::clone(&front), line))),
                    Route::Unlisten(l) => calls.push(Box::pin(listen::unlisten(Arc::clone(&front), l))),
                    Route::Typed => {
                        let mut with_newline = Vec::with_capacity(line.len() + 1);
                        with_newline.extend_from_slice(&line);
                        with_newline.push(b'\n');
                        if typed_tx.send(Bytes::from(with_newline)).await.is_err() {
                            break;
                        }
                    }
                    Route::Done => {}
                    Route::Refuse(error) => out.send(error).await,
                }
            }
            Some(()) = calls.next(), if !calls.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    // The client is gone: calls still in flight are cancelled — on their children too — and run
    // to their end, so each leaves its audit row; then the face sees its input end, and what is
    // queued for the client is flushed.
    front.cancel_all();
    let waiting = front.bridge.waiting();
    let drained = async {
        while calls.next().await.is_some() {}
        // Calls that waited for the client's input: cancelled now, each leaves its row.
        for task in waiting {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tracing::warn!(
            "calls still in flight after {DRAIN:?} at shutdown; their audit rows are lost"
        );
    }
    drop(typed_tx);
    let _ = face.await;
    let _ = relay.await;
    drop(front);
    drop(out);
    let _ = writer.await;
}

/// Where one client line goes.
enum Route {
    /// `tools/call`, forwarded as bytes by the front.
    Raw,
    /// `prompts/get` or `resources/read`, forwarded as bytes by the front.
    RawRead,
    /// A request about a task, routed to the child that owns it.
    Tasks,
    /// A 2026-07-28 subscription opens.
    Listen,
    /// A subscription ends.
    Unlisten(Listen),
    /// To the typed face.
    Typed,
    /// Handled here already (a cancellation of a raw call).
    Done,
    /// Refused with this error line.
    Refuse(Vec<u8>),
}

fn route(front: &Front, line: &[u8]) -> Route {
    let envelope = match Envelope::parse(line) {
        Ok(e) => e,
        Err(e) => {
            return Route::Refuse(error_line(
                "null",
                PARSE_ERROR,
                &format!("lastmile could not read the message: {e}"),
            ));
        }
    };
    let method = envelope.method();
    if envelope.kind() == Kind::Request
        && matches!(
            method.as_deref(),
            Some("tools/call" | "prompts/get" | "resources/read")
        )
        && !front.hub.upstream.knows_capabilities()
    {
        front.learn_client_2026(&envelope);
    }
    match (envelope.kind(), method.as_deref()) {
        // The children start with the client's capabilities: the raw paths need them known.
        (Kind::Request, Some("tools/call")) if front.hub.upstream.knows_capabilities() => {
            Route::Raw
        }
        (Kind::Request, Some("prompts/get" | "resources/read"))
            if front.hub.upstream.knows_capabilities() =>
        {
            Route::RawRead
        }
        (Kind::Request, Some(m)) if super::tasks::is_task_method(m) => Route::Tasks,
        (Kind::Request, Some("subscriptions/listen")) => {
            front.speaks_2026();
            Route::Listen
        }
        (Kind::Request, Some("server/discover")) => {
            let lossless = front.hub.lossless_on_2026();
            if !lossless {
                tracing::info!(
                    "server/discover: 2026-07-28 is not offered: a server of this session asks (or may ask) the client for roots, sampling or elicitation, which 2026-07-28 cannot carry"
                );
            }
            if let (Some(id), Ok(mut d)) = (envelope.id(), front.discovers.lock()) {
                d.insert(id.to_owned(), lossless);
            }
            Route::Typed
        }
        (Kind::Notification, Some("notifications/cancelled")) => {
            let id = envelope
                .params()
                .ok()
                .flatten()
                .and_then(|p| p.get("requestId").map(str::to_owned));
            let Some(id) = id else {
                return Route::Typed;
            };
            if front.cancel(&id) {
                return Route::Done;
            }
            let closed = front.listens.lock().ok().and_then(|mut l| {
                let i = l.iter().position(|x| x.id() == id)?;
                Some(l.remove(i))
            });
            match closed {
                Some(listen) => Route::Unlisten(listen),
                None => Route::Typed,
            }
        }
        (Kind::Request, Some("initialize")) => {
            front.initialized.store(true, Ordering::Relaxed);
            Route::Typed
        }
        (Kind::Request, _) => {
            // Only a client that did not initialize may be on 2026-07-28; the others are not
            // read again on every request.
            if !front.v2026.load(Ordering::Relaxed)
                && !front.initialized.load(Ordering::Relaxed)
                && lifecycle_meta(&envelope, PROTOCOL_VERSION_META)
                    .is_some_and(|v| v.trim_matches('"') >= V_2026_07_28)
            {
                front.speaks_2026();
            }
            Route::Typed
        }
        _ => Route::Typed,
    }
}

/// A 2026-07-28 result from the typed face without `resultType`, with `resultType: complete`
/// (what the face answers is complete; rmcp's types do not know the member). `None` when the
/// line is not a result, or already has one.
fn with_result_type(line: &[u8]) -> Option<Vec<u8>> {
    let mut envelope = Envelope::parse(line).ok()?;
    if envelope.kind() != Kind::Response {
        return None;
    }
    let mut result = RawObject::parse(envelope.member("result")?).ok()?;
    if result.get("resultType").is_some() {
        return None;
    }
    result.set("resultType", "\"complete\"".into());
    let text = result.to_json();
    envelope.set_member("result", text);
    let mut out = Vec::with_capacity(line.len() + 24);
    envelope.write(&mut out);
    Some(out)
}

/// A key of the params' `_meta`, raw JSON text.
fn lifecycle_meta(envelope: &Envelope<'_>, key: &str) -> Option<String> {
    let params = envelope.params().ok()??;
    let meta = RawObject::parse(params.get("_meta")?).ok()?;
    meta.get(key).map(str::to_owned)
}

impl Front {
    /// What the typed face writes goes to the client — except answers to lastmile's own
    /// requests, and, for a 2026-07-28 client, notifications that travel only on subscriptions.
    async fn relay_face<R: AsyncRead + Unpin>(self: Arc<Self>, from_face: R, max_message: usize) {
        let notice = memchr::memmem::Finder::new(b"\"notifications/");
        let task_notice = memchr::memmem::Finder::new(b"\"notifications/tasks");
        let mut frames = FrameReader::new(from_face, max_message);
        while let Ok(Some(frame)) = frames.next_frame().await {
            let Frame::Message(line) = frame else {
                continue;
            };
            if self.has_discovers()
                && let Some(rewritten) = self.discover_answer(&line)
            {
                self.out.send(rewritten).await;
                continue;
            }
            // A child's word on a task only makes lastmile read the task again from its owner.
            if task_notice.find(&line).is_some() && super::tasks::is_task_notification(&line) {
                if let Some(refresh) = super::tasks::notification(&self.session, &line) {
                    tokio::spawn(super::tasks::refresh(Arc::clone(&self), refresh));
                }
                continue;
            }
            if self.v2026.load(Ordering::Relaxed)
                && !self.initialized.load(Ordering::Relaxed)
                && let Some(typed) = with_result_type(&line)
            {
                self.out.send(typed).await;
                continue;
            }
            if self.v2026.load(Ordering::Relaxed) && notice.find(&line).is_some() {
                let method = Envelope::parse(&line)
                    .ok()
                    .and_then(|e| e.method().map(|m| m.into_owned()));
                if method.as_deref().is_some_and(listen::is_subscription_kind) {
                    let copies = match self.listens.lock() {
                        Ok(l) => listen::fan_out(&l, &line),
                        Err(_) => Vec::new(),
                    };
                    for copy in copies {
                        self.out.send(copy).await;
                    }
                    continue;
                }
            }
            self.out.send(line.to_vec()).await;
        }
    }

    fn has_discovers(&self) -> bool {
        self.discovers.lock().is_ok_and(|d| !d.is_empty())
    }

    /// The face's answer to a `server/discover`, without 2026-07-28 when the session would lose
    /// something on it; `None` when `line` is not such an answer.
    fn discover_answer(&self, line: &[u8]) -> Option<Vec<u8>> {
        let envelope = Envelope::parse(line).ok()?;
        if !matches!(envelope.kind(), Kind::Response | Kind::Error) {
            return None;
        }
        let lossless = self.discovers.lock().ok()?.remove(envelope.id()?)?;
        if lossless || envelope.kind() == Kind::Error {
            return Some(line.to_vec());
        }
        listen::without_2026(line).or_else(|| Some(line.to_vec()))
    }
}
