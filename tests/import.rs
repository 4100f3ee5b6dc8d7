//! `lastmile import`: every rule of the migration from a plain Claude config, through the real
//! binary, with a temporary HOME so the platform's default paths resolve inside it.

// Helpers only the Unix-only tests (file modes, /proc) use.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lastmile::exit_codes;
use lastmile::secrets::{BackendRequest, SecretKey, open_store};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::util::{World, read_tree};

const GITHUB_PAT: &str = "ghp_Zq81abcdefghijklmnopqrstuvwxyz0123";
const DB_PASSWORD: &str = "s3cretPw0rd9x";
const BRAVE_KEY: &str = "BSAkq9Xl2mN7pR4tV6wY8zA1";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Claude Desktop's config path on Linux, under the world's HOME.
fn desktop_config(w: &World) -> PathBuf {
    w.home().join(".config/Claude/claude_desktop_config.json")
}

/// A Claude Desktop config with credentials in every place the issue names.
fn desktop_text() -> String {
    let v = json!({
        "globalShortcut": "Ctrl+Space",
        "mcpServers": {
            "GitHub": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-github"],
                "env": {
                    "GITHUB_PERSONAL_ACCESS_TOKEN": GITHUB_PAT,
                    "AUTH_MODE": "oauth",
                    "LOG_LEVEL": "debug"
                }
            },
            "brave": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-brave-search"],
                "env": { "BRAVE_API_KEY": BRAVE_KEY, "REGION": "${REGION:-eu}", "EXTRA_TOKEN": "${EXTRA_TOKEN}" }
            },
            "postgres": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-postgres", format!("postgresql://app:{DB_PASSWORD}@localhost/app")]
            },
            "remote-api": { "type": "http", "url": "https://mcp.example.com/mcp" }
        },
        "zzzUnknownKey": { "keep": [1, 2, 3] }
    });
    serde_json::to_string_pretty(&v).unwrap()
}

fn write_desktop(w: &World) -> PathBuf {
    let path = desktop_config(w);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, desktop_text()).unwrap();
    path
}

fn store_keys(w: &World, profile: &str) -> Vec<String> {
    let request: BackendRequest = w.backend.parse().unwrap();
    let opened = open_store(request, &format!("lastmile:{profile}")).unwrap();
    opened
        .store
        .list()
        .unwrap()
        .iter()
        .map(|k| k.entry_name().to_string())
        .collect()
}

fn stored_value(w: &World, name: &str) -> Option<String> {
    let request: BackendRequest = w.backend.parse().unwrap();
    let opened = open_store(request, &format!("lastmile:{}", w.profile)).unwrap();
    opened
        .store
        .get(&SecretKey::from_entry_name(name).unwrap())
        .unwrap()
        .map(|s| s.expose_secret().to_string())
}

fn assert_no_plaintext(haystack: &str, what: &str) {
    for value in [GITHUB_PAT, DB_PASSWORD, BRAVE_KEY] {
        assert!(
            !haystack.contains(value),
            "{what} holds a credential:\n{haystack}"
        );
    }
}

fn server_files(w: &World) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(w.servers_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// Unix only: the default config locations come from HOME there; on Windows they come from the
// Known Folders, which a test's temporary HOME does not redirect.
#[cfg(unix)]
#[tokio::test]
async fn dry_run_shows_the_plan_and_changes_nothing() {
    let w = World::new();
    let config = write_desktop(&w);
    let out = w.run(&["import", "--dry-run", "--rewrite"]).await;
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    let stdout = text(&out.stdout);
    let all = format!("{stdout}{}", text(&out.stderr));
    assert_no_plaintext(&all, "the plan");
    assert!(
        stdout.contains("+ GitHub → servers.d/github.toml"),
        "{stdout}"
    );
    assert!(
        stdout.contains("secret GITHUB_PERSONAL_ACCESS_TOKEN ← env GITHUB_PERSONAL_ACCESS_TOKEN (its value has the format of a GitHub personal access token)"),
        "{stdout}"
    );
    assert!(stdout.contains("env AUTH_MODE stays plain"), "{stdout}");
    assert!(
        stdout.contains("- remote-api: not imported: remote (http) server"),
        "{stdout}"
    );
    assert!(
        stdout.contains("`${EXTRA_TOKEN}` became the secret EXTRA_TOKEN"),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    assert!(server_files(&w).is_empty());
    assert!(store_keys(&w, &w.profile).is_empty());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), desktop_text());
}

