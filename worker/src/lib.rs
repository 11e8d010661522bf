//! The worker service: `WORKER_CONCURRENCY` [`actors::TaskConsumer`]s consume
//! the task queue, hand each task to the [`actors::TaskExecutor`], and report
//! `processing` and the outcome to the backend over the results queue before
//! acknowledging the message. Port 8002 serves `/health` and `/ready`.

pub mod actors;
pub mod config;
pub mod readiness;
pub mod startup;
