//! The hub: one slot per server the session may use, each starting, running, failed or stopped.
//! Starts them in parallel once the client has said what it can do, keeps the manifest current,
//! restarts crashed children with backoff, and stops them all on the way out.
//!
//! While a server is on its first start, the manifest offers what it offered last time (the
//! catalog cache), so the client's first lists never wait for the slowest child; a request for
//! such an entry waits for that child. Without a cache entry, the lists wait a short grace.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{mpsc, watch};

use super::manifest::Manifest;
use crate::config::{DefaultsSection, RestartPolicy, RestartSection, Server};
use crate::downstream::{
    AcquireError, Catalog, CatalogCache, Child, ChildContext, ChildEnv, ChildEvent, Delivery,
    EventSender, ReaperLink, SharedChildren, StartError, Upstream,
};
use crate::secrets::scrub;

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
    /// What it offered last time (scrubbed), while it is on its first start.
    cached: Mutex<Option<Catalog>>,
    cache_key: Mutex<Option<String>>,
    status: watch::Sender<SlotStatus>,
    restarts: Mutex<VecDeque<Instant>>,
    /// The key under which its child is shared with other sessions, once it was.
    shared_key: Mutex<Option<String>>,
}

impl Slot {
    /// What it is doing now.
    pub fn status(&self) -> SlotStatus {
        self.status.borrow().clone()
    }

    fn set_status(&self, status: SlotStatus) {
        self.status.send_replace(status);
    }

    /// Whether it is starting with no child yet: its entries in the manifest (if any) come from
    /// the cache, and a request for one must wait for the start. (The cached catalog itself is
    /// dropped a moment before the child is in place, so this does not look at it.)
    fn is_starting(&self) -> bool {
        self.child.load().is_none() && *self.status.borrow() == SlotStatus::Starting
    }

    /// The running child, or why there is none (for the caller's error).
    pub fn running_child(&self) -> Result<Arc<Child>, String> {
        if let Some(child) = self.child.load_full() {
            return Ok(child);
        }
        let name = &self.server.name;
        Err(match self.status() {
            SlotStatus::Failed(reason) => format!("server `{name}` is not running: {reason}"),
            SlotStatus::Restarting(reason) => {
                format!("server `{name}` is restarting after: {reason}")
            }
            SlotStatus::Starting => format!("server `{name}` is still starting"),
            SlotStatus::Stopped | SlotStatus::Running => format!("server `{name}` is not running"),
        })
    }

