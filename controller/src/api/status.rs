//! Errors to gRPC statuses, in one place.
//!
//! A bad request is `INVALID_ARGUMENT` naming the field, a spec beyond a server-side cap is
//! `FAILED_PRECONDITION` naming the cap, a missing experiment `NOT_FOUND`, a name in use
//! `ALREADY_EXISTS`, an operation the state does not allow `FAILED_PRECONDITION`; only the
//! store's own failures (I/O, SQLite, a stopped store thread) are `INTERNAL`.

use tonic::Status;

use crate::spec::{ErrorKind, SpecError};
use crate::store::StoreError;

/// The status of a store error.
pub(crate) fn from_store(e: StoreError) -> Status {
    use StoreError::*;
    let message = e.to_string();
    match e {
        NotFound { .. } => Status::not_found(message),
        NameTaken { .. } => Status::already_exists(message),
        IllegalTransition { .. } | NotFinished { .. } | TargetsWhenFinished { .. } => {
            Status::failed_precondition(message)
        }
        DuplicateTarget { .. } | InvalidSpecJson { .. } | ReservedEventKind { .. } => {
            Status::invalid_argument(message)
        }
        Closed => Status::unavailable(message),
        CreateDataDir { .. }
        | Open { .. }
        | WalUnavailable { .. }
        | SchemaTooNew { .. }
        | Migration { .. }
        | TimeOutOfRange { .. }
        | Corrupt { .. }
        | Sqlite { .. }
        | SpawnThread(_) => {
            tracing::error!(error = %message, "store failure");
            Status::internal(message)
        }
    }
}

/// The status of a refused spec: the message is `PATH: MESSAGE (line L, column C)`.
pub(crate) fn from_spec(e: &SpecError) -> Status {
    match e.kind {
        ErrorKind::Cap(cap) => {
            Status::failed_precondition(format!("spec exceeds the cap {}: {e}", cap.as_str()))
        }
        ErrorKind::Syntax | ErrorKind::Invalid | ErrorKind::NotSupported => {
            Status::invalid_argument(format!("invalid spec: {e}"))
        }
    }
}

/// A required request field that is missing or empty.
pub(crate) fn missing(field: &str) -> Status {
    Status::invalid_argument(format!("{field}: required"))
}
