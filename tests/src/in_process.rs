//! The HTTP services built inside the test process with their `Application`
//! types on port 0: the API's behaviour (validation, error bodies, paging,
//! headers) tested in milliseconds, without starting processes. The backend
//! still talks to the real RabbitMQ (in the test's own vhost) and every
//! service to a real database.
//!
//! Tests using this run on an actix system (`#[actix_web::test]`): the
//! services' actors live on it, and it stops them when the test ends.

use std::sync::OnceLock;

use opentelemetry_sdk::trace::SdkTracerProvider;
use shared::{amqp::BrokerSettings, db::DatabaseSettings};
use tokio::sync::oneshot;
use tracing_subscriber::layer::SubscriberExt;

use crate::{
    broker::TestVhost,
    database::{DbKind, TestDatabase},
};

/// Spans, not logs: in-process services get valid trace ids (so
/// `traceresponse` and `traceparent` are set) from a tracer provider that
/// samples everything and exports nothing. Installed once per test binary.
fn init_tracing() {
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        shared::telemetry::install_propagator();
        let provider = SdkTracerProvider::builder().build();
        let layer = shared::telemetry::span_layer(&provider);
        // Another test of this binary may have installed one first: then
        // that one stays, which is fine for these tests.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
        provider
    });
}

/// A service serving in this process; stopped (gracefully) when dropped.
pub struct InProcessService {
    /// The port it listens on.
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
}

impl InProcessService {
    /// Runs an application on the current actix system until dropped.
    fn spawn<F>(port: u16, run_until_stopped: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: std::future::Future<Output = Result<(), shared::service::ServiceError>> + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let running = run_until_stopped(stopped);
        actix_web::rt::spawn(async move {
            if let Err(err) = running.await {
                panic!("in-process service on port {port} failed: {err}");
            }
        });
        Self {
            port,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for InProcessService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Resolves when `stopped` fires or its sender is gone.
async fn until(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

/// The product service on `db`.
pub async fn product(db: &TestDatabase) -> InProcessService {
    init_tracing();
    let config = product::config::Config {
        port: 0,
        database: DatabaseSettings::for_url(db.url()).expect("test database URL"),
        cache_ttl: std::time::Duration::from_secs(1),
    };
    let app = product::startup::Application::build(config)
        .await
        .expect("build the product service");
    InProcessService::spawn(app.port(), |stopped| app.run_until_stopped(until(stopped)))
}

/// The backend on `db`, with RabbitMQ at `amqp_url`.
pub async fn backend(amqp_url: &str, db: &TestDatabase) -> InProcessService {
    init_tracing();
    let config = backend::config::Config {
        port: 0,
        broker: BrokerSettings::for_url(amqp_url),
        database: DatabaseSettings::for_url(db.url()).expect("test database URL"),
        retention: backend::config::DEFAULT_RETENTION,
    };
    let app = backend::startup::Application::build(config)
        .await
        .expect("build the backend");
    InProcessService::spawn(app.port(), |stopped| app.run_until_stopped(until(stopped)))
}

/// The gateway in front of `backend_url` and `product_url`, giving up on an
/// upstream after `upstream_timeout`.
pub fn gateway(
    backend_url: &str,
    product_url: &str,
    upstream_timeout: std::time::Duration,
) -> InProcessService {
    init_tracing();
    let config = gateway::config::Config {
        port: 0,
        backend_url: backend_url.to_string(),
        product_url: product_url.to_string(),
        upstream_timeout,
    };
    let app = gateway::startup::Application::build(config).expect("build the gateway");
    InProcessService::spawn(app.port(), |stopped| app.run_until_stopped(until(stopped)))
}

/// Gateway, backend and product in this process (no worker: tasks stay
/// queued), a vhost and a SQLite database per service.
pub struct HttpStack {
    /// The public entry.
    pub gateway: InProcessService,
    /// The backend.
    pub backend: InProcessService,
    /// The product service.
    pub product: InProcessService,
    /// The backend's vhost.
    pub vhost: TestVhost,
    /// An HTTP client for the test.
    pub http: reqwest::Client,
    _databases: [TestDatabase; 2],
}

impl HttpStack {
    /// Starts the three services; `label` names the vhost.
    pub async fn start(label: &str) -> Self {
        let vhost = TestVhost::create(label);
        let backend_db = TestDatabase::create(DbKind::Sqlite, "backend").await;
        let product_db = TestDatabase::create(DbKind::Sqlite, "product").await;
        let backend = backend(&vhost.amqp_url(), &backend_db).await;
        let product = product(&product_db).await;
        let gateway = gateway(
            &backend.url(),
            &product.url(),
            std::time::Duration::from_secs(8),
        );
        Self {
            gateway,
            backend,
            product,
            vhost,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("http client"),
            _databases: [backend_db, product_db],
        }
    }

    /// A gateway URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gateway.url(), path)
    }
}
