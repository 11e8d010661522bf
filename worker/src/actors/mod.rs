//! The worker's actors: the task consumers, the executor they hand tasks
//! to, and the reporter that batches their status reports.

mod ack_window;
mod status_reporter;
mod task_consumer;
mod task_executor;

pub use status_reporter::{ReportFailed, ReportStatus, StatusReporter};
pub use task_consumer::{RetryPolicy, StopConsuming, TaskConsumer, TaskHandling};
pub use task_executor::{ExecuteTask, TaskExecutor, TaskFailure};
