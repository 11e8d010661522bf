//! The backend service: `POST /api/tasks` validates a task, records it in the
//! database through the [`actors::TaskStore`] and publishes it
//! (broker-confirmed) to the task queue; the [`actors::ResultConsumer`]
//! applies the worker's status reports; `GET /api/tasks/{id}` reads the
//! database.

pub mod actors;
pub mod config;
pub mod routes;
pub mod startup;
pub mod tasks_table;

/// The backend service's schema (`backend/migrations/`, SQL that SQLite and
/// PostgreSQL both take), applied at start-up.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!();
