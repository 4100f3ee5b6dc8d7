//! Reading the audit log: filtered queries over forwarded requests ("what did this identity touch"),
//! tail, JSON Lines export of every chained row, and the maintenance that needs the key (`verify`,
//! `prune`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;

use super::chain::{self, AuditKey, VerifyReport};
use super::db::{self, OpenOptions, classify};
use super::layout::{ExecRow, Table, Val};
use super::mark::{self, HighWaterStore};
use super::record::{ExecStatus, now_ms};
use super::{AuditError, format_utc_ms};

/// Which tool executions to return. Every field narrows; `Default` returns everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this subject's calls.
    pub subject: Option<String>,
    /// Only this session's calls.
    pub session: Option<String>,
    /// Only calls made under this token id.
    pub jti: Option<String>,
    /// Only this server's tools.
    pub server: Option<String>,
    /// Only this target: a tool's name on its server, a prompt's name or a resource URI.
    pub tool: Option<String>,
    /// Only this MCP method (`tools/call`, `resources/read`, ...).
    pub method: Option<String>,
    /// Only calls that ended this way.
    pub status: Option<ExecStatus>,
    /// Only calls started at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only rows after this chain position (`tail --follow`).
    pub after_seq: Option<i64>,
    /// At most this many rows (the newest ones when set).
    pub limit: Option<usize>,
}

impl Filter {
    /// `since` as a duration before now (`--since 1h`).
    pub fn since(mut self, ago: Duration) -> Self {
        let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        self.since_ms = Some(now_ms().saturating_sub(ago));
        self
    }
}

/// One forwarded request (a tool call or any other) as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionRow {
    /// Position in the chain.
    pub seq: i64,
    /// The execution id the client saw in `_meta`.
    pub execution_id: String,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// Start, Unix ms.
    pub started_at_ms: i64,
    /// End, Unix ms.
    pub finished_at_ms: i64,
    /// Duration in microseconds.
    pub duration_us: i64,
    /// The session.
    pub session_id: String,
    /// The token id.
    pub jti: Option<String>,
    /// The subject.
    pub subject: Option<String>,
    /// The tier.
    pub tier: String,
    /// `stdio` or `http`.
    pub transport: String,
    /// The MCP method.
    pub method: String,
    /// The server.
    pub server: String,
    /// The target: tool name, prompt name or resource URI.
    pub tool: String,
    /// The scrubbed arguments.
    pub arguments: Option<serde_json::Value>,
    /// How it ended.
    pub status: String,
    /// The scrubbed error.
    pub error: Option<String>,
    /// Values redacted.
    pub redactions: i64,
}

fn exec_select() -> String {
    format!(
        "SELECT seq, {} FROM {}",
        Table::Executions.select_columns(),
        Table::Executions.name()
    )
}

fn parse_json(text: Option<String>) -> Option<serde_json::Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
}

fn exec_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRow> {
    let row = ExecRow::from_row(r, 1)?;
    Ok(ExecutionRow {
        seq: r.get(0)?,
        execution_id: row.execution_id,
        started_at: format_utc_ms(row.started_at_ms),
        started_at_ms: row.started_at_ms,
        finished_at_ms: row.finished_at_ms,
        duration_us: row.duration_us,
        session_id: row.session_id,
        jti: row.jti,
        subject: row.subject,
        tier: row.tier.into_string(),
        transport: row.transport.into_string(),
        method: row.method,
        server: row.server,
        tool: row.tool,
        arguments: parse_json(row.arguments),
        status: row.status.into_string(),
        error: row.error,
        redactions: row.redactions,
    })
}

/// What `prune` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Rows removed.
    pub removed: u64,
    /// The chain now starts after this position (the anchor), if anything was ever pruned.
    pub pruned_through: Option<i64>,
}

/// A connection for reading and maintaining the audit log (`lastmile audit ...`).
#[derive(Debug)]
pub struct AuditReader {
    conn: Connection,
    path: PathBuf,
}

