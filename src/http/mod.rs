//! Streamable HTTP: `lastmile serve --http ADDR` serves MCP at `/mcp`.
//!
//! Every request passes, in order: the edge's triage ([`crate::edge`]: scanner detection, the
//! signed proxy identity, the token extractor chain and the validator — each request verified on
//! its own), then the `Host`/`Origin` check (`origin`), then the MCP handler. Behind it is the
//! stdio code, not a copy: each session is a [`crate::gateway::ClientSession`] served by the same
//! front over in-process pipes (`instance`), so the tier scoping, routing, secrets, redaction,
//! gate and audit are the ones stdio uses.
//!
//! - **2025 versions**: `initialize` without `Mcp-Session-Id` opens a session, bound to the
//!   identity (subject and tier) that opened it; the header names it on every later request, and
//!   a request on it with another identity is refused. `GET` opens its stream of messages no
//!   request asked for; `DELETE` ends it.
//! - **2026-07-28** (stateless): a request without a session that says `MCP-Protocol-Version:
//!   2026-07-28` (or is `server/discover`) is served by the identity's own session, opened on
//!   first need.
//!
//! A request answers with JSON, or with an SSE stream when it carries a progress token (or is
//! `subscriptions/listen`) and the client accepts `text/event-stream`.

mod instance;
mod origin;
mod registry;
mod resume;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

pub use origin::{OriginPolicy, OriginRefusal};

use self::instance::{ClaimError, Instance, Message, SendError};
use self::registry::{Registry, SessionError};
use self::resume::PostStream;
use crate::config::{AuthMode, ExtractorPreset, HttpSection};
use crate::edge::{DenialCheck, Edge, Refusal, Verified};
use crate::gateway::SessionProfile;
use crate::secrets::SessionRedactor;
use crate::wire::{Envelope, Kind, RawObject, json_string};

/// The session header of the 2025 versions.
const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol version header.
const VERSION_HEADER: &str = "mcp-protocol-version";
/// Where a reconnecting event stream stopped.
const LAST_EVENT_ID: &str = "last-event-id";
/// The first stateless version.
const V_2026_07_28: &str = "2026-07-28";
/// The RFC 9728 metadata path.
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// A comment on an idle `GET` stream, so a client that left is noticed.
const KEEPALIVE: Duration = Duration::from_secs(25);
/// How often denial events are handed to the audit database.
const DENIAL_FLUSH: Duration = Duration::from_secs(5);

/// JSON-RPC: invalid request.
const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC: parse error.
const PARSE_ERROR: i32 = -32700;

/// One HTTP gateway: the edge, the origin policy and the sessions.
pub struct HttpGateway {
    edge: Edge,
    origin: OriginPolicy,
    registry: Registry,
    authorization_servers: Vec<String>,
    max_message: usize,
}

impl HttpGateway {
    /// A gateway bound to `bound` over `profile`. `redactor` must already know every secret of
    /// every server (it is shared by every session, and should be the log's scrubber too).
    pub fn new(
        edge: Edge,
        http: &HttpSection,
        bound: SocketAddr,
        profile: SessionProfile,
        redactor: Arc<SessionRedactor>,
        mode: AuthMode,
        max_message: usize,
    ) -> Self {
        let credentials = http.extractor == ExtractorPreset::Browser;
        let origin = OriginPolicy::new(
            bound,
            &http.allowed_hosts,
            &http.allowed_origins,
            credentials,
        );
        let edge =
            edge.with_resource_metadata(format!("http://{}{METADATA_PATH}/mcp", host_of(bound)));
        HttpGateway {
            edge,
            origin,
            registry: Registry::new(profile, redactor, mode, http, max_message),
            authorization_servers: http.authorization_servers.clone(),
            max_message,
        }
    }
}

/// Serve `gateway` on `listener` until `shutdown` completes; then every session is closed (calls
/// in flight are cancelled and audited, children stop) before this returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<HttpGateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let housekeeping = tokio::spawn(housekeeping(Arc::clone(&gateway)));
    let app = Router::new()
        .route("/mcp", any(mcp))
        .route(METADATA_PATH, get(metadata))
        .route(&format!("{METADATA_PATH}/mcp"), get(metadata))
        .fallback(fallback)
        .with_state(Arc::clone(&gateway));
    let closing = Arc::clone(&gateway);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        // Open streams end with their sessions, so the server can finish.
        closing.registry.close_all().await;
    })
    .await;
    housekeeping.abort();
    gateway.registry.close_all().await;
    if let Some(sink) = gateway.registry.audit() {
        let _ = gateway.edge.forward_denials(sink).await;
    }
    served
}

