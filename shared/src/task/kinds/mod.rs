//! The task types, one file each: its payload (parsed and checked against
//! its limits when a task is posted, and again when it runs) and what
//! running it does. The list below is the only other place a type appears:
//! the [`TaskType`] enum, its wire names, the list of types and the error
//! texts that name them all come from it.
//!
//! To add a task type: write `kinds/<name>.rs` with a type implementing
//! [`Kind`], and add one line for it to the `task_kinds!` list below
//! (`Reverse => reverse::Reverse,`: the macro declares the module too).

use std::{fmt::Debug, future::Future};

use serde_json::Value;
use utoipa::openapi::schema::Object;

pub use hash::{hash_rounds, HASH_MAX_ROUNDS};
pub use sleep::SLEEP_MAX_MS;

/// A task type: its name, its payload and its work.
pub trait Kind {
    /// The wire name (the `"type"` of a task request).
    const NAME: &'static str;
    /// The payload, parsed and checked.
    type Payload: Debug + Send + 'static;
    /// Parses and checks `payload` (a JSON object); the error says what is
    /// wrong with it.
    fn parse(payload: &Value) -> Result<Self::Payload, String>;
    /// What `parse` accepts, as a JSON schema (for the OpenAPI document);
    /// written next to `parse` so that the two change together.
    fn payload_schema() -> Object;
    /// Runs the task; its result body.
    fn run(payload: Self::Payload) -> impl Future<Output = Result<Value, Cancelled>> + Send;
}

/// A whole number from 0 up, written either way JSON allows: `5` or `5.0`
/// (JSON Schema's `integer` accepts both, and so do the payloads).
pub fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= u64::MAX as f64)
            .map(|n| n as u64)
    })
}

/// The task could not run to its end (the service is stopping).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the task was cancelled: {0}")]
pub struct Cancelled(pub String);

/// Declares each kind's module, [`TaskType`] and [`TaskSpec`] from the
/// list of kinds.
macro_rules! task_kinds {
    ($($(#[$doc:meta])* $variant:ident => $module:ident :: $kind:ident,)+) => {
        $(mod $module;)+
        /// What a task does.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum TaskType {
            $($(#[$doc])* $variant,)+
        }

        impl TaskType {
            /// Every task type.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => <$module::$kind as Kind>::NAME,)+
                }
            }

            /// The payload schema of this type.
            pub fn payload_schema(self) -> Object {
                match self {
                    $(Self::$variant => <$module::$kind as Kind>::payload_schema(),)+
                }
            }
        }

        /// A task's payload, parsed and checked for its type.
        #[derive(Debug)]
        pub enum TaskSpec {
            $($(#[$doc])* $variant(<$module::$kind as Kind>::Payload),)+
        }

        impl TaskSpec {
            /// Parses and checks `payload` for `kind`.
            pub fn parse(kind: TaskType, payload: &Value) -> Result<Self, String> {
                match kind {
                    $(TaskType::$variant => <$module::$kind as Kind>::parse(payload).map(Self::$variant),)+
                }
            }

            /// Runs the task; its result body.
            pub async fn run(self) -> Result<Value, Cancelled> {
                match self {
                    $(Self::$variant(payload) => <$module::$kind as Kind>::run(payload).await,)+
                }
            }
        }
    };
}

task_kinds! {
    /// The result is the payload.
    Echo => echo::Echo,
    /// Waits `payload.ms` milliseconds.
    Sleep => sleep::Sleep,
    /// SHA-256 of `payload.data`, applied `payload.rounds` times.
    Hash => hash::Hash,
}

impl TaskType {
    /// A type by its wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.as_str() == name)
    }

    /// The wire names, for messages: `echo, sleep, hash`.
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|kind| kind.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
