//! `[http]` in `lastmile.toml`: the HTTP edge's settings — which credential carriers the token
//! extractor chain walks, the signed proxy identity header, and the scanner detector's tables and
//! thresholds. Every table is data: a new scanner family is a config change, not a release.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DurationSpec;

/// `[http]`: the HTTP edge.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Which credential carriers are tried, in order: `standard` (Authorization header, the
    /// proxy's header, the cookie), `browser` (Authorization header, cookie) or `api`
    /// (Authorization header only).
    #[serde(default)]
    pub extractor: ExtractorPreset,
    /// The header in which an MCP proxy forwards the client's bearer token (`standard` preset).
    #[serde(default = "HttpSection::default_proxy_header")]
    pub proxy_header: String,
    /// The cookie that carries the session token (`standard` and `browser` presets).
    #[serde(default = "HttpSection::default_cookie_name")]
    pub cookie_name: String,
    /// The identity a fronting SSO-terminating proxy signs into a header.
    #[serde(default)]
    pub proxy_identity: ProxyIdentitySection,
    /// Scanner detection, before anything else looks at a request.
    #[serde(default)]
    pub scanner: ScannerSection,
    /// `Origin` values a browser page may call from (`scheme://host:port`, exact). A request
    /// with any other `Origin` is refused (DNS rebinding, cross-site requests): every localhost
    /// port counts as the same site, so none is allowed unless listed.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// `Host` names accepted besides the loopback names and the bound address (a name a fronting
    /// proxy uses, for example). A request naming any other host is refused.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// OAuth authorization servers named in the protected-resource metadata (RFC 9728); empty
    /// when tokens come from `lastmile token issue`.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// MCP sessions open at once, over every identity; an `initialize` beyond it is refused.
    #[serde(default = "HttpSection::default_max_sessions")]
    pub max_sessions: usize,
    /// MCP sessions one identity (subject and tier) may hold open at once.
    #[serde(default = "HttpSection::default_max_sessions_per_identity")]
    pub max_sessions_per_identity: usize,
    /// A session with no request for this long is closed (its children stop).
    #[serde(default = "HttpSection::default_session_idle")]
    pub session_idle: DurationSpec,
    /// How long a request's event stream whose connection dropped waits for its client to
    /// resume it (`GET` with `Last-Event-ID`) before its request is cancelled.
    #[serde(default = "HttpSection::default_resume_window")]
    pub resume_window: DurationSpec,
}

impl HttpSection {
    fn default_proxy_header() -> String {
        "x-forwarded-authorization".into()
    }
    fn default_cookie_name() -> String {
        "lastmile_session".into()
    }
    fn default_max_sessions() -> usize {
        64
    }
    fn default_max_sessions_per_identity() -> usize {
        8
    }
    fn default_session_idle() -> DurationSpec {
        DurationSpec(std::time::Duration::from_secs(30 * 60))
    }
    fn default_resume_window() -> DurationSpec {
        DurationSpec(std::time::Duration::from_secs(30))
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            extractor: ExtractorPreset::default(),
            proxy_header: Self::default_proxy_header(),
            cookie_name: Self::default_cookie_name(),
            proxy_identity: ProxyIdentitySection::default(),
            scanner: ScannerSection::default(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            authorization_servers: Vec::new(),
            max_sessions: Self::default_max_sessions(),
            max_sessions_per_identity: Self::default_max_sessions_per_identity(),
            session_idle: Self::default_session_idle(),
            resume_window: Self::default_resume_window(),
        }
    }
}

/// The token extractor chain's preset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExtractorPreset {
    /// Authorization header, then the proxy's header, then the cookie (the default).
    #[default]
    Standard,
    /// Authorization header, then the cookie.
    Browser,
    /// Authorization header only.
    Api,
}

