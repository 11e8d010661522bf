//! Starts the executor, the status reporter and the consumer actors and binds
//! the health listener ([`Application::build`]; port 0 picks a free one);
//! serves until a shutdown future resolves, then drains the consumers
//! ([`Application::run_until_stopped`]).

use std::future::Future;
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
    service::{BoundServer, ServiceError},
};

use crate::{
    actors::{
        RetryPolicy, StatusReporter, StopConsuming, TaskConsumer, TaskExecutor, TaskHandling,
    },
    config::Config,
    readiness::{ready, Readiness},
};

/// The worker, consumers started and health listener bound.
pub struct Application {
    server: BoundServer,
    consumers: Vec<Addr<TaskConsumer>>,
    draining: Arc<AtomicBool>,
    shutdown_timeout: std::time::Duration,
}

impl Application {
    /// Starts the actors (they connect and subscribe by themselves, retrying
    /// while RabbitMQ is away) and binds the health listener on
    /// `config.port`.
    pub fn build(config: Config) -> Result<Self, ServiceError> {
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
                    QueueSpec::durable(
                        config.broker.result_queue.clone(),
                        config.broker.queue_type,
                    ),
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
        let server = BoundServer::bind(config.port, |listener| {
            Ok(HttpServer::new(move || {
                observability
                    .app()
                    .app_data(web::Data::new(readiness.clone()))
                    .route(READY_PATH, web::get().to(ready))
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(5)
            .listen(listener)?
            .run())
        })?;
        tracing::info!(
            port = server.port(),
            queue = %config.broker.task_queue,
            concurrency = config.concurrency,
            prefetch = config.prefetch,
            max_attempts = config.max_attempts,
            processing_report_delay = ?config.processing_delay,
            "worker started"
        );
        Ok(Self {
            server,
            consumers,
            draining: handling.draining,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The port the health listener is bound to.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Runs until `shutdown` resolves (the consumers stop taking tasks at
    /// once), then lets in-flight tasks finish, up to `SHUTDOWN_TIMEOUT_MS`.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + 'static,
    ) -> Result<(), ServiceError> {
        let draining = self.draining.clone();
        self.server
            .serve_until(shutdown, move || {
                draining.store(true, Ordering::Release);
            })
            .await?;

        tracing::info!("finishing in-flight tasks");
        let drained = join_all(
            self.consumers
                .iter()
                .map(|consumer| consumer.send(StopConsuming)),
        );
        if actix::clock::timeout(self.shutdown_timeout, drained)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout = ?self.shutdown_timeout,
                "in-flight tasks did not finish in time; they stay unacknowledged and will be redelivered"
            );
        }
        Ok(())
    }
}

/// Builds the worker and runs it until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServiceError> {
    Application::build(config)?
        .run_until_stopped(shared::service::shutdown_signal())
        .await
}
