//! Integration tests: one binary that runs the real `lastmile` binary as a client would.

mod util;

mod audit_chain;
mod audit_cli;
mod audit_e2e;
mod canary;
#[cfg(unix)]
mod file_modes;
mod first_turn;
// The HTTP tests stop `serve --http` with SIGTERM, which has no counterpart a test can send to
// one windowless process on Windows; there the transport is compiled and clippy-checked only.
#[cfg(unix)]
mod http;
#[cfg(unix)]
mod http_resume;
#[cfg(unix)]
mod http_shared;
#[cfg(unix)]
mod http_status_2026;
#[cfg(unix)]
mod http_util;
mod identity_cli;
mod identity_e2e;
mod import;
#[cfg(target_os = "linux")]
mod isolation;
mod passthrough;
mod promise;
mod protocol_2026;
mod resilience;
mod secrets_store;
mod serve;
mod servers_check;
mod subscriptions;
mod tasks;
mod uri_templates;
mod users;
