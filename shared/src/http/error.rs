//! The one error type at the HTTP edge: a status and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`. Every code the API can
//! answer is an [`ErrorCode`], which also decides the status; services map
//! their own typed errors into an [`ApiError`] once, in `From` impls.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error code of the API, with its HTTP status (README: API, Errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    InvalidJson,
    /// 400: the body is not a JSON object, or could not be read.
    InvalidBody,
    /// 400: no `type`.
    MissingType,
    /// 400: `type` is not a string.
    InvalidType,
    /// 400: a query parameter is malformed or out of range.
    InvalidQuery,
    /// 404: no such task.
    TaskNotFound,
    /// 404: no such product.
    ProductNotFound,
    /// 404: no such route.
    RouteNotFound,
    /// 404: a path parameter does not parse.
    NotFound,
    /// 405: the resource exists, the method does not (with `Allow`).
    MethodNotAllowed,
    /// 413: the body is over the limit.
    PayloadTooLarge,
    /// 422: `type` names no task type.
    UnknownTaskType,
    /// 422: the payload does not fit the task type.
    InvalidPayload,
    /// 500: a failure the client cannot fix.
    InternalError,
    /// 502: the gateway's upstream is down.
    UpstreamUnavailable,
    /// 503: RabbitMQ is unreachable or did not confirm in time.
    BrokerUnavailable,
    /// 503: the database is down, unreachable or too slow.
    StorageUnavailable,
    /// 503: some of the worker's consumers are not subscribed (readiness).
    ConsumersNotSubscribed,
    /// 504: the gateway's upstream did not answer in time.
    UpstreamTimeout,
}

impl ErrorCode {
    /// The code in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidBody => "invalid_body",
            Self::MissingType => "missing_type",
            Self::InvalidType => "invalid_type",
            Self::InvalidQuery => "invalid_query",
            Self::TaskNotFound => "task_not_found",
            Self::ProductNotFound => "product_not_found",
            Self::RouteNotFound => "route_not_found",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnknownTaskType => "unknown_task_type",
            Self::InvalidPayload => "invalid_payload",
            Self::InternalError => "internal_error",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::BrokerUnavailable => "broker_unavailable",
            Self::StorageUnavailable => "storage_unavailable",
            Self::ConsumersNotSubscribed => "consumers_not_subscribed",
            Self::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The HTTP status that goes with it.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidJson
            | Self::InvalidBody
            | Self::MissingType
            | Self::InvalidType
            | Self::InvalidQuery => StatusCode::BAD_REQUEST,
            Self::TaskNotFound | Self::ProductNotFound | Self::RouteNotFound | Self::NotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownTaskType | Self::InvalidPayload => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Self::BrokerUnavailable | Self::StorageUnavailable | Self::ConsumersNotSubscribed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// An HTTP error response in the platform's JSON shape.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} {}: {message}", code.status(), code.as_str())]
pub struct ApiError {
    /// What went wrong, machine-readably; decides the status.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// 413: the body is over `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 503 `broker_unavailable`.
    pub fn broker_unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BrokerUnavailable, message)
    }

    /// 503 `storage_unavailable`.
    pub fn storage_unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::StorageUnavailable, message)
    }

    /// 500, for failures the client cannot fix.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

/// The JSON body of every error response: what an [`ApiError`] becomes,
/// and its schema in the OpenAPI document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` object of an [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable; decides the status.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status()).json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::{openapi::schema::Schema, openapi::RefOr, PartialSchema};

    #[test]
    fn every_code_in_the_document_is_the_code_in_the_body() {
        // The schema's enum lists every variant (derived from the enum).
        let RefOr::T(Schema::Object(schema)) = ErrorCode::schema() else {
            panic!("ErrorCode is a string enum");
        };
        let names = schema.enum_values.expect("enum values");
        assert_eq!(names.len(), 19);
        for name in names {
            let code: ErrorCode = serde_json::from_value(name.clone()).unwrap();
            assert_eq!(name, code.as_str(), "{code:?}");
            let body = serde_json::to_value(ErrorBody {
                error: ErrorDetail {
                    code,
                    message: "m".into(),
                },
            })
            .unwrap();
            assert_eq!(body["error"]["code"], code.as_str());
        }
    }
}
