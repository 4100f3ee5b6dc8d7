//! `lastmile import [PATH]`: turn the MCP servers of a Claude config into `servers.d` files.
//!
//! Sources: Claude Desktop's `claude_desktop_config.json` at its platform location (the default),
//! Claude Code's `~/.claude.json` (user-scope servers into this profile, each project's servers
//! into a profile of that project with its folder as `cwd`), or a project's `.mcp.json`.
//!
//! Credentials in `env` move to the keyring and are referenced by name; `${VAR}` references
//! become named secrets to set; a credential in `args` is never put into argv by lastmile (the
//! entry is imported disabled, with a warning). Everything is planned and checked before the
//! first byte is written; a failure part-way undoes what this run stored and wrote.

mod detect;
mod splice;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub(crate) use detect::{arg_credentials, env_credential};

use super::error::CliError;
use super::files::{ensure_private_dir, write_atomic, write_new_private};
use super::output::sanitize_for_terminal;
use super::servers::{render_def, write_server_file};
use super::{GlobalArgs, Printer};
use crate::config::{Profile, SecretRef, ServerDef, is_valid_server_name};
use crate::secrets::{BackendRequest, SecretKey, SecretName, SecretStore, open_store};

/// Examples for `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  lastmile import --dry-run\n  lastmile import\n  lastmile import --rewrite\n  lastmile import --claude-code --dry-run\n  lastmile import ./.mcp.json --rewrite";

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The Claude config: claude_desktop_config.json, ~/.claude.json or a project's .mcp.json.
    /// Default: Claude Desktop's config at its platform location.
    path: Option<PathBuf>,
    /// Import Claude Code's ~/.claude.json (user scope into this profile, each project into a
    /// profile of its own).
    #[arg(long, conflicts_with = "path")]
    claude_code: bool,
    /// Show the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also replace the imported entries in the Claude config by one lastmile entry (the file is
    /// backed up first, mode 0600).
    #[arg(long)]
    rewrite: bool,
    /// Rewrite a .mcp.json even though git tracks it.
    #[arg(long)]
    force: bool,
}

/// Whether an `env` pair would put a credential in a file in plain text.
pub(crate) fn looks_like_credential(name: &str, value: &str) -> bool {
    env_credential(name, value).is_some()
}

/// Warnings for credentials found in a command's arguments (values never shown).
pub(crate) fn argv_credential_warnings(args: &[String]) -> Vec<String> {
    arg_credentials(args)
        .into_iter()
        .map(|c| {
            format!(
                "argument {} holds a credential ({}): every user on this machine can read a process's arguments\nhint: pass it through the environment instead: `lastmile secrets set NAME`, then `--secret NAME`, and make the server read it from $NAME",
                c.index + 1,
                c.why
            )
        })
        .collect()
}

/// Which kind of Claude config a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    Desktop,
    ClaudeCode,
    ProjectMcp,
}

impl SourceKind {
    fn label(self) -> &'static str {
        match self {
            SourceKind::Desktop => "Claude Desktop",
            SourceKind::ClaudeCode => "Claude Code",
            SourceKind::ProjectMcp => "project .mcp.json",
        }
    }
}

/// The config file as read: its bytes' digest, to notice a change before rewriting it.
struct Source {
    path: PathBuf,
    kind: SourceKind,
    text: String,
    digest: [u8; 32],
    json: Value,
}

/// Claude Desktop's config at its platform location.
fn desktop_config_path() -> Result<PathBuf, CliError> {
    let base = directories::BaseDirs::new().ok_or_else(|| {
        CliError::usage(
            "cannot find the home folder to locate Claude Desktop's config",
            "pass the config's path: `lastmile import PATH`",
        )
    })?;
    Ok(base
        .config_dir()
        .join("Claude")
        .join("claude_desktop_config.json"))
}

fn home_dir() -> Result<PathBuf, CliError> {
    directories::BaseDirs::new()
        .map(|b| b.home_dir().to_path_buf())
        .ok_or_else(|| {
            CliError::usage(
                "cannot find the home folder to locate ~/.claude.json",
                "pass the file's path: `lastmile import PATH`",
            )
        })
}

