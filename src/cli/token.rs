//! `lastmile token`: issue and inspect session tokens.
//!
//! Both load the profile's signing secret through [`super::glue`]; no flag ever takes a secret (or
//! a token) on the command line, where other users and shell history could read it.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use secrecy::ExposeSecret;

use super::error::CliError;
use super::output::sanitize_for_terminal;
use super::{GlobalArgs, Printer, glue};
use crate::config::{AuthSection, DurationSpec, Profile, Tier};
use crate::identity::{
    IssueRequest, MAX_TOKEN_BYTES, TokenIssuer, UnixTime, Verifier, inspect_unverified, now_unix,
};

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Mint a session token signed with the profile's signing secret; print it, or save it for
    /// `lastmile serve` with --save.
    #[command(
        after_help = "Examples:\n  lastmile token issue --sub alice --tier user --ttl 8h --save\n  lastmile token issue --sub ci --tier service --ttl 30m > ci.token"
    )]
    Issue(IssueArgs),
    /// Verify a token from FILE (or stdin): show its claims and, if it would be refused, why.
    #[command(
        after_help = "Examples:\n  lastmile token inspect ci.token\n  lastmile token issue --sub bob --tier user | lastmile token inspect"
    )]
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// Who the session is for (the `sub` claim).
    #[arg(long)]
    sub: String,
    /// Permission tier: admin, user, service, a2a, mcp or anonymous.
    #[arg(long)]
    tier: Tier,
    /// Lifetime ("30m", "8h", "7d"); default 8h; capped by auth.max_token_lifetime.
    #[arg(long)]
    ttl: Option<DurationSpec>,
    /// A scope; repeat the flag, or separate several with spaces.
    #[arg(long)]
    scope: Vec<String>,
    /// A role; repeat the flag for several.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Kind of principal (the `user_type` claim), e.g. human or agent.
    #[arg(long)]
    user_type: Option<String>,
    /// Tier whose rate limit applies, when not the session's own.
    #[arg(long)]
    rate_limit_tier: Option<Tier>,
    /// Save the token in the profile's keyring for `lastmile serve` instead of printing it.
    #[arg(long)]
    save: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// File holding the token; stdin when absent or `-`.
    file: Option<PathBuf>,
}

pub(crate) fn run(global: &GlobalArgs, cmd: TokenCommand) -> Result<(), CliError> {
    crate::telemetry::init_cli();
    let p = Printer;
    match cmd {
        TokenCommand::Issue(args) => issue(global, args, &p),
        TokenCommand::Inspect(args) => inspect(global, args, &p),
    }
}

/// The profile's `[auth]`.
fn auth_section(global: &GlobalArgs) -> Result<AuthSection, CliError> {
    let profile = Profile::locate(&global.profile, global.config_dir.clone())?;
    Ok(profile.load_config()?.auth)
}

fn issue(global: &GlobalArgs, args: IssueArgs, p: &Printer) -> Result<(), CliError> {
    let auth = auth_section(global)?;
    let secret = glue::signing_secret(global)?;
    let issuer = TokenIssuer::new(&auth, &secret)?;
    let request = IssueRequest {
        subject: args.sub,
        tier: args.tier,
        ttl: args.ttl.map(|d| d.0),
        scope: args.scope,
        roles: args.roles,
        user_type: args.user_type,
        rate_limit_tier: args.rate_limit_tier,
    };
    let issued = issuer.issue(&request)?;
    let c = &issued.claims;
    if issued.ttl_capped {
        p.err(format!(
            "warning: the lifetime asked for is longer than auth.max_token_lifetime ({}); the token expires at {}",
            auth.max_token_lifetime,
            UnixTime(c.exp)
        ));
    }
    let summary = format!(
        "{} (tier {}, session {}, expires {})",
        sanitize_for_terminal(&c.sub),
        c.tier,
        c.session_id,
        UnixTime(c.exp)
    );
    if args.save {
        glue::save_session_token(global, &issued.token)?;
        p.err(format!(
            "saved a token for {summary}; `lastmile serve` will use it"
        ));
    } else {
        p.out(issued.token.expose_secret());
        p.err(format!("issued a token for {summary}"));
    }
    Ok(())
}

/// Read the token to inspect: a bounded read of FILE or stdin, whitespace trimmed.
fn read_token(file: Option<&PathBuf>) -> Result<Vec<u8>, CliError> {
    let limit = MAX_TOKEN_BYTES as u64 + 1024;
    let mut bytes = Vec::new();
    let (what, result) = match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => (
            path.display().to_string(),
            std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes)),
        ),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(CliError::usage(
                    "no token given",
                    "pass a FILE holding the token, or pipe it on stdin",
                ));
            }
            (
                "stdin".to_string(),
                stdin.lock().take(limit).read_to_end(&mut bytes),
            )
        }
    };
    if let Err(e) = result {
        return Err(CliError::io("read", what, e));
    }
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    if start >= end {
        return Err(CliError::usage(
            format!("no token in {what}"),
            "pass a FILE holding the token, or pipe it on stdin",
        ));
    }
    Ok(bytes[start..end].to_vec())
}

/// A JSON value for the terminal: compact, control characters escaped.
fn show(value: &serde_json::Value) -> String {
    sanitize_for_terminal(&value.to_string())
}

fn inspect(global: &GlobalArgs, args: InspectArgs, p: &Printer) -> Result<(), CliError> {
    let token = read_token(args.file.as_ref())?;
    let unverified = inspect_unverified(&token);
    if let Some(header) = &unverified.header {
        p.out(format!("header: {}", show(header)));
    }
    if let Some(serde_json::Value::Object(claims)) = &unverified.claims {
        p.out("claims (as written in the token, before verification):");
        for (name, value) in claims {
            let when = match (name.as_str(), value.as_u64()) {
                ("exp" | "iat" | "nbf", Some(t)) => format!(" ({})", UnixTime(t)),
                _ => String::new(),
            };
            p.out(format!(
                "  {}: {}{when}",
                sanitize_for_terminal(name),
                show(value)
            ));
        }
    }
    if let Some(problem) = unverified.problem {
        p.out(format!("refused: {problem}"));
        return Err(CliError::TokenRefused {
            reason: problem.to_string(),
        });
    }
    let auth = auth_section(global)?;
    let secret = glue::signing_secret(global)?;
    let verifier = Verifier::new(&auth, &secret)?;
    match verifier.verify_at(&token, now_unix()) {
        Ok(claims) => {
            p.out(format!(
                "accepted: {} (tier {}, session {}, expires {})",
                sanitize_for_terminal(&claims.sub),
                claims.tier,
                sanitize_for_terminal(&claims.session_id),
                UnixTime(claims.exp)
            ));
            Ok(())
        }
        Err(rejection) => {
            p.out(format!("refused: {rejection}"));
            Err(CliError::TokenRefused {
                reason: rejection.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn no_flag_takes_a_secret_or_a_token() {
        let cli = crate::cli::Cli::command();
        let token = cli.find_subcommand("token").unwrap();
        for sub in token.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str().to_lowercase();
                for word in ["secret", "key", "password", "token"] {
                    assert!(
                        !id.contains(word),
                        "`token {}` has a flag `{id}`",
                        sub.get_name()
                    );
                }
            }
        }
    }
}
