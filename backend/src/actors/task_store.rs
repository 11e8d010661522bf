//! The actor that owns the task state in the database: each message is a
//! domain span (`store-task`, `get-task`, `remove-task`,
//! `apply-status-update`) that is a child of the sender's, with the
//! statement's CLIENT span (`INSERT tasks`, ...) inside it.
//!
//! Writes are grouped, because a statement's fixed cost (the driver's round
//! trip) dwarfs the row's (BENCHMARKS.md): new tasks that arrive while an
//! INSERT runs go into the next one, a multi-row INSERT whose CLIENT span is
//! a child of the first task's `store-task` and linked to the others'; status
//! reports come in batches and are applied in one transaction (one commit,
//! one fsync on PostgreSQL). Every `TASK_RETENTION / 10` (at most every 10
//! minutes) the store deletes the tasks past their retention.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseFuture, WrapFuture,
};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use shared::{
    db::{Database, DbError},
    task::{StatusUpdate, TaskIdText},
    telemetry::{int_attribute, InSpan as _},
    Traced,
};
use tokio::sync::oneshot;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::tasks_table::{self, TaskRecord, UpdateOutcome};

/// Why the store could not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database is down, unreachable or too slow: try again later.
    #[error("task storage unavailable: {0}")]
    Unavailable(Arc<DbError>),
    /// Anything else (a bug, or a corrupt row).
    #[error("task storage failed: {0}")]
    Failed(Arc<DbError>),
    /// The store is gone (the service is stopping).
    #[error("the task store stopped")]
    Stopped,
}

impl From<DbError> for StoreError {
    fn from(err: DbError) -> Self {
        if err.is_unavailable() {
            Self::Unavailable(Arc::new(err))
        } else {
            Self::Failed(Arc::new(err))
        }
    }
}

/// Add a task as `queued`.
pub struct InsertTask {
    /// The new task's id.
    pub id: Uuid,
    /// Its type.
    pub kind: shared::task::TaskType,
}
impl Message for InsertTask {
    type Result = Result<(), StoreError>;
}

/// Forget a task (its publish was not confirmed).
pub struct RemoveTask(pub Uuid);
impl Message for RemoveTask {
    type Result = Result<(), StoreError>;
}

/// Look a task up.
pub struct GetTask(pub Uuid);
impl Message for GetTask {
    type Result = Result<Option<TaskRecord>, StoreError>;
}

/// A status report to apply, with the context of the span that sent it (its
/// `apply-status-update` becomes that span's child) and the CONSUMER span
/// that received it (linked).
pub struct ReceivedReport {
    /// The report and its sender's context.
    pub report: Traced<StatusUpdate>,
    /// The span of the message that carried it.
    pub received_by: SpanContext,
}

/// Apply status reports in one transaction: all of them or none.
pub struct ApplyStatusUpdates(pub Vec<ReceivedReport>);
impl Message for ApplyStatusUpdates {
    type Result = Result<Vec<UpdateOutcome>, StoreError>;
}

/// The actor owning the task state.
pub struct TaskStore {
    db: Database,
    retention: Duration,
    cleaning: bool,
    // New tasks waiting for the INSERT in flight to finish.
    waiting: Vec<PendingInsert>,
    inserting: bool,
}

/// A task waiting to be inserted, and who waits for it.
struct PendingInsert {
    id: Uuid,
    kind: shared::task::TaskType,
    span: tracing::Span,
    since: Instant,
    done: oneshot::Sender<Result<(), StoreError>>,
}

impl TaskStore {
    /// A store on `db` that deletes tasks older than `retention`.
    pub fn new(db: Database, retention: Duration) -> Self {
        Self {
            db,
            retention,
            cleaning: false,
            waiting: Vec::new(),
            inserting: false,
        }
    }

    /// Inserts what waits, in one statement, unless an INSERT is running.
    fn insert_waiting(&mut self, ctx: &mut Context<Self>) {
        if self.inserting || self.waiting.is_empty() {
            return;
        }
        // Nobody waits for a task whose request ended; one that waited past
        // the statement budget gets its 503 now (the budget holds even
        // while earlier INSERTs queue up behind a slow database).
        let budget = self.db.timeout();
        let waiting = std::mem::take(&mut self.waiting);
        for pending in waiting {
            if pending.done.is_closed() {
                continue;
            }
            if pending.since.elapsed() >= budget {
                let late = StoreError::from(DbError::Timeout(budget));
                let _ = pending.done.send(Err(late));
                continue;
            }
            self.waiting.push(pending);
        }
        if self.waiting.is_empty() {
            return;
        }
        self.inserting = true;
        let take = self.waiting.len().min(tasks_table::MAX_INSERT_BATCH);
        let batch: Vec<PendingInsert> = self.waiting.drain(..take).collect();
        let db = self.db.clone();
        let tasks: Vec<_> = batch.iter().map(|p| (p.id, p.kind)).collect();
        let links = batch[1..]
            .iter()
            .map(|p| p.span.context().span().span_context().clone())
            .collect();
        let parent = batch[0].span.clone();
        let insert =
            async move { tasks_table::insert_many(&db, &tasks, links).await }.instrument(parent);
        ctx.spawn(insert.into_actor(self).map(move |result, act, ctx| {
            let result = result.map_err(StoreError::from);
            for pending in batch {
                // The requester may have given up (its request ended).
                let _ = pending.done.send(result.clone());
            }
            act.inserting = false;
            act.insert_waiting(ctx);
        }));
    }

