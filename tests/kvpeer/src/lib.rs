//! The Go peer's `kvpeer.v1.KeyValue` contract (shared/peers/goplugin), for
//! wire-compatibility tests in both directions: a Rust plugin served by the
//! SDK under the Go `kvpeer-host`, and the host's launcher running the Go
//! `kvpeer-plugin`.

mod generated {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/kvpeer.rs"));
}

pub use generated::kvpeer::v1 as pb;

/// The encoded `FileDescriptorSet` of kvpeer.proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kvpeer_descriptor.bin"));

/// The peer's handshake: cookie `KVPEER_MAGIC_COOKIE=kvpeer-5b1f0c2e`, app version 1.
pub const HANDSHAKE: plugboard_sdk::goplugin::HandshakeConfig = plugboard_sdk::goplugin::HandshakeConfig {
    magic_cookie_key: "KVPEER_MAGIC_COOKIE",
    magic_cookie_value: "kvpeer-5b1f0c2e",
    app_protocol_versions: &[1],
};
