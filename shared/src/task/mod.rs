//! The task schema backend and worker share, so that what one publishes the
//! other reads: request validation, the queued message, and the status
//! report that flows back.

use std::{collections::HashMap, fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub mod kinds;
mod schema;

pub use kinds::{Cancelled, Kind, TaskSpec, TaskType, HASH_MAX_ROUNDS, SLEEP_MAX_MS};

/// A task id as text, for a span field: `task.id = TaskIdText::new(id).as_str()`.
///
/// Span fields take it as `&str` rather than `%id`: tracing-opentelemetry
/// runs a `Display` field through `format!`, and each task passes through
/// four or five spans in every service that handles it.
#[derive(Clone, Copy)]
pub struct TaskIdText([u8; uuid::fmt::Hyphenated::LENGTH]);

impl TaskIdText {
    /// `id` in its usual form (lowercase, hyphenated).
    pub fn new(id: Uuid) -> Self {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        id.hyphenated().encode_lower(&mut text);
        Self(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Hex digits and hyphens only: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Largest `payload.fail_times` (fault injection) accepted.
pub const MAX_FAIL_TIMES: u64 = 100;
/// AMQP header carrying the 1-based attempt number of a task message.
pub const ATTEMPT_HEADER: &str = "x-attempt";

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskType {
    type Err = InvalidTask;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| InvalidTask::UnknownType(s.to_string()))
    }
}

impl Serialize for TaskType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a message went to the dead-letter queue: its `x-failure-kind` header,
/// and the `reason` label of `tasks_dead_lettered_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// The task failed on every attempt it was allowed.
    MaxAttempts,
    /// The task's payload can never succeed (no retry).
    InvalidPayload,
    /// The message is not a task at all.
    Poison,
}

impl DeadLetterKind {
    /// Every kind.
    pub const ALL: [Self; 3] = [Self::MaxAttempts, Self::InvalidPayload, Self::Poison];

    /// The header and label value (`max-attempts`, `invalid-payload`, `poison`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxAttempts => "max-attempts",
            Self::InvalidPayload => "invalid-payload",
            Self::Poison => "poison",
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
    #[error("unknown task type {0:?}; expected one of {types}", types = TaskType::names())]
    UnknownType(String),
    /// The payload does not fit the task type.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
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
        injected_failures(&payload)?;
        TaskSpec::parse(kind, &payload).map_err(InvalidTask::InvalidPayload)?;
        Ok(Self { kind, payload })
    }
}

