//! Input-required bridging: a legacy child's request to the client, for a client on 2026-07-28.
//!
//! On 2026-07-28 nothing travels from a server to the client; a server that needs input
//! answers the call with an input-required result, and the client retries the call with its
//! answers. A legacy child instead sends `roots/list`, `sampling/createMessage` or
//! `elicitation/create` while it works on a call. When exactly one call of this session is in
//! flight to that child, the request belongs to it: the call's round ends with an
//! input-required result carrying the request (scrubbed), the child's call stays open, and the
//! retry's answers are handed to the child's waiting request; the call then goes on — under the
//! retry's id and progress token, with one execution id and one audit row across its rounds.
//!
//! `requestState` is a handle, sealed with a key of this session (HMAC-SHA256 over the handle,
//! its expiry, the tool's name and the identity): forged, altered, replayed, expired or another
//! session's state is refused by name (`invalid_request_state`). A call whose client does not
//! come back within [`INPUT_WAIT`] is cancelled on its child and audited as cancelled.
//! A request that cannot be tied to one call (none in flight, or several) is refused to the
//! child with the reason, so the tool reports it.

#![allow(deprecated)] // sampling and roots are deprecated in rmcp 3.x; legacy children still ask

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    ClientResult, CreateMessageResult, ElicitResult, InputRequest, ListRootsResult, ServerRequest,
};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use futures::future::BoxFuture;

use super::front::response_line;
use crate::downstream::{InputBridge, Link, ProgressRoute, RawOutcome, RawSink};
use crate::wire::{Envelope, RawObject, json_string};

/// How long a call waits for the client to come back with its input.
pub(crate) const INPUT_WAIT: Duration = Duration::from_secs(300);
/// Rounds one call may take before lastmile refuses to ask again.
const MAX_ROUNDS: usize = 10;
/// The version prefix of a sealed `requestState`.
const STATE_VERSION: &str = "lm1";

/// JSON-RPC: invalid params (a bad `requestState`, as the SDKs answer it).
pub(crate) const INVALID_PARAMS: i32 = -32602;

type Answer = oneshot::Sender<Result<ClientResult, McpError>>;
/// A call in flight that may take input: its number, and where its child's requests go.
type InFlight = (u64, mpsc::Sender<InputAsk>);

/// A child's request, for the call it belongs to.
pub(crate) struct InputAsk {
    request: InputRequest,
    answer: Answer,
}

/// One session's bridge: the calls in flight that may take input, and the calls waiting for it.
pub(crate) struct Bridge {
    key: [u8; 32],
    /// The identity bound into every sealed state.
    identity: String,
    next: AtomicU64,
    calls: Mutex<HashMap<String, Vec<InFlight>>>,
    parked: Mutex<HashMap<String, Parked>>,
    waiting: Mutex<Vec<JoinHandle<()>>>,
}

/// A call waiting for the client's retry.
struct Parked {
    tool: String,
    expires: u64,
    resume: oneshot::Sender<Resume>,
}

/// The client's retry, handed to the waiting call.
pub(crate) struct Resume {
    /// The retry's id (raw JSON text): the call now answers under it.
    pub(crate) id: String,
    /// `inputResponses` (raw JSON text of an object).
    pub(crate) responses: Option<String>,
    /// The retry's progress token.
    pub(crate) token: Option<String>,
    /// Fired when the client cancels the retry.
    pub(crate) cancel: CancellationToken,
    /// The retry's answer (`None`: no answer, the retry was cancelled).
    pub(crate) reply: oneshot::Sender<Option<Vec<u8>>>,
}

/// Why a `requestState` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateRefusal {
    /// Not lastmile's, altered, another session's or another tool's.
    Invalid,
    /// Past its expiry, or already used.
    Expired,
}

