//! HTTP throughput: `tools/call` of the fixture's `echo` over Streamable HTTP on loopback through
//! `lastmile serve --http` in `required` auth mode with a bearer token on every request (so the
//! scanner, the token chain and verification, the gate and the audit all run), against a bare
//! HTTP-to-stdio bridge to the same fixture built into this bench (POST in, the body as one line
//! to the child, the answer matched by id, out — no auth, no audit, no session), measured in the
//! same run, interleaved, with 1 and with 32 clients on keep-alive connections (issue #12).
//!
//! Besides calls/s, the CPU time per call of each side is read from /proc: lastmile's process and
//! its children (the fixture, the reaper), the bridge's runtime threads, the fixture behind the
//! bridge, and the clients' thread — where the time goes.
//!
//! Targets: `bridge`; `lastmile`, each client in its own 2025-11-25 MCP session; `lm-stless`,
//! each client on 2026-07-28 without a session (one session for the identity). The fixture
//! offers no resource subscriptions, so once its first start is recorded it is quiet and every
//! session shares its one child, as behind the bridge.
//!
//! `cargo bench --bench http [-- TARGET...]`; `LASTMILE_BENCH_QUICK=1` shortens each case. Every
//! process is started with a cleared environment in a temporary folder and stopped at the end.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

const LASTMILE: &str = env!("CARGO_BIN_EXE_lastmile");
const FIXTURE: &str = env!("CARGO_BIN_EXE_lastmile-fixture");
const ECHO_TEXT: &str = "hello from the lastmile HTTP benchmark";
const CONCURRENCY: [usize; 2] = [1, 32];
/// What the bridge's threads are called, so their CPU time can be told from the clients'.
const BRIDGE_THREAD: &str = "bridge-rt";
const TARGET_CALLS_PER_SEC: f64 = 10_000.0;

struct Settings {
    quick: bool,
    /// Length of one measured stretch of one target.
    stretch: Duration,
    /// Stretches per target and concurrency, interleaved.
    rounds: usize,
}

impl Settings {
    fn from_env() -> Self {
        let quick = std::env::var("LASTMILE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        Settings {
            quick,
            stretch: Duration::from_millis(if quick { 700 } else { 1500 }),
            rounds: if quick { 2 } else { 3 },
        }
    }
}

