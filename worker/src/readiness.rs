//! `GET /ready` of the worker: ready while connected to RabbitMQ with every
//! consumer actor subscribed (a consumer that cannot subscribe, e.g. because
//! the queue exists with other arguments, keeps the worker unready).

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use actix_web::{web, HttpResponse};
use serde_json::json;
use shared::{
    amqp::Broker,
    http::{ApiError, ErrorCode},
};

/// What readiness looks at.
#[derive(Clone)]
pub struct Readiness {
    /// The broker connection.
    pub broker: Broker,
    /// Consumer actors subscribed now.
    pub subscribed: Arc<AtomicUsize>,
    /// Consumer actors configured.
    pub expected: usize,
}

/// The `/ready` handler.
pub async fn ready(readiness: web::Data<Readiness>) -> Result<HttpResponse, ApiError> {
    let subscribed = readiness.subscribed.load(Ordering::Acquire);
    if !readiness.broker.is_connected() {
        return Err(ApiError::broker_unavailable(
            "not connected to the message broker",
        ));
    }
    if subscribed < readiness.expected {
        return Err(ApiError::new(
            ErrorCode::ConsumersNotSubscribed,
            format!(
                "{subscribed} of {} consumers subscribed",
                readiness.expected
            ),
        ));
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ready", "consumers": subscribed})))
}