    fn startup_timeout(&self, defaults: &DefaultsSection) -> Duration {
        self.server
            .def
            .startup_timeout
            .unwrap_or(defaults.startup_timeout)
            .0
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
    cache: Option<CatalogCache>,
    started: AtomicBool,
    stopping: AtomicBool,
    listed: AtomicBool,
    events: Mutex<Option<EventSender>>,
    /// Serializes manifest rebuilds so a rebuild that read older slot states can never overwrite
    /// a newer one (two children finishing at once).
    rebuilding: Mutex<()>,
    /// Children shared with the other sessions of this gateway (HTTP), and this hub's id there.
    children: Option<Arc<SharedChildren>>,
    id: u64,
}

/// Why a slot's child did not start.
enum NotStarted {
    /// Its environment could not be built (a secret is missing): retrying is pointless.
    Env(String),
    /// Spawning, the handshake or the catalog failed.
    Child(StartError),
}

/// Hub ids, unique in the process (a shared child knows its users by them).
static HUB_IDS: AtomicU64 = AtomicU64::new(1);

impl Hub {
    /// A hub for these servers (already filtered to what the session may use). With `children`,
    /// a server known to be quiet shares one child with the gateway's other sessions.
    pub fn new(
        mut servers: Vec<Server>,
        defaults: DefaultsSection,
        reaper: Option<Arc<ReaperLink>>,
        env_builder: EnvBuilder,
        session: Arc<dyn Delivery>,
        cache: Option<CatalogCache>,
        children: Option<Arc<SharedChildren>>,
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
                    cached: Mutex::new(None),
                    cache_key: Mutex::new(None),
                    status: watch::channel(SlotStatus::Starting).0,
                    restarts: Mutex::new(VecDeque::new()),
                    shared_key: Mutex::new(None),
                })
                .collect(),
            defaults,
            upstream: Arc::new(Upstream::new(session)),
            manifest: ArcSwap::from_pointee(Manifest::default()),
            pending,
            reaper,
            env_builder,
            cache,
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            listed: AtomicBool::new(false),
            events: Mutex::new(None),
            rebuilding: Mutex::new(()),
            children,
            id: HUB_IDS.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The current manifest.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest.load_full()
    }

    /// The manifest in which to resolve a name or URI: `slot_of` finds the slot it belongs to.
    /// The common case — found, on a running child — costs one atomic load. Found only in the
    /// catalog cache (the child is on its first start): once that child is up or has failed
    /// (bounded by its startup_timeout). Not found while servers are still on their first
    /// start: once every one has finished (a name may belong to one still starting).
    pub async fn manifest_for(
        &self,
        slot_of: impl Fn(&Manifest) -> Option<usize>,
    ) -> Arc<Manifest> {
        let m = self.manifest();
        match slot_of(&m) {
            Some(i) if self.slots[i].is_starting() => {
                self.wait_slot(i).await;
                self.manifest()
            }
            Some(_) => m,
            None if *self.pending.borrow() == 0 => m,
            None => {
                self.wait_started().await;
                self.manifest()
            }
        }
    }

    /// As `manifest_for`, for an exposed tool or prompt `name`. A name still unknown that lies in
    /// the namespace of a server between starts (its first start failed, or it died, and a
    /// restart is due) is resolved once that server is up again or has failed again, bounded by
    /// its longest backoff plus its startup_timeout: a call made while a server restarts waits
    /// for it rather than being told its tool does not exist.
    pub async fn manifest_for_name(
        &self,
        name: &str,
        slot_of: impl Fn(&Manifest) -> Option<usize>,
    ) -> Arc<Manifest> {
        // The common case (found, on a running child) with one lookup, as in `manifest_for`.
        let m = self.manifest();
        if slot_of(&m).is_some_and(|i| !self.slots[i].is_starting()) {
            return m;
        }
        let m = self.manifest_for(&slot_of).await;
        if slot_of(&m).is_some() {
            return m;
        }
        // Read again: the server may have come up since `m` was taken.
        let Some(i) = self.down_owner(name) else {
            return self.manifest();
        };
        let slot = &self.slots[i];
        if !matches!(
            *slot.status.borrow(),
            SlotStatus::Restarting(_) | SlotStatus::Starting
        ) {
            return self.manifest();
        }
        let bound = self.policy(slot).backoff_cap + slot.startup_timeout(&self.defaults);
        let mut rx = slot.status.subscribe();
        let _ = tokio::time::timeout(
            bound,
            rx.wait_for(|s| !matches!(s, SlotStatus::Restarting(_) | SlotStatus::Starting)),
        )
        .await;
        self.manifest()
    }

    /// For an unknown `name` in the namespace of one of this session's servers that is down:
    /// that server's name and why it is down (unscrubbed), which says more than "unknown" would.
    /// Only the session's own servers are slots, so this names nothing it may not see.
    pub fn why_down(&self, name: &str) -> Option<(&str, String)> {
        let slot = &self.slots[self.down_owner(name)?];
        let why = slot
            .running_child()
            .err()
            .unwrap_or_else(|| format!("server `{}` has just restarted: retry", slot.server.name));
        Some((&slot.server.name, why))
    }

    /// The server with no running child in whose namespace (`{prefix}__`) exposed `name` lies.
    fn down_owner(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| {
            let prefix = s.server.prefix();
            !prefix.is_empty()
                && s.child.load().is_none()
                && name
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with("__"))
        })
    }

    /// Wait until slot `i` has left its first start (running, failed, restarting), at most its
    /// startup_timeout.
    async fn wait_slot(&self, i: usize) {
        let slot = &self.slots[i];
        let mut rx = slot.status.subscribe();
        let _ = tokio::time::timeout(
            slot.startup_timeout(&self.defaults),
            rx.wait_for(|s| *s != SlotStatus::Starting),
        )
        .await;
    }

    /// Wait before answering a list request: not at all when every server still on its first
    /// start has a cache entry; otherwise until they have all finished or `grace` has passed
    /// (the rest are announced with list_changed when they come up).
    pub async fn wait_for_lists(&self, grace: Duration) {
        if *self.pending.borrow() == 0 {
            return;
        }
        let uncached = self.slots.iter().any(|s| {
            *s.status.borrow() == SlotStatus::Starting
                && s.child.load().is_none()
                && s.cached.lock().is_ok_and(|c| c.is_none())
        });
        if uncached {
            let _ = tokio::time::timeout(grace, self.wait_started()).await;
        }
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
        self.load_cache();
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
        let shared = self.share_key(index);
        let previous = match slot.shared_key.lock() {
            Ok(mut k) => std::mem::replace(&mut *k, shared.clone()),
            Err(_) => None,
        };
        // Its manners changed since it was shared: its old instance is let go.
        if let (Some(children), Some(old)) = (&self.children, previous)
            && shared.as_ref() != Some(&old)
        {
            children.release(name, &old, self.id).await;
        }
        let started = match (&self.children, &shared) {
            (Some(children), Some(key)) => children
                .acquire(
                    name,
                    key,
                    self.id,
                    events,
                    Arc::clone(self.upstream.redactor()),
                    self.upstream.capabilities_for_children(),
                    |upstream, events| self.start_child(index, upstream, events),
                )
                .await
                .map_err(|e| match e {
                    AcquireError::Start(e) => e,
                    AcquireError::Catalog(e) => NotStarted::Child(e),
                }),
            _ => self
                .start_child(index, Arc::clone(&self.upstream), events)
                .await
                .map(|(child, catalog)| (Arc::new(child), catalog)),
        };
        match started {
            Ok((child, catalog)) => {
                if self.stopping.load(Ordering::SeqCst) {
                    match (&self.children, &shared) {
                        (Some(children), Some(key)) => children.release(name, key, self.id).await,
                        _ => child.stop().await,
                    }
                    return Ok(());
                }
                tracing::info!(server = %name, tools = catalog.tools.len(), prompts = catalog.prompts.len(), resources = catalog.resources.len(), "server ready");
                self.record_start(index, Ok(&catalog));
                if let Ok(mut c) = slot.catalog.lock() {
                    *c = Some(catalog.clone());
                }
                // In this order: from the moment the cached catalog is dropped, the child is in
                // place (so every rebuild, by any slot, offers the live catalog), and a request
                // waiting for this start wakes only once the manifest offers it.
                slot.child.store(Some(child));
                self.remember(index, &catalog);
                self.rebuild();
                slot.set_status(SlotStatus::Running);
                self.notify_lists_changed(None).await;
                Ok(())
            }
            Err(NotStarted::Env(reason)) => {
                tracing::error!(server = %name, "not started: {reason}");
                self.record_start(index, Err(&reason));
                self.forget_cached(index);
                slot.set_status(SlotStatus::Failed(reason));
                self.rebuild();
                Err(None)
            }
            Err(NotStarted::Child(e)) => {
                tracing::error!(server = %name, "not started: {e}");
                let retry = !matches!(e, StartError::Spawn(_));
                self.record_start(index, Err(&e.to_string()));
                self.forget_cached(index);
                // A retry is due (or the policy gives up, which says so): never a moment of
                // `Failed` that a waiting call would take for the end.
                slot.set_status(if retry {
                    SlotStatus::Restarting(e.to_string())
                } else {
                    SlotStatus::Failed(e.to_string())
                });
                self.rebuild();
                Err(retry.then(|| e.to_string()))
            }
        }
    }

    /// Build slot `index`'s environment and start its child, which sends up through `upstream`
    /// and reports to `events`.
    async fn start_child(
        &self,
        index: usize,
        upstream: Arc<Upstream>,
        events: EventSender,
    ) -> Result<(Child, Catalog), NotStarted> {
        let slot = &self.slots[index];
        // Reading secrets may be a D-Bus round trip: keep it off the async workers.
        let builder = Arc::clone(&self.env_builder);
        let server = slot.server.clone();
        let env = tokio::task::spawn_blocking(move || builder(&server))
            .await
            .unwrap_or_else(|e| Err(format!("building the environment failed: {e}")))
            .map_err(NotStarted::Env)?;
        let cx = ChildContext {
            upstream,
            events,
            reaper: self.reaper.clone(),
            max_message: self.defaults.max_message_bytes.max(1024),
        };
        Child::start(&slot.server, env, slot.startup_timeout(&self.defaults), &cx)
            .await
            .map_err(NotStarted::Child)
    }

    /// The key under which slot `index` shares its child with the gateway's other sessions, or
    /// `None` when it runs its own: no sharing here (stdio), `shared = false` in its file, or a
    /// server not known to be quiet (see [`CatalogCache::quiet`]). Children started for other
    /// client capabilities are other children.
    fn share_key(&self, index: usize) -> Option<String> {
        self.children.as_ref()?;
        let cache = self.cache.as_ref()?;
        let slot = &self.slots[index];
        let server = &slot.server;
        if !server.def.shared || !cache.quiet(&server.name, &CatalogCache::manners_key(server)) {
            return None;
        }
        // The catalog cache's key, set before any start: the same start key, computed once.
        slot.cache_key.lock().ok().and_then(|k| k.clone())
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

    /// Load the catalog cache for every slot, keyed by what the child will be started with.
    fn load_cache(&self) {
        let Some(cache) = &self.cache else { return };
        let caps = self.upstream.capabilities_for_children();
        let mut any = false;
        for slot in &self.slots {
            let key = CatalogCache::key(&slot.server, &caps);
            if let Some(catalog) = cache.load(&slot.server.name, &key)
                && let Ok(mut c) = slot.cached.lock()
            {
                tracing::debug!(server = %slot.server.name, "offering the cached catalog while the server starts");
                *c = Some(catalog);
                any = true;
            }
            if let Ok(mut k) = slot.cache_key.lock() {
                *k = Some(key);
            }
        }
        if any {
            self.rebuild();
        }
    }

    /// Write a child's catalog to the cache (scrubbed), and say when it differs from what was
    /// offered from the cache (a package that `npx -y` updated, say): the list_changed that
    /// follows a start announces it to the client.
    fn remember(&self, index: usize, catalog: &Catalog) {
        let slot = &self.slots[index];
        let Some(cache) = &self.cache else { return };
        let Some(key) = slot.cache_key.lock().ok().and_then(|k| k.clone()) else {
            return;
        };
        let Ok((clean, _)) = scrub(self.upstream.redactor(), &slot.server.name, catalog.clone())
        else {
            return;
        };
        let previous = slot.cached.lock().ok().and_then(|mut c| c.take());
        if previous.as_ref().is_some_and(|p| *p != clean) {
            tracing::info!(server = %slot.server.name, "the server offers something else than its cached catalog; the client is told the lists changed");
        }
        if previous.as_ref() == Some(&clean) {
            return;
        }
        let cache = cache.clone();
        let name = slot.server.name.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = cache.store(&name, &key, &clean) {
                tracing::warn!(server = %name, "cannot write the catalog cache: {e}");
            }
        });
    }

    /// Record a start's outcome for `lastmile servers list` (the reason scrubbed first), and
    /// after a success what its catalog says of its manners: a server that offers resource
    /// subscriptions or tasks will send notifications no call asked for.
    fn record_start(&self, index: usize, outcome: Result<&Catalog, &str>) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let server = &self.slots[index].server;
        let name = server.name.clone();
        let manners = outcome.ok().map(|catalog| {
            let caps = &catalog.capabilities;
            let unasked = caps.supports_tasks()
                || caps
                    .resources
                    .as_ref()
                    .is_some_and(|r| r.subscribe == Some(true));
            (CatalogCache::manners_key(server), unasked)
        });
        let reason = outcome
            .err()
            .map(|r| self.upstream.redactor().scrub(r).0.into_owned());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = cache.record_start(&name, reason.as_deref()) {
                tracing::warn!(server = %name, "cannot record the start: {e}");
            }
            let Some((key, unasked)) = manners else {
                return;
            };
            // In this order: it is never taken for quiet in between.
            let marked = match unasked {
                true => cache.mark_speaks_unasked(&name, &key),
                false => Ok(()),
            }
            .and_then(|()| cache.mark_started(&name, &key));
            if let Err(e) = marked {
                tracing::warn!(server = %name, "cannot record the start: {e}");
            }
        });
    }

    /// Remember (in the cache folder) that a child asks the client for things, or sends it
    /// things unasked (`SpokeUnasked`): either way it is not quiet, and from its next start it
    /// runs one instance per session.
    fn remember_manners(&self, index: usize, event: &ChildEvent) {
        let slot = &self.slots[index];
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let key = CatalogCache::manners_key(&slot.server);
        let name = slot.server.name.clone();
        let shared = slot.shared_key.lock().is_ok_and(|k| k.is_some());
        let asks = *event == ChildEvent::AskedClient;
        tokio::task::spawn_blocking(move || {
            let was_quiet = cache.quiet(&name, &key);
            let marked = if asks {
                cache.mark_asks_client(&name, &key)
            } else {
                cache.mark_speaks_unasked(&name, &key)
            };
            match marked {
                Err(e) => tracing::warn!(server = %name, "cannot remember its manners: {e}"),
                Ok(()) if was_quiet && shared => tracing::warn!(
                    server = %name,
                    "it sent the client something no call asked for while shared by several sessions: refused; from its next start it runs one instance per session"
                ),
                Ok(()) => {}
            }
        });
    }

    /// Whether a client loses nothing on 2026-07-28, which has no requests from
    /// server to client: only when every server of this session is known, from earlier
    /// sessions under the same key, never to have asked the client for anything. An unknown
    /// server counts as one that asks.
    pub fn lossless_on_2026(&self) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        self.slots.iter().all(|slot| {
            let key = CatalogCache::manners_key(&slot.server);
            cache.asks_client(&slot.server.name, &key) == Some(false)
        })
    }

    /// A server that failed its first start no longer offers its cached catalog.
    fn forget_cached(&self, index: usize) {
        if let Ok(mut c) = self.slots[index].cached.lock() {
            *c = None;
        }
    }

    fn rebuild(&self) {
        let _serial = self.rebuilding.lock();
        // Running children offer their live catalog; children on their first start, their
        // cached one.
        let catalogs: Vec<(usize, Catalog)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let source = if s.child.load().is_some() {
                    &s.catalog
                } else if *s.status.borrow() == SlotStatus::Starting {
                    &s.cached
                } else {
                    return None;
                };
                source.lock().ok().and_then(|c| c.clone()).map(|c| (i, c))
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
            if matches!(event, ChildEvent::AskedClient | ChildEvent::SpokeUnasked) {
                self.remember_manners(index, &event);
                continue;
            }
            let Some(child) = slot.child.load_full() else {
                continue;
            };
            match child.catalog().await {
                Ok(catalog) => {
                    self.remember(index, &catalog);
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
            let child = slot.child.swap(None);
            let shared = slot.shared_key.lock().ok().and_then(|k| k.clone());
            match (&self.children, shared) {
                // A shared child stops only when its last session lets go.
                (Some(children), Some(key)) => {
                    children.release(&slot.server.name, &key, self.id).await
                }
                _ => {
                    if let Some(child) = child {
                        child.stop().await;
                    }
                }
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
