//! Downstream servers: spawning each child with a cleared environment in its own process group,
//! speaking MCP to it over its stdio, keeping its catalog, and stopping it.

mod child;
mod reaper;
mod spawn;

pub use child::{Catalog, Child, ChildEvent, STOP_GRACE, StartError};
pub use reaper::ReaperLink;
pub use spawn::{BASE_ENV, ChildEnv, SpawnError, build_command, resolve_program};