    /// How often expired tasks are looked for.
    fn cleanup_interval(&self) -> Duration {
        (self.retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600))
    }

    fn clean_up(&mut self, ctx: &mut Context<Self>) {
        if self.cleaning {
            return;
        }
        self.cleaning = true;
        let (db, retention) = (self.db.clone(), self.retention);
        let span = tracing::info_span!(
            "delete-expired-tasks",
            task.retention_s = int_attribute(retention.as_secs()),
            task.deleted = tracing::field::Empty
        );
        let work = async move {
            match tasks_table::delete_expired(&db, retention).await {
                Ok(deleted) => {
                    tracing::Span::current().record("task.deleted", int_attribute(deleted));
                    if deleted > 0 {
                        tracing::info!(deleted, ?retention, "deleted tasks past their retention");
                    }
                }
                // The database logs its outages once; this retries next round.
                Err(err) => tracing::debug!(error = %err, "retention clean-up failed"),
            }
        }
        .instrument(span);
        ctx.spawn(work.into_actor(self).map(|(), act, _| act.cleaning = false));
    }
}

impl Actor for TaskStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.cleanup_interval(), |act, ctx| act.clean_up(ctx));
    }
}

impl Handler<Traced<InsertTask>> for TaskStore {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: Traced<InsertTask>, ctx: &mut Self::Context) -> Self::Result {
        let span = tracing::info_span!(
            "store-task",
            task.id = TaskIdText::new(msg.message().id).as_str()
        );
        let (InsertTask { id, kind }, span) = msg.into_parts(span);
        let (done, stored) = oneshot::channel();
        self.waiting.push(PendingInsert {
            id,
            kind,
            span: span.clone(),
            since: Instant::now(),
            done,
        });
        self.insert_waiting(ctx);
        Box::pin(async move { stored.await.unwrap_or(Err(StoreError::Stopped)) }.instrument(span))
    }
}

impl Handler<Traced<RemoveTask>> for TaskStore {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: Traced<RemoveTask>, _: &mut Self::Context) -> Self::Result {
        let span = tracing::info_span!(
            "remove-task",
            task.id = TaskIdText::new(msg.message().0).as_str()
        );
        let (RemoveTask(id), span) = msg.into_parts(span);
        let db = self.db.clone();
        Box::pin(async move { Ok(tasks_table::delete(&db, id).await?) }.instrument(span))
    }
}

impl Handler<Traced<GetTask>> for TaskStore {
    type Result = ResponseFuture<Result<Option<TaskRecord>, StoreError>>;

    fn handle(&mut self, msg: Traced<GetTask>, _: &mut Self::Context) -> Self::Result {
        let span = tracing::info_span!(
            "get-task",
            task.id = TaskIdText::new(msg.message().0).as_str()
        );
        let (GetTask(id), span) = msg.into_parts(span);
        let db = self.db.clone();
        Box::pin(async move { Ok(tasks_table::select(&db, id).await?) }.instrument(span))
    }
}

impl Handler<ApplyStatusUpdates> for TaskStore {
    type Result = ResponseFuture<Result<Vec<UpdateOutcome>, StoreError>>;

    fn handle(&mut self, msg: ApplyStatusUpdates, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            // Each report's span stays open until the commit made it durable.
            let (updates, spans): (Vec<StatusUpdate>, Vec<tracing::Span>) =
                msg.0.into_iter().map(report_span).unzip();
            let outcomes = match apply_together(&db, &updates, &spans).await {
                Err(StoreError::Failed(err)) => {
                    // Something in the batch is refused for good: find it, so
                    // that it cannot hold back every other report forever.
                    tracing::warn!(error = %err, reports = updates.len(), "a batch of status reports failed; applying them one by one");
                    apply_one_by_one(&db, &updates, &spans).await?
                }
                other => other?,
            };
            for ((update, span), outcome) in updates.iter().zip(&spans).zip(&outcomes) {
                log_outcome(span, update, *outcome);
            }
            Ok(outcomes)
        })
    }
}

