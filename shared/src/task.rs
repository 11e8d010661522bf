//! The task schema backend and worker share, so that what one publishes the
//! other reads: request validation, the queued message, and the status
//! report that flows back.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Longest sleep a `sleep` task may ask for.
pub const SLEEP_MAX_MS: u64 = 10_000;
/// Most SHA-256 rounds a `hash` task may ask for.
pub const HASH_MAX_ROUNDS: u64 = 100_000;

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// The result is the payload.
    Echo,
    /// Waits `payload.ms` milliseconds.
    Sleep,
    /// SHA-256 of `payload.data`, applied `payload.rounds` times.
    Hash,
}

impl TaskType {
    /// The wire name (`echo`, `sleep`, `hash`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Sleep => "sleep",
            Self::Hash => "hash",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskType {
    type Err = InvalidTask;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "echo" => Ok(Self::Echo),
            "sleep" => Ok(Self::Sleep),
            "hash" => Ok(Self::Hash),
            other => Err(InvalidTask::UnknownType(other.to_string())),
        }
    }
}

/// Why a task request or message is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTask {
    /// The body is not a JSON object.
    #[error("the request body must be a JSON object")]
    NotAnObject,
    /// No `type` field.
    #[error("missing required field \"type\"")]
    MissingType,
    /// `type` is present but not a string.
    #[error("field \"type\" must be a string")]
    TypeNotAString,
    /// `type` names no task we run.
    #[error("unknown task type {0:?}; expected one of echo, sleep, hash")]
    UnknownType(String),
    /// The payload does not fit the task type.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
}

impl InvalidTask {
    /// Malformed requests (400) as opposed to well-formed but unacceptable
    /// ones (422).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Self::NotAnObject | Self::MissingType | Self::TypeNotAString
        )
    }

    /// A stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAnObject => "invalid_body",
            Self::MissingType => "missing_type",
            Self::TypeNotAString => "invalid_type",
            Self::UnknownType(_) => "unknown_task_type",
            Self::InvalidPayload(_) => "invalid_payload",
        }
    }
}

/// A validated task: its type and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    /// The task type.
    pub kind: TaskType,
    /// The payload, checked against the type (an empty object when absent).
    pub payload: Value,
}

impl TaskRequest {
    /// Validates a `POST /api/tasks` body: `{"type": ..., "payload": {...}}`.
    pub fn from_json(body: &Value) -> Result<Self, InvalidTask> {
        let object = body.as_object().ok_or(InvalidTask::NotAnObject)?;
        let kind = match object.get("type") {
            None | Some(Value::Null) => return Err(InvalidTask::MissingType),
            Some(Value::String(kind)) => kind.parse::<TaskType>()?,
            Some(_) => return Err(InvalidTask::TypeNotAString),
        };
        let payload = match object.get("payload") {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(payload @ Value::Object(_)) => payload.clone(),
            Some(_) => {
                return Err(InvalidTask::InvalidPayload(
                    "\"payload\" must be a JSON object".into(),
                ))
            }
        };
        TaskSpec::parse(kind, &payload)?;
        Ok(Self { kind, payload })
    }
}

/// The work a task asks for, parsed from its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskSpec {
    /// Return the payload.
    Echo(Value),
    /// Sleep this many milliseconds.
    Sleep {
        /// Milliseconds, at most [`SLEEP_MAX_MS`].
        ms: u64,
    },
    /// Hash `data` `rounds` times.
    Hash {
        /// The input string.
        data: String,
        /// Rounds, 1 to [`HASH_MAX_ROUNDS`] (1 when absent).
        rounds: u64,
    },
}

