//! One running child: its process, its MCP client session and its catalog.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use process_wrap::tokio::ChildWrapper;
use rmcp::model::{
    CancelledNotificationParam, ClientConfig, ClientRequest, ClientResult, Implementation,
    ProgressToken, Prompt, RequestId, Resource, ResourceTemplate, ServerCapabilities,
    ServerNotification, ServerRequest, ServerResult, Tool,
};
use rmcp::service::{
    ClientCacheConfig, NotificationContext, Peer, PeerRequestOptions, RequestContext, RoleClient,
    RunningService, Service,
};
use rmcp::{ErrorData as McpError, ServiceError, ServiceExt};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::link::Link;
use super::reaper::ReaperLink;
use super::spawn::{ChildEnv, SpawnError, build_command, spawn_failed};
use super::upstream::Upstream;
use crate::config::Server;

/// Longest stderr line kept in the log; the rest of the line is cut.
const MAX_STDERR_LINE: usize = 8 * 1024;
/// How long a child may take to exit after its stdin closes, and again after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_millis(1500);

/// Where a child reports events: its server name and what happened.
pub type EventSender = mpsc::Sender<(Arc<str>, ChildEvent)>;

/// Something a child told us that changes what the gateway shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildEvent {
    /// The child exited or closed its connection on its own; why.
    Exited(String),
    /// `notifications/tools/list_changed`.
    ToolsChanged,
    /// `notifications/prompts/list_changed`.
    PromptsChanged,
    /// `notifications/resources/list_changed`.
    ResourcesChanged,
    /// It sent the client a request of its own (roots, sampling, elicitation).
    AskedClient,
    /// It sent, while shared by several identities, a notification no call asked for (a log
    /// message, a resource update): dropped, since it has no caller.
    SpokeUnasked,
}

/// Why a child could not be started.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    /// The process could not be spawned.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// It started but the MCP handshake failed (it exited, or spoke something else).
    #[error("the MCP handshake failed: {0}")]
    Handshake(String),
    /// It did not finish the handshake in time.
    #[error("did not finish starting within {0:?}\nhint: raise `startup_timeout` in its file")]
    Timeout(Duration),
    /// Listing its tools, prompts or resources failed.
    #[error("listing its {what} failed: {message}")]
    Catalog {
        /// tools, prompts, resources or resource templates.
        what: &'static str,
        /// The error.
        message: String,
    },
}

/// What a child offers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Catalog {
    /// Capabilities it declared.
    pub capabilities: ServerCapabilities,
    /// Its tools, unfiltered and unrenamed.
    pub tools: Vec<Tool>,
    /// Its prompts.
    pub prompts: Vec<Prompt>,
    /// Its resources.
    pub resources: Vec<Resource>,
    /// Its resource templates.
    pub templates: Vec<ResourceTemplate>,
}

/// Child progress tokens mapped to the caller's token and the caller's client (a shared child
/// serves several), for calls in flight that asked for progress.
type ProgressMap = std::sync::Mutex<HashMap<ProgressToken, (ProgressToken, Arc<Upstream>)>>;

/// The client side lastmile presents to one child: server-to-client requests and notifications
/// pass through to the client verbatim, except what lastmile itself must act on (list changes,
/// progress tokens, logger tags).
pub struct ChildHandler {
    server: Arc<str>,
    info: ClientConfig,
    upstream: Arc<Upstream>,
    progress: Arc<ProgressMap>,
    events: EventSender,
}

impl ChildHandler {
    fn event(&self, e: ChildEvent) {
        // A full queue already holds a pending refresh; dropping a duplicate loses nothing.
        let _ = self.events.try_send((self.server.clone(), e));
    }

    fn client_token(&self, child_token: &ProgressToken) -> Option<(ProgressToken, Arc<Upstream>)> {
        self.progress
            .lock()
            .ok()
            .and_then(|m| m.get(child_token).cloned())
    }
}

