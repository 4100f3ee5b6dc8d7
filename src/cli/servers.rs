//! `lastmile servers add|list|rm|check`: write, show, remove and check the server definitions in
//! `servers.d/`. Nothing here starts a server.
//!
//! `list` shows each server's last start as the gateway records it in the data folder
//! (`servers/NAME.status.json`: `{"at_ms": …, "ok": true|false, "reason": "…"}`, written by
//! the gateway at each start); a server that never started shows as "never started".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::error::CliError;
use super::files::{ensure_private_dir, write_atomic};
use super::output::sanitize_for_terminal;
use super::{GlobalArgs, Printer};
use crate::config::{
    Profile, SecretRef, Server, ServerDef, Tier, is_valid_server_name, load_servers_dir,
    parse_server_file, perms,
};
use crate::secrets::{BackendRequest, SecretKey, SecretStore, child_secrets, open_store};

#[derive(Debug, Subcommand)]
pub(crate) enum ServersCommand {
    /// Write servers.d/NAME.toml for a server started as COMMAND ARGS…
    #[command(
        after_help = "Examples:\n  lastmile servers add time --tier admin --tier user -- uvx mcp-server-time\n  lastmile servers add github --tier admin --tier user --secret GITHUB_TOKEN -- npx -y @modelcontextprotocol/server-github\n  lastmile servers add api --secret API_KEY=MY_SERVICE_KEY --env LOG_LEVEL=info -- ./api-server"
    )]
    Add(AddArgs),
    /// List the servers: tiers, secrets present or missing, last start.
    #[command(after_help = "Examples:\n  lastmile servers list\n  lastmile servers list --json")]
    List(ListArgs),
    /// Remove servers.d/NAME.toml (its secrets stay in the keyring).
    #[command(after_help = "Examples:\n  lastmile servers rm github")]
    Rm {
        /// The server's name.
        name: String,
    },
    /// Check every file in servers.d (and lastmile.toml); print each problem; exit non-zero if any.
    #[command(after_help = "Examples:\n  lastmile servers check")]
    Check,
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The server's name (the file stem): lowercase letters, digits and dashes.
    name: String,
    /// A tier that may use the server; repeat for several. None: admin only.
    #[arg(long = "tier", value_name = "TIER")]
    tiers: Vec<Tier>,
    /// A secret the server receives in its environment: NAME, or VAR=NAME to deliver the secret
    /// NAME in the variable VAR. Store the value with `lastmile secrets set NAME`.
    #[arg(long = "secret", value_name = "NAME|VAR=NAME")]
    secrets: Vec<String>,
    /// A plain (non-secret) environment variable, K=V; repeat for several.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Working folder of the server.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Replace an existing definition of the same name.
    #[arg(long)]
    replace: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(global: &GlobalArgs, cmd: ServersCommand) -> Result<(), CliError> {
    crate::telemetry::init_cli();
    let p = Printer;
    let profile = Profile::locate(&global.profile, global.config_dir.clone())?;
    match cmd {
        ServersCommand::Add(args) => add(global, &profile, args, &p),
        ServersCommand::List(args) => list(global, &profile, args, &p),
        ServersCommand::Rm { name } => rm(&profile, &name, &p),
        ServersCommand::Check => check(global, &profile, &p),
    }
}

/// Parse `--secret` values: `NAME` or `VAR=NAME`.
pub(crate) fn parse_secret_ref(spec: &str) -> Result<SecretRef, CliError> {
    let bad = || {
        CliError::usage(
            "a --secret value is not NAME or VAR=NAME",
            "secret names match ^[A-Z][A-Z0-9_]{0,63}$; the value is never given on the command line, store it with `lastmile secrets set NAME`",
        )
    };
    let (env, from) = match spec.split_once('=') {
        Some((env, from)) => (Some(env), from),
        None => (None, spec),
    };
    crate::secrets::SecretName::parse(from).map_err(|_| bad())?;
    match env {
        Some(env) if env != from => Ok(SecretRef::Renamed {
            env: env.to_string(),
            from: from.to_string(),
        }),
        _ => Ok(SecretRef::Named(from.to_string())),
    }
}