fn read_source(args: &ImportArgs) -> Result<Source, CliError> {
    let (path, kind) = match &args.path {
        _ if args.claude_code => (home_dir()?.join(".claude.json"), SourceKind::ClaudeCode),
        None => (desktop_config_path()?, SourceKind::Desktop),
        Some(p) => {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let kind = match name.as_deref() {
                Some(".claude.json") => SourceKind::ClaudeCode,
                Some(".mcp.json") => SourceKind::ProjectMcp,
                _ => SourceKind::Desktop,
            };
            (p.clone(), kind)
        }
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::ConfigInvalid {
                path,
                detail: format!(
                    "no {} config here\nhint: pass the config's path: `lastmile import PATH` (or --claude-code for ~/.claude.json)",
                    kind.label()
                ),
            });
        }
        Err(e) => return Err(CliError::io("read", path, e)),
    };
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let text = String::from_utf8(bytes).map_err(|_| CliError::ConfigInvalid {
        path: path.clone(),
        detail: "not UTF-8 text, so not a Claude config\nhint: check the path".into(),
    })?;
    let json: Value = serde_json::from_str(&text).map_err(|e| CliError::ConfigInvalid {
        path: path.clone(),
        detail: format!(
            "{}:{}: not valid JSON: {}\nhint: fix the file (Claude would not read it either); nothing was changed",
            e.line(),
            e.column(),
            e
        ),
    })?;
    if !json.is_object() {
        return Err(CliError::ConfigInvalid {
            path,
            detail: "the top level is not a JSON object\nhint: check the path".into(),
        });
    }
    Ok(Source {
        path,
        kind,
        text,
        digest,
        json,
    })
}

/// One server entry's fate.
enum Action {
    /// A new servers.d file, and the secrets it names.
    Import(Box<Imported>),
    /// servers.d already holds exactly this file (an earlier import); the credentials the
    /// entry holds in the config are named for the rotation warning.
    AlreadyImported {
        name: String,
        credentials: Vec<String>,
    },
    /// lastmile's own entry.
    Gateway,
    /// Not imported, with the reason.
    Skipped { reason: String },
}

struct Imported {
    name: String,
    text: String,
    secrets: Vec<PlannedSecret>,
    /// Secrets the definition names that the user must set.
    to_set: Vec<String>,
    plain_env: Vec<String>,
    notes: Vec<String>,
    warnings: Vec<String>,
}

/// A value found in the config that goes into the keyring.
struct PlannedSecret {
    name: String,
    value: SecretString,
    /// Where it came from (`env GITHUB_TOKEN`, `argument 3`).
    from: String,
    why: String,
    /// The store already holds exactly this value: nothing to store.
    stored: bool,
}

struct Entry {
    key: String,
    action: Action,
}

/// The entries of one `mcpServers` object and the profile they go into.
struct Group {
    json_path: Vec<String>,
    label: String,
    profile: Profile,
    store: Arc<dyn SecretStore>,
    entries: Vec<Entry>,
}

impl Group {
    fn imported(&self) -> impl Iterator<Item = &Imported> {
        self.entries.iter().filter_map(|e| match &e.action {
            Action::Import(i) => Some(i.as_ref()),
            _ => None,
        })
    }
    /// Entries the rewrite replaces: imported now or earlier.
    fn replaced_keys(&self) -> BTreeSet<&str> {
        self.entries
            .iter()
            .filter(|e| matches!(e.action, Action::Import(_) | Action::AlreadyImported { .. }))
            .map(|e| e.key.as_str())
            .collect()
    }
}

/// A Claude entry name as a server name: lowercase letters, digits, dashes; at most 24.
fn server_name_for(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.trim_matches('-').chars().take(24).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() { "server".into() } else { out }
}

