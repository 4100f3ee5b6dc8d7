//! The raw link to one child: lastmile's own framing over the child's stdio.
//!
//! Every line the child writes is read here first. The forwarding core's requests (a client's
//! `tools/call`, say) travel as bytes: they carry ids of the form `"lm-N"`, which nothing else
//! uses, so their answers — and the progress notifications that name their progress token — are
//! picked out of the child's stream by a substring check and handed back without a parse of the
//! rest. Everything else (the handshake, list requests, the child's own requests to the client
//! and its other notifications) passes on, unchanged, to the typed MCP client that lastmile runs
//! for the child over an in-process pipe ([`Link::typed_pipes`]).
//!
//! One reader task and one writer task per child, whatever the traffic: no task per message.
//! The writer coalesces what is queued into one write, and the bounded queue holds callers back
//! when the child reads slowly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::wire::{
    Envelope, Frame, FrameReader, Kind, RawObject, json_string, write_json_string, write_queued,
};

/// The prefix of the ids (and progress tokens) of raw requests.
const RAW_ID_PREFIX: &str = "lm-";
/// How many messages may wait for the child's stdin.
const QUEUE: usize = 256;
/// The in-process pipe to the typed client, each way.
const PIPE: usize = 256 * 1024;

/// Where a raw call's progress notifications go: the caller's own token and its sink.
pub struct ProgressRoute {
    /// The client's progress token, as JSON text.
    pub token: String,
    /// Where the rewritten notification is delivered.
    pub sink: Arc<dyn RawSink>,
}

/// Takes messages for the client that a child produced for a raw call (its progress).
pub trait RawSink: Send + Sync {
    /// Deliver one message (a JSON-RPC line without its line ending). The sink scrubs it and
    /// may drop it under backpressure: progress is advisory.
    fn deliver(&self, message: Vec<u8>);
}

/// How a raw call ended.
#[derive(Debug)]
pub enum RawOutcome {
    /// The child's answer: the whole response line (a result or an error), id still `"lm-N"`.
    Answered(Bytes),
    /// The child exited or closed its stdout first.
    Closed,
    /// No answer within the timeout; the child was sent `notifications/cancelled`.
    TimedOut(Duration),
    /// The caller cancelled; the child was sent `notifications/cancelled`.
    Cancelled,
}

/// What a raw call waiting for its answer is told.
enum Answer {
    /// The child's answer line.
    Line(Bytes),
    /// Its deadline passed first.
    Expired,
}

struct Pending {
    /// Taken when the answer (or the deadline) comes.
    answer: Option<oneshot::Sender<Answer>>,
    progress: Option<ProgressRoute>,
    /// When the call times out (`None`: never).
    deadline: Option<Instant>,
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, Pending>,
    closed: bool,
    /// The deadline the expiry task sleeps until, if any: never later than the earliest
    /// deadline of a call waiting (see [`expire`]).
    armed: Option<Instant>,
}

/// The raw link to one child.
pub struct Link {
    name: Arc<str>,
    to_child: mpsc::Sender<Bytes>,
    state: Mutex<State>,
    next: AtomicU64,
    /// Wakes the expiry task: a call with an earlier deadline than the armed one, or the end.
    expiry: Arc<Notify>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.expiry.notify_one();
    }
}

/// The typed client's end of the in-process pipes: what it reads, what it writes.
pub type TypedPipes = (DuplexStream, DuplexStream);

