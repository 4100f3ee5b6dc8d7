//! Downstream servers: spawning each child with a cleared environment in its own process group,
//! speaking MCP to it over its stdio, keeping its catalog, and stopping it.
