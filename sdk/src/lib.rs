//! Write plugboard plugins in Rust.
//!
//! A plugin is an executable the plugboard host starts. Implement [`Source`],
//! [`Executor`] or [`Sink`] (one binary may implement several), describe the
//! plugin with [`Plugin`], and call [`Plugin::serve`] from `main`. The SDK
//! does what a hashicorp/go-plugin plugin does: checks the magic cookie,
//! negotiates the protocol version, serves gRPC on a private Unix socket with
//! health, controller, stdio and broker services, prints the handshake line,
//! logs hclog JSON on stderr, and exits cleanly on `Shutdown` or SIGTERM.
//!
//! ```no_run
//! use plugboard_sdk::prelude::*;
//!
//! struct Echo;
//!
//! #[plugboard_sdk::async_trait]
//! impl Executor for Echo {
//!     async fn execute(&self, cmd: Command, _out: Output) -> Result<Reply, PluginError> {
//!         Ok(Reply::text(cmd.args.join(" ")))
//!     }
//! }
//!
//! fn main() {
//!     Plugin::new("echo", env!("CARGO_PKG_VERSION"))
//!         .description("prints its arguments back")
//!         .executor(Echo, ["echo"])
//!         .serve()
//! }
//! ```
//!
//! Plugin logic can be tested without a host: see [`testing`].
//! [`config`] has the checks instance configs share (durations as text or seconds).
//! [`goplugin`] serves any tonic service as a go-plugin plugin, not only plugboard's.

pub mod config;
mod error;
pub mod event;
mod executor;
pub mod goplugin;
pub mod log;
mod plugin;
mod sink;
mod source;
pub mod testing;

pub use error::PluginError;
pub use event::EventBuilder;
pub use executor::{Command, CommandContext, Executor, Output, Reply};
pub use plugboard_proto as proto;
pub use plugboard_proto::CloudEvent;
pub use plugin::Plugin;
pub use sink::{Sink, SinkContext};
pub use source::{EventSender, HttpRequest, HttpResponse, Source, SourceContext};
pub use tonic::async_trait;

/// Everything a plugin's `main.rs` usually needs.
pub mod prelude {
    pub use crate::{
        CloudEvent, Command, CommandContext, EventBuilder, EventSender, Executor, HttpRequest, HttpResponse, Output,
        Plugin, PluginError, Reply, Sink, SinkContext, Source, SourceContext,
    };
}
