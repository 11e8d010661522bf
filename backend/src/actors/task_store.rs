//! The backend's record of every task and its status.
//!
//! Bounded: it keeps the most recent `max_tasks` tasks, and fewer if their
//! results together pass `max_bytes` (echo results can be 64 KiB each); the
//! oldest are forgotten first (their `GET` becomes 404). Status updates are idempotent and
//! never move a task backwards, so redelivered or reordered reports cannot
//! corrupt it.

use std::collections::{HashMap, VecDeque};

use actix::{Actor, Context, Handler, Message};
use serde::Serialize;
use serde_json::Value;
use shared::{
    task::{StatusUpdate, TaskStatus, TaskType},
    Traced,
};
use uuid::Uuid;

/// A task as `GET /api/tasks/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub result: Option<Value>,
    /// Error of a failed task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TaskRecord {
    /// A freshly accepted task.
    pub fn queued(id: Uuid, kind: TaskType) -> Self {
        Self {
            id,
            kind,
            status: TaskStatus::Queued,
            attempts: 0,
            result: None,
            error: None,
        }
    }

    /// Memory held by this record, in bytes, estimated on the high side: the
    /// map entry and the record itself, and a parsed JSON result at twice its
    /// text size (each JSON value is a 32-byte enum plus its heap data).
    fn footprint(&self) -> usize {
        const FIXED: usize = 256;
        let result = self
            .result
            .as_ref()
            .map_or(0, |r| 2 * serde_json::to_string(r).map_or(0, |s| s.len()));
        FIXED + result + self.error.as_ref().map_or(0, String::len)
    }

    fn apply(&mut self, update: StatusUpdate) -> UpdateOutcome {
        if self.status.is_terminal() {
            return UpdateOutcome::Ignored("task already finished");
        }
        if update.attempt < self.attempts {
            return UpdateOutcome::Ignored("report of an earlier attempt");
        }
        self.attempts = update.attempt;
        match update.status {
            TaskStatus::Queued | TaskStatus::Processing => {
                self.status = update.status;
                // Between attempts the last attempt's error stays visible.
                if update.error.is_some() {
                    self.error = update.error;
                }
            }
            TaskStatus::Succeeded => {
                self.status = TaskStatus::Succeeded;
                self.result = update.result;
                self.error = None;
            }
            TaskStatus::Failed => {
                self.status = TaskStatus::Failed;
                self.error = update.error;
            }
        }
        UpdateOutcome::Applied
    }
}

/// What became of a status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, actix::MessageResponse)]
pub enum UpdateOutcome {
    /// The record changed.
    Applied,
    /// No such task (never seen, or evicted).
    UnknownTask,
    /// Stale or duplicate; the record is unchanged.
    Ignored(&'static str),
}

/// Add a queued task.
pub struct InsertTask(pub TaskRecord);
impl Message for InsertTask {
    type Result = ();
}

/// Forget a task (its publish was not confirmed).
pub struct RemoveTask(pub Uuid);
impl Message for RemoveTask {
    type Result = ();
}

/// Look a task up.
pub struct GetTask(pub Uuid);
impl Message for GetTask {
    type Result = Option<TaskRecord>;
}

/// Apply a worker's status report.
pub struct ApplyStatusUpdate(pub StatusUpdate);
impl Message for ApplyStatusUpdate {
    type Result = UpdateOutcome;
}

/// How much the store may hold.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Most tasks kept.
    pub max_tasks: usize,
    /// Most bytes (approximate) their records may take together.
    pub max_bytes: usize,
}

impl Default for StoreLimits {
    /// The last 100,000 tasks, within 512 MiB.
    fn default() -> Self {
        Self {
            max_tasks: 100_000,
            max_bytes: 512 * 1024 * 1024,
        }
    }
}

/// The actor holding the task records.
pub struct TaskStore {
    tasks: HashMap<Uuid, TaskRecord>,
    // Insertion order, for evicting the oldest; may hold ids already removed.
    order: VecDeque<Uuid>,
    bytes: usize,
    limits: StoreLimits,
}

