//! Runs a task: what each type does is in its own file
//! (`shared::task::kinds`); this actor adds the fault injection
//! (`payload.fail_times`) and the `execute-task` span. Sleeping is a timer;
//! hashing is CPU work, which its kind runs on the blocking pool where it
//! cannot stall the consumers.

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use serde_json::Value;
use shared::{
    task::{injected_failures, InvalidTask, TaskIdText, TaskMessage, TaskSpec},
    telemetry::int_attribute,
    Traced,
};
use tracing::Instrument;

/// Why a task attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskFailure {
    /// The payload does not fit the type (the backend validates, so only a
    /// hand-made message gets here). Retrying cannot help.
    #[error("{0}")]
    Invalid(#[from] InvalidTask),
    /// `payload.fail_times` asked for this attempt to fail.
    #[error(
        "injected failure: attempt {attempt} of the first {fail_times} fails (payload.fail_times)"
    )]
    Injected {
        /// This attempt.
        attempt: u32,
        /// How many first attempts fail.
        fail_times: u32,
    },
    /// The blocking pool dropped the job (only during shutdown).
    #[error("the task was cancelled: {0}")]
    Cancelled(String),
}

impl TaskFailure {
    /// Whether another attempt could succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Invalid(_))
    }

    /// `exception.type` for the span.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "InvalidPayload",
            Self::Injected { .. } => "InjectedFailure",
            Self::Cancelled(_) => "Cancelled",
        }
    }
}

/// Run attempt `attempt` (1-based) of a task and return its result.
pub struct ExecuteTask {
    /// The task.
    pub task: TaskMessage,
    /// Which attempt this is.
    pub attempt: u32,
}

impl Message for ExecuteTask {
    type Result = Result<Value, TaskFailure>;
}

/// The actor that executes tasks.
#[derive(Default)]
pub struct TaskExecutor;

impl Actor for TaskExecutor {
    type Context = Context<Self>;
}

impl Handler<Traced<ExecuteTask>> for TaskExecutor {
    type Result = ResponseFuture<Result<Value, TaskFailure>>;

    fn handle(&mut self, msg: Traced<ExecuteTask>, _: &mut Self::Context) -> Self::Result {
        let task = &msg.message().task;
        let span = tracing::info_span!(
            "execute-task",
            task.id = TaskIdText::new(task.id).as_str(),
            task.type = task.kind.as_str(),
            task.attempt = int_attribute(msg.message().attempt),
        );
        let (ExecuteTask { task, attempt }, span) = msg.into_parts(span);
        Box::pin(async move { run(task, attempt).await }.instrument(span))
    }
}

async fn run(task: TaskMessage, attempt: u32) -> Result<Value, TaskFailure> {
    let fail_times = injected_failures(&task.payload)?;
    let spec = TaskSpec::parse(task.kind, &task.payload).map_err(InvalidTask::InvalidPayload)?;
    if attempt <= fail_times {
        return Err(TaskFailure::Injected {
            attempt,
            fail_times,
        });
    }
    spec.run()
        .await
        .map_err(|cancelled| TaskFailure::Cancelled(cancelled.0))
}
