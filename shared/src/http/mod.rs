//! The HTTP edge every service shares: one JSON error shape, the SERVER span
//! with semantic-convention attributes, the `traceresponse` header, header
//! propagation for outgoing calls, bounded body reading and `/health`.

mod body;
mod error;
pub mod propagation;
mod server_span;
mod trace_response;

use actix_web::{web, HttpResponse};

pub use body::{read_body, read_json, MAX_BODY_BYTES};
pub use error::ApiError;
pub use server_span::ServerSpan;
pub use trace_response::{trace_response, traceresponse_value};

/// `GET /health`: the process is up and serving.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// The default service: a JSON 404 for routes that do not exist.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("route_not_found", "no such route"))
}

/// Extractor configurations whose rejections are JSON 400s in our error
/// shape, instead of actix's plain-text defaults.
pub fn extractor_configs(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::bad_request("invalid_query", err.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::not_found("not_found", err.to_string()).into()),
    )
    .app_data(
        web::JsonConfig::default()
            .error_handler(|err, _| ApiError::bad_request("invalid_json", err.to_string()).into()),
    );
}
