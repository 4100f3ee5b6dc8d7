//! A child can read only its own environment (issue #9, point 4): no keyring entry of the
//! profile by any keyring call, nothing of lastmile through /proc, ptrace or process_vm_readv —
//! proved by an adversarial child (`keyring_probe` in the fixture) that tries all of it and
//! reports the SHA-256 of everything it got.

use serde_json::{Value, json};

use crate::util::*;

fn sha(value: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A secret value long and random enough for the store.
fn value(tag: &str) -> String {
    use secrecy::ExposeSecret;
    let random = lastmile::secrets::random_secret(24).unwrap();
    let tail: String = random
        .expose_secret()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{tag}{tail}")
}

/// The profile's own entries (signing secret, audit key), read the way lastmile reads them.
fn internal(w: &World, which: lastmile::secrets::Internal) -> String {
    use secrecy::ExposeSecret;
    let opened = lastmile::secrets::open_store(
        w.backend.parse().unwrap(),
        &format!("lastmile:{}", w.profile),
    )
    .unwrap();
    let value = opened
        .store
        .get(&lastmile::secrets::SecretKey::Internal(which))
        .unwrap()
        .unwrap_or_else(|| panic!("{which:?} is not in the keyring"));
    value.expose_secret().to_string()
}

/// Call the probe and return its report.
async fn probe(s: &Session, tool: &str) -> Value {
    let r = s.call(tool, json!({})).await.expect("keyring_probe call");
    r.structured_content.expect("the probe's report")
}

fn attempts<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

fn got(report: &Value) -> Vec<String> {
    report["got"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// A user-tier session with a signing secret, an admin-only server holding a secret, a probe
/// and a neighbour with secrets of their own; the token reaches lastmile through LASTMILE_TOKEN.
struct Setup {
    w: World,
    token: String,
    admin_secret: String,
    neighbour_secret: String,
}

async fn setup(probe_extra: &str) -> Setup {
    let w = World::new();
    w.require_auth("").await;
    let admin_secret = value("adminonly");
    let neighbour_secret = value("neighbour");
    w.set_secret("ADMIN_ONLY_KEY", &admin_secret).await;
    w.set_secret("NEIGHBOUR_KEY", &neighbour_secret).await;
    w.set_secret("PROBE_KEY", &value("probe")).await;
    // No `tiers`: admin only, never spawned for a user session.
    w.server_file(
        "vault",
        &format!("command = {FIXTURE:?}\nargs = [\"--name\", \"vault\"]\nsecrets = [\"ADMIN_ONLY_KEY\"]\n"),
    );
    w.fixture("neighbour", &[], "secrets = [\"NEIGHBOUR_KEY\"]");
    w.fixture(
        "probe",
        &["--tool", "keyring_probe"],
        &format!("secrets = [\"PROBE_KEY\"]\n{probe_extra}"),
    );
    let token = w.token("mallory", "user").await;
    Setup {
        w,
        token,
        admin_secret,
        neighbour_secret,
    }
}

async fn serve(s: &Setup) -> Session {
    let token = s.token.clone();
    s.w.serve_with(move |c| {
        c.env("LASTMILE_TOKEN", token);
    })
    .await
}

#[tokio::test]
async fn a_child_reads_no_keyring_entry_and_nothing_of_lastmile() {
    let setup = setup("").await;
    let s = serve(&setup).await;
    let names = s.tool_names().await;
    assert!(
        names.contains(&"probe__keyring_probe".to_string()),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("vault__")), "{names:?}");
    let report = probe(&s, "probe__keyring_probe").await;
    // The audit key exists once serve has run.
    let secrets = [
        (
            "signing secret",
            internal(&setup.w, lastmile::secrets::Internal::SigningSecret),
        ),
        (
            "audit key",
            internal(&setup.w, lastmile::secrets::Internal::AuditKey),
        ),
        ("admin-only server's secret", setup.admin_secret.clone()),
        ("session token", setup.token.clone()),
        ("a sibling's secret", setup.neighbour_secret.clone()),
    ];
    let got = got(&report);
    for (what, secret) in &secrets {
        assert!(
            !got.contains(&sha(secret)),
            "the child read the {what}: {report:#}"
        );
    }

    // It saw the profile's entries (names are visible in /proc/keys) and every read failed.
    if setup.w.backend == "keyutils" {
        let entries = report["lastmile_entries"].as_array().unwrap();
        assert!(
            entries
                .iter()
                .any(|e| e.as_str().unwrap().contains(&setup.w.profile)),
            "the probe found none of the profile's entries to try: {report:#}"
        );
    }
    for kind in [
        "key-by-id",
        "keyring",
        "keyring-links",
        "keyring-search",
        "ptrace",
        "process_vm_readv",
    ] {
        for a in attempts(&report, kind) {
            assert_eq!(a["ok"], false, "{kind} succeeded: {a}");
        }
    }
    assert!(!attempts(&report, "keyring").is_empty(), "{report:#}");
    assert_eq!(report["own_key"]["ok"], false, "{report:#}");

    // lastmile itself: nothing under /proc/<ppid> that exposes its environment, memory or fds.
    let parent = format!("parent {}", s.pid);
    assert_eq!(
        report["ppid"], s.pid,
        "the probe's parent is lastmile (the trampoline execs)"
    );
    for kind in ["environ", "mem", "maps", "fd", "ptrace", "process_vm_readv"] {
        let a: Vec<_> = attempts(&report, kind)
            .into_iter()
            .filter(|a| a["target"] == parent.as_str())
            .collect();
        assert_eq!(a.len(), 1, "{kind}: {report:#}");
        assert_eq!(
            a[0]["ok"], false,
            "the child read lastmile's {kind}: {}",
            a[0]
        );
    }
    // So are its siblings' (the neighbour and the reaper).
    let siblings = report["siblings"].as_array().unwrap();
    assert!(siblings.len() >= 2, "{report:#}");
    for pid in siblings {
        let target = format!("sibling {pid}");
        for kind in ["environ", "mem", "maps", "fd", "ptrace", "process_vm_readv"] {
            let a: Vec<_> = attempts(&report, kind)
                .into_iter()
                .filter(|a| a["target"] == target.as_str())
                .collect();
            assert_eq!(a.len(), 1, "{kind}: {report:#}");
            assert_eq!(
                a[0]["ok"], false,
                "the child read a sibling's {kind}: {}",
                a[0]
            );
        }
    }
    s.close().await;
}

#[tokio::test]
async fn a_server_that_opts_out_keeps_the_kernel_keyring_and_lastmile_says_so() {
    let setup = setup("allow_kernel_keyring = true").await;
    let s = serve(&setup).await;
    let report = probe(&s, "probe__keyring_probe").await;
    // The keyring calls work for it: a keyring of its own…
    assert_eq!(report["own_key"]["ok"], true, "{report:#}");
    // …and, on the keyutils backend, every entry of the profile — which is what the warning says.
    if setup.w.backend == "keyutils" {
        let signing = internal(&setup.w, lastmile::secrets::Internal::SigningSecret);
        assert!(got(&report).contains(&sha(&signing)), "{report:#}");
    }
    // The rest of the isolation stays.
    for kind in ["ptrace", "process_vm_readv", "mem"] {
        for a in attempts(&report, kind) {
            assert_eq!(a["ok"], false, "{kind}: {a}");
        }
    }
    let stderr = s.close().await;
    assert!(stderr.contains("KERNEL KEYRING ALLOWED"), "{stderr}");
    assert!(stderr.contains("allow_kernel_keyring = true"), "{stderr}");
}

#[tokio::test]
async fn an_isolated_child_works_normally_and_its_argv_holds_no_secret() {
    let w = World::new();
    let secret = value("argvcanary");
    w.set_secret("ARGV_CANARY", &secret).await;
    let pid_file = w.path("child.pid");
    let pid_arg = pid_file.to_string_lossy().into_owned();
    w.fixture(
        "plain",
        &["--pid-file", &pid_arg],
        "secrets = [\"ARGV_CANARY\"]",
    );
    let s = w.serve().await;
    assert_eq!(s.tool_names().await.len(), FIXTURE_TOOLS);
    let r = s
        .call("plain__echo", json!({ "text": "hi" }))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "hi");
    let r = s
        .call("plain__env_sha256", json!({ "name": "ARGV_CANARY" }))
        .await
        .unwrap();
    assert_eq!(
        text_of(&r),
        sha(&secret),
        "the secret still reaches its environment"
    );
    let resource = s
        .client()
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "fixture://plain/readme",
        ))
        .await
        .unwrap();
    assert!(format!("{resource:?}").contains("readme of plain"));
    let prompt = s
        .client()
        .get_prompt(rmcp::model::GetPromptRequestParams::new("plain__greet"))
        .await
        .unwrap();
    assert!(format!("{prompt:?}").contains("Hello"));

    let pid = read_pids(&pid_file).await[0];
    // The trampoline exec'd the server in place: same pid, the server's own argv and program…
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(argv[0], FIXTURE, "{argv:?}");
    assert!(!argv.iter().any(|a| a.contains(&secret)), "{argv:?}");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        std::path::Path::new(FIXTURE)
    );
    // …after installing its filter and no_new_privs, and without any capability.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(field("Seccomp:"), "2", "{status}");
    for set in ["CapBnd:", "CapPrm:", "CapEff:", "CapInh:", "CapAmb:"] {
        assert_eq!(
            u64::from_str_radix(&field(set), 16).unwrap(),
            0,
            "{set} {status}"
        );
    }
    s.close().await;
}

