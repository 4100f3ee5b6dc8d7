//! `lastmile audit`: query, tail, export, prune and verify the audit log.
//!
//! Reading (`query`, `tail`, `export`) needs only the database; `verify` and `prune` also need the
//! profile's audit key from the secret store, because they check (and, for prune, write) MACs, and
//! `verify` reads the chain's high-water mark kept beside the key. None of them ever creates a key:
//! a key made now could not verify anything written before.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use super::output::sanitize_for_terminal;
use super::{GlobalArgs, Printer, glue};
use crate::audit::{
    AuditError, AuditKey, AuditReader, ExecStatus, ExecutionRow, Filter, HighWaterStore, db_path,
    forget_mark, head_path, missing_database_break,
};
use crate::config::{DurationSpec, Profile};
use crate::exit_codes;
use crate::secrets::{Internal, SecretKey, SecretStore};

/// The audit log's high-water mark, kept in the profile's secret store (outside the data folder,
/// so that deleting the log, its anchor and its checkpoint together is still seen).
pub(crate) struct KeyringMark(pub(crate) Arc<dyn SecretStore>);

impl HighWaterStore for KeyringMark {
    fn load(&self) -> Result<Option<String>, String> {
        self.0
            .get(&SecretKey::Internal(Internal::AuditMark))
            .map(|v| v.map(|v| v.expose_secret().to_string()))
            .map_err(|e| e.to_string())
    }

    fn store(&self, record: &str) -> Result<(), String> {
        self.0
            .set(
                &SecretKey::Internal(Internal::AuditMark),
                &SecretString::from(record),
            )
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Forwarded requests (tool calls, reads, prompts, lists...), filtered: what an identity,
    /// session or token touched, and when.
    Query(QueryArgs),
    /// The last forwarded requests; with --follow, keep printing new ones as they are written.
    Tail(TailArgs),
    /// Every audited row (tool executions, sessions, edge denials) as JSON Lines, in chain order.
    Export(ExportArgs),
    /// Remove rows older than a duration; what remains still verifies.
    Prune(PruneArgs),
    /// Walk the tamper-evident chain and name the first broken link.
    Verify,
    /// Start a new log after a cut one was moved aside as evidence: forget its high-water mark.
    Restart,
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// Only calls by this subject.
    #[arg(long)]
    subject: Option<String>,
    /// Only calls in this session.
    #[arg(long)]
    session: Option<String>,
    /// Only calls made under this token id (jti).
    #[arg(long)]
    jti: Option<String>,
    /// Only this server's tools.
    #[arg(long)]
    server: Option<String>,
    /// Only this target: a tool (its name on its server), a prompt or a resource URI.
    #[arg(long)]
    tool: Option<String>,
    /// Only this MCP method: tools/call, resources/read, prompts/get, tools/list, ...
    #[arg(long)]
    method: Option<String>,
    /// Only calls that ended so: ok, tool_error, error, timeout, cancelled, denied, rate_limited.
    #[arg(long)]
    status: Option<ExecStatus>,
    /// Only calls started within this long before now (30m, 1h, 90d).
    #[arg(long)]
    since: Option<DurationSpec>,
    /// At most this many rows (the newest).
    #[arg(long)]
    limit: Option<usize>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// How many rows to show.
    #[arg(short = 'n', long = "lines", default_value_t = 20)]
    lines: usize,
    /// Only this MCP method: tools/call, resources/read, prompts/get, tools/list, ...
    #[arg(long)]
    method: Option<String>,
    /// Keep polling for new rows until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// Print JSON Lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// JSON Lines, one object per row (the only format; the flag says so explicitly).
    #[arg(long)]
    jsonl: bool,
    /// Only requests of this MCP method (other rows — sessions, edge denials — are left out).
    #[arg(long)]
    method: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Remove rows older than this (for example 90d).
    #[arg(long)]
    older_than: DurationSpec,
}

pub(crate) fn run(global: &GlobalArgs, cmd: AuditCommand) -> u8 {
    crate::telemetry::init_cli();
    let p = Printer;
    let profile = match Profile::locate(&global.profile, global.config_dir.clone()) {
        Ok(profile) => profile,
        Err(e) => {
            p.err(format!("error: {e}"));
            return exit_codes::CONFIG_INVALID;
        }
    };
    let path = db_path(&profile.data_dir);
    let result = match cmd {
        AuditCommand::Query(args) => query(&p, &path, args),
        AuditCommand::Tail(args) => tail(&p, &path, args),
        AuditCommand::Export(args) => export(&path, args),
        AuditCommand::Prune(args) => prune(&p, global, &path, args),
        AuditCommand::Verify => verify(&p, global, &path),
        AuditCommand::Restart => restart(&p, global, &path),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Audit(e)) => {
            p.err(format!("error: {e}"));
            exit_codes::AUDIT_UNAVAILABLE
        }
        Err(Failure::Key(e)) => {
            p.err(format!(
                "error: cannot read the profile's audit key: {e}\nhint: the key lives in the OS keyring (profile `{}`); run `lastmile secrets status`",
                global.profile
            ));
            exit_codes::SECRETS_UNAVAILABLE
        }
        Err(Failure::NoKey { service }) => {
            p.err(format!(
                "error: the profile has no audit key (keyring service `{service}`), so the log cannot be checked; nothing was written\nhint: the first `lastmile serve` of a profile creates the key; if it was deleted, restore the keyring entry `audit-key` — a new key cannot verify rows chained with the old one"
            ));
            exit_codes::SECRETS_UNAVAILABLE
        }
        Err(Failure::InPlace { db }) => {
            p.err(format!(
                "error: {} is still in place; `audit restart` starts a new log only once the old one is moved aside\nhint: move {} and {} to a folder of their own (keep them as evidence), then run `lastmile audit restart` again",
                db.display(),
                db.display(),
                head_path(&db).display()
            ));
            exit_codes::FAILURE
        }
    }
}

