//! The audit chain against someone who can write the data folder (issue 9, point 6): a cut of the
//! newest rows with the head fixed up, a wipe of rows, anchor and checkpoint, two `serve` processes
//! appending at once, a SIGKILL mid-burst — and the read-only commands, which never write a key.

use lastmile::audit::{db_path, head_path};
use lastmile::exit_codes;
use lastmile::secrets::{BackendRequest, Internal, SecretKey, open_store};
use serde_json::json;

use crate::util::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn store(w: &World) -> std::sync::Arc<dyn lastmile::secrets::SecretStore> {
    let request: BackendRequest = w.backend.parse().unwrap();
    open_store(request, &format!("lastmile:{}", w.profile))
        .unwrap()
        .store
}

fn sql(w: &World, sql: &str) {
    let conn = rusqlite::Connection::open(db_path(&w.data_dir())).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// One session of `calls` echo calls through `lastmile serve`, closed cleanly.
async fn session(w: &World, calls: usize) {
    let s = w.serve().await;
    for i in 0..calls {
        s.call("alpha__echo", json!({ "text": format!("n{i}") }))
            .await
            .unwrap();
    }
    s.close().await;
}

/// `serve` with stdin closed: an ordinary session that ends at once. Its exit and stderr.
async fn short_session(w: &World) -> (i32, String) {
    let out = w.run(&["serve"]).await;
    (code(&out), text(&out.stderr))
}

async fn verify(w: &World) -> (i32, String, String) {
    let out = w.run(&["audit", "verify"]).await;
    (code(&out), text(&out.stdout), text(&out.stderr))
}

fn max_seq(w: &World) -> i64 {
    let conn = rusqlite::Connection::open(db_path(&w.data_dir())).unwrap();
    conn.query_row(
        "SELECT max(s) FROM (SELECT max(seq) AS s FROM tool_executions
                     UNION ALL SELECT max(seq) FROM sessions)",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn a_cut_suffix_with_a_forged_head_then_a_session_is_refused_and_reported() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    session(&w, 6).await;
    let last = max_seq(&w);
    // Cut the newest three rows and point the old head cache at the last kept row (on version 2
    // the writer resumed from it and re-vouched the cut log at the next session).
    sql(
        &w,
        &format!(
            "DELETE FROM tool_executions WHERE seq > {k}; DELETE FROM sessions WHERE seq > {k};",
            k = last - 3
        ),
    );
    let conn = rusqlite::Connection::open(db_path(&w.data_dir())).unwrap();
    let _ = conn.execute(
        "UPDATE chain_head SET seq = ?1, tag = (SELECT tag FROM tool_executions WHERE seq = ?1)",
        [last - 3],
    );
    drop(conn);
    let (code, stderr) = short_session(&w).await;
    assert_eq!(code, i32::from(exit_codes::AUDIT_TAMPERED), "{stderr}");
    assert!(
        stderr.contains("refusing to append to the audit database")
            && stderr.contains("the log was truncated")
            && stderr.contains("hint: "),
        "{stderr}"
    );
    let (code, stdout, stderr) = verify(&w).await;
    assert_eq!(
        code,
        i32::from(exit_codes::AUDIT_TAMPERED),
        "{stdout}{stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "chain broken: the log was truncated: rows {} to {last} are missing",
            last - 2
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_wipe_of_rows_anchor_and_checkpoint_is_reported() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    session(&w, 3).await;
    let last = max_seq(&w);
    sql(
        &w,
        "DELETE FROM tool_executions; DELETE FROM sessions; DELETE FROM edge_events;
         DELETE FROM chain_anchor;",
    );
    std::fs::remove_file(head_path(&db_path(&w.data_dir()))).unwrap();
    let (code, stdout, stderr) = verify(&w).await;
    assert_eq!(
        code,
        i32::from(exit_codes::AUDIT_TAMPERED),
        "{stdout}{stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "chain broken: the log was cut: rows 1 to {last} are missing"
        )),
        "{stdout}"
    );
    let (code, stderr) = short_session(&w).await;
    assert_eq!(code, i32::from(exit_codes::AUDIT_TAMPERED), "{stderr}");
    assert!(stderr.contains("high-water mark"), "{stderr}");

    // Deleting the database file itself is no better.
    let db = db_path(&w.data_dir());
    for p in [
        db.clone(),
        db.with_extension("db-wal"),
        db.with_extension("db-shm"),
    ] {
        let _ = std::fs::remove_file(p);
    }
    let (code, stdout, stderr) = verify(&w).await;
    assert_eq!(
        code,
        i32::from(exit_codes::AUDIT_TAMPERED),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("is gone"), "{stdout}");

    // The way out: the log is moved aside (here: it is gone), its mark forgotten on purpose.
    let out = w.run(&["audit", "restart"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, stderr) = short_session(&w).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = verify(&w).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[tokio::test]
async fn restart_refuses_while_the_log_is_in_place() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    session(&w, 1).await;
    let out = w.run(&["audit", "restart"]).await;
    assert_eq!(code(&out), i32::from(exit_codes::FAILURE));
    assert!(
        text(&out.stderr).contains("is still in place"),
        "{}",
        text(&out.stderr)
    );
    let (code, stdout, _) = verify(&w).await;
    assert_eq!(code, 0, "{stdout}");
}

#[tokio::test]
async fn two_serve_processes_append_to_one_log_at_once() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let (a, b) = tokio::join!(w.serve(), w.serve());
    let burst = |s: &Session, tag: &'static str| {
        let peer = s.client().peer().clone();
        async move {
            for i in 0..60 {
                let mut p = rmcp::model::CallToolRequestParams::new("alpha__echo");
                p.arguments = Some(as_object(json!({ "text": format!("{tag}{i}") })));
                peer.call_tool(p).await.unwrap();
            }
        }
    };
    tokio::join!(burst(&a, "a"), burst(&b, "b"));
    tokio::join!(a.close(), b.close());
    let (code, stdout, stderr) = verify(&w).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    // 120 calls, and an accepted and an ended row per session.
    assert!(
        stdout.contains("chain intact: 124 row(s) verified"),
        "{stdout}{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}

// SIGKILL is a Unix signal; on Windows the job object ends the tree (tests/resilience.rs).
#[cfg(unix)]
#[tokio::test]
async fn sigkill_mid_burst_then_a_new_session_leaves_an_intact_chain() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let s = w.serve().await;
    s.tool_names().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut calls = Vec::new();
    for i in 0..300 {
        let peer = s.client().peer().clone();
        let tx = tx.clone();
        calls.push(tokio::spawn(async move {
            let mut p = rmcp::model::CallToolRequestParams::new("alpha__echo");
            p.arguments = Some(as_object(json!({ "text": format!("n{i}") })));
            if peer.call_tool(p).await.is_ok() {
                let _ = tx.send(());
            }
        }));
    }
    drop(tx);
    for _ in 0..40 {
        rx.recv().await.expect("answers");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for c in calls {
        let _ = c.await;
    }
    assert!(eventually(std::time::Duration::from_secs(10), || !alive(s.pid)).await);
    s.close().await;
    session(&w, 2).await;
    let (code, stdout, stderr) = verify(&w).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("chain intact"), "{stdout}");
}

