//! `lastmile doctor`: check the whole setup and say what to fix — keyring backend and whether it
//! answers, signing secret strength, the saved token's validity and expiry, every server file
//! (command found, secrets present, tiers set, permissions), the audit database (writable, chain
//! intact) and the log folder. Exits non-zero when anything is wrong. Reads only; creates nothing.

use std::path::Path;

use secrecy::ExposeSecret;

use super::error::CliError;
use super::files::mode_of;
use super::output::sanitize_for_terminal;
use super::{GlobalArgs, Printer};
use crate::audit::{AuditKey, AuditReader, db_path};
use crate::config::{AuthMode, Profile, load_servers_dir};
use crate::identity::{UnixTime, Verifier, check_signing_secret, now_unix};
use crate::secrets::{BackendRequest, Internal, SecretKey, child_secrets, open_store};

/// Collects findings and prints them as they come.
struct Report<'a> {
    p: &'a Printer,
    problems: usize,
    warnings: usize,
}

impl Report<'_> {
    fn ok(&self, what: &str, detail: impl std::fmt::Display) {
        self.p.out(format!("ok    {what}: {detail}"));
    }
    fn warn(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.warnings += 1;
        self.p.out(format!("warn  {what}: {detail}"));
    }
    fn fail(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.problems += 1;
        self.p.out(format!("FAIL  {what}: {detail}"));
    }
}

/// Group or other permissions on a private path, described.
fn loose_mode(path: &Path) -> Option<String> {
    let mode = mode_of(path)?;
    (mode & 0o077 != 0).then(|| format!("mode {mode:o} lets other users in (lastmile uses 0700 for folders, 0600 for files)\n      hint: chmod go-rwx {}", path.display()))
}