/// An upper-case secret-name fragment for a server (`my-api` → `MY_API`).
fn upper(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// Whether an entry is lastmile itself.
fn is_gateway(entry: &Value) -> bool {
    let command = entry["command"].as_str().unwrap_or("");
    let stem = Path::new(command)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem == "lastmile" && entry["args"].get(0).and_then(Value::as_str) == Some("serve")
}

/// Secret names taken in one profile during planning, with the value each will hold.
struct Names<'a> {
    store: &'a dyn SecretStore,
    planned: BTreeMap<String, SecretString>,
}

impl Names<'_> {
    /// A name for `value`: `preferred` when free or holding the same value, else a
    /// server-qualified one. Returns the name and whether the store already holds the value.
    fn choose(
        &mut self,
        preferred: &str,
        server: &str,
        value: &SecretString,
    ) -> Result<(String, bool), CliError> {
        let qualified = format!("{}_{}", upper(server), preferred);
        let mut candidates = vec![preferred.to_string(), qualified.clone()];
        candidates.extend((2..10).map(|n| format!("{qualified}_{n}")));
        for name in candidates {
            if SecretName::parse(&name).is_err() {
                continue;
            }
            if let Some(v) = self.planned.get(&name) {
                if v.expose_secret() == value.expose_secret() {
                    return Ok((name, true));
                }
                continue;
            }
            let key = SecretKey::from_entry_name(&name)?;
            match self.store.get(&key)? {
                Some(v) if v.expose_secret() == value.expose_secret() => {
                    self.planned.insert(name.clone(), value.clone());
                    return Ok((name, true));
                }
                Some(_) => continue,
                None => {
                    self.planned.insert(name.clone(), value.clone());
                    return Ok((name, false));
                }
            }
        }
        Err(CliError::conflict(
            format!("no free secret name for `{preferred}` of server `{server}`"),
            "remove unused secrets with `lastmile secrets rm`",
        ))
    }
}

/// A secret name from a variable or flag name (`--api-key` → `API_KEY`).
fn secret_name_from(raw: &str) -> String {
    let mut s: String = raw
        .trim_start_matches('-')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_uppercase()) {
        s.insert_str(0, "S_");
    }
    if s.starts_with("LASTMILE_") {
        s.insert_str(0, "X_");
    }
    s.chars().take(64).collect()
}

