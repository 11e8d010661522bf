//! Wires the database, the actors and the HTTP server together:
//! [`Application::build`] binds the listener (port 0 picks a free one, as the
//! tests do), [`Application::run_until_stopped`] serves until a shutdown
//! future resolves.

use std::future::Future;

use actix::Actor;
use actix_web::{web, HttpServer};
use shared::{
    amqp::{Broker, QueuePublisher, QueueSpec, TaskQueues},
    db::Database,
    http::{ready, Dependencies, Observability, READY_PATH},
    metrics::PublishedTasks,
    service::{BoundServer, ServiceError},
};

use crate::{
    actors::{ResultConsumer, TaskStore},
    config::Config,
    routes, MIGRATIONS,
};

/// What the request handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Task records and their status.
    pub store: actix::Addr<TaskStore>,
    /// Confirming publisher to the task queue.
    pub task_publisher: actix::Addr<QueuePublisher>,
    /// Task counters.
    pub metrics: PublishedTasks,
}

/// The backend, built and bound, not yet serving.
pub struct Application {
    server: BoundServer,
}

impl Application {
    /// Connects to the database (a [`ServiceError::Config`], exit 2, if it
    /// cannot), starts the actors and binds the HTTP listener on
    /// `config.port`; in-flight requests get up to 10 s to finish once
    /// stopped.
    pub async fn build(config: Config) -> Result<Self, ServiceError> {
        let database = Database::connect(&config.database, &MIGRATIONS).await?;
        let broker = Broker::new(config.broker.amqp_url.clone(), "backend");
        let store = TaskStore::new(database.clone(), config.retention).start();
        let task_publisher = QueuePublisher::new(
            broker.clone(),
            TaskQueues::new(config.broker.task_queue.clone(), config.broker.queue_type).tasks(),
            config.broker.publish_timeout,
        )
        .start();
        let _results = ResultConsumer::new(
            broker.clone(),
            QueueSpec::durable(config.broker.result_queue.clone(), config.broker.queue_type),
            store.clone(),
        )
        .start();
        let (observability, task_metrics) = Observability::new(|registry| {
            broker.register_metrics(registry);
            database.register_metrics(registry);
            PublishedTasks::register(registry)
        });
        let state = AppState {
            store,
            task_publisher,
            metrics: task_metrics,
        };
        let dependencies = Dependencies {
            broker: Some(broker),
            database: Some(database),
        };

        let server = BoundServer::bind(config.port, |listener| {
            Ok(HttpServer::new(move || {
                observability
                    .app()
                    .app_data(web::Data::new(state.clone()))
                    .app_data(web::Data::new(dependencies.clone()))
                    .route(READY_PATH, web::get().to(ready))
                    .configure(routes::tasks::configure)
            })
            .disable_signals()
            .shutdown_timeout(10)
            .listen(listener)?
            .run())
        })?;
        tracing::info!(
            port = server.port(),
            queue = %config.broker.task_queue,
            retention = ?config.retention,
            "backend listening"
        );
        Ok(Self { server })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until `shutdown` resolves, then until in-flight requests are
    /// done. Every request's span has ended when this returns: the flush that
    /// follows (`shared::service::run`) sends them all.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + 'static,
    ) -> Result<(), ServiceError> {
        self.server.serve_until(shutdown, || {}).await
    }
}

/// Builds the backend and serves until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServiceError> {
    Application::build(config)
        .await?
        .run_until_stopped(shared::service::shutdown_signal())
        .await
}