// Unix only: it checks owner-only file modes, which are not mapped to ACLs on Windows.
#[cfg(unix)]
#[tokio::test]
async fn import_moves_credentials_to_the_keyring_then_rewrite_replaces_the_entries() {
    let w = World::new();
    let config = write_desktop(&w);
    let out = w.run(&["import"]).await;
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    let stderr = text(&out.stderr);
    assert_no_plaintext(&format!("{}{stderr}", text(&out.stdout)), "the output");
    assert_eq!(
        server_files(&w),
        ["brave.toml", "github.toml", "postgres.toml"]
    );
    for f in server_files(&w) {
        assert_eq!(mode(&w.servers_dir().join(&f)), 0o600, "{f}");
    }
    assert_eq!(mode(&w.servers_dir()), 0o700);
    assert_no_plaintext(&read_tree(&w.config_dir()), "servers.d");
    // Credentials by format and by name+shape are in the keyring; settings stay plain.
    assert_eq!(
        stored_value(&w, "GITHUB_PERSONAL_ACCESS_TOKEN").as_deref(),
        Some(GITHUB_PAT)
    );
    assert_eq!(
        stored_value(&w, "BRAVE_API_KEY").as_deref(),
        Some(BRAVE_KEY)
    );
    let github = std::fs::read_to_string(w.servers_dir().join("github.toml")).unwrap();
    let def = lastmile::config::parse_server_file(&github).unwrap();
    assert_eq!(def.env["AUTH_MODE"], "oauth");
    assert_eq!(def.env["LOG_LEVEL"], "debug");
    assert_eq!(def.secrets.len(), 1);
    // ${VAR:-default} with a plain name keeps the default; ${VAR} becomes a secret to set.
    let brave = lastmile::config::parse_server_file(
        &std::fs::read_to_string(w.servers_dir().join("brave.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(brave.env["REGION"], "eu");
    assert!(
        brave
            .secrets
            .iter()
            .any(|s| s.secret_name() == "EXTRA_TOKEN")
    );
    assert!(
        text(&out.stdout).contains("secrets set EXTRA_TOKEN"),
        "{out:?}"
    );
    // A credential in argv: imported disabled, never in argv, warned about by position.
    let pg = lastmile::config::parse_server_file(
        &std::fs::read_to_string(w.servers_dir().join("postgres.toml")).unwrap(),
    )
    .unwrap();
    assert!(pg.disabled);
    assert!(pg.args[2].starts_with("<secret "), "{:?}", pg.args);
    assert!(stderr.contains("argument 3 holds a credential"), "{stderr}");
    // Without --rewrite the Claude config is untouched, and the user is told it holds plaintext.
    assert_eq!(std::fs::read_to_string(&config).unwrap(), desktop_text());
    assert!(
        stderr.contains("still holds the plaintext credentials"),
        "{stderr}"
    );

    // Again: already migrated, nothing stored twice, nothing written.
    let keys = store_keys(&w, &w.profile);
    let out = w.run(&["import"]).await;
    assert_eq!(
        out.status.code(),
        Some(exit_codes::CONFLICT as i32),
        "{out:?}"
    );
    assert!(text(&out.stderr).contains("--rewrite"), "{out:?}");
    assert_eq!(store_keys(&w, &w.profile), keys);

    // --rewrite: backup (0600), atomic rewrite that keeps every other key, rotation warning.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = w.run(&["import", "--rewrite"]).await;
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    assert!(text(&out.stderr).contains("rotate those keys"), "{out:?}");
    let rewritten = std::fs::read_to_string(&config).unwrap();
    assert_no_plaintext(&rewritten, "the rewritten config");
    assert_eq!(mode(&config), 0o640, "the config keeps its mode");
    let v: Value = serde_json::from_str(&rewritten).unwrap();
    assert_eq!(v["globalShortcut"], "Ctrl+Space");
    assert_eq!(v["zzzUnknownKey"], json!({ "keep": [1, 2, 3] }));
    assert!(
        rewritten.find("globalShortcut") < rewritten.find("zzzUnknownKey"),
        "key order kept"
    );
    let servers = v["mcpServers"].as_object().unwrap();
    let names: Vec<&String> = servers.keys().collect();
    assert_eq!(names, ["lastmile", "remote-api"]);
    let exe = std::fs::canonicalize(crate::util::LASTMILE).unwrap();
    assert_eq!(servers["lastmile"]["command"], exe.display().to_string());
    assert_eq!(servers["lastmile"]["args"][0], "serve");
    let backups: Vec<PathBuf> = std::fs::read_dir(config.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".lastmile-backup-"))
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(mode(&backups[0]), 0o600);
    assert_eq!(
        std::fs::read_to_string(&backups[0]).unwrap(),
        desktop_text()
    );

    // And once more: already migrated.
    let out = w.run(&["import", "--rewrite"]).await;
    assert_eq!(
        out.status.code(),
        Some(exit_codes::CONFLICT as i32),
        "{out:?}"
    );
    assert!(text(&out.stderr).contains("already migrated"), "{out:?}");
}

// Unix only: the default config locations come from HOME there; on Windows they come from the
// Known Folders, which a test's temporary HOME does not redirect.
#[cfg(unix)]
#[tokio::test]
async fn bad_input_is_named_and_leaves_nothing_half_written() {
    let w = World::new();
    // Missing.
    let out = w.run(&["import"]).await;
    assert_eq!(
        out.status.code(),
        Some(exit_codes::CONFIG_INVALID as i32),
        "{out:?}"
    );
    assert!(
        text(&out.stderr).contains("no Claude Desktop config here"),
        "{out:?}"
    );
    // Malformed: the line and column are named.
    let config = desktop_config(&w);
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "{\n  \"mcpServers\": {,\n}").unwrap();
    let out = w.run(&["import"]).await;
    assert_eq!(
        out.status.code(),
        Some(exit_codes::CONFIG_INVALID as i32),
        "{out:?}"
    );
    assert!(
        text(&out.stderr).contains("2:18: not valid JSON"),
        "{out:?}"
    );
    // A server name that exists (and differs): refused before anything is stored.
    write_desktop(&w);
    w.server_file("github", "command = \"something-else\"\n");
    let out = w.run(&["import"]).await;
    assert_eq!(
        out.status.code(),
        Some(exit_codes::CONFLICT as i32),
        "{out:?}"
    );
    assert!(
        text(&out.stderr).contains("a server named `github` exists"),
        "{out:?}"
    );
    assert_eq!(server_files(&w), ["github.toml"]);
    assert!(store_keys(&w, &w.profile).is_empty());
    // A keyring that cannot be reached: named, and nothing written.
    std::fs::remove_file(w.servers_dir().join("github.toml")).unwrap();
    let mut cmd = w.command(&["import"]);
    cmd.env("LASTMILE_SECRETS_BACKEND", "secret-service")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let out = cmd.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(exit_codes::SECRETS_UNAVAILABLE as i32),
        "{out:?}"
    );
    assert!(server_files(&w).is_empty());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), desktop_text());
}

