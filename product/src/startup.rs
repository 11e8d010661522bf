//! Connects to the database, starts the catalog actor and binds the HTTP
//! listener ([`Application::build`]; port 0 picks a free one), then serves
//! until a shutdown future resolves ([`Application::run_until_stopped`]).

use std::future::Future;

use actix::Actor;
use actix_web::{web, HttpServer};
use shared::{
    db::Database,
    http::{ready, Dependencies, Observability, READY_PATH},
    service::{BoundServer, ServiceError},
};

use crate::{actors::CatalogActor, config::Config, routes, MIGRATIONS};

/// The product service, built and bound, not yet serving.
pub struct Application {
    server: BoundServer,
}

impl Application {
    /// Connects to the database (a [`ServiceError::Config`], exit 2, if it
    /// cannot), starts the catalog actor and binds the listener on
    /// `config.port`.
    pub async fn build(config: Config) -> Result<Self, ServiceError> {
        let database = Database::connect(&config.database, &MIGRATIONS).await?;
        let (observability, ()) =
            Observability::new(|registry| database.register_metrics(registry));
        let dependencies = Dependencies {
            broker: None,
            database: Some(database.clone()),
        };
        let cache_ttl = config.cache_ttl;
        let server = BoundServer::bind(config.port, |listener| {
            Ok(HttpServer::new(move || {
                // One catalog actor per worker thread, started on it: its
                // lookups never cross threads (see `actors::catalog_actor`).
                let catalog = CatalogActor::new(database.clone(), cache_ttl).start();
                observability
                    .app()
                    .app_data(web::Data::new(catalog))
                    .app_data(web::Data::new(dependencies.clone()))
                    .route(READY_PATH, web::get().to(ready))
                    .configure(routes::products::configure)
            })
            .disable_signals()
            .shutdown_timeout(10)
            .listen(listener)?
            .run())
        })?;
        tracing::info!(port = server.port(), cache_ttl = ?config.cache_ttl, "product listening");
        Ok(Self { server })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until `shutdown` resolves, then until in-flight requests are
    /// done.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + 'static,
    ) -> Result<(), ServiceError> {
        self.server.serve_until(shutdown, || {}).await
    }
}

/// Builds the product service and serves until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServiceError> {
    Application::build(config)
        .await?
        .run_until_stopped(shared::service::shutdown_signal())
        .await
}
