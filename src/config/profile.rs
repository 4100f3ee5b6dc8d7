//! The profile: where its files live (config folder, data folder, keyring namespace) and what its
//! `lastmile.toml` says.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DurationSpec, RestartSection, Tier, line_of_offset};

/// Where one profile's things live.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile's name (`default` unless chosen).
    pub name: String,
    /// Holds `lastmile.toml` and `servers.d/`.
    pub config_dir: PathBuf,
    /// Holds the audit database and the logs.
    pub data_dir: PathBuf,
}

/// A profile could not be located or its `lastmile.toml` is broken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// No home folder to derive the default folders from.
    #[error(
        "cannot find a home folder for the profile's folders\nhint: set HOME, or pass --config-dir and LASTMILE_DATA_DIR"
    )]
    NoHome,
    /// The profile name is not allowed.
    #[error("`{0}` is not a valid profile name\nhint: use lowercase letters, digits and dashes")]
    BadName(String),
    /// `lastmile.toml` could not be read.
    #[error("{path}: cannot read: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// `lastmile.toml` is not valid.
    #[error("{path}:{line}: {message}\nhint: `schemas/profile.schema.json` describes every key")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line of the problem (1 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl Profile {
    /// Locate a profile: `config_dir` overrides the config folder, `LASTMILE_DATA_DIR` the data
    /// folder; otherwise both come from the platform's conventions (the `directories` crate).
    pub fn locate(name: &str, config_dir: Option<PathBuf>) -> Result<Self, ProfileError> {
        if !super::is_valid_server_name(name) {
            return Err(ProfileError::BadName(name.to_string()));
        }
        let dirs = directories::ProjectDirs::from("dev", "lastmile", "lastmile");
        let config_dir = match config_dir {
            Some(dir) => dir,
            None => dirs
                .as_ref()
                .ok_or(ProfileError::NoHome)?
                .config_dir()
                .join(name),
        };
        let data_dir = match std::env::var_os("LASTMILE_DATA_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => dirs
                .as_ref()
                .ok_or(ProfileError::NoHome)?
                .data_dir()
                .join(name),
        };
        Ok(Profile {
            name: name.to_string(),
            config_dir,
            data_dir,
        })
    }

    /// `servers.d/` of this profile.
    pub fn servers_dir(&self) -> PathBuf {
        self.config_dir.join("servers.d")
    }

    /// `lastmile.toml` of this profile.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("lastmile.toml")
    }

    /// Folder of the daily-rolling log files.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// The keyring service name that namespaces this profile's secrets.
    pub fn keyring_service(&self) -> String {
        format!("lastmile:{}", self.name)
    }

    /// Read `lastmile.toml`; a missing file means every default.
    pub fn load_config(&self) -> Result<ProfileConfig, ProfileError> {
        ProfileConfig::load(&self.config_file())
    }
}

/// `lastmile.toml`: the profile's settings. Every key is optional; unknown keys are errors.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "lastmile profile",
    description = "lastmile.toml: one profile's settings."
)]
pub struct ProfileConfig {
    /// Defaults for every server file.
    #[serde(default)]
    pub defaults: DefaultsSection,
    /// Session tokens.
    #[serde(default)]
    pub auth: AuthSection,
    /// Per-session rate limits: calls, reads and tasks.
    #[serde(default)]
    pub rate_limit: RateLimitSection,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditSection,
    /// The HTTP edge: credential carriers, proxy identity, scanner detection.
    #[serde(default)]
    pub http: super::HttpSection,
}

