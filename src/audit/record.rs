//! What the gateway hands to the audit sink: one [`ExecutionRecord`] per tool call, one
//! [`SessionRecord`] per session event, one [`EdgeEvent`] per request the HTTP edge turned away.
//!
//! None of these types has a field for a credential. Free text that may have come from downstream
//! (arguments, error messages) must already be scrubbed by the redactor; the writer masks JWT-shaped
//! text once more before anything is stored (see [`mask_jwt_like`]).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{AuthMode, Tier};

/// The id of one tool execution: a UUID v7 (time-ordered), made before the call so that it can go
/// into tracing spans and the result's `_meta` (`lastmile/executionId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutionId(uuid::Uuid);

impl ExecutionId {
    /// The hyphenated lowercase form stored in the database and shown to the client.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// The same text as `to_string`, encoded without the formatting machinery (the writer makes
    /// one per row).
    pub(crate) fn hyphenated(&self) -> String {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        self.0.hyphenated().encode_lower(&mut buf).to_owned()
    }
}

impl std::fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl std::str::FromStr for ExecutionId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(ExecutionId)
    }
}

/// Make the id of a tool execution. Call it before the call starts.
///
/// ```
/// let id = lastmile::audit::new_execution_id();
/// assert_eq!(id.to_string().len(), 36);
/// ```
pub fn new_execution_id() -> ExecutionId {
    // `Uuid::now_v7` takes a lock and asks the OS for randomness on every call (about 0.5 to 1 µs
    // here, on the call path). Execution ids must be unique, not secret: each thread seeds once from
    // `now_v7` and then numbers its ids through a 64-bit bijection (splitmix64's finalizer), so two
    // ids of one thread never share their random part and threads start from random seeds.
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<(u64, u64)> = Cell::new({
            let seed = uuid::Uuid::now_v7().as_u64_pair().1;
            (seed, 0)
        });
    }
    let (seed, n) = STATE.with(|s| {
        let (seed, n) = s.get();
        s.set((seed, n.wrapping_add(1)));
        (seed, n)
    });
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&z.to_be_bytes());
    random[8..].copy_from_slice(&seed.to_be_bytes()[..2]);
    let ms = u64::try_from(now_ms()).unwrap_or(0);
    ExecutionId(uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid())
}

/// Now, as Unix milliseconds.
pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970: record it as such rather than fail a call.
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// How a tool execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// The tool answered with a result.
    Ok,
    /// The tool answered with a tool-level error result (`isError: true`).
    ToolError,
    /// The call failed in the gateway or the downstream connection.
    Error,
    /// The call took longer than its timeout.
    Timeout,
    /// The client cancelled the call.
    Cancelled,
    /// The session may not call this tool (it was answered as an unknown tool).
    Denied,
    /// The session's rate limit refused the call.
    RateLimited,
}

impl ExecStatus {
    /// Every status, in a fixed order.
    pub const ALL: [ExecStatus; 7] = [
        ExecStatus::Ok,
        ExecStatus::ToolError,
        ExecStatus::Error,
        ExecStatus::Timeout,
        ExecStatus::Cancelled,
        ExecStatus::Denied,
        ExecStatus::RateLimited,
    ];

    /// The name stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Ok => "ok",
            ExecStatus::ToolError => "tool_error",
            ExecStatus::Error => "error",
            ExecStatus::Timeout => "timeout",
            ExecStatus::Cancelled => "cancelled",
            ExecStatus::Denied => "denied",
            ExecStatus::RateLimited => "rate_limited",
        }
    }
}

impl std::str::FromStr for ExecStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExecStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status `{s}` (expected one of ok, tool_error, error, timeout, cancelled, denied, rate_limited)"
                )
            })
    }
}

/// Which transport carried the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `lastmile serve` on stdin/stdout.
    Stdio,
    /// Streamable HTTP.
    Http,
}

impl Transport {
    /// The name stored in the `transport` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        }
    }
}

