//! `lastmile secrets` against a real keyring: the binary with a temporary HOME and its own
//! profile (so its own keyring service) per test. Values go in on stdin and must never come out
//! on stdout or stderr.
//!
//! The platform's keyring by default (kernel keyutils on Linux, the Credential Manager on
//! Windows); `LASTMILE_TEST_KEYRING=secret-service` (inside
//! `scripts/with-secret-service`) runs them against a real Secret Service.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use lastmile::config::SecretRef;
use lastmile::exit_codes;
use lastmile::secrets::{
    BackendKind, BackendRequest, SecretKey, SecretStore, child_secrets, open_store, random_secret,
};
use secrecy::{ExposeSecret, SecretString};

/// One test's world: a temporary HOME, a unique profile, the backend under test.
struct KeyringEnv {
    home: tempfile::TempDir,
    profile: String,
    backend: BackendKind,
}

impl KeyringEnv {
    /// `None` (with a message) when no real keyring was asked for.
    fn new() -> Option<Self> {
        // The platform's own keyring (kernel keyutils on Linux); CI runs the suite again against
        // a real Secret Service (scripts/with-secret-service).
        let backend = match crate::util::test_backend().parse::<BackendRequest>() {
            Ok(BackendRequest::Force(kind)) => kind,
            _ => panic!("LASTMILE_TEST_KEYRING names no backend (keyutils, secret-service, …)"),
        };
        let suffix = random_secret(9).expect("randomness");
        let suffix: String = suffix
            .expose_secret()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect::<String>()
            .to_ascii_lowercase();
        Some(KeyringEnv {
            home: tempfile::tempdir().expect("temp dir"),
            profile: format!("t-{suffix}"),
            backend,
        })
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("config")
    }

    fn service(&self) -> String {
        format!("lastmile:{}", self.profile)
    }

    /// Run `lastmile --profile P --secrets-backend B secrets ARGS`, feeding `stdin`.
    fn secrets(&self, args: &[&str], stdin: &str) -> Output {
        self.secrets_in(&self.profile, args, stdin)
    }

    fn secrets_in(&self, profile: &str, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lastmile"));
        cmd.arg("--profile")
            .arg(profile)
            .arg("--secrets-backend")
            .arg(self.backend.flag())
            .arg("--config-dir")
            .arg(self.config_dir())
            .arg("secrets")
            .args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("XDG_DATA_HOME", self.home.path().join(".local/share"))
            .env("LASTMILE_DATA_DIR", self.home.path().join("data"))
            .env_remove("LASTMILE_PROFILE")
            .env_remove("LASTMILE_CONFIG_DIR")
            .env_remove("LASTMILE_SECRETS_BACKEND")
            .env_remove("LASTMILE_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn lastmile");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait for lastmile")
    }

    /// The same store, opened in this process.
    fn store(&self) -> std::sync::Arc<dyn SecretStore> {
        open_store(BackendRequest::Force(self.backend), &self.service())
            .expect("open the store in-process")
            .store
    }
}

