//! `echo`: the result is the payload itself.

use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use super::{Cancelled, Kind};

/// The `echo` task type.
pub struct Echo;

impl Kind for Echo {
    const NAME: &'static str = "echo";
    type Payload = Value;

    fn parse(payload: &Value) -> Result<Value, String> {
        Ok(payload.clone())
    }

    fn payload_schema() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("Any JSON object: the result is the same object."))
            .build()
    }

    async fn run(payload: Value) -> Result<Value, Cancelled> {
        Ok(payload)
    }
}