#[tokio::test]
async fn verify_and_prune_without_a_key_fail_by_name_and_write_none() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    session(&w, 2).await;
    // The key the log was chained with is gone from the keyring (or cannot be read).
    assert!(
        store(&w)
            .delete(&SecretKey::Internal(Internal::AuditKey))
            .unwrap()
    );
    let db = db_path(&w.data_dir());
    for args in [
        &["audit", "verify"][..],
        &["audit", "prune", "--older-than", "90d"][..],
    ] {
        let out = w.run(args).await;
        let stderr = text(&out.stderr);
        assert_eq!(
            code(&out),
            i32::from(exit_codes::SECRETS_UNAVAILABLE),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("has no audit key") && stderr.contains("nothing was written"),
            "{stderr}"
        );
        assert!(stderr.contains("\nhint: "), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    for args in [
        &["audit", "query"][..],
        &["audit", "tail"][..],
        &["audit", "export", "--jsonl"][..],
    ] {
        let out = w.run(args).await;
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out.stderr));
    }
    // No key was made, and nothing was recorded in the database about one.
    let key = store(&w)
        .get(&SecretKey::Internal(Internal::AuditKey))
        .unwrap();
    assert!(key.is_none(), "a read-only command wrote an audit key");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let checks: i64 = conn
        .query_row(
            "SELECT count(*) FROM meta WHERE key = 'key_check'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(checks, 1, "only the writer's own key check");
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_its_wal_and_the_checkpoint_are_0600_and_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let w = World::new();
    w.fixture("alpha", &[], "");
    let db = db_path(&w.data_dir());
    let wal = db.with_extension("db-wal");
    let s = w.serve().await;
    s.call("alpha__echo", json!({ "text": "x" })).await.unwrap();
    // While serving, the WAL holds the newest rows.
    assert!(eventually(std::time::Duration::from_secs(10), || wal.exists()).await);
    for p in [&db, &wal, &head_path(&db)] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    s.close().await;
    // Files a looser umask or an older lastmile left readable are tightened at the next start.
    for p in [&db, &head_path(&db)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    session(&w, 1).await;
    for p in [&db, &head_path(&db)] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    let (code, stdout, _) = verify(&w).await;
    assert_eq!(code, 0, "{stdout}");
}
