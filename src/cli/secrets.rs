//! `lastmile secrets`: manage the profile's secrets in the OS keyring. Values come from a hidden
//! prompt or stdin, never from the command line, and are never printed.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};

use clap::Subcommand;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::error::CliError;
use super::glue::open_profile_store;
use super::output::sanitize_for_terminal;
use super::{GlobalArgs, Printer};
use crate::config::{Profile, load_servers_dir};
use crate::secrets::{
    Internal, OpenedStore, SIGNING_SECRET_BYTES, SecretKey, SecretKind, SecretName, random_secret,
};

/// The longest value `secrets set` accepts (keyutils caps a key at 32 KiB, Windows at 2.5 KiB).
const MAX_VALUE_LEN: usize = 16 * 1024;

#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCommand {
    /// Store a secret. The value is read from a hidden prompt on a terminal, or from stdin
    /// (one trailing newline is dropped); never from the command line.
    #[command(
        after_help = "Examples:\n  lastmile secrets set GITHUB_TOKEN\n  printf %s \"$KEY\" | lastmile secrets set MY_API_KEY"
    )]
    Set {
        /// The secret's name: ^[A-Z][A-Z0-9_]{0,63}$, e.g. GITHUB_TOKEN or MY_API_KEY.
        name: String,
    },
    /// List the stored secrets' names and kinds and the servers that use each; never values.
    #[command(after_help = "Examples:\n  lastmile secrets list")]
    List,
    /// Remove a secret (a name from `secrets list`).
    #[command(after_help = "Examples:\n  lastmile secrets rm OLD_API_KEY")]
    Rm {
        /// The secret's name.
        name: String,
    },
    /// Store a fresh 64-byte random session-token signing secret.
    #[command(
        after_help = "Examples:\n  lastmile secrets generate-signing-key\n  lastmile secrets generate-signing-key --force"
    )]
    GenerateSigningKey {
        /// Replace an existing signing secret (every token signed with it stops verifying).
        #[arg(long)]
        force: bool,
    },
    /// Store the key a fronting SSO proxy signs identity headers with (`serve --http`): at
    /// least 32 random bytes, read like `set`. With --rotate the current key becomes the
    /// previous one and stays accepted until `lastmile secrets rm proxy-identity-key-previous`.
    #[command(
        after_help = "Examples:\n  openssl rand -base64 48 | tee proxy.key | lastmile secrets set-proxy-key\n  lastmile secrets set-proxy-key --rotate < new-proxy.key"
    )]
    SetProxyKey {
        /// Keep the current key as the previous one (accepted during the rotation).
        #[arg(long)]
        rotate: bool,
    },
    /// Show which backend is active and why, and the profile's keyring service.
    #[command(
        after_help = "Examples:\n  lastmile secrets status\n  lastmile --secrets-backend keyutils secrets status"
    )]
    Status,
}

pub(crate) fn run(global: &GlobalArgs, cmd: SecretsCommand) -> Result<(), CliError> {
    crate::telemetry::init_cli();
    let p = Printer;
    if let SecretsCommand::Status = cmd {
        return status(&p, global);
    }
    let (profile, opened) = open_profile_store(global)?;
    match cmd {
        SecretsCommand::Set { name } => set(&p, &opened, &name),
        SecretsCommand::List => list(&p, &profile, &opened),
        SecretsCommand::Rm { name } => rm(&p, &opened, &name),
        SecretsCommand::GenerateSigningKey { force } => generate_signing_key(&p, &opened, force),
        SecretsCommand::SetProxyKey { rotate } => set_proxy_key(&p, &opened, rotate),
        SecretsCommand::Status => status(&p, global),
    }
}

fn set(p: &Printer, opened: &OpenedStore, name: &str) -> Result<(), CliError> {
    let name = SecretName::parse(name)?;
    let value = read_value(&name)?;
    opened.store.set(&SecretKey::Named(name.clone()), &value)?;
    p.out(format!(
        "stored `{name}` ({}) in the {} keyring, service `{}`",
        name.kind().as_str(),
        opened.choice.kind,
        opened.store.service()
    ));
    Ok(())
}

fn set_proxy_key(p: &Printer, opened: &OpenedStore, rotate: bool) -> Result<(), CliError> {
    let current = SecretKey::Internal(Internal::ProxyIdentityKey);
    let previous = SecretKey::Internal(Internal::ProxyIdentityKeyPrevious);
    let value = read_value(&current)?;
    // The same check `serve --http` makes: a weak key is refused here, not at the next start.
    crate::edge::ProxyKeys::new(&value, None).map_err(|e| {
        CliError::usage(
            format!("the proxy key is not usable: {e}"),
            "use at least 32 random bytes, e.g. `openssl rand -base64 48`",
        )
    })?;
    let old = opened.store.get(&current)?;
    match (&old, rotate) {
        (Some(old), true) => opened.store.set(&previous, old)?,
        (Some(_), false) => {
            return Err(CliError::conflict(
                format!(
                    "the profile already has a proxy key (service `{}`)",
                    opened.store.service()
                ),
                "pass --rotate to keep it as the previous key during the switch",
            ));
        }
        (None, _) => {}
    }
    opened.store.set(&current, &value)?;
    p.out(format!(
        "stored `{current}`{} in the {} keyring, service `{}`",
        if old.is_some() && rotate {
            "; the old key is `proxy-identity-key-previous` until you remove it"
        } else {
            ""
        },
        opened.choice.kind,
        opened.store.service()
    ));
    Ok(())
}