pub(crate) fn run(global: &GlobalArgs) -> Result<(), CliError> {
    crate::telemetry::init_cli();
    let p = Printer;
    let mut r = Report {
        p: &p,
        problems: 0,
        warnings: 0,
    };
    let profile = Profile::locate(&global.profile, global.config_dir.clone())?;
    p.out(format!("profile `{}`", profile.name));

    // Folders and lastmile.toml.
    let config = match profile.load_config() {
        Ok(c) => {
            r.ok("config", profile.config_file().display());
            Some(c)
        }
        Err(e) => {
            r.fail("config", e);
            None
        }
    };
    for dir in [profile.config_dir.clone(), profile.servers_dir()] {
        if !dir.is_dir() {
            r.fail(
                "folder",
                format!(
                    "{} does not exist\n      hint: run `lastmile init`",
                    dir.display()
                ),
            );
        } else if let Some(loose) = loose_mode(&dir) {
            r.warn("folder", format!("{}: {loose}", dir.display()));
        }
    }

    // Keyring.
    let opened = global
        .secrets_backend
        .parse::<BackendRequest>()
        .and_then(|req| open_store(req, &profile.keyring_service()))
        .and_then(|o| o.store.list().map(|_| o));
    let store = match opened {
        Ok(o) => {
            r.ok(
                "keyring",
                format!(
                    "{} backend answers (service `{}`; {})",
                    o.choice.kind,
                    o.store.service(),
                    sanitize_for_terminal(&o.choice.reason)
                ),
            );
            Some(o.store)
        }
        Err(e) => {
            r.fail("keyring", e);
            None
        }
    };

    // Signing secret and saved token.
    let mode = config.as_ref().map(|c| c.auth.mode).unwrap_or_default();
    if let (Some(store), Some(config)) = (&store, &config) {
        match store.get(&SecretKey::Internal(Internal::SigningSecret)) {
            Ok(Some(secret)) => {
                match check_signing_secret(
                    secret.expose_secret().as_bytes(),
                    config.auth.min_secret_length,
                ) {
                    Ok(()) => r.ok(
                        "signing secret",
                        format!("{} bytes, not a pattern", secret.expose_secret().len()),
                    ),
                    Err(e) => r.fail("signing secret", e),
                }
                match (store.get(&SecretKey::Internal(Internal::SessionToken)), Verifier::new(&config.auth, &secret)) {
                    (Ok(Some(token)), Ok(verifier)) => {
                        let now = now_unix();
                        match verifier.verify_at(token.expose_secret().as_bytes(), now) {
                            Ok(c) if c.exp <= now + super::init::RENEW_WITHIN.as_secs() => r.warn(
                                "saved token",
                                format!("valid, tier {}, but expires soon ({})\n      hint: run `lastmile init` to renew it", c.tier, UnixTime(c.exp)),
                            ),
                            Ok(c) => r.ok("saved token", format!("valid, tier {}, subject `{}`, expires {}", c.tier, sanitize_for_terminal(&c.sub), UnixTime(c.exp))),
                            Err(rej) => r.fail("saved token", format!("refused: {rej}\n      hint: run `lastmile init` to issue a fresh one")),
                        }
                    }
                    (Ok(None), _) if mode == AuthMode::Required => r.warn(
                        "saved token",
                        "none saved; a client must pass --token-file or LASTMILE_TOKEN\n      hint: run `lastmile init`",
                    ),
                    (Ok(None), _) => r.ok("saved token", format!("none saved (auth.mode = {mode:?})")),
                    (Err(e), _) => r.fail("saved token", e),
                    (_, Err(e)) => r.fail("saved token", e),
                }
            }
            Ok(None) if mode == AuthMode::Disabled => r.warn(
                "signing secret",
                "none (auth.mode = \"disabled\": for tests only)",
            ),
            Ok(None) => r.fail(
                "signing secret",
                "missing; `lastmile serve` refuses to start\n      hint: run `lastmile init`",
            ),
            Err(e) => r.fail("signing secret", e),
        }
    }
    if mode == AuthMode::Disabled {
        r.warn(
            "auth",
            "auth.mode = \"disabled\": every session is the fixed test identity",
        );
    }

    // Server files.
    let loaded = load_servers_dir(&profile.servers_dir());
    for problem in &loaded.problems {
        r.fail("server file", problem);
    }
    let path_var = std::env::var_os("PATH");
    for s in &loaded.servers {
        let what = format!("server {}", s.name);
        if s.def.disabled {
            r.ok(&what, "disabled");
            continue;
        }
        let mut bad = Vec::new();
        let mut notes = Vec::new();
        if let Err(e) =
            crate::downstream::resolve_program(&s.def.command, s.base_dir(), path_var.as_deref())
        {
            bad.push(e.to_string());
        }
        if !s.def.secrets.is_empty() {
            match &store {
                Some(store) => {
                    if let Err(e) = child_secrets(store.as_ref(), &s.def.secrets) {
                        bad.push(e.to_string());
                    }
                }
                None => bad.push("names secrets, but the keyring cannot be opened".into()),
            }
        }
        if s.def.tiers.is_none() {
            notes.push("no `tiers`: admin sessions only".to_string());
        }
        if let Some(loose) = loose_mode(&s.path) {
            notes.push(loose);
        }
        if !bad.is_empty() {
            r.fail(&what, sanitize_for_terminal(&bad.join("; ")));
        } else if !notes.is_empty() {
            r.warn(&what, notes.join("; "));
        } else {
            r.ok(&what, "command found, secrets present, tiers set");
        }
    }
    if loaded.servers.is_empty() && loaded.problems.is_empty() {
        r.warn(
            "servers",
            "none in servers.d\n      hint: `lastmile import` or `lastmile servers add`",
        );
    }

    // Audit database.
    let db = db_path(&profile.data_dir);
    if !db.exists() {
        if profile.data_dir.exists() && !writable(&profile.data_dir) {
            r.fail(
                "audit",
                format!("{} is not writable", profile.data_dir.display()),
            );
        } else {
            r.ok(
                "audit",
                format!(
                    "{} not created yet (the first `lastmile serve` creates it)",
                    db.display()
                ),
            );
        }
    } else {
        let key = store.as_ref().and_then(|s| {
            s.get(&SecretKey::Internal(Internal::AuditKey))
                .ok()
                .flatten()
        });
        match (AuditReader::open(&db), key) {
            (Err(e), _) => r.fail("audit", e),
            (Ok(_), None) => r.fail("audit", "the audit key is not in the keyring, so the chain cannot be checked"),
            (Ok(reader), Some(key)) => match AuditKey::from_secret(&key).and_then(|k| reader.verify(&k)) {
                Ok(report) if report.broken.is_none() => {
                    if writable(&profile.data_dir) {
                        r.ok("audit", format!("{}: chain intact, {} row(s)", db.display(), report.rows));
                    } else {
                        r.fail("audit", format!("{} is not writable", profile.data_dir.display()));
                    }
                }
                Ok(report) => r.fail(
                    "audit",
                    format!("chain broken: {}\n      hint: keep the database as evidence; see `lastmile audit verify`", report.broken.map(|b| b.to_string()).unwrap_or_default()),
                ),
                Err(e) => r.fail("audit", e),
            },
        }
    }

    // Logs.
    let logs = profile.log_dir();
    if logs.is_dir() {
        if writable(&logs) {
            r.ok("logs", logs.display());
        } else {
            r.fail("logs", format!("{} is not writable", logs.display()));
        }
    } else {
        r.ok(
            "logs",
            format!("{} (created by the first `lastmile serve`)", logs.display()),
        );
    }

    p.out(format!(
        "{} problem(s), {} warning(s)",
        r.problems, r.warnings
    ));
    if r.problems > 0 {
        return Err(CliError::CheckFailed { count: r.problems });
    }
    Ok(())
}

/// Whether a file can be created in `dir` (tried, then removed).
fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".lastmile-doctor-{}", std::process::id()));
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}
