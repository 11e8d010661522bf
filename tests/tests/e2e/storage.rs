//! The task table's rules on both databases: status reports are idempotent
//! and never move a task backwards, however they are duplicated or
//! reordered; expired tasks are deleted; migrations can run again (and
//! concurrently) without harm; the catalog is seeded.

use std::{collections::HashSet, time::Duration};

use backend::tasks_table::{self, UpdateOutcome};
use e2e_tests::{DbKind, TestDatabase};
use shared::{
    db::{Database, DatabaseSettings},
    task::{StatusUpdate, TaskStatus, TaskType},
};
use uuid::Uuid;

async fn connect(test: &TestDatabase) -> Database {
    let settings = DatabaseSettings::for_url(test.url()).unwrap();
    Database::connect(&settings, &backend::MIGRATIONS)
        .await
        .unwrap()
}

fn report(id: Uuid, status: TaskStatus, attempt: u32) -> StatusUpdate {
    StatusUpdate {
        id,
        status,
        attempt,
        result: (status == TaskStatus::Succeeded).then(|| serde_json::json!({"ok": true})),
        error: match status {
            TaskStatus::Failed => Some("boom".to_string()),
            TaskStatus::Queued => Some(format!("attempt {attempt} failed")),
            _ => None,
        },
    }
}

/// Applies `reports` in one transaction, as the backend applies a batch.
async fn apply_batch(db: &Database, reports: &[StatusUpdate]) -> Vec<UpdateOutcome> {
    let mut tx = db.begin_write().await.unwrap();
    let mut outcomes = Vec::new();
    for update in reports {
        outcomes.push(tasks_table::apply(db, &mut tx, update).await.unwrap());
    }
    db.commit(tx).await.unwrap();
    outcomes
}

/// Applies reports of distinct tasks with one `apply_many`, committed; the
/// ids of the tasks it changed.
async fn apply_many_committed(db: &Database, reports: &[StatusUpdate]) -> HashSet<Uuid> {
    let updates: Vec<&StatusUpdate> = reports.iter().collect();
    let mut tx = db.begin_write().await.unwrap();
    let applied = tasks_table::apply_many(db, &mut tx, &updates, Vec::new())
        .await
        .unwrap();
    db.commit(tx).await.unwrap();
    applied
}

async fn on_both(test: impl AsyncFn(Database)) {
    for kind in [DbKind::Sqlite, DbKind::Postgres] {
        let database = TestDatabase::create(kind, "storage").await;
        test(connect(&database).await).await;
    }
}

#[tokio::test]
async fn a_finished_task_never_goes_back_and_duplicates_change_nothing() {
    on_both(async |db| {
        use TaskStatus::*;
        let id = Uuid::new_v4();
        tasks_table::insert(&db, id, TaskType::Echo).await.unwrap();
        let outcomes = apply_batch(
            &db,
            &[
                report(id, Processing, 1),
                report(id, Succeeded, 1),
                // a redelivered task reports again
                report(id, Processing, 2),
                report(id, Succeeded, 1),
            ],
        )
        .await;
        use UpdateOutcome::*;
        assert_eq!(outcomes, [Applied, Applied, Ignored, Ignored]);
        let task = tasks_table::select(&db, id).await.unwrap().unwrap();
        assert_eq!((task.status, task.attempts), (Succeeded, 1));
        assert_eq!(task.result, Some(serde_json::json!({"ok": true})));
    })
    .await;
}

#[tokio::test]
async fn reports_that_arrive_out_of_order_end_in_the_true_final_state() {
    on_both(async |db| {
        use TaskStatus::*;
        let id = Uuid::new_v4();
        tasks_table::insert(&db, id, TaskType::Sleep).await.unwrap();
        // Attempt 1 failed and was retried, attempt 2 is running; the reports
        // arrive backwards (as with two replicas consuming in parallel).
        let outcomes = apply_batch(
            &db,
            &[
                report(id, Processing, 2),
                report(id, Queued, 1),
                report(id, Processing, 1),
            ],
        )
        .await;
        use UpdateOutcome::*;
        assert_eq!(outcomes, [Applied, Ignored, Ignored]);
        let running = tasks_table::select(&db, id).await.unwrap().unwrap();
        assert_eq!((running.status, running.attempts), (Processing, 2));
        apply_batch(&db, &[report(id, Succeeded, 2)]).await;
        let done = tasks_table::select(&db, id).await.unwrap().unwrap();
        assert_eq!((done.status, done.attempts), (Succeeded, 2));
        assert_eq!(
            done.error, None,
            "a success clears the last attempt's error"
        );
    })
    .await;
}