impl TaskStore {
    /// An empty store within `limits`.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            tasks: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            limits: StoreLimits {
                max_tasks: limits.max_tasks.max(1),
                max_bytes: limits.max_bytes,
            },
        }
    }

    /// Forgets the oldest tasks until the store is within its limits.
    fn evict(&mut self) {
        while self.tasks.len() > self.limits.max_tasks || self.bytes > self.limits.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(record) = self.tasks.remove(&oldest) {
                self.bytes -= record.footprint();
            }
        }
        // Ids of removed tasks linger in `order`; compact before they pile up.
        if self.order.len() > 2 * self.tasks.len() + 64 {
            let tasks = &self.tasks;
            self.order.retain(|id| tasks.contains_key(id));
        }
    }
}

impl Actor for TaskStore {
    type Context = Context<Self>;
}

impl Handler<Traced<InsertTask>> for TaskStore {
    type Result = ();

    fn handle(&mut self, msg: Traced<InsertTask>, _: &mut Self::Context) {
        let (InsertTask(record), span) = msg.into_parts(tracing::info_span!("store-task"));
        let _entered = span.enter();
        self.bytes += record.footprint();
        self.order.push_back(record.id);
        if let Some(replaced) = self.tasks.insert(record.id, record) {
            self.bytes -= replaced.footprint();
        }
        self.evict();
    }
}

impl Handler<Traced<RemoveTask>> for TaskStore {
    type Result = ();

    fn handle(&mut self, msg: Traced<RemoveTask>, _: &mut Self::Context) {
        let (RemoveTask(id), span) = msg.into_parts(tracing::info_span!("remove-task"));
        let _entered = span.enter();
        if let Some(record) = self.tasks.remove(&id) {
            self.bytes -= record.footprint();
        }
        // Stale ids in `order` are skipped at eviction; drop the common case now.
        if self.order.back() == Some(&id) {
            self.order.pop_back();
        }
    }
}

impl Handler<Traced<GetTask>> for TaskStore {
    type Result = Option<TaskRecord>;

    fn handle(&mut self, msg: Traced<GetTask>, _: &mut Self::Context) -> Self::Result {
        let id = msg.message().0;
        let (_, span) = msg.into_parts(tracing::info_span!("get-task", task.id = %id));
        let _entered = span.enter();
        self.tasks.get(&id).cloned()
    }
}

impl Handler<Traced<ApplyStatusUpdate>> for TaskStore {
    type Result = UpdateOutcome;

