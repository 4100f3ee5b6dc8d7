//! `lastmile init`: make a profile ready for Claude in one command.
//!
//! It creates the profile's folders (0700) and `lastmile.toml` (0600), generates the signing
//! secret, issues an admin session token (30 days unless `--ttl` says otherwise) and saves it in
//! the keyring for `lastmile serve`, then prints the Claude Desktop entry and the `claude mcp add`
//! command with the absolute path of this binary — never a secret or a token.
//!
//! Running it again changes nothing and says so, except that a saved token that no longer
//! verifies, or expires within [`RENEW_WITHIN`], is replaced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;

use super::error::CliError;
use super::files::{
    DirOutcome, FILE_MODE, ensure_private_dir, mode_of, set_mode, write_new_private,
};
use super::{GlobalArgs, Printer};
use crate::config::{DurationSpec, Profile, Tier};
use crate::identity::{IssueRequest, TokenIssuer, UnixTime, Verifier, now_unix};
use crate::secrets::{
    BackendRequest, Internal, OpenedStore, SIGNING_SECRET_BYTES, SecretKey, open_store,
    random_secret,
};

/// Lifetime of the admin token `init` saves, unless `--ttl` says otherwise.
pub(crate) const DEFAULT_ADMIN_TTL: Duration = Duration::from_secs(30 * 86_400);
/// A saved token that expires sooner than this is renewed.
pub(crate) const RENEW_WITHIN: Duration = Duration::from_secs(3 * 86_400);

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Lifetime of the admin token saved for Claude ("30d" by default; capped by
    /// auth.max_token_lifetime).
    #[arg(long)]
    ttl: Option<DurationSpec>,
    /// The token's subject (`sub`); default: the login name.
    #[arg(long)]
    sub: Option<String>,
}

/// What `lastmile.toml` starts as: every key has a default; these are spelled out to be found.
const PROFILE_TEMPLATE: &str = "# lastmile profile settings; every key is optional.\n# Reference: schemas/profile.schema.json in the lastmile repository.\n\n[auth]\n# required: a session without a valid token is refused.\nmode = \"required\"\n";

pub(crate) fn run(global: &GlobalArgs, args: InitArgs) -> Result<(), CliError> {
    crate::telemetry::init_cli();
    let p = Printer;
    let profile = Profile::locate(&global.profile, global.config_dir.clone())?;
    let mut changes = 0usize;
    p.out(format!("profile `{}`", profile.name));

    for (dir, what) in [
        (profile.config_dir.clone(), "config folder"),
        (profile.servers_dir(), "servers.d"),
        (profile.data_dir.clone(), "data folder"),
        (profile.log_dir(), "log folder"),
    ] {
        match ensure_private_dir(&dir)? {
            DirOutcome::Created => {
                changes += 1;
                p.out(format!("  created {what} {} (mode 0700)", dir.display()));
            }
            DirOutcome::Tightened => {
                changes += 1;
                p.out(format!(
                    "  {what} {} was readable by others; now mode 0700",
                    dir.display()
                ));
            }
            DirOutcome::Unchanged => {}
        }
    }
    let config_file = profile.config_file();
    if config_file.exists() {
        if mode_of(&config_file).is_some_and(|m| m & 0o077 != 0) {
            set_mode(&config_file, FILE_MODE)?;
            changes += 1;
            p.out(format!(
                "  {} was readable by others; now mode 0600",
                config_file.display()
            ));
        }
    } else {
        write_new_private(&config_file, PROFILE_TEMPLATE.as_bytes())?;
        changes += 1;
        p.out(format!("  wrote {} (mode 0600)", config_file.display()));
    }
    let config = profile.load_config()?;

    let request: BackendRequest = global.secrets_backend.parse()?;
    let opened = open_store(request, &profile.keyring_service())?;
    let signing = match signing_secret(&opened)? {
        Some(secret) => secret,
        None => {
            let fresh = random_secret(SIGNING_SECRET_BYTES)?;
            opened
                .store
                .set(&SecretKey::Internal(Internal::SigningSecret), &fresh)?;
            changes += 1;
            p.out(format!(
                "  generated a signing secret ({SIGNING_SECRET_BYTES} random bytes) in the {} keyring, service `{}`",
                opened.choice.kind,
                opened.store.service()
            ));
            fresh
        }
    };
    // A weak existing secret is an error, never silently replaced (that would void every token).
    let issuer = TokenIssuer::new(&config.auth, &signing)?;
    let verifier = Verifier::new(&config.auth, &signing)?;

    let saved = opened
        .store
        .get(&SecretKey::Internal(Internal::SessionToken))?;
    let now = now_unix();
    let renew_reason = match &saved {
        None => Some("no saved token".to_string()),
        Some(token) => {
            use secrecy::ExposeSecret;
            match verifier.verify_at(token.expose_secret().as_bytes(), now) {
                Err(rejection) => Some(format!("the saved token is refused ({rejection})")),
                Ok(claims) if claims.exp <= now + RENEW_WITHIN.as_secs() => Some(format!(
                    "the saved token expires at {}, within {} days",
                    UnixTime(claims.exp),
                    RENEW_WITHIN.as_secs() / 86_400
                )),
                Ok(claims) => {
                    p.out(format!(
                        "  saved admin token for `{}` (tier {}) is valid until {}",
                        super::output::sanitize_for_terminal(&claims.sub),
                        claims.tier,
                        UnixTime(claims.exp)
                    ));
                    None
                }
            }
        }
    };
    if let Some(reason) = renew_reason {
        let subject = args.sub.clone().unwrap_or_else(login_name);
        let mut req = IssueRequest::new(subject, Tier::Admin);
        req.ttl = Some(args.ttl.map(|d| d.0).unwrap_or(DEFAULT_ADMIN_TTL));
        let issued = issuer.issue(&req)?;
        opened
            .store
            .set(&SecretKey::Internal(Internal::SessionToken), &issued.token)?;
        changes += 1;
        let capped = if issued.ttl_capped {
            format!(
                " (capped by auth.max_token_lifetime = {})",
                config.auth.max_token_lifetime
            )
        } else {
            String::new()
        };
        p.out(format!(
            "  {reason}: saved an admin token for `{}` in the keyring, valid until {}{capped}; `lastmile init` renews it when it has less than {} days left",
            super::output::sanitize_for_terminal(&issued.claims.sub),
            UnixTime(issued.claims.exp),
            RENEW_WITHIN.as_secs() / 86_400
        ));
    }

    if changes == 0 {
        p.out("  nothing to do: the profile is set up");
    }
    print_client_entries(global, &profile, &p)?;
    Ok(())
}