impl Link {
    /// Start the link over a child's stdout and stdin. Returns the link and the pipes the typed
    /// client runs on.
    pub fn start<R, W>(
        name: Arc<str>,
        stdout: R,
        stdin: W,
        max_message: usize,
    ) -> (Arc<Link>, TypedPipes)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (to_child, queue) = mpsc::channel(QUEUE);
        let link = Arc::new(Link {
            name,
            to_child,
            state: Mutex::default(),
            next: AtomicU64::new(1),
            expiry: Arc::new(Notify::new()),
        });
        tokio::spawn(expire(Arc::downgrade(&link), Arc::clone(&link.expiry)));
        // The typed client reads `typed_in` and writes `typed_out`.
        let (typed_in, to_typed) = tokio::io::duplex(PIPE);
        let (typed_out, from_typed) = tokio::io::duplex(PIPE);
        // When the typed client stops (the child is being stopped), the child's stdin closes.
        let stop = CancellationToken::new();
        tokio::spawn(write_queued(stdin, queue, stop.clone()));
        tokio::spawn(Arc::clone(&link).read_child(stdout, to_typed, max_message));
        tokio::spawn(pump_typed(
            from_typed,
            link.to_child.clone(),
            max_message,
            stop,
        ));
        (link, (typed_in, typed_out))
    }

    /// Send a request as bytes and wait for the child's answer, bounded by `timeout` and by
    /// `cancel`. `params` is the request's params object; its `_meta.progressToken` is replaced
    /// by the link's own when `progress` is given (and removed otherwise), so the child's
    /// progress reaches `progress.sink` under the caller's token.
    pub async fn call(
        &self,
        method: &str,
        params: &mut RawObject<'_>,
        progress: Option<ProgressRoute>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> RawOutcome {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // A JSON string that needs no escape.
        let id = format!("\"{RAW_ID_PREFIX}{n}\"");
        set_progress_token(params, progress.is_some().then_some(id.as_str()));
        let mut line = Vec::with_capacity(64 + method.len());
        line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        line.extend_from_slice(id.as_bytes());
        line.extend_from_slice(b",\"method\":");
        write_json_string(&mut line, method);
        line.extend_from_slice(b",\"params\":");
        params.write(&mut line);
        line.extend_from_slice(b"}\n");

        let (answer, answered) = oneshot::channel();
        let deadline = Instant::now().checked_add(timeout);
        {
            let Ok(mut state) = self.state.lock() else {
                return RawOutcome::Closed;
            };
            if state.closed {
                return RawOutcome::Closed;
            }
            state.pending.insert(
                n,
                Pending {
                    answer: Some(answer),
                    progress,
                    deadline,
                },
            );
            // Only a deadline earlier than the armed one wakes the expiry task: with one
            // call_timeout per child, that is only when nothing is armed.
            if let Some(deadline) = deadline
                && state.armed.is_none_or(|armed| deadline < armed)
            {
                state.armed = Some(deadline);
                self.expiry.notify_one();
            }
        }
        let mut guard = InFlight {
            link: self,
            n,
            reason: "the client cancelled the request",
            done: false,
        };
        if self.to_child.send(Bytes::from(line)).await.is_err() {
            guard.done = true;
            self.forget(n);
            return RawOutcome::Closed;
        }
        // No timer of the call's own: registering one per call costs the reactor a wake-up
        // each time; the link's expiry task keeps one for all.
        tokio::select! {
            answer = answered => match answer {
                Ok(Answer::Line(bytes)) => {
                    guard.done = true;
                    RawOutcome::Answered(bytes)
                }
                Ok(Answer::Expired) => {
                    guard.reason = "call_timeout elapsed";
                    RawOutcome::TimedOut(timeout)
                }
                Err(_) => {
                    guard.done = true;
                    RawOutcome::Closed
                }
            },
            _ = cancel.cancelled() => RawOutcome::Cancelled,
        }
    }

    /// Send a notification as bytes (a client's `notifications/cancelled`, say).
    pub async fn notify(&self, line: Bytes) {
        let _ = self.to_child.send(line).await;
    }

    fn forget(&self, n: u64) -> bool {
        self.state
            .lock()
            .map(|mut s| s.pending.remove(&n).is_some())
            .unwrap_or(false)
    }

    /// Read the child's stdout: raw answers and their progress go to their callers, the rest to
    /// the typed client.
    async fn read_child<R: AsyncRead + Unpin>(
        self: Arc<Self>,
        stdout: R,
        mut to_typed: DuplexStream,
        max_message: usize,
    ) {
        let finder = memchr::memmem::Finder::new(b"\"lm-");
        let mut frames = FrameReader::new(stdout, max_message);
        loop {
            let frame = match frames.next_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(server = %self.name, "reading the child's stdout failed: {e}");
                    break;
                }
            };
            let line = match frame {
                Frame::Message(line) => line,
                Frame::Oversized { len } => {
                    tracing::warn!(
                        server = %self.name,
                        len,
                        "the child wrote a message longer than the limit; it was dropped"
                    );
                    continue;
                }
            };
            if finder.find(&line).is_some() && self.route_raw(&line) {
                continue;
            }
            if to_typed.write_all(&line).await.is_err() || to_typed.write_all(b"\n").await.is_err()
            {
                // The typed client is gone: the child is being stopped.
                break;
            }
        }
        let pending = match self.state.lock() {
            Ok(mut state) => {
                state.closed = true;
                std::mem::take(&mut state.pending)
            }
            Err(_) => HashMap::new(),
        };
        // Dropping the senders tells every waiting caller that the child closed.
        drop(pending);
        let _ = to_typed.shutdown().await;
    }

    /// Hand a raw answer or progress notification to its caller; false if `line` is not one.
    fn route_raw(&self, line: &Bytes) -> bool {
        let Ok(envelope) = Envelope::parse(line) else {
            return false;
        };
        match envelope.kind() {
            Kind::Response | Kind::Error => {
                let Some(n) = envelope.id().and_then(raw_number) else {
                    return false;
                };
                let pending = self
                    .state
                    .lock()
                    .ok()
                    .and_then(|mut s| s.pending.remove(&n));
                match pending {
                    Some(Pending {
                        answer: Some(answer),
                        ..
                    }) => {
                        let _ = answer.send(Answer::Line(line.clone()));
                    }
                    _ => {
                        tracing::debug!(server = %self.name, "an answer for a call no longer waiting; dropped")
                    }
                }
                true
            }
            Kind::Notification
                if envelope.method().as_deref() == Some("notifications/progress") =>
            {
                let Ok(Some(mut params)) = envelope.params() else {
                    return false;
                };
                let Some(n) = params.get("progressToken").and_then(raw_number) else {
                    return false;
                };
                let route = self.state.lock().ok().and_then(|s| {
                    s.pending
                        .get(&n)
                        .and_then(|p| p.progress.as_ref())
                        .map(|r| (r.token.clone(), Arc::clone(&r.sink)))
                });
                if let Some((token, sink)) = route {
                    params.set("progressToken", token);
                    let mut out = Vec::with_capacity(line.len() + 16);
                    out.extend_from_slice(
                        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":",
                    );
                    params.write(&mut out);
                    out.push(b'}');
                    sink.deliver(out);
                } else {
                    tracing::debug!(server = %self.name, "progress for no call in flight; dropped");
                }
                true
            }
            _ => false,
        }
    }
}

