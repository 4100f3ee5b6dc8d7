//! Any bytes as a `servers.d/*.toml` file give a server definition or a named error — never a
//! panic. A refusal's line lies inside the text; text that is not UTF-8 is refused before
//! parsing (the loader reads files as text). An accepted definition, written back as TOML,
//! parses to the same definition.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lastmile::config::parse_server_file;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_server_file(text) {
        Ok(def) => {
            let written = toml::to_string(&def).expect("a definition serializes");
            let again = parse_server_file(&written).expect("a written definition parses");
            assert_eq!(
                toml::to_string(&again).expect("serializes"),
                written,
                "round trip of {text:?}"
            );
        }
        Err((line, error)) => {
            let lines = text.lines().count().max(1);
            assert!(line.is_none_or(|l| (1..=lines + 1).contains(&l)), "{line:?} in {text:?}");
            assert!(!error.to_string().is_empty());
        }
    }
});
