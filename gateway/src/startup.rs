//! Binds the gateway's listener ([`Application::build`]; port 0 picks a free
//! one) and proxies until a shutdown future resolves
//! ([`Application::run_until_stopped`]).

use std::future::Future;

use actix_web::{web, HttpServer};
use shared::{
    http::Observability,
    service::{BoundServer, ServiceError},
};

use crate::{
    config::Config,
    routes::{
        openapi,
        proxy::{self, Upstream, Upstreams},
    },
};

/// The gateway, bound, not yet serving.
pub struct Application {
    server: BoundServer,
}

impl Application {
    /// Binds the listener on `config.port` with the upstreams of `config`.
    pub fn build(config: Config) -> Result<Self, ServiceError> {
        let upstreams = web::Data::new(Upstreams {
            backend: Upstream::new("backend-service", &config.backend_url),
            product: Upstream::new("product-service", &config.product_url),
            timeout: config.upstream_timeout,
        });
        let timeout = config.upstream_timeout;
        // A document that does not serialise is a bug found at start-up.
        let document = web::Data::new(
            openapi::OpenApiJson::new().map_err(|err| std::io::Error::other(err.to_string()))?,
        );
        let (observability, ()) = Observability::new(|_| ());
        let server = BoundServer::bind(config.port, |listener| {
            Ok(HttpServer::new(move || {
                // awc clients are per worker thread (not Send).
                let client = awc::Client::builder()
                    .timeout(timeout)
                    .disable_redirects()
                    .finish();
                observability
                    .app()
                    .app_data(upstreams.clone())
                    .app_data(web::Data::new(client))
                    .app_data(document.clone())
                    .configure(openapi::configure)
                    .configure(proxy::configure)
            })
            .disable_signals()
            .shutdown_timeout(10)
            .listen(listener)?
            .run())
        })?;
        tracing::info!(
            port = server.port(),
            backend = %config.backend_url,
            product = %config.product_url,
            "gateway listening"
        );
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

/// Builds the gateway and serves until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServiceError> {
    Application::build(config)?
        .run_until_stopped(shared::service::shutdown_signal())
        .await
}
