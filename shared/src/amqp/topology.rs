//! The queues and how they are declared: every service declares a queue
//! through the same [`QueueSpec`], so the arguments always match (RabbitMQ
//! refuses a redeclaration with other ones); [`TaskQueues`] names the task
//! queue and the queues around it.

use lapin::{
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable},
    Channel,
};

/// The task queue's name unless `TASK_QUEUE` says otherwise.
pub const DEFAULT_TASK_QUEUE: &str = "task_queue";
/// The status-report queue's name unless `RESULT_QUEUE` says otherwise.
pub const DEFAULT_RESULT_QUEUE: &str = "task_results";

/// The kind of RabbitMQ queue to declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Classic queues: a single node (development, compose).
    #[default]
    Classic,
    /// Quorum queues: replicated over a cluster (Raft); dead-lettering out of
    /// them is at-least-once. What a multi-node production cluster needs.
    Quorum,
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "classic" => Ok(Self::Classic),
            "quorum" => Ok(Self::Quorum),
            other => Err(format!(
                "{other:?} is not a queue type; use classic or quorum"
            )),
        }
    }
}

/// A durable queue and the arguments it is declared with. Every service that
/// uses a queue declares it through the same `QueueSpec`, so the arguments
/// always match (RabbitMQ refuses a redeclaration with other arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Queue name (the routing key on the default exchange).
    pub name: String,
    /// `x-` arguments.
    pub arguments: FieldTable,
}

impl QueueSpec {
    /// A durable queue of type `kind`.
    pub fn durable(name: impl Into<String>, kind: QueueType) -> Self {
        let mut arguments = FieldTable::default();
        if kind == QueueType::Quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        Self {
            name: name.into(),
            arguments,
        }
    }

    /// Adds dead-lettering into `target` on the default exchange; at least
    /// once on quorum queues.
    pub fn dead_lettering_to(mut self, target: &str) -> Self {
        let quorum = self.arguments.inner().contains_key("x-queue-type");
        let arguments = &mut self.arguments;
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(target.into()),
        );
        if quorum {
            arguments.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            // Required by the at-least-once strategy.
            arguments.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
        self
    }

    /// A durable delay queue: nothing consumes it; each message waits out its
    /// own expiration and is then dead-lettered into `target`. (Used with one
    /// queue per delay, so that expirations leave in FIFO order.) On quorum
    /// queues the dead-lettering is at-least-once, so a retry cannot be lost
    /// on its way back.
    pub fn delay_into(name: impl Into<String>, target: &str, kind: QueueType) -> Self {
        Self::durable(name, kind).dead_lettering_to(target)
    }

    /// Declares the queue (idempotent).
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        channel
            .queue_declare(
                self.name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                self.arguments.clone(),
            )
            .await
            .map(|_| ())
    }
}

/// The queues around one task queue: the queue itself, its dead-letter queue
/// `<queue>.dlq`, and one delay queue per retry `<queue>.retry.<attempt>`
/// that dead-letters back into the task queue when a message's TTL expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskQueues {
    name: String,
    kind: QueueType,
}

impl TaskQueues {
    /// The queues around `task_queue`, all of type `kind`.
    pub fn new(task_queue: impl Into<String>, kind: QueueType) -> Self {
        Self {
            name: task_queue.into(),
            kind,
        }
    }

    /// The task queue. As a quorum queue it dead-letters (at least once) into
    /// the DLQ: RabbitMQ 4 gives quorum queues a delivery limit, and a message
    /// past it would otherwise be dropped.
    pub fn tasks(&self) -> QueueSpec {
        let spec = QueueSpec::durable(self.name.clone(), self.kind);
        match self.kind {
            QueueType::Classic => spec,
            QueueType::Quorum => spec.dead_lettering_to(&self.dead_letters().name),
        }
    }

    /// Where tasks end up that can never succeed.
    pub fn dead_letters(&self) -> QueueSpec {
        QueueSpec::durable(format!("{}.dlq", self.name), self.kind)
    }

    /// Where a task waits before attempt `next_attempt`.
    pub fn retry(&self, next_attempt: u32) -> QueueSpec {
        QueueSpec::delay_into(
            format!("{}.retry.{next_attempt}", self.name),
            &self.name,
            self.kind,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queues_around_a_task_queue_are_named_after_it() {
        let queues = TaskQueues::new("jobs", QueueType::Classic);
        assert_eq!(queues.tasks().name, "jobs");
        assert_eq!(queues.dead_letters().name, "jobs.dlq");
        let retry = queues.retry(2);
        assert_eq!(retry.name, "jobs.retry.2");
        assert!(retry
            .arguments
            .inner()
            .contains_key("x-dead-letter-routing-key"));
    }
}
