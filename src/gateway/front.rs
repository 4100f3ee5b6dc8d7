//! The front: lastmile's own JSON-RPC loop on the client's side of the session.
//!
//! Each line the client sends is framed here (bounded size: an oversized line gets a named error
//! and the connection goes on) and parsed once into its envelope. The hot path — `tools/call` —
//! is forwarded as bytes ([`super::call`]): only the id, the name and the progress token change,
//! the result is scrubbed as raw JSON text and audited from the envelope. Everything else
//! (the lifecycle, lists, prompts, resources, completions, logging) goes to the typed face behind
//! the gate ([`Guarded`]) over an in-process pipe, and what the face writes comes back through
//! here on its way to the client.
//!
//! One loop reads the client; raw calls in flight are futures polled by that loop (no task per
//! message); one writer task owns the client's output and coalesces what is queued. A client
//! that does not read holds everything back through the bounded queue.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rmcp::ServiceExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::guard::Guarded;
use super::hub::Hub;
use super::session::ClientSession;
use crate::downstream::RawSink;
use crate::wire::{Envelope, Frame, FrameReader, Kind, json_string, write_queued};

/// How many lines may wait for the client's output.
const OUT_QUEUE: usize = 1024;
/// How many lines may wait for the typed face.
const TYPED_QUEUE: usize = 256;
/// The in-process pipe to the typed face, each way.
const PIPE: usize = 256 * 1024;

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
    /// Where the children's progress for raw calls goes.
    pub(crate) progress: Arc<dyn RawSink>,
}

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
        let token = CancellationToken::new();
        if let Ok(mut map) = self.inflight.lock() {
            map.insert(id.to_owned(), token.clone());
        }
        token
    }

    /// Forget a finished raw call.
    pub(crate) fn end(&self, id: &str) {
        if let Ok(mut map) = self.inflight.lock() {
            map.remove(id);
        }
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

/// An error response to `id` (raw JSON text; `null` when unknown).
pub(crate) fn error_line(id: &str, code: i32, message: &str) -> Vec<u8> {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{code},\"message\":{}}}}}",
        json_string(message)
    )
    .into_bytes()
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
    let front = Arc::new(Front {
        hub,
        session: Arc::clone(&session),
        out: out.clone(),
        inflight: Mutex::default(),
        progress: Arc::new(ProgressSink {
            session,
            out: out.clone(),
        }),
    });

    // The typed face, on its own pipes: it reads `face_in`, writes `face_out`.
    let (face_in, to_face) = tokio::io::duplex(PIPE);
    let (from_face, face_out) = tokio::io::duplex(PIPE);
    let (typed_tx, typed_rx) = mpsc::channel::<Bytes>(TYPED_QUEUE);
    tokio::spawn(write_queued(to_face, typed_rx, CancellationToken::new()));
    let face = tokio::spawn(async move {
        match guarded.serve((face_in, face_out)).await {
            Ok(service) => {
                let _ = service.waiting().await;
            }
            Err(e) => tracing::warn!("the client went away before the session started: {e}"),
        }
    });
    let relay = tokio::spawn(relay_face(from_face, out.clone(), max_message));

    let mut frames = FrameReader::new(input, max_message);
    let mut calls = FuturesUnordered::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            frame = frames.next_frame() => {
                let line = match frame {
                    Ok(Some(Frame::Message(line))) => line,
                    Ok(Some(Frame::Oversized { len })) => {
                        let message = format!(
                            "message too large: {len} bytes, over the limit of {max_message} bytes; it was dropped\nhint: raise `max_message_bytes` in lastmile.toml"
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
                    Route::Raw => calls.push(super::call::tools_call(Arc::clone(&front), line)),
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
    // The client is gone: calls still in flight are cancelled (their futures dropped), the face
    // sees its input end, and what is queued for the client is flushed.
    drop(calls);
    drop(typed_tx);
    let _ = face.await;
    let _ = relay.await;
    drop(front);
    drop(out);
    let _ = writer.await;
}

/// Where one client line goes.
enum Route {
    /// Forwarded as bytes by the front.
    Raw,
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
    match (envelope.kind(), envelope.method().as_deref()) {
        (Kind::Request, Some("tools/call")) if front.hub.upstream.knows_client() => Route::Raw,
        (Kind::Notification, Some("notifications/cancelled")) => {
            let id = envelope
                .params()
                .ok()
                .flatten()
                .and_then(|p| p.get("requestId").map(str::to_owned));
            match id {
                Some(id) if front.cancel(&id) => Route::Done,
                _ => Route::Typed,
            }
        }
        _ => Route::Typed,
    }
}

/// What the typed face writes goes to the client.
async fn relay_face<R: AsyncRead + Unpin>(from_face: R, out: Outbox, max_message: usize) {
    let mut frames = FrameReader::new(from_face, max_message);
    while let Ok(Some(frame)) = frames.next_frame().await {
        if let Frame::Message(line) = frame {
            out.send(line.to_vec()).await;
        }
    }
}
