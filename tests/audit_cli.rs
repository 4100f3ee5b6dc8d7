//! `lastmile audit`: the paths that work without the secret store. Reading needs only the database;
//! `verify` and `prune` need the audit key and must fail cleanly, by name, when there is none.

use lastmile::audit::{
    AuditKey, AuditWriter, ExecStatus, ExecutionRecord, SessionIdentity, Transport, db_path,
    new_execution_id,
};
use lastmile::config::Tier;
use lastmile::exit_codes;

use crate::util::*;

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Write `n` executions for alice and bob into the world's audit database.
async fn fill(w: &World, n: usize) {
    let key = AuditKey::from_bytes(b"cli-test-audit-key-0123456789abc".to_vec()).unwrap();
    let writer = AuditWriter::open(&db_path(&w.data_dir()), key).unwrap();
    let sink = writer.sink();
    for i in 0..n {
        let subject = if i % 2 == 0 { "alice" } else { "bob" };
        let who = SessionIdentity {
            session_id: format!("sess-{subject}"),
            jti: Some(format!("jti-{subject}")),
            subject: Some(subject.into()),
            tier: Tier::User,
            transport: Transport::Stdio,
        };
        let status = if i == 3 {
            ExecStatus::ToolError
        } else {
            ExecStatus::Ok
        };
        let rec = ExecutionRecord::begin(
            new_execution_id(),
            &who,
            "notes",
            &format!("tool{i}"),
            Some(serde_json::json!({ "i": i }).to_string()),
        )
        .finish(
            status,
            (i == 3).then(|| "bad \u{1b}[31mnews\nline two".to_string()),
            0,
        );
        sink.record(rec).await.unwrap();
    }
    // The pattern the gateway uses: shutdown blocks until everything is committed.
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn verify_with_another_key_fails_by_name() {
    let w = World::new();
    fill(&w, 2).await;
    // The profile's own key is not the one that chained this file.
    let request: lastmile::secrets::BackendRequest = w.backend.parse().unwrap();
    lastmile::secrets::open_store(request, &format!("lastmile:{}", w.profile))
        .unwrap()
        .store
        .set(
            &lastmile::secrets::SecretKey::Internal(lastmile::secrets::Internal::AuditKey),
            &secrecy::SecretString::from("another-key-0123456789abcdefghij"),
        )
        .unwrap();
    for args in [
        &["audit", "verify"][..],
        &["audit", "prune", "--older-than", "90d"][..],
    ] {
        let out = w.run(args).await;
        let stderr = text(&out.stderr);
        assert_eq!(
            code(&out),
            i32::from(exit_codes::AUDIT_UNAVAILABLE),
            "{stderr}"
        );
        assert!(
            stderr.contains("was chained with a different audit key"),
            "{stderr}"
        );
        assert!(stderr.contains("\nhint: "), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test]
async fn query_without_a_database_says_so() {
    let w = World::new();
    let out = w.run(&["audit", "query"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(
        code(&out),
        i32::from(exit_codes::AUDIT_UNAVAILABLE),
        "{stderr}"
    );
    assert!(stderr.contains("error: no audit database at"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    // Reading never creates the file.
    assert!(!db_path(&w.data_dir()).exists());
}

#[tokio::test]
async fn query_filters_and_prints_json_or_a_table() {
    let w = World::new();
    fill(&w, 6).await;
    let out = w
        .run(&[
            "audit",
            "query",
            "--subject",
            "alice",
            "--since",
            "1h",
            "--json",
        ])
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["subject"] == "alice"));
    assert_eq!(rows[0]["arguments"]["i"], 0);

    let out = w.run(&["audit", "query", "--status", "tool_error"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("STARTED"), "{stdout}");
    assert!(lines[1].contains("tool3") && lines[1].contains("tool_error"));
    // Downstream text cannot drive the terminal or break the table.
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert!(lines[1].contains("news line two"), "{stdout}");

    let out = w.run(&["audit", "query", "--status", "fine"]).await;
    assert_eq!(code(&out), i32::from(exit_codes::USAGE));
}

#[tokio::test]
async fn tail_and_export() {
    let w = World::new();
    fill(&w, 5).await;
    let out = w.run(&["audit", "tail", "-n", "2", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let tools: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["tool"].to_string())
        .collect();
    assert_eq!(tools, ["\"tool3\"", "\"tool4\""]);

    let out = w.run(&["audit", "export", "--jsonl"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l["kind"] == "tool_execution"));
    assert_eq!(lines[4]["seq"], 5);
}

#[tokio::test]
async fn bad_databases_get_named_errors() {
    let w = World::new();
    std::fs::create_dir_all(w.data_dir()).unwrap();
    let path = db_path(&w.data_dir());
    std::fs::write(&path, vec![0x42u8; 4096]).unwrap();
    let out = w.run(&["audit", "query"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), i32::from(exit_codes::AUDIT_UNAVAILABLE));
    assert!(
        stderr.contains("is corrupt") && stderr.contains("hint: "),
        "{stderr}"
    );

    std::fs::remove_file(&path).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 42).unwrap();
    }
    let out = w.run(&["audit", "tail"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), i32::from(exit_codes::AUDIT_UNAVAILABLE));
    assert!(stderr.contains("schema version 42"), "{stderr}");
    assert!(stderr.contains("hint: upgrade lastmile"), "{stderr}");
}

#[tokio::test]
async fn query_tail_and_export_show_and_filter_by_method() {
    let w = World::new();
    fill(&w, 2).await;
    {
        let key = AuditKey::from_bytes(b"cli-test-audit-key-0123456789abc".to_vec()).unwrap();
        let writer = AuditWriter::open(&db_path(&w.data_dir()), key).unwrap();
        let who = SessionIdentity {
            session_id: "sess-carol".into(),
            jti: None,
            subject: Some("carol".into()),
            tier: Tier::User,
            transport: Transport::Stdio,
        };
        let sink = writer.sink();
        for (method, target) in [
            ("resources/read", "notes://today"),
            ("prompts/get", "summarize"),
        ] {
            let rec =
                ExecutionRecord::begin_request(new_execution_id(), &who, method, "notes", target)
                    .finish(ExecStatus::Ok, None, 0);
            sink.record(rec).await.unwrap();
        }
        tokio::task::spawn_blocking(move || writer.shutdown())
            .await
            .unwrap()
            .unwrap();
    }
    let out = w
        .run(&["audit", "query", "--method", "resources/read", "--json"])
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["method"], "resources/read");
    assert_eq!(rows[0]["tool"], "notes://today");
    assert_eq!(rows[0]["subject"], "carol");

    let out = w.run(&["audit", "query"]).await;
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("METHOD") && lines[0].contains("TARGET"),
        "{stdout}"
    );
    assert!(lines[1].contains("tools/call"), "{stdout}");
    assert!(lines[4].contains("prompts/get") && lines[4].contains("summarize"));

    let out = w
        .run(&["audit", "tail", "--method", "tools/call", "--json"])
        .await;
    let tools: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tools.len(), 2);
    assert!(tools.iter().all(|t| t["method"] == "tools/call"));

    let out = w.run(&["audit", "export", "--jsonl"]).await;
    let all: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3]["method"], "prompts/get");
    let out = w
        .run(&["audit", "export", "--jsonl", "--method", "prompts/get"])
        .await;
    let only: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["kind"], "tool_execution");
    assert_eq!(only[0]["tool"], "summarize");
    assert_eq!(only[0]["seq"], 4);
}
