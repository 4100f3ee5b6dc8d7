//! Downstream servers: spawning each child with a cleared environment in its own process group,
//! speaking MCP to it over its stdio, keeping its catalog, and stopping it.

mod cache;
mod child;
pub mod isolate;
mod link;
mod reaper;
mod shared;
mod spawn;
mod upstream;
mod windows;

pub use cache::CatalogCache;
pub use child::{
    CallOutcome, Catalog, Child, ChildContext, ChildEvent, EventSender, STOP_GRACE, StartError,
};
pub use link::{Link, ProgressRoute, RawOutcome, RawSink};
pub use reaper::ReaperLink;
pub use shared::{AcquireError, SharedChildren};
pub use spawn::{BASE_ENV, ChildEnv, SpawnError, build_command, resolve_program};
pub use upstream::{Delivery, InputBridge, Upstream, children_capabilities};
