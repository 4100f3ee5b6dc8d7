//! `servers.d/`: one TOML file per downstream MCP server; the file stem is the server's name.
//!
//! Loading never stops at the first bad file: each problem is collected with its path and line, the
//! broken server is skipped, and the rest load. `lastmile servers check` prints the problems.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DurationSpec, Tier, line_of_offset};

/// One downstream server, as written in its `servers.d/NAME.toml` file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "lastmile server definition",
    description = "One downstream MCP server, in servers.d/NAME.toml; NAME (the file stem) is the server's name."
)]
pub struct ServerDef {
    /// The program to run: a bare name looked up on PATH, an absolute path, or a path relative to
    /// the folder that holds this file.
    #[schemars(length(min = 1))]
    pub command: String,
    /// Arguments passed to the program. Never put a secret here: argv is visible to every user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables, non-secret values only. Secrets go in `secrets`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$", "not": { "pattern": "^LASTMILE_" } }))]
    pub env: BTreeMap<String, String>,
    /// Working directory of the child; relative paths are taken from the folder that holds this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Prefix of exposed tool and prompt names (`{prefix}__{name}`). Defaults to the server's name;
    /// `""` exposes bare names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([a-zA-Z0-9][a-zA-Z0-9-]{0,23})?$"))]
    pub prefix: Option<String>,
    /// Tiers that may use this server. Absent means admin only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<Tier>>,
    /// Names of the secrets this server receives as environment variables, optionally renamed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    /// Which of the server's tools are exposed.
    #[serde(default, skip_serializing_if = "ToolFilter::is_empty")]
    pub tools: ToolFilter,
    /// How long start-up (spawn and MCP handshake) may take. Defaults to the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_timeout: Option<DurationSpec>,
    /// How long one call may take before it is answered with a timeout. Defaults to the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_timeout: Option<DurationSpec>,
    /// How this server is restarted after a crash (each key falls back to the profile's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartSection>,
    /// A disabled server is not started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Over HTTP, one instance of this server serves every identity whose tier may use it, once
    /// lastmile knows from an earlier start that it sends the client nothing no call asked for
    /// (no requests of its own, log messages, resource updates or task notifications); until
    /// then, and always with `false`, each identity's session gets its own instance. Set
    /// `false` for a server that keeps state per user. stdio serves one identity either way.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub shared: bool,
    /// Linux: let this server make kernel keyring calls (`keyctl`, `add_key`, `request_key`),
    /// which every other child is denied. It can then read every keyring entry of the profile on
    /// the keyutils backend, lastmile's signing secret and audit key included, so lastmile warns
    /// at each start. Only for a server that needs the kernel keyring itself. Accepted and
    /// ignored on other systems.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_kernel_keyring: bool,
    /// A note for humans; lastmile does not use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `restart`: exponential backoff with jitter, giving up after `max_tries` within `window`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartSection {
    /// Restarts allowed within `window` before giving up (0: never restart). Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tries: Option<u32>,
    /// The window `max_tries` counts over. Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<DurationSpec>,
    /// The first delay; each further try doubles it. Default 200ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<DurationSpec>,
    /// The longest delay. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_cap: Option<DurationSpec>,
}

/// A restart policy with every value decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`.
    pub max_tries: u32,
    /// The counting window.
    pub window: std::time::Duration,
    /// First delay.
    pub backoff: std::time::Duration,
    /// Longest delay.
    pub backoff_cap: std::time::Duration,
}

impl RestartSection {
    /// This section's values, then `fallback`'s, then the built-in defaults.
    pub fn resolve(this: Option<&RestartSection>, fallback: &RestartSection) -> RestartPolicy {
        let pick = |f: fn(&RestartSection) -> Option<DurationSpec>, default_ms: u64| {
            this.and_then(f)
                .or_else(|| f(fallback))
                .map(|d| d.0)
                .unwrap_or(std::time::Duration::from_millis(default_ms))
        };
        RestartPolicy {
            max_tries: this
                .and_then(|r| r.max_tries)
                .or(fallback.max_tries)
                .unwrap_or(5),
            window: pick(|r| r.window, 60_000),
            backoff: pick(|r| r.backoff, 200),
            backoff_cap: pick(|r| r.backoff_cap, 30_000),
        }
    }
}

