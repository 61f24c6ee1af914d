//! Compiles the Go peer's `kvpeer.proto` (copied from shared/peers/goplugin)
//! with protox: no protoc on the Rust side.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["kvpeer.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("kvpeer_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().include_file("kvpeer.rs").compile_fds(fds)?;
    Ok(())
}