/// Idle sessions are closed; denial events reach the audit database.
async fn housekeeping(gateway: Arc<HttpGateway>) {
    let sweep_every =
        (gateway.registry.idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut sweep = tokio::time::interval(sweep_every);
    let mut denials = tokio::time::interval(DENIAL_FLUSH);
    loop {
        tokio::select! {
            _ = sweep.tick() => gateway.registry.sweep().await,
            _ = denials.tick() => {
                if let Some(sink) = gateway.registry.audit()
                    && let Err(e) = gateway.edge.forward_denials(sink).await
                {
                    tracing::error!("audit: denial events: {e}");
                }
            }
        }
    }
}

async fn mcp(
    State(gw): State<Arc<HttpGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let peer = peer.ip();
    if parts.method == Method::OPTIONS {
        return gw.preflight(&parts, peer);
    }
    let who = match gw.edge.triage(&parts, peer) {
        Ok(who) => who,
        Err(refusal) => {
            let mut response = refusal_response(&refusal);
            if let Ok(Some(origin)) = gw.origin.check(&parts.headers) {
                gw.origin.cors(&origin, response.headers_mut(), false);
            }
            return response;
        }
    };
    let origin = match gw.check_origin(&parts, peer, Some(who.subject())) {
        Ok(origin) => origin,
        Err(response) => return response,
    };
    let mut response = match parts.method {
        Method::POST => gw.post(&who, &parts.headers, body).await,
        Method::GET => gw.stream(&who, &parts.headers).await,
        Method::DELETE => gw.delete(&who, &parts.headers).await,
        _ => {
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use POST, GET or DELETE on /mcp",
            );
            r.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
            r
        }
    };
    if let Some(origin) = origin {
        gw.origin.cors(&origin, response.headers_mut(), false);
    }
    response
}

/// RFC 9728: where tokens for this resource come from. No credential is needed to read it.
async fn metadata(
    State(gw): State<Arc<HttpGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(refusal) = gw.edge.screen(&parts, peer.ip()) {
        return refusal_response(&refusal);
    }
    if let Err(response) = gw.check_origin(&parts, peer.ip(), None) {
        return response;
    }
    // The Host was checked above: it names this server.
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let mut doc = serde_json::json!({
        "resource": format!("http://{host}/mcp"),
        "resource_name": "lastmile MCP gateway",
        "bearer_methods_supported": ["header"],
        "lastmile_token_hint": "issue a token with `lastmile token issue --sub NAME --tier TIER` and send it as `Authorization: Bearer TOKEN`",
    });
    if !gw.authorization_servers.is_empty() {
        doc["authorization_servers"] = serde_json::json!(gw.authorization_servers);
    }
    json_response(StatusCode::OK, serde_json::to_vec(&doc).unwrap_or_default())
}

/// Any other path: triage (scanners meet their 403 here), then 404.
async fn fallback(
    State(gw): State<Arc<HttpGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(refusal) = gw.edge.triage(&parts, peer.ip()) {
        return refusal_response(&refusal);
    }
    plain(
        StatusCode::NOT_FOUND,
        "not_found",
        "lastmile serves MCP at /mcp",
    )
}

impl HttpGateway {
    /// The `Host`/`Origin` check; a refusal is a denial event and a 403.
    #[allow(clippy::result_large_err)] // the refusal is the response itself, built once
    fn check_origin(
        &self,
        parts: &http::request::Parts,
        peer: IpAddr,
        identity: Option<&str>,
    ) -> Result<Option<HeaderValue>, Response> {
        self.origin.check(&parts.headers).map_err(|refusal| {
            self.edge.observe(
                parts,
                peer,
                DenialCheck::Origin,
                refusal.code(),
                &refusal,
                identity,
                None,
            );
            plain(StatusCode::FORBIDDEN, refusal.code(), &refusal.to_string())
        })
    }

    /// A CORS preflight: answered for an allowed origin only (the scanner sees it first).
    fn preflight(&self, parts: &http::request::Parts, peer: IpAddr) -> Response {
        if let Err(refusal) = self.edge.screen(parts, peer) {
            return refusal_response(&refusal);
        }
        match self.check_origin(parts, peer, None) {
            Ok(Some(origin)) => {
                let mut response = empty(StatusCode::NO_CONTENT);
                self.origin.cors(&origin, response.headers_mut(), true);
                response
            }
            Ok(None) => plain(
                StatusCode::BAD_REQUEST,
                "not_a_preflight",
                "a preflight carries an Origin header",
            ),
            Err(response) => response,
        }
    }

