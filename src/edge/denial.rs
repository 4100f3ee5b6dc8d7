//! Denial events: what the edge turned away, as structured fields for the JSON log and as rows
//! for the audit database's `edge_events` table, collapsed under a flood.
//!
//! The first denial of a client by a check is emitted at once. Further denials of the same client
//! by the same check within the window are only counted; when the window has passed (on the next
//! denial or on [`DenialAggregator::flush`]) one summary carries the count. The number of tracked
//! (client, check) pairs is capped; past the cap, new clients share one overflow slot per check.
//! So a scanner costs at most a few log lines and rows per window, however fast it sends.
//!
//! Request data in an event (path, user agent) is cut to a few hundred bytes, the query string is
//! dropped (it can carry a token), and anything shaped like a JWT is masked.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use super::scanner::Clock;
use crate::audit::{EdgeEvent, mask_jwt_like, now_ms};

/// Longest path or user agent kept in an event, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;

/// How many audit rows may wait for [`DenialAggregator::take_audit_events`]; more are dropped
/// (and counted in the log).
pub const MAX_PENDING_AUDIT: usize = 4096;

/// Which layer of the edge refused the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialCheck {
    /// The scanner detector's path check.
    Path,
    /// The scanner detector's user-agent check.
    UserAgent,
    /// The scanner detector's velocity check.
    Velocity,
    /// The signed proxy identity.
    ProxyIdentity,
    /// The bearer credential (extractor chain or validator).
    Credential,
    /// The `Host` or `Origin` header (DNS rebinding, cross-site requests).
    Origin,
}

impl DenialCheck {
    /// The name stored in `edge_events.check_name`.
    pub fn as_str(self) -> &'static str {
        match self {
            DenialCheck::Path => "path",
            DenialCheck::UserAgent => "user_agent",
            DenialCheck::Velocity => "velocity",
            DenialCheck::ProxyIdentity => "proxy_identity",
            DenialCheck::Credential => "auth",
            DenialCheck::Origin => "origin",
        }
    }
}

impl From<super::scanner::Check> for DenialCheck {
    fn from(c: super::scanner::Check) -> Self {
        match c {
            super::scanner::Check::Path => DenialCheck::Path,
            super::scanner::Check::UserAgent => DenialCheck::UserAgent,
            super::scanner::Check::Velocity => DenialCheck::Velocity,
        }
    }
}

/// One denied request, borrowed from the request: nothing is copied unless it is emitted.
#[derive(Clone, Copy)]
pub struct DenialRef<'a> {
    /// Which layer refused it.
    pub check: DenialCheck,
    /// The named reason's code (`scanner_agent`, `bad_signature`, …).
    pub code: &'static str,
    /// The reason in words (never request data beyond table entries).
    pub reason: &'a dyn std::fmt::Display,
    /// The HTTP method.
    pub method: &'a str,
    /// The path (a query string is dropped).
    pub path: &'a str,
    /// The `User-Agent` header's bytes.
    pub user_agent: Option<&'a [u8]>,
    /// The peer address.
    pub client: IpAddr,
    /// The verified identity's subject, if known.
    pub identity: Option<&'a str>,
    /// The client's rate when a velocity check fired.
    pub requests_per_minute: Option<u32>,
}

/// A denial as emitted: owned, cut and masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Which layer refused it.
    pub check: DenialCheck,
    /// The named reason's code.
    pub code: &'static str,
    /// The reason in words.
    pub reason: String,
    /// The HTTP method.
    pub method: String,
    /// The path, without query string, cut, JWTs masked.
    pub path: String,
    /// The user agent, cut, JWTs masked, invalid UTF-8 replaced.
    pub user_agent: Option<String>,
    /// The peer address.
    pub client: IpAddr,
    /// The verified identity's subject, if known.
    pub identity: Option<String>,
    /// The client's rate when a velocity check fired.
    pub requests_per_minute: Option<u32>,
    /// Unix ms of the first denial this event stands for.
    pub first_at_ms: i64,
    /// How many denials it stands for (1 for an immediate event).
    pub count: u64,
}

fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_FIELD_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let (masked, _) = mask_jwt_like(&text[..end]);
    masked.into_owned()
}

impl Denial {
    fn from_ref(d: &DenialRef<'_>, at_ms: i64) -> Self {
        let path = d.path.split(['?', '#']).next().unwrap_or_default();
        Denial {
            check: d.check,
            code: d.code,
            reason: d.reason.to_string(),
            method: cut(d.method),
            path: cut(path),
            user_agent: d.user_agent.map(|ua| cut(&String::from_utf8_lossy(ua))),
            client: d.client,
            identity: d.identity.map(cut),
            requests_per_minute: d.requests_per_minute,
            first_at_ms: at_ms,
            count: 1,
        }
    }

    /// The `edge_events` row; its `count` is how many denials it stands for.
    pub fn to_edge_event(&self) -> EdgeEvent {
        EdgeEvent {
            at_ms: self.first_at_ms,
            check: self.check.as_str().into(),
            reason: format!("{}: {}", self.code, self.reason),
            method: self.method.clone(),
            path: self.path.clone(),
            user_agent: self.user_agent.clone(),
            remote_addr: Some(self.client.to_string()),
            requests_per_minute: self.requests_per_minute,
            count: u32::try_from(self.count).unwrap_or(u32::MAX),
        }
    }

