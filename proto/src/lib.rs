//! plugboard's plugin contract.
//!
//! This crate has no I/O. It holds:
//! - the generated gRPC code for every `.proto` in `proto/` ([`plugboard::v1`],
//!   the CloudEvents format [`io::cloudevents::v1`], and go-plugin's internal
//!   services in [`plugin`]),
//! - the go-plugin handshake line and its environment ([`goplugin`]),
//! - plugboard's own handshake constants ([`handshake`]),
//! - CloudEvent validation and the JSON event format ([`event`]).

#![allow(clippy::doc_lazy_continuation)]

mod generated {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/protos.rs"));
}

pub use generated::{io, plugboard, plugin};

pub mod event;
pub mod goplugin;
pub mod handshake;

/// The encoded `FileDescriptorSet` of every plugboard proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The CloudEvent message, re-exported under the name everyone uses.
pub use io::cloudevents::v1::CloudEvent;
pub use io::cloudevents::v1::cloud_event::CloudEventAttributeValue;