/// Plan one stdio entry.
fn plan_entry(
    source: &Source,
    key: &str,
    entry: &Value,
    name: &str,
    cwd: Option<&Path>,
    names: &mut Names<'_>,
    servers_dir: &Path,
) -> Result<Action, CliError> {
    let command = entry["command"].as_str().unwrap_or_default().to_string();
    let mut args: Vec<String> = match entry.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        Some(_) => {
            return Ok(Action::Skipped {
                reason: "`args` is not a list".into(),
            });
        }
    };
    let mut env = BTreeMap::new();
    let mut secrets = Vec::new();
    let mut refs = Vec::new();
    let mut to_set = Vec::new();
    let mut plain_env = Vec::new();
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    if let Some(map) = entry.get("env").and_then(Value::as_object) {
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if k.starts_with("LASTMILE_")
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                warnings.push(format!(
                    "env `{}` is not a name lastmile can set; left out",
                    sanitize_for_terminal(k)
                ));
                continue;
            }
            if let Some((var, default)) = detect::is_reference(&v) {
                let credential_name =
                    detect::name_says_credential(&var) || detect::name_says_credential(k);
                if let (Some(default), false) = (&default, credential_name) {
                    notes.push(format!("env {k}: `${{{var}:-…}}` became the plain default (lastmile does not expand variables)"));
                    env.insert(k.clone(), default.clone());
                    plain_env.push(k.clone());
                    continue;
                }
                let secret = secret_name_from(&var);
                refs.push(secret_ref(k, &secret));
                let present = names
                    .store
                    .get(&SecretKey::from_entry_name(&secret)?)?
                    .is_some();
                if !present {
                    to_set.push(secret.clone());
                }
                notes.push(format!(
                    "env {k}: `${{{var}}}` became the secret {secret}{}",
                    if present {
                        " (already stored)"
                    } else {
                        "; set it with `lastmile secrets set` (the config held no value)"
                    }
                ));
                continue;
            }
            match env_credential(k, &v) {
                Some(why) => {
                    let value = SecretString::from(v);
                    let (secret, stored) = names.choose(&secret_name_from(k), name, &value)?;
                    refs.push(secret_ref(k, &secret));
                    secrets.push(PlannedSecret {
                        name: secret,
                        value,
                        from: format!("env {k}"),
                        why,
                        stored,
                    });
                }
                None => {
                    env.insert(k.clone(), v);
                    plain_env.push(k.clone());
                }
            }
        }
    }
    // Credentials in argv: kept out of every file lastmile writes, stored, and the server
    // imported disabled until it reads them from its environment.
    let found = arg_credentials(&args);
    let disabled = !found.is_empty();
    for c in found {
        let word = args[c.index].clone();
        let (prefix, value) = match (&c.flag, word.split_once('=')) {
            (Some(_), Some((flag, v))) if word.starts_with('-') => {
                (format!("{flag}="), v.to_string())
            }
            _ => (String::new(), word.clone()),
        };
        let base = match &c.flag {
            Some(flag) => secret_name_from(flag),
            None => format!("ARG{}", c.index + 1),
        };
        let value = SecretString::from(value);
        let (secret, stored) = names.choose(&base, name, &value)?;
        args[c.index] = format!("{prefix}<secret {secret}>");
        warnings.push(format!(
            "argument {} holds a credential ({}); lastmile never puts a secret in argv, where every user can read it. It is stored as secret {secret} and the server is imported disabled\nhint: make the server read it from an environment variable, add `secrets = [{{ env = \"VAR\", from = \"{secret}\" }}]`, fix `args`, and remove `disabled = true` in servers.d/{name}.toml",
            c.index + 1,
            c.why
        ));
        secrets.push(PlannedSecret {
            name: secret,
            value,
            from: format!("argument {}", c.index + 1),
            why: c.why,
            stored,
        });
    }
    for (i, a) in args.iter().enumerate() {
        if a.contains("${") {
            notes.push(format!(
                "argument {} holds a `${{…}}` reference; lastmile does not expand variables in arguments",
                i + 1
            ));
        }
    }
    let def = ServerDef {
        command,
        args,
        env,
        cwd: cwd.map(Path::to_path_buf),
        prefix: None,
        // Claude gave every session every server; the admin tier is what Claude's session has.
        tiers: None,
        secrets: refs,
        tools: Default::default(),
        startup_timeout: None,
        call_timeout: None,
        restart: None,
        disabled,
        description: None,
        allow_kernel_keyring: false,
        shared: true,
    };
    let header = format!(
        "# Imported by `lastmile import` from {} (entry {:?}).\n",
        source.path.display(),
        key
    );
    let text = render_def(&def, &header).map_err(|detail| CliError::ConfigInvalid {
        path: source.path.clone(),
        detail: format!("entry {key:?} cannot become a server file: {detail}"),
    })?;
    let path = servers_dir.join(format!("{name}.toml"));
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if existing == text {
            return Ok(Action::AlreadyImported {
                name: name.to_string(),
                credentials: secrets
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.from))
                    .collect(),
            });
        }
        return Err(CliError::conflict(
            format!(
                "a server named `{name}` exists ({}) and differs from entry {key:?} of {}",
                path.display(),
                source.path.display()
            ),
            format!(
                "remove it with `lastmile servers rm {name}`, or rename the entry in the Claude config; nothing was changed"
            ),
        ));
    }
    Ok(Action::Import(Box::new(Imported {
        name: name.to_string(),
        text,
        secrets,
        to_set,
        plain_env,
        notes,
        warnings,
    })))
}

fn secret_ref(env: &str, secret: &str) -> SecretRef {
    if env == secret {
        SecretRef::Named(secret.to_string())
    } else {
        SecretRef::Renamed {
            env: env.to_string(),
            from: secret.to_string(),
        }
    }
}