/// The identity a session's calls are bound to. Made once per session and cloned into each
/// [`PendingExecution`]. It holds identifiers only: never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdentity {
    /// The session's id.
    pub session_id: String,
    /// The token's `jti` claim, if there was a token.
    pub jti: Option<String>,
    /// The token's subject, if any (`None` for anonymous sessions).
    pub subject: Option<String>,
    /// The session's tier.
    pub tier: Tier,
    /// How the session reached the gateway.
    pub transport: Transport,
}

/// One forwarded request (a tool call, a prompt, a resource read, a list...), as stored in
/// `tool_executions`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    /// Made before the call with [`new_execution_id`].
    pub execution_id: ExecutionId,
    /// When the call started (Unix ms).
    pub started_at_ms: i64,
    /// When the call ended (Unix ms).
    pub finished_at_ms: i64,
    /// How long the call took, in microseconds (monotonic clock).
    pub duration_us: i64,
    /// Who made the call.
    pub identity: SessionIdentity,
    /// The MCP method: `tools/call`, `prompts/get`, `resources/read`, `tools/list`, ...
    pub method: String,
    /// The downstream server (the file stem in `servers.d/`).
    pub server: String,
    /// The target on that server: the tool's name (not the namespaced name), the prompt's name or
    /// the resource URI; empty for requests without one (the list requests).
    pub tool: String,
    /// The call's arguments: the JSON text of an object, as the client wrote it, already
    /// scrubbed by the redactor.
    pub arguments: Option<String>,
    /// How the call ended.
    pub status: ExecStatus,
    /// The error message, already scrubbed, for every status but `ok`.
    pub error: Option<String>,
    /// How many secret values the redactor replaced in the arguments, result and error.
    pub redactions: u32,
}

impl ExecutionRecord {
    /// Start timing a call. `execution_id` comes from [`new_execution_id`], made before the call;
    /// `arguments` must already be scrubbed.
    pub fn begin(
        execution_id: ExecutionId,
        identity: &SessionIdentity,
        server: &str,
        tool: &str,
        arguments: Option<String>,
    ) -> PendingExecution {
        PendingExecution {
            execution_id,
            started_at_ms: now_ms(),
            started: Instant::now(),
            identity: identity.clone(),
            method: TOOLS_CALL.to_string(),
            server: server.to_string(),
            tool: tool.to_string(),
            arguments,
        }
    }

    /// Start timing any other forwarded request: `method` is its MCP method (`resources/read`,
    /// `prompts/get`, `tools/list`, ...) and `target` what it names on `server` (a prompt's name, a
    /// resource URI, or `""`). Finish it as a tool call is finished.
    pub fn begin_request(
        execution_id: ExecutionId,
        identity: &SessionIdentity,
        method: &str,
        server: &str,
        target: &str,
    ) -> PendingExecution {
        PendingExecution {
            execution_id,
            started_at_ms: now_ms(),
            started: Instant::now(),
            identity: identity.clone(),
            method: method.to_string(),
            server: server.to_string(),
            tool: target.to_string(),
            arguments: None,
        }
    }
}

/// The method of a tool call, the default of the `method` column.
pub(crate) const TOOLS_CALL: &str = "tools/call";

/// A call that has started and not yet ended. [`PendingExecution::finish`] makes the record.
#[derive(Debug, Clone)]
pub struct PendingExecution {
    execution_id: ExecutionId,
    started_at_ms: i64,
    started: Instant,
    identity: SessionIdentity,
    method: String,
    server: String,
    tool: String,
    arguments: Option<String>,
}

impl PendingExecution {
    /// The call's execution id.
    pub fn execution_id(&self) -> ExecutionId {
        self.execution_id
    }

