//! faultline-proto: faultline's gRPC APIs and the code generated from them.
//!
//! - [`v1`]: `faultline.v1`, the control plane. [`AgentService`](v1::agent_service_server)
//!   is the stream every agent keeps open to the controller (hello, leased desired fault sets,
//!   acknowledgements, heartbeats with SLIs); [`ExperimentService`](v1::experiment_service_server)
//!   is what operators and the CLI drive experiments with; [`AgentRegistry`](v1::agent_registry_server)
//!   lists the agents the controller knows.
//! - [`testing`]: `faultline.testing`, the `Echo` service (one unary and one server-streaming
//!   method) that the end-to-end tests run behind the agent's `grpc` routes and call with real
//!   gRPC clients (tonic here, grpcio from Python).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors of every file above and its imports, for
//!   gRPC reflection.
//!
//! The `.proto` files live under `faultline/`, one directory per package and version. `build.rs`
//! compiles them with protox and tonic-prost-build (no system `protoc`) into prost messages,
//! tonic clients and tonic servers. Well-known types (`google.protobuf.Timestamp`, `Duration`)
//! map to [`prost_types`], re-exported here so users need no dependency of their own.
//! Generated types stop at this crate's boundary: every other crate converts them with `TryFrom`
//! into validated domain types, once.

pub use prost_types;

pub mod v1 {
    //! `faultline.v1` (`faultline/v1/*.proto`): the control-plane API.
    //!
    //! - `agent.proto`: [`AgentService`](agent_service_server::AgentService) and its stream's
    //!   messages, [`AgentMessage`] and [`ControllerMessage`].
    //! - `faults.proto`: [`FaultSpec`], one message per fault kind, [`RequestMatch`], [`Cohort`].
    //! - `sli.proto`: [`RouteSli`], [`SliSnapshot`], [`HistogramSnapshot`].
    //! - `experiment.proto`: [`ExperimentService`](experiment_service_server::ExperimentService),
    //!   [`Experiment`], [`ExperimentEvent`].
    //! - `registry.proto`: [`AgentRegistry`](agent_registry_server::AgentRegistry), [`Agent`].
    //!
    //! Each service has a `*_client` module (tonic client) and a `*_server` module (trait and
    //! tonic server). The clients have no `connect(url)` constructor, which would clash with
    //! [`AgentServiceClient::connect`](agent_service_client::AgentServiceClient::connect), the
    //! `Connect` rpc: build them with `new(channel)` from a `tonic::transport::Endpoint`.

    tonic::include_proto!("faultline.v1");
}

/// `faultline.testing` (`faultline/testing/v1/echo.proto`): the `Echo` test service.
/// [`testing::echo_server::EchoServer`] serves it, [`testing::echo_client::EchoClient`] calls it.
pub mod testing {
    tonic::include_proto!("faultline.testing");
}

/// The encoded `google.protobuf.FileDescriptorSet` of every `.proto` file of this crate and of
/// the files they import (the well-known types), with their comments: what gRPC reflection
/// serves (`tonic_reflection::server::Builder::register_encoded_file_descriptor_set`), so tools
/// such as grpcurl can list and call the APIs without the `.proto` files.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));
