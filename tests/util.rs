//! Test harness: a temporary HOME, config folder and data folder per test; the real `lastmile`
//! binary started as a subprocess; rmcp's client speaking MCP to it over stdio.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use std::sync::{Arc, Mutex};

use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ErrorData as McpError, ServiceExt};
use serde_json::Value;
use tempfile::TempDir;

pub const LASTMILE: &str = env!("CARGO_BIN_EXE_lastmile");
pub const FIXTURE: &str = env!("CARGO_BIN_EXE_lastmile-fixture");
/// How many tools one fixture instance offers.
pub const FIXTURE_TOOLS: usize = 18;

/// A hermetic world for one test: its own HOME, config and data folders, and its own profile
/// name, hence its own keyring namespace (`lastmile:<profile>`), emptied when the world drops.
pub struct World {
    pub dir: TempDir,
    pub profile: String,
    pub backend: String,
}

/// The keyring backend tests use: `LASTMILE_TEST_KEYRING` (`keyutils`, `secret-service`, …),
/// else the platform's own: kernel keyutils, which every Linux machine has; the Credential
/// Manager on Windows; the login Keychain on macOS.
pub fn test_backend() -> String {
    let native = if cfg!(windows) {
        "windows"
    } else if cfg!(target_os = "macos") {
        "keychain"
    } else {
        "keyutils"
    };
    std::env::var("LASTMILE_TEST_KEYRING").unwrap_or_else(|_| native.into())
}

/// Why a test cannot run on this runner, from `LASTMILE_TEST_SKIP` (a comma-separated list of
/// names that the CI script sets for one runner, e.g. under Wine), printed so the skip shows.
pub fn skipped_here(name: &str) -> bool {
    let skip = std::env::var("LASTMILE_TEST_SKIP").unwrap_or_default();
    let hit = skip.split(',').any(|s| s.trim() == name);
    if hit {
        eprintln!("skipped on this runner: {name} (LASTMILE_TEST_SKIP)");
    }
    hit
}

/// Variables Windows programs need to work at all (the profile folders, the system root); a
/// test's `lastmile` gets them from the test's own environment.
#[cfg(windows)]
const WINDOWS_BASE: &[&str] = &[
    "SystemRoot",
    "SystemDrive",
    "windir",
    "PATHEXT",
    "COMSPEC",
    "TEMP",
    "TMP",
    "USERPROFILE",
    "USERNAME",
    "APPDATA",
    "LOCALAPPDATA",
    "ProgramData",
    "ProgramFiles",
];

impl Drop for World {
    fn drop(&mut self) {
        // Keyring entries outlive the test: remove what this world's profile stored.
        let Ok(request) = self.backend.parse::<lastmile::secrets::BackendRequest>() else {
            return;
        };
        if let Ok(opened) =
            lastmile::secrets::open_store(request, &format!("lastmile:{}", self.profile))
        {
            for key in opened.store.list().unwrap_or_default() {
                let _ = opened.store.delete(&key);
            }
        }
    }
}

