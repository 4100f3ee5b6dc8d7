//! The hub: one slot per server the session may use, each starting, running, failed or stopped;
//! starts them in parallel, keeps the manifest current, stops them all on the way out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use rmcp::service::{Peer, RoleServer};
use tokio::sync::{mpsc, watch};

use super::manifest::Manifest;
use crate::config::{DefaultsSection, Server};
use crate::downstream::{Catalog, Child, ChildEnv, ChildEvent, ReaperLink};

/// Builds a child's environment (base, file `env`, secrets); an error keeps the server stopped.
pub type EnvBuilder = Arc<dyn Fn(&Server) -> Result<ChildEnv, String> + Send + Sync>;

/// What a slot's server is doing.
#[derive(Debug, Clone)]
pub enum SlotStatus {
    /// Being spawned or in its handshake.
    Starting,
    /// Serving.
    Running,
    /// Could not start, or died; the reason.
    Failed(String),
    /// Stopped on shutdown.
    Stopped,
}

/// One server's place in the hub.
pub struct Slot {
    /// Its definition.
    pub server: Server,
    /// The running child, if any.
    pub child: ArcSwapOption<Child>,
    catalog: Mutex<Option<Catalog>>,
    status: Mutex<SlotStatus>,
}

impl Slot {
    /// What it is doing now.
    pub fn status(&self) -> SlotStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or(SlotStatus::Stopped)
    }

    fn set_status(&self, status: SlotStatus) {
        if let Ok(mut s) = self.status.lock() {
            *s = status;
        }
    }

    /// How long one call may take.
    pub fn call_timeout(&self, defaults: &DefaultsSection) -> Duration {
        self.server
            .def
            .call_timeout
            .unwrap_or(defaults.call_timeout)
            .0
    }
}

/// All of a session's servers.
pub struct Hub {
    /// One per server, sorted by name.
    pub slots: Vec<Slot>,
    /// Profile defaults.
    pub defaults: DefaultsSection,
    manifest: ArcSwap<Manifest>,
    pending: watch::Sender<usize>,
    reaper: Option<ReaperLink>,
    env_builder: EnvBuilder,
    upstream: OnceLock<Peer<RoleServer>>,
    listed: AtomicBool,
}

impl Hub {
    /// A hub for these servers (already filtered to what the session may use).
    pub fn new(
        mut servers: Vec<Server>,
        defaults: DefaultsSection,
        reaper: Option<ReaperLink>,
        env_builder: EnvBuilder,
    ) -> Arc<Self> {
        servers.retain(|s| !s.def.disabled);
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        let (pending, _) = watch::channel(servers.len());
        Arc::new(Hub {
            slots: servers
                .into_iter()
                .map(|server| Slot {
                    server,
                    child: ArcSwapOption::empty(),
                    catalog: Mutex::new(None),
                    status: Mutex::new(SlotStatus::Starting),
                })
                .collect(),
            defaults,
            manifest: ArcSwap::from_pointee(Manifest::default()),
            pending,
            reaper,
            env_builder,
            upstream: OnceLock::new(),
            listed: AtomicBool::new(false),
        })
    }