#[tokio::test]
async fn a_failed_isolation_step_is_the_named_reason_the_server_did_not_start() {
    let w = World::new();
    // Executable, but its interpreter does not exist: resolving passes, the exec fails.
    let bogus = w.path("not-a-program");
    std::fs::write(&bogus, "#!/nonexistent/interpreter\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bogus, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    w.server_file(
        "bogus",
        &format!(
            "command = {:?}\ntiers = [\"admin\"]\n",
            bogus.to_string_lossy()
        ),
    );
    w.fixture("fine", &[], "");
    let s = w.serve().await;
    let names = s.tool_names().await;
    assert!(names.iter().all(|n| !n.starts_with("bogus__")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("fine__")), "{names:?}");
    s.close().await;
    let logs = w.logs();
    assert!(
        logs.contains("the isolation step failed, the server was not started: lastmile __exec could not execute"),
        "{logs}"
    );
    // The step's own line, with the OS's reason, is in the log too.
    assert!(
        logs.contains("lastmile __exec: isolation failed: cannot run")
            && logs.contains("No such file or directory"),
        "{logs}"
    );
}

/// A command run as a process of this user without capabilities. As root, setpriv clears them:
/// the kernel lets a process read another's /proc files only if it holds every capability the
/// other holds, so lastmile and the reader both run without any, like an ordinary user's.
fn plain_process(program: &str) -> tokio::process::Command {
    if is_root() {
        let mut c = tokio::process::Command::new("setpriv");
        c.args([
            "--bounding-set",
            "-all",
            "--inh-caps",
            "-all",
            "--",
            program,
        ]);
        c
    } else {
        tokio::process::Command::new(program)
    }
}

