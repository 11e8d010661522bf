//! `POST /api/tasks` and `GET /api/tasks/{id}`.

use actix_web::{web, HttpRequest, HttpResponse};
use lapin::types::AMQPValue;
use opentelemetry::trace::{Status, TraceContextExt};
use serde::Serialize;
use shared::{
    amqp::{Publish, PublishError},
    http::{only, read_json, ApiError, ErrorBody, ErrorCode},
    metrics,
    task::{InvalidTask, TaskIdText, TaskMessage, TaskRequest, TaskStatus, ATTEMPT_HEADER},
    telemetry::{w3c, InSpan as _},
    TracedSend,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::{
    actors::{GetTask, InsertTask, RemoveTask, StoreError},
    startup::AppState,
    tasks_table::TaskRecord,
};

/// The task API's part of the OpenAPI document (the gateway serves the
/// whole document at `/api/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    paths(create_task, get_task),
    components(schemas(TaskRequest, TaskAccepted, TaskRecord, ErrorBody)),
    tags((name = "tasks", description = "Tasks run asynchronously by the worker"))
)]
pub struct TasksApi;

/// The 202 answer to `POST /api/tasks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskAccepted {
    /// The task id: a UUIDv7, so ids sort in the order tasks were accepted
    /// (and the database's id index is written in order).
    pub id: Uuid,
    /// Always `queued`: stored, and confirmed by the broker.
    pub status: TaskStatus,
    /// The trace the request belongs to (32 hex digits): look it up in
    /// Jaeger or `trace-view`.
    pub trace_id: String,
}

/// Registers the task routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/tasks")
            .route(web::post().to(create_task))
            .default_service(only("POST")),
    )
    .service(
        web::resource("/api/tasks/{id}")
            .route(web::get().to(get_task))
            .default_service(only("GET")),
    );
}

/// Why a task could not be accepted or read.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The broker did not confirm the message.
    #[error("the task could not be queued: {0}")]
    NotQueued(#[from] PublishError),
    /// The task state could not be read or written.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The message could not be encoded (a bug, never the client's fault).
    #[error("encoding the task message: {0}")]
    Encode(#[from] serde_json::Error),
    /// An actor of ours is gone (only during shutdown).
    #[error("internal actor unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
}

impl From<TaskError> for ApiError {
    fn from(err: TaskError) -> Self {
        match err {
            TaskError::NotQueued(_) => ApiError::broker_unavailable(err.to_string()),
            TaskError::Storage(StoreError::Unavailable(_) | StoreError::Stopped) => {
                ApiError::storage_unavailable(err.to_string())
            }
            TaskError::Storage(StoreError::Failed(_)) => ApiError::internal(err.to_string()),
            TaskError::Encode(_) | TaskError::Mailbox(_) => ApiError::internal(err.to_string()),
        }
    }
}

/// A request the task schema refuses: 400 when it is malformed, 422 when it
/// is well-formed but names no task type, or a payload that does not fit.
fn refused(err: InvalidTask) -> ApiError {
    let code = match &err {
        InvalidTask::NotAnObject => ErrorCode::InvalidBody,
        InvalidTask::MissingType => ErrorCode::MissingType,
        InvalidTask::TypeNotAString => ErrorCode::InvalidType,
        InvalidTask::UnknownType(_) => ErrorCode::UnknownTaskType,
        InvalidTask::InvalidPayload(_) => ErrorCode::InvalidPayload,
    };
    ApiError::new(code, err.to_string())
}

/// Accepts a task: stores it as `queued` and publishes it to the task queue.
///
/// Answers only once the broker confirmed the persistent message; a task
/// that gets no 202 does not exist.
#[utoipa::path(
    post,
    path = "/api/tasks",
    tag = "tasks",
    request_body(content = TaskRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored and queued", body = TaskAccepted,
            headers(("Location" = String, description = "Where the task can be read"))),
        (status = 400, description = "`invalid_json`, `invalid_body`, `missing_type`, `invalid_type`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "`unknown_task_type`, `invalid_payload`", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`broker_unavailable`, `storage_unavailable`", body = ErrorBody),
    )
)]
async fn create_task(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, body).await?;
    let request = TaskRequest::from_json(&body).map_err(refused)?;
    let id = Uuid::now_v7();
    let span = tracing::info_span!(
        "create-task",
        task.id = TaskIdText::new(id).as_str(),
        task.type = request.kind.as_str()
    );
    let trace_id = w3c::trace_id_hex(span.context().span().span_context().trace_id());

    let queued = enqueue(&state, id, request).in_span(&span).await;
    if let Err(err) = queued {
        span.set_status(Status::error(err.to_string()));
        // Debug: during a broker outage every POST fails the same way, and the
        // Broker has already logged the outage once.
        tracing::debug!(parent: &span, task.id = %id, error = %err, "task rejected");
        return Err(err.into());
    }
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/tasks/{id}")))
        .json(TaskAccepted {
            id,
            status: TaskStatus::Queued,
            trace_id,
        }))
}

