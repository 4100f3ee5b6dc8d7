//! Broken `servers.d/*.toml` and `lastmile.toml` files: each is refused with a named error, and
//! where the design promises it (everything but an unreadable file) the error says `file:line`
//! and the line is the one at fault. The same parsers are fuzzed in `fuzz/` (`config_server`,
//! `config_profile`); this table keeps the known shapes of breakage in the ordinary test run.

use std::path::Path;

use super::{ProfileConfig, ProfileError, ServerFileError, load_servers_dir};

/// Nesting deep enough to overflow a recursive parser's stack if it had no limit.
const DEEP: usize = 100_000;

/// How a broken file must be refused.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// A TOML or type error on this line.
    Parse(usize),
    /// A value lastmile refuses, on this line.
    Invalid(usize),
    /// Not text at all: refused by name, without a line.
    Unreadable,
}

fn server_cases() -> Vec<(&'static str, Vec<u8>, Want)> {
    let good = "command = \"npx\"\nargs = [\"-y\", \"server\"]\ntiers = [\"user\"]\n";
    let mut deep_array = b"command = \"npx\"\nargs = ".to_vec();
    deep_array.extend(std::iter::repeat_n(b'[', DEEP));
    deep_array.extend(std::iter::repeat_n(b']', DEEP));
    let mut deep_table = b"command = \"npx\"\n\ndescription = ".to_vec();
    deep_table.extend(std::iter::repeat_n(b"{a=".as_slice(), DEEP).flatten());
    deep_table.extend(b"1");
    deep_table.extend(std::iter::repeat_n(b'}', DEEP));
    let mut deep_header = b"command = \"npx\"\n\n[".to_vec();
    deep_header.extend(std::iter::repeat_n(b"a.".as_slice(), DEEP).flatten());
    deep_header.extend(b"b]\nc = \"x.y\"\n");
    let mut deep_dotted = b"command = \"npx\"\n".to_vec();
    deep_dotted.extend(std::iter::repeat_n(b"a.".as_slice(), DEEP).flatten());
    deep_dotted.extend(b"b = 1\n");
    vec![
        (
            "truncated in a string",
            good.as_bytes()[..30].to_vec(),
            Want::Parse(2),
        ),
        (
            "truncated in a table header",
            format!("{good}[tools").into_bytes(),
            Want::Parse(4),
        ),
        (
            "command of the wrong type",
            b"# a server\ncommand = 5\n".to_vec(),
            Want::Parse(2),
        ),
        (
            "tiers as a string",
            format!("{good}tiers = \"admin\"\n")
                .replace("tiers = [\"user\"]\n", "")
                .into_bytes(),
            Want::Parse(3),
        ),
        (
            "an unknown tier",
            good.replace("\"user\"", "\"root\"").into_bytes(),
            Want::Parse(3),
        ),
        (
            "an unknown key",
            format!("{good}comand = \"typo\"\n").into_bytes(),
            Want::Parse(4),
        ),
        (
            "a huge number",
            format!("{good}[restart]\nmax_tries = 99999999999999999999999\n").into_bytes(),
            Want::Parse(5),
        ),
        (
            "a negative count",
            format!("{good}[restart]\nmax_tries = -1\n").into_bytes(),
            Want::Parse(5),
        ),
        (
            "a float count",
            format!("{good}[restart]\nmax_tries = 1e308\n").into_bytes(),
            Want::Parse(5),
        ),
        (
            "an unparsable duration",
            format!("{good}call_timeout = \"forever\"\n").into_bytes(),
            Want::Parse(4),
        ),
        (
            "a huge duration",
            format!("{good}call_timeout = \"99999999999999999999999h\"\n").into_bytes(),
            Want::Parse(4),
        ),
        (
            "a NUL byte in a string",
            b"command = \"np\0x\"\n".to_vec(),
            Want::Parse(1),
        ),
        (
            "a NUL byte between keys",
            b"command = \"npx\"\n\0\n".to_vec(),
            Want::Parse(2),
        ),
        (
            "a duplicate key",
            format!("{good}command = \"uvx\"\n").into_bytes(),
            Want::Parse(4),
        ),
        (
            "a duplicate table",
            format!("{good}[tools]\nallow = [\"a\"]\n[tools]\ndeny = [\"b\"]\n").into_bytes(),
            Want::Parse(6),
        ),
        ("deeply nested arrays", deep_array, Want::Parse(2)),
        ("deeply nested inline tables", deep_table, Want::Parse(3)),
        ("deeply dotted keys", deep_dotted, Want::Parse(2)),
        ("a deeply dotted table name", deep_header, Want::Parse(3)),
        (
            "an empty command",
            b"\n\ncommand = \"  \"\n".to_vec(),
            Want::Invalid(3),
        ),
        (
            "a reserved variable",
            format!("{good}[env]\nLASTMILE_TOKEN = \"x\"\n").into_bytes(),
            Want::Invalid(5),
        ),
        (
            "a bad secret name",
            format!("{good}secrets = [\"lower\"]\n").into_bytes(),
            Want::Invalid(4),
        ),
        (
            "no tiers at all",
            b"command = \"npx\"\ntiers = []\n".to_vec(),
            Want::Invalid(2),
        ),
        (
            "a zero timeout",
            format!("{good}startup_timeout = \"0s\"\n").into_bytes(),
            Want::Invalid(4),
        ),
        (
            "CRLF lines",
            b"command = \"npx\"\r\nargs = []\r\nbogus = 1\r\n".to_vec(),
            Want::Parse(3),
        ),
        (
            "not UTF-8",
            b"command = \"np\xffx\"\n".to_vec(),
            Want::Unreadable,
        ),
    ]
}

