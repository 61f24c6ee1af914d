//! Compiles every `.proto` under `proto/` with protox (pure Rust), so a fresh
//! machine needs only cargo: no system `protoc` is ever run.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "io/cloudevents/v1/cloudevents.proto",
    "plugboard/v1/plugin.proto",
    "plugboard/v1/source.proto",
    "plugboard/v1/executor.proto",
    "plugboard/v1/sink.proto",
    "plugin/grpc_controller.proto",
    "plugin/grpc_stdio.proto",
    "plugin/grpc_broker.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Served by gRPC reflection in the SDK so grpcurl can discover plugins.
    fs::write(out.join("descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .include_file("protos.rs")
        // Deterministic attribute order in JSON output and logs.
        .btree_map(".io.cloudevents.v1.CloudEvent.attributes")
        .compile_fds(fds)?;
    Ok(())
}