/// Records the task as queued, then publishes it; if the broker does not
/// confirm, the record is removed again so no task exists that was never
/// queued. (A report can only follow the publish, so it always finds the row,
/// whichever replica consumes it.)
async fn enqueue(state: &AppState, id: Uuid, request: TaskRequest) -> Result<(), TaskError> {
    let message = TaskMessage {
        id,
        kind: request.kind,
        payload: request.payload,
    };
    let payload = serde_json::to_vec(&message)?;
    state
        .store
        .send_traced(InsertTask {
            id,
            kind: request.kind,
        })
        .await??;
    let published = state
        .task_publisher
        .send_traced(
            Publish::new(id.to_string(), payload).header(ATTEMPT_HEADER, AMQPValue::LongUInt(1)),
        )
        .await?;
    if let Err(err) = published {
        if let Err(removal) = state.store.send_traced(RemoveTask(id)).await? {
            // Never published: keep trying in the background, so that no
            // task exists that was never queued (its id was never handed out).
            tracing::warn!(task.id = %id, error = %removal, "an unpublished task could not be removed yet; retrying");
            actix::spawn(remove_later(state.store.clone(), id));
        }
        return Err(err.into());
    }
    metrics::count(&state.metrics.published, message.kind);
    // At DEBUG, like the line per request: at INFO, writing it cost the
    // backend 5-17 % of its CPU per POST (BENCHMARKS.md), and the
    // `create-task` span says the same.
    tracing::debug!(task.id = %id, task.type = %message.kind, "task queued");
    Ok(())
}

/// Retries removing a task whose publish failed, backing off, for about a
/// minute (the retention clean-up is the last resort).
async fn remove_later(store: actix::Addr<crate::actors::TaskStore>, id: Uuid) {
    let mut backoff = shared::amqp::Backoff::new(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(10),
    );
    for _ in 0..10 {
        actix::clock::sleep(backoff.next_delay()).await;
        if let Ok(Ok(())) = store.send_traced(RemoveTask(id)).await {
            tracing::info!(task.id = %id, "removed the unpublished task");
            return;
        }
    }
    tracing::error!(task.id = %id, "gave up removing an unpublished task; the retention clean-up will");
}

/// A task's status, and its result or error once it has one.
#[utoipa::path(
    get,
    path = "/api/tasks/{id}",
    tag = "tasks",
    params(("id" = String, Path, description = "The task id from the 202")),
    responses(
        (status = 200, description = "The task", body = TaskRecord),
        (status = 404, description = "`task_not_found` (never accepted, or past its retention)", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    )
)]
async fn get_task(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let unknown = || ApiError::new(ErrorCode::TaskNotFound, format!("no task with id {path}"));
    let id = Uuid::parse_str(&path).map_err(|_| unknown())?;
    let record = state
        .store
        .send_traced(GetTask(id))
        .await
        .map_err(TaskError::from)?
        .map_err(TaskError::from)?;
    match record {
        Some(record) => Ok(HttpResponse::Ok().json(record)),
        None => Err(unknown()),
    }
}
