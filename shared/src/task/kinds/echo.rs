//! `echo`: the result is the payload itself.

use serde_json::Value;

use super::{Cancelled, Kind};

/// The `echo` task type.
pub struct Echo;

impl Kind for Echo {
    const NAME: &'static str = "echo";
    type Payload = Value;

    fn parse(payload: &Value) -> Result<Value, String> {
        Ok(payload.clone())
    }

    async fn run(payload: Value) -> Result<Value, Cancelled> {
        Ok(payload)
    }
}