    async fn post(&self, who: &Verified, headers: &HeaderMap, body: Body) -> Response {
        if !is_json(headers) {
            return rpc_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                INVALID_REQUEST,
                "a message is sent as Content-Type: application/json",
            );
        }
        let bytes = match axum::body::to_bytes(body, self.max_message).await {
            Ok(b) => b,
            Err(_) => {
                return rpc_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    INVALID_REQUEST,
                    &format!(
                        "message too large: over the limit of {} bytes, or the body could not be read\nhint: raise `max_message_bytes` under [defaults] in lastmile.toml",
                        self.max_message
                    ),
                );
            }
        };
        let mut envelope = match Envelope::parse(&bytes) {
            Ok(e) => e,
            Err(e) => {
                let hint = if bytes.trim_ascii_start().starts_with(b"[") {
                    "\nhint: JSON-RPC batches are not accepted; send one message per request"
                } else {
                    ""
                };
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    PARSE_ERROR,
                    &format!("lastmile could not read the message: {e}{hint}"),
                );
            }
        };
        let method = envelope.method().map(|m| m.into_owned());
        let kind = envelope.kind();
        let is_initialize = kind == Kind::Request && method.as_deref() == Some("initialize");
        let no_session = header_text(headers, SESSION_HEADER).is_none();
        let stateless = no_session && !is_initialize && is_2026(headers, &envelope);
        if no_session
            && let Some(refusal) = refuse_2026(headers, &envelope, method.as_deref(), kind)
        {
            return refusal;
        }
        let (instance, fresh) = match header_text(headers, SESSION_HEADER) {
            Some(id) => match self.registry.get(id, who) {
                Ok(i) => (i, false),
                Err(e) => return session_error(&e),
            },
            None if is_initialize => match self.registry.open(who).await {
                Ok(i) => (i, true),
                Err(e) => return session_error(&e),
            },
            None if is_2026(headers, &envelope) => match self.registry.stateless(who).await {
                Ok(i) => (i, false),
                Err(e) => return session_error(&e),
            },
            None => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    INVALID_REQUEST,
                    "no Mcp-Session-Id header: open a session with `initialize` first (or speak 2026-07-28 with MCP-Protocol-Version)",
                );
            }
        };
        if kind != Kind::Request {
            return match instance.notify(&mut envelope).await {
                Ok(()) => empty(StatusCode::ACCEPTED),
                Err(e) => send_error(&e),
            };
        }
        let streams =
            method.as_deref() == Some("subscriptions/listen") || has_progress_token(&envelope);
        if method.as_deref() == Some("subscriptions/listen")
            && !accepts(headers, "text/event-stream")
        {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                INVALID_REQUEST,
                "subscriptions/listen answers with a stream: accept text/event-stream",
            );
        }
        let sse = streams && accepts(headers, "text/event-stream");
        let (mut exchange, mut rx) = match instance.request(&mut envelope).await {
            Ok(x) => x,
            Err(e) => return send_error(&e),
        };
        let mut response = if sse {
            let prime = primes(headers);
            sse_response(PostStream::open(&instance, exchange, rx, prime).into_body())
        } else {
            let answer = loop {
                match rx.recv().await {
                    Some(Message::Final(line)) => break Some(line),
                    Some(Message::Interim(_)) => continue,
                    None => break None,
                }
            };
            exchange.answered();
            match answer {
                Some(line) => {
                    // On 2026-07-28 a protocol error is an HTTP error too.
                    let status = if stateless {
                        status_2026(&line, meta_malformed(&envelope))
                    } else {
                        StatusCode::OK
                    };
                    json_response(status, line.to_vec())
                }
                None => rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    INVALID_REQUEST,
                    "the session ended before the request was answered",
                ),
            }
        };
        if fresh
            && let Some(id) = &instance.id
            && let Ok(v) = HeaderValue::from_str(id)
        {
            response.headers_mut().insert(SESSION_HEADER, v);
        }
        response
    }

    /// `GET /mcp`: the session's stream of messages no request asked for.
    async fn stream(&self, who: &Verified, headers: &HeaderMap) -> Response {
        if !accepts(headers, "text/event-stream") {
            return plain(
                StatusCode::NOT_ACCEPTABLE,
                "not_acceptable",
                "GET /mcp is a stream: accept text/event-stream",
            );
        }
        let Some(id) = header_text(headers, SESSION_HEADER) else {
            // 2026-07-28 has no such stream; 2025 clients treat 405 as "none offered".
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "no_session",
                "GET /mcp needs an Mcp-Session-Id",
            );
            r.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("POST, DELETE, OPTIONS"),
            );
            return r;
        };
        let instance: Arc<Instance> = match self.registry.get(id, who) {
            Ok(i) => i,
            Err(e) => return session_error(&e),
        };
        let resume_from = match header_text(headers, LAST_EVENT_ID) {
            None => None,
            Some(text) => match resume::parse_event_id(text) {
                Some(at) => Some(at),
                None => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        "bad_last_event_id",
                        "Last-Event-ID is not an event id lastmile gave ({stream}-{seq})",
                    );
                }
            },
        };
        match resume_from {
            Some((stream, seq)) if stream != resume::GET_STREAM => {
                match instance.claim(stream, seq).await {
                    Ok(resumed) => sse_response(resumed.into_body()),
                    Err(ClaimError::Gone) => plain(
                        StatusCode::GONE,
                        "stream_gone",
                        "that stream has ended or waited longer than its client may come back",
                    ),
                    Err(ClaimError::Busy) => {
                        let mut r = plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "stream_busy",
                            "that stream is still held by its old connection: try again",
                        );
                        r.headers_mut()
                            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                        r
                    }
                }
            }
            _ => {
                let after = resume_from.map(|(_, seq)| seq);
                let (first, rx) = instance.open_stream(after, primes(headers));
                let live = futures::stream::unfold(rx, |mut rx| async move {
                    tokio::select! {
                        event = rx.recv() => event.map(|e| (Ok(e), rx)),
                        _ = tokio::time::sleep(KEEPALIVE) => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), rx)),
                    }
                });
                sse_response(futures::StreamExt::chain(
                    futures::stream::iter(first.into_iter().map(Ok)),
                    live,
                ))
            }
        }
    }

    async fn delete(&self, who: &Verified, headers: &HeaderMap) -> Response {
        let Some(id) = header_text(headers, SESSION_HEADER) else {
            return plain(
                StatusCode::BAD_REQUEST,
                "no_session",
                "DELETE /mcp needs an Mcp-Session-Id",
            );
        };
        match self.registry.delete(id, who).await {
            Ok(()) => empty(StatusCode::NO_CONTENT),
            Err(e) => session_error(&e),
        }
    }
}

