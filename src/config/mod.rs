//! Configuration: the profile (`lastmile.toml` and where things live) and the downstream server
//! definitions in `servers.d/`, with validation that reports each problem with its file and line.
//!
//! This is the lowest module: everything else may depend on it, it depends on nothing of lastmile's.

mod duration;
mod http;
pub mod perms;
mod profile;
mod server;
mod tier;

#[cfg(test)]
mod broken_files;

pub use duration::DurationSpec;
pub use http::{ExtractorPreset, GenericClient, HttpSection, ProxyIdentitySection, ScannerSection};
pub use profile::{
    AuditSection, AuthMode, AuthSection, DefaultsSection, Profile, ProfileConfig, ProfileError,
    RateLimitSection, TierMultipliers,
};
pub(crate) use server::server_file_paths;
pub use server::{
    ConfigProblem, RestartPolicy, RestartSection, SecretRef, Server, ServerDef, ServerFileError,
    ServersDir, ToolFilter, is_valid_server_name, load_servers_dir, parse_server_file,
};
pub use tier::Tier;

/// Line number (1-based) of a byte offset in `text`.
pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Line and message of a TOML error. The parser reports one error without a position: nesting
/// past its recursion limit (deep dotted keys or table names); that one is placed on the most
/// deeply nested line, so every parse error still names its line.
pub(crate) fn toml_error(text: &str, e: &toml::de::Error) -> (Option<usize>, String) {
    let message = e.message().trim().to_string();
    if let Some(span) = e.span() {
        return (Some(line_of_offset(text, span.start)), message);
    }
    if !message.contains("recursion limit") {
        return (None, message);
    }
    let depth = |line: &str| {
        let mut quote = None;
        let mut n = 0usize;
        for c in line.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '.' | '[' | '{') => n += 1,
                _ => {}
            }
        }
        n
    };
    let deepest = text
        .lines()
        .enumerate()
        .max_by_key(|(i, line)| (depth(line), std::cmp::Reverse(*i)))
        .map(|(i, _)| i + 1);
    (
        deepest,
        "keys, tables or arrays are nested too deeply (recursion limit)".into(),
    )
}