impl Bridge {
    /// A bridge for the session of `identity` (subject and tier).
    pub(crate) fn new(identity: String) -> Self {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // No randomness: a key nobody knows is still needed; seal nothing that verifies.
            tracing::error!(
                "no randomness for the input bridge's key; 2026-07-28 input requests will be refused"
            );
        }
        Bridge {
            key,
            identity,
            next: AtomicU64::new(1),
            calls: Mutex::default(),
            parked: Mutex::default(),
            waiting: Mutex::default(),
        }
    }

    /// A call in flight to `server` that may take input; the guard forgets it.
    pub(crate) fn enter(self: &Arc<Self>, server: &str) -> (CallGuard, mpsc::Receiver<InputAsk>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(8);
        if let Ok(mut calls) = self.calls.lock() {
            calls.entry(server.to_string()).or_default().push((n, tx));
        }
        (
            CallGuard {
                bridge: Arc::clone(self),
                server: server.to_string(),
                n,
            },
            rx,
        )
    }

    /// Seal a handle for a call of `tool` waiting for its client, valid for [`INPUT_WAIT`].
    fn park(&self, tool: &str, resume: oneshot::Sender<Resume>) -> String {
        let mut handle = [0u8; 16];
        let _ = getrandom::fill(&mut handle);
        let handle: String = handle.iter().map(|b| format!("{b:02x}")).collect();
        let expires = crate::identity::now_unix() + INPUT_WAIT.as_secs();
        let mac = self.mac(&handle, expires, tool);
        if let Ok(mut parked) = self.parked.lock() {
            parked.insert(
                handle.clone(),
                Parked {
                    tool: tool.to_string(),
                    expires,
                    resume,
                },
            );
        }
        format!("{STATE_VERSION}.{handle}.{expires}.{mac}")
    }

    /// The waiting call a retry of `tool` with `state` resumes (once: a state is used up).
    pub(crate) fn take(
        &self,
        state: &str,
        tool: &str,
    ) -> Result<oneshot::Sender<Resume>, StateRefusal> {
        let mut parts = state.split('.');
        let (Some(STATE_VERSION), Some(handle), Some(expires), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(StateRefusal::Invalid);
        };
        let Ok(expires) = expires.parse::<u64>() else {
            return Err(StateRefusal::Invalid);
        };
        if !self.verify(handle, expires, tool, mac) {
            return Err(StateRefusal::Invalid);
        }
        if expires < crate::identity::now_unix() {
            return Err(StateRefusal::Expired);
        }
        let parked = self
            .parked
            .lock()
            .ok()
            .and_then(|mut p| p.remove(handle))
            .ok_or(StateRefusal::Expired)?;
        if parked.tool != tool || parked.expires != expires {
            return Err(StateRefusal::Invalid);
        }
        Ok(parked.resume)
    }

    fn mac_of(&self, handle: &str, expires: u64, tool: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        for part in [
            STATE_VERSION,
            handle,
            &expires.to_string(),
            tool,
            &self.identity,
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    fn mac(&self, handle: &str, expires: u64, tool: &str) -> String {
        let tag = self.mac_of(handle, expires, tool).finalize().into_bytes();
        tag.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn verify(&self, handle: &str, expires: u64, tool: &str, mac: &str) -> bool {
        let Some(tag) = hex(mac) else { return false };
        self.mac_of(handle, expires, tool)
            .verify_slice(&tag)
            .is_ok()
    }

    /// Keep a waiting call's task, so shutdown waits for its audit row.
    pub(crate) fn hold(&self, task: JoinHandle<()>) {
        if let Ok(mut w) = self.waiting.lock() {
            w.retain(|t| !t.is_finished());
            w.push(task);
        }
    }

    /// The tasks of calls still waiting (shutdown awaits them: each leaves its audit row).
    pub(crate) fn waiting(&self) -> Vec<JoinHandle<()>> {
        self.waiting
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl InputBridge for Bridge {
    fn ask(
        &self,
        server: &str,
        request: ServerRequest,
    ) -> Result<oneshot::Receiver<Result<ClientResult, McpError>>, String> {
        let request = match request {
            ServerRequest::CreateMessageRequest(r) => InputRequest::CreateMessage(r),
            ServerRequest::ElicitRequest(r) => InputRequest::Elicitation(r),
            ServerRequest::ListRootsRequest(r) => InputRequest::ListRoots(r),
            _ => return Err("only roots, sampling and elicitation can travel as input".into()),
        };
        let calls = self
            .calls
            .lock()
            .map_err(|_| "the bridge is unusable".to_string())?;
        let tx = match calls.get(server).map(Vec::as_slice) {
            Some([(_, tx)]) => tx.clone(),
            None | Some([]) => return Err("no call is in flight to it".into()),
            Some(many) => {
                return Err(format!(
                    "{} calls are in flight to it, so the request cannot be tied to one",
                    many.len()
                ));
            }
        };
        drop(calls);
        let (answer, answered) = oneshot::channel();
        tx.try_send(InputAsk { request, answer })
            .map_err(|_| "its call is not taking input now".to_string())?;
        Ok(answered)
    }
}

/// Forgets a call in flight when it ends.
pub(crate) struct CallGuard {
    bridge: Arc<Bridge>,
    server: String,
    n: u64,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.bridge.calls.lock()
            && let Some(list) = calls.get_mut(&self.server)
        {
            list.retain(|(n, _)| *n != self.n);
            if list.is_empty() {
                calls.remove(&self.server);
            }
        }
    }
}

/// Progress of a bridged call, under the token of its current round.
struct RoundSink {
    current: Mutex<Option<String>>,
    inner: Arc<dyn RawSink>,
}

impl RoundSink {
    fn new(token: Option<String>, inner: Arc<dyn RawSink>) -> Arc<Self> {
        Arc::new(RoundSink {
            current: Mutex::new(token),
            inner,
        })
    }

    fn set(&self, token: Option<String>) {
        if let Ok(mut t) = self.current.lock() {
            *t = token;
        }
    }
}

impl RawSink for RoundSink {
    fn deliver(&self, message: Vec<u8>) {
        let Some(token) = self.current.lock().ok().and_then(|t| t.clone()) else {
            return;
        };
        let Ok(mut envelope) = Envelope::parse(&message) else {
            return;
        };
        let Some(mut params) = envelope.params().ok().flatten() else {
            return;
        };
        params.set("progressToken", token);
        let text = params.to_json();
        envelope.set_member("params", text);
        let mut out = Vec::with_capacity(message.len() + 16);
        envelope.write(&mut out);
        self.inner.deliver(out);
    }
}

/// What a round of a bridged call came to.
pub(crate) enum Step {
    /// The child answered (or the call ended otherwise).
    Done(RawOutcome),
    /// The round ends with an input-required result (the `result` object's JSON text).
    Input(String),
}

/// The rest of a call that may take input: its child call and the child's requests.
pub(crate) struct Rounds {
    bridge: Arc<Bridge>,
    tool: String,
    child: Pin<Box<dyn Future<Output = RawOutcome> + Send>>,
    asks: mpsc::Receiver<InputAsk>,
    _guard: CallGuard,
    /// Cancels the child call (the client cancelled, or never came back).
    call_cancel: CancellationToken,
    sink: Arc<RoundSink>,
    /// Requests handed to the client and not yet answered: key, method, where the answer goes.
    pending: Vec<(String, &'static str, Answer)>,
    rounds: usize,
    next_key: u64,
    resume: Option<oneshot::Receiver<Resume>>,
}

/// What a call that may take input sends to its child.
pub(crate) struct ChildCall {
    /// The child's link.
    pub(crate) link: Arc<Link>,
    /// The server's name (its child's requests are tied to calls by it).
    pub(crate) server: String,
    /// `tools/call`, `prompts/get` or `resources/read`.
    pub(crate) method: &'static str,
    /// The params object, as the child gets it.
    pub(crate) params: String,
    /// The server's `call_timeout`.
    pub(crate) timeout: Duration,
}

impl Rounds {
    /// Send `call` to its child as a call that may take input. `key` names what its sealed
    /// states continue (the tool, or the method and name or URI); `progress` takes the child's
    /// progress, under the current round's token; `closing` cancels the call when the client
    /// has gone.
    pub(crate) fn start(
        bridge: &Arc<Bridge>,
        progress: Arc<dyn RawSink>,
        closing: &CancellationToken,
        call: ChildCall,
        key: String,
        token: Option<String>,
    ) -> Self {
        let sink = RoundSink::new(token, progress);
        let (guard, asks) = bridge.enter(&call.server);
        let call_cancel = closing.child_token();
        let child_cancel = call_cancel.clone();
        let child_sink: Arc<dyn RawSink> = sink.clone();
        let ChildCall {
            link,
            method,
            params,
            timeout,
            ..
        } = call;
        let child = Box::pin(async move {
            let Ok(mut params) = RawObject::parse(&params) else {
                return RawOutcome::Closed;
            };
            // The sink puts the current round's token on each notification.
            let route = ProgressRoute {
                token: "null".into(),
                sink: child_sink,
            };
            link.call(method, &mut params, Some(route), timeout, &child_cancel)
                .await
        });
        Rounds {
            bridge: Arc::clone(bridge),
            tool: key,
            child,
            asks,
            _guard: guard,
            call_cancel,
            sink,
            pending: Vec::new(),
            rounds: 0,
            next_key: 1,
            resume: None,
        }
    }

    /// Run the current round until the child answers or asks for input; `cancel` is the
    /// round's own (the client's cancellation of this request).
    pub(crate) async fn round(&mut self, cancel: &CancellationToken) -> Step {
        loop {
            let ask = tokio::select! {
                outcome = &mut self.child => return Step::Done(outcome),
                Some(ask) = self.asks.recv() => ask,
                _ = cancel.cancelled() => {
                    self.call_cancel.cancel();
                    return Step::Done((&mut self.child).await);
                }
            };
            if self.rounds >= MAX_ROUNDS {
                let _ = ask.answer.send(Err(McpError::invalid_request(
                    format!("the call asked the client for input {MAX_ROUNDS} times; lastmile stops there"),
                    None,
                )));
                continue;
            }
            let mut asks = vec![ask];
            while let Ok(more) = self.asks.try_recv() {
                asks.push(more);
            }
            return Step::Input(self.input_required(asks));
        }
    }

    /// The input-required result for `asks`, and this call parked until the client retries.
    fn input_required(&mut self, asks: Vec<InputAsk>) -> String {
        self.rounds += 1;
        let mut requests = RawObject::default();
        for ask in asks {
            let key = format!("lastmile-{}", self.next_key);
            self.next_key += 1;
            let method = match &ask.request {
                InputRequest::CreateMessage(_) => "sampling/createMessage",
                InputRequest::Elicitation(_) => "elicitation/create",
                InputRequest::ListRoots(_) => "roots/list",
                _ => "",
            };
            match serde_json::to_string(&ask.request) {
                Ok(json) => {
                    requests.set(&key, json);
                    self.pending.push((key, method, ask.answer));
                }
                Err(e) => {
                    let _ = ask.answer.send(Err(McpError::internal_error(
                        format!("lastmile could not pass the request on: {e}"),
                        None,
                    )));
                }
            }
        }
        let (resume, resumed) = oneshot::channel();
        self.resume = Some(resumed);
        let state = self.bridge.park(&self.tool, resume);
        let mut result = RawObject::default();
        result.set("resultType", "\"input_required\"".into());
        result.set("inputRequests", requests.to_json());
        result.set("requestState", json_string(&state));
        result.to_json()
    }

    /// Wait for the client's retry (or give up at [`INPUT_WAIT`], or when `closing` fires);
    /// hand its answers to the child's waiting requests. `None`: the client did not come back.
    pub(crate) async fn resumed(&mut self, closing: &CancellationToken) -> Option<Resume> {
        let resumed = self.resume.take()?;
        let outcome = tokio::select! {
            r = resumed => r.ok(),
            _ = tokio::time::sleep(INPUT_WAIT) => None,
            _ = closing.cancelled() => None,
        };
        let Some(resume) = outcome else {
            for (_, _, answer) in self.pending.drain(..) {
                let _ = answer.send(Err(McpError::invalid_request(
                    "the client did not come back with the input".to_string(),
                    None,
                )));
            }
            self.call_cancel.cancel();
            return None;
        };
        let responses = resume
            .responses
            .as_deref()
            .and_then(|r| {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(r).ok()
            })
            .unwrap_or_default();
        for (key, method, answer) in self.pending.drain(..) {
            let _ = answer.send(client_result(method, responses.get(&key)));
        }
        self.sink.set(resume.token.clone());
        Some(resume)
    }

    /// The child call, once the client is gone: cancelled, run to its end.
    pub(crate) async fn abandon(&mut self) -> RawOutcome {
        self.call_cancel.cancel();
        (&mut self.child).await
    }
}

/// How a bridged call ends: its answer, under the last retry's id, for the child's outcome
/// (and its audit row).
pub(crate) type Conclude =
    Box<dyn FnOnce(RawOutcome, String) -> BoxFuture<'static, Option<Vec<u8>>> + Send>;
/// What is recorded when the client never came back for a call.
pub(crate) type Abandoned = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// The rounds of a call after its first asked for input: each retry resumes it; the answer goes
/// to the retry that sees the child finish. A client that never comes back (or leaves, when
/// `closing` fires) has the child call cancelled, and `abandoned` records it.
pub(crate) async fn drive(
    closing: CancellationToken,
    mut rounds: Rounds,
    conclude: Conclude,
    abandoned: Abandoned,
) {
    loop {
        let Some(resume) = rounds.resumed(&closing).await else {
            let _ = rounds.abandon().await;
            abandoned().await;
            return;
        };
        match rounds.round(&resume.cancel).await {
            Step::Input(result) => {
                let line = response_line(&resume.id, "result", |o| {
                    o.extend_from_slice(result.as_bytes())
                });
                let _ = resume.reply.send(Some(line));
            }
            Step::Done(outcome) => {
                let answer = conclude(outcome, resume.id.clone()).await;
                let _ = resume.reply.send(answer);
                return;
            }
        }
    }
}

/// A retry carrying `state`: hand the waiting call of `target` the client's input and return
/// this round's answer (`None`: the retry was cancelled).
pub(crate) async fn resume(
    bridge: &Bridge,
    id: &str,
    state: &str,
    target: &str,
    responses: Option<String>,
    token: Option<String>,
    cancel: &CancellationToken,
) -> Result<Option<Vec<u8>>, StateRefusal> {
    let resume = bridge.take(state, target)?;
    let (reply, replied) = oneshot::channel();
    let _ = resume.send(Resume {
        id: id.to_owned(),
        responses,
        token,
        cancel: cancel.clone(),
        reply,
    });
    Ok(replied.await.unwrap_or_else(|_| {
        Some(super::front::error_line(
            id,
            INVALID_PARAMS,
            "the call this retry continues has ended",
        ))
    }))
}

impl StateRefusal {
    /// Why, in words.
    pub(crate) fn why(self) -> &'static str {
        match self {
            StateRefusal::Invalid => "not one lastmile issued to this session for this request",
            StateRefusal::Expired => "expired or already used",
        }
    }
}

/// The error answering a retry whose `requestState` was refused (as the SDKs answer it).
pub(crate) fn invalid_state_line(id: &str, refusal: StateRefusal) -> Vec<u8> {
    let error = format!(
        "{{\"code\":{INVALID_PARAMS},\"message\":{},\"data\":{{\"reason\":\"invalid_request_state\"}}}}",
        json_string(&format!(
            "Invalid or expired requestState: {}",
            refusal.why()
        ))
    );
    response_line(id, "error", |o| o.extend_from_slice(error.as_bytes()))
}

/// The client's answer to one input request, in the type the child's request expects.
fn client_result(
    method: &str,
    value: Option<&serde_json::Value>,
) -> Result<ClientResult, McpError> {
    let Some(value) = value.cloned() else {
        return Err(McpError::invalid_request(
            format!("the client gave no answer to `{method}`"),
            None,
        ));
    };
    let bad = |e: serde_json::Error| {
        McpError::invalid_params(
            format!("the client's answer to `{method}` is malformed: {e}"),
            None,
        )
    };
    match method {
        "roots/list" => serde_json::from_value::<ListRootsResult>(value)
            .map(ClientResult::ListRootsResult)
            .map_err(bad),
        "sampling/createMessage" => serde_json::from_value::<CreateMessageResult>(value)
            .map(|r| ClientResult::CreateMessageResult(Box::new(r)))
            .map_err(bad),
        "elicitation/create" => serde_json::from_value::<ElicitResult>(value)
            .map(ClientResult::ElicitResult)
            .map_err(bad),
        _ => Err(McpError::internal_error("an unknown input request", None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_state_opens_once_for_its_tool_and_identity() {
        let bridge = Bridge::new("alice/user".into());
        let (tx, _rx) = oneshot::channel();
        let state = bridge.park("alpha__roots", tx);
        assert!(state.starts_with("lm1."));
        assert_eq!(
            bridge.take(&state, "alpha__echo").err(),
            Some(StateRefusal::Invalid)
        );
        assert!(bridge.take(&state, "alpha__roots").is_ok());
        // Used up: a replay is refused.
        assert_eq!(
            bridge.take(&state, "alpha__roots").err(),
            Some(StateRefusal::Expired)
        );
    }

    #[test]
    fn forged_altered_and_foreign_states_are_refused() {
        let bridge = Bridge::new("alice/user".into());
        let other = Bridge::new("alice/user".into());
        let (tx, _rx) = oneshot::channel();
        let state = bridge.park("t", tx);
        let (tx2, _rx2) = oneshot::channel();
        let foreign = other.park("t", tx2);
        let mut parts: Vec<String> = state.split('.').map(str::to_string).collect();
        parts[2] = (parts[2].parse::<u64>().unwrap() + 1000).to_string();
        let stretched = parts.join(".");
        for bad in [
            "",
            "lm1",
            "lm1.x.1.00",
            stretched.as_str(),
            foreign.as_str(),
            &format!("{state}.extra"),
        ] {
            assert_eq!(
                bridge.take(bad, "t").err(),
                Some(StateRefusal::Invalid),
                "{bad}"
            );
        }
        assert!(bridge.take(&state, "t").is_ok());
    }

    #[test]
    fn a_request_is_tied_only_to_the_one_call_in_flight() {
        let bridge = Arc::new(Bridge::new("a/user".into()));
        let roots = || ServerRequest::ListRootsRequest(Default::default());
        assert!(
            bridge
                .ask("alpha", roots())
                .unwrap_err()
                .contains("no call")
        );
        let (first, mut asks) = bridge.enter("alpha");
        assert!(bridge.ask("alpha", roots()).is_ok());
        assert!(asks.try_recv().is_ok());
        let (second, _asks2) = bridge.enter("alpha");
        assert!(
            bridge
                .ask("alpha", roots())
                .unwrap_err()
                .contains("2 calls")
        );
        drop(second);
        assert!(bridge.ask("beta", roots()).is_err());
        drop(first);
        assert!(bridge.ask("alpha", roots()).is_err());
    }
}