/// The profile a Claude Code project's servers go into.
fn project_profile(global: &GlobalArgs, folder: &str) -> Result<Profile, CliError> {
    let base = Path::new(folder)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name = server_name_for(&base);
    if name == global.profile {
        name = format!("{}-project", name.chars().take(16).collect::<String>());
    }
    let config_dir = global
        .config_dir
        .as_ref()
        .map(|d| d.join("projects").join(&name));
    Ok(Profile::locate(&name, config_dir)?)
}

fn open(global: &GlobalArgs, profile: &Profile) -> Result<Arc<dyn SecretStore>, CliError> {
    let request: BackendRequest = global.secrets_backend.parse()?;
    Ok(open_store(request, &profile.keyring_service())?.store)
}

/// Read the source and decide every entry's fate. Writes nothing.
fn plan(global: &GlobalArgs, source: &Source) -> Result<Vec<Group>, CliError> {
    let mut targets: Vec<(Vec<String>, String, Profile, Option<PathBuf>)> = Vec::new();
    let own = Profile::locate(&global.profile, global.config_dir.clone())?;
    match source.kind {
        SourceKind::Desktop => {
            targets.push((vec!["mcpServers".into()], "mcpServers".into(), own, None));
        }
        SourceKind::ProjectMcp => {
            let folder = source
                .path
                .parent()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
            targets.push((vec!["mcpServers".into()], "mcpServers".into(), own, folder));
        }
        SourceKind::ClaudeCode => {
            targets.push((vec!["mcpServers".into()], "user scope".into(), own, None));
            if let Some(projects) = source.json.get("projects").and_then(Value::as_object) {
                for (folder, project) in projects {
                    let has = project
                        .get("mcpServers")
                        .and_then(Value::as_object)
                        .is_some_and(|m| !m.is_empty());
                    if has {
                        targets.push((
                            vec!["projects".into(), folder.clone(), "mcpServers".into()],
                            format!("project {folder}"),
                            project_profile(global, folder)?,
                            Some(PathBuf::from(folder)),
                        ));
                    }
                }
            }
        }
    }
    let mut groups = Vec::new();
    let mut any = false;
    for (json_path, label, profile, cwd) in targets {
        let mut node = &source.json;
        for k in &json_path {
            node = &node[k.as_str()];
        }
        let Some(servers) = node.as_object() else {
            if !node.is_null() {
                return Err(CliError::ConfigInvalid {
                    path: source.path.clone(),
                    detail: format!("`{}` is not an object", json_path.join(".")),
                });
            }
            continue;
        };
        any |= !servers.is_empty();
        let store = open(global, &profile)?;
        let mut names = Names {
            store: store.as_ref(),
            planned: BTreeMap::new(),
        };
        let mut used = BTreeSet::new();
        let mut entries = Vec::new();
        for (key, entry) in servers {
            let action = if !entry.is_object() {
                Action::Skipped {
                    reason: "not an object".into(),
                }
            } else if is_gateway(entry) {
                Action::Gateway
            } else if entry.get("url").is_some()
                || matches!(
                    entry["type"].as_str(),
                    Some("http" | "sse" | "streamable-http" | "ws")
                )
            {
                let kind = entry["type"].as_str().unwrap_or("http");
                Action::Skipped {
                    reason: format!(
                        "remote ({kind}) server: lastmile starts local stdio servers only; it stays in the Claude config"
                    ),
                }
            } else if entry["command"]
                .as_str()
                .is_none_or(|c| c.trim().is_empty())
            {
                Action::Skipped {
                    reason: "no `command`".into(),
                }
            } else {
                let mut name = server_name_for(key);
                let mut n = 2;
                while used.contains(&name) {
                    let base: String = server_name_for(key).chars().take(21).collect();
                    name = format!("{base}-{n}");
                    n += 1;
                }
                used.insert(name.clone());
                debug_assert!(is_valid_server_name(&name));
                plan_entry(
                    source,
                    key,
                    entry,
                    &name,
                    cwd.as_deref(),
                    &mut names,
                    &profile.servers_dir(),
                )?
            };
            entries.push(Entry {
                key: key.clone(),
                action,
            });
        }
        drop(names);
        groups.push(Group {
            json_path,
            label,
            profile,
            store,
            entries,
        });
    }
    if !any {
        return Err(CliError::ConfigInvalid {
            path: source.path.clone(),
            detail: "no MCP servers in it (no `mcpServers` entries)\nhint: check the path; `lastmile servers add` adds a server by hand".into(),
        });
    }
    Ok(groups)
}