/// Time out the link's raw calls: sleep until the armed deadline, tell every call whose
/// deadline has passed, arm the earliest one left. Calls arriving meanwhile have later deadlines
/// (one call_timeout per child) and need no timer of their own, so under steady traffic this
/// wakes once per call_timeout instead of registering a timer per call. Ends with the link.
async fn expire(link: std::sync::Weak<Link>, nudge: Arc<Notify>) {
    let mut armed: Option<Instant> = None;
    loop {
        match armed {
            Some(when) => tokio::select! {
                _ = tokio::time::sleep_until(when) => {}
                _ = nudge.notified() => {}
            },
            None => nudge.notified().await,
        }
        let Some(link) = link.upgrade() else { return };
        let Ok(mut state) = link.state.lock() else {
            return;
        };
        if state.closed {
            return;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for p in state.pending.values_mut() {
            let Some(deadline) = p.deadline else { continue };
            if p.answer.is_none() {
                continue;
            }
            if deadline <= now {
                // The entry stays: the caller's guard finds it and cancels on the child.
                if let Some(answer) = p.answer.take() {
                    let _ = answer.send(Answer::Expired);
                }
            } else if next.is_none_or(|n| deadline < n) {
                next = Some(deadline);
            }
        }
        state.armed = next;
        armed = next;
    }
}

/// `"lm-N"` → N.
fn raw_number(raw: &str) -> Option<u64> {
    raw.strip_prefix("\"lm-")?.strip_suffix('"')?.parse().ok()
}

/// Set (or, with `None`, remove) `_meta.progressToken` in a params object.
fn set_progress_token(params: &mut RawObject<'_>, token: Option<&str>) {
    let meta = params.get("_meta").map(str::to_owned);
    let mut meta_obj = match &meta {
        Some(text) => match RawObject::parse(text) {
            Ok(m) => m,
            // Not an object: the child gets it as sent, without a token of ours.
            Err(_) => return,
        },
        None if token.is_none() => return,
        None => RawObject::default(),
    };
    match token {
        Some(t) => meta_obj.set("progressToken", t.to_owned()),
        None => {
            if !meta_obj.remove("progressToken") {
                return;
            }
        }
    }
    let text = meta_obj.to_json();
    params.set("_meta", text);
}

/// Forgets an unanswered call and tells the child to stop working on it.
struct InFlight<'a> {
    link: &'a Link,
    n: u64,
    reason: &'static str,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.done || !self.link.forget(self.n) {
            return;
        }
        let line = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{{\"requestId\":\"{RAW_ID_PREFIX}{}\",\"reason\":{}}}}}\n",
            self.n,
            json_string(self.reason)
        );
        if let Err(mpsc::error::TrySendError::Full(line)) =
            self.link.to_child.try_send(Bytes::from(line))
        {
            let to_child = self.link.to_child.clone();
            tokio::spawn(async move {
                let _ = to_child.send(line).await;
            });
        }
    }
}

