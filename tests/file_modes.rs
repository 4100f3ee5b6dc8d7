//! File permissions like ssh's StrictModes (#9, point 8): a config folder others could change is
//! reported by `servers check` and refused by `serve`; the data folder and logs are private.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lastmile::exit_codes;

use crate::util::*;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// `serve` (stdin closed) and `servers check` both name `path`, its problem and the fix.
async fn refused(w: &World, path: &Path, problem: &str, fix: &str) {
    let out = w.run(&["serve"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(exit_codes::UNSAFE_PERMISSIONS as i32),
        "{stderr}"
    );
    let line = format!("{}: {problem}", path.display());
    assert!(stderr.contains(&line), "{line:?} not in: {stderr}");
    assert!(stderr.contains(&format!("hint: run `{fix}`")), "{stderr}");
    assert!(out.stdout.is_empty(), "serve wrote to stdout");

    let out = w.run(&["servers", "check"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(exit_codes::CONFIG_INVALID as i32),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("error: {line}")), "{stdout}");
    assert!(stdout.contains(&format!("hint: run `{fix}`")), "{stdout}");
}

#[tokio::test]
async fn a_servers_d_anyone_can_write_is_refused_by_serve_and_reported_by_check() {
    let w = World::new();
    w.fixture("one", &[], "");
    let dir = w.servers_dir();
    chmod(&dir, 0o777);
    let fix = format!("chmod o-w {}", dir.display());
    refused(&w, &dir, "writable by every local user (mode 0777)", &fix).await;

    // The fix it names is the fix.
    chmod(&dir, 0o755);
    let out = w.run(&["servers", "check"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn a_server_file_anyone_can_write_is_refused_by_serve_and_reported_by_check() {
    let w = World::new();
    w.fixture("one", &[], "").fixture("two", &[], "");
    let file = w.servers_dir().join("two.toml");
    chmod(&file, 0o666);
    let fix = format!("chmod o-w {}", file.display());
    refused(&w, &file, "writable by every local user (mode 0666)", &fix).await;
}

#[tokio::test]
async fn a_lastmile_toml_anyone_can_write_is_refused() {
    let w = World::new();
    let file = w.config_dir().join("lastmile.toml");
    chmod(&file, 0o646);
    let fix = format!("chmod o-w {}", file.display());
    refused(&w, &file, "writable by every local user (mode 0646)", &fix).await;
}

/// A umask-002 checkout: files group-writable by the user's own private group serve as usual.
#[tokio::test]
async fn files_writable_by_the_owner_s_private_group_pass() {
    let w = World::new();
    w.fixture("one", &[], "");
    let file = w.servers_dir().join("one.toml");
    let meta = std::fs::metadata(&file).unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        let user = nix::unistd::User::from_uid(meta.uid().into())
            .unwrap()
            .unwrap();
        let group = nix::unistd::Group::from_gid(meta.gid().into())
            .unwrap()
            .unwrap();
        assert_eq!(
            group.name, user.name,
            "this test needs files created in the user's private group (as root, or with user-private groups)"
        );
    }
    for path in [w.config_dir(), w.servers_dir()] {
        chmod(&path, 0o775);
    }
    chmod(&file, 0o664);
    chmod(&w.config_dir().join("lastmile.toml"), 0o664);
    let out = w.run(&["servers", "check"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let s = w.serve().await;
    assert_eq!(s.tool_names().await.len(), FIXTURE_TOOLS);
    s.close().await;
}

fn log_files(w: &World) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(w.data_dir().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[tokio::test]
async fn serve_makes_the_data_folder_and_logs_private() {
    let w = World::new();
    w.fixture("one", &[], "");
    let s = w.serve().await;
    assert_eq!(s.tool_names().await.len(), FIXTURE_TOOLS);
    s.close().await;
    assert_eq!(mode(&w.data_dir()), 0o700);
    assert_eq!(mode(&w.data_dir().join("logs")), 0o700);
    let logs = log_files(&w);
    assert!(!logs.is_empty(), "no log file");
    for log in logs {
        assert_eq!(mode(&log), 0o600, "{}", log.display());
        assert!(
            std::fs::metadata(&log).unwrap().len() > 0,
            "{} is empty",
            log.display()
        );
    }
}

#[tokio::test]
async fn serve_tightens_a_data_folder_and_logs_found_looser() {
    let w = World::new();
    w.fixture("one", &[], "");
    let logs = w.data_dir().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let old = logs.join("lastmile.2020-01-01.jsonl");
    std::fs::write(&old, "{}\n").unwrap();
    chmod(&old, 0o644);
    chmod(&logs, 0o755);
    chmod(&w.data_dir(), 0o755);
    let s = w.serve().await;
    assert_eq!(s.tool_names().await.len(), FIXTURE_TOOLS);
    s.close().await;
    assert_eq!(mode(&w.data_dir()), 0o700);
    assert_eq!(mode(&logs), 0o700);
    for log in log_files(&w) {
        assert_eq!(mode(&log), 0o600, "{}", log.display());
    }
    assert!(old.exists());
}
