//! The plugboard host, in three layers, each unaware of the ones above it:
//!
//! 1. [`launcher`]: a generic hashicorp/go-plugin-compatible launcher
//!    (process, handshake, gRPC channel, logs, stop). It could host any
//!    go-plugin gRPC plugin.
//! 2. [`plugin`]: plugboard's plugin kinds on top of it: describe, source,
//!    executor and sink clients.
//! 3. [`runtime`]: configuration, discovery registry, supervision, command
//!    resolution, the event output and the CLI.

pub mod launcher;
pub mod plugin;
pub mod runtime;