fn main() {
    let s = Settings::from_env();
    println!("lastmile HTTP benchmark: tools/call `echo` over Streamable HTTP on loopback");
    println!("  lastmile: {LASTMILE}");
    println!("  fixture:  {FIXTURE}");
    println!(
        "  mode: {}  (LASTMILE_BENCH_QUICK=1 for shorter stretches); cores: {}",
        if s.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // The clients share one thread, as one load generator; the bridge gets a runtime of its own
    // with as many workers as lastmile's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(&s));
}

async fn run(s: &Settings) {
    let gateway = Gateway::start().await;
    let bridge = Bridge::start().await;
    let all = [
        Target {
            label: "bridge",
            addr: bridge.addr,
            auth: None,
            stateless: false,
            tool: "echo",
        },
        Target {
            label: "lastmile",
            addr: gateway.addr,
            auth: Some(format!("Bearer {}", gateway.token)),
            stateless: false,
            tool: "fx__echo",
        },
        Target {
            label: "lm-stless",
            addr: gateway.addr,
            auth: Some(format!("Bearer {}", gateway.token)),
            stateless: true,
            tool: "fx__echo",
        },
    ];
    // `cargo bench` passes `--bench`; other words name the targets to run (all by default).
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Some(bad) = wanted.iter().find(|w| !all.iter().any(|t| t.label == *w)) {
        eprintln!("http bench: unknown target `{bad}`; choose from bridge, lastmile, lm-stless");
        std::process::exit(2);
    }
    let targets: Vec<Target> = all
        .into_iter()
        .filter(|t| wanted.is_empty() || wanted.iter().any(|w| w == t.label))
        .collect();
    // One call each, checked in full, before anything is timed.
    for t in &targets {
        let mut c = Client::connect(t, 0).await;
        let answer = c.call(t).await;
        let v: serde_json::Value = serde_json::from_slice(&answer).expect("JSON answer");
        assert_eq!(v["id"], c.next_id, "{}: {v}", t.label);
        assert_eq!(
            v["result"]["content"][0]["text"], ECHO_TEXT,
            "{}: {v}",
            t.label
        );
        c.close(t).await;
    }
    println!();
    println!(
        "tools/call `echo`: {} interleaved stretches of {:?} per target and client count; \
         lastmile in `required` mode with a bearer token per request, audit on",
        s.rounds, s.stretch
    );
    println!(
        "   {:<9} {:>7} {:>9} {:>8} {:>8}   {:>21}   {:>17}",
        "", "", "", "", "", "cpu µs per call", "per call, server"
    );
    println!(
        "   {:<9} {:>7} {:>9} {:>8} {:>8}   {:>6} {:>6} {:>7}   {:>8} {:>8}",
        "target",
        "clients",
        "calls/s",
        "p50 µs",
        "p99 µs",
        "server",
        "child",
        "clients",
        "switches",
        "r/w sys"
    );
    let mut summary = Vec::new();
    for n in CONCURRENCY {
        // Each target's n clients connect once (on lastmile each opens its MCP session, whose
        // children start on its first call) and warm up before anything is timed; they stay
        // open across the rounds, so the stretches measure the steady state.
        let mut pools: Vec<Vec<Client>> = Vec::new();
        for t in &targets {
            let mut pool = Vec::with_capacity(n);
            for k in 0..n {
                pool.push(Client::connect(t, k).await);
            }
            stretch(t, &mut pool, Duration::from_millis(300)).await;
            pools.push(pool);
        }
        let mut results: Vec<Vec<Measured>> = targets.iter().map(|_| Vec::new()).collect();
        for round in 0..s.rounds {
            for k in 0..targets.len() {
                let i = (round + k) % targets.len();
                let t = &targets[i];
                let (server_pids, child_pids) = if t.is_bridge() {
                    (Vec::new(), vec![bridge.child_pid])
                } else {
                    (vec![gateway.pid], children_of(gateway.pid))
                };
                let before = Cpu::read(&server_pids, &child_pids);
                let mut m = stretch(t, &mut pools[i], s.stretch).await;
                let after = Cpu::read(&server_pids, &child_pids);
                m.cpu = Cpu {
                    clients: m.cpu.clients,
                    ..after.minus(&before)
                };
                results[i].push(m);
            }
        }
        for (t, pool) in targets.iter().zip(pools) {
            for c in pool {
                c.close(t).await;
            }
        }
        let mut rates = vec![0.0; targets.len()];
        for (i, t) in targets.iter().enumerate() {
            let m = Measured::merge(&mut results[i]);
            rates[i] = m.rate();
            let calls = m.calls as f64;
            let us = |u: Usage| u.ticks / clock_ticks_per_sec() * 1e6 / calls;
            println!(
                "   {:<9} {:>7} {:>9.0} {:>8.1} {:>8.1}   {:>6.1} {:>6.1} {:>7.1}   {:>8.2} {:>8.2}",
                t.label,
                n,
                m.rate(),
                m.p50_us(),
                m.p99_us(),
                us(m.cpu.server),
                us(m.cpu.child),
                us(m.cpu.clients),
                m.cpu.server.switches / calls,
                m.cpu.server.syscalls / calls,
            );
        }
        summary.push((n, rates));
    }
    println!();
    for (n, rates) in &summary {
        if !targets[0].is_bridge() {
            break;
        }
        for (t, rate) in targets.iter().zip(rates).skip(1) {
            println!(
                "   {n:>2} client(s): {:<9} {rate:>6.0} calls/s, bridge {:>6.0} calls/s, ratio {:.2}; \
                 target ≥ {TARGET_CALLS_PER_SEC:.0} calls/s: {}",
                t.label,
                rates[0],
                rate / rates[0],
                if *rate >= TARGET_CALLS_PER_SEC {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
    }
    gateway.stop().await;
    bridge.stop();
}

// ---------------------------------------------------------------------------------------------
// Load: n clients, each on its own keep-alive connection, one call at a time

struct Target {
    label: &'static str,
    addr: SocketAddr,
    /// The `Authorization` header value, if the target wants one.
    auth: Option<String>,
    /// 2026-07-28 without a session (every client of the identity shares one session and its
    /// children), rather than a 2025-11-25 session per client (each with its own children).
    stateless: bool,
    tool: &'static str,
}

impl Target {
    fn is_bridge(&self) -> bool {
        self.auth.is_none()
    }
}

#[derive(Default)]
struct Measured {
    calls: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: Cpu,
}

impl Measured {
    fn merge(parts: &mut [Measured]) -> Measured {
        let mut m = Measured::default();
        for p in parts.iter_mut() {
            m.calls += p.calls;
            m.elapsed += p.elapsed;
            m.latencies.append(&mut p.latencies);
            m.cpu = m.cpu.plus(&p.cpu);
        }
        m.latencies.sort_unstable();
        m
    }

    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn at(&self, q: f64) -> f64 {
        let v = &self.latencies;
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1e6
    }

    fn p50_us(&self) -> f64 {
        self.at(0.50)
    }

    fn p99_us(&self) -> f64 {
        self.at(0.99)
    }
}

/// Every client of `clients` calling `echo` back to back for `length`.
async fn stretch(t: &Target, clients: &mut [Client], length: Duration) -> Measured {
    let start = Instant::now();
    let deadline = start + length;
    let tasks: Vec<_> = clients
        .iter_mut()
        .map(|c| async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let answer = c.call(t).await;
                latencies.push(sent.elapsed());
                assert!(
                    memchr::memmem::find(&answer, ECHO_TEXT.as_bytes()).is_some()
                        && memchr::memmem::find(&answer, b"\"isError\":true").is_none(),
                    "{}: {}",
                    t.label,
                    String::from_utf8_lossy(&answer)
                );
            }
            latencies
        })
        .collect();
    let clients_before = clients_usage();
    let per_client = futures::future::join_all(tasks).await;
    let elapsed = start.elapsed();
    let clients = clients_usage().minus(clients_before);
    let latencies: Vec<Duration> = per_client.into_iter().flatten().collect();
    Measured {
        calls: latencies.len() as u64,
        elapsed,
        latencies,
        cpu: Cpu {
            clients,
            ..Cpu::default()
        },
    }
}

/// A minimal HTTP/1.1 client on one keep-alive connection.
struct Client {
    reader: BufReader<TcpStream>,
    session: Option<String>,
    head: String,
    /// The next request id; each client has its own range, so ids never collide.
    next_id: u64,
}

impl Client {
    async fn connect(t: &Target, k: usize) -> Client {
        let stream = TcpStream::connect(t.addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut head = format!(
            "POST /mcp HTTP/1.1\r\nhost: {}\r\nuser-agent: lastmile-bench/1.0 (http)\r\n\
             content-type: application/json\r\naccept: application/json, text/event-stream\r\n",
            t.addr
        );
        if let Some(auth) = &t.auth {
            head.push_str(&format!("authorization: {auth}\r\n"));
        }
        let mut c = Client {
            reader: BufReader::with_capacity(16 * 1024, stream),
            session: None,
            head,
            next_id: (k as u64 + 1) * 1_000_000_000,
        };
        if t.stateless {
            c.head.push_str("mcp-protocol-version: 2026-07-28\r\n");
        } else if t.auth.is_some() {
            // lastmile: a 2025-11-25 session, as today's SDK clients open one.
            let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "lastmile-bench", "version": "1.0"}}});
            let (status, session, body) = c.post(init.to_string().as_bytes()).await;
            assert_eq!(
                status,
                200,
                "initialize: {}",
                String::from_utf8_lossy(&body)
            );
            c.session = Some(session.expect("an Mcp-Session-Id"));
            c.head.push_str(&format!(
                "mcp-session-id: {}\r\nmcp-protocol-version: 2025-11-25\r\n",
                c.session.as_deref().unwrap_or_default()
            ));
            let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            let (status, _, body) = c.post(note.to_string().as_bytes()).await;
            assert_eq!(
                status,
                202,
                "initialized: {}",
                String::from_utf8_lossy(&body)
            );
        }
        c
    }

    async fn call(&mut self, t: &Target) -> Vec<u8> {
        self.next_id += 1;
        let id = self.next_id;
        // 2026-07-28 carries the client's version and capabilities in every request's `_meta`.
        let meta = if t.stateless {
            r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"lastmile-bench","version":"1.0"}}"#
        } else {
            ""
        };
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{}","arguments":{{"text":"{ECHO_TEXT}"}}{meta}}}}}"#,
            t.tool
        );
        let (status, _, answer) = self.post(body.as_bytes()).await;
        assert_eq!(
            status,
            200,
            "{}: {}",
            t.label,
            String::from_utf8_lossy(&answer)
        );
        answer
    }

    /// Close the MCP session (lastmile), so sessions do not pile up across stretches.
    async fn close(mut self, t: &Target) {
        if self.session.is_none() {
            return;
        }
        let head = self.head.replacen("POST", "DELETE", 1);
        let req = format!("{head}content-length: 0\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .await
            .expect("write");
        let (status, _, body) = self.read_answer().await;
        assert!(
            status == 200 || status == 204,
            "{}: DELETE: {status} {}",
            t.label,
            String::from_utf8_lossy(&body)
        );
    }

    async fn post(&mut self, body: &[u8]) -> (u16, Option<String>, Vec<u8>) {
        let mut req = Vec::with_capacity(self.head.len() + body.len() + 32);
        req.extend_from_slice(self.head.as_bytes());
        req.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body);
        self.reader
            .get_mut()
            .write_all(&req)
            .await
            .expect("write request");
        self.read_answer().await
    }

    /// Status, `Mcp-Session-Id` and body of one answer (Content-Length or chunked).
    async fn read_answer(&mut self) -> (u16, Option<String>, Vec<u8>) {
        let mut line = String::new();
        self.reader.read_line(&mut line).await.expect("status line");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line, got {line:?}"));
        let mut length = None;
        let mut chunked = false;
        let mut session = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            } else if k.eq_ignore_ascii_case("mcp-session-id") {
                session = Some(v.to_string());
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line).await.expect("chunk size");
                let size = usize::from_str_radix(line.trim_end(), 16).expect("chunk size");
                let start = body.len();
                body.resize(start + size + 2, 0);
                self.reader
                    .read_exact(&mut body[start..])
                    .await
                    .expect("chunk");
                body.truncate(start + size);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.reader.read_exact(&mut body).await.expect("body");
        }
        (status, session, body)
    }
}