enum Failure {
    Audit(AuditError),
    Key(String),
    NoKey { service: String },
    InPlace { db: std::path::PathBuf },
}

impl From<AuditError> for Failure {
    fn from(e: AuditError) -> Self {
        Failure::Audit(e)
    }
}

fn store(global: &GlobalArgs) -> Result<Arc<dyn SecretStore>, Failure> {
    let (_, opened) = glue::open_profile_store(global).map_err(|e| Failure::Key(e.to_string()))?;
    Ok(opened.store)
}

/// The profile's audit key, read only: never created here.
fn key(store: &dyn SecretStore) -> Result<AuditKey, Failure> {
    match store.get(&SecretKey::Internal(Internal::AuditKey)) {
        Ok(Some(secret)) => AuditKey::from_secret(&secret).map_err(|e| Failure::Key(e.to_string())),
        Ok(None) => Err(Failure::NoKey {
            service: store.service().to_string(),
        }),
        Err(e) => Err(Failure::Key(e.to_string())),
    }
}

fn query(p: &Printer, path: &std::path::Path, args: QueryArgs) -> Result<u8, Failure> {
    let reader = AuditReader::open(path)?;
    let mut filter = Filter {
        subject: args.subject,
        session: args.session,
        jti: args.jti,
        server: args.server,
        tool: args.tool,
        method: args.method,
        status: args.status,
        limit: args.limit,
        ..Filter::default()
    };
    if let Some(since) = args.since {
        filter = filter.since(since.0);
    }
    let rows = reader.executions(&filter)?;
    if args.json {
        p.out(serde_json::Value::from(
            rows.iter()
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .collect::<Vec<_>>(),
        ));
    } else if rows.is_empty() {
        p.err("no requests match");
    } else {
        print_table(p, &rows, true);
    }
    Ok(exit_codes::OK)
}

fn tail(p: &Printer, path: &std::path::Path, args: TailArgs) -> Result<u8, Failure> {
    let reader = AuditReader::open(path)?;
    let keep = |rows: Vec<ExecutionRow>| -> Vec<ExecutionRow> {
        match &args.method {
            Some(m) => rows.into_iter().filter(|r| &r.method == m).collect(),
            None => rows,
        }
    };
    let rows = match &args.method {
        Some(m) => reader.executions(&Filter {
            method: Some(m.clone()),
            limit: Some(args.lines),
            ..Filter::default()
        })?,
        None => reader.tail(args.lines)?,
    };
    let mut last = rows.last().map_or(0, |r| r.seq);
    let print = |rows: &[ExecutionRow], header: bool| {
        if args.json {
            for r in rows {
                p.out(serde_json::to_string(r).unwrap_or_default());
            }
        } else if !rows.is_empty() {
            print_table(p, rows, header);
        }
    };
    print(&rows, true);
    if !args.follow {
        return Ok(exit_codes::OK);
    }
    if last == 0 {
        last = reader.tail(1)?.last().map_or(0, |r| r.seq);
    }
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let rows = reader.executions_after(last)?;
        if let Some(r) = rows.last() {
            last = r.seq;
        }
        print(&keep(rows), false);
    }
}

fn export(path: &std::path::Path, args: ExportArgs) -> Result<u8, Failure> {
    let reader = AuditReader::open(path)?;
    // Export is stdout's whole content; write through one locked, buffered handle.
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    reader.export_jsonl_of(&mut out, args.method.as_deref())?;
    std::io::Write::flush(&mut out).map_err(|e| AuditError::Io {
        path: "-".into(),
        detail: e.to_string(),
    })?;
    Ok(exit_codes::OK)
}

