//! HTTP routes of the backend.

pub mod tasks;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::startup::AppState;

/// `GET /ready`: 200 while the broker connection is up, 503 otherwise.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.broker.is_connected() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({
            "error": {"code": "broker_unavailable", "message": "not connected to the message broker"}
        }))
    }
}
