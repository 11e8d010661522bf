//! The worker's actors.

mod task_consumer;
mod task_executor;

pub use task_consumer::{StopConsuming, TaskConsumer};
pub use task_executor::{ExecuteTask, TaskExecutor, TaskFailure};