/// Whether a request without a session speaks 2026-07-28: by header, by method, or by its
/// per-request `_meta`.
fn is_2026(headers: &HeaderMap, envelope: &Envelope<'_>) -> bool {
    if header_text(headers, VERSION_HEADER).is_some_and(|v| v >= V_2026_07_28) {
        return true;
    }
    if envelope.method().as_deref() == Some("server/discover") {
        return true;
    }
    let meta_version = meta_entry(envelope, PROTOCOL_VERSION_META)
        .and_then(|v| serde_json::from_str::<String>(&v).ok());
    meta_version.is_some_and(|v| v.as_str() >= V_2026_07_28)
}

/// JSON-RPC: the method does not exist.
const METHOD_NOT_FOUND: i32 = -32601;
/// JSON-RPC (MCP): the `MCP-Protocol-Version` header disagrees with the body.
const HEADER_MISMATCH: i32 = -32020;
/// The `_meta` key of a request's protocol version.
const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
/// Methods 2026-07-28 no longer has.
const REMOVED_IN_2026: [&str; 4] = [
    "initialize",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// A request's `_meta` entry, as raw JSON text.
fn meta_entry(envelope: &Envelope<'_>, key: &str) -> Option<String> {
    let meta = envelope.params().ok().flatten()?.get("_meta")?.to_owned();
    RawObject::parse(&meta).ok()?.get(key).map(str::to_owned)
}

/// A 2026-07-28 request without a session that the protocol refuses before any handler: a
/// method 2026-07-28 removed (404), or a version header that disagrees with `_meta` (400).
fn refuse_2026(
    headers: &HeaderMap,
    envelope: &Envelope<'_>,
    method: Option<&str>,
    kind: Kind,
) -> Option<Response> {
    let header = header_text(headers, VERSION_HEADER).filter(|v| *v >= V_2026_07_28)?;
    if kind != Kind::Request {
        return None;
    }
    let id = envelope.id().unwrap_or("null");
    if let Some(m) = method.filter(|m| REMOVED_IN_2026.contains(m)) {
        return Some(rpc_error_for(
            StatusCode::NOT_FOUND,
            id,
            METHOD_NOT_FOUND,
            &format!("`{m}` does not exist in MCP {header}"),
        ));
    }
    let body = meta_entry(envelope, PROTOCOL_VERSION_META)?;
    let body = serde_json::from_str::<String>(&body).ok()?;
    (body != header).then(|| {
        rpc_error_for(
            StatusCode::BAD_REQUEST,
            id,
            HEADER_MISMATCH,
            &format!("the MCP-Protocol-Version header ({header}) disagrees with the request's _meta ({body})"),
        )
    })
}

/// Whether a 2026-07-28 request lacks the `_meta` fields every request must carry.
fn meta_malformed(envelope: &Envelope<'_>) -> bool {
    meta_entry(envelope, PROTOCOL_VERSION_META).is_none()
        || meta_entry(envelope, "io.modelcontextprotocol/clientCapabilities").is_none()
}

/// The HTTP status of a 2026-07-28 answer: its protocol errors are HTTP errors too.
fn status_2026(line: &[u8], meta_malformed: bool) -> StatusCode {
    let code = Envelope::parse(line)
        .ok()
        .and_then(|e| e.member("error").map(str::to_owned))
        .and_then(|e| RawObject::parse(&e).ok()?.get("code")?.parse::<i32>().ok());
    match code {
        // Unsupported version, missing required client capability, header mismatch.
        Some(-32022 | -32021 | HEADER_MISMATCH) => StatusCode::BAD_REQUEST,
        Some(-32602) if meta_malformed => StatusCode::BAD_REQUEST,
        Some(METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

fn has_progress_token(envelope: &Envelope<'_>) -> bool {
    meta_entry(envelope, "progressToken").is_some()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn is_json(headers: &HeaderMap) -> bool {
    header_text(headers, CONTENT_TYPE.as_str()).is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Whether `Accept` names `kind` (or any type); a missing `Accept` accepts anything.
fn accepts(headers: &HeaderMap, kind: &str) -> bool {
    let Some(accept) = header_text(headers, ACCEPT.as_str()) else {
        return true;
    };
    accept.split(',').any(|part| {
        let t = part.split(';').next().unwrap_or("").trim();
        t.eq_ignore_ascii_case(kind) || t == "*/*"
    })
}

/// Whether the client's version expects a priming event on a stream (2025-11-25 and later).
fn primes(headers: &HeaderMap) -> bool {
    header_text(headers, VERSION_HEADER).is_some_and(|v| v >= "2025-11-25")
}

fn sse_response(
    events: impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
    let mut response = Response::new(Body::from_stream(events));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// A JSON error body `{error, message}` for what is not a JSON-RPC exchange.
fn plain(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    let mut response = json_response(status, serde_json::to_vec(&body).unwrap_or_default());
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON-RPC error (id `null`) with an HTTP status.
fn rpc_error(status: StatusCode, code: i32, message: &str) -> Response {
    rpc_error_for(status, "null", code, message)
}

/// A JSON-RPC error for request `id` (raw JSON text) with an HTTP status.
fn rpc_error_for(status: StatusCode, id: &str, code: i32, message: &str) -> Response {
    let body = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{code},\"message\":{}}}}}",
        json_string(message)
    );
    json_response(status, body.into_bytes())
}

fn session_error(e: &SessionError) -> Response {
    let status = match e {
        SessionError::Unknown => StatusCode::NOT_FOUND,
        SessionError::NotYours => StatusCode::FORBIDDEN,
        SessionError::TooMany { .. } => StatusCode::SERVICE_UNAVAILABLE,
        SessionError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{{\"code\":{INVALID_REQUEST},\"message\":{},\"data\":{{\"reason\":{}}}}}}}",
        json_string(&e.to_string()),
        json_string(e.code())
    );
    json_response(status, body.into_bytes())
}

fn send_error(e: &SendError) -> Response {
    match e {
        SendError::Closed => session_error(&SessionError::Unknown),
        SendError::Bad(detail) => rpc_error(StatusCode::BAD_REQUEST, INVALID_REQUEST, detail),
    }
}

fn refusal_response(refusal: &Refusal) -> Response {
    let mut response = Response::new(Body::from(refusal.body_bytes()));
    *response.status_mut() = refusal.status();
    response.headers_mut().extend(refusal.headers().clone());
    response
}

fn host_of(bound: SocketAddr) -> String {
    match bound {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}