impl TaskSpec {
    /// Checks `payload` against `kind`.
    pub fn parse(kind: TaskType, payload: &Value) -> Result<Self, InvalidTask> {
        let invalid = |msg: String| InvalidTask::InvalidPayload(msg);
        match kind {
            TaskType::Echo => Ok(Self::Echo(payload.clone())),
            TaskType::Sleep => {
                let ms = payload
                    .get("ms")
                    .ok_or_else(|| invalid("sleep needs \"ms\"".into()))?
                    .as_u64()
                    .filter(|ms| *ms <= SLEEP_MAX_MS)
                    .ok_or_else(|| {
                        invalid(format!(
                            "\"ms\" must be an integer from 0 to {SLEEP_MAX_MS}"
                        ))
                    })?;
                Ok(Self::Sleep { ms })
            }
            TaskType::Hash => {
                let data = payload
                    .get("data")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("hash needs \"data\" as a string".into()))?
                    .to_string();
                let rounds = match payload.get("rounds") {
                    None => 1,
                    Some(rounds) => rounds
                        .as_u64()
                        .filter(|r| (1..=HASH_MAX_ROUNDS).contains(r))
                        .ok_or_else(|| {
                            invalid(format!(
                                "\"rounds\" must be an integer from 1 to {HASH_MAX_ROUNDS}"
                            ))
                        })?,
                };
                Ok(Self::Hash { data, rounds })
            }
        }
    }
}

/// A task as it travels on the task queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    /// The task id (also the AMQP `message_id`).
    pub id: Uuid,
    /// The task type.
    #[serde(rename = "type")]
    pub kind: TaskType,
    /// The validated payload.
    pub payload: Value,
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Accepted and confirmed by the broker, not yet picked up.
    Queued,
    /// A worker is running it.
    Processing,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error.
    Failed,
}

impl TaskStatus {
    /// `succeeded` and `failed` are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// What the worker reports back about a task, on the results queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The task.
    pub id: Uuid,
    /// Its new status.
    pub status: TaskStatus,
    /// Which attempt this is (1-based).
    pub attempt: u32,
    /// The result, for `succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error message, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn malformed_requests_and_unacceptable_ones_are_told_apart() {
        let missing = TaskRequest::from_json(&json!({"payload": {}})).unwrap_err();
        assert!(missing.is_malformed());
        let unknown = TaskRequest::from_json(&json!({"type": "dance"})).unwrap_err();
        assert_eq!(unknown, InvalidTask::UnknownType("dance".into()));
        assert!(!unknown.is_malformed());
        assert!(TaskRequest::from_json(&json!([1, 2]))
            .unwrap_err()
            .is_malformed());
    }

    #[test]
    fn payload_ranges_are_enforced() {
        let ok = |v| TaskRequest::from_json(&v).is_ok();
        assert!(ok(json!({"type": "sleep", "payload": {"ms": 0}})));
        assert!(ok(json!({"type": "sleep", "payload": {"ms": 10000}})));
        assert!(!ok(json!({"type": "sleep", "payload": {"ms": 10001}})));
        assert!(!ok(json!({"type": "sleep", "payload": {"ms": -1}})));
        assert!(!ok(json!({"type": "sleep", "payload": {}})));
        assert!(ok(
            json!({"type": "hash", "payload": {"data": "x", "rounds": 100000}})
        ));
        assert!(!ok(
            json!({"type": "hash", "payload": {"data": "x", "rounds": 0}})
        ));
        assert!(!ok(json!({"type": "hash", "payload": {"rounds": 2}})));
        assert!(ok(json!({"type": "echo"})));
        assert!(!ok(json!({"type": "echo", "payload": "text"})));
    }

    #[test]
    fn messages_use_the_wire_names() {
        let msg = TaskMessage {
            id: Uuid::nil(),
            kind: TaskType::Hash,
            payload: json!({"data": "a"}),
        };
        let wire = serde_json::to_value(&msg).unwrap();
        assert_eq!(wire["type"], "hash");
        let update: StatusUpdate = serde_json::from_value(json!({
            "id": Uuid::nil(), "status": "succeeded", "attempt": 1, "result": {"x": 1}
        }))
        .unwrap();
        assert_eq!(update.status, TaskStatus::Succeeded);
    }
}
