//! Wires the database, the actors and the HTTP server together and runs until
//! SIGTERM.

use actix::Actor;
use actix_web::{web, HttpServer};
use shared::{
    amqp::{Broker, QueuePublisher, QueueSpec, TaskQueues},
    db::Database,
    http::{ready, Dependencies, Observability, READY_PATH},
    metrics::PublishedTasks,
    service::ServiceError,
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

/// Connects to the database (exit 2 if it cannot), starts the actors and
/// serves HTTP until a shutdown signal; in-flight requests get up to 10 s to
/// finish.
pub async fn run(config: Config) -> Result<(), ServiceError> {
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

    let server = HttpServer::new(move || {
        observability
            .app()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::Data::new(dependencies.clone()))
            .route(READY_PATH, web::get().to(ready))
            .configure(routes::tasks::configure)
    })
    .disable_signals()
    .shutdown_timeout(10)
    .bind(("0.0.0.0", config.port))?;
    tracing::info!(
        port = config.port,
        queue = %config.broker.task_queue,
        retention = ?config.retention,
        "backend listening"
    );
    // Every request's span has ended when the server has stopped: the flush
    // that follows (shared::service::run) sends them all.
    shared::service::serve_until_signal(server.run()).await?;
    Ok(())
}
