//! `sleep`: waits `payload.ms` milliseconds (a timer: the consumer goes on
//! meanwhile) and answers `{"slept_ms": ms}`.

use std::time::Duration;

use serde_json::{json, Value};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use super::{whole_number, Cancelled, Kind};

/// Longest sleep a `sleep` task may ask for.
pub const SLEEP_MAX_MS: u64 = 10_000;

/// The `sleep` task type.
pub struct Sleep;

/// How long to sleep.
#[derive(Debug)]
pub struct SleepPayload {
    ms: u64,
}

impl Kind for Sleep {
    const NAME: &'static str = "sleep";
    type Payload = SleepPayload;

    fn parse(payload: &Value) -> Result<SleepPayload, String> {
        let ms = payload
            .get("ms")
            .ok_or("sleep needs \"ms\"")
            .map(whole_number)?
            .filter(|ms| *ms <= SLEEP_MAX_MS)
            .ok_or_else(|| format!("\"ms\" must be an integer from 0 to {SLEEP_MAX_MS}"))?;
        Ok(SleepPayload { ms })
    }

    fn payload_schema() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "ms",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(SLEEP_MAX_MS))
                    .description(Some("How long to sleep, in milliseconds.")),
            )
            .required("ms")
            .build()
    }

    async fn run(payload: SleepPayload) -> Result<Value, Cancelled> {
        tokio::time::sleep(Duration::from_millis(payload.ms)).await;
        Ok(json!({"slept_ms": payload.ms}))
    }
}
