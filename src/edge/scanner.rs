//! Scanner detection, inline, before any handler sees a request: three checks in this order.
//!
//! 1. **Path**: the last segment's extension against a table of scanner extensions (`php`, `env`,
//!    `bak`, …), then the whole path against known-bad paths (`/.env`, `/wp-admin`, …), ASCII case
//!    ignored, and again percent-decoded when the path holds a `%`.
//! 2. **User agent**: named scanner tools anywhere in the agent; then, unless the agent is a known
//!    MCP client (`node`, `undici`, `python-httpx/*`, …), an empty or very short agent, and a
//!    generic HTTP library's default agent (shorter than that library's length threshold).
//! 3. **Velocity**: requests per minute per client key — the address (IPv6 by its /64) and, once
//!    known, the identity — against a burst ceiling; loopback clients have their own ceiling.
//!
//! Every table and threshold comes from `[http.scanner]` ([`ScannerSection`]). A hit is a
//! [`Verdict`] naming the check and what matched: 403, or 429 with `Retry-After` for velocity.
//!
//! The clean path allocates nothing: extensions are packed into integers and binary-searched, the
//! path and agent tables are Aho-Corasick automata, and the velocity state is a sharded map of
//! fixed-size counters keyed by a `Copy` key.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use foldhash::fast::RandomState;
use http::StatusCode;

use crate::config::{ScannerSection, Tier};

/// A monotonic clock in milliseconds, injectable so tests need no sleeps.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since an arbitrary fixed start.
    fn now_ms(&self) -> u64;
}

/// The real monotonic clock.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    #[cfg(target_os = "linux")]
    fn now_ms(&self) -> u64 {
        // The coarse clock (a few ms of resolution, ample for one-minute windows) is read from
        // the vDSO without a syscall and costs a fraction of `Instant::now()`.
        match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE) {
            Ok(ts) => (ts.tv_sec() as u64)
                .saturating_mul(1000)
                .saturating_add(ts.tv_nsec() as u64 / 1_000_000),
            Err(_) => u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to (tests, benchmarks).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock at `ms`.
    pub fn at(ms: u64) -> Self {
        Self {
            now: AtomicU64::new(ms),
        }
    }
    /// Move forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Which of the three checks fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The path (extension or known-bad path).
    Path,
    /// The user agent.
    UserAgent,
    /// Requests per minute.
    Velocity,
}

impl Check {
    /// The check's name in logs and audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Path => "path",
            Check::UserAgent => "user_agent",
            Check::Velocity => "velocity",
        }
    }
}

/// What the velocity check counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address.
    V4(u32),
    /// The /64 an IPv6 address belongs to (one host usually holds a whole /64).
    V6Net(u64),
    /// A verified identity (a keyed hash of it; the identity itself is not kept).
    Identity(u64),
}

impl ClientKey {
    /// The key of a peer address (an IPv4-mapped IPv6 address counts as the IPv4 one).
    pub fn of_addr(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }

    fn shard(self, shards: usize) -> usize {
        let bits = match self {
            ClientKey::V4(v) => u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ClientKey::V6Net(v) | ClientKey::Identity(v) => v.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        };
        (bits >> 32) as usize % shards
    }
}

/// Whether an address is loopback (IPv4-mapped loopback included).
pub fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A request the scanner detector refuses, with what matched. Table entries are configuration,
/// never request data, so a verdict is safe to show and log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Verdict {
    /// The path's last segment has a scanner extension.
    #[error("path has the scanner extension `.{extension}`")]
    ScannerExtension {
        /// The table entry.
        extension: String,
    },
    /// The path contains a known-bad path.
    #[error("path contains the known scanner path `{pattern}`")]
    KnownScannerPath {
        /// The table entry.
        pattern: String,
    },
    /// The user agent names a scanner tool.
    #[error("user agent names the scanner tool `{tool}`")]
    ScannerAgent {
        /// The table entry.
        tool: String,
    },
    /// No user agent, or an empty one.
    #[error("no user agent")]
    EmptyAgent,
    /// A user agent shorter than the minimum.
    #[error("user agent is {len} bytes, shorter than the minimum of {min}")]
    ShortAgent {
        /// Its length.
        len: usize,
        /// `min_user_agent_length`.
        min: usize,
    },
    /// A generic HTTP library's default agent.
    #[error(
        "user agent is the generic client `{prefix}` at {len} bytes, under its threshold of {min}"
    )]
    GenericClient {
        /// The library's table entry.
        prefix: String,
        /// The agent's length.
        len: usize,
        /// The library's threshold.
        min: usize,
    },
    /// Over the requests-per-minute ceiling.
    #[error("{per_minute} requests per minute, over the ceiling of {ceiling}")]
    Velocity {
        /// The client's rate (a sliding-window estimate).
        per_minute: u32,
        /// The ceiling that applied.
        ceiling: u32,
        /// Seconds until the rate falls under the ceiling if the client stops.
        retry_after_secs: u32,
        /// What was counted.
        key: ClientKey,
    },
}

