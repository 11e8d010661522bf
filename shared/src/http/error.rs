//! The one error type at the HTTP edge: a status and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`. Services map their own
//! typed errors into it once, in `From` impls.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde_json::json;

/// An HTTP error response in the platform's JSON shape.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`missing_type`, `broker_unavailable`, ...).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 413.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 422: well-formed, but not acceptable.
    pub fn unprocessable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 503: a dependency (the broker) is down; try again later.
    pub fn unavailable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// 500, for failures the client cannot fix.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(json!({
            "error": {"code": self.code, "message": self.message}
        }))
    }
}

impl From<crate::task::InvalidTask> for ApiError {
    fn from(err: crate::task::InvalidTask) -> Self {
        if err.is_malformed() {
            Self::bad_request(err.code(), err.to_string())
        } else {
            Self::unprocessable(err.code(), err.to_string())
        }
    }
}