/// The typed client's messages, line by line, onto the child's queue.
async fn pump_typed(
    from_typed: DuplexStream,
    to_child: mpsc::Sender<Bytes>,
    max_message: usize,
    stop: CancellationToken,
) {
    let mut frames = FrameReader::new(from_typed, max_message);
    while let Ok(Some(frame)) = frames.next_frame().await {
        let Frame::Message(line) = frame else {
            continue;
        };
        let mut with_newline = Vec::with_capacity(line.len() + 1);
        with_newline.extend_from_slice(&line);
        with_newline.push(b'\n');
        if to_child.send(Bytes::from(with_newline)).await.is_err() {
            break;
        }
    }
    // The typed client closed: the child is being stopped.
    stop.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ids_round_trip() {
        assert_eq!(raw_number("\"lm-42\""), Some(42));
        assert_eq!(raw_number("42"), None);
        assert_eq!(raw_number("\"lm-x\""), None);
        assert_eq!(raw_number("\"xlm-4\""), None);
    }

    #[test]
    fn the_progress_token_is_replaced_added_or_removed() {
        let text = r#"{"name":"t","_meta":{"progressToken":7,"x":1}}"#;
        let mut p = RawObject::parse(text).unwrap();
        set_progress_token(&mut p, Some("\"lm-3\""));
        assert_eq!(
            p.to_json(),
            r#"{"name":"t","_meta":{"progressToken":"lm-3","x":1}}"#
        );

        let mut p = RawObject::parse(text).unwrap();
        set_progress_token(&mut p, None);
        assert_eq!(p.to_json(), r#"{"name":"t","_meta":{"x":1}}"#);

        let mut p = RawObject::parse(r#"{"name":"t"}"#).unwrap();
        set_progress_token(&mut p, Some("\"lm-3\""));
        assert_eq!(
            p.to_json(),
            r#"{"name":"t","_meta":{"progressToken":"lm-3"}}"#
        );

        let mut p = RawObject::parse(r#"{"name":"t"}"#).unwrap();
        set_progress_token(&mut p, None);
        assert_eq!(p.to_json(), r#"{"name":"t"}"#);
    }

    struct Collect(Mutex<Vec<Vec<u8>>>);
    impl RawSink for Collect {
        fn deliver(&self, message: Vec<u8>) {
            self.0.lock().unwrap().push(message);
        }
    }

    /// A fake child: answers raw calls and the typed client's lines, sends progress first.
    #[tokio::test]
    async fn raw_answers_and_progress_reach_the_caller_and_the_rest_the_typed_side() {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let (child_stdin_r, child_stdin_w) = tokio::io::duplex(PIPE);
        let (child_stdout_r, mut child_stdout_w) = tokio::io::duplex(PIPE);
        let (link, (mut typed_in, mut typed_out)) =
            Link::start("t".into(), child_stdout_r, child_stdin_w, 1024 * 1024);
        // The child: echo back what it reads, as answers.
        tokio::spawn(async move {
            let mut lines = BufReader::new(child_stdin_r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if v["method"] == "tools/call" {
                    let token = v["params"]["_meta"]["progressToken"].clone();
                    let progress = serde_json::json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":token,"progress":1}});
                    child_stdout_w
                        .write_all(format!("{progress}\n").as_bytes())
                        .await
                        .unwrap();
                    let answer =
                        serde_json::json!({"jsonrpc":"2.0","id":v["id"],"result":{"content":[]}});
                    child_stdout_w
                        .write_all(format!("{answer}\n").as_bytes())
                        .await
                        .unwrap();
                } else if v["method"] == "ping" {
                    let answer = serde_json::json!({"jsonrpc":"2.0","id":v["id"],"result":{}});
                    child_stdout_w
                        .write_all(format!("{answer}\n").as_bytes())
                        .await
                        .unwrap();
                }
            }
        });
        let sink = Arc::new(Collect(Mutex::default()));
        let mut params =
            RawObject::parse(r#"{"name":"x","_meta":{"progressToken":"client-1"}}"#).unwrap();
        let outcome = link
            .call(
                "tools/call",
                &mut params,
                Some(ProgressRoute {
                    token: "\"client-1\"".into(),
                    sink: sink.clone(),
                }),
                Duration::from_secs(10),
                &CancellationToken::new(),
            )
            .await;
        let RawOutcome::Answered(line) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(
            std::str::from_utf8(&line)
                .unwrap()
                .contains("\"id\":\"lm-1\"")
        );
        let got = sink.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert!(
            std::str::from_utf8(&got[0])
                .unwrap()
                .contains("\"progressToken\":\"client-1\"")
        );

        // The typed side's request and its answer pass through untouched.
        typed_out
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(&mut typed_in).lines();
        let answer = lines.next_line().await.unwrap().unwrap();
        assert_eq!(answer, r#"{"id":5,"jsonrpc":"2.0","result":{}}"#);
    }

    #[tokio::test]
    async fn a_closed_child_ends_waiting_calls_and_a_timeout_cancels_on_the_child() {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let (child_stdin_r, child_stdin_w) = tokio::io::duplex(PIPE);
        let (child_stdout_r, child_stdout_w) = tokio::io::duplex(PIPE);
        let (link, _typed) = Link::start("t".into(), child_stdout_r, child_stdin_w, 1024);
        let mut lines = BufReader::new(child_stdin_r).lines();
        let mut params = RawObject::parse(r#"{"name":"x"}"#).unwrap();
        let outcome = link
            .call(
                "tools/call",
                &mut params,
                None,
                Duration::from_millis(1),
                &CancellationToken::new(),
            )
            .await;
        assert!(matches!(outcome, RawOutcome::TimedOut(_)), "{outcome:?}");
        let sent = lines.next_line().await.unwrap().unwrap();
        assert!(sent.contains("\"id\":\"lm-1\""), "{sent}");
        let cancelled = lines.next_line().await.unwrap().unwrap();
        assert!(
            cancelled.contains("notifications/cancelled") && cancelled.contains("\"lm-1\""),
            "{cancelled}"
        );

        drop(child_stdout_w);
        let mut params = RawObject::parse(r#"{"name":"x"}"#).unwrap();
        let outcome = link
            .call(
                "tools/call",
                &mut params,
                None,
                Duration::from_secs(30),
                &CancellationToken::new(),
            )
            .await;
        assert!(matches!(outcome, RawOutcome::Closed), "{outcome:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn each_call_times_out_at_its_own_deadline_whatever_is_armed() {
        let (_child_stdin_r, child_stdin_w) = tokio::io::duplex(PIPE);
        let (child_stdout_r, _child_stdout_w) = tokio::io::duplex(PIPE);
        let (link, _typed) = Link::start("t".into(), child_stdout_r, child_stdin_w, 1024);
        let call = |timeout: u64| {
            let link = Arc::clone(&link);
            async move {
                let mut params = RawObject::parse(r#"{"name":"x"}"#).unwrap();
                let start = tokio::time::Instant::now();
                let outcome = link
                    .call(
                        "tools/call",
                        &mut params,
                        None,
                        Duration::from_secs(timeout),
                        &CancellationToken::new(),
                    )
                    .await;
                assert!(matches!(outcome, RawOutcome::TimedOut(_)), "{outcome:?}");
                start.elapsed()
            }
        };
        // A long call arms its deadline; a shorter one after it must not wait for that one, nor
        // a later long one end before its own.
        let (long, short, later) = tokio::join!(call(100), call(5), async {
            tokio::time::sleep(Duration::from_secs(50)).await;
            call(100).await
        });
        assert_eq!(short.as_secs(), 5, "{short:?}");
        assert_eq!(long.as_secs(), 100, "{long:?}");
        assert_eq!(later.as_secs(), 100, "{later:?}");
        // Nothing is waiting, nothing is armed; a new call arms again.
        assert_eq!(call(7).await.as_secs(), 7);
    }
}