fn signing_secret(opened: &OpenedStore) -> Result<Option<SecretString>, CliError> {
    Ok(opened
        .store
        .get(&SecretKey::Internal(Internal::SigningSecret))?)
}

/// The user's login name, for the token's subject.
fn login_name() -> String {
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "admin".to_string())
}

/// The absolute path of this binary (Claude Desktop on macOS does not search ~/.cargo/bin).
pub(crate) fn lastmile_exe() -> Result<PathBuf, CliError> {
    let exe =
        std::env::current_exe().map_err(|e| CliError::io("locate", "the lastmile binary", e))?;
    Ok(std::fs::canonicalize(&exe).unwrap_or(exe))
}

/// The arguments after the binary that select this profile for `serve`.
pub(crate) fn serve_args(global: &GlobalArgs, profile: &Profile) -> Vec<String> {
    let mut args = vec!["serve".to_string()];
    if profile.name != "default" {
        args.extend(["--profile".into(), profile.name.clone()]);
    }
    if let Some(dir) = &global.config_dir {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        args.extend(["--config-dir".into(), dir.display().to_string()]);
    }
    if global.secrets_backend != "auto" {
        args.extend(["--secrets-backend".into(), global.secrets_backend.clone()]);
    }
    args
}

/// The Claude Desktop JSON entry and the Claude Code command for this profile.
pub(crate) fn client_entries(exe: &Path, args: &[String]) -> (serde_json::Value, String) {
    let desktop = serde_json::json!({
        "mcpServers": {
            "lastmile": { "command": exe.display().to_string(), "args": args }
        }
    });
    let mut words = vec![
        "claude".to_string(),
        "mcp".into(),
        "add".into(),
        "--scope".into(),
        "user".into(),
        "lastmile".into(),
        "--".into(),
        exe.display().to_string(),
    ];
    words.extend(args.iter().cloned());
    let code = words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    (desktop, code)
}

/// Quote a word for a POSIX shell when it needs it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn print_client_entries(
    global: &GlobalArgs,
    profile: &Profile,
    p: &Printer,
) -> Result<(), CliError> {
    let exe = lastmile_exe()?;
    let args = serve_args(global, profile);
    let (desktop, code) = client_entries(&exe, &args);
    p.out("\nClaude Desktop: add this to claude_desktop_config.json (merge into an existing \"mcpServers\"):");
    p.out(serde_json::to_string_pretty(&desktop).unwrap_or_default());
    p.out("\nClaude Code:");
    p.out(format!("  {code}"));
    p.out("\nNo secret or token appears above: `lastmile serve` reads the saved token from the keyring.");
    Ok(())
}

/// `lastmile.toml` as `init` writes it parses to the defaults plus required auth.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProfileConfig;

    #[test]
    fn the_template_is_a_valid_profile() {
        let c = ProfileConfig::parse(PROFILE_TEMPLATE).unwrap();
        assert_eq!(c.auth.mode, crate::config::AuthMode::Required);
    }

    #[test]
    fn entries_hold_the_absolute_path_and_no_secret() {
        let exe = Path::new("/opt/my tools/lastmile");
        let (desktop, code) = client_entries(exe, &["serve".into()]);
        assert_eq!(
            desktop["mcpServers"]["lastmile"]["command"],
            "/opt/my tools/lastmile"
        );
        assert_eq!(
            code,
            "claude mcp add --scope user lastmile -- '/opt/my tools/lastmile' serve"
        );
    }
}