/// The value: a hidden prompt on a terminal, else all of stdin minus one trailing newline.
fn read_value(name: &dyn std::fmt::Display) -> Result<SecretString, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let typed = Zeroizing::new(
            rpassword::prompt_password(format!("value for {name} (input hidden): "))
                .map_err(read_error)?,
        );
        return Ok(SecretString::from(typed.as_str()));
    }
    // Capacity fixed up front so the buffer never reallocates (each copy is zeroed on drop).
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_VALUE_LEN + 2));
    stdin
        .lock()
        .take(MAX_VALUE_LEN as u64 + 2)
        .read_to_end(&mut buf)
        .map_err(read_error)?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() > MAX_VALUE_LEN {
        return Err(CliError::usage(
            format!("the value is longer than {MAX_VALUE_LEN} bytes"),
            "keyrings hold short secrets; store a path or a key instead",
        ));
    }
    let text = std::str::from_utf8(&buf).map_err(|_| {
        CliError::usage(
            "the value is not UTF-8 text",
            "secrets are text; encode binary values (e.g. base64) first",
        )
    })?;
    Ok(SecretString::from(text))
}

fn list(p: &Printer, profile: &Profile, opened: &OpenedStore) -> Result<(), CliError> {
    let keys = opened.store.list()?;
    // Which servers name each secret.
    let mut used_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for server in load_servers_dir(&profile.servers_dir()).servers {
        for r in &server.def.secrets {
            let users = used_by.entry(r.secret_name().to_string()).or_default();
            let label = if server.def.disabled {
                format!("{} (disabled)", server.name)
            } else {
                server.name.clone()
            };
            if !users.contains(&label) {
                users.push(label);
            }
        }
    }
    if keys.is_empty() {
        p.err(format!(
            "no secrets stored for profile `{}` (service `{}`)",
            profile.name,
            opened.store.service()
        ));
    }
    for key in &keys {
        let users = used_by.remove(key.entry_name());
        let used = match (key.kind(), users) {
            (SecretKind::Internal, _) => "used by lastmile".to_string(),
            (_, Some(users)) => format!("used by: {}", users.join(", ")),
            (_, None) => "used by no server".to_string(),
        };
        p.out(format!(
            "{}\t{}\t{used}",
            key.entry_name(),
            key.kind().as_str()
        ));
    }
    // Secrets that server files name but the store lacks.
    for (name, users) in used_by {
        let kind = SecretName::parse(&name)
            .map(|n| n.kind().as_str())
            .unwrap_or("invalid");
        p.out(format!(
            "{name}\t{kind}, MISSING\tneeded by: {}",
            users.join(", ")
        ));
    }
    Ok(())
}

fn rm(p: &Printer, opened: &OpenedStore, name: &str) -> Result<(), CliError> {
    let key = SecretKey::from_entry_name(name)?;
    if !opened.store.delete(&key)? {
        return Err(CliError::SecretNotStored {
            name: key.entry_name().to_string(),
            service: opened.store.service().to_string(),
        });
    }
    p.out(format!(
        "removed `{key}` from the {} keyring, service `{}`",
        opened.choice.kind,
        opened.store.service()
    ));
    Ok(())
}

fn generate_signing_key(p: &Printer, opened: &OpenedStore, force: bool) -> Result<(), CliError> {
    let key = SecretKey::Internal(Internal::SigningSecret);
    let existed = opened.store.get(&key)?.is_some();
    if existed && !force {
        return Err(CliError::conflict(
            format!(
                "the profile already has a signing secret (service `{}`)",
                opened.store.service()
            ),
            "pass --force to replace it; every token signed with the old one stops verifying",
        ));
    }
    let secret = random_secret(SIGNING_SECRET_BYTES)?;
    opened.store.set(&key, &secret)?;
    p.out(format!(
        "{} the signing secret ({SIGNING_SECRET_BYTES} random bytes, base64url) as `{key}` in the {} keyring, service `{}`",
        if existed { "replaced" } else { "stored" },
        opened.choice.kind,
        opened.store.service()
    ));
    if existed {
        p.err(
            "warning: tokens signed with the old signing secret no longer verify; issue new ones",
        );
    }
    Ok(())
}

fn status(p: &Printer, global: &GlobalArgs) -> Result<(), CliError> {
    let (profile, opened) = open_profile_store(global)?;
    p.out(format!("profile: {}", profile.name));
    p.out(format!("service: {}", opened.store.service()));
    p.out(format!(
        "backend: {} ({})",
        opened.choice.kind,
        opened.choice.kind.flag()
    ));
    p.out(format!(
        "why: {}",
        sanitize_for_terminal(&opened.choice.reason)
    ));
    // Reading the index proves the keyring answers and is unlocked.
    let keys = opened.store.list()?;
    p.out(format!("entries: {}", keys.len()));
    Ok(())
}

/// stdin could not be read.
fn read_error(e: std::io::Error) -> CliError {
    CliError::io("read the value from", "stdin", e)
}
