//! The HTTP API, in process: the services built with their `Application`
//! types on port 0 inside this test binary (see `e2e_tests::in_process`),
//! so each test takes milliseconds plus its database and vhost.

mod gateway;
mod openapi;
mod products;
mod tasks;

use serde_json::Value;

/// The platform's error shape: `{"error": {"code": .., "message": ..}}` with
/// a non-empty message.
fn assert_error_body(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Status and JSON body of a response.
async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}