/// The TOML text of a definition, checked by the same parser that loads it.
pub(crate) fn render_def(def: &ServerDef, header: &str) -> Result<String, String> {
    let body = toml::to_string(def).map_err(|e| e.to_string())?;
    let text = format!("{header}{body}");
    parse_server_file(&text).map_err(|(_, e)| e.to_string())?;
    Ok(text)
}

/// Write `servers.d/NAME.toml` (folder 0700, file 0600), refusing to replace one unless asked.
pub(crate) fn write_server_file(
    servers_dir: &Path,
    name: &str,
    text: &str,
    replace: bool,
) -> Result<PathBuf, CliError> {
    ensure_private_dir(servers_dir)?;
    let path = servers_dir.join(format!("{name}.toml"));
    if !replace && path.exists() {
        return Err(CliError::conflict(
            format!("a server named `{name}` exists ({})", path.display()),
            "choose another name, remove it with `lastmile servers rm`, or pass --replace",
        ));
    }
    write_atomic(&path, text.as_bytes(), false)?;
    Ok(path)
}

fn add(global: &GlobalArgs, profile: &Profile, args: AddArgs, p: &Printer) -> Result<(), CliError> {
    if !is_valid_server_name(&args.name) {
        return Err(CliError::usage(
            format!(
                "`{}` is not a valid server name",
                sanitize_for_terminal(&args.name)
            ),
            "use lowercase letters, digits and dashes, starting with a letter or digit, at most 24 characters",
        ));
    }
    let mut env = BTreeMap::new();
    for pair in &args.env {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CliError::usage(
                format!("`--env {}` is not K=V", sanitize_for_terminal(pair)),
                "write --env NAME=value",
            ));
        };
        if super::import::looks_like_credential(k, v) {
            return Err(CliError::usage(
                format!(
                    "`--env {k}=…` looks like a credential; it would be written to the server file in plain text"
                ),
                format!(
                    "store it with `lastmile secrets set {}` and pass `--secret {k}` instead",
                    k.to_ascii_uppercase()
                ),
            ));
        }
        env.insert(k.to_string(), v.to_string());
    }
    let secrets = args
        .secrets
        .iter()
        .map(|s| parse_secret_ref(s))
        .collect::<Result<Vec<_>, _>>()?;
    let (command, rest) = args
        .command
        .split_first()
        .ok_or_else(|| CliError::usage("no command given", "put the command after `--`"))?;
    for warning in super::import::argv_credential_warnings(rest) {
        p.err(format!("warning: {warning}"));
    }
    let def = ServerDef {
        command: command.clone(),
        args: rest.to_vec(),
        env,
        cwd: args.cwd,
        prefix: None,
        tiers: (!args.tiers.is_empty()).then_some(args.tiers),
        secrets,
        tools: Default::default(),
        startup_timeout: None,
        call_timeout: None,
        restart: None,
        disabled: false,
        description: None,
        allow_kernel_keyring: false,
        shared: true,
    };
    let path = profile.servers_dir().join(format!("{}.toml", args.name));
    let text = render_def(&def, "").map_err(|detail| CliError::ConfigInvalid {
        path: path.clone(),
        detail,
    })?;
    let path = write_server_file(&profile.servers_dir(), &args.name, &text, args.replace)?;
    p.out(format!("wrote {}", path.display()));
    let tiers = match &def.tiers {
        Some(t) => t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
        None => "admin only (no --tier given)".into(),
    };
    p.out(format!("  tiers: {tiers}"));
    if def
        .tiers
        .as_ref()
        .is_some_and(|t| !t.contains(&Tier::Admin))
    {
        p.err("note: admin sessions (the token `lastmile init` saved) cannot use it; add `--tier admin` if they should");
    }
    if !def.secrets.is_empty() {
        let missing = missing_secrets(global, profile, &def.secrets);
        for r in &def.secrets {
            let state = match &missing {
                Some(m) if m.contains(&r.secret_name().to_string()) => "MISSING",
                Some(_) => "present",
                None => "unknown (keyring unavailable)",
            };
            p.out(format!("  secret {}: {state}", r.secret_name()));
            if state == "MISSING" {
                p.err(format!(
                    "hint: store it with `lastmile secrets set {}`",
                    r.secret_name()
                ));
            }
        }
    }
    Ok(())
}