#[tokio::test]
async fn between_attempts_the_last_error_stays_visible_until_the_outcome() {
    on_both(async |db| {
        use TaskStatus::*;
        let id = Uuid::new_v4();
        tasks_table::insert(&db, id, TaskType::Echo).await.unwrap();
        apply_batch(
            &db,
            &[
                report(id, Processing, 1),
                report(id, Queued, 1),
                report(id, Processing, 2),
            ],
        )
        .await;
        let task = tasks_table::select(&db, id).await.unwrap().unwrap();
        assert_eq!((task.status, task.attempts), (Processing, 2));
        assert_eq!(task.error.as_deref(), Some("attempt 1 failed"));
        apply_batch(&db, &[report(id, Failed, 2)]).await;
        let task = tasks_table::select(&db, id).await.unwrap().unwrap();
        assert_eq!(task.status, Failed);
        assert_eq!(task.error.as_deref(), Some("boom"));
    })
    .await;
}

#[tokio::test]
async fn unknown_tasks_are_told_apart_and_expired_tasks_are_deleted() {
    on_both(async |db| {
        let stranger = Uuid::new_v4();
        assert_eq!(
            apply_batch(&db, &[report(stranger, TaskStatus::Processing, 1)]).await,
            [UpdateOutcome::UnknownTask]
        );
        let old = Uuid::new_v4();
        tasks_table::insert(&db, old, TaskType::Echo).await.unwrap();
        let recent = Uuid::new_v4();
        tasks_table::insert(&db, recent, TaskType::Echo)
            .await
            .unwrap();
        // `old` made an hour old, so that no scheduling delay on a busy
        // machine can age `recent` past the retention (a sleep of 800 ms
        // against a retention of 400 ms once did).
        sqlx::query("UPDATE tasks SET created_at = created_at - $1 WHERE id = $2")
            .bind(3_600_000_i64)
            .bind(old.to_string())
            .execute(db.writer())
            .await
            .unwrap();
        let deleted = tasks_table::delete_expired(&db, Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        assert_eq!(tasks_table::select(&db, old).await.unwrap(), None);
        assert!(tasks_table::select(&db, recent).await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn migrations_run_again_and_concurrently_without_harm() {
    for kind in [DbKind::Sqlite, DbKind::Postgres] {
        let database = TestDatabase::create(kind, "migrations").await;
        // Two replicas starting at once, then a restart.
        let (first, second) = tokio::join!(connect(&database), connect(&database));
        let id = Uuid::new_v4();
        tasks_table::insert(&first, id, TaskType::Hash)
            .await
            .unwrap();
        assert!(tasks_table::select(&second, id).await.unwrap().is_some());
        let again = connect(&database).await;
        assert_eq!(
            tasks_table::select(&again, id).await.unwrap().unwrap().kind,
            TaskType::Hash,
            "{kind:?}: the data survived the second migration run"
        );
    }
}

#[tokio::test]
async fn the_catalog_is_seeded_once_and_paged_on_both_databases() {
    for kind in [DbKind::Sqlite, DbKind::Postgres] {
        let database = TestDatabase::create(kind, "catalog").await;
        let settings = DatabaseSettings::for_url(database.url()).unwrap();
        let db = Database::connect(&settings, &product::MIGRATIONS)
            .await
            .unwrap();
        // A restart must not seed the catalog twice.
        let db_again = Database::connect(&settings, &product::MIGRATIONS)
            .await
            .unwrap();
        let all = product::products_table::list(&db_again, None, 100, 0)
            .await
            .unwrap();
        assert_eq!((all.total, all.items.len()), (24, 24), "{kind:?}");
        let books = product::products_table::list(&db, Some("books".into()), 2, 1)
            .await
            .unwrap();
        assert_eq!(books.total, 5);
        let names: Vec<&str> = books.items.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "The Rust Programming Language",
                "Distributed Systems Observability"
            ]
        );
        let past_the_end = product::products_table::list(&db, Some("home".into()), 5, 50)
            .await
            .unwrap();
        assert_eq!((past_the_end.total, past_the_end.items.len()), (5, 0));
        let monitor = product::products_table::get(&db, 3).await.unwrap().unwrap();
        assert_eq!(
            (monitor.name.as_str(), monitor.price),
            ("27\" Monitor", 229.5)
        );
        assert_eq!(product::products_table::get(&db, 999).await.unwrap(), None);
    }
}

#[tokio::test]
async fn many_tasks_are_inserted_and_updated_in_one_statement_with_the_same_rules() {
    on_both(async |db| {
        use TaskStatus::*;
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let tasks: Vec<(Uuid, TaskType)> = ids.iter().map(|id| (*id, TaskType::Echo)).collect();
        tasks_table::insert_many(&db, &tasks, Vec::new())
            .await
            .unwrap();
        // ids[4] already finished: its report below is stale.
        apply_batch(&db, &[report(ids[4], Succeeded, 1)]).await;
        let stranger = Uuid::new_v4();
        let batch = [
            report(ids[0], Processing, 1),
            report(ids[1], Succeeded, 1),
            report(ids[2], Failed, 1),
            report(ids[3], Queued, 1),
            report(ids[4], Processing, 2),
            report(stranger, Succeeded, 1),
        ];
        let applied = apply_many_committed(&db, &batch).await;
        let expected: HashSet<Uuid> = ids[..4].iter().copied().collect();
        assert_eq!(applied, expected);
        let status = async |id: Uuid| tasks_table::select(&db, id).await.unwrap().unwrap();
        assert_eq!(status(ids[0]).await.status, Processing);
        let done = status(ids[1]).await;
        assert_eq!(
            (done.status, done.result),
            (Succeeded, Some(serde_json::json!({"ok": true})))
        );
        assert_eq!(status(ids[2]).await.error.as_deref(), Some("boom"));
        assert_eq!(
            status(ids[3]).await.error.as_deref(),
            Some("attempt 1 failed")
        );
        assert_eq!(
            status(ids[4]).await.status,
            Succeeded,
            "a stale report changed nothing"
        );
        assert_eq!(tasks_table::select(&db, stranger).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn batches_of_every_size_up_to_the_largest_store_and_update_exactly_their_tasks() {
    on_both(async |db| {
        // Sizes that run as a larger statement (padded) and sizes that fit one.
        for size in [1, 8, 9, 13, 47, tasks_table::MAX_INSERT_BATCH] {
            let ids: Vec<Uuid> = (0..size).map(|_| Uuid::new_v4()).collect();
            let tasks: Vec<(Uuid, TaskType)> = ids.iter().map(|id| (*id, TaskType::Hash)).collect();
            tasks_table::insert_many(&db, &tasks, Vec::new())
                .await
                .unwrap();
            let reports: Vec<StatusUpdate> = ids
                .iter()
                .map(|id| report(*id, TaskStatus::Succeeded, 1))
                .collect();
            let applied = apply_many_committed(&db, &reports).await;
            assert_eq!(applied.len(), size, "batch of {size}");
            for id in &ids {
                assert!(applied.contains(id));
                let task = tasks_table::select(&db, *id).await.unwrap().unwrap();
                assert_eq!(
                    (task.kind, task.status),
                    (TaskType::Hash, TaskStatus::Succeeded)
                );
            }
        }
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
            .fetch_one(db.writer())
            .await
            .unwrap();
        assert_eq!(rows, 1 + 8 + 9 + 13 + 47 + 64, "every task stored once");
        // The largest batch of reports, half of them of tasks the table does not hold.
        let ids: Vec<Uuid> = (0..tasks_table::MAX_INSERT_BATCH)
            .map(|_| Uuid::new_v4())
            .collect();
        let tasks: Vec<(Uuid, TaskType)> = ids.iter().map(|id| (*id, TaskType::Echo)).collect();
        tasks_table::insert_many(&db, &tasks, Vec::new())
            .await
            .unwrap();
        let mut reports: Vec<StatusUpdate> = ids
            .iter()
            .map(|id| report(*id, TaskStatus::Processing, 1))
            .collect();
        reports.extend(
            (reports.len()..tasks_table::MAX_UPDATE_BATCH)
                .map(|_| report(Uuid::new_v4(), TaskStatus::Processing, 1)),
        );
        let applied = apply_many_committed(&db, &reports).await;
        assert_eq!(applied, ids.iter().copied().collect());
        // Within one attempt a report applies only if it is further along:
        // `processing` < `queued` (a retry) < `succeeded`. Nine tasks, so
        // that the batches are padded.
        let ids: Vec<Uuid> = (0..9).map(|_| Uuid::new_v4()).collect();
        let tasks: Vec<(Uuid, TaskType)> = ids.iter().map(|id| (*id, TaskType::Echo)).collect();
        tasks_table::insert_many(&db, &tasks, Vec::new())
            .await
            .unwrap();
        let (behind, ahead, running) = (ids[0], ids[1], &ids[2..]);
        // Attempt 1 of every task: `behind`, `ahead`, then the other seven.
        let batch = |statuses: [TaskStatus; 3]| -> Vec<StatusUpdate> {
            let mut batch = vec![
                report(behind, statuses[0], 1),
                report(ahead, statuses[1], 1),
            ];
            batch.extend(running.iter().map(|id| report(*id, statuses[2], 1)));
            batch
        };
        use TaskStatus::*;
        let first = batch([Queued, Processing, Processing]);
        assert_eq!(apply_many_committed(&db, &first).await.len(), 9);
        let second = batch([Processing, Queued, Succeeded]);
        let applied = apply_many_committed(&db, &second).await;
        assert_eq!(applied, ids[1..].iter().copied().collect());
        for id in [behind, ahead] {
            let task = tasks_table::select(&db, id).await.unwrap().unwrap();
            assert_eq!((task.status, task.attempts), (TaskStatus::Queued, 1));
        }
        for id in running {
            let task = tasks_table::select(&db, *id).await.unwrap().unwrap();
            assert_eq!((task.status, task.attempts), (TaskStatus::Succeeded, 1));
        }
        // A finished task takes nothing more of the same attempt.
        let third: Vec<StatusUpdate> = running
            .iter()
            .map(|id| report(*id, TaskStatus::Queued, 1))
            .collect();
        assert!(apply_many_committed(&db, &third).await.is_empty());
    })
    .await;
}