impl RestartPolicy {
    /// Delay before restart number `attempt` (0-based): doubling from `backoff`, capped, times a
    /// jitter factor in [0.5, 1.0) so that children that died together do not return together.
    pub fn delay(&self, attempt: u32, jitter: f64) -> std::time::Duration {
        let base = self.backoff.saturating_mul(1u32 << attempt.min(20));
        base.min(self.backoff_cap)
            .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// A secret a server receives: by its own name, or renamed into another variable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretRef {
    /// The variable has the secret's name.
    Named(#[schemars(pattern(r"^[A-Z][A-Z0-9_]{0,63}$"))] String),
    /// The secret `from` is delivered in the variable `env`.
    Renamed {
        /// The variable the child sees.
        #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"))]
        env: String,
        /// The secret's name in the store.
        #[schemars(pattern(r"^[A-Z][A-Z0-9_]{0,63}$"))]
        from: String,
    },
}

impl SecretRef {
    /// The secret's name in the store.
    pub fn secret_name(&self) -> &str {
        match self {
            SecretRef::Named(n) => n,
            SecretRef::Renamed { from, .. } => from,
        }
    }
    /// The environment variable the child receives it in.
    pub fn env_name(&self) -> &str {
        match self {
            SecretRef::Named(n) => n,
            SecretRef::Renamed { env, .. } => env,
        }
    }
}

/// `[tools]`: exposure filter. Patterns are exact names or globs with `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolFilter {
    /// Only these tools are exposed (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// These tools are never exposed; deny wins over allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl ToolFilter {
    fn is_empty(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }

    /// Whether a tool of this name is exposed.
    pub fn permits(&self, tool: &str) -> bool {
        if self.deny.iter().any(|p| glob_match(p, tool)) {
            return false;
        }
        match &self.allow {
            Some(allow) => allow.iter().any(|p| glob_match(p, tool)),
            None => true,
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// A server that loaded: its name, the file it came from, and its definition.
#[derive(Debug, Clone)]
pub struct Server {
    /// The file stem.
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// What the file says.
    pub def: ServerDef,
}

impl Server {
    /// The prefix of exposed names (`""` for bare names).
    pub fn prefix(&self) -> &str {
        self.def.prefix.as_deref().unwrap_or(&self.name)
    }

    /// Whether a session of this tier may use the server. No `tiers` means admin only.
    pub fn allows(&self, tier: Tier) -> bool {
        match &self.def.tiers {
            Some(tiers) => tiers.contains(&tier),
            None => tier == Tier::Admin,
        }
    }

    /// The folder relative paths in the file are taken from.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// What went wrong with one server file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerFileError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    /// TOML syntax, an unknown field, a missing field or a value of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// The file stem is not a valid server name.
    #[error(
        "`{0}` is not a valid server name\nhint: name the file with lowercase letters, digits and dashes, starting with a letter or digit, at most 24 characters (e.g. `github.toml`)"
    )]
    BadName(String),
    /// A field's value is not allowed.
    #[error("{0}")]
    Invalid(String),
}

/// One problem found in `servers.d/`, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file.
    pub path: PathBuf,
    /// The line in it, where known.
    pub line: Option<usize>,
    /// The server's name (the file stem).
    pub server: String,
    /// What is wrong.
    pub error: ServerFileError,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path.display(), line, self.error),
            None => write!(f, "{}: {}", self.path.display(), self.error),
        }
    }
}