// Unix only: the default config locations come from HOME there; on Windows they come from the
// Known Folders, which a test's temporary HOME does not redirect.
#[cfg(unix)]
#[tokio::test]
async fn claude_code_user_scope_and_each_project_into_its_own_profile() {
    let w = World::new();
    let project = w.home().join("code").join(format!("p-{}", w.profile));
    std::fs::create_dir_all(&project).unwrap();
    let project_key = project.display().to_string();
    let claude = json!({
        "numStartups": 12,
        "mcpServers": {
            "memory": { "type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"], "env": {} }
        },
        "projects": {
            project_key.clone(): {
                "allowedTools": [],
                "mcpServers": {
                    "fs": { "type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."], "env": { "GITHUB_TOKEN": GITHUB_PAT } }
                }
            }
        }
    });
    let path = w.home().join(".claude.json");
    std::fs::write(&path, serde_json::to_string_pretty(&claude).unwrap()).unwrap();
    let project_profile = format!("p-{}", w.profile);
    let out = w.run(&["import", "--claude-code", "--rewrite"]).await;
    let cleanup = || {
        let request: BackendRequest = w.backend.parse().unwrap();
        let opened = open_store(request, &format!("lastmile:{project_profile}")).unwrap();
        for k in opened.store.list().unwrap_or_default() {
            let _ = opened.store.delete(&k);
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
        assert!(w.servers_dir().join("memory.toml").exists());
        let fs_file = w
            .config_dir()
            .join("projects")
            .join(&project_profile)
            .join("servers.d/fs.toml");
        let def = lastmile::config::parse_server_file(&std::fs::read_to_string(&fs_file).unwrap())
            .unwrap();
        assert_eq!(def.cwd.as_deref(), Some(project.as_path()));
        assert_eq!(store_keys(&w, &project_profile), ["GITHUB_TOKEN"]);
        assert!(store_keys(&w, &w.profile).is_empty());
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["numStartups"], 12);
        assert_eq!(v["mcpServers"]["lastmile"]["type"], "stdio");
        let pargs = &v["projects"][&project_key]["mcpServers"]["lastmile"]["args"];
        assert_eq!(pargs[1], "--profile");
        assert_eq!(pargs[2], project_profile.as_str());
        assert!(
            v["projects"][&project_key]["mcpServers"]
                .get("fs")
                .is_none()
        );
        assert_eq!(v["projects"][&project_key]["allowedTools"], json!([]));
        assert_no_plaintext(&std::fs::read_to_string(&path).unwrap(), "~/.claude.json");
    }));
    cleanup();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[tokio::test]
