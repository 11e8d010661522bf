//! The backend's actors: the task store and the consumer of status reports.
//! (The publisher to the task queue is `shared::amqp::QueuePublisher`.)

mod result_consumer;
mod task_store;

pub use result_consumer::ResultConsumer;
pub use task_store::{
    ApplyStatusUpdates, GetTask, InsertTask, ReceivedReport, RemoveTask, StoreError, TaskStore,
};