impl ProfileConfig {
    /// Read and validate a `lastmile.toml`; a missing file means every default.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(ProfileError::Unreadable {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        };
        Self::parse(&text).map_err(|(line, message)| ProfileError::Invalid {
            path: path.to_path_buf(),
            line,
            message,
        })
    }

    /// Parse a `lastmile.toml` text; the error carries its line.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let config: ProfileConfig = toml::from_str(text).map_err(|e| {
            let (line, message) = super::toml_error(text, &e);
            (line.unwrap_or(1), message)
        })?;
        let line_of = |needle: &str| {
            text.find(needle)
                .map(|at| line_of_offset(text, at))
                .unwrap_or(1)
        };
        if config.auth.min_secret_length < AuthSection::MIN_SECRET_LENGTH_FLOOR {
            return Err((
                line_of("min_secret_length"),
                format!(
                    "`auth.min_secret_length = {}` is below the floor of {} bytes; it may be raised, never lowered",
                    config.auth.min_secret_length,
                    AuthSection::MIN_SECRET_LENGTH_FLOOR
                ),
            ));
        }
        if config.rate_limit.burst_multiplier < 1.0
            || !config.rate_limit.burst_multiplier.is_finite()
        {
            return Err((
                line_of("burst_multiplier"),
                "`rate_limit.burst_multiplier` must be at least 1".into(),
            ));
        }
        Ok(config)
    }
}

/// `[defaults]`: values server files inherit.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    /// How long a child may take to start and complete the MCP handshake.
    #[serde(default = "DefaultsSection::default_startup_timeout")]
    pub startup_timeout: DurationSpec,
    /// How long one call may take before it is answered with a timeout.
    #[serde(default = "DefaultsSection::default_call_timeout")]
    pub call_timeout: DurationSpec,
    /// How crashed children are restarted.
    #[serde(default)]
    pub restart: RestartSection,
    /// The longest JSON-RPC message, in bytes, lastmile reads from the client or a child
    /// (default 64 MiB). A longer one is dropped with a named error; the connection goes on.
    #[serde(default = "DefaultsSection::default_max_message_bytes")]
    #[schemars(range(min = 1024))]
    pub max_message_bytes: usize,
}

impl DefaultsSection {
    fn default_startup_timeout() -> DurationSpec {
        DurationSpec(std::time::Duration::from_secs(10))
    }
    fn default_call_timeout() -> DurationSpec {
        DurationSpec(std::time::Duration::from_secs(120))
    }
    fn default_max_message_bytes() -> usize {
        crate::wire::DEFAULT_MAX_MESSAGE
    }
}

impl Default for DefaultsSection {
    fn default() -> Self {
        Self {
            startup_timeout: Self::default_startup_timeout(),
            call_timeout: Self::default_call_timeout(),
            restart: RestartSection::default(),
            max_message_bytes: Self::default_max_message_bytes(),
        }
    }
}

/// How a session token is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A missing or invalid token refuses the session (the default).
    #[default]
    Required,
    /// A missing or invalid token falls back to an anonymous session.
    Optional,
    /// No verification; a fixed test identity. Also needs `LASTMILE_ALLOW_DISABLED_AUTH=1`.
    Disabled,
}

/// `[auth]`: session tokens.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// `required` (default), `optional` or `disabled`.
    #[serde(default)]
    pub mode: AuthMode,
    /// Expected `iss` claim.
    #[serde(default = "AuthSection::default_issuer")]
    pub issuer: String,
    /// Expected `aud` claim.
    #[serde(default = "AuthSection::default_audience")]
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "AuthSection::default_leeway")]
    pub leeway: DurationSpec,
    /// Longest lifetime a token may have (`exp - iat`, or `exp - now`).
    #[serde(default = "AuthSection::default_max_lifetime")]
    pub max_token_lifetime: DurationSpec,
    /// Minimum signing-secret length in bytes (at least 32).
    #[serde(default = "AuthSection::default_min_secret_length")]
    #[schemars(range(min = 32))]
    pub min_secret_length: usize,
}

