//! The hub: one slot per server the session may use, each starting, running, failed or stopped.
//! Starts them in parallel once the client has said what it can do, keeps the manifest current,
//! restarts crashed children with backoff, and stops them all on the way out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{mpsc, watch};

use super::manifest::Manifest;
use crate::config::{DefaultsSection, RestartPolicy, RestartSection, Server};
use crate::downstream::{
    Catalog, Child, ChildContext, ChildEnv, ChildEvent, Delivery, EventSender, ReaperLink,
    StartError, Upstream,
};

/// Builds a child's environment (base, file `env`, secrets); an error keeps the server stopped.
pub type EnvBuilder = Arc<dyn Fn(&Server) -> Result<ChildEnv, String> + Send + Sync>;

/// What a slot's server is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotStatus {
    /// Being spawned or in its handshake (first start or a restart).
    Starting,
    /// Serving.
    Running,
    /// Waiting to be restarted after it died; the reason.
    Restarting(String),
    /// Could not start, or gave up restarting; the reason.
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
    restarts: Mutex<VecDeque<Instant>>,
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
    /// The client, as the children see it.
    pub upstream: Arc<Upstream>,
    manifest: ArcSwap<Manifest>,
    pending: watch::Sender<usize>,
    reaper: Option<Arc<ReaperLink>>,
    env_builder: EnvBuilder,
    started: AtomicBool,
    stopping: AtomicBool,
    listed: AtomicBool,
    events: Mutex<Option<EventSender>>,
    /// Serializes manifest rebuilds so a rebuild that read older slot states can never overwrite
    /// a newer one (two children finishing at once).
    rebuilding: Mutex<()>,
}

