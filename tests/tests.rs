//! Integration tests: one binary that runs the real `lastmile` binary as a client would.

mod util;

mod audit_chain;
mod audit_cli;
mod audit_e2e;
mod canary;
mod identity_cli;
mod identity_e2e;
mod passthrough;
mod resilience;
mod secrets_store;
mod serve;
mod servers_check;