impl Verdict {
    /// Which check fired.
    pub fn check(&self) -> Check {
        match self {
            Verdict::ScannerExtension { .. } | Verdict::KnownScannerPath { .. } => Check::Path,
            Verdict::ScannerAgent { .. }
            | Verdict::EmptyAgent
            | Verdict::ShortAgent { .. }
            | Verdict::GenericClient { .. } => Check::UserAgent,
            Verdict::Velocity { .. } => Check::Velocity,
        }
    }

    /// A stable snake_case name.
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::ScannerExtension { .. } => "scanner_extension",
            Verdict::KnownScannerPath { .. } => "known_scanner_path",
            Verdict::ScannerAgent { .. } => "scanner_agent",
            Verdict::EmptyAgent => "empty_user_agent",
            Verdict::ShortAgent { .. } => "short_user_agent",
            Verdict::GenericClient { .. } => "generic_client",
            Verdict::Velocity { .. } => "velocity",
        }
    }

    /// 403, or 429 for velocity.
    pub fn status(&self) -> StatusCode {
        match self {
            Verdict::Velocity { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// The `Retry-After` value in seconds (velocity only).
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Verdict::Velocity {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The measured rate (velocity only).
    pub fn per_minute(&self) -> Option<u32> {
        match self {
            Verdict::Velocity { per_minute, .. } => Some(*per_minute),
            _ => None,
        }
    }
}

/// Why the detector cannot be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScannerSetupError {
    /// An entry is empty.
    #[error(
        "`http.scanner.{table}` has an empty entry\nhint: remove it; an empty entry would match every request"
    )]
    EmptyEntry {
        /// The table.
        table: &'static str,
    },
    /// An extension holds a dot or is too long.
    #[error(
        "`http.scanner.extensions` entry `{entry}` must be 1 to 16 characters without a dot\nhint: write `php`, not `.php`"
    )]
    BadExtension {
        /// The entry.
        entry: String,
    },
    /// A ceiling or capacity is zero.
    #[error("`http.scanner.{field}` must be at least 1")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// A table could not be compiled.
    #[error("`http.scanner.{table}` cannot be compiled: {detail}")]
    Automaton {
        /// The table.
        table: &'static str,
        /// The builder's words.
        detail: String,
    },
}

/// An agent in the known-clients table: lowercase bytes, and whether it is a prefix.
#[derive(Debug)]
struct AllowedAgent {
    text: Box<[u8]>,
    prefix: bool,
}

#[derive(Debug)]
struct Generic {
    prefix: Box<[u8]>,
    min: usize,
}

/// The scanner detector: the three checks over one configuration.
pub struct Scanner {
    enabled: bool,
    /// Extensions of up to 7 bytes, lowercased and packed into a `u64` ([`pack`]), sorted.
    short_extensions: Vec<u64>,
    /// Longer extensions, lowercased.
    long_extensions: Vec<Box<[u8]>>,
    extension_names: HashMap<u64, String>,
    long_extension_names: Vec<String>,
    paths: AhoCorasick,
    path_names: Vec<String>,
    agents: AhoCorasick,
    agent_names: Vec<String>,
    allowed: Vec<AllowedAgent>,
    min_agent: usize,
    empty_on_loopback: bool,
    generic: Vec<Generic>,
    generic_names: Vec<String>,
    velocity: Velocity,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("enabled", &self.enabled)
            .field(
                "extensions",
                &(self.short_extensions.len() + self.long_extensions.len()),
            )
            .field("paths", &self.path_names.len())
            .field("agents", &self.agent_names.len())
            .finish_non_exhaustive()
    }
}