fn prune(
    p: &Printer,
    global: &GlobalArgs,
    path: &std::path::Path,
    args: PruneArgs,
) -> Result<u8, Failure> {
    let key = key(store(global)?.as_ref())?;
    let mut reader = AuditReader::open(path)?;
    match reader.prune(&key, args.older_than.0)? {
        Ok(report) => {
            match (report.removed, report.pruned_through) {
                (0, _) => p.out(format!("nothing older than {} to prune", args.older_than)),
                (n, Some(through)) => p.out(format!(
                    "pruned {n} row(s); the chain now starts after row {through} and still verifies"
                )),
                (n, None) => p.out(format!("pruned {n} row(s)")),
            }
            Ok(exit_codes::OK)
        }
        Err(broken) => {
            p.err(format!(
                "error: refusing to prune a broken chain: {broken}\nhint: keep the database as evidence; `lastmile audit verify` shows the same finding"
            ));
            Ok(exit_codes::AUDIT_TAMPERED)
        }
    }
}

fn verify(p: &Printer, global: &GlobalArgs, path: &std::path::Path) -> Result<u8, Failure> {
    let store = store(global)?;
    let key = key(store.as_ref())?;
    let mark = KeyringMark(store);
    let reader = match AuditReader::open(path) {
        Ok(r) => r,
        Err(e @ AuditError::Missing { .. }) => {
            // No file at all: fine for a profile that never served, not for one whose mark
            // records rows.
            return match missing_database_break(&mark, &key, path)? {
                Some(broken) => {
                    p.out(format!("chain broken: {broken}"));
                    p.err(format!(
                        "error: the audit log was deleted\nhint: restore {} and audit.head from a backup; to start a new log instead, run `lastmile audit restart`",
                        path.display()
                    ));
                    Ok(exit_codes::AUDIT_TAMPERED)
                }
                None => Err(e.into()),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let report = reader.verify_with_mark(&key, &mark)?;
    match &report.broken {
        None => {
            let pruned = report
                .pruned_through
                .map(|s| format!(" (rows up to {s} were pruned)"))
                .unwrap_or_default();
            p.out(format!(
                "chain intact: {} row(s) verified, last row {}{pruned}",
                report.rows, report.last_seq
            ));
            if report.past_checkpoint > 0 {
                p.err(format!(
                    "warning: the last {} row(s) were written after the last checkpoint (lastmile stopped between a commit and its checkpoint); truncation of those rows could not be detected",
                    report.past_checkpoint
                ));
            }
            Ok(exit_codes::OK)
        }
        Some(broken) => {
            p.out(format!("chain broken: {broken}"));
            p.err(format!(
                "error: the audit log was tampered with ({} row(s) verified before the break)\nhint: keep {} and audit.head as evidence; `lastmile audit export --jsonl` shows every row",
                report.rows,
                path.display()
            ));
            Ok(exit_codes::AUDIT_TAMPERED)
        }
    }
}

fn restart(p: &Printer, global: &GlobalArgs, path: &std::path::Path) -> Result<u8, Failure> {
    if path.exists() || head_path(path).exists() {
        return Err(Failure::InPlace {
            db: path.to_path_buf(),
        });
    }
    let mark = KeyringMark(store(global)?);
    if forget_mark(&mark, path)? {
        p.out(format!(
            "forgot the high-water mark of {}; the next `lastmile serve` starts a new log",
            path.display()
        ));
    } else {
        p.out(format!(
            "no high-water mark was recorded for {}; the next `lastmile serve` starts a new log",
            path.display()
        ));
    }
    Ok(exit_codes::OK)
}

/// One line of a table cell: downstream text cannot drive the terminal or break the layout.
fn cell(text: &str) -> String {
    sanitize_for_terminal(text).replace(['\n', '\t'], " ")
}

fn print_table(p: &Printer, rows: &[ExecutionRow], header: bool) {
    const HEAD: [&str; 10] = [
        "STARTED",
        "EXECUTION",
        "SUBJECT",
        "TIER",
        "METHOD",
        "SERVER",
        "TARGET",
        "STATUS",
        "MS",
        "ERROR",
    ];
    let table: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.started_at.clone(),
                r.execution_id.clone(),
                cell(r.subject.as_deref().unwrap_or("-")),
                cell(&r.tier),
                cell(&r.method),
                cell(&r.server),
                cell(&r.tool),
                cell(&r.status),
                format!("{:.1}", r.duration_us as f64 / 1000.0),
                cell(r.error.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let mut widths = HEAD.map(|h| h.chars().count());
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    if header {
        p.out(line(&HEAD.map(String::from)));
    }
    for row in &table {
        p.out(line(row));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_one_clean_line() {
        assert_eq!(cell("a\nb\tc\u{1b}[31m"), "a b c\u{fffd}[31m");
    }
}
