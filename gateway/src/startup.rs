//! Serves the gateway until SIGTERM.

use actix_web::{middleware::from_fn, web, App, HttpServer};
use shared::{
    http::{not_found, trace_response, Observability, ServerSpan},
    metrics::record_http_metrics,
};
use tracing_actix_web::TracingLogger;

use crate::{
    config::Config,
    routes::proxy::{self, Upstream, Upstreams},
};

/// Serves the gateway until a shutdown signal.
pub async fn run(config: Config) -> std::io::Result<()> {
    let upstreams = web::Data::new(Upstreams {
        backend: Upstream::new("backend-service", &config.backend_url),
        product: Upstream::new("product-service", &config.product_url),
        timeout: config.upstream_timeout,
    });
    let timeout = config.upstream_timeout;
    let (observability, ()) = Observability::new(|_| ());
    let server = HttpServer::new(move || {
        // awc clients are per worker thread (not Send).
        let client = awc::Client::builder()
            .timeout(timeout)
            .disable_redirects()
            .finish();
        App::new()
            .wrap(from_fn(record_http_metrics))
            .wrap(from_fn(trace_response))
            .wrap(TracingLogger::<ServerSpan>::new())
            .configure(|cfg| observability.configure(cfg))
            .app_data(upstreams.clone())
            .app_data(web::Data::new(client))
            .configure(proxy::configure)
            .default_service(web::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(10)
    .bind(("0.0.0.0", config.port))?;
    tracing::info!(
        port = config.port,
        backend = %config.backend_url,
        product = %config.product_url,
        "gateway listening"
    );
    shared::service::serve_until_signal(server.run()).await
}