    fn handle(&mut self, msg: Traced<ApplyStatusUpdate>, _: &mut Self::Context) -> UpdateOutcome {
        let update = &msg.message().0;
        let span = tracing::info_span!(
            "apply-status-update",
            task.id = %update.id,
            task.status = update.status.as_str(),
            task.attempt = update.attempt,
        );
        let (ApplyStatusUpdate(update), span) = msg.into_parts(span);
        let _entered = span.enter();
        let id = update.id;
        let outcome = match self.tasks.get_mut(&id) {
            Some(record) => {
                let before = record.footprint();
                let outcome = record.apply(update);
                self.bytes = self.bytes - before + record.footprint();
                outcome
            }
            None => UpdateOutcome::UnknownTask,
        };
        self.evict();
        match outcome {
            UpdateOutcome::Applied => tracing::debug!(task.id = %id, "status updated"),
            UpdateOutcome::UnknownTask => {
                tracing::warn!(task.id = %id, "status report for an unknown (or evicted) task")
            }
            UpdateOutcome::Ignored(why) => {
                tracing::debug!(task.id = %id, why, "status report ignored")
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: Uuid, status: TaskStatus, attempt: u32) -> StatusUpdate {
        StatusUpdate {
            id,
            status,
            attempt,
            result: (status == TaskStatus::Succeeded).then(|| serde_json::json!({"ok": true})),
            error: (status == TaskStatus::Failed).then(|| "boom".to_string()),
        }
    }

    #[test]
    fn a_succeeded_task_never_goes_back_to_processing() {
        let id = Uuid::new_v4();
        let mut record = TaskRecord::queued(id, TaskType::Echo);
        assert_eq!(
            record.apply(update(id, TaskStatus::Processing, 1)),
            UpdateOutcome::Applied
        );
        assert_eq!(
            record.apply(update(id, TaskStatus::Succeeded, 1)),
            UpdateOutcome::Applied
        );
        // a redelivered message reports processing again
        assert!(matches!(
            record.apply(update(id, TaskStatus::Processing, 2)),
            UpdateOutcome::Ignored(_)
        ));
        assert_eq!(record.status, TaskStatus::Succeeded);
        assert_eq!(record.attempts, 1);
        assert_eq!(record.result, Some(serde_json::json!({"ok": true})));
    }

    #[test]
    fn reports_of_an_earlier_attempt_are_ignored() {
        let id = Uuid::new_v4();
        let mut record = TaskRecord::queued(id, TaskType::Sleep);
        record.apply(update(id, TaskStatus::Processing, 2));
        assert!(matches!(
            record.apply(update(id, TaskStatus::Processing, 1)),
            UpdateOutcome::Ignored(_)
        ));
        assert_eq!(record.attempts, 2);
    }

    #[test]
    fn the_store_forgets_the_oldest_tasks_beyond_its_capacity() {
        actix::System::new().block_on(async {
            use actix::Actor;
            use shared::TracedSend;
            let store = TaskStore::new(StoreLimits {
                max_tasks: 2,
                max_bytes: usize::MAX,
            })
            .start();
            let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
            for id in &ids {
                store
                    .send_traced(InsertTask(TaskRecord::queued(*id, TaskType::Echo)))
                    .await
                    .unwrap();
            }
            assert_eq!(store.send_traced(GetTask(ids[0])).await.unwrap(), None);
            assert!(store.send_traced(GetTask(ids[1])).await.unwrap().is_some());
            assert!(store.send_traced(GetTask(ids[2])).await.unwrap().is_some());
        });
    }

    #[test]
    fn by_default_the_last_100_000_tasks_are_kept_and_the_one_before_is_forgotten() {
        let mut store = TaskStore::new(StoreLimits::default());
        let ids: Vec<Uuid> = (0..100_001).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            let record = TaskRecord::queued(*id, TaskType::Sleep);
            store.bytes += record.footprint();
            store.order.push_back(*id);
            store.tasks.insert(*id, record);
            store.evict();
        }
        assert_eq!(store.tasks.len(), 100_000);
        assert!(!store.tasks.contains_key(&ids[0]));
        assert!(store.tasks.contains_key(&ids[1]));
        assert!(store.order.len() <= 2 * 100_000 + 64);
        assert!(store.bytes < StoreLimits::default().max_bytes);
    }

    #[test]
    fn large_results_make_the_store_forget_old_tasks_sooner() {
        actix::System::new().block_on(async {
            use actix::Actor;
            use shared::TracedSend;
            let store = TaskStore::new(StoreLimits {
                max_tasks: 100,
                max_bytes: 5_000,
            })
            .start();
            let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
            for id in &ids {
                store
                    .send_traced(InsertTask(TaskRecord::queued(*id, TaskType::Echo)))
                    .await
                    .unwrap();
                let mut done = update(*id, TaskStatus::Succeeded, 1);
                done.result = Some(serde_json::json!({"blob": "x".repeat(1_000)}));
                store.send_traced(ApplyStatusUpdate(done)).await.unwrap();
            }
            // ~2.3 KB each: the second result pushed the first one out.
            assert_eq!(store.send_traced(GetTask(ids[0])).await.unwrap(), None);
            let kept = store.send_traced(GetTask(ids[2])).await.unwrap().unwrap();
            assert_eq!(kept.status, TaskStatus::Succeeded);
        });
    }
}
