//! Reading request bodies with a size limit, so oversized bodies get our JSON
//! 413 and malformed JSON our JSON 400.

use actix_web::{web, HttpRequest};
use futures_util::StreamExt;

use super::{ApiError, ErrorCode};

/// The largest request body any service accepts (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reads the whole body, failing with 413 as soon as it passes `limit`
/// (up front when `Content-Length` already says so).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    if let Some(length) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if length > limit {
            return Err(ApiError::payload_too_large(limit));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`]. The `Content-Type` is
/// not enforced: a body that parses as JSON is accepted.
pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<serde_json::Value, ApiError> {
    let body = read_body(req, payload, MAX_BODY_BYTES).await?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("malformed JSON: {e}")))
}
