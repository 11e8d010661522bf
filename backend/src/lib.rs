//! The backend service: `POST /api/tasks` validates a task, records it in the
//! [`actors::TaskStore`] and publishes it (broker-confirmed) to the task
//! queue; the [`actors::ResultConsumer`] applies the worker's status reports;
//! `GET /api/tasks/{id}` reads the store.

pub mod actors;
pub mod config;
pub mod routes;
pub mod startup;
