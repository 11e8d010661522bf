//! `http_server_request_duration_seconds` (the conventions'
//! `http.server.request.duration`, labels `http_request_method`,
//! `http_route`, `http_response_status_code`) and `GET /metrics`, which
//! serves every metric of the service as OpenMetrics text (needed for
//! exemplars).

use std::{sync::Arc, time::Instant};

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web, Error, HttpResponse,
};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::family::Family,
    registry::{Registry, Unit},
};

use crate::metrics::{current_trace_exemplar, latency_histogram, LatencyHistogram};

/// Labels of the HTTP server duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `GET`, `POST`, ...
    pub http_request_method: String,
    /// The route template (`/api/tasks/{id}`), never the raw path.
    pub http_route: String,
    /// Status code.
    pub http_response_status_code: u16,
}

/// `http_server_request_duration_seconds`.
#[derive(Clone)]
pub struct HttpMetrics {
    duration: LatencyHistogram<HttpLabels>,
}

impl HttpMetrics {
    /// Registers the HTTP metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let duration: LatencyHistogram<HttpLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP server requests",
            Unit::Seconds,
            duration.clone(),
        );
        Self { duration }
    }
}

/// Middleware (`middleware::from_fn(record_http_metrics)`) observing every
/// request's duration, with the request's trace as exemplar (but for the
/// operational endpoints, see [`crate::http::is_operational`]). It must run
/// inside `server_span` and find `web::Data<HttpMetrics>`;
/// [`crate::http::Observability::app`] sets both up.
pub async fn record_http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // Probes and scrapes are not the platform's traffic.
    let metrics = req
        .app_data::<web::Data<HttpMetrics>>()
        .filter(|_| !crate::http::is_operational(req.path()))
        .cloned();
    let method = req.method().to_string();
    // Unmatched paths share one label value: raw paths would explode cardinality.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let exemplar = current_trace_exemplar();
    let started = Instant::now();
    let response = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &response {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        metrics
            .duration
            .get_or_create(&HttpLabels {
                http_request_method: method,
                http_route: route,
                http_response_status_code: status.as_u16(),
            })
            .observe(started.elapsed().as_secs_f64(), exemplar, None);
    }
    response
}

/// The finished registry, served by [`metrics_endpoint`].
#[derive(Clone)]
pub struct MetricsRegistry(pub Arc<Registry>);

/// `GET /metrics`: OpenMetrics text (needed for exemplars).
pub async fn metrics_endpoint(registry: web::Data<MetricsRegistry>) -> HttpResponse {
    let mut body = String::new();
    match encode(&mut body, &registry.0) {
        Ok(()) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(body),
        Err(err) => HttpResponse::InternalServerError().body(err.to_string()),
    }
}
