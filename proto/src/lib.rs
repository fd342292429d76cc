//! faultline-proto: the `faultline.v1` gRPC API.
//!
//! The `.proto` files and the code generated from them (tonic-prost-build, no system `protoc`)
//! arrive with the control-plane issue. Generated types stop at this crate's boundary: every
//! other crate converts them with `TryFrom` into validated domain types, once.