fn print_plan(p: &Printer, source: &Source, groups: &[Group], dry_run: bool) {
    p.out(format!(
        "{} {} ({}):",
        if dry_run { "plan for" } else { "importing" },
        source.path.display(),
        source.kind.label()
    ));
    for g in groups {
        p.out(format!(
            "  {} → profile `{}` ({})",
            g.label,
            g.profile.name,
            g.profile.servers_dir().display()
        ));
        for e in &g.entries {
            let key = sanitize_for_terminal(&e.key);
            match &e.action {
                Action::Import(i) => {
                    p.out(format!("    + {key} → servers.d/{}.toml", i.name));
                    for s in &i.secrets {
                        p.out(format!(
                            "        secret {} ← {} ({}){}",
                            s.name,
                            s.from,
                            s.why,
                            if s.stored {
                                "; already in the keyring"
                            } else {
                                ""
                            }
                        ));
                    }
                    for name in &i.plain_env {
                        p.out(format!("        env {name} stays plain"));
                    }
                    for n in &i.notes {
                        p.out(format!("        note: {}", sanitize_for_terminal(n)));
                    }
                    for w in &i.warnings {
                        p.err(format!("warning: {key}: {}", sanitize_for_terminal(w)));
                    }
                }
                Action::AlreadyImported { name, .. } => p.out(format!(
                    "    = {key}: already imported as servers.d/{name}.toml"
                )),
                Action::Gateway => p.out(format!("    · {key}: lastmile's own entry")),
                Action::Skipped { reason } => p.out(format!("    - {key}: not imported: {reason}")),
            }
        }
    }
}

/// What this run stored and wrote, so a failure can undo it.
#[derive(Default)]
struct Undo {
    secrets: Vec<(Arc<dyn SecretStore>, SecretKey)>,
    files: Vec<PathBuf>,
}

impl Undo {
    fn run(self) {
        for path in self.files.iter().rev() {
            let _ = std::fs::remove_file(path);
        }
        for (store, key) in self.secrets {
            let _ = store.delete(&key);
        }
    }
}

/// The lastmile entry that replaces the imported ones.
fn gateway_entry(
    global: &GlobalArgs,
    profile: &Profile,
    kind: SourceKind,
) -> Result<Value, CliError> {
    let exe = super::init::lastmile_exe()?;
    let mut g = global.clone();
    g.profile = profile.name.clone();
    g.config_dir = global
        .config_dir
        .as_ref()
        .map(|_| profile.config_dir.clone());
    let args = super::init::serve_args(&g, profile);
    let mut entry = serde_json::json!({ "command": exe.display().to_string(), "args": args });
    if kind != SourceKind::Desktop {
        entry["type"] = Value::from("stdio");
        entry["env"] = serde_json::json!({});
    }
    Ok(entry)
}

/// The config's text with each group's imported entries replaced by one lastmile entry.
fn rewritten(
    global: &GlobalArgs,
    source: &Source,
    groups: &[Group],
) -> Result<Option<String>, CliError> {
    let mut text = source.text.clone();
    let mut changed = false;
    for g in groups {
        let replaced = g.replaced_keys();
        if replaced.is_empty() {
            continue;
        }
        let path: Vec<&str> = g.json_path.iter().map(String::as_str).collect();
        let span = splice::value_span(&text, &path).ok_or_else(|| CliError::ConfigInvalid {
            path: source.path.clone(),
            detail: format!("cannot find `{}` to rewrite", g.json_path.join(".")),
        })?;
        let current: serde_json::Map<String, Value> = serde_json::from_str(&text[span.clone()])
            .map_err(|e| CliError::Other(e.to_string()))?;
        let mut next = serde_json::Map::new();
        for (k, v) in current {
            if !replaced.contains(k.as_str()) {
                next.insert(k, v);
            }
        }
        if !next.values().any(is_gateway) {
            let key = if next.contains_key("lastmile") {
                "lastmile-gateway"
            } else {
                "lastmile"
            };
            next.insert(key.into(), gateway_entry(global, &g.profile, source.kind)?);
        }
        text = splice::replace_value(&text, span, &Value::Object(next));
        changed = true;
    }
    Ok(changed.then_some(text))
}