// ---------------------------------------------------------------------------------------------
// lastmile serve --http, required auth

struct Gateway {
    _dir: TempDir,
    profile: String,
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    token: String,
}

impl Gateway {
    async fn start() -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let profile = format!("benchhttp{:x}", std::process::id());
        let p = dir.path();
        std::fs::create_dir_all(p.join("config/servers.d")).unwrap();
        std::fs::create_dir_all(p.join("home")).unwrap();
        std::fs::write(
            p.join("config/lastmile.toml"),
            "[auth]\nmode = \"required\"\n\n\
             # The bench measures the gateway, not the limits: rates and caps no run reaches.\n\
             [rate_limit]\nbase_per_minute = 100000000\n\n\
             [http]\nmax_sessions = 256\nmax_sessions_per_identity = 256\n\n\
             [http.scanner]\nper_minute = 100000000\nloopback_per_minute = 100000000\n",
        )
        .unwrap();
        std::fs::write(
            p.join("config/servers.d/fx.toml"),
            format!(
                "command = {FIXTURE:?}\nargs = [\"--name\", \"fx\", \"--no-resources\"]\ntiers = [\"user\"]\n"
            ),
        )
        .unwrap();
        let path = |s: &str| p.join(s).to_string_lossy().into_owned();
        let env = [
            (
                "PATH".to_string(),
                std::env::var("PATH").unwrap_or_default(),
            ),
            ("HOME".to_string(), path("home")),
            ("LASTMILE_CONFIG_DIR".to_string(), path("config")),
            ("LASTMILE_DATA_DIR".to_string(), path("data")),
            ("LASTMILE_PROFILE".to_string(), profile.clone()),
            (
                "LASTMILE_SECRETS_BACKEND".to_string(),
                "keyutils".to_string(),
            ),
        ];
        let command = |args: &[&str]| {
            let mut c = tokio::process::Command::new(LASTMILE);
            c.args(args).env_clear().envs(env.iter().cloned());
            c
        };
        let out = command(&["secrets", "generate-signing-key"])
            .output()
            .await
            .expect("run lastmile");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = command(&[
            "token", "issue", "--sub", "bench", "--tier", "user", "--ttl", "1h",
        ])
        .output()
        .await
        .expect("run lastmile");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();

