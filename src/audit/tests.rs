//! Tests across the audit module: writer, chain, verify, prune, queries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::*;
use crate::config::{AuthMode, Tier};

fn key() -> AuditKey {
    AuditKey::from_bytes(b"test-audit-key-0123456789abcdef!".to_vec()).unwrap()
}

fn who(subject: &str) -> SessionIdentity {
    SessionIdentity {
        session_id: format!("sess-{subject}"),
        jti: Some(format!("jti-{subject}")),
        subject: Some(subject.to_string()),
        tier: Tier::User,
        transport: Transport::Stdio,
    }
}

fn exec(subject: &str, tool: &str, status: ExecStatus) -> ExecutionRecord {
    ExecutionRecord::begin(
        new_execution_id(),
        &who(subject),
        "github",
        tool,
        Some(
            serde_json::json!({"repo": "acme/widgets", "title": "a realistic issue title"})
                .to_string(),
        ),
    )
    .finish(
        status,
        (status != ExecStatus::Ok).then(|| "upstream said no".to_string()),
        0,
    )
}

fn session(id: &str, event: SessionEvent) -> SessionRecord {
    SessionRecord {
        session_id: id.into(),
        event,
        reason: (event == SessionEvent::Refused).then(|| "expired at 2026-11-28T10:00:00Z".into()),
        mode: AuthMode::Required,
        subject: Some("alice".into()),
        tier: Some(Tier::User),
        jti: Some("jti-alice".into()),
        expires_at_ms: Some(1_800_000_000_000),
        transport: Transport::Stdio,
        at_ms: now_ms(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(dir.path());
        Fixture { _dir: dir, path }
    }

    /// Write `n` executions (alternating subjects alice/bob), one session pair, one edge event.
    fn fill(&self, n: usize) -> WriterStats {
        let writer = AuditWriter::open(&self.path, key()).unwrap();
        let sink = writer.sink();
        sink.record_blocking(session("sess-alice", SessionEvent::Accepted))
            .unwrap();
        for i in 0..n {
            let subject = if i % 2 == 0 { "alice" } else { "bob" };
            sink.record_blocking(exec(subject, &format!("tool{i}"), ExecStatus::Ok))
                .unwrap();
        }
        sink.record_blocking(EdgeEvent {
            at_ms: now_ms(),
            check: "path".into(),
            reason: "known scanner path `/.env`".into(),
            method: "GET".into(),
            path: "/.env?access_token=abc".into(),
            user_agent: Some("nikto".into()),
            remote_addr: Some("127.0.0.1".into()),
            requests_per_minute: Some(600),
            count: 1,
        })
        .unwrap();
        sink.record_blocking(session("sess-alice", SessionEvent::Ended))
            .unwrap();
        writer.shutdown().unwrap()
    }

    fn reader(&self) -> AuditReader {
        AuditReader::open(&self.path).unwrap()
    }

    fn sql(&self, sql: &str) {
        let conn = Connection::open(&self.path).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    fn verify(&self) -> VerifyReport {
        self.reader().verify(&key()).unwrap()
    }
}

fn count(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn writer_drains_1000_rows_on_shutdown() {
    let f = Fixture::new();
    let writer = AuditWriter::open(&f.path, key()).unwrap();
    let sink = writer.sink();
    for i in 0..1000 {
        sink.record_blocking(exec("alice", &format!("t{i}"), ExecStatus::Ok))
            .unwrap();
    }
    // No flush: shutdown alone must commit everything that was taken.
    let stats = writer.shutdown().unwrap();
    assert_eq!(stats.rows, 1000);
    assert_eq!(stats.last_seq, 1000);
    assert_eq!(count(&f.path, "tool_executions"), 1000);
    assert!(f.verify().is_intact());
    // After shutdown, the sink refuses rather than dropping silently.
    assert!(matches!(
        sink.record_blocking(exec("alice", "late", ExecStatus::Ok)),
        Err(AuditError::Closed)
    ));
}

#[test]
fn dropping_the_writer_drains_too() {
    let f = Fixture::new();
    {
        let writer = AuditWriter::open(&f.path, key()).unwrap();
        let sink = writer.sink();
        for _ in 0..500 {
            sink.record_blocking(exec("bob", "t", ExecStatus::Ok))
                .unwrap();
        }
    }
    assert_eq!(count(&f.path, "tool_executions"), 500);
}

/// A writer with a four-record channel that cannot commit: `holder` keeps the write lock until
/// it rolls back, so the channel fills and senders must wait.
fn stalled_writer(f: &Fixture) -> (AuditWriter, Connection) {
    let opts = WriterOptions {
        capacity: 4,
        max_batch: 2,
        ..WriterOptions::default()
    };
    let writer = AuditWriter::open_with(&f.path, key(), opts).unwrap();
    let holder = Connection::open(&f.path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    (writer, holder)
}

#[test]
fn overload_waits_instead_of_dropping() {
    let f = Fixture::new();
    let (writer, holder) = stalled_writer(&f);
    let sink = writer.sink();
    let sender = std::thread::spawn(move || {
        for i in 0..50 {
            sink.record_blocking(exec("alice", &format!("t{i}"), ExecStatus::Ok))
                .unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !sender.is_finished(),
        "the sender should be waiting on a full channel"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    sender.join().unwrap();
    let stats = writer.shutdown().unwrap();
    assert_eq!(stats.rows, 50);
    assert_eq!(count(&f.path, "tool_executions"), 50);
    assert!(f.verify().is_intact());
}

/// The async hand-off is done when `record` is called while there is room; once the channel is
/// full it waits (on the heap) for room, and loses nothing.
#[test]
fn the_async_handoff_waits_for_room_and_loses_nothing() {
    let f = Fixture::new();
    let (writer, holder) = stalled_writer(&f);
    let sink = writer.sink();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut sent = 0;
    let mut waiting = None;
    // The writer takes a batch or two before it blocks on the lock; then the channel stays full
    // and a hand-off stays pending (one made just before the writer took its batch may still
    // find room when polled).
    while sent < 100 {
        let mut handoff = sink.record(exec("alice", &format!("t{sent}"), ExecStatus::Ok));
        sent += 1;
        match std::pin::Pin::new(&mut handoff).poll(&mut cx) {
            std::task::Poll::Ready(result) => result.unwrap(),
            std::task::Poll::Pending => {
                assert!(matches!(handoff, futures::future::Either::Right(_)));
                waiting = Some(handoff);
                break;
            }
        }
    }
    let waiting = waiting.expect("the channel never filled");
    holder.execute_batch("ROLLBACK").unwrap();
    rt.block_on(async {
        waiting.await.unwrap();
        sink.flush().await.unwrap()
    });
    let stats = writer.shutdown().unwrap();
    assert_eq!(stats.rows, sent as u64);
    assert_eq!(count(&f.path, "tool_executions"), sent);
    assert!(f.verify().is_intact());
}

#[test]
fn a_repeated_execution_id_does_not_stall_the_writer() {
    let f = Fixture::new();
    let writer = AuditWriter::open(&f.path, key()).unwrap();
    let sink = writer.sink();
    let rec = exec("alice", "t", ExecStatus::Ok);
    for _ in 0..3 {
        sink.record_blocking(rec.clone()).unwrap();
    }
    assert_eq!(sink.flush_blocking().unwrap(), 3);
    assert!(sink.last_error().is_none());
    writer.shutdown().unwrap();
    let rows = f.reader().executions(&Filter::default()).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(f.verify().is_intact());
}

#[test]
fn flush_acknowledges_committed_rows() {
    let f = Fixture::new();
    let writer = AuditWriter::open(&f.path, key()).unwrap();
    let sink = writer.sink();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let seq = rt.block_on(async {
        for i in 0..100 {
            sink.record(exec("alice", &format!("t{i}"), ExecStatus::Ok))
                .await
                .unwrap();
        }
        sink.flush().await.unwrap()
    });
    assert_eq!(seq, 100);
    assert_eq!(sink.committed_seq(), 100);
    // Acknowledged means visible to another connection now, before shutdown.
    assert_eq!(count(&f.path, "tool_executions"), 100);
    assert!(sink.last_error().is_none());
    drop(writer);
}

#[test]
fn a_second_writer_continues_the_chain() {
    let f = Fixture::new();
    f.fill(10);
    f.fill(10);
    let report = f.verify();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.rows, 2 * 13);
}

#[test]
fn wrong_key_is_refused_by_name() {
    let f = Fixture::new();
    f.fill(1);
    let other = AuditKey::from_bytes(b"another-key-0123456789abcdefghij".to_vec()).unwrap();
    let e = AuditWriter::open(&f.path, other.clone()).unwrap_err();
    assert!(matches!(e, AuditError::WrongKey { .. }), "{e:?}");
    assert!(matches!(
        f.reader().verify(&other),
        Err(AuditError::WrongKey { .. })
    ));
}

#[test]
fn intact_chain_verifies() {
    let f = Fixture::new();
    f.fill(20);
    let report = f.verify();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.rows, 23);
    assert_eq!(report.last_seq, 23);
    assert_eq!(report.past_checkpoint, 0);
}

#[test]
fn verify_catches_an_edit_and_names_the_row() {
    let f = Fixture::new();
    f.fill(10);
    let id: String = Connection::open(&f.path)
        .unwrap()
        .query_row(
            "SELECT execution_id FROM tool_executions WHERE seq = 5",
            [],
            |r| r.get(0),
        )
        .unwrap();
    f.sql("UPDATE tool_executions SET status = 'denied' WHERE seq = 5");
    let report = f.verify();
    assert_eq!(
        report.broken,
        Some(ChainBreak::Edited {
            seq: 5,
            row: format!("row 5 (tool_executions, execution {id})"),
        })
    );
    let text = report.broken.unwrap().to_string();
    assert!(text.contains("row 5") && text.contains(&id) && text.contains("edited"));
}

#[test]
fn verify_catches_an_edited_session_row() {
    let f = Fixture::new();
    f.fill(3);
    f.sql("UPDATE sessions SET tier = 'admin' WHERE seq = 1");
    let report = f.verify();
    assert!(
        matches!(report.broken, Some(ChainBreak::Edited { seq: 1, ref row }) if row.contains("session sess-alice")),
        "{:?}",
        report.broken
    );
}

#[test]
fn verify_catches_a_deletion() {
    let f = Fixture::new();
    f.fill(10);
    f.sql("DELETE FROM tool_executions WHERE seq IN (4, 5)");
    let report = f.verify();
    assert!(
        matches!(
            report.broken,
            Some(ChainBreak::Deleted {
                from: 4,
                to: 5,
                next_row: Some(ref next)
            }) if next.starts_with("row 6 ")
        ),
        "{:?}",
        report.broken
    );
    assert!(
        report
            .broken
            .unwrap()
            .to_string()
            .contains("rows 4 to 5 were deleted")
    );
}

#[test]
fn verify_catches_a_deletion_with_renumbering() {
    let f = Fixture::new();
    f.fill(10);
    // Delete row 4 and shift the later ones down so that no gap shows.
    f.sql(
        "DELETE FROM tool_executions WHERE seq = 4;
         UPDATE tool_executions SET seq = seq - 1 WHERE seq > 4;
         UPDATE sessions SET seq = seq - 1 WHERE seq > 4;
         UPDATE edge_events SET seq = seq - 1 WHERE seq > 4;",
    );
    let report = f.verify();
    assert!(
        matches!(report.broken, Some(ChainBreak::Edited { seq: 4, .. })),
        "{:?}",
        report.broken
    );
}

#[test]
fn verify_catches_a_reorder_and_says_where_the_row_was_written() {
    let f = Fixture::new();
    f.fill(10);
    // Swap rows 3 and 6, whole (tags included).
    f.sql(
        "UPDATE tool_executions SET seq = -1 WHERE seq = 3;
         UPDATE tool_executions SET seq = 3 WHERE seq = 6;
         UPDATE tool_executions SET seq = 6 WHERE seq = -1;",
    );
    let report = f.verify();
    assert!(
        matches!(
            report.broken,
            Some(ChainBreak::Reordered {
                seq: 3,
                written_at: 6,
                ..
            })
        ),
        "{:?}",
        report.broken
    );
    assert!(
        report
            .broken
            .unwrap()
            .to_string()
            .contains("written as row 6")
    );
}

#[test]
fn verify_catches_truncation() {
    let f = Fixture::new();
    f.fill(10);
    // Cut the last three rows (edge event, session end and the last execution) and fix up the cache.
    f.sql(
        "DELETE FROM sessions WHERE seq = 13;
         DELETE FROM edge_events WHERE seq = 12;
         DELETE FROM tool_executions WHERE seq = 11;",
    );
    let report = f.verify();
    assert_eq!(
        report.broken,
        Some(ChainBreak::Truncated {
            last_found: 10,
            checkpoint: 13
        })
    );
    assert!(
        report
            .broken
            .unwrap()
            .to_string()
            .contains("rows 11 to 13 are missing")
    );
}

#[test]
fn verify_catches_a_rewritten_tail_and_a_forged_or_missing_checkpoint() {
    let f = Fixture::new();
    f.fill(2);
    let head = head_path(&f.path);
    let saved = std::fs::read_to_string(&head).unwrap();
    std::fs::write(
        &head,
        saved.replace(&format!("seq {:019}", 5), &format!("seq {:019}", 4)),
    )
    .unwrap();
    assert!(matches!(
        f.verify().broken,
        Some(ChainBreak::CheckpointForged { .. })
    ));
    std::fs::remove_file(&head).unwrap();
    assert!(matches!(
        f.verify().broken,
        Some(ChainBreak::CheckpointMissing { .. })
    ));
    std::fs::write(&head, &saved).unwrap();
    assert!(f.verify().is_intact());
    // Replace the last row's tag with garbage: caught as an edit at the last row.
    f.sql("UPDATE sessions SET tag = zeroblob(32) WHERE seq = 5");
    assert!(matches!(
        f.verify().broken,
        Some(ChainBreak::Edited { seq: 5, .. })
    ));
}

#[test]
fn a_lagging_checkpoint_is_not_a_break() {
    let f = Fixture::new();
    f.fill(2);
    let head = head_path(&f.path);
    let saved = std::fs::read(&head).unwrap();
    f.fill(2);
    // A crash between commit and checkpoint leaves the older checkpoint behind.
    std::fs::write(&head, saved).unwrap();
    let report = f.verify();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.past_checkpoint, 5);
}

#[test]
fn prune_keeps_the_rest_verifiable() {
    let f = Fixture::new();
    f.fill(10);
    // Age the first seven rows by a year.
    f.sql(
        "UPDATE tool_executions SET started_at_ms = started_at_ms - 31536000000 WHERE seq <= 7;
         UPDATE sessions SET at_ms = at_ms - 31536000000 WHERE seq <= 7;",
    );
    // Editing times broke those rows' tags: prune must refuse to launder that.
    let mut reader = f.reader();
    let refused = reader
        .prune(&key(), Duration::from_secs(90 * 86_400))
        .unwrap();
    assert!(matches!(refused, Err(ChainBreak::Edited { seq: 1, .. })));

    // Now write an honestly old chain: a fresh log whose first rows are old.
    let f = Fixture::new();
    let writer = AuditWriter::open(&f.path, key()).unwrap();
    let sink = writer.sink();
    let old = now_ms() - 100 * 86_400_000;
    for i in 0..7 {
        let mut r = exec("alice", &format!("old{i}"), ExecStatus::Ok);
        r.started_at_ms = old + i;
        sink.record_blocking(r).unwrap();
    }
    for i in 0..3 {
        sink.record_blocking(exec("alice", &format!("new{i}"), ExecStatus::Ok))
            .unwrap();
    }
    writer.shutdown().unwrap();
    let mut reader = f.reader();
    let report = reader
        .prune(&key(), Duration::from_secs(90 * 86_400))
        .unwrap()
        .unwrap();
    assert_eq!(report.removed, 7);
    assert_eq!(report.pruned_through, Some(7));
    let v = f.verify();
    assert!(v.is_intact(), "{:?}", v.broken);
    assert_eq!((v.rows, v.pruned_through, v.last_seq), (3, Some(7), 10));
    // Pruning again removes nothing.
    let again = reader
        .prune(&key(), Duration::from_secs(90 * 86_400))
        .unwrap()
        .unwrap();
    assert_eq!(again.removed, 0);
    // Writing continues the chain after the anchor.
    f.fill(1);
    assert!(f.verify().is_intact());
    // Deleting the first remaining row is still caught, and so is a forged anchor.
    f.sql("DELETE FROM tool_executions WHERE seq = 8");
    assert!(matches!(
        f.verify().broken,
        Some(ChainBreak::Deleted { from: 8, to: 8, .. })
    ));
    f.sql("UPDATE chain_anchor SET seq = 8");
    assert!(matches!(
        f.verify().broken,
        Some(ChainBreak::AnchorForged { seq: 8 })
    ));
}

#[test]
fn prune_of_everything_leaves_an_empty_verifiable_chain() {
    let f = Fixture::new();
    f.fill(3);
    let mut reader = f.reader();
    let report = reader.prune(&key(), Duration::ZERO).unwrap().unwrap();
    // Rows written this very millisecond may count as not older than zero; at least most go.
    assert!(report.removed >= 1);
    std::thread::sleep(Duration::from_millis(5));
    let report = reader.prune(&key(), Duration::ZERO).unwrap().unwrap();
    assert_eq!(report.pruned_through, Some(6));
    let v = f.verify();
    assert!(v.is_intact(), "{:?}", v.broken);
    assert_eq!((v.rows, v.last_seq), (0, 6));
}

#[test]
fn queries_filter_and_use_indexes() {
    let f = Fixture::new();
    f.fill(20);
    let r = f.reader();
    let alice = r
        .executions(&Filter {
            subject: Some("alice".into()),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(alice.len(), 10);
    assert!(
        alice
            .iter()
            .all(|row| row.subject.as_deref() == Some("alice"))
    );
    assert!(alice.windows(2).all(|w| w[0].seq < w[1].seq));
    let by_session = r
        .executions(&Filter {
            session: Some("sess-bob".into()),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(by_session.len(), 10);
    let by_jti = r
        .executions(
            &Filter {
                jti: Some("jti-bob".into()),
                tool: Some("tool1".into()),
                server: Some("github".into()),
                status: Some(ExecStatus::Ok),
                ..Filter::default()
            }
            .since(Duration::from_secs(3600)),
        )
        .unwrap();
    assert_eq!(by_jti.len(), 1);
    assert_eq!(by_jti[0].tool, "tool1");
    assert_eq!(
        by_jti[0].arguments,
        Some(serde_json::json!({"repo": "acme/widgets", "title": "a realistic issue title"}))
    );
    let none = r
        .executions(&Filter {
            status: Some(ExecStatus::Denied),
            ..Filter::default()
        })
        .unwrap();
    assert!(none.is_empty());
    let newest = r
        .executions(&Filter {
            limit: Some(3),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(newest.len(), 3);
    assert_eq!(newest[2].tool, "tool19");

    // "What did this identity touch in the last hour" is one indexed range query.
    for (filter, index) in [
        (
            Filter {
                subject: Some("alice".into()),
                ..Filter::default()
            },
            "tool_executions_subject",
        ),
        (
            Filter {
                session: Some("sess-alice".into()),
                ..Filter::default()
            },
            "tool_executions_session",
        ),
        (
            Filter {
                jti: Some("jti-alice".into()),
                ..Filter::default()
            },
            "tool_executions_jti",
        ),
    ] {
        let plan = r
            .explain(&filter.since(Duration::from_secs(3600)))
            .unwrap()
            .join("\n");
        assert!(
            plan.contains(&format!("USING INDEX {index} (")) && plan.contains("started_at_ms>?"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN tool_executions"), "{plan}");
    }
}

#[test]
fn session_and_edge_lookups_use_indexes() {
    let f = Fixture::new();
    f.fill(1);
    let conn = Connection::open(&f.path).unwrap();
    for (sql, index) in [
        (
            "SELECT * FROM sessions WHERE subject = 'alice' AND at_ms >= 0",
            "sessions_subject",
        ),
        (
            "SELECT * FROM sessions WHERE jti = 'j' AND at_ms >= 0",
            "sessions_jti",
        ),
        (
            "SELECT * FROM sessions WHERE session_id = 's' AND at_ms >= 0",
            "sessions_session",
        ),
    ] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(plan.join("\n").contains(index), "{plan:?}");
    }
    let spans: (String, Option<i64>) = conn
        .query_row(
            "SELECT outcome, ended_at_ms FROM session_spans WHERE session_id = 'sess-alice'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(spans.0, "accepted");
    assert!(spans.1.is_some());
}

#[test]
fn tail_and_after() {
    let f = Fixture::new();
    f.fill(5);
    let r = f.reader();
    let last = r.tail(2).unwrap();
    assert_eq!(
        last.iter().map(|r| r.tool.as_str()).collect::<Vec<_>>(),
        ["tool3", "tool4"]
    );
    let after = r.executions_after(last[0].seq).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].tool, "tool4");
}

#[test]
fn export_writes_every_chained_row() {
    let f = Fixture::new();
    f.fill(3);
    let mut out = Vec::new();
    let n = f.reader().export_jsonl(&mut out).unwrap();
    assert_eq!(n, 6);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["kind"], "session");
    assert_eq!(lines[1]["kind"], "tool_execution");
    assert_eq!(lines[1]["arguments"]["repo"], "acme/widgets");
    assert!(lines[1]["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[4]["kind"], "edge_event");
    // The query string (which can carry a token) never reached the database.
    assert_eq!(lines[4]["path"], "/.env");
    assert_eq!(lines[5]["event"], "ended");
    assert_eq!(lines[5]["tag"].as_str().unwrap().len(), 64);
}

#[test]
fn no_column_can_hold_a_token() {
    // The schema has no column whose name suggests a credential.
    let f = Fixture::new();
    f.fill(0);
    let conn = Connection::open(&f.path).unwrap();
    let cols: Vec<String> = conn
        .prepare(
            "SELECT m.name || '.' || p.name FROM sqlite_master m, pragma_table_info(m.name) p
              WHERE m.type = 'table'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(cols.len() > 30, "{cols:?}");
    for c in &cols {
        let lower = c.to_lowercase();
        for bad in [
            "token", "secret", "password", "bearer", "cookie", "header", "key.", "api_key",
        ] {
            // `meta.key` is the name of a fact about the file, not a credential.
            if c == "meta.key" {
                continue;
            }
            assert!(
                !lower.contains(bad),
                "column {c} looks like it could hold a credential"
            );
        }
    }
}

#[test]
fn jwt_shaped_text_never_reaches_the_file() {
    let f = Fixture::new();
    let jwt =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjYW5hcnkifQ.Q2FuYXJ5U2lnbmF0dXJlQ2FuYXJ5";
    let writer = AuditWriter::open(&f.path, key()).unwrap();
    let sink = writer.sink();
    let mut rec = exec("alice", "echo", ExecStatus::Error);
    rec.arguments = Some(serde_json::json!({ "token": jwt }).to_string());
    rec.error = Some(format!("bad token {jwt}"));
    sink.record_blocking(rec).unwrap();
    let mut s = session("s", SessionEvent::Refused);
    s.reason = Some(format!("malformed: {jwt}"));
    sink.record_blocking(s).unwrap();
    writer.shutdown().unwrap();
    let rows = f.reader().executions(&Filter::default()).unwrap();
    assert_eq!(rows[0].redactions, 2);
    assert_eq!(
        rows[0].arguments,
        Some(serde_json::json!({ "token": JWT_MASK }))
    );
    // Checkpoint to fold the WAL in, then look at every byte of every file.
    Connection::open(&f.path)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    for entry in std::fs::read_dir(f.path.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(20).any(|w| w == &jwt.as_bytes()[..20]),
            "token found on disk"
        );
    }
    assert!(f.verify().is_intact());
}

#[test]
fn formats_utc() {
    assert_eq!(format_utc_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(format_utc_ms(1_795_860_000_123), "2026-11-28T10:00:00.123Z");
    assert_eq!(format_utc_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(format_utc_ms(-1), "1969-12-31T23:59:59.999Z");
}

fn open_marked(path: &Path, mark: &Arc<MemoryMark>) -> Result<AuditWriter, AuditError> {
    open_marked_with(path, mark, WriterOptions::default())
}

fn open_marked_with(
    path: &Path,
    mark: &Arc<MemoryMark>,
    opts: WriterOptions,
) -> Result<AuditWriter, AuditError> {
    struct Shared(Arc<MemoryMark>);
    impl HighWaterStore for Shared {
        fn load(&self) -> Result<Option<String>, String> {
            self.0.load()
        }
        fn store(&self, record: &str) -> Result<(), String> {
            self.0.store(record)
        }
    }
    AuditWriter::open_guarded(path, key(), opts, Some(Box::new(Shared(mark.clone()))))
}

#[test]
fn the_mark_rises_while_rows_come_not_only_at_the_end() {
    let f = Fixture::new();
    let mark = Arc::new(MemoryMark::default());
    let writer = open_marked_with(
        &f.path,
        &mark,
        WriterOptions {
            mark_interval: Duration::ZERO,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let sink = writer.sink();
    let seen = |m: &MemoryMark| match mark::read_mark(m, &key(), &f.path).unwrap() {
        mark::MarkState::Valid(h) => h.seq,
        other => panic!("{other:?}"),
    };
    assert_eq!(seen(&mark), 0, "raised at open");
    sink.record_blocking(exec("alice", "t", ExecStatus::Ok))
        .unwrap();
    sink.flush_blocking().unwrap();
    // The mark is raised after the batch's commit, on the writer thread: a second batch's flush
    // returns only after the first batch's raise.
    sink.record_blocking(exec("alice", "u", ExecStatus::Ok))
        .unwrap();
    sink.flush_blocking().unwrap();
    assert!(seen(&mark) >= 1);
    writer.shutdown().unwrap();
    assert_eq!(seen(&mark), 2);
}

fn write_n(writer: AuditWriter, n: usize) -> WriterStats {
    let sink = writer.sink();
    for i in 0..n {
        sink.record_blocking(exec("alice", &format!("t{i}"), ExecStatus::Ok))
            .unwrap();
    }
    writer.shutdown().unwrap()
}

fn chain_break(e: AuditError) -> ChainBreak {
    match e {
        AuditError::ChainBroken { found, .. } => found,
        other => panic!("expected a chain break, got {other:?}"),
    }
}

#[test]
fn a_cut_suffix_is_refused_by_the_next_writer_even_with_the_old_head_table_forged() {
    let f = Fixture::new();
    f.fill(10);
    // The attack of issue 9: cut the newest rows. (Version 2 resumed from an unauthenticated
    // `chain_head` table; there is none to forge now, and the checkpoint still says 13.)
    f.sql("DELETE FROM sessions WHERE seq = 13; DELETE FROM edge_events WHERE seq = 12;");
    let e = AuditWriter::open(&f.path, key()).unwrap_err();
    assert!(e.is_chain_break());
    assert_eq!(
        chain_break(e.clone()),
        ChainBreak::Truncated {
            last_found: 11,
            checkpoint: 13
        }
    );
    assert!(e.to_string().contains("refusing to append"), "{e}");
    assert!(e.to_string().contains("\nhint: "), "{e}");
    // Nothing was appended: verify still names the cut.
    assert!(matches!(
        f.verify().broken,
        Some(ChainBreak::Truncated { .. })
    ));
}

#[test]
fn an_older_checkpoint_copied_back_does_not_hide_a_cut_from_the_mark() {
    let f = Fixture::new();
    let mark = Arc::new(MemoryMark::default());
    write_n(open_marked(&f.path, &mark).unwrap(), 3);
    let old_head = std::fs::read(head_path(&f.path)).unwrap();
    write_n(open_marked(&f.path, &mark).unwrap(), 4);
    // Cut back to the old checkpoint and put the old checkpoint back.
    f.sql("DELETE FROM tool_executions WHERE seq > 3");
    std::fs::write(head_path(&f.path), &old_head).unwrap();
    assert!(
        f.verify().is_intact(),
        "without the mark this cut is invisible"
    );
    let e = open_marked(&f.path, &mark).unwrap_err();
    assert_eq!(
        chain_break(e),
        ChainBreak::BelowHighWater {
            last_found: 3,
            recorded: 7
        }
    );
    let report = f.reader().verify_with_mark(&key(), mark.as_ref()).unwrap();
    assert_eq!(
        report.broken,
        Some(ChainBreak::BelowHighWater {
            last_found: 3,
            recorded: 7
        })
    );
}

#[test]
fn a_wipe_of_rows_anchor_and_checkpoint_is_caught_by_the_mark() {
    let f = Fixture::new();
    let mark = Arc::new(MemoryMark::default());
    write_n(open_marked(&f.path, &mark).unwrap(), 5);
    let mut reader = f.reader();
    std::thread::sleep(Duration::from_millis(3));
    reader.prune(&key(), Duration::ZERO).unwrap().unwrap();
    drop(reader);
    f.sql("DELETE FROM tool_executions; DELETE FROM sessions; DELETE FROM edge_events; DELETE FROM chain_anchor;");
    std::fs::remove_file(head_path(&f.path)).unwrap();
    assert!(
        f.verify().is_intact(),
        "without the mark a wipe looks like a new log"
    );
    let report = f.reader().verify_with_mark(&key(), mark.as_ref()).unwrap();
    assert_eq!(
        report.broken,
        Some(ChainBreak::BelowHighWater {
            last_found: 0,
            recorded: 5
        })
    );
    let e = open_marked(&f.path, &mark).unwrap_err();
    assert!(matches!(chain_break(e), ChainBreak::BelowHighWater { .. }));
    // After the user moves the log aside and forgets its mark, a new log starts.
    std::fs::remove_file(&f.path).unwrap();
    assert!(forget_mark(mark.as_ref(), &f.path).unwrap());
    write_n(open_marked(&f.path, &mark).unwrap(), 1);
    let report = f.reader().verify_with_mark(&key(), mark.as_ref()).unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
}

/// A running writer whose last committed row (`kept + 1`) was then cut, with the checkpoint put
/// back to `kept`: the writer still remembers `kept + 1`.
fn writer_with_its_last_row_cut(kept: usize) -> (Fixture, AuditWriter, AuditSink) {
    let f = Fixture::new();
    let writer = AuditWriter::open_with(
        &f.path,
        key(),
        WriterOptions {
            shutdown_grace: Duration::from_millis(50),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let sink = writer.sink();
    for i in 0..kept {
        sink.record_blocking(exec("alice", &format!("t{i}"), ExecStatus::Ok))
            .unwrap();
    }
    assert_eq!(sink.flush_blocking().unwrap(), kept as i64);
    let old = std::fs::read(head_path(&f.path)).unwrap();
    sink.record_blocking(exec("alice", "last", ExecStatus::Ok))
        .unwrap();
    assert_eq!(sink.flush_blocking().unwrap(), kept as i64 + 1);
    f.sql(&format!(
        "DELETE FROM tool_executions WHERE seq = {}",
        kept + 1
    ));
    std::fs::write(head_path(&f.path), old).unwrap();
    (f, writer, sink)
}

#[test]
fn a_cut_while_a_writer_runs_stops_its_appends() {
    let (f, writer, sink) = writer_with_its_last_row_cut(3);
    sink.record_blocking(exec("alice", "t4", ExecStatus::Ok))
        .unwrap();
    let e = sink.flush_blocking().unwrap_err();
    assert!(matches!(
        chain_break(e),
        ChainBreak::Truncated { checkpoint: 4, .. }
    ));
    let end = writer.shutdown();
    assert!(matches!(end, Err(AuditError::Unwritten { .. })), "{end:?}");
    assert_eq!(count(&f.path, "tool_executions"), 3);
}

/// A flush sent while the writer keeps failing a batch is answered with the failure at once; it
/// does not wait in the channel behind the retries (a session's last flush would hang its exit).
#[test]
fn a_flush_sent_while_a_commit_keeps_failing_is_answered() {
    let (_f, writer, sink) = writer_with_its_last_row_cut(1);
    // The writer takes this record alone and starts failing on it...
    sink.record_blocking(exec("alice", "t2", ExecStatus::Ok))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sink.last_error().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never failed"
        );
        std::thread::yield_now();
    }
    // ...so this flush reaches it only between retries: it must still be answered.
    let e = sink.flush_blocking().unwrap_err();
    assert!(matches!(chain_break(e), ChainBreak::Truncated { .. }));
    let end = writer.shutdown();
    assert!(matches!(end, Err(AuditError::Unwritten { .. })), "{end:?}");
}

#[test]
fn a_forged_or_deleted_checkpoint_is_refused_by_the_writer() {
    let f = Fixture::new();
    f.fill(1);
    let head = head_path(&f.path);
    let saved = std::fs::read_to_string(&head).unwrap();
    std::fs::write(
        &head,
        saved.replace(&format!("seq {:019}", 4), &format!("seq {:019}", 3)),
    )
    .unwrap();
    let e = AuditWriter::open(&f.path, key()).unwrap_err();
    assert!(matches!(
        chain_break(e),
        ChainBreak::CheckpointForged { .. }
    ));
    std::fs::remove_file(&head).unwrap();
    let e = AuditWriter::open(&f.path, key()).unwrap_err();
    assert!(matches!(
        chain_break(e),
        ChainBreak::CheckpointMissing { .. }
    ));
    std::fs::write(&head, saved).unwrap();
    f.fill(1);
    assert!(f.verify().is_intact());
}

#[test]
fn a_crash_between_commit_and_checkpoint_is_not_a_cut() {
    let f = Fixture::new();
    let mark = Arc::new(MemoryMark::default());
    write_n(open_marked(&f.path, &mark).unwrap(), 2);
    let lagging = std::fs::read(head_path(&f.path)).unwrap();
    // Rows committed, then the process dies before the checkpoint and the mark are raised.
    write_n(open_with_no_mark(&f.path), 3);
    std::fs::write(head_path(&f.path), lagging).unwrap();
    let report = f.reader().verify_with_mark(&key(), mark.as_ref()).unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.past_checkpoint, 3);
    write_n(open_marked(&f.path, &mark).unwrap(), 1);
    let report = f.reader().verify_with_mark(&key(), mark.as_ref()).unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!((report.rows, report.past_checkpoint), (6, 0));
}

fn open_with_no_mark(path: &Path) -> AuditWriter {
    AuditWriter::open(path, key()).unwrap()
}

#[test]
fn writers_of_two_processes_interleave_into_one_chain() {
    let f = Fixture::new();
    let mark = Arc::new(MemoryMark::default());
    let a = open_marked(&f.path, &mark).unwrap();
    let b = open_marked(&f.path, &mark).unwrap();
    let (sa, sb) = (a.sink(), b.sink());
    let t = std::thread::spawn(move || {
        for i in 0..300 {
            sa.record_blocking(exec("alice", &format!("a{i}"), ExecStatus::Ok))
                .unwrap();
            if i % 50 == 0 {
                sa.flush_blocking().unwrap();
            }
        }
    });
    for i in 0..300 {
        sb.record_blocking(exec("bob", &format!("b{i}"), ExecStatus::Ok))
            .unwrap();
        if i % 70 == 0 {
            sb.flush_blocking().unwrap();
        }
    }
    t.join().unwrap();
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    let report = f.reader().verify_with_mark(&key(), mark.as_ref()).unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!((report.rows, report.past_checkpoint), (600, 0));
}

#[test]
fn non_tool_requests_are_rows_with_their_method_and_target() {
    let f = Fixture::new();
    let writer = AuditWriter::open(&f.path, key()).unwrap();
    let sink = writer.sink();
    let w = who("alice");
    sink.record_blocking(exec("alice", "create_issue", ExecStatus::Ok))
        .unwrap();
    for (method, target) in [
        ("resources/read", "repo://acme/widgets/README.md"),
        ("prompts/get", "summarize"),
        ("tools/list", ""),
    ] {
        let p = ExecutionRecord::begin_request(new_execution_id(), &w, method, "github", target);
        sink.record_blocking(p.finish(ExecStatus::Denied, Some("expired".into()), 0))
            .unwrap();
    }
    writer.shutdown().unwrap();
    assert!(f.verify().is_intact());
    let r = f.reader();
    let all = r.executions(&Filter::default()).unwrap();
    let methods: Vec<&str> = all.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(
        methods,
        ["tools/call", "resources/read", "prompts/get", "tools/list"]
    );
    assert!(all[1].arguments.is_none());
    let reads = r
        .executions(&Filter {
            method: Some("resources/read".into()),
            subject: Some("alice".into()),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].tool, "repo://acme/widgets/README.md");
    let plan = r
        .explain(&Filter {
            method: Some("prompts/get".into()),
            ..Filter::default()
        })
        .unwrap()
        .join(" ");
    assert!(plan.contains("tool_executions_method"), "{plan}");
    // Changing a row's method is an edit.
    f.sql("UPDATE tool_executions SET method = 'tools/call' WHERE seq = 2");
    assert!(matches!(
        f.verify().broken,
        Some(ChainBreak::Edited { seq: 2, .. })
    ));
}

/// The row bytes version 2 MAC'd, spelled out by hand (no `method` column).
fn v2_canonical(seq: i64, values: &[Option<&str>], ints: &[(usize, i64)]) -> Vec<u8> {
    let mut out = b"tool_executions\0".to_vec();
    out.extend_from_slice(&seq.to_be_bytes());
    for (i, v) in values.iter().enumerate() {
        if let Some((_, n)) = ints.iter().find(|(at, _)| *at == i) {
            out.push(1);
            out.extend_from_slice(&n.to_be_bytes());
            continue;
        }
        match v {
            None => out.push(0),
            Some(t) => {
                out.push(2);
                out.extend_from_slice(&(t.len() as u64).to_be_bytes());
                out.extend_from_slice(t.as_bytes());
            }
        }
    }
    out
}

#[test]
fn a_version_2_log_is_upgraded_and_still_verifies() {
    let f = Fixture::new();
    let k = key();
    {
        let conn = Connection::open(&f.path).unwrap();
        for (v, sql) in db::migrations().into_iter().take(2) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", v).unwrap();
        }
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('key_check', ?1)",
            [k.check_value()],
        )
        .unwrap();
        let mut prev = chain::GENESIS;
        for seq in 1..=2i64 {
            let text: [Option<&str>; 15] = [
                Some("0193a5b2-7c4e-7d21-9f3a-2b6c8e1d4f70"),
                None,
                None,
                None,
                Some("s1"),
                Some("j1"),
                Some("alice"),
                Some("user"),
                Some("stdio"),
                Some("github"),
                Some("create_issue"),
                Some("{}"),
                Some("ok"),
                None,
                None,
            ];
            let ints = [(1, 1000 + seq), (2, 1001 + seq), (3, 5), (14, 0)];
            let tag = k.row_tag(&prev, &v2_canonical(seq, &text, &ints));
            conn.execute(
                "INSERT INTO tool_executions (seq, execution_id, started_at_ms, finished_at_ms,
                 duration_us, session_id, jti, subject, tier, transport, server, tool, arguments,
                 status, error, redactions, tag)
                 VALUES (?1, '0193a5b2-7c4e-7d21-9f3a-2b6c8e1d4f70', ?2, ?3, 5, 's1', 'j1', 'alice',
                 'user', 'stdio', 'github', 'create_issue', '{}', 'ok', NULL, 0, ?4)",
                rusqlite::params![seq, 1000 + seq, 1001 + seq, tag],
            )
            .unwrap();
            conn.execute(
                "INSERT OR REPLACE INTO chain_head (id, seq, tag) VALUES (1, ?1, ?2)",
                rusqlite::params![seq, tag],
            )
            .unwrap();
            prev = tag;
        }
        chain::write_head(&k, &head_path(&f.path), chain::Head { seq: 2, tag: prev }).unwrap();
    }
    let report = f.verify();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.rows, 2);
    // The writer continues the upgraded chain.
    write_n(open_with_no_mark(&f.path), 2);
    let report = f.verify();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!(report.rows, 4);
    let rows = f.reader().executions(&Filter::default()).unwrap();
    assert!(rows.iter().all(|r| r.method == "tools/call"));
}

#[cfg(unix)]
#[test]
fn the_database_its_wal_and_the_checkpoint_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let writer = AuditWriter::open(&f.path, key()).unwrap();
    let sink = writer.sink();
    sink.record_blocking(exec("alice", "t", ExecStatus::Ok))
        .unwrap();
    sink.flush_blocking().unwrap();
    for p in files::companions(&f.path) {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    writer.shutdown().unwrap();
    // Files an older version left world-readable are tightened at the next open.
    for p in files::companions(&f.path) {
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    drop(f.reader());
    for p in files::companions(&f.path) {
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

/// The tag the writer computes with its batch-keyed MAC is the spelled-out
/// `HMAC(key, "lastmile-audit-row-v1" || prev || canonical)`, for short and multi-block rows.
#[test]
fn a_batch_keyed_row_mac_tags_as_the_chain_defines() {
    use hmac::{Hmac, Mac};
    let k = key();
    let mac = k.row_mac();
    let prev = [7u8; 32];
    for len in [0usize, 1, 31, 64, 300, 1000] {
        let bytes = vec![0xa5u8; len];
        let mut want =
            Hmac::<sha2::Sha256>::new_from_slice(b"test-audit-key-0123456789abcdef!").unwrap();
        want.update(b"lastmile-audit-row-v1");
        want.update(&prev);
        want.update(&bytes);
        let want: chain::Tag = want.finalize().into_bytes().into();
        assert_eq!(mac.tag(&prev, &bytes), want, "{len}");
        assert_eq!(k.row_tag(&prev, &bytes), want, "{len}");
    }
}
