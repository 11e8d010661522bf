//! Wires the actors and the HTTP server together and runs until SIGTERM.

use std::time::Duration;

use actix::Actor;
use actix_web::{web, HttpServer};
use shared::{
    amqp::{Broker, QueuePublisher, QueueSpec},
    http::{ready, Observability, READY_PATH},
    metrics::TaskMetrics,
    task::TaskQueues,
};

use crate::{
    actors::{ResultConsumer, StoreLimits, TaskStore},
    config::Config,
    routes,
};

/// What the request handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Task records and their status.
    pub store: actix::Addr<TaskStore>,
    /// Confirming publisher to the task queue.
    pub task_publisher: actix::Addr<QueuePublisher>,
    /// The broker connection, for readiness.
    pub broker: Broker,
    /// Task counters.
    pub metrics: TaskMetrics,
}

/// Starts the actors and serves HTTP until a shutdown signal; in-flight
/// requests get up to 10 s to finish.
pub async fn run(config: Config) -> std::io::Result<()> {
    let broker = Broker::new(config.broker.amqp_url.clone(), "backend");
    let store = TaskStore::new(StoreLimits {
        max_tasks: config.store_capacity,
        max_bytes: config.store_max_bytes,
    })
    .start();
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
        let metrics = TaskMetrics::register(registry);
        metrics.start_published_at_zero();
        metrics
    });
    let state = AppState {
        store,
        task_publisher,
        broker,
        metrics: task_metrics,
    };

    let server = HttpServer::new(move || {
        observability
            .app()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::Data::new(state.broker.clone()))
            .route(READY_PATH, web::get().to(ready))
            .configure(routes::tasks::configure)
    })
    .disable_signals()
    .shutdown_timeout(10)
    .bind(("0.0.0.0", config.port))?;
    tracing::info!(port = config.port, queue = %config.broker.task_queue, "backend listening");
    shared::service::serve_until_signal(server.run()).await?;
    // Give the span of the last request a moment to end before the flush.
    actix::clock::sleep(Duration::from_millis(50)).await;
    Ok(())
}
