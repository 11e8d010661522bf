//! The `tasks` table: every statement the backend runs on it, and how a row
//! becomes a [`TaskRecord`]. Migrations: `backend/migrations/`.
//!
//! A status report is applied as one conditional `UPDATE`: the row changes
//! only if the report is newer than what the row holds, ordered by (attempt,
//! stage: `processing` < `queued` for a retry < `succeeded`/`failed`). So
//! reports are idempotent and never move a task backwards, however they are
//! duplicated, reordered or spread over replicas; no read-modify-write.

use std::{
    collections::HashSet,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use opentelemetry::trace::SpanContext;
use serde::Serialize;
use serde_json::Value;
use shared::{
    db::{Database, DbError, Statement},
    task::{StatusUpdate, TaskStatus, TaskType},
};
use sqlx::{any::AnyRow, AnyConnection, Row};
use uuid::Uuid;

/// A task as `GET /api/tasks/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TaskRecord {
    /// Task id.
    pub id: Uuid,
    /// Task type.
    #[serde(rename = "type")]
    pub kind: TaskType,
    /// Current status.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Result of a succeeded task.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Error of a failed task (or of the last attempt, while it is retried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What became of a status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The row changed.
    Applied,
    /// No such task (never accepted here, or past its retention).
    UnknownTask,
    /// Stale or duplicate: the row already holds this or something newer.
    Ignored,
    /// The database refused this report for good (it would be refused on
    /// every redelivery): logged and dropped.
    Rejected,
}

/// Most tasks one INSERT statement adds.
pub const MAX_INSERT_BATCH: usize = 64;

/// The row counts the multi-row statements are built for: each count up to
/// 8, then steps of 1.33× to 1.5×. A batch runs as the next size up, padded
/// with rows of NULLs that insert and match nothing. Why: sqlx caches up to
/// 100 prepared statements per connection, and SQLite holds about 70 KiB for
/// a prepared 128-row UPDATE; one statement per batch size (192 of them)
/// held megabytes in the writer connection and, under load, evicted one
/// another (BENCHMARKS.md).
const BATCH_SIZES: [usize; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64, 96, 128];

/// Whether `rows` is one of [`BATCH_SIZES`].
const fn is_batch_size(rows: usize) -> bool {
    let mut i = 0;
    while i < BATCH_SIZES.len() {
        if BATCH_SIZES[i] == rows {
            return true;
        }
        i += 1;
    }
    false
}

// A largest batch between two sizes would run as the smaller statement.
const _: () = assert!(is_batch_size(MAX_INSERT_BATCH) && is_batch_size(MAX_UPDATE_BATCH));