impl World {
    pub fn new() -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let w = World {
            dir: tempfile::tempdir().expect("tempdir"),
            profile: format!("t{:x}-{n}-{:x}", std::process::id(), nanos & 0xffff),
            backend: test_backend(),
        };
        std::fs::create_dir_all(w.servers_dir()).unwrap();
        std::fs::create_dir_all(w.home()).unwrap();
        // Tests not about identity run as the fixed test identity (tier admin); identity tests
        // write their own lastmile.toml.
        w.profile_file("[auth]\nmode = \"disabled\"\n");
        w
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }
    pub fn servers_dir(&self) -> PathBuf {
        self.config_dir().join("servers.d")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `servers.d/NAME.toml`.
    pub fn server_file(&self, name: &str, body: &str) -> &Self {
        std::fs::write(self.servers_dir().join(format!("{name}.toml")), body).unwrap();
        self
    }

    /// A fixture server named `name` with extra `args` and more TOML lines.
    pub fn fixture(&self, name: &str, args: &[&str], extra: &str) -> &Self {
        let mut all = vec!["--name".to_string(), name.to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let body = format!(
            "command = {:?}\nargs = {:?}\ntiers = [\"admin\", \"user\", \"service\", \"a2a\", \"mcp\", \"anonymous\"]\n{extra}\n",
            FIXTURE, all
        );
        self.server_file(name, &body)
    }

    pub fn profile_file(&self, body: &str) -> &Self {
        std::fs::write(self.config_dir().join("lastmile.toml"), body).unwrap();
        self
    }

    /// A `lastmile` command with a cleared environment pointing at this world.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(LASTMILE);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("LASTMILE_CONFIG_DIR", self.config_dir())
            .env("LASTMILE_DATA_DIR", self.data_dir())
            .env("LASTMILE_PROFILE", &self.profile)
            .env("LASTMILE_SECRETS_BACKEND", &self.backend)
            .env("LASTMILE_ALLOW_DISABLED_AUTH", "1")
            .kill_on_drop(true);
        // The Secret Service backend finds its session bus through these.
        for var in ["DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        #[cfg(windows)]
        for var in WINDOWS_BASE {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd
    }

    /// Store a secret in this world's keyring namespace, the way a user does (value on stdin).
    pub async fn set_secret(&self, name: &str, value: &str) {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .command(&["secrets", "set", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("lastmile secrets set");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(value.as_bytes())
            .await
            .expect("write value");
        drop(stdin);
        let out = child.wait_with_output().await.expect("wait");
        assert!(
            out.status.success(),
            "secrets set {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Switch this world to `required` auth (plus extra profile TOML) and give it a signing key.
    pub async fn require_auth(&self, extra_profile: &str) -> &Self {
        self.profile_file(&format!("[auth]\nmode = \"required\"\n{extra_profile}"));
        let out = self.run(&["secrets", "generate-signing-key"]).await;
        assert!(
            out.status.success(),
            "generate-signing-key: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self
    }

    /// Mint a session token for `sub` at `tier`.
    pub async fn token(&self, sub: &str, tier: &str) -> String {
        let out = self
            .run(&[
                "token", "issue", "--sub", sub, "--tier", tier, "--ttl", "1h",
            ])
            .await;
        assert!(
            out.status.success(),
            "token issue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Run a non-serving command to completion.
    pub async fn run(&self, args: &[&str]) -> std::process::Output {
        let run = || self.command(args).stdin(Stdio::null()).output();
        let out = run().await;
        // Wine's CreateProcess now and then fails with ERROR_INTERNAL_ERROR (1359) before the
        // process exists; nothing ran, so trying once more changes nothing of the test.
        #[cfg(windows)]
        let out = match out {
            Err(e) if e.raw_os_error() == Some(1359) => run().await,
            out => out,
        };
        out.expect("run lastmile")
    }

    /// Start `lastmile serve` and connect as an MCP client.
    pub async fn serve(&self) -> Session {
        self.serve_with(|_| {}).await
    }

    pub async fn serve_with(&self, f: impl FnOnce(&mut tokio::process::Command)) -> Session {
        self.serve_as(Recorder::default(), f).await
    }

    /// Start `lastmile serve` and connect with a client that records what it is sent and, when
    /// it declares the capabilities, answers sampling, elicitation and roots.
    pub async fn serve_as(
        &self,
        client: Recorder,
        f: impl FnOnce(&mut tokio::process::Command),
    ) -> Session {
        let mut cmd = self.command(&["serve"]);
        f(&mut cmd);
        let (transport, stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lastmile serve");
        let pid = transport.id().expect("pid");
        let stderr_task = tokio::spawn(async move {
            let mut out = String::new();
            if let Some(mut e) = stderr {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut out).await;
            }
            out
        });
        let recorder = client.clone();
        let client = match client.serve(transport).await {
            Ok(client) => client,
            Err(e) => {
                // What lastmile said on its way out is the diagnosis.
                let said = tokio::time::timeout(Duration::from_secs(5), stderr_task)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                panic!("MCP handshake with lastmile: {e}\nits stderr:\n{said}");
            }
        };
        Session {
            client: Some(client),
            recorder,
            pid,
            stderr: Some(stderr_task),
        }
    }

    /// `audit export --jsonl`, one value per row.
    pub async fn audit_export(&self) -> Vec<Value> {
        let out = self.run(&["audit", "export", "--jsonl"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("JSON lines"))
            .collect()
    }

    /// Everything in the log folder, concatenated.
    pub fn logs(&self) -> String {
        read_tree(&self.data_dir())
    }
}

pub fn read_tree(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push_str(&read_tree(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

/// A client session with a running `lastmile serve`.
pub struct Session {
    pub client: Option<RunningService<RoleClient, Recorder>>,
    pub recorder: Recorder,
    pub pid: u32,
    stderr: Option<tokio::task::JoinHandle<String>>,
}

impl Session {
    pub fn client(&self) -> &RunningService<RoleClient, Recorder> {
        self.client.as_ref().expect("open session")
    }

    pub async fn tool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .client()
            .list_all_tools()
            .await
            .expect("tools/list")
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        names
    }

    pub async fn call(
        &self,
        name: &str,
        args: Value,
    ) -> Result<CallToolResult, rmcp::ServiceError> {
        let mut p = CallToolRequestParams::new(name.to_string());
        p.arguments = Some(as_object(args));
        self.client().call_tool(p).await
    }

    /// Close stdin (EOF), wait for lastmile to exit, and return its stderr.
    pub async fn close(mut self) -> String {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), client.cancel()).await;
        }
        match self.stderr.take() {
            Some(t) => tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default(),
            None => String::new(),
        }
    }
}

pub fn as_object(v: Value) -> JsonObject {
    v.as_object().cloned().unwrap_or_default()
}

/// The text of the first content block of a result.
pub fn text_of(r: &CallToolResult) -> String {
    r.content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// A process's state letter from /proc (R, S, T, Z, …), or "" when it is gone.
#[cfg(target_os = "linux")]
pub fn process_state(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// Whether a process is alive (and not a zombie).
#[cfg(target_os = "linux")]
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Whether a process is alive (and not a zombie).
#[cfg(not(target_os = "linux"))]
pub fn alive(pid: u32) -> bool {
    platform::alive(pid)
}

/// Kill a process outright (SIGKILL; TerminateProcess on Windows), as a crash or the OOM killer
/// would.
pub fn kill_hard(pid: u32) {
    #[cfg(unix)]
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    #[cfg(not(unix))]
    assert!(platform::kill(pid), "cannot kill process {pid}");
}

/// Ask a process to stop (SIGTERM). Unix only: Windows has no signal a test can send to one
/// windowless process (console events go to a whole console).
#[cfg(unix)]
pub fn terminate(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
}

/// The command line of every process we can see, one string each.
pub fn command_lines() -> Vec<(String, String)> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                Some((
                    e.path().display().to_string(),
                    String::from_utf8_lossy(&cmdline).into_owned(),
                ))
            })
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        platform::command_lines()
    }
}

#[cfg(not(target_os = "linux"))]
mod platform {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

    fn system(pid: Option<u32>) -> System {
        let mut sys = System::new();
        let which = pid.map(|p| [Pid::from_u32(p)]);
        let what = match &which {
            Some(p) => ProcessesToUpdate::Some(p),
            None => ProcessesToUpdate::All,
        };
        sys.refresh_processes_specifics(
            what,
            true,
            ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always),
        );
        sys
    }

    pub fn alive(pid: u32) -> bool {
        system(Some(pid))
            .process(Pid::from_u32(pid))
            .is_some_and(|p| p.exists())
    }

    pub fn kill(pid: u32) -> bool {
        system(Some(pid))
            .process(Pid::from_u32(pid))
            .is_some_and(|p| p.kill())
    }

    pub fn command_lines() -> Vec<(String, String)> {
        system(None)
            .processes()
            .iter()
            .map(|(pid, p)| {
                let line: Vec<String> = p
                    .cmd()
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                (pid.to_string(), line.join(" "))
            })
            .collect()
    }
}

/// Poll until `f` is true, up to `limit`. Polling an observable condition (not a fixed sleep).
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Read a pid file the fixture writes: "PID [GRANDCHILD_PID]".
pub async fn read_pids(path: &Path) -> Vec<u32> {
    assert!(
        eventually(Duration::from_secs(10), || path.exists()
            && std::fs::read_to_string(path)
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false))
        .await,
        "pid file {path:?} never appeared"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// A test client: records notifications; answers server-to-client requests when it declares the
/// capability for them.
#[derive(Clone, Default)]
pub struct Recorder {
    pub capable: bool,
    pub events: Arc<Mutex<Vec<Value>>>,
}

impl Recorder {
    /// A client declaring roots, sampling and elicitation.
    pub fn capable() -> Self {
        Recorder {
            capable: true,
            ..Default::default()
        }
    }

    fn record(&self, v: Value) {
        self.events.lock().unwrap().push(v);
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Wait until an event satisfies `f` (polling what was recorded, bounded).
    pub async fn wait_for(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let start = std::time::Instant::now();
        loop {
            if let Some(v) = self.events().into_iter().find(|v| f(v)) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never saw {what}; got {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[allow(deprecated)]
impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        let caps = if self.capable {
            ClientCapabilities::builder()
                .enable_roots()
                .enable_sampling()
                .enable_elicitation()
                .build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(caps, Implementation::new("lastmile-tests", "0"))
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        let asked = serde_json::to_string(&params.messages).unwrap_or_default();
        Ok(CreateMessageResult::new(
            SamplingMessage::new(Role::Assistant, format!("sampled for {asked}")),
            "test-model".into(),
        ))
    }

    async fn list_roots(
        &self,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        Ok(ListRootsResult::new(vec![Root::new("file:///test/root")]))
    }

    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        Ok(ElicitResult::new(ElicitationAction::Accept)
            .with_content(serde_json::json!({ "answer": "yes" })))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        self.record(serde_json::json!({ "progress": params }));
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        self.record(serde_json::json!({ "log": params }));
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        self.record(serde_json::json!({ "updated": params.uri }));
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.record(serde_json::json!({ "tools_changed": true }));
    }
}

/// A client that speaks raw JSON-RPC lines to `lastmile serve`, for what rmcp's client will not
/// send: malformed lines, old protocol versions.
pub struct RawClient {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl RawClient {
    pub fn start(w: &World) -> Self {
        Self::start_with(w, |_| {})
    }

    /// Start `lastmile serve` with a change to its command (a token in its environment, say).
    pub fn start_with(w: &World, f: impl FnOnce(&mut tokio::process::Command)) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = w.command(&["serve"]);
        f(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn lastmile serve");
        let stdin = child.stdin.take();
        let lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        RawClient {
            child,
            stdin,
            lines,
        }
    }

    /// Write one line (a newline is added).
    pub async fn send_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().expect("open stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
    }

    /// `initialize` at `version`, then `notifications/initialized`; returns the answer line.
    pub async fn initialize(&mut self, version: &str) -> String {
        let init = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":version,"capabilities":{},"clientInfo":{"name":"raw","version":"0"}}});
        self.send_line(&init.to_string()).await;
        let answer = self.next_line().await.expect("an answer to initialize");
        self.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        answer
    }

    /// The next line lastmile writes, waiting up to 10 s.
    pub async fn next_line(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .ok()?
            .ok()?
    }

    /// Send request `id` and read lines until its answer; returns the answer and every line
    /// read on the way (notifications and requests lastmile sent meanwhile), answer included.
    pub async fn request(&mut self, id: u64, method: &str, params: Value) -> (Value, Vec<String>) {
        let line =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_line(&line.to_string()).await;
        let mut seen = Vec::new();
        loop {
            let line = self
                .next_line()
                .await
                .unwrap_or_else(|| panic!("no answer to {method} (id {id}); saw {seen:?}"));
            seen.push(line.clone());
            let v: Value = serde_json::from_str(&line).expect("lastmile writes JSON lines");
            if v.get("id") == Some(&serde_json::json!(id)) && v.get("method").is_none() {
                return (v, seen);
            }
        }
    }

    /// Close stdin and wait for lastmile to exit.
    pub async fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("lastmile exits after EOF")
            .expect("wait")
    }
}