/// Pack 1 to 7 bytes, lowercased, into a `u64` behind a leading 1 bit, so that no two different
/// byte strings (of any lengths) pack alike.
fn pack(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 7 {
        return None;
    }
    let mut v: u64 = 1;
    for b in bytes {
        v = (v << 8) | u64::from(b.to_ascii_lowercase());
    }
    Some(v)
}

/// `prefilter`: worth it on long haystacks (user agents), a cost on short ones (paths).
fn automaton(
    table: &'static str,
    entries: &[String],
    prefilter: bool,
) -> Result<AhoCorasick, ScannerSetupError> {
    if entries.iter().any(|e| e.is_empty()) {
        return Err(ScannerSetupError::EmptyEntry { table });
    }
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .kind(Some(AhoCorasickKind::DFA))
        .prefilter(prefilter)
        .build(entries)
        .map_err(|e| ScannerSetupError::Automaton {
            table,
            detail: e.to_string(),
        })
}

/// Whether `hay` starts with `prefix` (`prefix` lowercase), ASCII case ignored.
fn starts_with_ci(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len() && hay[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

impl Scanner {
    /// Build the detector from `[http.scanner]`, with `clock` for the velocity check.
    pub fn new(cfg: &ScannerSection, clock: Arc<dyn Clock>) -> Result<Self, ScannerSetupError> {
        let mut short_extensions = Vec::new();
        let mut long_extensions = Vec::new();
        let mut extension_names = HashMap::new();
        let mut long_extension_names = Vec::new();
        for e in &cfg.extensions {
            if e.is_empty() {
                return Err(ScannerSetupError::EmptyEntry {
                    table: "extensions",
                });
            }
            if e.contains('.') || e.len() > 16 {
                return Err(ScannerSetupError::BadExtension { entry: e.clone() });
            }
            match pack(e.as_bytes()) {
                Some(v) => {
                    short_extensions.push(v);
                    extension_names.insert(v, e.to_ascii_lowercase());
                }
                None => {
                    long_extensions.push(e.to_ascii_lowercase().into_bytes().into_boxed_slice());
                    long_extension_names.push(e.to_ascii_lowercase());
                }
            }
        }
        short_extensions.sort_unstable();
        short_extensions.dedup();
        let mut allowed = Vec::new();
        for a in &cfg.allowed_agents {
            let (text, prefix) = match a.strip_suffix('*') {
                Some(p) => (p, true),
                None => (a.as_str(), false),
            };
            if text.is_empty() {
                return Err(ScannerSetupError::EmptyEntry {
                    table: "allowed_agents",
                });
            }
            allowed.push(AllowedAgent {
                text: text.to_ascii_lowercase().into_bytes().into_boxed_slice(),
                prefix,
            });
        }
        let mut generic = Vec::new();
        for g in &cfg.generic_clients {
            if g.prefix.is_empty() {
                return Err(ScannerSetupError::EmptyEntry {
                    table: "generic_clients",
                });
            }
            generic.push(Generic {
                prefix: g
                    .prefix
                    .to_ascii_lowercase()
                    .into_bytes()
                    .into_boxed_slice(),
                min: g.min_length,
            });
        }
        if cfg.per_minute == 0 {
            return Err(ScannerSetupError::Zero {
                field: "per_minute",
            });
        }
        if cfg.loopback_per_minute == 0 {
            return Err(ScannerSetupError::Zero {
                field: "loopback_per_minute",
            });
        }
        if cfg.max_clients == 0 {
            return Err(ScannerSetupError::Zero {
                field: "max_clients",
            });
        }
        Ok(Scanner {
            enabled: cfg.enabled,
            short_extensions,
            long_extensions,
            extension_names,
            long_extension_names,
            paths: automaton("paths", &cfg.paths, false)?,
            path_names: cfg.paths.clone(),
            agents: automaton("user_agents", &cfg.user_agents, true)?,
            agent_names: cfg.user_agents.clone(),
            allowed,
            min_agent: cfg.min_user_agent_length,
            empty_on_loopback: cfg.allow_empty_user_agent_on_loopback,
            generic_names: cfg
                .generic_clients
                .iter()
                .map(|g| g.prefix.clone())
                .collect(),
            generic,
            velocity: Velocity::new(
                cfg.per_minute,
                cfg.loopback_per_minute,
                cfg.max_clients,
                clock,
            ),
        })
    }

    /// Whether the detector is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Run the three checks in order on one request: its path (without the query), its
    /// `User-Agent` header's bytes, and the peer address. Counts the request for velocity.
    pub fn check(
        &self,
        path: &str,
        user_agent: Option<&[u8]>,
        peer: IpAddr,
    ) -> Result<(), Verdict> {
        if !self.enabled {
            return Ok(());
        }
        self.check_path(path)?;
        self.check_agent(user_agent, peer)?;
        self.velocity
            .hit(ClientKey::of_addr(peer), is_loopback(peer))
    }

    /// The velocity check keyed by a verified identity (run once the identity is known), under
    /// the loopback ceiling when `peer` is loopback.
    pub fn check_identity(&self, subject: &str, tier: Tier, peer: IpAddr) -> Result<(), Verdict> {
        if !self.enabled {
            return Ok(());
        }
        let key = ClientKey::Identity(self.velocity.hasher.hash_one((subject, tier)));
        self.velocity.hit(key, is_loopback(peer))
    }

    /// Check (a): the path's extension and known-bad paths.
    pub fn check_path(&self, path: &str) -> Result<(), Verdict> {
        self.check_path_bytes(path.as_bytes())?;
        if memchr::memchr(b'%', path.as_bytes()).is_some() {
            let decoded: Vec<u8> = percent_encoding::percent_decode(path.as_bytes()).collect();
            self.check_path_bytes(&decoded)?;
        }
        Ok(())
    }

    fn check_path_bytes(&self, path: &[u8]) -> Result<(), Verdict> {
        let segment = match memchr::memrchr(b'/', path) {
            Some(i) => &path[i + 1..],
            None => path,
        };
        if let Some(dot) = memchr::memrchr(b'.', segment) {
            let ext = &segment[dot + 1..];
            if let Some(v) = pack(ext) {
                if self.short_extensions.binary_search(&v).is_ok() {
                    return Err(Verdict::ScannerExtension {
                        extension: self.extension_names.get(&v).cloned().unwrap_or_default(),
                    });
                }
            } else if let Some(i) = self
                .long_extensions
                .iter()
                .position(|e| e.eq_ignore_ascii_case(ext))
            {
                return Err(Verdict::ScannerExtension {
                    extension: self.long_extension_names[i].clone(),
                });
            }
        }
        if let Some(m) = self.paths.find(path) {
            return Err(Verdict::KnownScannerPath {
                pattern: self.path_names[m.pattern().as_usize()].clone(),
            });
        }
        Ok(())
    }

    /// Check (b): the user agent.
    pub fn check_agent(&self, user_agent: Option<&[u8]>, peer: IpAddr) -> Result<(), Verdict> {
        let agent = trim(user_agent.unwrap_or_default());
        if agent.is_empty() {
            if self.min_agent == 0 || (self.empty_on_loopback && is_loopback(peer)) {
                return Ok(());
            }
            return Err(Verdict::EmptyAgent);
        }
        if let Some(m) = self.agents.find(agent) {
            return Err(Verdict::ScannerAgent {
                tool: self.agent_names[m.pattern().as_usize()].clone(),
            });
        }
        let known = self.allowed.iter().any(|a| {
            if a.prefix {
                starts_with_ci(agent, &a.text)
            } else {
                agent.eq_ignore_ascii_case(&a.text)
            }
        });
        if known {
            return Ok(());
        }
        if agent.len() < self.min_agent {
            return Err(Verdict::ShortAgent {
                len: agent.len(),
                min: self.min_agent,
            });
        }
        if let Some(i) = self
            .generic
            .iter()
            .position(|g| agent.len() < g.min && starts_with_ci(agent, &g.prefix))
        {
            return Err(Verdict::GenericClient {
                prefix: self.generic_names[i].clone(),
                len: agent.len(),
                min: self.generic[i].min,
            });
        }
        Ok(())
    }
}

const WINDOW_MS: u64 = 60_000;
const SHARDS: usize = 16;
/// How often a full shard may be swept for stale entries.
const SWEEP_EVERY_MS: u64 = 1_000;

/// Two adjacent one-minute windows: the rate is the previous window's count weighted by how much
/// of it still lies within the last minute, plus the current window's count.
#[derive(Debug, Clone, Copy)]
struct Window {
    index: u64,
    prev: u32,
    cur: u32,
}

/// A per-process random seed keeps clients from choosing colliding keys, and the per-shard cap
/// bounds what a collision could cost.
#[derive(Debug, Default)]
struct Shard {
    map: HashMap<ClientKey, Window, RandomState>,
    last_sweep_ms: u64,
}

/// Requests per minute per client key, in sharded maps of fixed-size counters.
struct Velocity {
    shards: Box<[Mutex<Shard>]>,
    per_minute: u32,
    loopback_per_minute: u32,
    per_shard: usize,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
}

impl Velocity {
    fn new(
        per_minute: u32,
        loopback_per_minute: u32,
        max_clients: usize,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Velocity {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_minute,
            loopback_per_minute,
            per_shard: max_clients.div_ceil(SHARDS).max(1),
            hasher: RandomState::default(),
            clock,
        }
    }

    /// Count one request of `key` and judge it. Refused requests count too, so a client that
    /// keeps hammering stays refused; one that stops is let in after `Retry-After`.
    fn hit(&self, key: ClientKey, loopback: bool) -> Result<(), Verdict> {
        let now = self.clock.now_ms();
        let index = now / WINDOW_MS;
        let into = now % WINDOW_MS;
        let ceiling = if loopback {
            self.loopback_per_minute
        } else {
            self.per_minute
        };
        let window = {
            // A poisoned shard only means another request panicked mid-update; the counters are
            // still plain numbers, so keep using them.
            let mut shard = self.shards[key.shard(SHARDS)]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // One hash on the common path: the client is already tracked.
            if let Some(w) = shard.map.get_mut(&key) {
                if w.index != index {
                    w.prev = if w.index + 1 == index { w.cur } else { 0 };
                    w.cur = 0;
                    w.index = index;
                }
                w.cur = w.cur.saturating_add(1);
                *w
            } else {
                if shard.map.len() >= self.per_shard {
                    Self::make_room(&mut shard, index, now, self.per_shard);
                }
                let w = Window {
                    index,
                    prev: 0,
                    cur: 1,
                };
                shard.map.insert(key, w);
                w
            }
        };
        let rate = estimate(window.prev, window.cur, into);
        if rate <= u64::from(ceiling) {
            return Ok(());
        }
        Err(Verdict::Velocity {
            per_minute: u32::try_from(rate).unwrap_or(u32::MAX),
            ceiling,
            retry_after_secs: retry_after_secs(window.prev, window.cur, into, ceiling),
            key,
        })
    }

    /// A full shard: drop entries older than the last two windows (at most once a second), and
    /// if none are, one arbitrary entry.
    fn make_room(shard: &mut Shard, index: u64, now: u64, cap: usize) {
        if now.saturating_sub(shard.last_sweep_ms) >= SWEEP_EVERY_MS {
            shard.last_sweep_ms = now;
            shard.map.retain(|_, w| w.index + 1 >= index);
        }
        if shard.map.len() >= cap
            && let Some(k) = shard.map.keys().next().copied()
        {
            shard.map.remove(&k);
        }
    }
}

/// The sliding-window estimate of requests in the last minute, rounded up.
fn estimate(prev: u32, cur: u32, into_ms: u64) -> u64 {
    let weight = WINDOW_MS - into_ms;
    (u64::from(prev) * weight).div_ceil(WINDOW_MS) + u64::from(cur)
}

/// Seconds after which one more request is within `ceiling`, if none comes meanwhile: when
/// [`estimate`] has fallen to `ceiling - 1`.
fn retry_after_secs(prev: u32, cur: u32, into_ms: u64, ceiling: u32) -> u32 {
    let ceiling = u64::from(ceiling.saturating_sub(1));
    let (prev, cur) = (u64::from(prev), u64::from(cur));
    let wait_ms = if cur > ceiling {
        // Only the next window can help: there `cur` is the previous count, weighted down.
        // cur * (W - t) / W <= ceiling  ⇔  t >= W - ceiling * W / cur.
        let rest = WINDOW_MS - into_ms;
        rest + (WINDOW_MS - ceiling * WINDOW_MS / cur)
    } else {
        // prev * (W - into - t) / W + cur <= ceiling  ⇔  t >= W - into - (ceiling - cur) * W / prev.
        match ((ceiling - cur) * WINDOW_MS).checked_div(prev) {
            Some(allowed) => (WINDOW_MS - into_ms).saturating_sub(allowed),
            None => 0,
        }
    };
    u32::try_from(wait_ms.div_ceil(1000).max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