fn profile_cases() -> Vec<(&'static str, Vec<u8>, Want)> {
    let mut dotted = b"[auth]\n".to_vec();
    dotted.extend(std::iter::repeat_n(b"a.".as_slice(), DEEP).flatten());
    dotted.extend(b"b = 1\n");
    let mut deep = b"[defaults]\n\n[auth]\nissuer = ".to_vec();
    deep.extend(std::iter::repeat_n(b'[', DEEP));
    deep.extend(std::iter::repeat_n(b']', DEEP));
    vec![
        (
            "truncated",
            b"[auth]\nissuer = \"last".to_vec(),
            Want::Parse(2),
        ),
        (
            "truncated header",
            b"[auth]\nissuer = \"x\"\n[rate_li".to_vec(),
            Want::Parse(3),
        ),
        (
            "wrong type",
            b"[auth]\nmin_secret_length = \"long\"\n".to_vec(),
            Want::Parse(2),
        ),
        (
            "huge number",
            b"[auth]\n\nmin_secret_length = 999999999999999999999999999\n".to_vec(),
            Want::Parse(3),
        ),
        (
            "negative number",
            b"[rate_limit]\nbase = -5\n".to_vec(),
            Want::Parse(2),
        ),
        (
            "unknown section",
            b"[auth]\nissuer = \"x\"\n[tokens]\n".to_vec(),
            Want::Parse(3),
        ),
        (
            "unknown key",
            b"[audit]\nretention = 3\n".to_vec(),
            Want::Parse(2),
        ),
        (
            "NUL byte",
            b"[auth]\nissuer = \"a\0b\"\n".to_vec(),
            Want::Parse(2),
        ),
        (
            "duplicate key",
            b"[auth]\nissuer = \"a\"\nissuer = \"b\"\n".to_vec(),
            Want::Parse(3),
        ),
        (
            "duplicate section",
            b"[auth]\nissuer = \"a\"\n[auth]\naudience = \"b\"\n".to_vec(),
            Want::Parse(3),
        ),
        ("deep nesting", deep, Want::Parse(4)),
        ("deeply dotted keys", dotted, Want::Parse(2)),
        (
            "secret floor lowered",
            b"# comment\n[auth]\nmin_secret_length = 8\n".to_vec(),
            Want::Invalid(3),
        ),
        (
            "burst below one",
            b"[rate_limit]\nburst_multiplier = 0.5\n".to_vec(),
            Want::Invalid(2),
        ),
        (
            "burst not a number",
            b"[rate_limit]\nburst_multiplier = nan\n".to_vec(),
            Want::Invalid(2),
        ),
        (
            "not UTF-8",
            b"[auth]\nissuer = \"\xc3\x28\"\n".to_vec(),
            Want::Unreadable,
        ),
    ]
}

