//! One running child: its process, its MCP client session and its catalog.

use std::sync::Arc;
use std::time::Duration;

use process_wrap::tokio::ChildWrapper;
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, Prompt, Resource, ResourceTemplate,
    ServerCapabilities, Tool,
};
use rmcp::service::{ClientCacheConfig, NotificationContext, Peer, RoleClient, RunningService};
use rmcp::{ClientHandler, ServiceExt};
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, mpsc};

use super::reaper::ReaperLink;
use super::spawn::{ChildEnv, SpawnError, build_command};
use crate::config::Server;

/// Longest stderr line kept in the log; the rest of the line is cut.
const MAX_STDERR_LINE: usize = 8 * 1024;
/// How long a child may take to exit after its stdin closes, and again after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_millis(1500);

/// Something a child told us that changes what the gateway shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEvent {
    /// `notifications/tools/list_changed`.
    ToolsChanged,
    /// `notifications/prompts/list_changed`.
    PromptsChanged,
    /// `notifications/resources/list_changed`.
    ResourcesChanged,
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
#[derive(Debug, Clone, Default)]
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

/// The client side lastmile presents to one child.
pub struct ChildHandler {
    server: Arc<str>,
    info: ClientConfig,
    events: mpsc::Sender<(Arc<str>, ChildEvent)>,
}

impl ChildHandler {
    fn event(&self, e: ChildEvent) {
        // A full queue already holds a pending refresh; dropping a duplicate loses nothing.
        let _ = self.events.try_send((self.server.clone(), e));
    }
}

impl ClientHandler for ChildHandler {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.event(ChildEvent::ToolsChanged);
    }

    async fn on_prompt_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.event(ChildEvent::PromptsChanged);
    }

    async fn on_resource_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.event(ChildEvent::ResourcesChanged);
    }
}

/// A started child.
pub struct Child {
    /// Server name.
    pub name: Arc<str>,
    /// For requests to the child; cheap to clone.
    pub peer: Peer<RoleClient>,
    service: Mutex<Option<RunningService<RoleClient, ChildHandler>>>,
    process: Mutex<Box<dyn ChildWrapper>>,
    pid: Option<u32>,
}

impl Child {
    /// Spawn the child, complete the MCP handshake within `startup_timeout`, and read its catalog.
    pub async fn start(
        server: &Server,
        env: ChildEnv,
        startup_timeout: Duration,
        reaper: Option<&ReaperLink>,
        events: mpsc::Sender<(Arc<str>, ChildEvent)>,
    ) -> Result<(Child, Catalog), StartError> {
        let name: Arc<str> = server.name.as_str().into();
        let mut wrap = build_command(server, &env)?;
        let mut process = wrap.spawn().map_err(|e| SpawnError::Os {
            program: server.def.command.clone(),
            message: e.to_string(),
        })?;
        let pid = process.id();
        if let (Some(reaper), Some(pid)) = (reaper, pid) {
            reaper.register(pid);
        }
        tracing::info!(server = %name, pid, env = ?env.names(), "child started");
        let stdin = process.stdin().take();
        let stdout = process.stdout().take();
        if let Some(stderr) = process.stderr().take() {
            tokio::spawn(pump_stderr(name.clone(), stderr));
        }
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(StartError::Handshake(
                "the child's stdio could not be opened".into(),
            ));
        };
        let handler = ChildHandler {
            server: name.clone(),
            info: ClientConfig::new(
                ClientCapabilities::default(),
                Implementation::new("lastmile", env!("CARGO_PKG_VERSION")),
            ),
            events,
        };
        let child_guard = StopOnDrop {
            process: Some(process),
            reaper,
            pid,
        };
        let service =
            match tokio::time::timeout(startup_timeout, handler.serve((stdout, stdin))).await {
                Ok(Ok(service)) => service,
                Ok(Err(e)) => return Err(StartError::Handshake(e.to_string())),
                Err(_) => return Err(StartError::Timeout(startup_timeout)),
            };
        let peer = service.peer().clone();
        // Lists must reflect the child now, never a stale cached copy.
        peer.set_response_cache_config(ClientCacheConfig::disabled())
            .await;
        let catalog = match tokio::time::timeout(startup_timeout, read_catalog(&peer)).await {
            Ok(Ok(catalog)) => catalog,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(StartError::Timeout(startup_timeout)),
        };
        let process = child_guard.disarm();
        Ok((
            Child {
                name,
                peer,
                service: Mutex::new(Some(service)),
                process: Mutex::new(process),
                pid,
            },
            catalog,
        ))
    }

    /// Re-read the child's catalog (after a list_changed).
    pub async fn catalog(&self) -> Result<Catalog, StartError> {
        read_catalog(&self.peer).await
    }

    /// Whether the child's connection is gone (it exited or closed stdout).
    pub fn is_closed(&self) -> bool {
        self.peer.is_transport_closed()
    }

    /// Stop the child: close its stdin, then SIGTERM its process group, then SIGKILL, each after
    /// [`STOP_GRACE`]; finally sweep the group so no grandchild is left behind.
    pub async fn stop(&self, reaper: Option<&ReaperLink>) {
        if let Some(mut service) = self.service.lock().await.take() {
            // Closing the session drops the transport, which closes the child's stdin.
            let _ = tokio::time::timeout(STOP_GRACE, service.close()).await;
        }
        let mut process = self.process.lock().await;
        stop_process(&mut **process, &self.name).await;
        if let (Some(reaper), Some(pid)) = (reaper, self.pid) {
            reaper.unregister(pid);
        }
    }
}

