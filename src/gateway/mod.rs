//! The MCP face: the per-session manifest, naming, routing and forwarding.

mod bridge;
mod call;
mod face;
mod front;
mod gate;
mod guard;
mod hub;
mod listen;
mod manifest;
pub mod naming;
mod read;
mod session;
mod tasks;
pub mod template;

pub use face::{EXECUTION_ID_META, Face};
pub use front::serve as serve_front;
pub use gate::{Gate, RATE_LIMITED, SESSION_EXPIRED};
pub use guard::Guarded;
pub use hub::{EnvBuilder, Hub, Slot, SlotStatus};
pub use manifest::{ALIAS_SCHEME, Manifest, ResourceRoute, Route};
pub use session::{
    ClientSession, Profile as SessionProfile, Sharing, learn_every_secret, record_session,
};

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
                "servers {} share the prefix {prefix:?}: a name offered by more than one of them is exposed as is for the first (by server name) and with a short hash appended for the others",
                names.join(", ")
            )
        })
        .collect()
}
