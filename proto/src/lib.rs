//! faultline-proto: faultline's gRPC APIs and the code generated from them.
//!
//! - [`testing`]: `faultline.testing`, the `Echo` service (one unary and one server-streaming
//!   method) that the end-to-end tests run behind the agent's `grpc` routes and call with real
//!   gRPC clients (tonic here, grpcio from Python).
//!
//! The `.proto` files live under `faultline/`, one directory per package and version. `build.rs`
//! compiles them with protox and tonic-prost-build (no system `protoc`) into prost messages,
//! tonic clients and tonic servers. The `faultline.v1` control-plane API arrives with the
//! control-plane issue. Generated types stop at this crate's boundary: every other crate
//! converts them with `TryFrom` into validated domain types, once.

/// `faultline.testing` (`faultline/testing/v1/echo.proto`): the `Echo` test service.
/// [`testing::echo_server::EchoServer`] serves it, [`testing::echo_client::EchoClient`] calls it.
pub mod testing {
    tonic::include_proto!("faultline.testing");
}