impl AuthSection {
    /// The signing secret may never be shorter than this many bytes.
    pub const MIN_SECRET_LENGTH_FLOOR: usize = 32;
    fn default_issuer() -> String {
        "lastmile".into()
    }
    fn default_audience() -> String {
        "lastmile".into()
    }
    fn default_leeway() -> DurationSpec {
        DurationSpec(std::time::Duration::from_secs(30))
    }
    fn default_max_lifetime() -> DurationSpec {
        DurationSpec(std::time::Duration::from_secs(30 * 86_400))
    }
    fn default_min_secret_length() -> usize {
        Self::MIN_SECRET_LENGTH_FLOOR
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            mode: AuthMode::default(),
            issuer: Self::default_issuer(),
            audience: Self::default_audience(),
            leeway: Self::default_leeway(),
            max_token_lifetime: Self::default_max_lifetime(),
            min_secret_length: Self::default_min_secret_length(),
        }
    }
}

/// `[rate_limit]`: requests per minute per session = a bucket's base × the tier's multiplier.
///
/// Three buckets, so that one kind of traffic cannot starve another: `calls` (tools/call),
/// `reads` (resources/read, prompts/get, completion, the list requests, subscriptions, logging
/// level) and `tasks` (polling and steering tasks).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Tool calls per minute for a multiplier of 1.
    #[serde(default = "RateLimitSection::default_base")]
    #[schemars(range(min = 1))]
    pub base_per_minute: u32,
    /// Reads (resources, prompts, completions, lists, subscriptions) per minute for a multiplier
    /// of 1.
    #[serde(default = "RateLimitSection::default_reads")]
    #[schemars(range(min = 1))]
    pub reads_per_minute: u32,
    /// Task requests (`tasks/*`) per minute for a multiplier of 1.
    #[serde(default = "RateLimitSection::default_tasks")]
    #[schemars(range(min = 1))]
    pub tasks_per_minute: u32,
    /// Burst size as a multiple of the per-minute rate (at least 1).
    #[serde(default = "RateLimitSection::default_burst")]
    pub burst_multiplier: f64,
    /// Per-tier multipliers.
    #[serde(default)]
    pub multipliers: TierMultipliers,
}

impl RateLimitSection {
    fn default_base() -> u32 {
        60
    }
    fn default_burst() -> f64 {
        3.0
    }
    fn default_reads() -> u32 {
        120
    }
    fn default_tasks() -> u32 {
        600
    }
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self {
            base_per_minute: Self::default_base(),
            reads_per_minute: Self::default_reads(),
            tasks_per_minute: Self::default_tasks(),
            burst_multiplier: Self::default_burst(),
            multipliers: TierMultipliers::default(),
        }
    }
}

/// Multipliers of the base rate, per tier (defaults: admin 10, service/a2a/mcp 5, user 1,
/// anonymous 0.5).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TierMultipliers {
    /// Admin sessions.
    #[serde(default = "m10")]
    pub admin: f64,
    /// User sessions.
    #[serde(default = "m1")]
    pub user: f64,
    /// Service sessions.
    #[serde(default = "m5")]
    pub service: f64,
    /// Agent-to-agent sessions.
    #[serde(default = "m5")]
    pub a2a: f64,
    /// MCP-client sessions.
    #[serde(default = "m5")]
    pub mcp: f64,
    /// Anonymous sessions.
    #[serde(default = "m05")]
    pub anonymous: f64,
}

fn m10() -> f64 {
    10.0
}
fn m5() -> f64 {
    5.0
}
fn m1() -> f64 {
    1.0
}
fn m05() -> f64 {
    0.5
}

impl Default for TierMultipliers {
    fn default() -> Self {
        Self {
            admin: m10(),
            user: m1(),
            service: m5(),
            a2a: m5(),
            mcp: m5(),
            anonymous: m05(),
        }
    }
}

impl TierMultipliers {
    /// The multiplier of one tier.
    pub fn of(&self, tier: Tier) -> f64 {
        match tier {
            Tier::Admin => self.admin,
            Tier::User => self.user,
            Tier::Service => self.service,
            Tier::A2a => self.a2a,
            Tier::Mcp => self.mcp,
            Tier::Anonymous => self.anonymous,
        }
    }
}

/// `[audit]`: the audit log.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Serve even when the audit database cannot be opened. Off by default: lastmile refuses.
    #[serde(default)]
    pub allow_unaudited: bool,
}