/// The secrets among `refs` that the store lacks; `None` when the store cannot be opened.
fn missing_secrets(
    global: &GlobalArgs,
    profile: &Profile,
    refs: &[SecretRef],
) -> Option<Vec<String>> {
    let store = open(global, profile).ok()?;
    let mut missing = Vec::new();
    for r in refs {
        let key = SecretKey::from_entry_name(r.secret_name()).ok()?;
        match store.get(&key) {
            Ok(Some(_)) => {}
            Ok(None) => missing.push(r.secret_name().to_string()),
            Err(_) => return None,
        }
    }
    Some(missing)
}

fn open(
    global: &GlobalArgs,
    profile: &Profile,
) -> Result<std::sync::Arc<dyn SecretStore>, CliError> {
    let request: BackendRequest = global.secrets_backend.parse()?;
    Ok(open_store(request, &profile.keyring_service())?.store)
}

/// The last start of a server as the gateway recorded it.
#[derive(Debug, serde::Deserialize)]
struct StartStatus {
    at_ms: i64,
    ok: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// Where the gateway records a server's last start.
pub(crate) fn status_path(profile: &Profile, name: &str) -> PathBuf {
    profile
        .data_dir
        .join("servers")
        .join(format!("{name}.status.json"))
}

fn last_start(profile: &Profile, name: &str) -> (String, serde_json::Value) {
    let Ok(text) = std::fs::read_to_string(status_path(profile, name)) else {
        return ("never started".into(), serde_json::Value::Null);
    };
    match serde_json::from_str::<StartStatus>(&text) {
        Ok(s) => {
            let when = crate::identity::UnixTime((s.at_ms.max(0) / 1000) as u64);
            let shown = if s.ok {
                format!("ok at {when}")
            } else {
                format!(
                    "failed at {when}: {}",
                    sanitize_for_terminal(s.reason.as_deref().unwrap_or("no reason recorded"))
                )
            };
            let json = serde_json::json!({"at_ms": s.at_ms, "ok": s.ok, "reason": s.reason});
            (shown, json)
        }
        Err(_) => (
            "unknown (unreadable status file)".into(),
            serde_json::Value::Null,
        ),
    }
}

fn list(
    global: &GlobalArgs,
    profile: &Profile,
    args: ListArgs,
    p: &Printer,
) -> Result<(), CliError> {
    let loaded = load_servers_dir(&profile.servers_dir());
    let store = open(global, profile).ok();
    let mut rows = Vec::new();
    for s in &loaded.servers {
        let tiers: Vec<&str> = match &s.def.tiers {
            Some(t) => t.iter().map(|t| t.as_str()).collect(),
            None => vec!["admin"],
        };
        let mut secrets = Vec::new();
        for r in &s.def.secrets {
            let state = match (&store, SecretKey::from_entry_name(r.secret_name())) {
                (Some(store), Ok(key)) => match store.get(&key) {
                    Ok(Some(_)) => "present",
                    Ok(None) => "missing",
                    Err(_) => "unknown",
                },
                _ => "unknown",
            };
            secrets.push((r.secret_name().to_string(), state));
        }
        let (start, start_json) = last_start(profile, &s.name);
        rows.push((s, tiers, secrets, start, start_json));
    }
    if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(s, tiers, secrets, _, start)| {
                serde_json::json!({
                    "name": s.name,
                    "path": s.path,
                    "disabled": s.def.disabled,
                    "tiers": tiers,
                    "command": s.def.command,
                    "secrets": secrets.iter().map(|(n, st)| serde_json::json!({"name": n, "state": st})).collect::<Vec<_>>(),
                    "last_start": start,
                })
            })
            .collect();
        p.out(serde_json::Value::from(v));
    } else {
        if rows.is_empty() && loaded.problems.is_empty() {
            p.err(format!(
                "no servers in {}\nhint: add one with `lastmile servers add NAME -- COMMAND ARGS…` or `lastmile import`",
                profile.servers_dir().display()
            ));
        }
        for (s, tiers, secrets, start, _) in &rows {
            let state = if s.def.disabled { " (disabled)" } else { "" };
            let secrets = if secrets.is_empty() {
                "none".to_string()
            } else {
                secrets
                    .iter()
                    .map(|(n, st)| format!("{n} ({st})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            p.out(format!(
                "{}{state}\n  tiers: {}\n  secrets: {secrets}\n  last start: {start}\n  command: {}",
                s.name,
                tiers.join(", "),
                sanitize_for_terminal(&s.def.command)
            ));
        }
    }
    for problem in &loaded.problems {
        p.err(format!("error: {problem}"));
    }
    if loaded.problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::ConfigProblems {
            count: loaded.problems.len(),
        })
    }
}

