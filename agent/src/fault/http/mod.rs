//! HTTP and gRPC faults, and how a fault picks the requests it applies to.
//!
//! These act on requests rather than bytes: on `http` and `grpc` routes each request is matched
//! against the route's faults ([`matcher`]), then sampled (the fault's probability, per request,
//! or sticky per [`cohort`] key), and the chosen faults are applied around the proxied call.

pub mod abort;
pub mod cohort;
pub mod delay;
pub mod grpc_abort;
pub mod grpc_stream;
pub mod matcher;
pub mod reset;
pub mod throttle;

pub use self::{
    abort::Abort,
    cohort::{Arm, Cohort},
    delay::{Delay, DelayPhase},
    grpc_abort::GrpcAbort,
    grpc_stream::{GrpcStream, StreamAction},
    matcher::RequestMatch,
    reset::{HttpReset, ResetPhase},
    throttle::Throttle,
};
