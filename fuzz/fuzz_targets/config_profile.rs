//! Any bytes as `lastmile.toml` give a profile or a named error with its line — never a panic.
//! An accepted profile, written back as TOML, parses to the same profile.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lastmile::config::ProfileConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ProfileConfig::parse(text) {
        Ok(config) => {
            let written = toml::to_string(&config).expect("a profile serializes");
            let again = ProfileConfig::parse(&written).expect("a written profile parses");
            assert_eq!(
                toml::to_string(&again).expect("serializes"),
                written,
                "round trip of {text:?}"
            );
        }
        Err((line, message)) => {
            let lines = text.lines().count().max(1);
            assert!((1..=lines + 1).contains(&line), "{line} in {text:?}");
            assert!(!message.is_empty());
        }
    }
});
