//! Starts the catalog actor and serves HTTP until SIGTERM.

use actix::Actor;
use actix_web::{middleware::from_fn, web, App, HttpServer};
use shared::{
    http::{not_found, trace_response, Observability, ServerSpan},
    metrics::record_http_metrics,
};
use tracing_actix_web::TracingLogger;

use crate::{actors::CatalogActor, catalog, config::Config, routes};

/// Serves the catalog until a shutdown signal.
pub async fn run(config: Config) -> std::io::Result<()> {
    let catalog = CatalogActor::new(catalog::seed()).start();
    let (observability, ()) = Observability::new(|_| ());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(record_http_metrics))
            .wrap(from_fn(trace_response))
            .wrap(TracingLogger::<ServerSpan>::new())
            .configure(|cfg| observability.configure(cfg))
            .app_data(web::Data::new(catalog.clone()))
            .configure(routes::products::configure)
            .default_service(web::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(10)
    .bind(("0.0.0.0", config.port))?;
    tracing::info!(port = config.port, "product listening");
    shared::service::serve_until_signal(server.run()).await
}
