//! The HTTP edge every service shares: one JSON error shape, the SERVER span
//! with semantic-convention attributes, the `traceresponse` header, header
//! propagation for outgoing calls, bounded body reading and `/health`.

mod body;
mod error;
pub mod metrics;
pub mod propagation;
mod server_span;

use std::sync::Arc;

use actix_web::{web, HttpResponse, ResponseError};
use prometheus_client::registry::Registry;

use metrics::{metrics_endpoint, HttpMetrics, MetricsRegistry};

pub use body::{read_body, read_json, MAX_BODY_BYTES};
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorDetail};
pub use server_span::{server_span, span_name};

/// Liveness path of every service.
pub const HEALTH_PATH: &str = "/health";
/// Readiness path of the services that need RabbitMQ (backend, worker).
pub const READY_PATH: &str = "/ready";
/// Prometheus scrape path of every service.
pub const METRICS_PATH: &str = "/metrics";

/// Whether `path` is an operational endpoint (health, readiness, metrics).
/// Those requests are neither traced nor counted in the HTTP metrics:
/// orchestrator probes and Prometheus scrapes, every few seconds per
/// service, would otherwise bury the platform's own traces in Jaeger and
/// count as traffic on the dashboard.
pub fn is_operational(path: &str) -> bool {
    [HEALTH_PATH, READY_PATH, METRICS_PATH].contains(&path)
}

/// `GET /health`: the process is up and serving.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// What a service needs before it can serve: `GET /ready` answers 200 only
/// while all of it answers (give the app `web::Data<Dependencies>`).
#[derive(Clone, Default)]
pub struct Dependencies {
    /// RabbitMQ, if the service publishes or consumes.
    pub broker: Option<crate::amqp::Broker>,
    /// The database, if the service keeps state.
    pub database: Option<crate::db::Database>,
}

/// `GET /ready`: 200 while the broker is connected and the database answers
/// (each if the service has one), else 503 `broker_unavailable` or
/// `storage_unavailable`.
pub async fn ready(dependencies: web::Data<Dependencies>) -> Result<HttpResponse, ApiError> {
    if let Some(broker) = &dependencies.broker {
        if !broker.is_connected() {
            return Err(ApiError::broker_unavailable(
                "not connected to the message broker",
            ));
        }
    }
    if let Some(database) = &dependencies.database {
        if !database.ping().await {
            return Err(ApiError::storage_unavailable(
                "the database does not answer",
            ));
        }
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

/// The default service: a JSON 404 for routes that do not exist.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::RouteNotFound, "no such route"))
}

/// The default service of a resource: a JSON 405 with the `Allow` header,
/// e.g. `web::resource("/api/tasks").route(web::post().to(h)).default_service(only("POST"))`.
pub fn only(allowed: &'static str) -> actix_web::Route {
    web::to(move || async move {
        let mut response = ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("this resource allows {allowed}"),
        )
        .error_response();
        response.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static(allowed),
        );
        response
    })
}

/// Extractor configurations whose rejections are JSON 400s in our error
/// shape, instead of actix's plain-text defaults.
pub fn extractor_configs(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::new(ErrorCode::InvalidQuery, err.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::new(ErrorCode::NotFound, err.to_string()).into()),
    )
    .app_data(
        web::JsonConfig::default()
            .error_handler(|err, _| ApiError::new(ErrorCode::InvalidJson, err.to_string()).into()),
    );
}

/// What every service's HTTP app shares: `/health`, `/metrics` (with the
/// HTTP duration histogram and whatever the service registers), and JSON
/// extractor errors. [`Observability::app`] builds an `App` with all of it and
/// the middleware in the right order.
#[derive(Clone)]
pub struct Observability {
    registry: MetricsRegistry,
    http: HttpMetrics,
}

impl Observability {
    /// Builds the metrics registry: the HTTP metrics plus what `register`
    /// adds; hands back what `register` returned (the service's own metrics).
    pub fn new<T>(register: impl FnOnce(&mut Registry) -> T) -> (Self, T) {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let extra = register(&mut registry);
        let observability = Self {
            registry: MetricsRegistry(Arc::new(registry)),
            http,
        };
        (observability, extra)
    }

    /// A new app with the platform's middleware (the SERVER span and its
    /// `traceresponse` outermost, then the duration metrics), `/health`,
    /// `/metrics`, JSON extractor errors and the JSON 404. Services add their
    /// own routes and data to it.
    pub fn app(
        &self,
    ) -> actix_web::App<
        impl actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        let shared = self.clone();
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(metrics::record_http_metrics))
            .wrap(actix_web::middleware::from_fn(server_span))
            .configure(move |cfg| shared.configure(cfg))
            .default_service(web::to(not_found))
    }

    /// Adds the shared routes and app data (use with `App::configure`).
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.http.clone()))
            .app_data(web::Data::new(self.registry.clone()))
            .route(HEALTH_PATH, web::get().to(health))
            .route(METRICS_PATH, web::get().to(metrics_endpoint));
        extractor_configs(cfg);
    }
}