fn rm(profile: &Profile, name: &str, p: &Printer) -> Result<(), CliError> {
    if !is_valid_server_name(name) {
        return Err(CliError::usage(
            format!(
                "`{}` is not a valid server name",
                sanitize_for_terminal(name)
            ),
            "`lastmile servers list` shows the names",
        ));
    }
    let path = profile.servers_dir().join(format!("{name}.toml"));
    match std::fs::remove_file(&path) {
        Ok(()) => {
            p.out(format!("removed {}", path.display()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::usage(
            format!(
                "no server named `{name}` ({} does not exist)",
                path.display()
            ),
            "`lastmile servers list` shows the names",
        )),
        Err(e) => Err(CliError::io("remove", path, e)),
    }
}

fn check(global: &GlobalArgs, profile: &Profile, p: &Printer) -> Result<(), CliError> {
    let dir = profile.servers_dir();
    let loaded = load_servers_dir(&dir);
    let mut problems = 0usize;
    if let Err(e) = profile.load_config() {
        p.out(format!("error: {e}"));
        problems += 1;
    }
    for problem in &loaded.problems {
        p.out(format!("error: {problem}"));
        problems += 1;
    }
    for problem in perms::check_config(profile) {
        p.out(format!("error: {problem}"));
        problems += 1;
    }
    for warning in crate::gateway::prefix_warnings(&loaded.servers) {
        p.out(format!("warning: {warning}"));
    }
    problems += check_secrets(global, profile, &loaded.servers, p);
    let ok = loaded.servers.len();
    if problems == 0 {
        p.out(format!("{}: {ok} server(s) OK", dir.display()));
        Ok(())
    } else {
        p.out(format!(
            "{}: {ok} server(s) OK, {problems} problem(s)",
            dir.display()
        ));
        Err(CliError::ConfigProblems { count: problems })
    }
}

/// For `serve`: a config folder someone else could change is refused before anything in it is
/// read. Each problem goes to the log and stderr with the command that fixes it.
pub(crate) fn refuse_unsafe_config(profile: &Profile) -> Result<(), CliError> {
    let problems = perms::check_config(profile);
    for problem in &problems {
        tracing::error!("refusing to serve: {problem}");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::UnsafePermissions {
            count: problems.len(),
        })
    }
}

/// Every secret a server names must be in the store (names only; values are never read out).
pub(crate) fn check_secrets(
    global: &GlobalArgs,
    profile: &Profile,
    servers: &[Server],
    p: &Printer,
) -> usize {
    let wanted: Vec<_> = servers
        .iter()
        .filter(|s| !s.def.secrets.is_empty() && !s.def.disabled)
        .collect();
    if wanted.is_empty() {
        return 0;
    }
    let store = match open(global, profile) {
        Ok(store) => store,
        Err(e) => {
            p.out(format!(
                "error: servers name secrets, but the secret store cannot be opened: {e}"
            ));
            return 1;
        }
    };
    let mut problems = 0;
    for server in wanted {
        if let Err(e) = child_secrets(store.as_ref(), &server.def.secrets) {
            p.out(format!(
                "error: {}: server `{}` will not start: {e}",
                server.path.display(),
                server.name
            ));
            problems += 1;
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_specs_parse() {
        assert_eq!(
            parse_secret_ref("GITHUB_TOKEN").unwrap(),
            SecretRef::Named("GITHUB_TOKEN".into())
        );
        assert_eq!(
            parse_secret_ref("API_KEY=MY_KEY").unwrap(),
            SecretRef::Renamed {
                env: "API_KEY".into(),
                from: "MY_KEY".into()
            }
        );
        let e = parse_secret_ref("sk-abcdefabcdef").unwrap_err();
        assert!(
            !e.to_string().contains("sk-abc"),
            "never echo a pasted value"
        );
    }
}
