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