        let mut child = command(&["serve", "--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn lastmile serve --http");
        let pid = child.id().expect("pid");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("lastmile says where it listens within 30 s")
                .expect("read stderr")
                .expect("lastmile serve --http ended early");
            if let Some(rest) = line.strip_prefix("lastmile: serving MCP at http://") {
                break rest.trim_end_matches("/mcp").parse().expect("address");
            }
            eprintln!("  lastmile: {line}");
        };
        // Its later warnings (if any) show on the bench's stderr.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("  lastmile: {line}");
            }
        });
        Gateway {
            _dir: dir,
            profile,
            child,
            pid,
            addr,
            token,
        }
    }

    async fn stop(mut self) {
        // SIGTERM lets it end its sessions; Windows has no such signal for a windowless
        // process, so there it is killed below.
        #[cfg(unix)]
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("http bench: lastmile still running 10 s after SIGTERM; killing it");
            let _ = self.child.kill().await;
        }
        // Keyring entries outlive the process: remove what this profile stored.
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

// ---------------------------------------------------------------------------------------------
// The bare bridge: HTTP POST → one line to the child's stdin → the line with the same id back

#[derive(Deserialize)]
struct IdOnly {
    id: Option<u64>,
}

struct BridgeState {
    to_child: mpsc::UnboundedSender<Bytes>,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Bytes>>>,
}

