//! The worker's actors.

mod task_consumer;
mod task_executor;

pub use task_consumer::{RetryPolicy, StopConsuming, TaskConsumer, TaskHandling};
pub use task_executor::{ExecuteTask, TaskExecutor, TaskFailure};