/// Everything found in a `servers.d/` folder.
#[derive(Debug, Default)]
pub struct ServersDir {
    /// Servers that loaded, sorted by name (disabled ones included; callers skip them).
    pub servers: Vec<Server>,
    /// Files that did not load, each with its reason.
    pub problems: Vec<ConfigProblem>,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// Whether `name` is a valid server name: `[a-z0-9][a-z0-9-]{0,23}`.
pub fn is_valid_server_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 24
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_valid_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn is_valid_secret_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

fn is_valid_prefix(p: &str) -> bool {
    let b = p.as_bytes();
    b.is_empty()
        || (b.len() <= 24
            && b[0].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-'))
}

/// Parse one server file's text. `Err` carries the line where the problem is, when known.
pub fn parse_server_file(text: &str) -> Result<ServerDef, (Option<usize>, ServerFileError)> {
    let def: ServerDef = toml::from_str(text).map_err(|e| {
        let (line, message) = super::toml_error(text, &e);
        (line, ServerFileError::Parse(message))
    })?;
    validate(&def, text)?;
    Ok(def)
}

/// Checks serde cannot express; the line is found by looking for the offending text.
fn validate(def: &ServerDef, text: &str) -> Result<(), (Option<usize>, ServerFileError)> {
    let line_of = |needle: &str| text.find(needle).map(|at| line_of_offset(text, at));
    let invalid = |needle: &str, msg: String| Err((line_of(needle), ServerFileError::Invalid(msg)));
    if def.command.trim().is_empty() {
        return invalid(
            "command",
            "`command` is empty\nhint: name the program to run, e.g. command = \"npx\"".into(),
        );
    }
    if let Some(prefix) = &def.prefix
        && !is_valid_prefix(prefix)
    {
        return invalid(
            "prefix",
            format!(
                "`prefix = \"{prefix}\"` is not allowed\nhint: use letters, digits and dashes (at most 24), or \"\" for bare names"
            ),
        );
    }
    for key in def.env.keys() {
        if !is_valid_env_name(key) {
            return invalid(
                key,
                format!("`{key}` is not a valid environment variable name"),
            );
        }
        if key.starts_with("LASTMILE_") {
            return invalid(
                key,
                format!(
                    "`{key}`: variables starting with LASTMILE_ are lastmile's own and cannot be set in `env`"
                ),
            );
        }
    }
    let mut targets = std::collections::BTreeSet::new();
    for secret in &def.secrets {
        let name = secret.secret_name();
        if !is_valid_secret_name(name) {
            return invalid(
                name,
                format!(
                    "`{name}` is not a valid secret name\nhint: secret names match ^[A-Z][A-Z0-9_]{{0,63}}$"
                ),
            );
        }
        let target = secret.env_name();
        if !is_valid_env_name(target) || target.starts_with("LASTMILE_") {
            return invalid(
                target,
                format!(
                    "`{target}` cannot receive a secret: not a valid variable name, or reserved for lastmile"
                ),
            );
        }
        if def.env.contains_key(target) {
            return invalid(
                target,
                format!(
                    "`{target}` is set both in `env` and in `secrets`\nhint: a variable comes from one place; remove it from `env`"
                ),
            );
        }
        if !targets.insert(target.to_string()) {
            return invalid(target, format!("`{target}` receives two secrets"));
        }
    }
    if def.tiers.as_ref().is_some_and(|t| t.is_empty()) {
        return invalid("tiers", "`tiers = []` lets no session use this server\nhint: list the tiers that may use it, or set `disabled = true`".into());
    }
    for (field, value) in [
        ("startup_timeout", def.startup_timeout),
        ("call_timeout", def.call_timeout),
    ] {
        if value.is_some_and(|d| d.0.is_zero()) {
            return invalid(field, format!("`{field}` must be longer than zero"));
        }
    }
    Ok(())
}

/// The server files of a `servers.d/` folder, sorted: every `*.toml` not starting with a dot.
pub(crate) fn server_file_paths(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// Load every `*.toml` file of a `servers.d/` folder. A missing folder is an empty one.
pub fn load_servers_dir(dir: &Path) -> ServersDir {
    let mut out = ServersDir::default();
    let paths = match server_file_paths(dir) {
        Ok(paths) => paths,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.problems.push(ConfigProblem {
                path: dir.to_path_buf(),
                line: None,
                server: String::new(),
                error: ServerFileError::Unreadable(e.to_string()),
            });
            return out;
        }
    };
    for path in paths {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let problem = |line, error| ConfigProblem {
            path: path.clone(),
            line,
            server: name.clone(),
            error,
        };
        if !is_valid_server_name(&name) {
            out.problems
                .push(problem(None, ServerFileError::BadName(name.clone())));
            continue;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                out.problems
                    .push(problem(None, ServerFileError::Unreadable(e.to_string())));
                continue;
            }
        };
        match parse_server_file(&text) {
            Ok(def) => out.servers.push(Server {
                name: name.clone(),
                path: path.clone(),
                def,
            }),
            Err((line, error)) => out.problems.push(problem(line, error)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["github", "a", "0x", "my-server", "abcdefghijklmnopqrstuvwx"] {
            assert!(is_valid_server_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "GitHub",
            "a_b",
            "a.b",
            "abcdefghijklmnopqrstuvwxy",
            "é",
        ] {
            assert!(!is_valid_server_name(bad), "{bad}");
        }
    }

    #[test]
    fn restart_policy_resolves_and_backs_off() {
        let file = RestartSection {
            max_tries: Some(2),
            ..Default::default()
        };
        let profile = RestartSection {
            backoff: Some(DurationSpec(std::time::Duration::from_millis(100))),
            ..Default::default()
        };
        let p = RestartSection::resolve(Some(&file), &profile);
        assert_eq!(p.max_tries, 2);
        assert_eq!(p.backoff, std::time::Duration::from_millis(100));
        assert_eq!(p.window, std::time::Duration::from_secs(60));
        assert_eq!(p.delay(0, 1.0), std::time::Duration::from_millis(100));
        assert_eq!(p.delay(3, 1.0), std::time::Duration::from_millis(800));
        assert_eq!(p.delay(30, 1.0), std::time::Duration::from_secs(30));
        assert_eq!(p.delay(0, 0.0), std::time::Duration::from_millis(50));
    }

    #[test]
    fn globs() {
        assert!(glob_match("echo", "echo"));
        assert!(!glob_match("echo", "echo2"));
        assert!(glob_match("get_*", "get_issue"));
        assert!(glob_match("*_issue", "get_issue"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn filter_deny_wins() {
        let f = ToolFilter {
            allow: Some(vec!["*".into()]),
            deny: vec!["crash".into()],
        };
        assert!(f.permits("echo"));
        assert!(!f.permits("crash"));
    }

    #[test]
    fn unknown_field_has_line() {
        let (line, err) = parse_server_file("command = \"x\"\n\ncolour = \"red\"\n").unwrap_err();
        assert_eq!(line, Some(3));
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn syntax_error_has_line() {
        let (line, _) = parse_server_file("command = \"x\"\nargs = [\n").unwrap_err();
        assert!(line.is_some());
    }

    #[test]
    fn missing_command() {
        let (_, err) = parse_server_file("args = []\n").unwrap_err();
        assert!(err.to_string().contains("command"), "{err}");
    }

    #[test]
    fn kernel_keyring_is_denied_unless_the_file_opts_out() {
        assert!(
            !parse_server_file("command = \"x\"\n")
                .unwrap()
                .allow_kernel_keyring
        );
        let def = parse_server_file("command = \"x\"\nallow_kernel_keyring = true\n").unwrap();
        assert!(def.allow_kernel_keyring);
    }

    #[test]
    fn secrets_forms() {
        let def = parse_server_file(
            "command = \"x\"\nsecrets = [\"GITHUB_TOKEN\", { env = \"GH\", from = \"MY_KEY\" }]\n",
        )
        .unwrap();
        assert_eq!(def.secrets[0].env_name(), "GITHUB_TOKEN");
        assert_eq!(def.secrets[1].env_name(), "GH");
        assert_eq!(def.secrets[1].secret_name(), "MY_KEY");
        let (line, _) =
            parse_server_file("command = \"x\"\n\nsecrets = [\"lower\"]\n").unwrap_err();
        assert_eq!(line, Some(3));
    }
}
