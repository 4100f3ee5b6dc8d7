//! `lastmile servers check|list`: inspect the server definitions without starting anything.

use clap::Subcommand;

use super::{GlobalArgs, Printer};
use crate::config::{Profile, load_servers_dir, perms};
use crate::exit_codes;
use crate::secrets::{BackendRequest, child_secrets, open_store};

#[derive(Debug, Subcommand)]
pub(crate) enum ServersCommand {
    /// Check every file in servers.d (and lastmile.toml); print each problem; exit non-zero if any.
    Check,
    /// List the servers that load, with their prefix, tiers and command.
    List,
}

pub(crate) fn run(global: &GlobalArgs, cmd: ServersCommand) -> u8 {
    crate::telemetry::init_cli();
    let p = Printer;
    let profile = match Profile::locate(&global.profile, global.config_dir.clone()) {
        Ok(profile) => profile,
        Err(e) => {
            p.err(format!("error: {e}"));
            return exit_codes::CONFIG_INVALID;
        }
    };
    let dir = profile.servers_dir();
    let loaded = load_servers_dir(&dir);
    match cmd {
        ServersCommand::Check => {
            let mut problems = 0usize;
            if let Err(e) = profile.load_config() {
                p.out(format!("error: {e}"));
                problems += 1;
            }
            for problem in &loaded.problems {
                p.out(format!("error: {problem}"));
                problems += 1;
            }
            for problem in perms::check_config(&profile) {
                p.out(format!("error: {problem}"));
                problems += 1;
            }
            for warning in crate::gateway::prefix_warnings(&loaded.servers) {
                p.out(format!("warning: {warning}"));
            }
            problems += check_secrets(global, &profile, &loaded.servers, &p);
            let ok = loaded.servers.len();
            if problems == 0 {
                p.out(format!("{}: {ok} server(s) OK", dir.display()));
                exit_codes::OK
            } else {
                p.out(format!(
                    "{}: {ok} server(s) OK, {problems} problem(s)",
                    dir.display()
                ));
                exit_codes::CONFIG_INVALID
            }
        }
        ServersCommand::List => {
            for s in &loaded.servers {
                let tiers = match &s.def.tiers {
                    Some(t) => t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","),
                    None => "admin (default)".into(),
                };
                let state = if s.def.disabled { " (disabled)" } else { "" };
                p.out(format!(
                    "{}{state}\tprefix={:?}\ttiers={tiers}\tcommand={}",
                    s.name,
                    s.prefix(),
                    s.def.command
                ));
            }
            for problem in &loaded.problems {
                p.err(format!("error: {problem}"));
            }
            if loaded.problems.is_empty() {
                exit_codes::OK
            } else {
                exit_codes::CONFIG_INVALID
            }
        }
    }
}

/// For `serve`: a config folder someone else could change is refused before anything in it is
/// read. Each problem goes to the log and stderr with the command that fixes it.
pub(crate) fn refuse_unsafe_config(profile: &Profile) -> Option<u8> {
    let problems = perms::check_config(profile);
    for problem in &problems {
        tracing::error!("refusing to serve: {problem}");
    }
    (!problems.is_empty()).then_some(exit_codes::UNSAFE_PERMISSIONS)
}

/// Every secret a server names must be in the store (names only; values are never read out).
fn check_secrets(
    global: &GlobalArgs,
    profile: &Profile,
    servers: &[crate::config::Server],
    p: &Printer,
) -> usize {
    let wanted: Vec<_> = servers
        .iter()
        .filter(|s| !s.def.secrets.is_empty() && !s.def.disabled)
        .collect();
    if wanted.is_empty() {
        return 0;
    }
    let store = global
        .secrets_backend
        .parse::<BackendRequest>()
        .and_then(|request| open_store(request, &profile.keyring_service()));
    let store = match store {
        Ok(opened) => opened.store,
        Err(e) => {
            p.out(format!(
                "error: servers name secrets, but the secret store cannot be opened: {e}"
            ));
            return 1;
        }
    };
    let mut problems = 0;
    for server in wanted {
        match child_secrets(store.as_ref(), &server.def.secrets) {
            Ok(_) => {}
            Err(e) => {
                p.out(format!(
                    "error: {}: server `{}` will not start: {e}",
                    server.path.display(),
                    server.name
                ));
                problems += 1;
            }
        }
    }
    problems
}