/// Whether git tracks `path`.
fn git_tracks(path: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "--error-unmatch", "--"])
        .arg(name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn unchanged_since_read(source: &Source) -> Result<(), CliError> {
    let now = std::fs::read(&source.path).map_err(|e| CliError::io("read", &source.path, e))?;
    let digest: [u8; 32] = Sha256::digest(&now).into();
    if digest != source.digest {
        return Err(CliError::conflict(
            format!("{} changed since lastmile read it", source.path.display()),
            "a running Claude rewrites its config: quit Claude (Code or Desktop), then run the import again; nothing was changed",
        ));
    }
    Ok(())
}

/// A fresh backup path beside `path`.
fn backup_path(path: &Path) -> PathBuf {
    let stamp = crate::identity::now_unix();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidate = path.with_file_name(format!("{name}.lastmile-backup-{stamp}"));
    let mut n = 1;
    while candidate.exists() {
        candidate = path.with_file_name(format!("{name}.lastmile-backup-{stamp}-{n}"));
        n += 1;
    }
    candidate
}

pub(crate) fn run(global: &GlobalArgs, args: ImportArgs) -> Result<(), CliError> {
    crate::telemetry::init_cli();
    let p = Printer;
    let source = read_source(&args)?;
    let groups = plan(global, &source)?;
    let importing = groups.iter().flat_map(|g| g.imported()).count();
    let replaced = groups
        .iter()
        .map(|g| g.replaced_keys().len())
        .sum::<usize>();
    let gateway = groups
        .iter()
        .flat_map(|g| &g.entries)
        .any(|e| matches!(e.action, Action::Gateway));
    if importing == 0 && (replaced == 0 || !args.rewrite) && (gateway || replaced > 0) {
        print_plan(&p, &source, &groups, true);
        return Err(CliError::conflict(
            format!(
                "{} is already migrated: no server in it is left to import",
                source.path.display()
            ),
            if replaced > 0 && !args.rewrite {
                "pass --rewrite to replace the imported entries by the lastmile entry"
            } else {
                "nothing to do; `lastmile servers list` shows what was imported"
            },
        ));
    }
    let new_text = if args.rewrite {
        rewritten(global, &source, &groups)?
    } else {
        None
    };
    if new_text.is_some()
        && source.kind == SourceKind::ProjectMcp
        && !args.force
        && git_tracks(&source.path)
    {
        return Err(CliError::conflict(
            format!(
                "{} is tracked by git; rewriting it changes the project for everyone",
                source.path.display()
            ),
            "pass --force to rewrite it anyway, or import without --rewrite and keep the file as it is",
        ));
    }
    print_plan(&p, &source, &groups, args.dry_run);
    if args.dry_run {
        if new_text.is_some() {
            p.out(format!(
                "  --rewrite would back up {} (mode 0600) and replace the imported entries by one lastmile entry",
                source.path.display()
            ));
        }
        p.out("dry run: nothing was changed");
        return Ok(());
    }

    unchanged_since_read(&source)?;
    let mut undo = Undo::default();
    let result = apply(&p, global, &source, &groups, new_text.as_deref(), &mut undo);
    if result.is_err() {
        undo.run();
    }
    result
}

fn apply(
    p: &Printer,
    _global: &GlobalArgs,
    source: &Source,
    groups: &[Group],
    new_text: Option<&str>,
    undo: &mut Undo,
) -> Result<(), CliError> {
    let mut credential_names = Vec::new();
    let mut to_set = BTreeSet::new();
    for e in groups.iter().flat_map(|g| &g.entries) {
        if let Action::AlreadyImported { credentials, .. } = &e.action {
            credential_names.extend(credentials.iter().cloned());
        }
    }
    for g in groups {
        for i in g.imported() {
            for s in &i.secrets {
                credential_names.push(format!("{} ({})", s.name, s.from));
                if s.stored {
                    continue;
                }
                let key = SecretKey::from_entry_name(&s.name)?;
                g.store.set(&key, &s.value)?;
                undo.secrets.push((Arc::clone(&g.store), key));
            }
            to_set.extend(i.to_set.iter().map(|n| (g.profile.name.clone(), n.clone())));
        }
    }
    for g in groups {
        if g.imported().next().is_none() {
            continue;
        }
        ensure_private_dir(&g.profile.config_dir)?;
        for i in g.imported() {
            let path = write_server_file(&g.profile.servers_dir(), &i.name, &i.text, false)?;
            undo.files.push(path);
        }
    }
    if let Some(text) = new_text {
        unchanged_since_read(source)?;
        let backup = backup_path(&source.path);
        write_new_private(&backup, source.text.as_bytes())?;
        undo.files.push(backup.clone());
        write_atomic(&source.path, text.as_bytes(), true)?;
        p.out(format!(
            "rewrote {}: the imported entries are replaced by one lastmile entry; every other key is as it was",
            source.path.display()
        ));
        p.out(format!("backup: {} (mode 0600)", backup.display()));
        if !credential_names.is_empty() {
            p.err(format!(
                "warning: the backup still holds the old plaintext credentials: {}\nhint: rotate those keys at their providers (new values: `lastmile secrets set NAME`), then delete the backup",
                credential_names.join(", ")
            ));
        }
    } else if !credential_names.is_empty() {
        p.err(format!(
            "warning: {} still holds the plaintext credentials now in the keyring: {}\nhint: run the import again with --rewrite to replace the entries, then rotate those keys",
            source.path.display(),
            credential_names.join(", ")
        ));
    }
    let imported = groups.iter().flat_map(|g| g.imported()).count();
    if imported > 0 {
        p.out(format!("imported {imported} server(s)"));
    } else if new_text.is_none() {
        p.out("nothing to import: no stdio server in the config is new");
    }
    for (profile, name) in &to_set {
        p.out(format!(
            "to do: lastmile --profile {profile} secrets set {name}"
        ));
    }
    for g in groups {
        if g.imported().next().is_some() && g.json_path.len() > 1 {
            p.out(format!(
                "to do: lastmile --profile {} init   (signing secret and token for the project's profile)",
                g.profile.name
            ));
        }
    }
    p.out("the imported servers are admin-only (like every server Claude ran); `--tier` in their files opens them to other tiers");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_become_server_names() {
        assert_eq!(server_name_for("GitHub Server"), "github-server");
        assert_eq!(server_name_for("a.b_c"), "a-b-c");
        assert_eq!(server_name_for("@@@"), "server");
        assert!(is_valid_server_name(&server_name_for(
            "a-very-long-name-that-goes-on-and-on"
        )));
    }

    #[test]
    fn a_config_that_changed_since_it_was_read_is_not_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".claude.json");
        std::fs::write(&path, r#"{"mcpServers": {}}"#).unwrap();
        let args = ImportArgs {
            path: Some(path.clone()),
            claude_code: false,
            dry_run: false,
            rewrite: true,
            force: false,
        };
        let source = read_source(&args).unwrap();
        assert!(unchanged_since_read(&source).is_ok());
        // A running Claude Code rewrites its file.
        std::fs::write(&path, r#"{"mcpServers": {}, "numStartups": 2}"#).unwrap();
        let e = unchanged_since_read(&source).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit_codes::CONFLICT);
        assert!(
            e.to_string().contains("changed since lastmile read it"),
            "{e}"
        );
    }

    #[test]
    fn secret_names_from_flags() {
        assert_eq!(secret_name_from("--api-key"), "API_KEY");
        assert_eq!(secret_name_from("github_token"), "GITHUB_TOKEN");
        assert_eq!(secret_name_from("1x"), "S_1X");
    }
}