/// `[http.proxy_identity]`: the signed identity header of a fronting proxy. It is verified only
/// when the profile holds a proxy secret; a header that arrives without one is refused.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyIdentitySection {
    /// The header's name.
    #[serde(default = "ProxyIdentitySection::default_header")]
    pub header: String,
    /// The longest `exp - now` accepted, so a captured header cannot be replayed for long.
    #[serde(default = "ProxyIdentitySection::default_max_lifetime")]
    pub max_lifetime: DurationSpec,
    /// Clock skew allowed on `exp`.
    #[serde(default = "ProxyIdentitySection::default_leeway")]
    pub leeway: DurationSpec,
}

impl ProxyIdentitySection {
    fn default_header() -> String {
        "x-lastmile-identity".into()
    }
    fn default_max_lifetime() -> DurationSpec {
        DurationSpec(std::time::Duration::from_secs(300))
    }
    fn default_leeway() -> DurationSpec {
        DurationSpec(std::time::Duration::from_secs(5))
    }
}

impl Default for ProxyIdentitySection {
    fn default() -> Self {
        Self {
            header: Self::default_header(),
            max_lifetime: Self::default_max_lifetime(),
            leeway: Self::default_leeway(),
        }
    }
}

/// A generic HTTP client library whose default user agent, unchanged, marks a script rather than
/// an MCP client: an agent that starts with `prefix` (ASCII case ignored) and is shorter than
/// `min_length` bytes is refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericClient {
    /// The start of the library's default agent (`curl/`).
    pub prefix: String,
    /// Agents of this library shorter than this are refused.
    pub min_length: usize,
}

/// `[http.scanner]`: the three checks, in order — path, user agent, velocity.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScannerSection {
    /// Turn the detector off entirely.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// File extensions scanners probe for (the last segment's, ASCII case ignored, no dot).
    #[serde(default = "ScannerSection::default_extensions")]
    pub extensions: Vec<String>,
    /// Paths scanners probe for: a request whose path contains one (ASCII case ignored, also
    /// after percent-decoding) is refused.
    #[serde(default = "ScannerSection::default_paths")]
    pub paths: Vec<String>,
    /// Scanner tools: a user agent that contains one (ASCII case ignored) is refused.
    #[serde(default = "ScannerSection::default_user_agents")]
    pub user_agents: Vec<String>,
    /// Known MCP clients, let through the length checks: an exact agent (`node`) or, ending in
    /// `*`, a prefix (`python-httpx/*`). ASCII case ignored. Scanner tools are refused first.
    #[serde(default = "ScannerSection::default_allowed_agents")]
    pub allowed_agents: Vec<String>,
    /// A user agent shorter than this many bytes (or none at all) is refused; 0 turns the check off.
    #[serde(default = "ScannerSection::default_min_user_agent_length")]
    pub min_user_agent_length: usize,
    /// Let a request from a loopback address without a user agent through (the Rust SDK's and
    /// .NET's HTTP clients send none).
    #[serde(default = "yes")]
    pub allow_empty_user_agent_on_loopback: bool,
    /// Generic HTTP client libraries and the agent length under which each is refused.
    #[serde(default = "ScannerSection::default_generic_clients")]
    pub generic_clients: Vec<GenericClient>,
    /// Requests per minute one client (address, and identity once known) may send.
    #[serde(default = "ScannerSection::default_per_minute")]
    #[schemars(range(min = 1))]
    pub per_minute: u32,
    /// The same for a loopback client, so a local benchmark or many local clients are not taken
    /// for a scanner.
    #[serde(default = "ScannerSection::default_loopback_per_minute")]
    #[schemars(range(min = 1))]
    pub loopback_per_minute: u32,
    /// How many clients the velocity check tracks at once (the oldest are forgotten first).
    #[serde(default = "ScannerSection::default_max_clients")]
    #[schemars(range(min = 1))]
    pub max_clients: usize,
    /// Denials of one client by one check within this window are logged and audited once, with a
    /// count, so a flood cannot fill the disk.
    #[serde(default = "ScannerSection::default_denial_window")]
    pub denial_window: DurationSpec,
}

