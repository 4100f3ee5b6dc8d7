//! Resumable event streams of a 2025 session: every event carries an id `{stream}-{seq}`, and a
//! client whose connection dropped comes back with `GET` and `Last-Event-ID` for what it missed.
//!
//! - A request's stream (`POST` answered with SSE) keeps its last events. When its connection
//!   drops before the answer, the request is not cancelled at once: the stream is parked for
//!   the session's `resume_window` (`[http]`, 30 s by default), still taking in progress and the answer, and a `GET` naming one of its event
//!   ids takes it over (replay, then live). Unclaimed by then, it is dropped and its request
//!   cancelled, as a dropped exchange always was. A live stream can be taken over too (a client
//!   may notice the drop before lastmile does); the old connection then ends.
//! - The session's `GET` stream (stream 0) keeps its last events, including those that came
//!   while no `GET` stream was open, so a reconnect names where it stopped.
//!
//! Event ids are scoped to one session, which is bound to one identity: another identity never
//! reaches them. Only bytes the front already wrote (and scrubbed) are kept, within
//! [`KEEP_EVENTS`] and [`KEEP_BYTES`] a stream (the newest event is always kept).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::instance::{Exchange, Instance, Message};

/// Events kept a stream for replay.
const KEEP_EVENTS: usize = 64;
/// Bytes kept a stream for replay (beyond the newest event).
const KEEP_BYTES: usize = 1024 * 1024;
/// How soon a client should reconnect (the SSE `retry` field of the priming event), in ms.
const RETRY_MS: u32 = 1000;
/// The session's `GET` stream.
pub(crate) const GET_STREAM: u64 = 0;
/// Request streams a session keeps parked at once (each may hold an answer).
const MAX_PARKED: usize = 16;

/// A hand-over request: the stream is sent back on it.
pub(crate) type Claim = oneshot::Sender<PostStream>;

