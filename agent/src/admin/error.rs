//! The admin API's error: an HTTP status and a JSON body in Toxiproxy's shape
//! (`{"error": "...", "status": 400}`), plus the `field` at fault where there is one.

use http::StatusCode;
use serde::Serialize;

use crate::route::RouteError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

impl ApiError {
    pub fn bad_request(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        let field = field.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("bad request body: {field}: {message}"),
            field: Some(field),
        }
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: &self.message,
            status: self.status.as_u16(),
            field: self.field.as_deref(),
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        let message = e.to_string();
        let (status, field) = match &e {
            RouteError::RouteNotFound(_) | RouteError::FaultNotFound { .. } => {
                (StatusCode::NOT_FOUND, None)
            }
            RouteError::RouteExists(_) | RouteError::FaultExists { .. } => {
                (StatusCode::CONFLICT, Some("name"))
            }
            RouteError::Bind { source, .. } => match source.kind() {
                std::io::ErrorKind::AddrInUse => (StatusCode::CONFLICT, Some("listen")),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::AddrNotAvailable => {
                    (StatusCode::BAD_REQUEST, Some("listen"))
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, Some("listen")),
            },
            RouteError::Invalid { field, .. } => (StatusCode::BAD_REQUEST, Some(*field)),
        };
        ApiError {
            status,
            message,
            field: field.map(Into::into),
        }
    }
}