#[tokio::test]
async fn lastmile_is_not_dumpable_to_a_process_of_the_same_user() {
    use rmcp::ServiceExt;
    let w = World::new();
    let pid_file = w.path("child.pid");
    w.fixture("one", &["--pid-file", &pid_file.to_string_lossy()], "");
    let template = w.command(&["serve"]);
    let mut cmd = plain_process(LASTMILE);
    cmd.arg("serve").kill_on_drop(true);
    for (k, v) in template.as_std().get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.env("LASTMILE_TOKEN", "marker-in-lastmiles-environment");
    let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let lastmile = transport.id().unwrap();
    let client = ().serve(transport).await.expect("handshake");
    let _ = client.list_all_tools().await.unwrap();
    let cat = |pid: u32| {
        let mut c = plain_process("cat");
        c.arg(format!("/proc/{pid}/environ"));
        c.output()
    };
    let out = cat(lastmile).await.unwrap();
    assert!(!out.status.success(), "read lastmile's environment");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("marker-in-lastmiles-environment"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same reader gets a child's environment: the kernel makes every exec'd program dumpable
    // again, and the threat model says so.
    let child = read_pids(&pid_file).await[0];
    let out = cat(child).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = client.cancel().await;
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

/// Found in review: children ran in lastmile's session, so a child started from a terminal
/// kept it as its controlling terminal, and could type a command into the user's shell with
/// TIOCSTI (run after lastmile exits, outside any sandbox). Each child now has a session of its
/// own: it has no controlling terminal to open.
#[tokio::test]
async fn a_child_has_no_terminal_to_type_into() {
    let python = std::path::Path::new("/usr/bin/python3");
    if !python.exists() {
        eprintln!("skipped: the terminal session is made with python3, which is not installed");
        return;
    }
    let w = World::new();
    // The child tries the terminal, writes what happened, then serves.
    let (tried, control) = (w.path("tried"), w.path("control"));
    let probe = w.path("probe.py");
    std::fs::write(
        &probe,
        r##"import fcntl, sys, termios
try:
    f = open("/dev/tty", "wb", buffering=0)
    fcntl.ioctl(f, termios.TIOCSTI, b"#")
    result = "typed into the terminal"
except OSError as e:
    result = "refused: " + e.strerror
open(sys.argv[1], "w").write(result)
"##,
    )
    .unwrap();
    shell_server_t(
        &w,
        &format!(
            "{python:?} {probe:?} {tried:?}",
            probe = probe.to_string_lossy(),
            tried = tried.to_string_lossy()
        ),
    );
    // A user's terminal: a pty, the controlling terminal of a shell that runs lastmile with the
    // MCP pipes as its stdin and stdout. The shell first proves it has the terminal.
    let terminal = w.path("terminal.py");
    std::fs::write(
        &terminal,
        r#"import fcntl, os, select, sys, termios
master, slave = os.openpty()
pid = os.fork()
if pid == 0:
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    os.close(master); os.close(slave)
    os.execv("/bin/sh", ["sh", "-c"] + sys.argv[1:])
os.close(slave)
while not os.waitpid(pid, os.WNOHANG)[0]:
    if select.select([master], [], [], 0.1)[0]:
        try: os.read(master, 4096)
        except OSError: pass
"#,
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(&terminal).arg(format!(
        "(: < /dev/tty) && echo yes > {:?}; exec {LASTMILE:?} serve",
        control.to_string_lossy()
    ));
    // The child wrote its line before it began to serve.
    serve_through(&w, cmd).await;
    assert_eq!(
        std::fs::read_to_string(&control).unwrap_or_default().trim(),
        "yes",
        "lastmile did not run in a terminal: this test would prove nothing"
    );
    let tried = std::fs::read_to_string(&tried).unwrap();
    assert!(tried.starts_with("refused"), "the child {tried}");
}

/// A server script at `path`: `prelude`, then the fixture serving as `name`.
fn shell_server(path: &std::path::Path, prelude: &str, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let script = format!("#!/bin/sh\n{prelude}\nexec {FIXTURE:?} --name {name}\n");
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The server `t`: a script that runs `prelude`, then serves.
fn shell_server_t(w: &World, prelude: &str) {
    let server = w.path("server.sh");
    shell_server(&server, prelude, "t");
    w.server_file(
        "t",
        &format!(
            "command = {:?}\ntiers = [\"admin\"]\n",
            server.to_string_lossy()
        ),
    );
}

/// A server script that writes the secret it was given to `marker`, then serves.
fn marking_server(path: &std::path::Path, marker: &std::path::Path) {
    shell_server(
        path,
        &format!("printf %s \"$REL_SECRET\" > {marker:?}"),
        "rel",
    );
}

/// Found in review: with a relative config folder (`--config-dir cfg`, `lastmile demo`'s `.`)
/// and a `cwd`, lastmile checked `cfg/servers.d/bin/run.sh` from its own folder, but the child
/// ran that relative path after moving to `cwd`: another file, which nothing checked, got the
/// secrets. The program is now resolved to an absolute path.
#[tokio::test]
async fn a_relative_command_runs_the_file_lastmile_found_not_one_under_cwd() {
    let w = World::new();
    let secret = value("relcanary");
    w.set_secret("REL_SECRET", &secret).await;
    let (intended, decoy) = (w.path("ran-intended"), w.path("ran-decoy"));
    marking_server(&w.servers_dir().join("bin/run.sh"), &intended);
    // A decoy at the same relative path under the child's cwd (a scratch folder, a clone).
    let scratch = w.path("scratch");
    marking_server(&scratch.join("config/servers.d/bin/run.sh"), &decoy);
    w.server_file(
        "rel",
        &format!(
            "command = \"bin/run.sh\"\ncwd = {:?}\nsecrets = [\"REL_SECRET\"]\ntiers = [\"admin\"]\n",
            scratch.to_string_lossy()
        ),
    );
    assert!(
        w.config_dir().ends_with("config"),
        "{}",
        w.config_dir().display()
    );
    let root = w.config_dir().parent().unwrap().to_path_buf();
    let s = w
        .serve_with(move |c| {
            c.current_dir(&root).env("LASTMILE_CONFIG_DIR", "config");
        })
        .await;
    // The script wrote its marker before it began to serve.
    assert!(s.tool_names().await.iter().any(|t| t == "rel__echo"));
    s.close().await;
    assert!(!decoy.exists(), "the decoy under cwd ran, with the secret");
    assert_eq!(std::fs::read_to_string(&intended).unwrap(), secret);
}

/// Found in review: a descriptor that whatever launched lastmile left open (not close-on-exec)
/// reached every child. lastmile marks all but stdio close-on-exec when it starts.
#[tokio::test]
async fn a_child_inherits_no_descriptor_lastmile_was_started_with() {
    let w = World::new();
    let private = w.path("the-launchers-private-file");
    std::fs::write(&private, "not for children").unwrap();
    let seen = w.path("seen");
    shell_server_t(
        &w,
        &format!(
            "for fd in /proc/$$/fd/*; do readlink \"$fd\"; done > {:?}",
            seen.to_string_lossy()
        ),
    );
    // The launcher opens the file on descriptor 7 (not close-on-exec) and execs lastmile.
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.args(["-c", "exec \"$0\" serve 7<\"$1\"", LASTMILE])
        .arg(&private);
    // The child listed its descriptors before it began to serve.
    serve_through(&w, cmd).await;
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(
        seen.contains("pipe:"),
        "the listing holds the child's own pipes: {seen}"
    );
    assert!(
        !seen.contains("the-launchers-private-file"),
        "the child holds a descriptor lastmile was started with:\n{seen}"
    );
}

/// Run `launcher` (which execs `lastmile serve` in its own way) with the world's environment as
/// an MCP client's server, until the server `t` has started; then close it.
async fn serve_through(w: &World, mut launcher: tokio::process::Command) {
    use rmcp::ServiceExt;
    launcher.env_clear().kill_on_drop(true);
    for (k, v) in w.command(&["serve"]).as_std().get_envs() {
        if let Some(v) = v {
            launcher.env(k, v);
        }
    }
    let client =
        ().serve(rmcp::transport::TokioChildProcess::new(launcher).unwrap())
            .await
            .expect("handshake");
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "t__echo"), "{tools:?}");
    let _ = client.cancel().await;
}
