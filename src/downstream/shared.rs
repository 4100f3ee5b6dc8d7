//! Children shared between the sessions of one gateway (HTTP: one session per identity or MCP
//! session). A server known to send nothing that no call asked for runs once for every session
//! whose tier may use it, started with the first session that needs it and stopped when the last
//! one lets go.
//!
//! Sharing is safe only because everything such a child produces for a call travels with that
//! call: raw answers and progress by the link's per-call ids, typed answers by rmcp's request
//! ids, typed progress by the caller's own [`Upstream`] in the child's progress map. What it
//! sends unasked has no caller; its [`Upstream::shared`] refuses or drops it and the sessions
//! remember, so the server runs one instance per session from then on.
//!
//! Each session keeps its own supervision (status, backoff, manifest): a shared child's exit and
//! list changes reach every session that uses it, and the first to restart it starts the one
//! child the others then find.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rmcp::model::ClientCapabilities;
use tokio::sync::mpsc;

use super::child::{Catalog, Child, ChildEvent, EventSender, StartError};
use super::upstream::Upstream;
use crate::secrets::SharedRedactor;

/// How many events of one shared child may wait for the fan-out.
const EVENTS: usize = 64;

/// The shared children of one gateway, by server and start key.
#[derive(Default)]
pub struct SharedChildren {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    next_generation: AtomicU64,
}

/// One shared server (under one start key): its child, if running, and who uses it.
#[derive(Default)]
struct Entry {
    /// Held while a child is being started, so that only one is.
    starting: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The running child and its generation.
    live: Option<(u64, Arc<Child>)>,
    /// Each using session's id and where its hub takes the child's events.
    users: HashMap<u64, EventSender>,
}

/// Why a shared child could not be had.
#[derive(Debug)]
pub enum AcquireError<E> {
    /// Starting it failed.
    Start(E),
    /// The running child could not list its catalog.
    Catalog(StartError),
}

impl SharedChildren {
    /// The running child of `server` under `key` for session `user`, started with `start` when
    /// none runs (given the upstream and event sender the child must use). From now until [`SharedChildren::release`], `events` receives the child's
    /// events (a restarted child's too). The catalog is the child's as of now.
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    pub async fn acquire<E, F, Fut>(
        &self,
        server: &str,
        key: &str,
        user: u64,
        events: EventSender,
        redactor: Arc<SharedRedactor>,
        caps: ClientCapabilities,
        start: F,
    ) -> Result<(Arc<Child>, Catalog), AcquireError<E>>
    where
        F: FnOnce(Arc<Upstream>, EventSender) -> Fut,
        Fut: Future<Output = Result<(Child, Catalog), E>>,
    {
        let entry = self.entry(server, key);
        let _starting = entry.starting.lock().await;
        let live = {
            let mut state = entry.state.lock().unwrap_or_else(|p| p.into_inner());
            state.users.insert(user, events);
            state.live.as_ref().map(|(_, child)| Arc::clone(child))
        };
        if let Some(child) = live {
            tracing::debug!(server, "using the running shared instance");
            return match child.catalog().await {
                Ok(catalog) => Ok((child, catalog)),
                Err(e) => Err(AcquireError::Catalog(e)),
            };
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(EVENTS);
        let upstream = Arc::new(Upstream::shared(server, redactor, caps));
        let (child, catalog) = start(upstream, tx).await.map_err(AcquireError::Start)?;
        let child = Arc::new(child);
        let orphan = {
            let mut state = entry.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.users.is_empty() {
                true
            } else {
                state.live = Some((generation, Arc::clone(&child)));
                false
            }
        };
        if orphan {
            // Every session let go while it started: nobody is left to use it.
            child.stop().await;
        } else {
            tracing::info!(server, "one instance serves every session that may use it");
            tokio::spawn(fan_out(Arc::clone(&entry), generation, rx));
        }
        Ok((child, catalog))
    }

    /// Session `user` no longer uses `server` under `key`; the last one to let go stops it.
    pub async fn release(&self, server: &str, key: &str, user: u64) {
        let id = entry_id(server, key);
        let Some(entry) = self.entries.lock().ok().and_then(|e| e.get(&id).cloned()) else {
            return;
        };
        let last = {
            let mut state = entry.state.lock().unwrap_or_else(|p| p.into_inner());
            state.users.remove(&user);
            if state.users.is_empty() {
                state.live.take()
            } else {
                None
            }
        };
        if let Some((_, child)) = last {
            tracing::info!(server, "the last session using it has ended; stopping it");
            child.stop().await;
        }
    }

    fn entry(&self, server: &str, key: &str) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(entries.entry(entry_id(server, key)).or_default())
    }
}

fn entry_id(server: &str, key: &str) -> String {
    format!("{server}\0{key}")
}

/// Hand one child's events to every session using it. Its exit also takes it out of the entry,
/// so the next session to restart it starts a new one. Events of a child that was replaced or
/// let go are dropped.
async fn fan_out(
    entry: Arc<Entry>,
    generation: u64,
    mut rx: mpsc::Receiver<(Arc<str>, ChildEvent)>,
) {
    while let Some((server, event)) = rx.recv().await {
        let users: Vec<EventSender> = {
            let mut state = entry.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.live.as_ref().map(|(g, _)| *g) != Some(generation) {
                return;
            }
            if matches!(event, ChildEvent::Exited(_)) {
                state.live = None;
            }
            state.users.values().cloned().collect()
        };
        let exited = matches!(event, ChildEvent::Exited(_));
        for tx in users {
            if exited {
                // Every session must learn of the exit to restart or give up.
                let _ = tx.send((Arc::clone(&server), event.clone())).await;
            } else {
                // A full queue already holds a pending refresh: a duplicate loses nothing.
                let _ = tx.try_send((Arc::clone(&server), event.clone()));
            }
        }
        if exited {
            return;
        }
    }
}
