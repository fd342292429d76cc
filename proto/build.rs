//! Generates the Rust code for this crate's `.proto` files into `OUT_DIR`: protox parses them
//! (pure Rust, so no system `protoc` is needed) and tonic-prost-build turns the descriptors into
//! prost messages with tonic clients and servers. `src/lib.rs` includes one file per package.

/// Every `.proto` file this crate compiles, relative to the crate root, which is also the
/// import root. A new API is one more line here and one `include_proto!` in `src/lib.rs`.
const PROTOS: &[&str] = &["faultline/testing/v1/echo.proto"];

/// The directory holding the `.proto` files, watched as a whole so that edited imports rebuild.
const PROTO_DIR: &str = "faultline";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    let descriptors = protox::compile(PROTOS, ["."])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