impl Service<RoleClient> for ChildHandler {
    async fn handle_request(
        &self,
        request: ServerRequest,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ClientResult, McpError> {
        match request {
            ServerRequest::PingRequest(_) => Ok(ClientResult::empty(())),
            other => {
                self.event(ChildEvent::AskedClient);
                self.upstream.request(&self.server, other).await
            }
        }
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        _ctx: NotificationContext<RoleClient>,
    ) -> Result<(), McpError> {
        match notification {
            ServerNotification::ToolListChangedNotification(_) => {
                self.event(ChildEvent::ToolsChanged)
            }
            ServerNotification::PromptListChangedNotification(_) => {
                self.event(ChildEvent::PromptsChanged)
            }
            ServerNotification::ResourceListChangedNotification(_) => {
                self.event(ChildEvent::ResourcesChanged)
            }
            ServerNotification::ProgressNotification(mut n) => {
                // The call registers its token right after sending; a notification can only
                // overtake that by a hair, so look again briefly before giving up.
                let mut token = self.client_token(&n.params.progress_token);
                for _ in 0..20 {
                    if token.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    token = self.client_token(&n.params.progress_token);
                }
                match token {
                    Some((token, caller)) => {
                        n.params.progress_token = token;
                        caller
                            .notify(&self.server, ServerNotification::ProgressNotification(n))
                            .await;
                    }
                    None => {
                        tracing::debug!(server = %self.server, "progress for no call in flight; dropped")
                    }
                }
            }
            // A shared child's own notifications have no caller: dropped, and remembered so
            // that it runs one instance per identity from its next start.
            ServerNotification::LoggingMessageNotification(_) if self.upstream.is_shared() => {
                self.event(ChildEvent::SpokeUnasked);
            }
            #[allow(deprecated)] // logging is deprecated in rmcp 3.x; we forward it
            ServerNotification::LoggingMessageNotification(mut n) => {
                n.params.logger = Some(match n.params.logger.take() {
                    Some(logger) => format!("{}/{logger}", self.server),
                    None => self.server.to_string(),
                });
                self.upstream
                    .notify(
                        &self.server,
                        ServerNotification::LoggingMessageNotification(n),
                    )
                    .await;
            }
            // A child cancelling its own request to the client: the client knows that request
            // under another id, and its answer will simply be dropped.
            ServerNotification::CancelledNotification(_) => {}
            other if self.upstream.is_shared() => {
                self.event(ChildEvent::SpokeUnasked);
                drop(other);
            }
            other => self.upstream.notify(&self.server, other).await,
        }
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}

/// How a forwarded request ended.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // returned once per call and consumed at once; boxing buys nothing
pub enum CallOutcome {
    /// The child answered (a result or its own JSON-RPC error).
    Answered(Result<ServerResult, ServiceError>),
    /// No answer within the timeout; the child was sent `notifications/cancelled`.
    TimedOut(Duration),
    /// The client cancelled; the child was sent `notifications/cancelled`.
    Cancelled,
}

/// A started child.
pub struct Child {
    /// Server name.
    pub name: Arc<str>,
    /// For typed requests to the child (lists, subscriptions); cheap to clone.
    pub peer: Peer<RoleClient>,
    /// For requests forwarded as bytes (the hot path).
    pub link: Arc<Link>,
    progress: Arc<ProgressMap>,
    stop_tx: mpsc::Sender<oneshot::Sender<()>>,
}

/// Everything a child needs besides its definition.
pub struct ChildContext {
    /// The client, for requests and notifications going up.
    pub upstream: Arc<Upstream>,
    /// Where list changes and exits are reported.
    pub events: EventSender,
    /// The reaper, if one runs.
    pub reaper: Option<Arc<ReaperLink>>,
    /// The longest message read from the child.
    pub max_message: usize,
}

impl Child {
    /// Spawn the child, complete the MCP handshake within `startup_timeout`, and read its catalog.
    pub async fn start(
        server: &Server,
        env: ChildEnv,
        startup_timeout: Duration,
        cx: &ChildContext,
    ) -> Result<(Child, Catalog), StartError> {
        let name: Arc<str> = server.name.as_str().into();
        let mut wrap = build_command(server, &env)?;
        let spawned = wrap.spawn();
        let mut process = spawned.map_err(|e| spawn_failed(&server.def.command, &wrap, e))?;
        let pid = process.id();
        if let (Some(reaper), Some(pid)) = (&cx.reaper, pid) {
            reaper.register(pid);
        }
        tracing::info!(server = %name, pid, env = ?env.names(), "child started");
        let stdin = process.stdin().take();
        let stdout = process.stdout().take();
        let isolation_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut stderr_task = process.stderr().take().map(|stderr| {
            tokio::spawn(pump_stderr(
                name.clone(),
                stderr,
                Arc::clone(&isolation_failed),
            ))
        });
        let mut guard = StopOnDrop {
            process: Some(process),
            reaper: cx.reaper.clone(),
            pid,
        };
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(StartError::Handshake(
                "the child's stdio could not be opened".into(),
            ));
        };
        let progress = Arc::new(ProgressMap::default());
        let handler = ChildHandler {
            server: name.clone(),
            info: ClientConfig::new(
                cx.upstream.capabilities_for_children(),
                Implementation::new("lastmile", env!("CARGO_PKG_VERSION")),
            ),
            upstream: Arc::clone(&cx.upstream),
            progress: Arc::clone(&progress),
            events: cx.events.clone(),
        };
        let (link, (typed_in, typed_out)) =
            Link::start(name.clone(), stdout, stdin, cx.max_message);
        let service =
            match tokio::time::timeout(startup_timeout, handler.serve((typed_in, typed_out))).await
            {
                Ok(Ok(service)) => service,
                Ok(Err(e)) => {
                    // A failed isolation step writes its line (logged like any stderr line) and
                    // exits with a code of its own. The reason shown is built here from that
                    // code, never from the child's bytes.
                    if let Some(task) = stderr_task.as_mut() {
                        let _ = tokio::time::timeout(STOP_GRACE, task).await;
                    }
                    let code = match guard.process.as_mut() {
                        Some(p) => tokio::time::timeout(STOP_GRACE, p.wait())
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .and_then(|status| status.code()),
                        None => None,
                    };
                    if isolation_failed.load(std::sync::atomic::Ordering::SeqCst)
                        && let Some(reason) = isolation_reason(code, &server.def.command)
                    {
                        return Err(SpawnError::Isolation { reason }.into());
                    }
                    return Err(StartError::Handshake(e.to_string()));
                }
                Err(_) => return Err(StartError::Timeout(startup_timeout)),
            };
        drop(stderr_task);
        let peer = service.peer().clone();
        // Lists must reflect the child now, never a stale cached copy.
        peer.set_response_cache_config(ClientCacheConfig::disabled())
            .await;
        let catalog = match tokio::time::timeout(startup_timeout, read_catalog(&peer)).await {
            Ok(Ok(catalog)) => catalog,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(StartError::Timeout(startup_timeout)),
        };
        let (stop_tx, stop_rx) = mpsc::channel(1);
        let Some(process) = guard.process.take() else {
            return Err(StartError::Handshake("the child process vanished".into()));
        };
        tokio::spawn(monitor(
            name.clone(),
            service,
            process,
            stop_rx,
            cx.events.clone(),
            guard.reaper.take(),
            pid,
        ));
        Ok((
            Child {
                name,
                peer,
                link,
                progress,
                stop_tx,
            },
            catalog,
        ))
    }

    /// Re-read the child's catalog (after a list_changed).
    pub async fn catalog(&self) -> Result<Catalog, StartError> {
        read_catalog(&self.peer).await
    }

    /// Forward a request, carrying the client's progress token (if any) across, bounded by
    /// `timeout` and by the client's cancellation. A request abandoned for either reason is
    /// cancelled on the child with `notifications/cancelled`.
    pub async fn forward(
        &self,
        request: ClientRequest,
        client_progress: Option<(ProgressToken, Arc<Upstream>)>,
        timeout: Duration,
        cancelled: CancellationToken,
    ) -> CallOutcome {
        let handle = match self
            .peer
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
        {
            Ok(h) => h,
            Err(e) => return CallOutcome::Answered(Err(e)),
        };
        let mut guard = InFlight {
            peer: self.peer.clone(),
            id: Some(handle.id.clone()),
            progress: Arc::clone(&self.progress),
            child_token: None,
            reason: "the client cancelled the request",
        };
        if let Some(token) = client_progress
            && let Ok(mut map) = self.progress.lock()
        {
            map.insert(handle.progress_token.clone(), token);
            guard.child_token = Some(handle.progress_token.clone());
        }
        tokio::select! {
            answer = handle.await_response() => {
                guard.id = None;
                CallOutcome::Answered(answer)
            }
            _ = tokio::time::sleep(timeout) => {
                guard.reason = "call_timeout elapsed";
                CallOutcome::TimedOut(timeout)
            }
            _ = cancelled.cancelled() => CallOutcome::Cancelled,
        }
    }

    /// Stop the child: close its stdin, then SIGTERM its process group, then SIGKILL, each after
    /// [`STOP_GRACE`]; finally sweep the group so no grandchild is left behind.
    pub async fn stop(&self) {
        let (ack, done) = oneshot::channel();
        if self.stop_tx.send(ack).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// How long a finished call's progress token stays mapped. rmcp handles each incoming
/// notification on its own task, so the child's last progress notification can be processed just
/// after the response it preceded on the wire; the mapping must outlive the call briefly.
const PROGRESS_LINGER: Duration = Duration::from_secs(2);

/// Cleans up after a forwarded request: forgets its progress token (after [`PROGRESS_LINGER`])
/// and, unless it was answered, tells the child to stop working on it.
struct InFlight {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
    progress: Arc<ProgressMap>,
    child_token: Option<ProgressToken>,
    reason: &'static str,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(token) = self.child_token.take() {
            let progress = Arc::clone(&self.progress);
            tokio::spawn(async move {
                tokio::time::sleep(PROGRESS_LINGER).await;
                if let Ok(mut map) = progress.lock() {
                    map.remove(&token);
                }
            });
        }
        if let Some(id) = self.id.take() {
            let peer = self.peer.clone();
            let reason = self.reason;
            tokio::spawn(async move {
                let _ = peer
                    .notify_cancelled(CancelledNotificationParam::new(
                        Some(id),
                        Some(reason.into()),
                    ))
                    .await;
            });
        }
    }
}

/// Owns the child's process and session: reports an unexpected exit, or carries out a stop.
async fn monitor(
    name: Arc<str>,
    service: RunningService<RoleClient, ChildHandler>,
    mut process: Box<dyn ChildWrapper>,
    mut stop_rx: mpsc::Receiver<oneshot::Sender<()>>,
    events: EventSender,
    reaper: Option<Arc<ReaperLink>>,
    pid: Option<u32>,
) {
    let ct = service.cancellation_token();
    let mut waiting = Box::pin(service.waiting());
    tokio::select! {
        _ = &mut waiting => {
            // The child closed its side: it exited, crashed or closed stdout.
            let status = tokio::time::timeout(STOP_GRACE, process.wait()).await;
            let reason = match status {
                Ok(Ok(status)) => format!("exited ({status})"),
                _ => "closed its connection".to_string(),
            };
            let _ = Box::into_pin(process.kill()).await;
            unregister(&reaper, pid);
            tracing::warn!(server = %name, "child {reason}");
            let _ = events.send((name.clone(), ChildEvent::Exited(reason))).await;
        }
        ack = stop_rx.recv() => {
            // Closing the session drops the transport, which closes the child's stdin.
            ct.cancel();
            let _ = tokio::time::timeout(STOP_GRACE, &mut waiting).await;
            stop_process(&mut *process, &name).await;
            unregister(&reaper, pid);
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
    }
}

fn unregister(reaper: &Option<Arc<ReaperLink>>, pid: Option<u32>) {
    if let (Some(reaper), Some(pid)) = (reaper, pid) {
        reaper.unregister(pid);
    }
}

/// Wait for exit, escalating from EOF to SIGTERM to SIGKILL, then kill the whole group.
async fn stop_process(process: &mut dyn ChildWrapper, name: &str) {
    let exited = tokio::time::timeout(STOP_GRACE, process.wait())
        .await
        .is_ok();
    #[cfg(unix)]
    if !exited {
        tracing::info!(server = %name, "child still running after stdin closed; sending SIGTERM");
        let _ = process.signal(nix::sys::signal::Signal::SIGTERM as i32);
        if tokio::time::timeout(STOP_GRACE, process.wait())
            .await
            .is_err()
        {
            tracing::warn!(server = %name, "child ignored SIGTERM; killing it");
        }
    }
    // Windows has no polite stop for a windowless process: ending the job comes next.
    #[cfg(windows)]
    if !exited {
        tracing::warn!(server = %name, "child still running after stdin closed; ending its job");
    }
    // Kill whatever is left of the process group (the leader, if it is still there, and any
    // grandchildren it left behind). ProcessSession's kill targets the whole group.
    let _ = Box::into_pin(process.kill()).await;
}

/// Kills the child if start-up fails part-way.
struct StopOnDrop {
    process: Option<Box<dyn ChildWrapper>>,
    reaper: Option<Arc<ReaperLink>>,
    pid: Option<u32>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.start_kill();
            unregister(&self.reaper, self.pid);
            // Reap it so no zombie is left.
            tokio::spawn(async move {
                let _ = Box::into_pin(process.kill()).await;
            });
        }
    }
}

