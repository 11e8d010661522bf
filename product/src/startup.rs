//! Connects to the database, starts the catalog actor and serves HTTP until
//! SIGTERM.

use actix::Actor;
use actix_web::{web, HttpServer};
use shared::{
    db::Database,
    http::{ready, Dependencies, Observability, READY_PATH},
    service::ServiceError,
};

use crate::{actors::CatalogActor, config::Config, routes, MIGRATIONS};

/// Serves the catalog until a shutdown signal.
pub async fn run(config: Config) -> Result<(), ServiceError> {
    let database = Database::connect(&config.database, &MIGRATIONS).await?;
    let catalog = CatalogActor::new(database.clone(), config.cache_ttl).start();
    let (observability, ()) = Observability::new(|registry| database.register_metrics(registry));
    let dependencies = Dependencies {
        broker: None,
        database: Some(database),
    };
    let server = HttpServer::new(move || {
        observability
            .app()
            .app_data(web::Data::new(catalog.clone()))
            .app_data(web::Data::new(dependencies.clone()))
            .route(READY_PATH, web::get().to(ready))
            .configure(routes::products::configure)
    })
    .disable_signals()
    .shutdown_timeout(10)
    .bind(("0.0.0.0", config.port))?;
    tracing::info!(port = config.port, cache_ttl = ?config.cache_ttl, "product listening");
    shared::service::serve_until_signal(server.run()).await?;
    Ok(())
}
