//! Integration tests: one binary that runs the real `lastmile` binary as a client would.

mod util;

mod audit_cli;
mod identity_cli;
mod passthrough;
mod resilience;
mod secrets_store;
mod serve;
mod servers_check;