impl Drop for KeyringEnv {
    fn drop(&mut self) {
        // Keyutils entries outlive the test (until reboot): remove what this profile stored.
        if let Ok(opened) = open_store(BackendRequest::Force(self.backend), &self.service()) {
            for key in opened.store.list().unwrap_or_default() {
                let _ = opened.store.delete(&key);
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fail if `needle` is anywhere in the output.
fn assert_absent(out: &Output, needle: &str) {
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert!(!o.contains(needle), "value on stdout: {o}");
    assert!(!e.contains(needle), "value on stderr: {e}");
}

fn canary() -> String {
    format!(
        "canary-{}",
        random_secret(24).expect("randomness").expose_secret()
    )
}

#[test]
fn set_list_rm_round_trip() {
    let Some(env) = KeyringEnv::new() else { return };
    let value = canary();
    let out = env.secrets(&["set", "MY_CANARY"], &format!("{value}\n"));
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    assert_absent(&out, &value);

    let out = env.secrets(&["list"], "");
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    assert!(
        text(&out.stdout).contains("MY_CANARY\tcustom\tused by no server"),
        "{out:?}"
    );
    assert_absent(&out, &value);

    // The value went in whole, without the trailing newline.
    let stored = env
        .store()
        .get(&SecretKey::from_entry_name("MY_CANARY").unwrap())
        .expect("get")
        .expect("stored");
    assert_eq!(stored.expose_secret(), value);

    let out = env.secrets(&["rm", "MY_CANARY"], "");
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    assert_absent(&out, &value);
    let out = env.secrets(&["list"], "");
    assert!(!text(&out.stdout).contains("MY_CANARY"), "{out:?}");
    let out = env.secrets(&["rm", "MY_CANARY"], "");
    assert_eq!(
        out.status.code(),
        Some(exit_codes::SECRETS_UNAVAILABLE as i32),
        "{out:?}"
    );
}

#[test]
fn replacing_a_value_reaches_the_next_delivery() {
    let Some(env) = KeyringEnv::new() else { return };
    let (first, second) = (canary(), canary());
    for v in [&first, &second] {
        let out = env.secrets(&["set", "GITHUB_TOKEN"], v);
        assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
        assert_absent(&out, v);
    }
    let refs = [SecretRef::Renamed {
        env: "GH_TOKEN".into(),
        from: "GITHUB_TOKEN".into(),
    }];
    let child = child_secrets(env.store().as_ref(), &refs).expect("deliver");
    assert_eq!(child.env.len(), 1);
    assert_eq!(child.env[0].0, "GH_TOKEN");
    assert_eq!(child.env[0].1.expose_secret(), second);
    assert_eq!(child.custom_allowlist, "");
}

#[test]
fn list_shows_kinds_and_servers() {
    let Some(env) = KeyringEnv::new() else { return };
    let servers = env.config_dir().join("servers.d");
    std::fs::create_dir_all(&servers).unwrap();
    std::fs::write(
        servers.join("demo.toml"),
        "command = \"true\"\nsecrets = [\"GITHUB_TOKEN\", { env = \"X\", from = \"MY_TOKEN\" }]\n",
    )
    .unwrap();
    let value = canary();
    let out = env.secrets(&["set", "GITHUB_TOKEN"], &value);
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    let out = env.secrets(&["list"], "");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("GITHUB_TOKEN\tprovider\tused by: demo"),
        "{stdout}"
    );
    assert!(
        stdout.contains("MY_TOKEN\tcustom, MISSING\tneeded by: demo"),
        "{stdout}"
    );
    assert_absent(&out, &value);
}

#[test]
fn status_names_backend_and_service() {
    let Some(env) = KeyringEnv::new() else { return };
    let out = env.secrets(&["status"], "");
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("service: {}", env.service())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("({})", env.backend.flag())),
        "{stdout}"
    );
    assert!(stdout.contains("why: "), "{stdout}");
}

#[test]
fn profiles_do_not_see_each_other() {
    let Some(env) = KeyringEnv::new() else { return };
    let Some(other) = KeyringEnv::new() else {
        return;
    };
    let value = canary();
    let out = env.secrets(&["set", "ISOLATED_KEY"], &value);
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    let out = env.secrets_in(&other.profile, &["list"], "");
    assert!(!text(&out.stdout).contains("ISOLATED_KEY"), "{out:?}");
    assert!(
        other
            .store()
            .get(&SecretKey::from_entry_name("ISOLATED_KEY").unwrap())
            .unwrap()
            .is_none()
    );
}

#[test]
fn bad_input_is_refused_by_name() {
    let Some(env) = KeyringEnv::new() else { return };
    // Empty value.
    let out = env.secrets(&["set", "MY_KEY"], "\n");
    assert_eq!(out.status.code(), Some(exit_codes::USAGE as i32), "{out:?}");
    assert!(text(&out.stderr).contains("empty value"), "{out:?}");
    // Too short to redact.
    let out = env.secrets(&["set", "MY_KEY"], "abc");
    assert_eq!(out.status.code(), Some(exit_codes::USAGE as i32), "{out:?}");
    assert_absent(&out, "abc\n");
    // A value pasted where the name goes is not echoed back.
    let pasted = canary();
    let out = env.secrets(&["set", &pasted], "");
    assert_eq!(out.status.code(), Some(exit_codes::USAGE as i32), "{out:?}");
    assert_absent(&out, &pasted);
    assert!(text(&out.stderr).contains("hint:"), "{out:?}");
    // Nothing was stored by any of them.
    assert!(env.store().list().unwrap().is_empty());
}

/// The Credential Manager holds at most 2,560 bytes an entry: one byte more is refused by name
/// (and not echoed), the limit itself round-trips through the real store.
#[cfg(windows)]
#[test]
fn the_credential_manager_limit_is_refused_by_name() {
    let Some(env) = KeyringEnv::new() else { return };
    let too_big = format!("big-{}", "x".repeat(2557));
    let out = env.secrets(&["set", "BIG_KEY"], &too_big);
    assert_eq!(out.status.code(), Some(exit_codes::USAGE as i32), "{out:?}");
    assert!(text(&out.stderr).contains("2561 bytes"), "{out:?}");
    assert!(text(&out.stderr).contains("(2560 bytes)"), "{out:?}");
    assert_absent(&out, &too_big);
    let fits = format!("fit-{}", "y".repeat(2556));
    let out = env.secrets(&["set", "BIG_KEY"], &fits);
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    let key = SecretKey::from_entry_name("BIG_KEY").unwrap();
    let stored = env.store().get(&key).unwrap().expect("stored");
    assert_eq!(stored.expose_secret(), fits);
}

#[test]
fn generate_signing_key_never_prints_it() {
    let Some(env) = KeyringEnv::new() else { return };
    let out = env.secrets(&["generate-signing-key"], "");
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    let key = SecretKey::from_entry_name("signing-secret").unwrap();
    let stored: SecretString = env.store().get(&key).unwrap().expect("stored");
    assert_eq!(stored.expose_secret().len(), 86);
    assert_absent(&out, stored.expose_secret());

    let out = env.secrets(&["generate-signing-key"], "");
    assert_eq!(
        out.status.code(),
        Some(exit_codes::CONFLICT as i32),
        "{out:?}"
    );
    assert!(text(&out.stderr).contains("--force"), "{out:?}");

    let out = env.secrets(&["generate-signing-key", "--force"], "");
    assert_eq!(out.status.code(), Some(exit_codes::OK as i32), "{out:?}");
    let replaced = env.store().get(&key).unwrap().expect("stored");
    assert_ne!(replaced.expose_secret(), stored.expose_secret());
    assert_absent(&out, replaced.expose_secret());

    let out = env.secrets(&["list"], "");
    assert!(
        text(&out.stdout).contains("signing-secret\tinternal\tused by lastmile"),
        "{out:?}"
    );
}