/// Applies `updates` in one transaction: all of them or none.
async fn apply_together(
    db: &Database,
    updates: &[StatusUpdate],
    spans: &[tracing::Span],
) -> Result<Vec<UpdateOutcome>, StoreError> {
    let mut tx = db.begin_write().await?;
    let mut outcomes = vec![UpdateOutcome::Ignored; updates.len()];
    // Reports of distinct tasks: one statement per chunk, its span
    // under the chunk's first report and linked to the others.
    let mut per_task: HashMap<Uuid, usize> = HashMap::new();
    for update in updates {
        *per_task.entry(update.id).or_default() += 1;
    }
    let (distinct, repeated): (Vec<usize>, Vec<usize>) =
        (0..updates.len()).partition(|&i| per_task[&updates[i].id] == 1);
    for chunk in distinct.chunks(tasks_table::MAX_UPDATE_BATCH) {
        let batch: Vec<&StatusUpdate> = chunk.iter().map(|&i| &updates[i]).collect();
        let links = chunk[1..]
            .iter()
            .map(|&i| spans[i].context().span().span_context().clone())
            .collect();
        let applied = tasks_table::apply_many(db, &mut tx, &batch, links)
            .in_span(&spans[chunk[0]])
            .await?;
        for &i in chunk {
            outcomes[i] = if applied.contains(&updates[i].id) {
                UpdateOutcome::Applied
            } else {
                tasks_table::not_applied(db, &mut tx, updates[i].id)
                    .in_span(&spans[i])
                    .await?
            };
        }
    }
    // Several reports of one task: one at a time, in arrival order.
    for i in repeated {
        outcomes[i] = tasks_table::apply(db, &mut tx, &updates[i])
            .in_span(&spans[i])
            .await?;
    }
    // The COMMIT shows in the trace of the batch's first report.
    match spans.first() {
        Some(first) => db.commit(tx).in_span(first).await?,
        None => db.commit(tx).await?,
    }
    Ok(outcomes)
}

/// Applies each report in a transaction of its own; one the database refuses
/// for good is `Rejected`. An outage still fails the whole call.
async fn apply_one_by_one(
    db: &Database,
    updates: &[StatusUpdate],
    spans: &[tracing::Span],
) -> Result<Vec<UpdateOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(updates.len());
    for (update, span) in updates.iter().zip(spans) {
        let alone = async {
            let mut tx = db.begin_write().await?;
            let outcome = tasks_table::apply(db, &mut tx, update).await?;
            db.commit(tx).await?;
            Ok::<_, DbError>(outcome)
        }
        .in_span(span)
        .await;
        outcomes.push(match alone.map_err(StoreError::from) {
            Ok(outcome) => outcome,
            Err(StoreError::Failed(err)) => {
                tracing::error!(parent: span, task.id = %update.id, error = %err, "the database refuses this status report; dropped");
                UpdateOutcome::Rejected
            }
            Err(other) => return Err(other),
        });
    }
    Ok(outcomes)
}

/// The report's `apply-status-update` span: a child of the span that sent
/// it, linked to the message that carried it when that is another span.
fn report_span(received: ReceivedReport) -> (StatusUpdate, tracing::Span) {
    let ReceivedReport {
        report,
        received_by,
    } = received;
    let update = report.message();
    let span = tracing::info_span!(
        "apply-status-update",
        task.id = TaskIdText::new(update.id).as_str(),
        task.status = update.status.as_str(),
        task.attempt = int_attribute(update.attempt),
    );
    let elsewhere = report.context().span().span_context().span_id() != received_by.span_id();
    let (update, span) = report.into_parts(span);
    if elsewhere {
        span.add_link(received_by);
    }
    (update, span)
}

fn log_outcome(span: &tracing::Span, update: &StatusUpdate, outcome: UpdateOutcome) {
    match outcome {
        UpdateOutcome::Applied => {
            tracing::debug!(parent: span, task.id = %update.id, status = update.status.as_str(), "status updated")
        }
        UpdateOutcome::UnknownTask => tracing::warn!(
            parent: span,
            task.id = %update.id,
            "status report for an unknown task (never accepted here, or past its retention); dropped"
        ),
        // Logged where it happened.
        UpdateOutcome::Rejected => {}
        UpdateOutcome::Ignored => tracing::debug!(
            parent: span,
            task.id = %update.id,
            status = update.status.as_str(),
            "stale or duplicate status report ignored"
        ),
    }
}
