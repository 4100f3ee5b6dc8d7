//! Start `lastmile serve` as a child process and speak MCP to it as a client — what `tools` and
//! `call` do to show exactly what a session sees.
//!
//! With a tier asked for, a short-lived token for that tier is signed with the profile's signing
//! secret and handed to the child in a file (mode 0600, in the profile's private data folder,
//! removed once the child has read it) — never in argv, never in the environment.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use std::collections::BTreeSet;
use std::sync::Arc;

use rmcp::model::Tool;
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ServiceExt};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;

use super::error::CliError;
use super::files::{ensure_private_dir, write_new_private};
use super::{GlobalArgs, glue};
use crate::config::{Profile, Tier};
use crate::identity::{IssueRequest, TokenIssuer};

/// Lifetime of the token `--as TIER` issues: long enough for one look, useless afterwards.
const AS_TIER_TTL: Duration = Duration::from_secs(5 * 60);

/// A token file that is removed when dropped.
struct TokenFile(PathBuf);

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The client side: it only listens for list changes (late servers are announced so).
#[derive(Clone, Default)]
pub(crate) struct Listener {
    changed: Arc<Notify>,
}

impl ClientHandler for Listener {
    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        // notify_one keeps a permit when nobody waits yet, so a change is never missed.
        self.changed.notify_one();
    }
}

/// A running gateway and the client connected to it.
pub(crate) struct Gateway {
    pub(crate) client: RunningService<RoleClient, Listener>,
    changed: Arc<Notify>,
    stderr: Option<tokio::task::JoinHandle<String>>,
}

impl Gateway {
    /// The tools, listed again after each list change until `done` holds for them or `wait`
    /// has passed (the gateway answers the first list after a short grace and announces the
    /// servers that come up later).
    pub(crate) async fn tools_until(
        &self,
        wait: Duration,
        done: impl Fn(&[Tool]) -> bool,
    ) -> Result<Vec<Tool>, CliError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let tools = self
                .client
                .list_all_tools()
                .await
                .map_err(|e| CliError::Gateway {
                    detail: format!("tools/list failed: {e}"),
                    hint: "run `lastmile doctor`",
                })?;
            if done(&tools) {
                return Ok(tools);
            }
            if tokio::time::timeout_at(deadline, self.changed.notified())
                .await
                .is_err()
            {
                return Ok(tools);
            }
        }
    }

    /// Close the session; the child stops its servers and exits.
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.cancel()).await;
        if let Some(t) = self.stderr.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// Mint the `--as TIER` token and write it to a private file.
fn token_file(global: &GlobalArgs, profile: &Profile, tier: Tier) -> Result<TokenFile, CliError> {
    let config = profile.load_config()?;
    let secret = glue::signing_secret(global)?;
    let issuer = TokenIssuer::new(&config.auth, &secret)?;
    let mut req = IssueRequest::new(format!("lastmile-cli-as-{tier}"), tier);
    req.ttl = Some(AS_TIER_TTL);
    let issued = issuer.issue(&req)?;
    let dir = profile.data_dir.join("run");
    ensure_private_dir(&dir)?;
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    let path = dir.join(format!("as-tier-{:016x}.token", u64::from_le_bytes(nonce)));
    write_new_private(&path, issued.token.expose_secret().as_bytes())?;
    Ok(TokenFile(path))
}

