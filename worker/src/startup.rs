//! Starts the executor, the status reporter and the consumer actors, serves
//! health on HTTP, and drains the consumers on SIGTERM.

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

use actix::{Actor, Addr};
use actix_web::{web, HttpServer};
use futures_util::future::join_all;
use shared::{
    amqp::{Broker, QueuePublisher, QueueSpec, TaskQueues},
    http::{Observability, READY_PATH},
    metrics::WorkerMetrics,
};

use crate::{
    actors::{
        RetryPolicy, StatusReporter, StopConsuming, TaskConsumer, TaskExecutor, TaskHandling,
    },
    config::Config,
    readiness::{ready, Readiness},
};

/// Runs the worker until a shutdown signal, then lets in-flight tasks finish
/// (up to `SHUTDOWN_TIMEOUT_MS`) before returning.
pub async fn run(config: Config) -> Result<(), shared::service::ServiceError> {
    let broker = Broker::new(config.broker.amqp_url.clone(), "worker");
    let (observability, task_metrics) = Observability::new(|registry| {
        broker.register_metrics(registry);
        WorkerMetrics::register(registry)
    });
    let metrics = task_metrics;
    metrics.consumers.set(config.concurrency as i64);
    let queues = TaskQueues::new(config.broker.task_queue.clone(), config.broker.queue_type);
    let handling = TaskHandling {
        executor: TaskExecutor.start(),
        reporter: StatusReporter::new(
            QueuePublisher::new(
                broker.clone(),
                QueueSpec::durable(config.broker.result_queue.clone(), config.broker.queue_type),
                config.broker.publish_timeout,
            )
            .start(),
        )
        .start(),
        requeuer: QueuePublisher::new(
            broker.clone(),
            queues.tasks(),
            config.broker.publish_timeout,
        )
        .start(),
        queues,
        metrics,
        draining: Arc::new(AtomicBool::new(false)),
        subscribed: Arc::new(AtomicUsize::new(0)),
        retry: RetryPolicy::new(config.max_attempts, config.retry_delay),
        processing_delay: config.processing_delay,
    };
    let consumers: Vec<Addr<TaskConsumer>> = (0..config.concurrency)
        .map(|index| {
            TaskConsumer::new(index, broker.clone(), config.prefetch, handling.clone()).start()
        })
        .collect();

    let readiness = Readiness {
        broker: broker.clone(),
        subscribed: handling.subscribed.clone(),
        expected: config.concurrency,
    };
    let server = HttpServer::new(move || {
        observability
            .app()
            .app_data(web::Data::new(readiness.clone()))
            .route(READY_PATH, web::get().to(ready))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(("0.0.0.0", config.port))?;
    tracing::info!(
        port = config.port,
        queue = %config.broker.task_queue,
        concurrency = config.concurrency,
        prefetch = config.prefetch,
        max_attempts = config.max_attempts,
        processing_report_delay = ?config.processing_delay,
        "worker started"
    );
    let draining = handling.draining.clone();
    shared::service::serve_until_signal_then(server.run(), move || {
        draining.store(true, Ordering::Release);
    })
    .await?;

    tracing::info!("finishing in-flight tasks");
    let drained = join_all(
        consumers
            .iter()
            .map(|consumer| consumer.send(StopConsuming)),
    );
    if actix::clock::timeout(config.shutdown_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?config.shutdown_timeout,
            "in-flight tasks did not finish in time; they stay unacknowledged and will be redelivered"
        );
    }
    Ok(())
}