/// `payload.fail_times` (any task type): how many first attempts fail on
/// purpose, for trying out retries and dead-lettering. 0 when absent.
pub fn injected_failures(payload: &Value) -> Result<u32, InvalidTask> {
    match payload.get("fail_times") {
        None | Some(Value::Null) => Ok(0),
        Some(n) => kinds::whole_number(n)
            .filter(|n| *n <= MAX_FAIL_TIMES)
            .map(|n| n as u32)
            .ok_or_else(|| {
                InvalidTask::InvalidPayload(format!(
                    "\"fail_times\" must be an integer from 0 to {MAX_FAIL_TIMES}"
                ))
            }),
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

impl TaskMessage {
    /// Reads a task message off the queue, saying precisely what is wrong
    /// with one that is not a task (a poison message).
    pub fn decode(body: &[u8]) -> Result<Self, String> {
        let mut value: Value =
            serde_json::from_slice(body).map_err(|e| format!("not valid JSON: {e}"))?;
        let id = value
            .get("id")
            .and_then(Value::as_str)
            .ok_or("missing task id")?;
        let id = Uuid::parse_str(id).map_err(|_| format!("invalid task id {id:?}"))?;
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or("missing task type")?
            .parse::<TaskType>()
            .map_err(|e| e.to_string())?;
        let payload = value
            .get_mut("payload")
            .map(Value::take)
            .unwrap_or_else(|| Value::Object(Default::default()));
        Ok(Self { id, kind, payload })
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

    /// Reads a wire name back.
    pub fn from_wire(name: &str) -> Option<Self> {
        match name {
            "queued" => Some(Self::Queued),
            "processing" => Some(Self::Processing),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
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

/// One status report as it travels on the results queue: the update and the
/// trace context of the span that reported it (W3C fields, e.g.
/// `{"traceparent": "00-…"}`), so that applying it continues the task's own
/// trace even when one message carries the reports of many tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ReportFields")]
pub struct StatusReport {
    /// The update.
    #[serde(flatten)]
    pub update: StatusUpdate,
    /// Propagation fields of the reporting span; empty when the sender had none.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub trace_context: HashMap<String, String>,
}

/// A [`StatusReport`] as it is read: its fields side by side. (Reading a
/// `flatten`ed field makes serde buffer every field of the object first.)
#[derive(Deserialize)]
struct ReportFields {
    id: Uuid,
    status: TaskStatus,
    attempt: u32,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    trace_context: HashMap<String, String>,
}

impl From<ReportFields> for StatusReport {
    fn from(fields: ReportFields) -> Self {
        Self {
            update: StatusUpdate {
                id: fields.id,
                status: fields.status,
                attempt: fields.attempt,
                result: fields.result,
                error: fields.error,
            },
            trace_context: fields.trace_context,
        }
    }
}

impl StatusReport {
    /// `update`, carrying `context` (the reporting span's).
    pub fn new(update: StatusUpdate, context: &opentelemetry::Context) -> Self {
        let mut trace_context = HashMap::new();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(context, &mut trace_context)
        });
        Self {
            update,
            trace_context,
        }
    }

    /// The context of the span that sent this report (an empty context when
    /// it carries none).
    pub fn context(&self) -> opentelemetry::Context {
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&self.trace_context)
        })
    }

    /// Encodes a batch: the body of one results-queue message.
    pub fn encode_batch(reports: &[StatusReport]) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(reports)
    }

    /// Reads a results-queue message: a JSON array of reports, or a single
    /// report object (what a producer that does not batch sends). A report
    /// that names one of its fields twice is refused rather than guessed at
    /// (serde's rule for structs); fields it does not know are ignored.
    pub fn decode_batch(body: &[u8]) -> Result<Vec<StatusReport>, serde_json::Error> {
        // Read straight into reports (not through a `Value`): the first byte
        // that is not white space says which of the two it is.
        match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
            Some(b'[') => serde_json::from_slice(body),
            _ => serde_json::from_slice(body).map(|report| vec![report]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_task_ids_text_is_its_usual_form() {
        for id in [Uuid::nil(), Uuid::max(), Uuid::new_v4()] {
            assert_eq!(TaskIdText::new(id).as_str(), id.to_string());
        }
    }

    #[test]
    fn requests_are_refused_for_what_is_wrong_with_them() {
        let missing = TaskRequest::from_json(&json!({"payload": {}})).unwrap_err();
        assert_eq!(missing, InvalidTask::MissingType);
        let unknown = TaskRequest::from_json(&json!({"type": "dance"})).unwrap_err();
        assert_eq!(unknown, InvalidTask::UnknownType("dance".into()));
        assert_eq!(
            TaskRequest::from_json(&json!([1, 2])).unwrap_err(),
            InvalidTask::NotAnObject
        );
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
        assert!(ok(json!({"type": "echo", "payload": {"fail_times": 2}})));
        assert!(ok(
            json!({"type": "sleep", "payload": {"ms": 1, "fail_times": 100}})
        ));
        assert!(!ok(json!({"type": "echo", "payload": {"fail_times": -1}})));
        assert!(!ok(json!({"type": "echo", "payload": {"fail_times": 101}})));
        assert!(!ok(json!({"type": "echo", "payload": {"fail_times": "2"}})));
    }

    #[test]
    fn poison_messages_are_named_for_what_is_wrong() {
        assert!(TaskMessage::decode(b"\xff not json")
            .unwrap_err()
            .contains("not valid JSON"));
        assert_eq!(
            TaskMessage::decode(br#"{"type": "echo"}"#).unwrap_err(),
            "missing task id"
        );
        let unknown = format!(r#"{{"id": "{}", "type": "juggle"}}"#, Uuid::nil());
        assert!(TaskMessage::decode(unknown.as_bytes())
            .unwrap_err()
            .contains("juggle"));
        let ok = format!(r#"{{"id": "{}", "type": "echo"}}"#, Uuid::nil());
        assert_eq!(
            TaskMessage::decode(ok.as_bytes()).unwrap().kind,
            TaskType::Echo
        );
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

    #[test]
    fn status_reports_travel_alone_or_in_batches_with_their_trace_context() {
        crate::telemetry::install_propagator();
        let update = StatusUpdate {
            id: Uuid::nil(),
            status: TaskStatus::Succeeded,
            attempt: 1,
            result: Some(json!({"ok": true})),
            error: None,
        };
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut trace_context = HashMap::new();
        trace_context.insert("traceparent".to_string(), parent.to_string());
        let report = StatusReport {
            update: update.clone(),
            trace_context,
        };
        let body = StatusReport::encode_batch(&[report.clone(), report.clone()]).unwrap();
        let decoded = StatusReport::decode_batch(&body).unwrap();
        assert_eq!(decoded, [report.clone(), report.clone()]);
        use opentelemetry::trace::TraceContextExt;
        assert_eq!(
            decoded[0]
                .context()
                .span()
                .span_context()
                .trace_id()
                .to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // A single report, as a producer that does not batch sends it.
        let single = serde_json::to_vec(&update).unwrap();
        let decoded = StatusReport::decode_batch(&single).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].update, update);
        assert!(!decoded[0].context().span().span_context().is_valid());
        assert!(StatusReport::decode_batch(b"[1, 2]").is_err());
        assert!(StatusReport::decode_batch(b"").is_err());
        assert!(StatusReport::decode_batch(b"7").is_err());
        assert!(StatusReport::decode_batch(br#"[{"id": "not a uuid"}]"#).is_err());
        // White space first, fields in any order, unknown ones ignored, and
        // the optional ones absent or null.
        let body = format!(
            " \n[{{\"attempt\": 2, \"status\": \"failed\", \"extra\": [1], \"error\": \"boom\", \"result\": null, \"id\": \"{}\"}}]",
            Uuid::nil()
        );
        let decoded = StatusReport::decode_batch(body.as_bytes()).unwrap();
        assert_eq!(
            decoded,
            [StatusReport {
                update: StatusUpdate {
                    id: Uuid::nil(),
                    status: TaskStatus::Failed,
                    attempt: 2,
                    result: None,
                    error: Some("boom".into()),
                },
                trace_context: HashMap::new(),
            }]
        );
        assert_eq!(StatusReport::decode_batch(b" []").unwrap(), []);
        let twice = format!(
            r#"{{"id": "{0}", "status": "failed", "attempt": 1, "id": "{0}"}}"#,
            Uuid::nil()
        );
        assert!(StatusReport::decode_batch(twice.as_bytes()).is_err());
    }
}