struct Bridge {
    addr: SocketAddr,
    child_pid: u32,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bridge {
    async fn start() -> Bridge {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(BRIDGE_THREAD)
                .enable_all()
                .build()
                .expect("bridge runtime");
            rt.block_on(bridge_main(ready_tx, shutdown_rx));
        });
        let (addr, child_pid) = ready_rx.await.expect("the bridge starts");
        Bridge {
            addr,
            child_pid,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn bridge_main(ready: oneshot::Sender<(SocketAddr, u32)>, shutdown: oneshot::Receiver<()>) {
    let mut child = tokio::process::Command::new(FIXTURE)
        .args(["--name", "fx"])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the fixture");
    let child_pid = child.id().expect("pid");
    let mut stdin = BufWriter::new(child.stdin.take().expect("stdin"));
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));

    // The MCP handshake with the child, once, before any client comes.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "bridge", "version": "1.0"}}});
    stdin
        .write_all(format!("{init}\n").as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let mut line = Vec::new();
    stdout.read_until(b'\n', &mut line).await.unwrap();
    assert!(
        memchr::memmem::find(&line, b"\"result\"").is_some(),
        "initialize: {}",
        String::from_utf8_lossy(&line)
    );
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    stdin.flush().await.unwrap();

    let (to_child, mut lines_in) = mpsc::unbounded_channel::<Bytes>();
    let state = Arc::new(BridgeState {
        to_child,
        waiting: Mutex::new(HashMap::new()),
    });
    // Writer: every body as one line; flushed when no other is queued.
    tokio::spawn(async move {
        while let Some(body) = lines_in.recv().await {
            stdin.write_all(&body).await.unwrap();
            stdin.write_all(b"\n").await.unwrap();
            while let Ok(more) = lines_in.try_recv() {
                stdin.write_all(&more).await.unwrap();
                stdin.write_all(b"\n").await.unwrap();
            }
            if stdin.flush().await.is_err() {
                break;
            }
        }
    });
    // Reader: each answer to the request that waits for its id.
    let reader_state = Arc::clone(&state);
    tokio::spawn(async move {
        loop {
            let mut line = Vec::with_capacity(512);
            match stdout.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let Ok(IdOnly { id: Some(id) }) = serde_json::from_slice::<IdOnly>(&line) else {
                continue; // a notification
            };
            let waiter = reader_state.waiting.lock().unwrap().remove(&id);
            if let Some(w) = waiter {
                let _ = w.send(Bytes::from(line));
            }
        }
    });

    let app = Router::new()
        .route("/mcp", post(bridge_post))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    ready.send((addr, child_pid)).unwrap();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = shutdown.await;
        })
        .await
        .unwrap();
    let _ = child.kill().await;
}

