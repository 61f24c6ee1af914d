//! Layer 3: the runtime. Configuration, discovery, the plan that checks one
//! against the other, supervision of source and executor instances, command
//! resolution, the event output and the CLI.

pub mod backoff;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod executors;
pub mod host;
pub mod host_events;
pub mod http;
pub mod output;
pub mod plan;
pub mod registry;
pub mod resolve;
pub mod secrets;
pub mod sources;