async fn a_git_tracked_mcp_json_is_rewritten_only_with_force() {
    if crate::util::skipped_here("a_git_tracked_mcp_json_is_rewritten_only_with_force") {
        return;
    }
    let w = World::new();
    let repo = w.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let mcp = repo.join(".mcp.json");
    std::fs::write(
        &mcp,
        r#"{"mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"]}}}"#,
    )
    .unwrap();
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .env("HOME", w.home())
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", ".mcp.json"]);
    let mcp_arg = mcp.display().to_string();
    let out = w.run(&["import", &mcp_arg, "--rewrite"]).await;
    assert_eq!(
        out.status.code(),
        Some(exit_codes::CONFLICT as i32),
        "{out:?}"
    );
    assert!(text(&out.stderr).contains("tracked by git"), "{out:?}");
    assert!(server_files(&w).is_empty(), "nothing written");
    let out = w.run(&["import", &mcp_arg, "--rewrite", "--force"]).await;
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    let def = lastmile::config::parse_server_file(
        &std::fs::read_to_string(w.servers_dir().join("time.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        def.cwd.as_deref(),
        Some(std::fs::canonicalize(&repo).unwrap().as_path())
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&mcp).unwrap()).unwrap();
    assert!(v["mcpServers"]["lastmile"].is_object());
}

#[tokio::test]
async fn a_secret_that_cannot_be_stored_undoes_the_run() {
    // Kernel keyutils caps a value near 32 KiB; other backends may take it, so this is keyutils only.
    let w = World::new();
    if w.backend != "keyutils" {
        return;
    }
    let huge = format!("sk-{}", "a1".repeat(20_000));
    let v = json!({ "mcpServers": {
        "a-first": { "command": "npx", "args": ["a"], "env": { "A_API_KEY": BRAVE_KEY } },
        "b-second": { "command": "npx", "args": ["b"], "env": { "B_API_KEY": huge } }
    }});
    let config = desktop_config(&w);
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let original = serde_json::to_string(&v).unwrap();
    std::fs::write(&config, &original).unwrap();
    let out = w.run(&["import", "--rewrite"]).await;
    assert_eq!(
        out.status.code(),
        Some(exit_codes::SECRETS_UNAVAILABLE as i32),
        "{out:?}"
    );
    assert!(
        !text(&out.stderr).contains(&huge[..40]),
        "the value is not echoed"
    );
    assert!(
        store_keys(&w, &w.profile).is_empty(),
        "the first secret was removed again"
    );
    assert!(server_files(&w).is_empty(), "no server file");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        original,
        "the config is untouched"
    );
}

// Unix only: the default config locations come from HOME there; on Windows they come from the
// Known Folders, which a test's temporary HOME does not redirect.
#[cfg(unix)]
#[tokio::test]
async fn a_partly_migrated_config_imports_only_what_is_left() {
    let w = World::new();
    let exe = std::fs::canonicalize(crate::util::LASTMILE).unwrap();
    let v = json!({ "mcpServers": {
        "lastmile": { "command": exe.display().to_string(), "args": ["serve"] },
        "time": { "command": "uvx", "args": ["mcp-server-time"] }
    }});
    let config = desktop_config(&w);
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, serde_json::to_string(&v).unwrap()).unwrap();
    let out = w.run(&["import", "--rewrite"]).await;
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    assert!(
        text(&out.stdout).contains("· lastmile: lastmile's own entry"),
        "{out:?}"
    );
    assert_eq!(server_files(&w), ["time.toml"]);
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let names: Vec<&String> = after["mcpServers"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["lastmile"], "one lastmile entry, not two");
    let out = w.run(&["import"]).await;
    assert_eq!(
        out.status.code(),
        Some(exit_codes::CONFLICT as i32),
        "{out:?}"
    );
}