#[test]
fn every_broken_server_file_gets_a_named_error_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    for (what, bytes, want) in server_cases() {
        let servers = dir.path().join("servers.d");
        let _ = std::fs::remove_dir_all(&servers);
        std::fs::create_dir(&servers).unwrap();
        let path = servers.join("broken.toml");
        std::fs::write(&path, &bytes).unwrap();
        let loaded = load_servers_dir(&servers);
        assert!(loaded.servers.is_empty(), "{what}: loaded");
        let [problem] = loaded.problems.as_slice() else {
            panic!("{what}: {:?}", loaded.problems);
        };
        let shown = problem.to_string();
        match (want, &problem.error) {
            (Want::Parse(line), ServerFileError::Parse(_))
            | (Want::Invalid(line), ServerFileError::Invalid(_)) => {
                assert_eq!(problem.line, Some(line), "{what}: {shown}");
                assert!(
                    shown.starts_with(&format!("{}:{line}: ", path.display())),
                    "{what}: {shown}"
                );
            }
            (Want::Unreadable, ServerFileError::Unreadable(_)) => {
                assert_eq!(problem.line, None, "{what}");
                assert!(shown.starts_with(&format!("{}: cannot read", path.display())));
            }
            _ => panic!("{what}: wanted {want:?}, got {shown}"),
        }
        assert!(shown.len() < 2_000, "{what}: the message quotes too much");
    }
}

#[test]
fn every_broken_profile_gets_a_named_error_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lastmile.toml");
    for (what, bytes, want) in profile_cases() {
        std::fs::write(&path, &bytes).unwrap();
        let err = ProfileConfig::load(&path).expect_err(what);
        let shown = err.to_string();
        match (want, &err) {
            (Want::Parse(line) | Want::Invalid(line), ProfileError::Invalid { line: got, .. }) => {
                assert_eq!(*got, line, "{what}: {shown}");
                assert!(
                    shown.starts_with(&format!("{}:{line}: ", path.display())),
                    "{what}: {shown}"
                );
            }
            (Want::Unreadable, ProfileError::Unreadable { .. }) => {
                assert!(shown.starts_with(&format!("{}: cannot read", path.display())));
            }
            _ => panic!("{what}: wanted {want:?}, got {shown}"),
        }
        assert!(shown.len() < 2_000, "{what}: the message quotes too much");
    }
}

/// Every prefix of a good file parses or is refused by name (never a panic), and a refusal
/// names a line inside the text.
#[test]
fn every_truncation_of_a_good_file_is_parsed_or_refused_by_line() {
    let server =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("servers.d/demo.toml"))
            .unwrap();
    for end in (0..=server.len()).filter(|i| server.is_char_boundary(*i)) {
        let text = &server[..end];
        if let Err((line, _)) = super::parse_server_file(text) {
            let lines = text.lines().count().max(1);
            assert!(
                line.is_none_or(|l| (1..=lines + 1).contains(&l)),
                "{end}: {line:?}"
            );
        }
    }
    let profile = "[defaults]\nstartup_timeout = \"30s\"\n[auth]\nissuer = \"lastmile\"\nleeway = \"60s\"\n[rate_limit]\nburst_multiplier = 3.0\n";
    for end in 0..=profile.len() {
        if let Err((line, _)) = ProfileConfig::parse(&profile[..end]) {
            let lines = profile[..end].lines().count().max(1);
            assert!((1..=lines + 1).contains(&line), "{end}: {line}");
        }
    }
}

/// The fuzz targets' seeds are good files, and the targets' round trip (written back as TOML,
/// parsed again) holds on them.
#[test]
fn the_fuzz_seeds_parse_and_round_trip() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let read = |dir: &str| {
        let mut files: Vec<_> = std::fs::read_dir(corpus.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{dir}");
        files
    };
    for path in read("config_server") {
        let text = std::fs::read_to_string(&path).unwrap();
        let def = super::parse_server_file(&text).unwrap_or_else(|e| panic!("{path:?}: {e:?}"));
        let written = toml::to_string(&def).unwrap();
        assert_eq!(super::parse_server_file(&written).unwrap(), def, "{path:?}");
    }
    for path in read("config_profile") {
        let text = std::fs::read_to_string(&path).unwrap();
        let config = ProfileConfig::parse(&text).unwrap_or_else(|e| panic!("{path:?}: {e:?}"));
        let written = toml::to_string(&config).unwrap();
        assert_eq!(ProfileConfig::parse(&written).unwrap(), config, "{path:?}");
    }
}
