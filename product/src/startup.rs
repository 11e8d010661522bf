//! Starts the catalog actor and serves HTTP until SIGTERM.

use actix::Actor;
use actix_web::{web, HttpServer};
use shared::http::Observability;

use crate::{actors::CatalogActor, catalog, config::Config, routes};

/// Serves the catalog until a shutdown signal.
pub async fn run(config: Config) -> std::io::Result<()> {
    let catalog = CatalogActor::new(catalog::seed()).start();
    let (observability, ()) = Observability::new(|_| ());
    let server = HttpServer::new(move || {
        observability
            .app()
            .app_data(web::Data::new(catalog.clone()))
            .configure(routes::products::configure)
    })
    .disable_signals()
    .shutdown_timeout(10)
    .bind(("0.0.0.0", config.port))?;
    tracing::info!(port = config.port, "product listening");
    shared::service::serve_until_signal(server.run()).await
}