async fn read_catalog(peer: &Peer<RoleClient>) -> Result<Catalog, StartError> {
    let capabilities = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let fail = |what| {
        move |e: rmcp::ServiceError| StartError::Catalog {
            what,
            message: e.to_string(),
        }
    };
    let tools = if capabilities.tools.is_some() {
        peer.list_all_tools().await.map_err(fail("tools"))?
    } else {
        Vec::new()
    };
    let prompts = if capabilities.prompts.is_some() {
        peer.list_all_prompts().await.map_err(fail("prompts"))?
    } else {
        Vec::new()
    };
    let (resources, templates) = if capabilities.resources.is_some() {
        (
            peer.list_all_resources().await.map_err(fail("resources"))?,
            peer.list_all_resource_templates()
                .await
                .map_err(fail("resource templates"))?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(Catalog {
        capabilities,
        tools,
        prompts,
        resources,
        templates,
    })
}

/// Most stderr lines a child may put in the log per second; a flood beyond this is counted and
/// summarised instead, so one noisy child cannot swamp the log (or stall it: the file writer
/// applies back-pressure rather than dropping lines).
const STDERR_LINES_PER_SEC: u32 = 200;

/// Copy a child's stderr into the log line by line, tagged with the server's name. Each line is
/// redacted first and then cut at [`MAX_STDERR_LINE`] (so a flood without newlines cannot grow
/// memory), and lines are rate-limited to [`STDERR_LINES_PER_SEC`].
async fn pump_stderr(
    server: Arc<str>,
    mut stderr: tokio::process::ChildStderr,
    isolation_failed: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 4096];
    let mut pump = StderrPump {
        server,
        isolation_failed,
        lines: StderrLines::default(),
        budget: LineBudget::new(),
    };
    loop {
        let read = stderr.read(&mut buf);
        // Lines held for context are written when the child goes quiet, so a last line is
        // never kept from the log for long.
        let read = if pump.lines.holding() {
            match tokio::time::timeout(STDERR_QUIET, read).await {
                Ok(read) => read,
                Err(_) => {
                    pump.write(&[], 0);
                    continue;
                }
            }
        } else {
            read.await
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // The redactor can grow as children start: ask for its window at every read.
        pump.write(&buf[..n], crate::telemetry::scrub_window());
    }
}

/// A child's stderr on its way to the log. Dropped (the stream ended, or lastmile is shutting
/// down with the pump still running), it writes what it still holds.
struct StderrPump {
    server: Arc<str>,
    isolation_failed: Arc<std::sync::atomic::AtomicBool>,
    lines: StderrLines,
    budget: LineBudget,
}

impl StderrPump {
    /// Take `data` in and write every line that has `window` bytes of context after it.
    fn write(&mut self, data: &[u8], window: usize) {
        self.with_lines(|lines, emit| lines.push(data, window, &scrub_for_log, emit));
    }

    /// Run `f` on the lines with what writes one line to the log.
    fn with_lines(&mut self, f: impl FnOnce(&mut StderrLines, &mut dyn FnMut(&[u8], bool))) {
        let StderrPump {
            server,
            isolation_failed,
            lines,
            budget,
        } = self;
        let mut emit = |line: &[u8], cut: bool| {
            note_isolation_failure(line, isolation_failed);
            if budget.take(server) {
                emit_stderr_line(server, line, cut);
            }
        };
        f(lines, &mut emit);
    }
}

impl Drop for StderrPump {
    fn drop(&mut self) {
        self.with_lines(|lines, emit| lines.finish(&scrub_for_log, emit));
        self.budget.flush(&self.server);
    }
}

/// The log's scrubber over `bytes[..cut]`, the rest read as context.
fn scrub_for_log(bytes: &[u8], cut: usize) -> (Vec<u8>, usize) {
    let (clean, reach) = crate::telemetry::scrub_prefix_reach(bytes, cut);
    (clean.into_owned(), reach)
}

/// How long lines wait for the context that follows them before they are written anyway.
const STDERR_QUIET: Duration = Duration::from_millis(100);

/// The scrubbed form of `bytes[..cut]` with the rest as context, and where it read up to.
type ScrubFn<'a> = dyn Fn(&[u8], usize) -> (Vec<u8>, usize) + 'a;

/// Splits a byte stream into lines and redacts each with the lines after it as context, so a
/// secret that spans lines (a PEM key, base64 wrapped at 76 columns, a multi-line value
/// printed whole) is found whole: a line is written once `window` bytes have come after it
/// (the longest span a secret can take), or the stream ends or goes quiet. A secret replaced
/// in one line takes its tail in the next lines with it.
///
/// Of each line, the first [`MAX_STDERR_LINE`] bytes are written, and that many plus `window`
/// are kept, so a secret straddling the cut (or a read boundary) is whole when it is redacted.
#[derive(Default)]
struct StderrLines {
    /// Complete lines not yet written, each ending in `\n`.
    held: Vec<u8>,
    /// For each held line, whether bytes of it were dropped.
    cuts: std::collections::VecDeque<bool>,
    /// Bytes at the start of `held` that belong to a secret already replaced in a line before.
    skip: usize,
    /// The line being read, and whether bytes of it were dropped.
    line: Vec<u8>,
    cut: bool,
}

impl StderrLines {
    fn push(
        &mut self,
        data: &[u8],
        window: usize,
        scrub: &ScrubFn<'_>,
        emit: &mut dyn FnMut(&[u8], bool),
    ) {
        let keep = MAX_STDERR_LINE + window;
        for &b in data {
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < keep {
                self.line.push(b);
            } else {
                self.cut = true;
            }
        }
        self.release(window, scrub, emit);
    }

    /// Whether complete lines wait for context.
    fn holding(&self) -> bool {
        !self.cuts.is_empty()
    }

    /// Write what is left at the end of the stream.
    fn finish(&mut self, scrub: &ScrubFn<'_>, emit: &mut dyn FnMut(&[u8], bool)) {
        if !self.line.is_empty() {
            self.end_line();
        }
        self.release(0, scrub, emit);
    }

    fn end_line(&mut self) {
        self.held.extend_from_slice(&self.line);
        self.held.push(b'\n');
        self.cuts.push_back(self.cut);
        self.line.clear();
        self.cut = false;
    }

    /// Write every held line that has at least `window` bytes after it.
    fn release(&mut self, window: usize, scrub: &ScrubFn<'_>, emit: &mut dyn FnMut(&[u8], bool)) {
        while let Some(nl) = memchr::memchr(b'\n', &self.held) {
            if self.held.len() - (nl + 1) < window {
                break;
            }
            let start = self.skip.min(nl);
            let rest = nl - start;
            let cut = self.cuts.front().copied().unwrap_or(false) || rest > MAX_STDERR_LINE;
            // The bytes past the cut are context only: a secret straddling the cut or the end
            // of the line is replaced whole, and the overlap (which may end in the head of a
            // secret) is never shown.
            let (clean, reach) = scrub(&self.held[start..], rest.min(MAX_STDERR_LINE));
            // A line that was all the tail of a secret replaced before is not written again.
            if !(start > 0 && rest == 0) {
                emit(&clean, cut);
            }
            let reach = start + reach;
            self.consume(if reach > nl { reach } else { nl + 1 });
        }
    }

    /// Drop the first `n` bytes of `held`: whole lines, then a part of the next one to skip.
    fn consume(&mut self, mut n: usize) {
        while let Some(nl) = memchr::memchr(b'\n', &self.held) {
            if n <= nl {
                break;
            }
            self.held.drain(..=nl);
            self.cuts.pop_front();
            n -= nl + 1;
        }
        self.skip = n;
    }
}

/// Note that the isolation step's failure line (see `isolate.rs`) went by.
fn note_isolation_failure(line: &[u8], seen: &std::sync::atomic::AtomicBool) {
    if line.starts_with(super::isolate::FAILURE_PREFIX.as_bytes()) {
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What a failed isolation step's exit code means.
fn isolation_reason(code: Option<i32>, command: &str) -> Option<String> {
    let code = u8::try_from(code?).ok()?;
    if code == crate::exit_codes::ISOLATION_FAILED {
        Some("lastmile __exec could not isolate it (its line in the log says why)".into())
    } else if code == crate::exit_codes::EXEC_FAILED {
        Some(format!(
            "lastmile __exec could not execute `{command}` (its line in the log says why)"
        ))
    } else {
        None
    }
}

/// A per-second line allowance that reports what it dropped.
struct LineBudget {
    window: std::time::Instant,
    used: u32,
    dropped: u64,
}

impl LineBudget {
    fn new() -> Self {
        LineBudget {
            window: std::time::Instant::now(),
            used: 0,
            dropped: 0,
        }
    }

    fn take(&mut self, server: &str) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.flush(server);
            self.window = std::time::Instant::now();
            self.used = 0;
        }
        if self.used < STDERR_LINES_PER_SEC {
            self.used += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    fn flush(&mut self, server: &str) {
        if self.dropped > 0 {
            tracing::warn!(server = %server, dropped = self.dropped, "child is flooding stderr; lines dropped from the log");
            self.dropped = 0;
        }
    }
}

fn emit_stderr_line(server: &str, line: &[u8], cut: bool) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    tracing::info!(target: "lastmile::child", server = %server, cut, "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{Redactor, leaked_form};
    use secrecy::SecretString;

    const SECRET: &str = "sk-stderr-7Hq2LmZ9xW4pR8tV1nB6";

    fn lines(input: &[u8], chunk: usize) -> Vec<(Vec<u8>, bool)> {
        let r = Redactor::new([("K".to_string(), SecretString::from(SECRET))]).unwrap();
        lines_of(&r, input, chunk)
    }

    fn lines_of(r: &Redactor, input: &[u8], chunk: usize) -> Vec<(Vec<u8>, bool)> {
        let scrub = |bytes: &[u8], cut: usize| {
            let (clean, _, reach) = r.scrub_prefix_reach(bytes, cut);
            (clean.into_owned(), reach)
        };
        let mut out = Vec::new();
        let mut emit = |line: &[u8], cut: bool| out.push((line.to_vec(), cut));
        let mut split = StderrLines::default();
        for piece in input.chunks(chunk) {
            split.push(piece, r.window(), &scrub, &mut emit);
        }
        split.finish(&scrub, &mut emit);
        out
    }

    /// Issue #9: a secret straddling the 8 KiB cut and a read boundary was logged but for its
    /// last bytes. Every encoding, at every offset around the cut.
    #[test]
    fn regression_9_a_secret_straddling_the_cut_and_a_read_is_redacted_whole() {
        let u_escaped: String = SECRET
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
        for form in [SECRET.to_string(), u_escaped, b64] {
            for back in [1, 7, form.len() / 2, form.len() - 1] {
                let mut line = vec![b'x'; MAX_STDERR_LINE - back];
                line.extend_from_slice(form.as_bytes());
                line.extend_from_slice(&[b'y'; 20_000]);
                line.extend_from_slice(b"\nnext line\n");
                // Reads of 4096 bytes end at the cut too; 1000-byte reads elsewhere.
                for chunk in [4096, 1000] {
                    let out = lines(&line, chunk);
                    assert_eq!(out.len(), 2, "{back} {chunk}");
                    let (first, cut) = &out[0];
                    assert!(*cut);
                    assert!(first.len() <= MAX_STDERR_LINE + 16, "{}", first.len());
                    assert!(first.ends_with(b"[REDACTED:K]"), "{back} {chunk}");
                    assert_eq!(leaked_form(SECRET, first), None);
                    assert_eq!(out[1], (b"next line".to_vec(), false));
                }
            }
        }
    }

    /// A secret that only begins in the overlap past the cut shows no byte of itself.
    #[test]
    fn the_overlap_past_the_cut_is_never_shown() {
        let mut line = vec![b'x'; MAX_STDERR_LINE];
        line.extend_from_slice(&SECRET.as_bytes()[..10]);
        let out = lines(&line, 4096);
        assert_eq!(out, vec![(vec![b'x'; MAX_STDERR_LINE], true)]);
    }

    /// A secret printed over several lines (a multi-line value, base64 wrapped as `base64` and
    /// PEM wrap it) is redacted whole, in every read size, and no line holds a piece of it.
    #[test]
    fn a_secret_spanning_lines_is_redacted_whole() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
        let wrapped: Vec<&str> = b64
            .as_bytes()
            .chunks(12)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let split = format!("{}\n{}", &SECRET[..10], &SECRET[10..]);
        let r = Redactor::new([
            ("K".to_string(), SecretString::from(SECRET)),
            ("M".to_string(), SecretString::from(split.as_str())),
        ])
        .unwrap();
        for (input, label) in [
            // The line after starts outside base64's alphabet: a run that goes on in it would
            // be read as more of the encoding.
            (
                format!("before\n{}\n# after\n", wrapped.join("\n")),
                "[REDACTED:K]",
            ),
            (
                format!("before\nkey: {split} (end)\n# after\n"),
                "[REDACTED:M]",
            ),
        ] {
            for chunk in [1, 7, 4096] {
                let out = lines_of(&r, input.as_bytes(), chunk);
                let text: Vec<String> = out
                    .iter()
                    .map(|(l, _)| String::from_utf8_lossy(l).into_owned())
                    .collect();
                assert_eq!(text.first().map(String::as_str), Some("before"), "{text:?}");
                assert_eq!(text.last().map(String::as_str), Some("# after"), "{text:?}");
                assert!(text.iter().any(|l| l.contains(label)), "{chunk}: {text:?}");
                let joined = text.concat();
                assert_eq!(leaked_form(SECRET, joined.as_bytes()), None, "{text:?}");
                for piece in wrapped.iter().chain([&&SECRET[10..]]) {
                    assert!(
                        !text.iter().any(|l| l.contains(*piece)),
                        "{piece}: {text:?}"
                    );
                }
            }
        }
    }

    /// Lines wait only for context: released (the child went quiet), every held line is
    /// written, in order and unchanged; the line still being read stays.
    #[test]
    fn held_lines_are_written_when_released() {
        let r = Redactor::new([("K".to_string(), SecretString::from(SECRET))]).unwrap();
        let scrub = |bytes: &[u8], cut: usize| {
            let (clean, _, reach) = r.scrub_prefix_reach(bytes, cut);
            (clean.into_owned(), reach)
        };
        let mut out = Vec::new();
        let mut emit =
            |line: &[u8], _cut: bool| out.push(String::from_utf8_lossy(line).into_owned());
        let mut split = StderrLines::default();
        split.push(b"one\ntwo\nthr", r.window(), &scrub, &mut emit);
        assert!(split.holding());
        split.release(0, &scrub, &mut emit);
        assert!(!split.holding());
        split.finish(&scrub, &mut emit);
        assert_eq!(out, ["one", "two", "thr"]);
    }
}
