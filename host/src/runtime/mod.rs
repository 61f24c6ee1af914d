//! Layer 3: the runtime. Configuration, discovery, the plan that checks one
//! against the other, supervision of source and executor instances, command
//! resolution, the event pipeline (store, routing, sinks), HTTP and the CLI.

pub mod backoff;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod events_cli;
pub mod executors;
pub mod host;
pub mod host_events;
pub mod http;
pub mod isolation;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod plugins_cli;
pub mod registry;
pub mod reload;
pub mod resolve;
pub mod routing;
pub mod secrets;
pub mod sinks;
pub mod sources;
pub mod state;
pub mod store;
pub mod supervisor;