/// Start `lastmile serve` for the profile (as `tier` when given) and connect.
pub(crate) async fn connect(global: &GlobalArgs, tier: Option<Tier>) -> Result<Gateway, CliError> {
    let profile = Profile::locate(&global.profile, global.config_dir.clone())?;
    let token = match tier {
        Some(tier) => {
            let (g, p) = (global.clone(), profile.clone());
            Some(tokio::task::block_in_place(move || {
                token_file(&g, &p, tier)
            })?)
        }
        None => None,
    };
    let exe =
        std::env::current_exe().map_err(|e| CliError::io("locate", "the lastmile binary", e))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--profile")
        .arg(&global.profile)
        .arg("--secrets-backend")
        .arg(&global.secrets_backend);
    if let Some(dir) = &global.config_dir {
        cmd.arg("--config-dir").arg(dir);
    }
    cmd.arg("serve");
    if let Some(t) = &token {
        cmd.arg("--token-file").arg(&t.0);
    }
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Gateway {
            detail: format!("cannot start `lastmile serve`: {e}"),
            hint: "check that the lastmile binary is intact",
        })?;
    let stderr = stderr.map(|mut e| {
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut out = String::new();
            let _ = e.read_to_string(&mut out).await;
            out
        })
    });
    let listener = Listener::default();
    let changed = Arc::clone(&listener.changed);
    let connected = listener.serve(transport).await;
    // The child has read its token before it answers the handshake; the file goes now.
    drop(token);
    match connected {
        Ok(client) => Ok(Gateway {
            client,
            changed,
            stderr,
        }),
        Err(e) => {
            let said = match stderr {
                Some(t) => tokio::time::timeout(Duration::from_secs(5), t)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default(),
                None => String::new(),
            };
            let said = super::output::sanitize_for_terminal(&without_log_prefix(said.trim()));
            if said.contains("session refused") || said.contains("no valid session token") {
                let reason = said.strip_prefix("session refused: ").unwrap_or(&said);
                return Err(CliError::TokenRefused {
                    reason: format!("the gateway refused the session: {reason}"),
                });
            }
            if said.contains("\nhint: ") {
                // serve said what to do; a second hint would only repeat it.
                return Err(CliError::Other(format!("`lastmile serve` stopped: {said}")));
            }
            Err(CliError::Gateway {
                detail: if said.is_empty() {
                    format!("the MCP handshake with `lastmile serve` failed: {e}")
                } else {
                    format!("`lastmile serve` stopped: {said}")
                },
                hint: "run `lastmile doctor`; the log folder (`lastmile doctor` names it) has details",
            })
        }
    }
}

/// The server prefixes a session will see tools from, and how long their start may take. The
/// tier of a saved token is read without verifying it: it only decides what to wait for, the
/// gateway decides what is shown.
pub(crate) fn expected_servers(
    global: &GlobalArgs,
    tier: Option<Tier>,
) -> Result<(BTreeSet<String>, Duration), CliError> {
    let profile = Profile::locate(&global.profile, global.config_dir.clone())?;
    let config = profile.load_config()?;
    let tier = match tier {
        Some(t) => t,
        None if config.auth.mode == crate::config::AuthMode::Disabled => Tier::Admin,
        None => session_tier(global).unwrap_or(Tier::Admin),
    };
    let mut wait = config.defaults.startup_timeout.0;
    let mut expected = BTreeSet::new();
    for s in crate::config::load_servers_dir(&profile.servers_dir()).servers {
        if s.def.disabled || !s.allows(tier) || s.prefix().is_empty() {
            continue;
        }
        if let Some(t) = s.def.startup_timeout {
            wait = wait.max(t.0);
        }
        expected.insert(s.prefix().to_string());
    }
    Ok((expected, wait + Duration::from_secs(1)))
}

/// The tier written in the token `serve` will use (LASTMILE_TOKEN, else the saved one).
fn session_tier(global: &GlobalArgs) -> Option<Tier> {
    let token = match std::env::var(crate::identity::ENV_TOKEN) {
        Ok(t) if !t.trim().is_empty() => SecretString::from(t),
        _ => {
            let (_, opened) = super::glue::open_profile_store(global).ok()?;
            opened
                .store
                .get(&crate::secrets::SecretKey::Internal(
                    crate::secrets::Internal::SessionToken,
                ))
                .ok()??
        }
    };
    let claims = crate::identity::inspect_unverified(token.expose_secret().as_bytes()).claims?;
    claims["tier"].as_str()?.parse().ok()
}

/// The servers (by prefix) that have no tool in `tools`.
pub(crate) fn missing_servers(expected: &BTreeSet<String>, tools: &[Tool]) -> Vec<String> {
    let seen: BTreeSet<&str> = tools
        .iter()
        .filter_map(|t| t.name.split_once("__").map(|(p, _)| p))
        .collect();
    expected
        .iter()
        .filter(|p| !seen.contains(p.as_str()))
        .cloned()
        .collect()
}

/// serve's stderr lines without the timestamp and level a log line starts with.
fn without_log_prefix(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut words = line.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some(ts), Some("ERROR" | "WARN" | "INFO"), Some(rest))
                    if ts.len() > 20 && ts.as_bytes()[4] == b'-' && ts.ends_with('Z') =>
                {
                    rest.trim_start().to_string()
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_prefixes_are_dropped() {
        let said = "2026-11-30T05:38:48.393357Z ERROR cannot open the audit log: x\nhint: y";
        assert_eq!(
            super::without_log_prefix(said),
            "cannot open the audit log: x\nhint: y"
        );
    }
}