impl Hub {
    /// A hub for these servers (already filtered to what the session may use).
    pub fn new(
        mut servers: Vec<Server>,
        defaults: DefaultsSection,
        reaper: Option<ReaperLink>,
        env_builder: EnvBuilder,
        session: Arc<dyn Delivery>,
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
                    restarts: Mutex::new(VecDeque::new()),
                })
                .collect(),
            defaults,
            upstream: Arc::new(Upstream::new(session)),
            manifest: ArcSwap::from_pointee(Manifest::default()),
            pending,
            reaper: reaper.map(Arc::new),
            env_builder,
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            listed: AtomicBool::new(false),
            events: Mutex::new(None),
            rebuilding: Mutex::new(()),
        })
    }

    /// The current manifest.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest.load_full()
    }

    /// The current manifest if `found` holds for it; otherwise the manifest once every server
    /// has finished its first start (a name may belong to one still starting). The common case —
    /// the name is there — costs one atomic load.
    pub async fn manifest_with(&self, found: impl Fn(&Manifest) -> bool) -> Arc<Manifest> {
        let m = self.manifest();
        if found(&m) || *self.pending.borrow() == 0 {
            return m;
        }
        self.wait_started().await;
        self.manifest()
    }

    /// Start every server in parallel, once: as soon as the client has declared its
    /// capabilities (which the children inherit). Returns at once.
    pub fn ensure_started(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let (tx, rx) = mpsc::channel(64);
        if let Ok(mut events) = self.events.lock() {
            *events = Some(tx.clone());
        }
        tokio::spawn(Arc::clone(self).handle_events(rx));
        for index in 0..self.slots.len() {
            let hub = Arc::clone(self);
            let tx = tx.clone();
            tokio::spawn(async move {
                let first = hub.start_slot(index, tx.clone()).await;
                hub.pending.send_modify(|n| *n = n.saturating_sub(1));
                if let Err(reason) = first {
                    hub.restart_later(index, reason, tx);
                }
            });
        }
    }

    fn policy(&self, slot: &Slot) -> RestartPolicy {
        RestartSection::resolve(slot.server.def.restart.as_ref(), &self.defaults.restart)
    }

    /// One start attempt. `Err` carries the reason, or `None` when retrying is pointless (the
    /// command does not exist, a secret is missing).
    async fn start_slot(
        self: &Arc<Self>,
        index: usize,
        events: EventSender,
    ) -> Result<(), Option<String>> {
        let slot = &self.slots[index];
        let name = &slot.server.name;
        slot.set_status(SlotStatus::Starting);
        // Reading secrets may be a D-Bus round trip: keep it off the async workers.
        let builder = Arc::clone(&self.env_builder);
        let server = slot.server.clone();
        let built = tokio::task::spawn_blocking(move || builder(&server))
            .await
            .unwrap_or_else(|e| Err(format!("building the environment failed: {e}")));
        let env = match built {
            Ok(env) => env,
            Err(reason) => {
                tracing::error!(server = %name, "not started: {reason}");
                slot.set_status(SlotStatus::Failed(reason));
                return Err(None);
            }
        };
        let timeout = slot
            .server
            .def
            .startup_timeout
            .unwrap_or(self.defaults.startup_timeout)
            .0;
        let cx = ChildContext {
            upstream: Arc::clone(&self.upstream),
            events,
            reaper: self.reaper.clone(),
        };
        match Child::start(&slot.server, env, timeout, &cx).await {
            Ok((child, catalog)) => {
                if self.stopping.load(Ordering::SeqCst) {
                    child.stop().await;
                    return Ok(());
                }
                tracing::info!(server = %name, tools = catalog.tools.len(), prompts = catalog.prompts.len(), resources = catalog.resources.len(), "server ready");
                if let Ok(mut c) = slot.catalog.lock() {
                    *c = Some(catalog);
                }
                slot.child.store(Some(Arc::new(child)));
                slot.set_status(SlotStatus::Running);
                self.rebuild();
                self.notify_lists_changed(None).await;
                Ok(())
            }
            Err(e) => {
                tracing::error!(server = %name, "not started: {e}");
                let retry = !matches!(e, StartError::Spawn(_));
                slot.set_status(SlotStatus::Failed(e.to_string()));
                Err(retry.then(|| e.to_string()))
            }
        }
    }

    /// Schedule restarts with exponential backoff and jitter until one succeeds or the policy
    /// gives up (`max_tries` within `window`).
    fn restart_later(self: &Arc<Self>, index: usize, reason: Option<String>, events: EventSender) {
        let Some(reason) = reason else { return };
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            let slot = &hub.slots[index];
            let policy = hub.policy(slot);
            let mut last = reason;
            loop {
                if hub.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let attempt = {
                    let Ok(mut tries) = slot.restarts.lock() else {
                        return;
                    };
                    let now = Instant::now();
                    while tries
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > policy.window)
                    {
                        tries.pop_front();
                    }
                    if tries.len() as u32 >= policy.max_tries {
                        let why = format!(
                            "gave up after {} restart(s) within {:?}; last failure: {last}",
                            tries.len(),
                            policy.window
                        );
                        tracing::error!(server = %slot.server.name, "{why}");
                        slot.set_status(SlotStatus::Failed(why));
                        return;
                    }
                    tries.push_back(now);
                    tries.len() as u32 - 1
                };
                let delay = policy.delay(attempt, jitter());
                tracing::warn!(server = %slot.server.name, ?delay, attempt = attempt + 1, "restarting after: {last}");
                slot.set_status(SlotStatus::Restarting(last.clone()));
                tokio::time::sleep(delay).await;
                if hub.stopping.load(Ordering::SeqCst) {
                    return;
                }
                match hub.start_slot(index, events.clone()).await {
                    Ok(()) => return,
                    Err(None) => return,
                    Err(Some(reason)) => last = reason,
                }
            }
        });
    }

    /// Wait until no server is still on its first start (each is bounded by its startup_timeout).
    pub async fn wait_started(&self) {
        let mut rx = self.pending.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Note that the client has seen the lists, so later changes are worth a notification.
    pub fn mark_listed(&self) {
        self.listed.store(true, Ordering::Relaxed);
    }

    fn rebuild(&self) {
        let _serial = self.rebuilding.lock();
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
        // Catalogs are scrubbed here, on every rebuild: a child's names, descriptions, schemas
        // and URIs reach the client only through the redactor.
        let manifest = Manifest::build(
            catalogs
                .iter()
                .map(|(i, c)| (*i, &self.slots[*i].server, c)),
            self.upstream.redactor(),
        );
        self.manifest.store(Arc::new(manifest));
    }

    /// Tell the client its lists changed (all three, or one), if it has listed them before.
    async fn notify_lists_changed(&self, only: Option<&ChildEvent>) {
        if !self.listed.load(Ordering::Relaxed) {
            return;
        }
        let Some(peer) = self.upstream.peer() else {
            return;
        };
        let all = only.is_none();
        if all || only == Some(&ChildEvent::ToolsChanged) {
            let _ = peer.notify_tool_list_changed().await;
        }
        if all || only == Some(&ChildEvent::PromptsChanged) {
            let _ = peer.notify_prompt_list_changed().await;
        }
        if all || only == Some(&ChildEvent::ResourcesChanged) {
            let _ = peer.notify_resource_list_changed().await;
        }
    }

    async fn handle_events(self: Arc<Self>, mut rx: mpsc::Receiver<(Arc<str>, ChildEvent)>) {
        while let Some((server, event)) = rx.recv().await {
            let Some(index) = self.slots.iter().position(|s| *s.server.name == *server) else {
                continue;
            };
            let slot = &self.slots[index];
            if let ChildEvent::Exited(reason) = &event {
                if self.stopping.load(Ordering::SeqCst) {
                    continue;
                }
                slot.child.store(None);
                slot.set_status(SlotStatus::Restarting(reason.clone()));
                self.rebuild();
                self.notify_lists_changed(None).await;
                let tx = self.events.lock().ok().and_then(|e| e.clone());
                if let Some(tx) = tx {
                    self.restart_later(index, Some(format!("the child {reason}")), tx);
                }
                continue;
            }
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
            self.notify_lists_changed(Some(&event)).await;
        }
    }

    /// Stop every child in parallel (stdin closed, SIGTERM, SIGKILL; see `Child::stop`).
    pub async fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let stops = self.slots.iter().map(|slot| async move {
            if let Some(child) = slot.child.swap(None) {
                child.stop().await;
            }
            slot.set_status(SlotStatus::Stopped);
        });
        futures::future::join_all(stops).await;
    }
}

/// A number in [0, 1) for backoff jitter, from the standard library's per-process random keys.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