    fn log(&self, summary: bool) {
        tracing::warn!(
            target: "lastmile::edge::denial",
            check = self.check.as_str(),
            code = self.code,
            reason = %self.reason,
            method = %self.method,
            path = %self.path,
            user_agent = self.user_agent.as_deref(),
            client = %self.client,
            identity = self.identity.as_deref(),
            requests_per_minute = self.requests_per_minute,
            count = self.count,
            summary,
            "request refused at the edge"
        );
    }
}

#[derive(Debug)]
struct Slot {
    window_start_ms: u64,
    /// The first denial of the window, kept for its summary.
    first: Denial,
    /// Denials counted but not emitted in this window.
    suppressed: u64,
    last_rpm: Option<u32>,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<(IpAddr, DenialCheck), Slot>,
    pending: Vec<EdgeEvent>,
    dropped: u64,
    /// When a full table was last swept; sweeping is at most once a second, so rotating
    /// addresses cannot make every denial walk the whole table.
    last_sweep_ms: Option<u64>,
}

/// How often a full table may be swept for ended windows.
const SWEEP_EVERY_MS: u64 = 1_000;

/// Collapses floods of denials into one event per (client, check) per window.
pub struct DenialAggregator {
    window_ms: u64,
    max_slots: usize,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for DenialAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenialAggregator")
            .field("window_ms", &self.window_ms)
            .field("max_slots", &self.max_slots)
            .finish_non_exhaustive()
    }
}

/// The address the overflow slots are keyed by.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl DenialAggregator {
    /// Collapse within `window_ms`, tracking at most `max_slots` (client, check) pairs.
    pub fn new(window_ms: u64, max_slots: usize, clock: Arc<dyn Clock>) -> Self {
        DenialAggregator {
            window_ms: window_ms.max(1),
            max_slots: max_slots.max(1),
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is counters and queued rows; a panic elsewhere leaves them usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record one denial. Returns the event if it was emitted now (the first of its window).
    pub fn observe(&self, d: &DenialRef<'_>) -> Option<Denial> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let mut key = (d.client, d.check);
        if !st.slots.contains_key(&key) && st.slots.len() >= self.max_slots {
            if st
                .last_sweep_ms
                .is_none_or(|at| now.saturating_sub(at) >= SWEEP_EVERY_MS)
            {
                st.last_sweep_ms = Some(now);
                self.expire(&mut st, now, false);
            }
            if st.slots.len() >= self.max_slots {
                key = (OVERFLOW, d.check);
            }
        }
        if let Some(slot) = st.slots.get_mut(&key) {
            if now < slot.window_start_ms + self.window_ms {
                slot.suppressed += 1;
                if d.requests_per_minute.is_some() {
                    slot.last_rpm = d.requests_per_minute;
                }
                return None;
            }
            if let Some(slot) = st.slots.remove(&key) {
                self.summarize(&mut st, slot);
            }
        }
        let denial = Denial::from_ref(d, now_ms());
        denial.log(false);
        Self::queue(&mut st, denial.to_edge_event());
        st.slots.insert(
            key,
            Slot {
                window_start_ms: now,
                first: denial.clone(),
                suppressed: 0,
                last_rpm: d.requests_per_minute,
            },
        );
        Some(denial)
    }

    /// Emit the summaries of every window that has ended; call it now and then (every few seconds)
    /// so a flood that stopped is still reported.
    pub fn flush(&self) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        self.expire(&mut st, now, false);
    }

    /// Emit every pending summary, ended or not (at shutdown).
    pub fn flush_all(&self) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        self.expire(&mut st, now, true);
    }

    /// The audit rows waiting to be written, oldest first.
    pub fn take_audit_events(&self) -> Vec<EdgeEvent> {
        let mut st = self.lock();
        if st.dropped > 0 {
            tracing::warn!(
                target: "lastmile::edge::denial",
                dropped = st.dropped,
                "edge denial rows dropped: the audit writer did not take them in time"
            );
            st.dropped = 0;
        }
        std::mem::take(&mut st.pending)
    }

    fn expire(&self, st: &mut State, now: u64, all: bool) {
        let ended: Vec<(IpAddr, DenialCheck)> = st
            .slots
            .iter()
            .filter(|(_, s)| all || now >= s.window_start_ms + self.window_ms)
            .map(|(k, _)| *k)
            .collect();
        for k in ended {
            if let Some(slot) = st.slots.remove(&k) {
                self.summarize(st, slot);
            }
        }
    }

    fn summarize(&self, st: &mut State, slot: Slot) {
        if slot.suppressed == 0 {
            return;
        }
        let mut summary = slot.first;
        summary.count = slot.suppressed;
        summary.requests_per_minute = slot.last_rpm.or(summary.requests_per_minute);
        summary.log(true);
        Self::queue(st, summary.to_edge_event());
    }

    fn queue(st: &mut State, event: EdgeEvent) {
        if st.pending.len() >= MAX_PENDING_AUDIT {
            st.dropped += 1;
        } else {
            st.pending.push(event);
        }
    }
}
