//! `lastmile servers check` and the schema of server files.

use crate::util::*;

#[tokio::test]
async fn check_reports_every_problem_with_path_and_line() {
    let w = World::new();
    w.fixture("good", &[], "");
    w.server_file("typo", "command = \"x\"\ncolour = \"red\"\n");
    w.server_file("badsecret", "command = \"x\"\nsecrets = [\"lower_case\"]\n");
    let out = w.run(&["servers", "check"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(lastmile::exit_codes::CONFIG_INVALID as i32),
        "{stdout}"
    );
    assert!(
        stdout.contains("typo.toml:2") && stdout.contains("colour"),
        "{stdout}"
    );
    assert!(stdout.contains("badsecret.toml:2"), "{stdout}");
    assert!(stdout.contains("1 server(s) OK, 2 problem(s)"), "{stdout}");
}

#[tokio::test]
async fn check_passes_on_good_files_and_warns_on_shared_prefixes() {
    let w = World::new();
    w.fixture("one", &[], "prefix = \"\"")
        .fixture("two", &[], "prefix = \"\"");
    let out = w.run(&["servers", "check"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("warning: servers one, two share the prefix \"\""),
        "{stdout}"
    );
}

#[test]
fn repo_server_files_match_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/server.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("valid JSON Schema");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/servers.d");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = toml::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        lastmile::config::parse_server_file(&text)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        seen += 1;
    }
    assert!(seen > 0, "no server files in the repo's servers.d");
    // The schema rejects what the loader rejects.
    for bad in [
        json_of("command = \"x\"\ncolour = 1"),
        json_of("args = []"),
        json_of("command = \"x\"\nsecrets = [\"lower\"]"),
    ] {
        assert!(!validator.is_valid(&bad), "{bad}");
    }
}

fn json_of(toml_text: &str) -> serde_json::Value {
    toml::from_str(toml_text).unwrap()
}

/// The committed schemas are exactly what the Rust types generate: they cannot drift apart.
/// Regenerate with `LASTMILE_UPDATE_SCHEMAS=1 cargo test schemas_match`.
#[test]
fn schemas_match_the_rust_types() {
    for (file, generated) in [
        (
            "server.schema.json",
            schemars::schema_for!(lastmile::config::ServerDef),
        ),
        (
            "profile.schema.json",
            schemars::schema_for!(lastmile::config::ProfileConfig),
        ),
    ] {
        let path = format!("{}/schemas/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        if std::env::var_os("LASTMILE_UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            committed, text,
            "{file} is out of date: run LASTMILE_UPDATE_SCHEMAS=1 cargo test schemas_match"
        );
    }
}

#[tokio::test]
async fn check_reports_missing_secrets_by_name() {
    let w = World::new();
    w.fixture("needy", &[], "secrets = [\"NEEDED_KEY\", \"OTHER_KEY\"]");
    w.set_secret("OTHER_KEY", "present-value-1234").await;
    let out = w.run(&["servers", "check"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(lastmile::exit_codes::CONFIG_INVALID as i32),
        "{stdout}"
    );
    assert!(
        stdout.contains("NEEDED_KEY") && stdout.contains("needy"),
        "{stdout}"
    );
    assert!(!stdout.contains("present-value-1234"), "{stdout}");
    w.set_secret("NEEDED_KEY", "now-it-is-here-5678").await;
    let out = w.run(&["servers", "check"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