/// The last events of a stream, by sequence number.
#[derive(Default)]
pub(crate) struct Backlog {
    events: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl Backlog {
    pub(crate) fn push(&mut self, seq: u64, event: Bytes) {
        self.bytes += event.len();
        self.events.push_back((seq, event));
        while self.events.len() > 1 && (self.events.len() > KEEP_EVENTS || self.bytes > KEEP_BYTES)
        {
            if let Some((_, old)) = self.events.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// The kept events after `seq`, oldest first.
    pub(crate) fn after(&self, seq: u64) -> VecDeque<Bytes> {
        self.events
            .iter()
            .filter(|(s, _)| *s > seq)
            .map(|(_, e)| e.clone())
            .collect()
    }
}

/// `{stream}-{seq}` from a `Last-Event-ID`, or `None` when it is not one of lastmile's.
pub(crate) fn parse_event_id(text: &str) -> Option<(u64, u64)> {
    let (stream, seq) = text.trim().split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(stream) || !digits(seq) {
        return None;
    }
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

/// One SSE event carrying `line`, with its id when the stream is resumable.
pub(crate) fn event(id: Option<(u64, u64)>, line: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(line.len() + 48);
    if let Some((stream, seq)) = id {
        out.extend_from_slice(format!("id: {stream}-{seq}\n").as_bytes());
    }
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(line);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The event that opens a resumable stream (2025-11-25): an id and no data, so a client can
/// resume even if the connection drops before the first message.
pub(crate) fn priming(stream: u64, seq: u64) -> Bytes {
    Bytes::from(format!("id: {stream}-{seq}\nretry: {RETRY_MS}\ndata:\n\n"))
}

/// A request's stream while it may still be resumed.
struct Live {
    instance: Arc<Instance>,
    stream: u64,
    seq: u64,
    exchange: Exchange,
    rx: mpsc::Receiver<Message>,
    backlog: Backlog,
    claims: mpsc::Receiver<Claim>,
    /// The answer has arrived.
    done: bool,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.instance.forget_resumable(self.stream);
    }
}

/// A request's SSE stream: its events, in order, and whoever may take it over.
pub(crate) struct PostStream {
    live: Option<Live>,
    /// Events to send before any new one (a priming event, or a resume's replay).
    replay: VecDeque<Bytes>,
    /// Parked: no connection reads it; it only collects events until claimed or expired.
    parked: bool,
}

impl PostStream {
    /// The stream of `exchange` on a session. Unresumable (no ids) on a 2026-07-28 instance,
    /// which has no session to come back to.
    pub(crate) fn open(
        instance: &Arc<Instance>,
        exchange: Exchange,
        rx: mpsc::Receiver<Message>,
        prime: bool,
    ) -> Self {
        let stream = instance.next_stream();
        let claims = instance.resumable(stream);
        let mut replay = VecDeque::new();
        if prime && instance.id.is_some() {
            replay.push_back(priming(stream, 0));
        }
        PostStream {
            live: Some(Live {
                instance: Arc::clone(instance),
                stream,
                seq: 0,
                exchange,
                rx,
                backlog: Backlog::default(),
                claims,
                done: false,
            }),
            replay,
            parked: false,
        }
    }

    /// Taken over by a resume: the kept events after `seq` first.
    pub(crate) fn resumed(mut self, seq: u64) -> Self {
        self.parked = false;
        if let Some(live) = self.live.as_mut() {
            self.replay = live.backlog.after(seq);
            live.claims = live.instance.resumable(live.stream);
        }
        self
    }

    /// The next event for the client; `None` once the answer was sent, the session ended, or
    /// another connection took the stream over.
    pub(crate) async fn next(&mut self) -> Option<Bytes> {
        if let Some(event) = self.replay.pop_front() {
            return Some(event);
        }
        loop {
            let live = self.live.as_mut()?;
            if live.done && !self.parked {
                self.live = None;
                return None;
            }
            tokio::select! {
                Some(claim) = live.claims.recv() => {
                    let moved = PostStream { live: self.live.take(), replay: VecDeque::new(), parked: false };
                    match claim.send(moved) {
                        Ok(()) => return None,
                        // The resume gave up waiting: this connection keeps the stream.
                        Err(mut back) => {
                            self.live = back.live.take();
                            if let Some(live) = self.live.as_mut() {
                                live.claims = live.instance.resumable(live.stream);
                            }
                        }
                    }
                }
                message = live.rx.recv(), if !live.done => {
                    let (line, last) = match message {
                        Some(Message::Interim(line)) => (line, false),
                        Some(Message::Final(line)) => (line, true),
                        None => {
                            self.live = None;
                            return None;
                        }
                    };
                    if last {
                        live.exchange.answered();
                        live.done = true;
                    }
                    live.seq += 1;
                    let id = live.instance.id.is_some().then_some((live.stream, live.seq));
                    let event = event(id, &line);
                    if id.is_some() {
                        live.backlog.push(live.seq, event.clone());
                    }
                    return Some(event);
                }
                // Answered and parked, and the session dropped its claims (it is closing).
                else => {
                    self.live = None;
                    return None;
                }
            }
        }
    }

    /// The response body.
    pub(crate) fn into_body(self) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
        futures::stream::unfold(self, |mut s| async move {
            let event = s.next().await?;
            Some((Ok(event), s))
        })
    }

    /// Collect events with no reader until claimed (handed over inside `next`) or expired.
    async fn wait_parked(mut self, instance: Arc<Instance>) {
        let expiry = tokio::time::sleep(instance.resume_window);
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                event = self.next() => if event.is_none() { break },
                _ = &mut expiry => break,
            }
        }
        drop(self);
        instance.unpark();
    }
}

impl Drop for PostStream {
    /// A connection that dropped before its stream ended (the answer not yet sent, or sent but
    /// perhaps not written) leaves the stream parked on its session, rather than cancelling the
    /// request at once or losing the answer. At most [`MAX_PARKED`] a session; an answered
    /// stream only if what it keeps is within [`KEEP_BYTES`].
    fn drop(&mut self) {
        if self.parked {
            return;
        }
        let Some(live) = self.live.take() else { return };
        let instance = Arc::clone(&live.instance);
        if instance.id.is_none()
            || instance.is_closed()
            || (live.done && live.backlog.bytes > KEEP_BYTES)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !instance.try_park(MAX_PARKED) {
            tracing::debug!(
                stream = live.stream,
                "a dropped request stream is not kept: the session keeps {MAX_PARKED} already"
            );
            return;
        }
        tracing::info!(stream = live.stream, window = ?instance.resume_window, "request stream parked: its connection dropped");
        let parked = PostStream {
            live: Some(live),
            replay: VecDeque::new(),
            parked: true,
        };
        runtime.spawn(parked.wait_parked(instance));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_strictly() {
        assert_eq!(parse_event_id("3-17"), Some((3, 17)));
        assert_eq!(parse_event_id(" 0-0 "), Some((0, 0)));
        for bad in [
            "",
            "3",
            "-1",
            "3-",
            "a-1",
            "1-b",
            "1-2-3",
            "+1-2",
            "1-99999999999999999999",
        ] {
            assert_eq!(parse_event_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_backlog_keeps_the_newest_events_within_its_bounds() {
        let mut b = Backlog::default();
        for seq in 1..=(KEEP_EVENTS as u64 + 10) {
            b.push(seq, Bytes::from(format!("e{seq}")));
        }
        let kept = b.after(0);
        assert_eq!(kept.len(), KEEP_EVENTS);
        assert_eq!(
            kept.back().unwrap(),
            &Bytes::from(format!("e{}", KEEP_EVENTS + 10))
        );
        assert_eq!(b.after(KEEP_EVENTS as u64 + 8).len(), 2);
        // One event larger than the byte bound is still kept (it is the newest).
        b.push(1000, Bytes::from(vec![b'x'; KEEP_BYTES + 1]));
        assert_eq!(b.after(999).len(), 1);
        assert_eq!(b.after(0).len(), 1);
    }

    #[test]
    fn events_carry_their_id_and_priming_has_no_data() {
        let e = event(Some((2, 5)), b"{\"a\":1}");
        assert_eq!(&e[..], b"id: 2-5\nevent: message\ndata: {\"a\":1}\n\n");
        assert_eq!(&event(None, b"{}")[..], b"event: message\ndata: {}\n\n");
        assert_eq!(&priming(2, 0)[..], b"id: 2-0\nretry: 1000\ndata:\n\n");
    }
}
