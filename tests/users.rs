//! The first commands a new user runs, through the real binary: `init`, `servers add|list|rm`,
//! `tools`, `call`, `doctor`, `completions`, and the exit codes they end with.

// Helpers only the Unix-only tests (file modes, /proc) use.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;

use lastmile::exit_codes;
use lastmile::secrets::{BackendRequest, Internal, SecretKey, open_store};
use secrecy::ExposeSecret;

use crate::util::{FIXTURE, FIXTURE_TOOLS, World};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

/// A world whose profile lives at the platform's default place under its temporary HOME.
fn default_place(w: &World) -> std::path::PathBuf {
    w.home().join(".config/lastmile").join(&w.profile)
}

async fn run_default(w: &World, args: &[&str]) -> std::process::Output {
    let mut cmd = w.command(args);
    cmd.env_remove("LASTMILE_CONFIG_DIR")
        .env_remove("LASTMILE_DATA_DIR")
        .stdin(std::process::Stdio::null());
    cmd.output().await.unwrap()
}

fn stored(w: &World, internal: Internal) -> Option<String> {
    let request: BackendRequest = w.backend.parse().unwrap();
    let opened = open_store(request, &format!("lastmile:{}", w.profile)).unwrap();
    opened
        .store
        .get(&SecretKey::Internal(internal))
        .unwrap()
        .map(|s| s.expose_secret().to_string())
}

// Unix only: it checks owner-only file modes, which are not mapped to ACLs on Windows.
#[cfg(unix)]
#[tokio::test]
async fn init_makes_a_private_profile_and_prints_the_client_entries_without_secrets() {
    let w = World::new();
    let out = run_default(&w, &["init"]).await;
    assert_eq!(code(&out), Some(exit_codes::OK as i32), "{out:?}");
    let stdout = text(&out.stdout);
    let dir = default_place(&w);
    assert_eq!(mode(&dir), 0o700, "config folder");
    assert_eq!(mode(&dir.join("servers.d")), 0o700, "servers.d");
    assert_eq!(mode(&dir.join("lastmile.toml")), 0o600, "lastmile.toml");
    let data = w.home().join(".local/share/lastmile").join(&w.profile);
    assert_eq!(mode(&data), 0o700, "data folder");
    // The Claude Desktop entry is JSON with the binary's absolute path.
    let exe = std::fs::canonicalize(crate::util::LASTMILE).unwrap();
    let exe = exe.display().to_string();
    assert!(
        stdout.contains(&format!("\"command\": \"{exe}\"")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "claude mcp add --scope user lastmile -- {exe} serve --profile {} --secrets-backend {}",
            w.profile, w.backend
        )),
        "{stdout}"
    );
    assert!(stdout.contains("valid until"), "{stdout}");
    // Neither the token nor the signing secret is printed.
    let token = stored(&w, Internal::SessionToken).expect("a saved token");
    let signing = stored(&w, Internal::SigningSecret).expect("a signing secret");
    let all = format!("{stdout}{}", text(&out.stderr));
    assert!(!all.contains(&token) && !all.contains(&signing));
    let tail = &token[token.len() - 20..];
    assert!(!all.contains(tail), "no part of the token");

    // Again: nothing changes.
    let again = run_default(&w, &["init"]).await;
    assert_eq!(code(&again), Some(exit_codes::OK as i32), "{again:?}");
    assert!(text(&again.stdout).contains("nothing to do"), "{again:?}");
    assert_eq!(stored(&w, Internal::SessionToken).unwrap(), token);
    assert_eq!(stored(&w, Internal::SigningSecret).unwrap(), signing);
}

