//! lastmile: a local MCP gateway.
//!
//! A Claude client launches `lastmile serve` as one stdio MCP server. lastmile starts the downstream
//! servers defined in `servers.d/`, each as a child process with a cleared environment, and presents
//! their tools, prompts and resources as one namespaced server.
//!
//! Dependencies point one way: `cli` → `gateway` → `downstream`, `identity`, `secrets`, `audit` →
//! `config`. Lower modules never see clap types.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::print_stdout, clippy::dbg_macro)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod cli;
pub mod config;
pub mod downstream;
pub mod edge;
pub mod exit_codes;
pub mod gateway;
pub mod http;
pub mod identity;
pub mod secrets;
pub mod telemetry;
pub mod util;
pub mod wire;
