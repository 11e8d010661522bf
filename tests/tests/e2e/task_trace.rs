//! A task sent to the gateway is one trace: gateway, backend (through its
//! actor mailboxes), RabbitMQ, worker, and the status report back.

use std::time::Duration;

use e2e_tests::{
    trace::{assert_attr, assert_kind},
    Platform, ReceivedSpan, SpanKind, Trace,
};
use serde_json::{json, Value};

const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_one_trace_from_the_gateway_through_rabbitmq_to_the_worker_and_back() {
    let platform = Platform::start("task-trace").await;
    let (id, traceresponse) = post_a_hash_task_in_the_callers_trace(&platform).await;
    let trace = platform
        .collector
        .wait_for_trace(INCOMING_TRACE, Duration::from_secs(20), |t| {
            t.has("backend-service", "apply-status-update")
                && t.has("backend-service", "process task_results")
                && t.has("backend-service", "UPDATE tasks")
                && t.has("gateway-service", "POST /api/tasks")
                // The worker's CONSUMER span ends last (after the ack), and
                // the worker exports in batches of its own.
                && t.has("worker-service", "process task_queue")
        })
        .await;

    every_span_about_the_task_is_in_the_callers_trace(&platform, &id);
    let gateway_client = the_gateway_continues_the_caller(&trace, &traceresponse);
    let send = the_backend_stores_and_publishes(&trace, gateway_client, &id);
    let process_task = the_worker_consumes_the_message(&trace, send, &id);
    the_outcome_report_flows_back_to_the_backend(&trace, process_task, &id);
}