// Unix only: it checks owner-only file modes, which are not mapped to ACLs on Windows.
#[cfg(unix)]
#[tokio::test]
async fn init_renews_a_token_that_expires_soon_and_tightens_loose_folders() {
    let w = World::new();
    assert!(run_default(&w, &["init"]).await.status.success());
    let out = run_default(
        &w,
        &[
            "token", "issue", "--sub", "me", "--tier", "admin", "--ttl", "1h", "--save",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let short = stored(&w, Internal::SessionToken).unwrap();
    std::fs::set_permissions(
        default_place(&w).join("servers.d"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let out = run_default(&w, &["init"]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("within 3 days"), "{stdout}");
    assert!(stdout.contains("now mode 0700"), "{stdout}");
    assert!(!stdout.contains("nothing to do"), "{stdout}");
    assert_ne!(stored(&w, Internal::SessionToken).unwrap(), short);
    assert_eq!(mode(&default_place(&w).join("servers.d")), 0o700);
}

// Unix only: it checks owner-only file modes, which are not mapped to ACLs on Windows.
#[cfg(unix)]
#[tokio::test]
async fn servers_add_list_rm() {
    let w = World::new();
    let out = w
        .run(&[
            "servers",
            "add",
            "fx",
            "--tier",
            "user",
            "--secret",
            "FX_KEY",
            "--env",
            "MODE=fast",
            "--",
            FIXTURE,
            "--name",
            "fx",
        ])
        .await;
    assert_eq!(code(&out), Some(exit_codes::OK as i32), "{out:?}");
    assert!(
        text(&out.stderr).contains("note: admin sessions"),
        "{out:?}"
    );
    let file = w.servers_dir().join("fx.toml");
    assert_eq!(mode(&file), 0o600);
    let def =
        lastmile::config::parse_server_file(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(def.command, FIXTURE);
    assert_eq!(def.args, ["--name", "fx"]);
    assert_eq!(def.env["MODE"], "fast");
    assert_eq!(def.tiers, Some(vec![lastmile::config::Tier::User]));

    let list = text(&w.run(&["servers", "list"]).await.stdout);
    assert!(list.contains("secrets: FX_KEY (missing)"), "{list}");
    assert!(list.contains("last start: never started"), "{list}");
    w.set_secret("FX_KEY", "fx-value-123456").await;
    // The gateway records a server's last start in the data folder.
    let status = w.data_dir().join("servers");
    std::fs::create_dir_all(&status).unwrap();
    std::fs::write(
        status.join("fx.status.json"),
        r#"{"at_ms": 1764460800000, "ok": false, "reason": "exited with status 1"}"#,
    )
    .unwrap();
    let list = text(&w.run(&["servers", "list"]).await.stdout);
    assert!(list.contains("secrets: FX_KEY (present)"), "{list}");
    assert!(list.contains("failed at 2025-11-30"), "{list}");
    assert!(list.contains("exited with status 1"), "{list}");
    let json: serde_json::Value =
        serde_json::from_slice(&w.run(&["servers", "list", "--json"]).await.stdout).unwrap();
    assert_eq!(json[0]["secrets"][0]["state"], "present");
    assert_eq!(json[0]["last_start"]["ok"], false);

    // The same name again is a conflict, and the file is untouched.
    let before = std::fs::read(&file).unwrap();
    let out = w.run(&["servers", "add", "fx", "--", "true"]).await;
    assert_eq!(code(&out), Some(exit_codes::CONFLICT as i32), "{out:?}");
    assert_eq!(std::fs::read(&file).unwrap(), before);

    let out = w.run(&["servers", "rm", "fx"]).await;
    assert_eq!(code(&out), Some(exit_codes::OK as i32), "{out:?}");
    assert!(!file.exists());
    let out = w.run(&["servers", "rm", "fx"]).await;
    assert_eq!(code(&out), Some(exit_codes::USAGE as i32), "{out:?}");
}

#[tokio::test]
async fn servers_add_refuses_a_credential_in_env_and_never_echoes_it() {
    let w = World::new();
    let value = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let pair = format!("GITHUB_TOKEN={value}");
    let out = w
        .run(&[
            "servers", "add", "gh", "--env", &pair, "--", "npx", "server",
        ])
        .await;
    assert_eq!(code(&out), Some(exit_codes::USAGE as i32), "{out:?}");
    assert!(!w.servers_dir().join("gh.toml").exists());
    assert!(!text(&out.stderr).contains(value));
    assert!(
        text(&out.stderr).contains("--secret GITHUB_TOKEN"),
        "{out:?}"
    );
    // A credential in argv is written (the user asked) but warned about, by position.
    let out = w
        .run(&[
            "servers",
            "add",
            "gh",
            "--",
            "npx",
            "server",
            "--api-key",
            "Zx81kq0pl2mN77",
        ])
        .await;
    assert!(out.status.success(), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: argument 3 holds a credential"),
        "{err}"
    );
    assert!(!err.contains("Zx81kq0pl2mN77"), "{err}");
}

#[tokio::test]
async fn tools_and_call_see_what_a_session_of_the_tier_sees() {
    let w = World::new();
    w.fixture("open", &[], "");
    w.server_file(
        "adminonly",
        &format!("command = {FIXTURE:?}\nargs = [\"--name\", \"adminonly\"]\n"),
    );
    w.require_auth("").await;
    // Without a saved token, the gateway refuses the session: AUTH_REFUSED.
    let out = w.run(&["tools"]).await;
    assert_eq!(code(&out), Some(exit_codes::AUTH_REFUSED as i32), "{out:?}");
    // Regression (#11): serve's refusal printed `hint: hint:`.
    let err = text(&out.stderr);
    assert!(err.contains("no valid session token"), "{err}");
    assert_eq!(err.matches("hint:").count(), 1, "{err}");
    assert!(run_init(&w).await.status.success());

    let out = w.run(&["tools"]).await;
    assert_eq!(code(&out), Some(exit_codes::OK as i32), "{out:?}");
    let listed = text(&out.stdout);
    assert_eq!(listed.lines().count(), 2 * FIXTURE_TOOLS, "{listed}");
    assert!(listed.contains("adminonly__echo"), "{listed}");

    let out = w.run(&["tools", "--as", "user", "--json"]).await;
    assert_eq!(code(&out), Some(exit_codes::OK as i32), "{out:?}");
    let tools: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), FIXTURE_TOOLS, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("open__")), "{names:?}");
    // The token file for --as is gone, and no token reached the output.
    let run_dir = w.data_dir().join("run");
    assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), 0);
    assert!(!text(&out.stdout).contains("eyJ") && !text(&out.stderr).contains("eyJ"));

    let out = w
        .run(&["call", "open__echo", r#"{"text": "hi from call"}"#])
        .await;
    assert_eq!(code(&out), Some(exit_codes::OK as i32), "{out:?}");
    assert_eq!(text(&out.stdout).trim(), "hi from call");
    let out = w
        .run(&[
            "call",
            "adminonly__echo",
            r#"{"text": "x"}"#,
            "--as",
            "user",
        ])
        .await;
    assert_eq!(code(&out), Some(exit_codes::TOOL_FAILED as i32), "{out:?}");
    let out = w
        .run(&["call", "open__fail", r#"{"message": "boom"}"#, "--json"])
        .await;
    assert_eq!(code(&out), Some(exit_codes::TOOL_FAILED as i32), "{out:?}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["isError"], true);
    let out = w.run(&["call", "open__echo", "not json"]).await;
    assert_eq!(code(&out), Some(exit_codes::USAGE as i32), "{out:?}");
}

async fn run_init(w: &World) -> std::process::Output {
    w.run(&["init"]).await
}

// Unix only: it checks owner-only file modes, which are not mapped to ACLs on Windows.
#[cfg(unix)]
#[tokio::test]
async fn doctor_passes_a_sound_profile_and_names_each_problem() {
    let w = World::new();
    w.fixture("fx", &[], "");
    w.require_auth("").await;
    assert!(run_init(&w).await.status.success());
    // A served session creates the audit database, whose chain doctor then checks.
    assert!(
        w.run(&["call", "fx__echo", r#"{"text": "a"}"#])
            .await
            .status
            .success()
    );
    let fx = w.servers_dir().join("fx.toml");
    std::fs::set_permissions(&fx, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = w.run(&["doctor"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), Some(exit_codes::OK as i32), "{stdout}");
    assert!(stdout.contains("warn  server fx: mode 644"), "{stdout}");
    std::fs::set_permissions(&fx, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = w.run(&["doctor"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), Some(exit_codes::OK as i32), "{stdout}");
    assert!(stdout.contains("chain intact, "), "{stdout}");
    assert!(stdout.contains("ok    keyring"), "{stdout}");
    assert!(stdout.contains("ok    signing secret"), "{stdout}");
    assert!(
        stdout.contains("ok    saved token: valid, tier admin"),
        "{stdout}"
    );
    assert!(stdout.contains("ok    server fx"), "{stdout}");

    w.server_file(
        "broken",
        "command = \"no-such-program-here\"\nsecrets = [\"ABSENT_KEY\"]\ntiers = [\"user\"]\n",
    );
    let out = w.run(&["doctor"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(
        code(&out),
        Some(exit_codes::CHECK_FAILED as i32),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL  server broken"), "{stdout}");
    assert!(stdout.contains("no-such-program-here"), "{stdout}");
    assert!(stdout.contains("ABSENT_KEY"), "{stdout}");
}

#[tokio::test]
async fn completions_for_each_shell() {
    let w = World::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = w.run(&["completions", shell]).await;
        assert_eq!(code(&out), Some(exit_codes::OK as i32), "{shell}");
        let script = text(&out.stdout);
        assert!(
            script.contains("import") && script.contains("doctor"),
            "{shell}"
        );
    }
    let out = w.run(&["completions", "tcsh"]).await;
    assert_eq!(code(&out), Some(exit_codes::USAGE as i32));
}

#[tokio::test]
async fn the_readme_lists_every_exit_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (code, name) in exit_codes::ALL {
        assert!(
            readme.contains(&format!("| {code} | `{name}`")),
            "README lacks exit code {code} {name}"
        );
    }
}

/// The `serve` child of `pid`, by its command line. A child seen between fork and exec still
/// carries its parent's command line, so only one that has become `serve` counts.
#[cfg(target_os = "linux")]
fn serve_child_of(pid: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let child: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        let ppid: u32 = stat
            .rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).ok()?;
        let serves = cmdline.split(|b| *b == 0).any(|arg| arg == b"serve");
        (ppid == pid && serves).then_some(child)
    })
}

// Linux only: it reads the serve process's argv and environment from /proc.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn call_as_a_tier_hands_the_token_over_in_a_file_never_in_argv_or_env() {
    let w = World::new();
    w.fixture("open", &[], "");
    w.require_auth("").await;
    let child = w
        .command(&["call", "open__sleep", r#"{"ms": 1500}"#, "--as", "user"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut serve = None;
    assert!(
        crate::util::eventually(std::time::Duration::from_secs(10), || {
            serve = serve_child_of(pid);
            serve.is_some()
        })
        .await,
        "no serve child"
    );
    let serve = serve.unwrap();
    let cmdline = std::fs::read(format!("/proc/{serve}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{serve}/environ")).unwrap_or_default();
    let cmdline = text(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("--token-file"), "{cmdline}");
    assert!(!cmdline.contains("eyJ"), "a token in argv: {cmdline}");
    assert!(
        !text(&environ).contains("eyJ"),
        "a token in the environment"
    );
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_dir(w.data_dir().join("run")).unwrap().count(),
        0,
        "the token file is removed"
    );
}

#[tokio::test]
async fn tools_waits_for_a_server_announced_after_the_first_list() {
    let w = World::new();
    w.fixture("fast", &[], "");
    // Slower than the gateway's first-list grace: it comes up later, with a list change.
    w.fixture("slow", &["--slow-start", "2500"], "");
    let out = w.run(&["tools"]).await;
    assert_eq!(code(&out), Some(exit_codes::OK as i32), "{out:?}");
    let listed = text(&out.stdout);
    assert!(listed.contains("slow__echo"), "{listed}");
    assert_eq!(listed.lines().count(), 2 * FIXTURE_TOOLS, "{listed}");
    let out = w.run(&["call", "slow__echo", r#"{"text": "late"}"#]).await;
    assert_eq!(code(&out), Some(exit_codes::OK as i32), "{out:?}");
}

#[tokio::test]
async fn servers_list_shows_the_last_start_the_gateway_recorded() {
    let w = World::new();
    w.fixture("good", &[], "");
    w.fixture("bad", &["--fail-start"], "[restart]\nmax_tries = 0");
    let s = w.serve().await;
    assert!(s.tool_names().await.iter().any(|n| n.starts_with("good__")));
    let status = w.data_dir().join("servers");
    crate::util::eventually(std::time::Duration::from_secs(10), || {
        status.join("good.status.json").exists() && status.join("bad.status.json").exists()
    })
    .await;
    s.close().await;
    let out = w.run(&["servers", "list", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by_name("good")["last_start"]["ok"], true, "{json}");
    assert_eq!(by_name("bad")["last_start"]["ok"], false, "{json}");
    assert!(
        by_name("bad")["last_start"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{json}"
    );
}