fn yes() -> bool {
    true
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl ScannerSection {
    fn default_extensions() -> Vec<String> {
        strings(&[
            "php", "php3", "php4", "php5", "php7", "phtml", "phar", "asp", "aspx", "jsp", "cgi",
            "pl", "env", "git", "svn", "sql", "sqlite", "sqlite3", "db", "mdb", "bak", "backup",
            "old", "orig", "save", "swp", "tmp", "zip", "gz", "tgz", "tar", "rar", "7z", "bz2",
            "config", "conf", "cfg", "ini", "log", "htaccess", "htpasswd", "ds_store",
        ])
    }
    fn default_paths() -> Vec<String> {
        strings(&[
            "/.env",
            "/.git/",
            "/.svn/",
            "/.hg/",
            "/.aws/",
            "/.ssh/",
            "/.ds_store",
            "/wp-admin",
            "/wp-content",
            "/wp-includes",
            "/wp-login",
            "/phpmyadmin",
            "/pma/",
            "/myadmin",
            "/cgi-bin",
            "/xmlrpc.php",
            "/shell.php",
            "/c99.php",
            "/r57.php",
            "/eval-stdin.php",
            "/phpunit",
            "/manager/html",
            "/jmx-console",
            "/server-status",
            "/actuator",
            "/boaform",
            "/hnap1",
            "/autodiscover",
            "/owa/",
            "/_ignition",
            "/telescope",
            "/etc/passwd",
            "/../",
        ])
    }
    fn default_user_agents() -> Vec<String> {
        strings(&[
            "masscan",
            "nmap",
            "nikto",
            "sqlmap",
            "zgrab",
            "zmap",
            "acunetix",
            "nessus",
            "openvas",
            "w3af",
            "metasploit",
            "burp",
            "havij",
            "censys",
            "shodan",
            "dirbuster",
            "gobuster",
            "feroxbuster",
            "wpscan",
            "nuclei",
            "wfuzz",
            "fuzz faster u fool",
            "whatweb",
            "skipfish",
            "arachni",
            "netsparker",
            "appscan",
            "jaeles",
            "hydra",
            "internet-measurement",
        ])
    }
    fn default_allowed_agents() -> Vec<String> {
        strings(&[
            "node",
            "undici",
            "node-fetch/*",
            "python-httpx/*",
            "claude-code/*",
            "claude-user*",
            "claude/*",
            "mcp-inspector*",
            "modelcontextprotocol*",
            "java-http-client/*",
        ])
    }
    fn default_min_user_agent_length() -> usize {
        4
    }
    fn default_generic_clients() -> Vec<GenericClient> {
        [
            ("curl/", 16),
            ("wget/", 16),
            ("python-requests/", 28),
            ("python-urllib/", 24),
            ("python/", 32),
            ("aiohttp/", 20),
            ("libwww-perl/", 24),
            ("lwp::simple/", 24),
            ("java/", 20),
            ("apache-httpclient/", 28),
            ("okhttp/", 20),
            ("httpie/", 16),
            ("axios/", 16),
            ("ruby", 16),
            ("php/", 16),
        ]
        .into_iter()
        .map(|(prefix, min_length)| GenericClient {
            prefix: prefix.to_string(),
            min_length,
        })
        .collect()
    }
    fn default_per_minute() -> u32 {
        3_000
    }
    fn default_loopback_per_minute() -> u32 {
        1_200_000
    }
    fn default_max_clients() -> usize {
        65_536
    }
    fn default_denial_window() -> DurationSpec {
        DurationSpec(std::time::Duration::from_secs(60))
    }
}

impl Default for ScannerSection {
    fn default() -> Self {
        Self {
            enabled: true,
            extensions: Self::default_extensions(),
            paths: Self::default_paths(),
            user_agents: Self::default_user_agents(),
            allowed_agents: Self::default_allowed_agents(),
            min_user_agent_length: Self::default_min_user_agent_length(),
            allow_empty_user_agent_on_loopback: true,
            generic_clients: Self::default_generic_clients(),
            per_minute: Self::default_per_minute(),
            loopback_per_minute: Self::default_loopback_per_minute(),
            max_clients: Self::default_max_clients(),
            denial_window: Self::default_denial_window(),
        }
    }
}