    /// End the call: how it ended, its scrubbed error message, and how many values were redacted.
    pub fn finish(
        self,
        status: ExecStatus,
        error: Option<String>,
        redactions: u32,
    ) -> ExecutionRecord {
        let elapsed = self.started.elapsed();
        ExecutionRecord {
            execution_id: self.execution_id,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self
                .started_at_ms
                .saturating_add(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)),
            duration_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
            identity: self.identity,
            method: self.method,
            server: self.server,
            tool: self.tool,
            arguments: self.arguments,
            status,
            error,
            redactions,
        }
    }
}

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionEvent {
    /// The session's token was accepted (or optional mode fell back to anonymous).
    Accepted,
    /// The session was refused; `reason` names why.
    Refused,
    /// The session ended; `reason` says how (client closed, shutdown, expired).
    Ended,
}

impl SessionEvent {
    /// The name stored in the `event` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEvent::Accepted => "accepted",
            SessionEvent::Refused => "refused",
            SessionEvent::Ended => "ended",
        }
    }
}

/// One session event, as stored in `sessions` (append-only: a session has an `accepted` or
/// `refused` row when it starts and an `ended` row when it ends; the `session_spans` view joins them).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// The session's id.
    pub session_id: String,
    /// What happened.
    pub event: SessionEvent,
    /// The named reason (the `Display` of the identity module's error, never the token).
    pub reason: Option<String>,
    /// The verification mode in force.
    pub mode: AuthMode,
    /// The token's subject, if one was read.
    pub subject: Option<String>,
    /// The session's tier, if it got one.
    pub tier: Option<Tier>,
    /// The token's `jti`, if one was read.
    pub jti: Option<String>,
    /// The token's expiry (Unix ms), if one was read.
    pub expires_at_ms: Option<i64>,
    /// How the session reached the gateway.
    pub transport: Transport,
    /// When it happened (Unix ms).
    pub at_ms: i64,
}

/// The name stored in the `mode` column.
pub(crate) fn auth_mode_str(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Required => "required",
        AuthMode::Optional => "optional",
        AuthMode::Disabled => "disabled",
    }
}

/// A request the HTTP edge turned away, as stored in `edge_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeEvent {
    /// When (Unix ms).
    pub at_ms: i64,
    /// Which check fired: `path`, `user_agent`, `velocity`, `auth`, ...
    pub check: String,
    /// The check's named reason.
    pub reason: String,
    /// The HTTP method.
    pub method: String,
    /// The request path. Anything from `?` on is dropped by the writer: query strings can carry tokens.
    pub path: String,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
    /// The peer's address, if known.
    pub remote_addr: Option<String>,
    /// The client's request rate when the check fired, if measured.
    pub requests_per_minute: Option<u32>,
    /// How many denials this event stands for: 1, or more when a flood was collapsed.
    pub count: u32,
}

/// Anything the audit log stores.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditRecord {
    /// A tool execution.
    Execution(ExecutionRecord),
    /// A session event.
    Session(SessionRecord),
    /// An HTTP edge denial.
    Edge(EdgeEvent),
}

impl From<ExecutionRecord> for AuditRecord {
    fn from(r: ExecutionRecord) -> Self {
        AuditRecord::Execution(r)
    }
}

impl From<SessionRecord> for AuditRecord {
    fn from(r: SessionRecord) -> Self {
        AuditRecord::Session(r)
    }
}

impl From<EdgeEvent> for AuditRecord {
    fn from(r: EdgeEvent) -> Self {
        AuditRecord::Edge(r)
    }
}

/// What every JWT-shaped run of text is replaced with.
pub const JWT_MASK: &str = "[redacted:jwt]";

