//! Serves the gateway until SIGTERM.

use actix_web::{web, HttpServer};
use shared::http::Observability;

use crate::{
    config::Config,
    routes::proxy::{self, Upstream, Upstreams},
};

/// Serves the gateway until a shutdown signal.
pub async fn run(config: Config) -> Result<(), shared::service::ServiceError> {
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
        observability
            .app()
            .app_data(upstreams.clone())
            .app_data(web::Data::new(client))
            .configure(proxy::configure)
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
    shared::service::serve_until_signal(server.run()).await?;
    Ok(())
}