impl AuditReader {
    /// Open an existing audit database (upgrading an older schema in place). A missing file is
    /// [`AuditError::Missing`], not created.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let conn = db::open(
            path,
            OpenOptions {
                create: false,
                ..OpenOptions::default()
            },
        )?;
        Ok(AuditReader {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: rusqlite::Error) -> AuditError {
        classify(&self.path, e)
    }

    fn build(filter: &Filter) -> (String, Vec<Val>) {
        let mut sql = exec_select();
        let mut clauses: Vec<String> = Vec::new();
        let mut params: Vec<Val> = Vec::new();
        let mut text = |col: &str, v: &Option<String>, params: &mut Vec<Val>| {
            if let Some(v) = v {
                params.push(Val::Text(v.clone()));
                clauses.push(format!("{col} = ?{}", params.len()));
            }
        };
        text("subject", &filter.subject, &mut params);
        text("session_id", &filter.session, &mut params);
        text("jti", &filter.jti, &mut params);
        text("server", &filter.server, &mut params);
        text("tool", &filter.tool, &mut params);
        text("method", &filter.method, &mut params);
        text(
            "status",
            &filter.status.map(|s| s.as_str().to_string()),
            &mut params,
        );
        if let Some(since) = filter.since_ms {
            params.push(Val::Int(since));
            clauses.push(format!("started_at_ms >= ?{}", params.len()));
        }
        if let Some(after) = filter.after_seq {
            params.push(Val::Int(after));
            clauses.push(format!("seq > ?{}", params.len()));
        }
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        match filter.limit {
            // The newest `limit` rows, returned oldest first by the caller.
            Some(n) => sql.push_str(&format!(" ORDER BY started_at_ms DESC, seq DESC LIMIT {n}")),
            None => sql.push_str(" ORDER BY started_at_ms, seq"),
        }
        (sql, params)
    }

    /// Requests matching `filter`, oldest first.
    pub fn executions(&self, filter: &Filter) -> Result<Vec<ExecutionRow>, AuditError> {
        let (sql, params) = Self::build(filter);
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), exec_row)
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.err(e))?);
        }
        if filter.limit.is_some() {
            out.reverse();
        }
        Ok(out)
    }

    /// The query plan SQLite chooses for `filter` (one line per step).
    pub fn explain(&self, filter: &Filter) -> Result<Vec<String>, AuditError> {
        let (sql, params) = Self::build(filter);
        let mut stmt = self
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                r.get::<_, String>(3)
            })
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map_err(|e| self.err(e))).collect()
    }

    /// The last `n` tool executions (by chain position), oldest first.
    pub fn tail(&self, n: usize) -> Result<Vec<ExecutionRow>, AuditError> {
        let sql = format!("{} ORDER BY seq DESC LIMIT {n}", exec_select());
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], exec_row).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.err(e))?);
        }
        out.reverse();
        Ok(out)
    }

    /// Tool executions after chain position `seq`, oldest first (`tail --follow` polls this).
    pub fn executions_after(&self, seq: i64) -> Result<Vec<ExecutionRow>, AuditError> {
        let sql = format!("{} WHERE seq > ?1 ORDER BY seq", exec_select());
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map([seq], exec_row).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    /// Write every chained row (tool executions, session events, edge events) as one JSON object per
    /// line, in chain order, each with its `kind`, `seq` and `tag` (hex) so that a SIEM holds the chain
    /// too. Returns the number of lines.
    pub fn export_jsonl(&self, out: &mut dyn Write) -> Result<u64, AuditError> {
        self.export_jsonl_of(out, None)
    }

    /// [`AuditReader::export_jsonl`] of the requests of one MCP method only (session and edge rows
    /// are left out), in the same format.
    pub fn export_jsonl_of(
        &self,
        out: &mut dyn Write,
        method: Option<&str>,
    ) -> Result<u64, AuditError> {
        let method_at = Table::Executions
            .columns()
            .iter()
            .position(|c| c.name == "method");
        let mut count = 0u64;
        let mut failure: Option<std::io::Error> = None;
        chain::walk_rows(&self.conn, &self.path, |row| {
            if let Some(m) = method {
                let keep = row.table == Table::Executions
                    && method_at.and_then(|i| row.values.get(i)) == Some(&Val::Text(m.into()));
                if !keep {
                    return std::ops::ControlFlow::Continue(());
                }
            }
            let mut obj = serde_json::Map::new();
            obj.insert("kind".into(), row.table.def().kind.into());
            obj.insert("seq".into(), row.seq.into());
            for (col, v) in row.table.columns().iter().map(|c| c.name).zip(&row.values) {
                let json = match v {
                    Val::Null => serde_json::Value::Null,
                    Val::Int(i) => (*i).into(),
                    Val::Text(t) if col == "arguments" => {
                        serde_json::from_str(t).unwrap_or_else(|_| t.clone().into())
                    }
                    Val::Text(t) => t.clone().into(),
                };
                obj.insert(col.to_string(), json);
                if col.ends_with("_at_ms")
                    && let Val::Int(ms) = v
                {
                    let name = col.trim_end_matches("_ms");
                    obj.insert(name.to_string(), format_utc_ms(*ms).into());
                }
            }
            obj.insert("tag".into(), chain::hex(&row.tag).into());
            let line = serde_json::Value::Object(obj).to_string();
            if let Err(e) = writeln!(out, "{line}") {
                failure = Some(e);
                return std::ops::ControlFlow::Break(());
            }
            count += 1;
            std::ops::ControlFlow::Continue(())
        })?;
        if let Some(e) = failure {
            return Err(AuditError::Io {
                path: PathBuf::from("-"),
                detail: e.to_string(),
            });
        }
        Ok(count)
    }

    /// Walk the chain and name the first broken link. Writes nothing.
    pub fn verify(&self, key: &AuditKey) -> Result<VerifyReport, AuditError> {
        chain::verify(&self.conn, key, &self.path, None)
    }

    /// [`AuditReader::verify`], also checking that the database reaches the high-water mark kept
    /// in `mark` (which catches a cut of rows, prune anchor and checkpoint file together).
    pub fn verify_with_mark(
        &self,
        key: &AuditKey,
        mark: &dyn HighWaterStore,
    ) -> Result<VerifyReport, AuditError> {
        let state = mark::read_mark(mark, key, &self.path)?;
        chain::verify(&self.conn, key, &self.path, Some(state))
    }

    /// Remove rows older than `older_than` — the oldest part of the chain, up to the first row that is
    /// newer — and store a MAC'd anchor so that what remains still verifies. Refuses (returning the
    /// break) when the chain does not verify: pruning must not launder an edit.
    pub fn prune(
        &mut self,
        key: &AuditKey,
        older_than: Duration,
    ) -> Result<Result<PruneReport, chain::ChainBreak>, AuditError> {
        let report = self.verify(key)?;
        if let Some(b) = report.broken {
            return Ok(Err(b));
        }
        let cutoff =
            now_ms().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        // The first position that must stay: the oldest row that is not old enough in any table.
        let mut keep_from: Option<i64> = None;
        let mut last: i64 = 0;
        for t in Table::ALL {
            let first_new: Option<i64> = tx
                .query_row(
                    &format!(
                        "SELECT min(seq) FROM {} WHERE {} >= ?1",
                        t.name(),
                        t.def().time_column
                    ),
                    [cutoff],
                    |r| r.get(0),
                )
                .map_err(err)?;
            if let Some(s) = first_new {
                keep_from = Some(keep_from.map_or(s, |k: i64| k.min(s)));
            }
            let max: Option<i64> = tx
                .query_row(&format!("SELECT max(seq) FROM {}", t.name()), [], |r| {
                    r.get(0)
                })
                .map_err(err)?;
            last = last.max(max.unwrap_or(0));
        }
        let through = match keep_from {
            Some(k) => k - 1,
            None => last,
        };
        let anchor = chain::read_anchor(&tx, key, &path)?;
        let already = anchor.map_or(0, |a| a.seq);
        if through <= already {
            return Ok(Ok(PruneReport {
                removed: 0,
                pruned_through: anchor.map(|a| a.seq),
            }));
        }
        let mut tag: Option<Vec<u8>> = None;
        for t in Table::ALL {
            use rusqlite::OptionalExtension;
            let found: Option<Vec<u8>> = tx
                .query_row(
                    &format!("SELECT tag FROM {} WHERE seq = ?1", t.name()),
                    [through],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            if found.is_some() {
                tag = found;
            }
        }
        let Some(tag) = tag.and_then(|t| chain::Tag::try_from(t.as_slice()).ok()) else {
            return Err(AuditError::Sqlite {
                path: path.clone(),
                detail: format!("row {through} vanished while pruning"),
            });
        };
        let mut removed = 0u64;
        for t in Table::ALL {
            removed += tx
                .execute(
                    &format!("DELETE FROM {} WHERE seq <= ?1", t.name()),
                    [through],
                )
                .map_err(err)? as u64;
        }
        let pruned_at = now_ms();
        let mac = key.anchor_mac(through, &tag, pruned_at);
        tx.execute(
            "INSERT OR REPLACE INTO chain_anchor (id, seq, tag, pruned_at_ms, mac) VALUES (1, ?1, ?2, ?3, ?4)",
            rusqlite::params![through, tag, pruned_at, mac],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Ok(PruneReport {
            removed,
            pruned_through: Some(through),
        }))
    }
}
