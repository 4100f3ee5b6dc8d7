//! `lastmile token issue|inspect` through the real binary, on the paths that need no secret store:
//! a clear error when no signing secret can be had, and bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lastmile::exit_codes;

fn vector(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/jwt")
        .join(format!("{name}.jwt"))
}

/// Run `lastmile <args>` with a temporary HOME and config folder, feeding `stdin`.
fn lastmile(args: &[&str], stdin: &[u8]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .arg("--config-dir")
        .arg(&config)
        .args(["--secrets-backend", "memory"])
        .args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("LASTMILE_DATA_DIR", home.path().join("data"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The binary may exit before reading everything; a broken pipe is fine.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn issue_without_a_signing_secret_fails_cleanly() {
    for extra in [&[][..], &["--save"][..]] {
        let mut args = vec!["token", "issue", "--sub", "alice", "--tier", "user"];
        args.extend_from_slice(extra);
        let out = lastmile(&args, b"");
        // A missing signing secret has one code everywhere (serve says the same).
        assert_eq!(
            out.status.code(),
            Some(exit_codes::WEAK_SIGNING_SECRET.into()),
            "{}",
            text(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "nothing on stdout: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(
            err.contains("error: the profile has no session-token signing secret"),
            "{err}"
        );
        assert!(err.contains("hint:"), "{err}");
    }
}

#[test]
fn issue_refuses_bad_flags() {
    for args in [
        &["token", "issue", "--sub", "a", "--tier", "superuser"][..],
        &[
            "token",
            "issue",
            "--sub",
            "a",
            "--tier",
            "user",
            "--ttl",
            "5 parsecs",
        ][..],
        &["token", "issue", "--tier", "user"][..],
        // No flag takes a secret on the command line.
        &[
            "token", "issue", "--sub", "a", "--tier", "user", "--secret", "x",
        ][..],
        &["token", "inspect", "--token", "x"][..],
    ] {
        let out = lastmile(args, b"");
        assert_eq!(
            out.status.code(),
            Some(exit_codes::USAGE.into()),
            "{args:?}"
        );
    }
}

#[test]
fn inspect_refuses_empty_stdin() {
    let out = lastmile(&["token", "inspect"], b"  \n");
    assert_eq!(out.status.code(), Some(exit_codes::USAGE.into()));
    assert!(text(&out.stderr).contains("error: no token in stdin"));
}

#[test]
fn inspect_reports_a_missing_file() {
    let out = lastmile(&["token", "inspect", "/nonexistent/token.jwt"], b"");
    assert_eq!(out.status.code(), Some(exit_codes::FAILURE.into()));
    assert!(text(&out.stderr).contains("error: cannot read /nonexistent/token.jwt"));
}

#[test]
fn inspect_names_structural_problems_without_a_secret() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"hello",
            "refused: token is malformed: 1 dot-separated part(s) where a JWT has 3",
        ),
        (
            b"a.b.c.d",
            "refused: token is malformed: 4 dot-separated part(s)",
        ),
        (&[b'A'; 20_000], "refused: token is "),
        (b"eyJhbGciOiJub25lIn0.e30.", "refused: algorithm `none`"),
    ];
    for (input, expected) in cases {
        let out = lastmile(&["token", "inspect", "-"], input);
        assert_eq!(
            out.status.code(),
            Some(exit_codes::AUTH_REFUSED.into()),
            "{}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains(expected),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn inspect_shows_the_claims_of_an_unsigned_token_and_refuses_it() {
    let out = lastmile(
        &["token", "inspect", vector("alg-none").to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(exit_codes::AUTH_REFUSED.into()));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("  sub: \"alice\""), "{stdout}");
    assert!(
        stdout.contains("  exp: 1800028800 (2027-01-15T16:00:00Z)"),
        "{stdout}"
    );
    assert!(stdout.contains("refused: algorithm `none`"), "{stdout}");
}

#[test]
fn inspect_of_a_sound_token_needs_the_signing_secret() {
    let token = std::fs::read(vector("valid")).unwrap();
    let out = lastmile(&["token", "inspect"], &token);
    assert_eq!(
        out.status.code(),
        Some(exit_codes::WEAK_SIGNING_SECRET.into())
    );
    assert!(text(&out.stdout).contains("  tier: \"user\""));
    assert!(!text(&out.stdout).contains("accepted"));
    assert!(text(&out.stderr).contains("has no session-token signing secret"));
}

#[test]
fn inspect_never_lets_a_token_drive_the_terminal() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let token = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","x":"\u001b]0;pwned\u0007"}"#),
        b64(r#"{"sub":"\u001b[2J","tier":"admin"}"#)
    );
    let out = lastmile(&["token", "inspect"], token.as_bytes());
    assert_eq!(out.status.code(), Some(exit_codes::AUTH_REFUSED.into()));
    assert!(!out.stdout.contains(&0x1b), "{:?}", text(&out.stdout));
    assert!(!out.stdout.contains(&0x07));
}

#[test]
fn inspect_reports_a_broken_profile() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("lastmile.toml"),
        "[auth]\nmin_secret_length = 8\n",
    )
    .unwrap();
    let token = std::fs::read(vector("valid")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .arg("--config-dir")
        .arg(home.path())
        .args(["token", "inspect"])
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&token).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(exit_codes::CONFIG_INVALID.into()));
    assert!(text(&out.stderr).contains("min_secret_length"));
}