async fn bridge_post(State(state): State<Arc<BridgeState>>, body: Bytes) -> Response {
    let Ok(IdOnly { id: Some(id) }) = serde_json::from_slice::<IdOnly>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (tx, rx) = oneshot::channel();
    state.waiting.lock().unwrap().insert(id, tx);
    if state.to_child.send(body).is_err() {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    match rx.await {
        Ok(answer) => ([(header::CONTENT_TYPE, "application/json")], answer).into_response(),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// CPU time, context switches and read/write system calls, from /proc

/// Counters summed over some threads.
#[derive(Default, Clone, Copy)]
struct Usage {
    /// utime + stime, in clock ticks.
    ticks: f64,
    /// Voluntary and involuntary context switches.
    switches: f64,
    /// Read-type and write-type system calls (`syscr` + `syscw`).
    syscalls: f64,
}

impl Usage {
    fn minus(self, o: Usage) -> Usage {
        Usage {
            ticks: self.ticks - o.ticks,
            switches: self.switches - o.switches,
            syscalls: self.syscalls - o.syscalls,
        }
    }

    fn plus(self, o: Usage) -> Usage {
        Usage {
            ticks: self.ticks + o.ticks,
            switches: self.switches + o.switches,
            syscalls: self.syscalls + o.syscalls,
        }
    }

    /// One thread, from its `/proc/.../task/TID` folder.
    fn of_task(dir: &std::path::Path) -> Usage {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let field = |text: &str, key: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let status = read("status");
        let io = read("io");
        Usage {
            ticks: utime_stime(&read("stat")).unwrap_or(0.0),
            switches: field(&status, "voluntary_ctxt_switches:")
                + field(&status, "nonvoluntary_ctxt_switches:"),
            syscalls: field(&io, "syscr:") + field(&io, "syscw:"),
        }
    }

    /// Every thread of `pid` whose name `keep` accepts.
    fn of_process(pid: &str, keep: impl Fn(&str) -> bool) -> Usage {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Usage::default();
        };
        tasks
            .flatten()
            .filter(|t| {
                keep(
                    std::fs::read_to_string(t.path().join("comm"))
                        .unwrap_or_default()
                        .trim_end(),
                )
            })
            .map(|t| Usage::of_task(&t.path()))
            .fold(Usage::default(), Usage::plus)
    }
}

/// Usage by side of one stretch.
#[derive(Default, Clone, Copy)]
struct Cpu {
    /// lastmile's own process, or the bridge's runtime threads (inside this process).
    server: Usage,
    /// The processes under the server (lastmile's children; the bridge's fixture).
    child: Usage,
    /// This process's other threads: the clients.
    clients: Usage,
}

impl Cpu {
    /// The server and child sides now (`server` empty: the bridge's threads).
    fn read(server: &[u32], children: &[u32]) -> Cpu {
        let server = if server.is_empty() {
            Usage::of_process("self", |name| name.starts_with(BRIDGE_THREAD))
        } else {
            server
                .iter()
                .map(|p| Usage::of_process(&p.to_string(), |_| true))
                .fold(Usage::default(), Usage::plus)
        };
        Cpu {
            server,
            child: children
                .iter()
                .map(|p| Usage::of_process(&p.to_string(), |_| true))
                .fold(Usage::default(), Usage::plus),
            clients: Usage::default(),
        }
    }

    fn minus(&self, before: &Cpu) -> Cpu {
        Cpu {
            server: self.server.minus(before.server),
            child: self.child.minus(before.child),
            clients: self.clients.minus(before.clients),
        }
    }

    fn plus(&self, o: &Cpu) -> Cpu {
        Cpu {
            server: self.server.plus(o.server),
            child: self.child.plus(o.child),
            clients: self.clients.plus(o.clients),
        }
    }
}

/// The clients: every thread of this process but the bridge's.
fn clients_usage() -> Usage {
    Usage::of_process("self", |name| !name.starts_with(BRIDGE_THREAD))
}

/// utime + stime of a `stat` line (fields 14 and 15; 12 and 13 after the name's `)`).
fn utime_stime(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
}

fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn clock_ticks_per_sec() -> f64 {
    // USER_HZ is 100 on every Linux this runs on; getconf confirms it where available.
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0)
    })
}
