//! The MCP face: the per-session manifest, naming, routing and forwarding.

use crate::config::Server;

/// Warnings about servers whose exposed names may collide (same prefix, including bare names).
pub fn prefix_warnings(servers: &[Server]) -> Vec<String> {
    let mut by_prefix: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for s in servers.iter().filter(|s| !s.def.disabled) {
        by_prefix.entry(s.prefix()).or_default().push(&s.name);
    }
    by_prefix
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(prefix, names)| {
            format!(
                "servers {} share the prefix {prefix:?}: a tool or prompt name they both offer is exposed once under its plain name (first server by name) and once with a short hash appended",
                names.join(", ")
            )
        })
        .collect()
}