/// POSTs a hash task under the caller's `traceparent`, waits until it
/// succeeded; its id and the `traceresponse` header.
async fn post_a_hash_task_in_the_callers_trace(platform: &Platform) -> (String, String) {
    let response = platform
        .http
        .post(platform.url("/api/tasks"))
        .header(
            "traceparent",
            format!("00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"),
        )
        .json(&json!({"type": "hash", "payload": {"data": "abc", "rounds": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let traceresponse = response
        .headers()
        .get("traceresponse")
        .expect("traceresponse header")
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    assert_eq!(body["trace_id"], INCOMING_TRACE);
    let id = body["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "id is a uuid: {id}");

    let task = platform.wait_for_task(&id, Duration::from_secs(30)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["type"], "hash");
    assert_eq!(task["attempts"], 1);
    assert_eq!(
        task["result"]["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    (id, traceresponse)
}

/// No span about the task started a trace of its own.
fn every_span_about_the_task_is_in_the_callers_trace(platform: &Platform, id: &str) {
    let about_task: Vec<_> = platform
        .collector
        .spans()
        .into_iter()
        .filter(|s| s.attr("task.id") == Some(id) || s.attr("messaging.message.id") == Some(id))
        // Our own GET /api/tasks/{id} polls are separate requests, separate traces.
        .filter(|s| s.name != "get-task")
        .collect();
    assert!(about_task.len() >= 6, "{about_task:?}");
    assert!(
        about_task.iter().all(|s| s.trace_id == INCOMING_TRACE),
        "spans outside the trace: {:?}",
        about_task
            .iter()
            .filter(|s| s.trace_id != INCOMING_TRACE)
            .map(|s| (&s.service, &s.name))
            .collect::<Vec<_>>()
    );
}

/// gateway SERVER under the caller's span (and named by `traceresponse`),
/// its CLIENT call to the backend under it; returns the CLIENT span.
fn the_gateway_continues_the_caller<'t>(trace: &'t Trace, traceresponse: &str) -> &'t ReceivedSpan {
    let gateway_server = trace.find_kind("gateway-service", "POST /api/tasks", SpanKind::Server);
    assert_kind(gateway_server, SpanKind::Server);
    assert_eq!(gateway_server.parent_span_id, INCOMING_SPAN);
    assert_attr(gateway_server, "http.request.method", "POST");
    assert_attr(gateway_server, "http.route", "/api/tasks");
    assert_attr(gateway_server, "http.response.status_code", "202");
    assert_eq!(
        traceresponse,
        format!("00-{INCOMING_TRACE}-{}-01", gateway_server.span_id),
        "traceresponse names the gateway's SERVER span"
    );

    let gateway_client = trace.find_kind("gateway-service", "POST /api/tasks", SpanKind::Client);
    trace.assert_child_of(gateway_client, gateway_server);
    assert_attr(gateway_client, "http.request.method", "POST");
    assert_attr(gateway_client, "http.response.status_code", "202");
    assert!(
        gateway_client
            .attr("url.full")
            .is_some_and(|u| u.starts_with("http://127.0.0.1:") && u.ends_with("/api/tasks")),
        "url.full: {:?}",
        gateway_client.attr("url.full")
    );
    gateway_client
}

/// backend SERVER under the gateway's CLIENT span, `create-task` under it,
/// the actors' spans across their mailboxes, and the PRODUCER span; returns
/// the PRODUCER span.
fn the_backend_stores_and_publishes<'t>(
    trace: &'t Trace,
    gateway_client: &ReceivedSpan,
    id: &str,
) -> &'t ReceivedSpan {
    let backend_server = trace.find_kind("backend-service", "POST /api/tasks", SpanKind::Server);
    trace.assert_child_of(backend_server, gateway_client);
    assert_attr(backend_server, "http.route", "/api/tasks");
    assert_attr(backend_server, "http.response.status_code", "202");

    let create = trace.find("backend-service", "create-task");
    trace.assert_child_of(create, backend_server);
    assert_attr(create, "task.id", id);
    assert_attr(create, "task.type", "hash");
    let store = trace.find("backend-service", "store-task");
    trace.assert_child_of(store, create);

    // Opened in the publisher actor's handler, under the sender's span.
    let send = trace.find("backend-service", "send task_queue");
    assert_kind(send, SpanKind::Producer);
    trace.assert_child_of(send, create);
    trace.assert_descendant_of(send, backend_server);
    assert_attr(send, "messaging.system", "rabbitmq");
    assert_attr(send, "messaging.destination.name", "task_queue");
    assert_attr(send, "messaging.operation.type", "send");
    assert_attr(send, "messaging.message.id", id);
    send
}

/// CONSUMER in the worker, child of the PRODUCER through the message
/// headers, then `process-task` and `execute-task`; returns `process-task`.
fn the_worker_consumes_the_message<'t>(
    trace: &'t Trace,
    send: &ReceivedSpan,
    id: &str,
) -> &'t ReceivedSpan {
    let process = trace.find("worker-service", "process task_queue");
    assert_kind(process, SpanKind::Consumer);
    trace.assert_child_of(process, send);
    assert_attr(process, "messaging.operation.type", "process");
    assert_attr(process, "messaging.system", "rabbitmq");
    assert_attr(process, "messaging.destination.name", "task_queue");
    let process_task = trace.find("worker-service", "process-task");
    trace.assert_child_of(process_task, process);
    assert_attr(process_task, "task.id", id);
    assert_attr(process_task, "task.type", "hash");
    let execute = trace.find("worker-service", "execute-task");
    trace.assert_child_of(execute, process_task);
    process_task
}

/// The outcome report continues the same trace into the backend: one
/// `report-status` (a task done within `PROCESSING_REPORT_DELAY_MS` reports
/// its outcome only), the message that carried it, and the backend applying
/// it under the report's span, linked to the message.
fn the_outcome_report_flows_back_to_the_backend(
    trace: &Trace,
    process_task: &ReceivedSpan,
    id: &str,
) {
    let reports = trace.find_all("worker-service", "report-status");
    assert_eq!(reports.len(), 1, "{}", trace.render());
    let report = reports[0];
    trace.assert_child_of(report, process_task);
    assert_attr(report, "task.status", "succeeded");
    assert_attr(report, "task.id", id);
    // The message that carried it (the first report of its batch: its parent).
    let send = trace.find("worker-service", "send task_results");
    assert_kind(send, SpanKind::Producer);
    trace.assert_child_of(send, report);
    let consumed = trace.find("backend-service", "process task_results");
    assert_kind(consumed, SpanKind::Consumer);
    trace.assert_child_of(consumed, send);
    let applied = trace.find("backend-service", "apply-status-update");
    trace.assert_child_of(applied, report);
    assert!(
        applied.links_to(consumed),
        "apply-status-update links the message that carried it:\n{}",
        trace.render()
    );
    assert_attr(applied, "task.status", "succeeded");
    let update = trace.find("backend-service", "UPDATE tasks");
    trace.assert_child_of(update, applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_still_running_after_the_delay_reports_processing_then_its_outcome() {
    let platform = Platform::start("processing-report").await;
    let accepted = platform
        .post_task(json!({"type": "sleep", "payload": {"ms": 700}}))
        .await;
    let id = accepted["id"].as_str().unwrap();
    // Visible while it runs...
    platform.wait_until_processing(id).await;
    let task = platform.wait_for_task(id, Duration::from_secs(20)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    // ...and both reports are in the task's trace, each applied under its own span.
    let trace = platform
        .collector
        .wait_for_trace(
            accepted["trace_id"].as_str().unwrap(),
            Duration::from_secs(20),
            |t| {
                t.find_all("backend-service", "apply-status-update").len() == 2
                    && t.has("worker-service", "process task_queue")
            },
        )
        .await;
    let process_task = trace.find("worker-service", "process-task");
    let mut reported: Vec<&str> = trace
        .find_all("worker-service", "report-status")
        .into_iter()
        .map(|r| {
            trace.assert_child_of(r, process_task);
            let applied = trace
                .spans()
                .iter()
                .find(|s| s.name == "apply-status-update" && s.parent_span_id == r.span_id)
                .unwrap_or_else(|| {
                    panic!("no apply-status-update under {r:?}:\n{}", trace.render())
                });
            assert_eq!(applied.attr("task.status"), r.attr("task.status"));
            r.attr("task.status").unwrap()
        })
        .collect();
    reported.sort();
    assert_eq!(reported, ["processing", "succeeded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_task_type_produces_its_result_and_a_trace_id_for_a_request_without_traceparent() {
    let platform = Platform::start("task-types").await;
    // Near the 64 KiB body limit: the task and its result each cross the
    // broker as several AMQP frames (DEFAULT_FRAME_MAX is 16 KiB).
    let blob = "x".repeat(60 * 1024);
    let cases = [
        (
            json!({"type": "echo", "payload": {"greeting": "hello", "n": [1, 2]}}),
            json!({"greeting": "hello", "n": [1, 2]}),
        ),
        (
            json!({"type": "echo", "payload": {"blob": blob}}),
            json!({"blob": blob}),
        ),
        (
            json!({"type": "sleep", "payload": {"ms": 50}}),
            json!({"slept_ms": 50}),
        ),
        (
            json!({"type": "hash", "payload": {"data": "abc", "rounds": 2}}),
            json!({"sha256": "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358"}),
        ),
    ];
    for (request, expected) in cases {
        let response = platform
            .http
            .post(platform.url("/api/tasks"))
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{request}");
        let body: Value = response.json().await.unwrap();
        let trace_id = body["trace_id"].as_str().unwrap();
        assert_eq!(trace_id.len(), 32);
        assert!(trace_id.chars().all(|c| c.is_ascii_hexdigit()) && trace_id != "0".repeat(32));
        let task = platform
            .wait_for_task(body["id"].as_str().unwrap(), Duration::from_secs(30))
            .await;
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(task["result"], expected, "{request}");
        assert_eq!(task["type"], request["type"]);
        assert!(task.get("error").is_none(), "{task}");
    }
}

/// The beginnings of every span name the platform exports.
const PLATFORM_SPAN_NAMES: &[&str] = &[
    "GET ",
    "POST ",
    "create-task",
    "store-task",
    "get-task",
    "remove-task",
    "send ",
    "process ",
    "process-task",
    "execute-task",
    "apply-status-update",
    "report-status",
    "catalog-lookup",
    "delete-expired-tasks",
    // the database's CLIENT spans
    "INSERT tasks",
    "SELECT tasks",
    "UPDATE tasks",
    "DELETE tasks",
    "SELECT products",
    "COMMIT",
];

/// Probes and scrapes, as an orchestrator and Prometheus send them.
async fn send_probes_and_scrapes(platform: &Platform) {
    for service in [
        &platform.gateway,
        &platform.backend,
        &platform.product,
        &platform.worker,
    ] {
        for path in ["/health", "/ready", "/metrics"] {
            platform
                .http
                .get(format!("{}{path}", service.url()))
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_platforms_own_spans_are_exported_not_library_internals_nor_probes() {
    let mut platform = Platform::start("no-library-spans").await;
    send_probes_and_scrapes(&platform).await;
    let accepted = platform
        .post_task(json!({"type": "echo", "payload": {}}))
        .await;
    platform
        .wait_for_task(accepted["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    platform
        .collector
        .wait_for_trace(
            accepted["trace_id"].as_str().unwrap(),
            Duration::from_secs(20),
            |t| t.has("backend-service", "apply-status-update"),
        )
        .await;
    // Flush first, then assert: each service stops gracefully, exporting
    // everything it still held.
    platform.stop_gracefully().await;
    let names: std::collections::BTreeSet<String> = platform
        .collector
        .spans()
        .into_iter()
        .map(|s| format!("{} {}", s.service, s.name))
        .collect();
    let foreign: Vec<&String> = names
        .iter()
        .filter(|n| {
            let name = n.split_once(' ').map(|(_, name)| name).unwrap_or(n);
            !PLATFORM_SPAN_NAMES.iter().any(|p| name.starts_with(p))
        })
        .collect();
    assert!(foreign.is_empty(), "unexpected spans exported: {foreign:?}");
    let probes: Vec<&String> = names
        .iter()
        .filter(|n| {
            ["/health", "/ready", "/metrics"]
                .iter()
                .any(|p| n.ends_with(p))
        })
        .collect();
    assert!(probes.is_empty(), "probes and scrapes traced: {probes:?}");
}