/// Wait for exit, escalating from EOF to SIGTERM to SIGKILL, then kill the whole group.
async fn stop_process(process: &mut dyn ChildWrapper, name: &str) {
    let exited = tokio::time::timeout(STOP_GRACE, process.wait())
        .await
        .is_ok();
    if !exited {
        tracing::info!(server = %name, "child still running after stdin closed; sending SIGTERM");
        #[cfg(unix)]
        let _ = process.signal(nix::sys::signal::Signal::SIGTERM as i32);
        if tokio::time::timeout(STOP_GRACE, process.wait())
            .await
            .is_err()
        {
            tracing::warn!(server = %name, "child ignored SIGTERM; killing it");
        }
    }
    // Kill whatever is left of the process group (the leader, if it is still there, and any
    // grandchildren it left behind). ProcessGroup's kill targets the whole group.
    let _ = Box::into_pin(process.kill()).await;
}

/// Kills the child if start-up fails part-way.
struct StopOnDrop<'a> {
    process: Option<Box<dyn ChildWrapper>>,
    reaper: Option<&'a ReaperLink>,
    pid: Option<u32>,
}

impl StopOnDrop<'_> {
    fn disarm(mut self) -> Box<dyn ChildWrapper> {
        self.reaper = None;
        #[allow(clippy::expect_used)]
        // Invariant: `process` is only taken here or in Drop, and disarm consumes self.
        self.process.take().expect("process present until disarmed")
    }
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.start_kill();
            if let (Some(reaper), Some(pid)) = (self.reaper, self.pid) {
                reaper.unregister(pid);
            }
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

/// Copy a child's stderr into the log line by line, tagged with the server's name. Lines are cut
/// at [`MAX_STDERR_LINE`] so a flood without newlines cannot grow memory.
async fn pump_stderr(server: Arc<str>, mut stderr: tokio::process::ChildStderr) {
    let mut buf = vec![0u8; 4096];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                emit_stderr_line(&server, &line, cut);
                line.clear();
                cut = false;
            } else if line.len() < MAX_STDERR_LINE {
                line.push(b);
            } else {
                cut = true;
            }
        }
    }
    if !line.is_empty() {
        emit_stderr_line(&server, &line, cut);
    }
}

fn emit_stderr_line(server: &str, line: &[u8], cut: bool) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    tracing::info!(target: "lastmile::child", server = %server, cut, "{text}");
}