    /// The current manifest.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest.load_full()
    }

    /// The current manifest if `found` holds for it; otherwise the manifest once every server
    /// has finished starting (a name may belong to one still starting). The common case — the
    /// name is there — costs one atomic load.
    pub async fn manifest_with(&self, found: impl Fn(&Manifest) -> bool) -> Arc<Manifest> {
        let m = self.manifest();
        if found(&m) || *self.pending.borrow() == 0 {
            return m;
        }
        self.wait_started().await;
        self.manifest()
    }

    /// Remember the client's peer, for list_changed notifications.
    pub fn set_upstream(&self, peer: &Peer<RoleServer>) {
        let _ = self.upstream.set(peer.clone());
    }

    /// Start every server in parallel. Returns at once.
    pub fn start_all(self: &Arc<Self>) {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(Arc::clone(self).handle_events(rx));
        for index in 0..self.slots.len() {
            let hub = Arc::clone(self);
            let tx = tx.clone();
            tokio::spawn(async move {
                hub.start_slot(index, tx).await;
                hub.pending.send_modify(|n| *n = n.saturating_sub(1));
            });
        }
    }

    async fn start_slot(
        self: &Arc<Self>,
        index: usize,
        events: mpsc::Sender<(Arc<str>, ChildEvent)>,
    ) {
        let slot = &self.slots[index];
        let name = &slot.server.name;
        let env = match (self.env_builder)(&slot.server) {
            Ok(env) => env,
            Err(reason) => {
                tracing::error!(server = %name, "not started: {reason}");
                slot.set_status(SlotStatus::Failed(reason));
                return;
            }
        };
        let timeout = slot
            .server
            .def
            .startup_timeout
            .unwrap_or(self.defaults.startup_timeout)
            .0;
        match Child::start(&slot.server, env, timeout, self.reaper.as_ref(), events).await {
            Ok((child, catalog)) => {
                tracing::info!(server = %name, tools = catalog.tools.len(), prompts = catalog.prompts.len(), resources = catalog.resources.len(), "server ready");
                if let Ok(mut c) = slot.catalog.lock() {
                    *c = Some(catalog);
                }
                slot.child.store(Some(Arc::new(child)));
                slot.set_status(SlotStatus::Running);
                self.rebuild();
                self.notify_all_lists_changed().await;
            }
            Err(e) => {
                tracing::error!(server = %name, "not started: {e}");
                slot.set_status(SlotStatus::Failed(e.to_string()));
            }
        }
    }

    /// Wait until no server is still starting (each start is bounded by its startup_timeout).
    pub async fn wait_started(&self) {
        let mut rx = self.pending.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Note that the client has seen the lists, so later changes are worth a notification.
    pub fn mark_listed(&self) {
        self.listed.store(true, Ordering::Relaxed);
    }

    fn rebuild(&self) {
        let catalogs: Vec<(usize, Catalog)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.child.load().is_some())
            .filter_map(|(i, s)| {
                s.catalog
                    .lock()
                    .ok()
                    .and_then(|c| c.clone())
                    .map(|c| (i, c))
            })
            .collect();
        let manifest = Manifest::build(
            catalogs
                .iter()
                .map(|(i, c)| (*i, &self.slots[*i].server, c)),
        );
        self.manifest.store(Arc::new(manifest));
    }

    async fn notify_all_lists_changed(&self) {
        if !self.listed.load(Ordering::Relaxed) {
            return;
        }
        if let Some(peer) = self.upstream.get() {
            let _ = peer.notify_tool_list_changed().await;
            let _ = peer.notify_prompt_list_changed().await;
            let _ = peer.notify_resource_list_changed().await;
        }
    }

    async fn handle_events(self: Arc<Self>, mut rx: mpsc::Receiver<(Arc<str>, ChildEvent)>) {
        while let Some((server, event)) = rx.recv().await {
            let Some(slot) = self.slots.iter().find(|s| *s.server.name == *server) else {
                continue;
            };
            let Some(child) = slot.child.load_full() else {
                continue;
            };
            match child.catalog().await {
                Ok(catalog) => {
                    if let Ok(mut c) = slot.catalog.lock() {
                        *c = Some(catalog);
                    }
                    self.rebuild();
                }
                Err(e) => {
                    tracing::warn!(server = %server, "refreshing the catalog after {event:?} failed: {e}");
                    continue;
                }
            }
            if let Some(peer) = self.upstream.get() {
                let _ = match event {
                    ChildEvent::ToolsChanged => peer.notify_tool_list_changed().await,
                    ChildEvent::PromptsChanged => peer.notify_prompt_list_changed().await,
                    ChildEvent::ResourcesChanged => peer.notify_resource_list_changed().await,
                };
            }
        }
    }

    /// Stop every child in parallel (stdin closed, SIGTERM, SIGKILL; see `Child::stop`).
    pub async fn stop_all(&self) {
        let stops = self.slots.iter().map(|slot| async move {
            if let Some(child) = slot.child.swap(None) {
                child.stop(self.reaper.as_ref()).await;
            }
            slot.set_status(SlotStatus::Stopped);
        });
        futures::future::join_all(stops).await;
    }
}