/// Replace every JWT-shaped run (`eyJ…` `.` `…` `.` `…`, base64url) with [`JWT_MASK`]; returns the
/// text and how many runs were replaced. A second line of defence behind the redactor: lastmile's own
/// session tokens are JWTs, and no audit column may hold one.
pub fn mask_jwt_like(text: &str) -> (std::borrow::Cow<'_, str>, u32) {
    fn is_b64url(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
    }
    let bytes = text.as_bytes();
    // One searcher for every call: `str::contains` builds its own each time, and the writer
    // asks about every text column of every row.
    static START: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"eyJ"));
    if START.find(text.as_bytes()).is_none() {
        return (std::borrow::Cow::Borrowed(text), 0);
    }
    let mut out = String::with_capacity(text.len());
    let mut count = 0u32;
    let mut copied = 0usize;
    let mut i = 0usize;
    while i + 3 <= bytes.len() {
        let starts_run = bytes[i..].starts_with(b"eyJ") && (i == 0 || !is_b64url(bytes[i - 1]));
        if starts_run {
            // Three base64url segments separated by dots; the first two non-empty.
            let mut j = i;
            let mut segments = 0;
            let mut seg_len = 0usize;
            let mut ok = true;
            while j < bytes.len() {
                if is_b64url(bytes[j]) {
                    seg_len += 1;
                } else if bytes[j] == b'.' && segments < 2 {
                    if seg_len == 0 {
                        ok = false;
                        break;
                    }
                    segments += 1;
                    seg_len = 0;
                } else {
                    break;
                }
                j += 1;
            }
            if ok && segments == 2 {
                out.push_str(&text[copied..i]);
                out.push_str(JWT_MASK);
                copied = j;
                count += 1;
                i = j;
                continue;
            }
        }
        i += 1;
    }
    if count == 0 {
        return (std::borrow::Cow::Borrowed(text), 0);
    }
    out.push_str(&text[copied..]);
    (std::borrow::Cow::Owned(out), count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_execution_id_encodes_as_it_displays() {
        for _ in 0..100 {
            let id = new_execution_id();
            assert_eq!(id.hyphenated(), id.to_string());
        }
    }

    #[test]
    fn execution_ids_are_v7_and_unique() {
        let a = new_execution_id();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert_eq!(a.as_uuid().get_variant(), uuid::Variant::RFC4122);
        assert_eq!(a.to_string().parse::<ExecutionId>().unwrap(), a);
        // The timestamp is now, in ms.
        let (secs, _) = a.as_uuid().get_timestamp().unwrap().to_unix();
        assert!((now_ms() / 1000 - secs as i64).abs() <= 1);
        let mut seen = std::collections::HashSet::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..20_000).map(|_| new_execution_id()).collect::<Vec<_>>())
            })
            .collect();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(seen.insert(id), "duplicate id {id}");
            }
        }
    }

    #[test]
    fn statuses_round_trip() {
        for st in ExecStatus::ALL {
            assert_eq!(st.as_str().parse::<ExecStatus>().unwrap(), st);
        }
        assert!("fine".parse::<ExecStatus>().is_err());
    }

    #[test]
    fn finish_measures_the_call() {
        let who = SessionIdentity {
            session_id: "s1".into(),
            jti: Some("j1".into()),
            subject: Some("alice".into()),
            tier: Tier::User,
            transport: Transport::Stdio,
        };
        let id = new_execution_id();
        let pending = ExecutionRecord::begin(id, &who, "github", "create_issue", None);
        assert_eq!(pending.execution_id(), id);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let rec = pending.finish(ExecStatus::Ok, None, 0);
        assert!(rec.duration_us >= 2000);
        assert!(rec.finished_at_ms >= rec.started_at_ms);
        assert_eq!(rec.identity, who);
    }

    #[test]
    fn masks_jwt_shaped_text() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
        let text = format!("bad token {jwt}, again:{jwt}");
        let (masked, n) = mask_jwt_like(&text);
        assert_eq!(n, 2);
        assert_eq!(masked, format!("bad token {JWT_MASK}, again:{JWT_MASK}"));
        let (plain, n) = mask_jwt_like("eyJust a word. and.more");
        assert_eq!(n, 0);
        assert_eq!(plain, "eyJust a word. and.more");
        let (none, n) = mask_jwt_like("nothing here");
        assert_eq!((none.as_ref(), n), ("nothing here", 0));
    }
}