/// The statement for each of [`BATCH_SIZES`] up to `max`, built once by
/// `build(rows)`; `for_rows(rows)` picks the one a batch of `rows` runs as.
struct SizedStatements(Vec<(usize, &'static Statement)>);

impl SizedStatements {
    fn build(max: usize, build: impl Fn(usize) -> &'static Statement) -> Self {
        Self(
            BATCH_SIZES
                .iter()
                .filter(|&&size| size <= max)
                .map(|&size| (size, build(size)))
                .collect(),
        )
    }

    /// The statement for a batch of `rows` (at most the `max` it was built
    /// for) and how many rows it holds.
    fn for_rows(&self, rows: usize) -> (usize, &'static Statement) {
        let largest = self.0[self.0.len() - 1];
        self.0
            .iter()
            .copied()
            .find(|&(size, _)| size >= rows)
            .unwrap_or(largest)
    }
}

/// `INSERT INTO tasks ... SELECT ... FROM (VALUES ($2, $3), ...)` for a
/// batch of `rows` tasks (1 to [`MAX_INSERT_BATCH`]); `$1` is the time. The
/// rows without an id are padding.
fn insert_statement(rows: usize) -> (usize, &'static Statement) {
    static STATEMENTS: OnceLock<SizedStatements> = OnceLock::new();
    STATEMENTS
        .get_or_init(|| {
            SizedStatements::build(MAX_INSERT_BATCH, |rows| {
                let values: Vec<String> = (0..rows)
                    .map(|row| format!("(${}, ${})", 2 * row + 2, 2 * row + 3))
                    .collect();
                Statement::leak(
                    "INSERT",
                    "tasks",
                    format!(
                        "INSERT INTO tasks (id, type, status, attempts, created_at, updated_at) \
                         SELECT v.column1, v.column2, 'queued', 0, $1, $1 FROM (VALUES {}) AS v \
                         WHERE v.column1 IS NOT NULL",
                        values.join(", ")
                    ),
                )
            })
        })
        .for_rows(rows)
}

const SELECT: Statement = Statement {
    operation: "SELECT",
    collection: "tasks",
    text: "SELECT type, status, attempts, result, error FROM tasks WHERE id = $1",
};

const DELETE: Statement = Statement {
    operation: "DELETE",
    collection: "tasks",
    text: "DELETE FROM tasks WHERE id = $1",
};

/// `$7` is the report's stage, [`stage`]; the CASE gives the row's.
const APPLY_STATUS: Statement = Statement {
    operation: "UPDATE",
    collection: "tasks",
    text: "UPDATE tasks SET status = $2, attempts = $3, \
           result = CASE WHEN $2 = 'succeeded' THEN $4 ELSE result END, \
           error = CASE WHEN $2 = 'succeeded' THEN NULL ELSE COALESCE($5, error) END, \
           updated_at = $6 \
           WHERE id = $1 AND status NOT IN ('succeeded', 'failed') \
           AND (attempts < $3 OR (attempts = $3 AND \
           (CASE status WHEN 'processing' THEN 1 WHEN 'queued' THEN 2 ELSE 3 END) < $7))",
};

/// Most reports one multi-row UPDATE applies.
pub const MAX_UPDATE_BATCH: usize = 128;

/// Parameters of one report in [`apply_many_statement`]: id, status,
/// attempt, result, error.
const APPLY_MANY_COLUMNS: usize = 5;

/// [`APPLY_STATUS`] for a batch of `rows` reports of distinct tasks (1 to
/// [`MAX_UPDATE_BATCH`]) in one statement: the same conditions, against a
/// `VALUES` list whose rows without an id are padding ([`BATCH_SIZES`]);
/// `$1` is the time; `RETURNING` names the rows it changed. The report's
/// stage is worked out in SQL rather than bound: on SQLite, sqlx asks for
/// each parameter's name, which SQLite finds by scanning the statement's
/// list of names, so binding costs grow with the square of the parameter
/// count (BENCHMARKS.md).
fn apply_many_statement(rows: usize) -> (usize, &'static Statement) {
    static STATEMENTS: OnceLock<SizedStatements> = OnceLock::new();
    STATEMENTS
        .get_or_init(|| {
            SizedStatements::build(MAX_UPDATE_BATCH, |rows| {
                let values: Vec<String> = (0..rows)
                    .map(|row| {
                        let params: Vec<String> = (0..APPLY_MANY_COLUMNS)
                            .map(|column| format!("${}", APPLY_MANY_COLUMNS * row + column + 2))
                            .collect();
                        format!("({})", params.join(", "))
                    })
                    .collect();
                Statement::leak(
                    "UPDATE",
                    "tasks",
                    format!(
                        "UPDATE tasks SET status = v.column2, attempts = v.column3, \
                         result = CASE WHEN v.column2 = 'succeeded' THEN v.column4 ELSE tasks.result END, \
                         error = CASE WHEN v.column2 = 'succeeded' THEN NULL ELSE COALESCE(v.column5, tasks.error) END, \
                         updated_at = $1 \
                         FROM (VALUES {}) AS v \
                         WHERE tasks.id = v.column1 AND tasks.status NOT IN ('succeeded', 'failed') \
                         AND (tasks.attempts < v.column3 OR (tasks.attempts = v.column3 AND \
                         {} < {})) \
                         RETURNING tasks.id",
                        values.join(", "),
                        stage_sql("tasks.status"),
                        stage_sql("v.column2"),
                    ),
                )
            })
        })
        .for_rows(rows)
}

/// [`stage`] in SQL, of the status in `column`.
fn stage_sql(column: &str) -> String {
    format!("(CASE {column} WHEN 'processing' THEN 1 WHEN 'queued' THEN 2 ELSE 3 END)")
}

/// Deletes a bounded chunk of expired tasks, so that one clean-up never
/// holds the (SQLite) write lock for long.
const DELETE_EXPIRED: Statement = Statement {
    operation: "DELETE",
    collection: "tasks",
    text: "DELETE FROM tasks WHERE id IN \
           (SELECT id FROM tasks WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
};

/// Rows one clean-up statement deletes at most.
pub const EXPIRY_CHUNK: i64 = 1_000;

/// Where a status stands within one attempt: mirrors the CASE of
/// [`APPLY_STATUS`] and [`stage_sql`].
fn stage(status: TaskStatus) -> i64 {
    match status {
        TaskStatus::Processing => 1,
        TaskStatus::Queued => 2,
        TaskStatus::Succeeded | TaskStatus::Failed => 3,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Adds a task as `queued`.
pub async fn insert(db: &Database, id: Uuid, kind: TaskType) -> Result<(), DbError> {
    insert_many(db, &[(id, kind)], Vec::new()).await
}

/// Adds up to [`MAX_INSERT_BATCH`] tasks as `queued` in one statement; its
/// span is a child of the current span and linked to `links` (the spans of
/// the other tasks it stores).
pub async fn insert_many(
    db: &Database,
    tasks: &[(Uuid, TaskType)],
    links: Vec<SpanContext>,
) -> Result<(), DbError> {
    debug_assert!((1..=MAX_INSERT_BATCH).contains(&tasks.len()));
    let (rows, statement) = insert_statement(tasks.len());
    let mut query = db.query(statement).linked_to(links).bind(now_ms());
    for (id, kind) in tasks {
        query = query.bind(id.to_string()).bind(kind.as_str());
    }
    for _ in tasks.len()..rows {
        query = query.bind(None::<String>).bind(None::<String>);
    }
    query.execute(db.writer()).await.map(|_| ())
}

/// Removes a task (its publish was not confirmed).
pub async fn delete(db: &Database, id: Uuid) -> Result<(), DbError> {
    db.query(&DELETE)
        .bind(id.to_string())
        .execute(db.writer())
        .await
        .map(|_| ())
}

/// Reads a task.
pub async fn select(db: &Database, id: Uuid) -> Result<Option<TaskRecord>, DbError> {
    let row = db
        .query(&SELECT)
        .bind(id.to_string())
        .fetch_optional(db.reader())
        .await?;
    row.map(|row| record(id, &row)).transpose()
}

/// Applies one report on `conn` (a transaction that applies a batch).
pub async fn apply(
    db: &Database,
    conn: &mut AnyConnection,
    update: &StatusUpdate,
) -> Result<UpdateOutcome, DbError> {
    let changed = db
        .query(&APPLY_STATUS)
        .bind(update.id.to_string())
        .bind(update.status.as_str())
        .bind(i64::from(update.attempt))
        .bind(stored_result(update))
        .bind(update.error.clone())
        .bind(now_ms())
        .bind(stage(update.status))
        .execute(&mut *conn)
        .await?;
    if changed > 0 {
        return Ok(UpdateOutcome::Applied);
    }
    not_applied(db, conn, update.id).await
}

/// Applies reports of distinct tasks (up to [`MAX_UPDATE_BATCH`]) on `conn`
/// in one statement, whose span is a child of the current span and linked to
/// `links`; the ids of the tasks it changed. (Two reports of one task in one
/// statement would race for the row: give those to [`apply`], in order.)
pub async fn apply_many(
    db: &Database,
    conn: &mut AnyConnection,
    updates: &[&StatusUpdate],
    links: Vec<SpanContext>,
) -> Result<HashSet<Uuid>, DbError> {
    debug_assert!((1..=MAX_UPDATE_BATCH).contains(&updates.len()));
    let (rows, statement) = apply_many_statement(updates.len());
    let mut query = db.query(statement).linked_to(links).bind(now_ms());
    for update in updates {
        query = query
            .bind(update.id.to_string())
            .bind(update.status.as_str())
            .bind(i64::from(update.attempt))
            .bind(stored_result(update))
            .bind(update.error.clone());
    }
    for _ in updates.len()..rows {
        query = query
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<i64>)
            .bind(None::<String>)
            .bind(None::<String>);
    }
    let changed = query.fetch_all(&mut *conn).await?;
    changed
        .iter()
        .map(|row| {
            let id: String = row.try_get(0)?;
            Uuid::parse_str(&id).map_err(|e| {
                DbError::Sqlx(sqlx::Error::Decode(format!("task id {id:?}: {e}").into()))
            })
        })
        .collect()
}

/// Why a report changed nothing: the task is unknown, or the report stale.
/// (Rare: duplicates and reordering; worth a read to log the right thing.)
pub async fn not_applied(
    db: &Database,
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<UpdateOutcome, DbError> {
    let exists = db
        .query(&SELECT)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    Ok(if exists {
        UpdateOutcome::Ignored
    } else {
        UpdateOutcome::UnknownTask
    })
}

/// The result column's value: a succeeded task's result as JSON text.
fn stored_result(update: &StatusUpdate) -> Option<String> {
    match (&update.result, update.status) {
        (Some(result), TaskStatus::Succeeded) => Some(result.to_string()),
        _ => None,
    }
}

/// Deletes tasks accepted more than `retention` ago; how many.
pub async fn delete_expired(db: &Database, retention: Duration) -> Result<u64, DbError> {
    let cutoff = now_ms() - retention.as_millis() as i64;
    let mut deleted = 0;
    loop {
        let chunk = db
            .query(&DELETE_EXPIRED)
            .bind(cutoff)
            .bind(EXPIRY_CHUNK)
            .execute(db.writer())
            .await?;
        deleted += chunk;
        if chunk < EXPIRY_CHUNK as u64 {
            return Ok(deleted);
        }
    }
}

fn record(id: Uuid, row: &AnyRow) -> Result<TaskRecord, DbError> {
    let corrupt = |what: String| DbError::Sqlx(sqlx::Error::Decode(what.into()));
    let kind: String = row.try_get("type")?;
    let status: String = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    let result: Option<String> = row.try_get("result")?;
    Ok(TaskRecord {
        id,
        kind: kind
            .parse()
            .map_err(|_| corrupt(format!("task {id} has an unknown type {kind:?}")))?,
        status: TaskStatus::from_wire(&status)
            .ok_or_else(|| corrupt(format!("task {id} has an unknown status {status:?}")))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        result: result
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| corrupt(format!("task {id} has a result that is not JSON: {e}")))?,
        error: row.try_get("error")?,
    })
}
