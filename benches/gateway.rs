//! Gateway benchmarks: what `lastmile serve` costs a client, measured against the fixture server
//! spoken to directly and through a bare byte relay (`lastmile-fixture --relay`), the floor of one
//! extra stdio hop. One run, a plain table, no harness:
//!
//! - `latency`: sequential `tools/call` of `echo`, p50/p90/p99, the three targets interleaved in
//!   rounds so machine noise hits all alike (issue #2);
//! - `throughput`: `echo` with 32 calls in flight, calls/s, plus CPU time per call of each target's
//!   processes (issue #3);
//! - `startup`: launch to a complete `tools/list` with 10 children that take 300 ms to start, and with
//!   one as a baseline (issue #3);
//! - `memory`: lastmile's VmRSS and VmHWM with 10 idle children after `tools/list`, and its
//!   watchdog's, each against issue #10's target (12 MB and 2 MB) with a breakdown of what is
//!   resident (binary pages, heap, malloc arenas, stacks) (issues #3, #10).
//!
//! `cargo bench --bench gateway` runs everything; `cargo bench --bench gateway -- latency memory`
//! picks parts; `LASTMILE_BENCH_QUICK=1` uses fewer iterations (the whole run well under a minute).
//! Every process is started with a cleared environment in a temporary folder and stopped at the end.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, ClientRequest, JsonObject, ListToolsRequest, ServerResult,
};
use rmcp::service::{Peer, RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use serde_json::json;
use tempfile::TempDir;

/// The `lastmile` that cargo built for this bench (the bench profile: target/release).
const LASTMILE: &str = env!("CARGO_BIN_EXE_lastmile");
const FIXTURE: &str = env!("CARGO_BIN_EXE_lastmile-fixture");

/// Tools each fixture server lists (echo, env, sleep, crash, big, progress, fail).
const FIXTURE_TOOLS: usize = 7;
const IN_FLIGHT: usize = 32;
const SLOW_START_MS: u64 = 300;
/// A launch whose tools/list is still incomplete after this long counts as failed.
const INCOMPLETE_AFTER: Duration = Duration::from_secs(5);
const PARTS: [&str; 4] = ["latency", "throughput", "startup", "memory"];

struct Settings {
    quick: bool,
    /// Sequential calls per target, after warm-up.
    latency_calls: usize,
    latency_round: usize,
    latency_warmup: usize,
    /// Calls per target and round with IN_FLIGHT in flight.
    throughput_calls: usize,
    throughput_rounds: usize,
    /// Launches per child count.
    startup_runs: usize,
}

impl Settings {
    fn from_env() -> Self {
        let quick = std::env::var("LASTMILE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Settings {
                quick,
                latency_calls: 500,
                latency_round: 50,
                latency_warmup: 50,
                throughput_calls: 1000,
                throughput_rounds: 2,
                startup_runs: 3,
            }
        } else {
            Settings {
                quick,
                latency_calls: 2000,
                latency_round: 100,
                latency_warmup: 200,
                throughput_calls: 3000,
                throughput_rounds: 5,
                startup_runs: 5,
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other word names a part to run.
    let mut wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Some(bad) = wanted.iter().find(|w| !PARTS.contains(&w.as_str())) {
        eprintln!(
            "gateway bench: unknown part `{bad}`; choose from {}",
            PARTS.join(", ")
        );
        std::process::exit(2);
    }
    if wanted.is_empty() {
        wanted = PARTS.iter().map(|p| p.to_string()).collect();
    }
    let settings = Settings::from_env();
    println!("lastmile gateway benchmarks");
    println!("  lastmile: {LASTMILE}");
    println!("  fixture:  {FIXTURE}");
    println!(
        "  mode: {}  (LASTMILE_BENCH_QUICK=1 for fewer iterations); cores: {}",
        if settings.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // One thread drives the client side of every target alike.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let has = |p: &str| wanted.iter().any(|w| w == p);
        if has("latency") || has("throughput") {
            let targets = Target::start_all().await;
            if has("latency") {
                latency(&settings, &targets).await;
            }
            if has("throughput") {
                throughput(&settings, &targets).await;
            }
            for t in targets {
                t.stop().await;
            }
        }
        if has("startup") {
            startup(&settings).await;
        }
        if has("memory") {
            memory().await;
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The three targets

/// A hermetic folder: HOME, config (servers.d) and data for one `lastmile serve`, and a profile
/// (keyring namespace, kernel keyutils) of its own for the audit key. Sessions run as the fixed
/// test identity (`auth.mode = "disabled"`), so the bench measures the gateway, not token setup;
/// auditing stays on, as in production.
struct World {
    dir: TempDir,
    profile: String,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Ok(opened) = lastmile::secrets::open_store(
            lastmile::secrets::BackendRequest::Force(lastmile::secrets::BackendKind::Keyutils),
            &format!("lastmile:{}", self.profile),
        ) {
            for key in opened.store.list().unwrap_or_default() {
                let _ = opened.store.delete(&key);
            }
        }
    }
}

impl World {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let w = World {
            dir: tempfile::tempdir().expect("tempdir"),
            profile: format!("bench{:x}-{n}", std::process::id()),
        };
        std::fs::create_dir_all(w.dir.path().join("config/servers.d")).unwrap();
        std::fs::create_dir_all(w.dir.path().join("home")).unwrap();
        std::fs::write(
            w.dir.path().join("config/lastmile.toml"),
            "[auth]\nmode = \"disabled\"\n\n# The bench measures the gateway, not the limiter: a rate no run reaches.\n[rate_limit]\nbase_per_minute = 100000000\n",
        )
        .unwrap();
        w
    }

    /// `servers.d/NAME.toml` running the fixture with `args`.
    fn fixture(&self, name: &str, args: &[&str]) {
        let mut all = vec!["--name".to_string(), name.to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let body = format!(
            "command = {FIXTURE:?}\nargs = {all:?}\n\
             tiers = [\"admin\", \"user\", \"service\", \"a2a\", \"mcp\", \"anonymous\"]\n"
        );
        let path = self
            .dir
            .path()
            .join(format!("config/servers.d/{name}.toml"));
        std::fs::write(path, body).unwrap();
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(LASTMILE);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("LASTMILE_CONFIG_DIR", self.dir.path().join("config"))
            .env("LASTMILE_DATA_DIR", self.dir.path().join("data"))
            .env("LASTMILE_PROFILE", &self.profile)
            .env("LASTMILE_SECRETS_BACKEND", "keyutils")
            .env("LASTMILE_ALLOW_DISABLED_AUTH", "1");
        cmd
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// A client connected to a server process over its stdio.
struct Target {
    label: &'static str,
    client: RunningService<RoleClient, ()>,
    /// The tool name to call for `echo`.
    tool: String,
    /// The process the client talks to (fixture, relay or lastmile).
    pid: u32,
    _world: Option<World>,
}

/// Start `cmd` with piped stdin/stdout and connect; `quiet` sends its stderr to /dev/null.
async fn connect(
    mut cmd: tokio::process::Command,
    quiet: bool,
) -> (RunningService<RoleClient, ()>, u32) {
    cmd.kill_on_drop(true);
    let stderr = if quiet {
        Stdio::null()
    } else {
        Stdio::inherit()
    };
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(stderr)
        .spawn()
        .expect("spawn");
    let pid = transport.id().expect("pid");
    let client = ().serve(transport).await.expect("MCP handshake");
    (client, pid)
}

fn fixture_command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(FIXTURE);
    cmd.args(args).env_clear();
    cmd
}

impl Target {
    async fn start_all() -> Vec<Target> {
        let (client, pid) = connect(fixture_command(&["--name", "fx"]), true).await;
        let direct = Target {
            label: "direct",
            client,
            tool: "echo".into(),
            pid,
            _world: None,
        };
        let relay_cmd = fixture_command(&["--relay", "--", FIXTURE, "--name", "fx"]);
        let (client, pid) = connect(relay_cmd, true).await;
        let relay = Target {
            label: "relay",
            client,
            tool: "echo".into(),
            pid,
            _world: None,
        };
        let world = World::new();
        world.fixture("fx", &[]);
        // lastmile's own warnings (if any) show on the bench's stderr.
        let (client, pid) = connect(world.command(), false).await;
        let names: Vec<String> = client
            .list_all_tools()
            .await
            .expect("tools/list through lastmile")
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        assert!(
            names.iter().any(|n| n == "fx__echo"),
            "lastmile lists no fx__echo: {names:?}"
        );
        let gateway = Target {
            label: "lastmile",
            client,
            tool: "fx__echo".into(),
            pid,
            _world: Some(world),
        };
        let targets = vec![direct, relay, gateway];
        for t in &targets {
            let r = t
                .client
                .call_tool(echo_params(&t.tool))
                .await
                .expect("echo");
            let text = r
                .content
                .first()
                .and_then(|c| c.as_text())
                .map(|t| t.text.as_str());
            assert_eq!(text, Some(ECHO_TEXT), "{}: unexpected echo result", t.label);
        }
        targets
    }

    /// Close stdin and wait (bounded) for the process to go.
    async fn stop(self) {
        let pid = self.pid;
        // A timed-out cancel drops the service, which kills the process.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.cancel()).await;
        wait_gone(pid, Duration::from_secs(5)).await;
        if let Some(world) = &self._world {
            let log_bytes = dir_size(&world.data_dir());
            if log_bytes > 64 * 1024 {
                println!(
                    "  note: lastmile's data folder (audit database and logs) holds {log_bytes} bytes after the run"
                );
            }
        }
    }
}

const ECHO_TEXT: &str = "hello from the lastmile benchmark";

fn echo_params(tool: &str) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(tool.to_string());
    let mut args = JsonObject::new();
    args.insert("text".into(), json!(ECHO_TEXT));
    p.arguments = Some(args);
    p
}

async fn echo_once(peer: &Peer<RoleClient>, params: CallToolRequestParams) {
    let r = peer.call_tool(params).await.expect("tools/call echo");
    assert!(r.is_error != Some(true), "echo returned a tool error");
}

// ---------------------------------------------------------------------------------------------
// a. Sequential latency

async fn latency(s: &Settings, targets: &[Target]) {
    let rounds = s.latency_calls.div_ceil(s.latency_round);
    println!();
    println!(
        "a. sequential tools/call `echo` latency: {} calls per target after {} warm-up, \
         {rounds} interleaved rounds of {}",
        rounds * s.latency_round,
        s.latency_warmup,
        s.latency_round
    );
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for t in targets {
        for _ in 0..s.latency_warmup {
            echo_once(t.client.peer(), echo_params(&t.tool)).await;
        }
    }
    for round in 0..rounds {
        // Rotate the order so no target always follows the same one.
        for k in 0..targets.len() {
            let i = (round + k) % targets.len();
            let t = &targets[i];
            let params = echo_params(&t.tool);
            for _ in 0..s.latency_round {
                let start = Instant::now();
                echo_once(t.client.peer(), params.clone()).await;
                samples[i].push(start.elapsed());
            }
        }
    }
    let stats: Vec<Stats> = samples.iter_mut().map(|v| Stats::of(v)).collect();
    let direct = &stats[0];
    println!(
        "   {:<10} {:>9} {:>9} {:>9} {:>9}   {:>12} {:>12}",
        "target", "p50 µs", "p90 µs", "p99 µs", "mean µs", "p50/direct", "p99/direct"
    );
    for (t, st) in targets.iter().zip(&stats) {
        println!(
            "   {:<10} {:>9.1} {:>9.1} {:>9.1} {:>9.1}   {:>11.2}x {:>11.2}x",
            t.label,
            us(st.p50),
            us(st.p90),
            us(st.p99),
            us(st.mean),
            us(st.p50) / us(direct.p50),
            us(st.p99) / us(direct.p99)
        );
    }
    let (relay, gw) = (&stats[1], &stats[2]);
    println!(
        "   relay over direct:    p50 {:+.1} µs, p99 {:+.1} µs  (one extra stdio hop)",
        us(relay.p50) - us(direct.p50),
        us(relay.p99) - us(direct.p99)
    );
    println!(
        "   lastmile over relay:  p50 {:+.1} µs, p99 {:+.1} µs  (what lastmile adds beyond the hop)",
        us(gw.p50) - us(relay.p50),
        us(gw.p99) - us(relay.p99)
    );
}

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    mean: Duration,
}

impl Stats {
    fn of(v: &mut [Duration]) -> Stats {
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        let total: Duration = v.iter().sum();
        Stats {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            mean: total / v.len() as u32,
        }
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

// ---------------------------------------------------------------------------------------------
// b. Throughput with calls in flight

async fn burst(t: &Target, calls: usize) -> Duration {
    let peer = t.client.peer().clone();
    let params = echo_params(&t.tool);
    let start = Instant::now();
    let done = futures::stream::iter(0..calls)
        .map(|_| {
            let (peer, params) = (peer.clone(), params.clone());
            async move { echo_once(&peer, params).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .count()
        .await;
    assert_eq!(done, calls);
    start.elapsed()
}

async fn throughput(s: &Settings, targets: &[Target]) {
    println!();
    println!(
        "b. `echo` throughput, {IN_FLIGHT} calls in flight: {} rounds of {} calls per target, \
         interleaved",
        s.throughput_rounds, s.throughput_calls
    );
    for t in targets {
        burst(t, s.throughput_calls / 4).await;
    }
    // The processes behind each target: the one we talk to and its children (relay → fixture,
    // lastmile → fixture). CPU time is read from /proc before and after.
    let trees: Vec<Vec<u32>> = targets
        .iter()
        .map(|t| {
            let mut pids = vec![t.pid];
            pids.extend(children_of(t.pid));
            pids
        })
        .collect();
    let cpu_before: Vec<Vec<u64>> = trees.iter().map(|p| cpu_ticks(p)).collect();
    let audit_before = audit_writer_ticks(targets[2].pid);
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut busy = vec![Duration::ZERO; targets.len()];
    for round in 0..s.throughput_rounds {
        for k in 0..targets.len() {
            let i = (round + k) % targets.len();
            let took = burst(&targets[i], s.throughput_calls).await;
            busy[i] += took;
            rates[i].push(s.throughput_calls as f64 / took.as_secs_f64());
        }
    }
    let cpu_after: Vec<Vec<u64>> = trees.iter().map(|p| cpu_ticks(p)).collect();
    let audit_after = audit_writer_ticks(targets[2].pid);
    let total_calls = (s.throughput_calls * s.throughput_rounds) as f64;
    let ticks = clock_ticks_per_sec();
    let per_call = |before: u64, after: u64| (after - before) as f64 / ticks * 1e6 / total_calls;
    let medians: Vec<f64> = rates.iter_mut().map(|r| median_f64(r)).collect();
    println!(
        "   {:<10} {:>12} {:>10} {:>10}   {:>10}   CPU µs per call, by process",
        "target", "median /s", "min /s", "max /s", "vs relay"
    );
    for (i, t) in targets.iter().enumerate() {
        let min = rates[i].iter().cloned().fold(f64::INFINITY, f64::min);
        let max = rates[i].iter().cloned().fold(0.0, f64::max);
        let cpu: Vec<String> = cpu_before[i]
            .iter()
            .zip(&cpu_after[i])
            .zip(&trees[i])
            .map(|((b, a), pid)| format!("{} {:.1}", role(*pid), per_call(*b, *a)))
            .collect();
        println!(
            "   {:<10} {:>12.0} {:>10.0} {:>10.0}   {:>9.1}%   {}",
            t.label,
            medians[i],
            min,
            max,
            medians[i] / medians[1] * 100.0,
            cpu.join(", ")
        );
    }
    println!(
        "   lastmile / relay throughput: {:.1}% (target: at least 95%); lastmile / direct: {:.1}%",
        medians[2] / medians[1] * 100.0,
        medians[2] / medians[0] * 100.0
    );
    // The CPU figure is the request path: every thread of lastmile but the audit
    // writer's. The process's counters include threads that have exited; the writer lives as
    // long as the gateway, so its counters cover the whole run.
    if let (Some(audit_before), Some(audit_after)) = (audit_before, audit_after) {
        let whole = per_call(cpu_before[2][0], cpu_after[2][0]);
        let audit = per_call(audit_before, audit_after);
        println!(
            "   lastmile CPU per call: request path {:.1} µs (target: at most 20), audit writer \
             {:.1} µs; relay {:.1} µs",
            whole - audit,
            audit,
            per_call(cpu_before[1][0], cpu_after[1][0])
        );
    }
    if let Some(m) = proc_memory(targets[2].pid) {
        println!(
            "   lastmile after the throughput runs: VmRSS {:.1} MB, VmHWM {:.1} MB",
            mb(m.rss_kb),
            mb(m.hwm_kb)
        );
    }
}

fn median_f64(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// c. Start-up to a complete tools/list

struct Launch {
    /// Launch to the end of the MCP handshake.
    initialized: Duration,
    /// Launch to a tools/list holding every child's tools; None if it never did.
    listed: Option<Duration>,
    /// How many tools/list requests that took (1 when the first answer was complete).
    lists: usize,
}

/// Launch `lastmile serve` over `children` slow fixtures and list until every tool is there.
async fn launch(
    children: usize,
    keep: bool,
) -> (Launch, Option<(RunningService<RoleClient, ()>, u32, World)>) {
    let world = World::new();
    let slow = SLOW_START_MS.to_string();
    for i in 0..children {
        world.fixture(&format!("s{i}"), &["--slow-start", &slow]);
    }
    let cmd = world.command();
    let start = Instant::now();
    let (client, pid) = connect(cmd, false).await;
    let initialized = start.elapsed();
    let want = children * FIXTURE_TOOLS;
    let mut lists = 0;
    let mut got;
    let listed = loop {
        lists += 1;
        // A raw request: the client's list cache must not answer for the server.
        let r = client
            .send_request(ClientRequest::ListToolsRequest(ListToolsRequest::default()))
            .await
            .expect("tools/list");
        let ServerResult::ListToolsResult(r) = r else {
            panic!("tools/list answered with {r:?}");
        };
        got = r.tools.len();
        if got >= want {
            break Some(start.elapsed());
        }
        if start.elapsed() > INCOMPLETE_AFTER {
            // Keep the folder (servers.d and lastmile's log) for a post-mortem.
            let kept = world.dir.path().with_extension("kept");
            let _ = std::fs::rename(world.dir.path(), &kept);
            eprintln!(
                "   ! tools/list still has {got} of {want} tools after {INCOMPLETE_AFTER:?}; \
                 config and log kept in {}",
                kept.display()
            );
            break None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let launch = Launch {
        initialized,
        listed,
        lists,
    };
    if keep {
        return (launch, Some((client, pid, world)));
    }
    shut_down(client, pid).await;
    (launch, None)
}

async fn shut_down(client: RunningService<RoleClient, ()>, pid: u32) {
    let children = children_of(pid);
    let _ = tokio::time::timeout(Duration::from_secs(5), client.cancel()).await;
    wait_gone(pid, Duration::from_secs(5)).await;
    for c in children {
        wait_gone(c, Duration::from_secs(5)).await;
    }
}

async fn startup(s: &Settings) {
    println!();
    println!(
        "c. launch of `lastmile serve` to a complete tools/list, children that take \
         {SLOW_START_MS} ms to start: {} runs each after a warm-up launch; list ms is the median of \
         the runs that completed",
        s.startup_runs
    );
    let counts = [1usize, 10];
    let mut runs: Vec<Vec<Launch>> = counts.iter().map(|_| Vec::new()).collect();
    for &n in &counts {
        launch(n, false).await;
    }
    for _ in 0..s.startup_runs {
        for (i, &n) in counts.iter().enumerate() {
            runs[i].push(launch(n, false).await.0);
        }
    }
    println!(
        "   {:<10} {:>14} {:>12} {:>12} {:>12}   {:>20} {:>14}",
        "children",
        "initialize ms",
        "list ms",
        "min ms",
        "max ms",
        "first list complete",
        "never complete"
    );
    let mut medians = Vec::new();
    for (i, &n) in counts.iter().enumerate() {
        let mut init: Vec<f64> = runs[i].iter().map(|l| ms(l.initialized)).collect();
        let mut list: Vec<f64> = runs[i].iter().filter_map(|l| l.listed.map(ms)).collect();
        let complete = runs[i]
            .iter()
            .filter(|l| l.lists == 1 && l.listed.is_some())
            .count();
        let never = runs[i].iter().filter(|l| l.listed.is_none()).count();
        let med = if list.is_empty() {
            f64::NAN
        } else {
            median_f64(&mut list)
        };
        medians.push(med);
        println!(
            "   {:<10} {:>14.1} {:>12.1} {:>12.1} {:>12.1}   {:>14} of {} {:>11} of {}",
            n,
            median_f64(&mut init),
            med,
            list.first().copied().unwrap_or(f64::NAN),
            list.last().copied().unwrap_or(f64::NAN),
            complete,
            runs[i].len(),
            never,
            runs[i].len()
        );
    }
    println!(
        "   10 children: {:.1} ms (target: under 400 ms); {:+.1} ms over one child",
        medians[1],
        medians[1] - medians[0]
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------------
// d. Resident memory

async fn memory() {
    println!();
    println!("d. resident memory of `lastmile serve` with 10 idle children, after tools/list");
    let (_, kept) = launch(10, true).await;
    let (client, pid, _world) = kept.expect("kept session");
    // Let start-up work settle; nothing is in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = proc_memory(pid).expect("lastmile /proc status");
    let children = children_of(pid);
    let rss_of = |want: &str| -> (usize, u64) {
        let pids: Vec<u32> = children
            .iter()
            .copied()
            .filter(|c| role(*c) == want)
            .collect();
        let kb = pids
            .iter()
            .filter_map(|c| proc_memory(*c))
            .map(|m| m.rss_kb)
            .sum();
        (pids.len(), kb)
    };
    println!(
        "   lastmile: VmRSS {:.1} MB, VmHWM {:.1} MB (target: at most {LASTMILE_RSS_TARGET_MB} MB, {:.2} of it); threads {}",
        mb(m.rss_kb),
        mb(m.hwm_kb),
        mb(m.rss_kb) / LASTMILE_RSS_TARGET_MB,
        m.threads
    );
    print_breakdown(pid);
    let (reapers, reaper_kb) = rss_of("reaper");
    if reapers > 0 {
        println!(
            "   its `lastmile __reaper` watchdog: VmRSS {:.1} MB (a separate process; target: at most {REAPER_RSS_TARGET_MB} MB, {:.2} of it)",
            mb(reaper_kb),
            mb(reaper_kb) / REAPER_RSS_TARGET_MB
        );
        for reaper in children.iter().copied().filter(|c| role(*c) == "reaper") {
            print_breakdown(reaper);
        }
    }
    let (fixtures, fixture_kb) = rss_of("fixture");
    println!(
        "   for scale: its {fixtures} fixture children together VmRSS {:.1} MB ({:.1} MB each)",
        mb(fixture_kb),
        mb(fixture_kb) / fixtures.max(1) as f64
    );
    shut_down(client, pid).await;
}

/// Issue #10's resident-memory targets with 10 idle children.
const LASTMILE_RSS_TARGET_MB: f64 = 12.0;
const REAPER_RSS_TARGET_MB: f64 = 2.0;

/// Where a process's resident memory is, from /proc/PID/status and /proc/PID/smaps: file-backed
/// (its own binary's pages, shared libraries), heap, and anonymous mappings — thread stacks and
/// glibc's per-thread malloc arenas (reserved 64 MB at a time; only touched pages count).
fn print_breakdown(pid: u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    println!(
        "     pid {pid}: anonymous {:.1} MB, file-backed {:.1} MB, shared memory {:.1} MB",
        mb(kb("RssAnon:")),
        mb(kb("RssFile:")),
        mb(kb("RssShmem:"))
    );
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return;
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let mut kinds: std::collections::BTreeMap<&'static str, (u64, usize)> = Default::default();
    let mut current: Option<(&'static str, u64)> = None;
    // (resident, mapped) of each anonymous mapping, in kB: a thread stack maps its stack size
    // (tokio's workers 2 MB), a malloc arena up to 64 MB.
    let mut anonymous: Vec<(u64, u64)> = Vec::new();
    let mut add = |kind: &'static str, rss: u64| {
        let e = kinds.entry(kind).or_default();
        e.0 += rss;
        e.1 += 1;
    };
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let (start, end) = first.split_once('-').unwrap_or(("0", "0"));
            let size_kb = (u64::from_str_radix(end, 16).unwrap_or(0)
                - u64::from_str_radix(start, 16).unwrap_or(0))
                / 1024;
            let path = words.nth(4).unwrap_or("");
            let kind = match path {
                "" => "anonymous (malloc arenas, thread stacks, large allocations)",
                "[heap]" => "heap (main arena)",
                "[stack]" => "main thread stack",
                p if Path::new(p) == exe => "its own binary (text, data)",
                p if p.starts_with('/') => "shared libraries and other files",
                _ => "kernel ([vdso], [vvar], ...)",
            };
            current = Some((kind, size_kb));
        } else if first == "Rss:"
            && let Some((kind, size_kb)) = current.take()
        {
            let rss = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            add(kind, rss);
            if kind.starts_with("anonymous") {
                anonymous.push((rss, size_kb));
            }
        }
    }
    anonymous.sort_unstable_by_key(|(rss, _)| std::cmp::Reverse(*rss));
    let mut rows: Vec<_> = kinds.into_iter().collect();
    rows.sort_by_key(|(_, (rss, _))| std::cmp::Reverse(*rss));
    for (kind, (rss, maps)) in rows {
        if rss > 0 {
            println!("       {:>6.2} MB  {kind} ({maps} mappings)", mb(rss));
        }
    }
    let largest: Vec<String> = anonymous
        .iter()
        .take(6)
        .map(|(rss, size)| format!("{:.2} of {:.1}", mb(*rss), mb(*size)))
        .collect();
    println!(
        "       largest anonymous mappings, MB resident of mapped: {}",
        largest.join(", ")
    );
}

struct Memory {
    rss_kb: u64,
    hwm_kb: u64,
    threads: u64,
}

fn proc_memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kb: field("VmRSS:")?,
        hwm_kb: field("VmHWM:")?,
        threads: field("Threads:").unwrap_or(0),
    })
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// /proc helpers

/// The fields of /proc/PID/stat after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    stat_fields_at(Path::new(&format!("/proc/{pid}")))
}

/// The fields after the command name of the `stat` file in `dir` (a process's or a thread's).
fn stat_fields_at(dir: &Path) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime from `stat` fields, in clock ticks (fields 14 and 15 of stat are 11 and 12
/// after the name).
fn busy_ticks(f: &[String]) -> u64 {
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// What a benchmarked process is, from its command name (`comm` keeps 15 bytes).
fn role(pid: u32) -> &'static str {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let has_arg = |a: &str| cmdline.split(|b| *b == 0).any(|x| x == a.as_bytes());
    match comm.trim() {
        "lastmile-fixtur" if has_arg("--relay") => "relay",
        "lastmile-fixtur" => "fixture",
        "lastmile" if has_arg("__reaper") => "reaper",
        "lastmile" => "lastmile",
        _ => "other",
    }
}

/// Direct children of `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            // After ')': state, ppid, ...
            stat_fields(*p).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect();
    out.sort_unstable();
    out
}

/// utime + stime of the audit writer thread (`lastmile-audit`) of `pid`, in clock ticks.
fn audit_writer_ticks(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|task| {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim() != "lastmile-audit" {
            return None;
        }
        stat_fields_at(&dir).map(|f| busy_ticks(&f))
    })
}

/// utime + stime of each pid, in clock ticks (0 for a pid that is gone).
fn cpu_ticks(pids: &[u32]) -> Vec<u64> {
    pids.iter()
        .map(|p| stat_fields(*p).map(|f| busy_ticks(&f)).unwrap_or(0))
        .collect()
}

fn clock_ticks_per_sec() -> f64 {
    // USER_HZ is 100 on every Linux this runs on; getconf confirms it where available.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

fn alive(pid: u32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|state| state != "Z" && state != "X")
}

async fn wait_gone(pid: u32, limit: Duration) {
    let start = Instant::now();
    while alive(pid) && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if alive(pid) {
        eprintln!("gateway bench: process {pid} still alive after {limit:?}");
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}
