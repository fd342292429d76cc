//! Generates the Rust code for this crate's `.proto` files into `OUT_DIR`: protox parses them
//! (pure Rust, so no system `protoc` is needed; it also bundles the well-known types such as
//! `google/protobuf/timestamp.proto`) and tonic-prost-build turns the descriptors into prost
//! messages with tonic clients and servers. `src/lib.rs` includes one file per package.
//!
//! The same descriptors, encoded, are written to `OUT_DIR/file_descriptor_set.bin` for gRPC
//! reflection (`FILE_DESCRIPTOR_SET` in `src/lib.rs`).

use std::path::PathBuf;

use prost_types::{FileDescriptorProto, FileDescriptorSet};

/// Every `.proto` file this crate compiles, relative to the crate root, which is also the
/// import root. A new API is one more line here and one `include_proto!` in `src/lib.rs`.
const PROTOS: &[&str] = &[
    "faultline/testing/v1/echo.proto",
    "faultline/v1/agent.proto",
    "faultline/v1/experiment.proto",
    "faultline/v1/faults.proto",
    "faultline/v1/registry.proto",
    "faultline/v1/sli.proto",
];

/// Packages whose clients are generated without tonic's `connect(url)` constructor. tonic
/// names that constructor `connect`, which clashes with the client method of an rpc named
/// `Connect` (`faultline.v1.AgentService.Connect`); such clients are built with
/// `new(channel)` from a `tonic::transport::Endpoint`, which real callers configure anyway.
const NO_CONNECT_CONSTRUCTOR: &[&str] = &["faultline.v1"];

/// The directory holding the `.proto` files, watched as a whole so that edited imports rebuild.
const PROTO_DIR: &str = "faultline";

/// The file in `OUT_DIR` holding the encoded `FileDescriptorSet` of every file above and of
/// everything they import.
const DESCRIPTOR_SET: &str = "file_descriptor_set.bin";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    let mut compiler = protox::Compiler::new(["."])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(PROTOS)?;

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    std::fs::write(
        out_dir.join(DESCRIPTOR_SET),
        compiler.encode_file_descriptor_set(),
    )?;

    let all = compiler.file_descriptor_set();
    let no_connect = |f: &FileDescriptorProto| NO_CONNECT_CONSTRUCTOR.contains(&f.package());
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(subset(&all, no_connect))?;
    tonic_prost_build::configure().compile_fds(subset(&all, |f| !no_connect(f)))?;
    Ok(())
}

/// The files of `all` that `keep` selects, plus the well-known types they may import (which
/// are never generated: they map to `prost_types`).
fn subset(
    all: &FileDescriptorSet,
    keep: impl Fn(&FileDescriptorProto) -> bool,
) -> FileDescriptorSet {
    FileDescriptorSet {
        file: all
            .file
            .iter()
            .filter(|f| keep(f) || f.package() == "google.protobuf")
            .cloned()
            .collect(),
    }
}
