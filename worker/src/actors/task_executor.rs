//! Runs a task. Sleeping is a timer on the actor's arbiter; hashing is CPU
//! work, so it runs on the blocking pool where it cannot stall the consumers.

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use serde_json::Value;
use shared::{
    task::{InvalidTask, TaskMessage, TaskSpec},
    Traced,
};
use tracing::Instrument;

use crate::execute::{hash_result, sleep_result};

/// Why a task attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskFailure {
    /// The payload does not fit the type (the backend validates, so only a
    /// hand-made message gets here).
    #[error("{0}")]
    Invalid(#[from] InvalidTask),
    /// The blocking pool dropped the job (only during shutdown).
    #[error("the task was cancelled: {0}")]
    Cancelled(String),
}

/// Run one task and return its result.
pub struct ExecuteTask(pub TaskMessage);

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
        let task = &msg.message().0;
        let span = tracing::info_span!(
            "execute-task",
            task.id = %task.id,
            task.type = %task.kind,
        );
        let (ExecuteTask(task), span) = msg.into_parts(span);
        Box::pin(async move { run(task).await }.instrument(span))
    }
}

async fn run(task: TaskMessage) -> Result<Value, TaskFailure> {
    match TaskSpec::parse(task.kind, &task.payload)? {
        TaskSpec::Echo(payload) => Ok(payload),
        TaskSpec::Sleep { ms } => {
            actix::clock::sleep(std::time::Duration::from_millis(ms)).await;
            Ok(sleep_result(ms))
        }
        TaskSpec::Hash { data, rounds } => {
            actix_web::rt::task::spawn_blocking(move || hash_result(&data, rounds))
                .await
                .map_err(|e| TaskFailure::Cancelled(e.to_string()))
        }
    }
}
