//! `trace-view`, the terminal viewer, as a user runs it: the four services
//! export to it and it prints each trace as a tree (the text is read back and
//! its nesting checked against the trace's parent links); its filters; a
//! flood of spans keeps its memory bounded; garbage on either port gets the
//! protocol's error and the viewer keeps working; `--discard` counts what it
//! drops.

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use e2e_tests::{
    platform::{bin_dir, free_port},
    Platform, PlatformOptions,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{any_value, AnyValue, KeyValue},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use prost::Message;
use serde_json::json;

/// A `trace-view` process writing to files; killed when dropped.
struct Viewer {
    child: Child,
    output: PathBuf,
    log: PathBuf,
    grpc_port: u16,
    http_port: u16,
}

impl Viewer {
    fn start(label: &str, args: &[&str]) -> Self {
        Self::start_on(label, free_port(), free_port(), args)
    }

    fn start_on(label: &str, grpc_port: u16, http_port: u16, args: &[&str]) -> Self {
        let dir = bin_dir().join("e2e-logs").join("trace-view");
        std::fs::create_dir_all(&dir).unwrap();
        let output = dir.join(format!("{label}-{grpc_port}.txt"));
        let log = dir.join(format!("{label}-{grpc_port}.log"));
        let child = Command::new(bin_dir().join("trace-view"))
            .args(["--grpc-port", &grpc_port.to_string()])
            .args(["--http-port", &http_port.to_string()])
            .args(["--quiet", "1s"])
            .args(args)
            .stdout(std::fs::File::create(&output).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("trace-view is built by cargo build --workspace --bins");
        let viewer = Self {
            child,
            output,
            log,
            grpc_port,
            http_port,
        };
        viewer.wait_listening();
        viewer
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_err() {
            assert!(Instant::now() < deadline, "trace-view does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// What it wrote on stderr.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the output holds something `ready` accepts.
    async fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        e2e_tests::eventually(Duration::from_secs(30), what, || {
            let text = self.text();
            std::future::ready(if ready(&text) { Ok(text) } else { Err(text) })
        })
        .await
    }

    /// Stops the viewer as a user would (SIGTERM: it prints the traces it
    /// still holds) and returns everything it printed.
    fn stop(&mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exited = self.child.wait().unwrap();
        assert!(exited.success(), "{exited:?}");
        self.text()
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One printed span line: its depth in the tree, name and service.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    depth: usize,
    name: String,
    service: String,
    kind: String,
}

/// The tree printed for `trace_id`, as lines.
fn tree_of(text: &str, trace_id: &str) -> Vec<Line> {
    let block: Vec<&str> = text
        .split("\ntrace ")
        .find(|block| block.trim_start_matches("trace ").starts_with(trace_id))
        .unwrap_or_else(|| panic!("no tree for {trace_id} in:\n{text}"))
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    block
        .iter()
        .map(|line| {
            let body = line.strip_prefix("  ").unwrap_or(line);
            // The tree's drawing: 3 characters per level.
            let drawing = body
                .chars()
                .take_while(|c| matches!(c, '│' | '├' | '└' | '─' | ' '))
                .count();
            let rest: String = body.chars().skip(drawing).collect();
            let columns: Vec<&str> = rest
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            Line {
                depth: drawing / 3,
                name: columns[0].to_string(),
                service: columns[1].to_string(),
                kind: columns[2]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            }
        })
        .collect()
}

/// The line's parent: the nearest line above it one level up.
fn parent_of(lines: &[Line], index: usize) -> Option<&Line> {
    let depth = lines[index].depth.checked_sub(1)?;
    lines[..index].iter().rev().find(|l| l.depth == depth)
}

fn find(lines: &[Line], service: &str, name: &str, kind: &str) -> usize {
    lines
        .iter()
        .position(|l| l.service == service && l.name == name && l.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} {name} of {service} in {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_posted_to_the_gateway_is_printed_as_one_tree_across_the_services() {
    let mut viewer = Viewer::start("task", &["--color", "never"]);
    let platform = Platform::start_with(
        "trace-view",
        PlatformOptions {
            env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), viewer.endpoint())],
            ..PlatformOptions::default()
        },
    )
    .await;
    let trace_id = "7bf92f3577b34da6a3ce929d0e0e4736";
    let response = platform
        .http
        .post(platform.url("/api/tasks"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"type": "hash", "payload": {"data": "abc"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let text = viewer
        .wait_for("finished tree", |t| {
            t.contains(&format!("trace {trace_id}")) && t.contains("UPDATE tasks")
        })
        .await;
    let lines = tree_of(&text, trace_id);
    // Parent links, as the tree draws them.
    let chain = [
        ("gateway-service", "POST /api/tasks", "SERVER"),
        ("gateway-service", "POST /api/tasks", "CLIENT"),
        ("backend-service", "POST /api/tasks", "SERVER"),
        ("backend-service", "create-task", "INTERNAL"),
        ("backend-service", "send task_queue", "PRODUCER"),
        ("worker-service", "process task_queue", "CONSUMER"),
        ("worker-service", "process-task", "INTERNAL"),
        ("worker-service", "report-status", "INTERNAL"),
        ("backend-service", "apply-status-update", "INTERNAL"),
        ("backend-service", "UPDATE tasks", "CLIENT"),
    ];
    for pair in chain.windows(2) {
        let (parent, child) = (pair[0], pair[1]);
        let at = find(&lines, child.0, child.1, child.2);
        let above = parent_of(&lines, at).unwrap_or_else(|| panic!("{child:?} is a root:\n{text}"));
        assert_eq!(
            (
                above.service.as_str(),
                above.name.as_str(),
                above.kind.as_str()
            ),
            parent,
            "parent of {child:?}:\n{text}"
        );
    }
    assert_eq!(
        lines[0].depth, 0,
        "the gateway's SERVER span is the root:\n{text}"
    );
    assert_eq!(
        text.matches(&format!("trace {trace_id}")).count(),
        1,
        "one tree:\n{text}"
    );
    // Not a terminal: plain text.
    assert!(!text.contains('\x1b'));
    assert!(viewer.is_running());
}

/// The platform with every service exporting to `viewer`.
async fn platform_exporting_to(viewer: &Viewer, label: &str) -> Platform {
    Platform::start_with(
        label,
        PlatformOptions {
            env: vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), viewer.endpoint()),
                ("TASK_MAX_ATTEMPTS".into(), "1".into()),
            ],
            ..PlatformOptions::default()
        },
    )
    .await
}

/// Flush first, then assert: every service stops gracefully (exporting its
/// last spans on the way out), then the viewer stops, printing what it
/// still held; its whole output.
async fn everything_the_viewer_will_print(mut platform: Platform, mut viewer: Viewer) -> String {
    platform.stop_gracefully().await;
    viewer.stop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_errors_filter_shows_only_traces_with_an_error() {
    let viewer = Viewer::start("errors", &["--errors", "--summary"]);
    let platform = platform_exporting_to(&viewer, "trace-view-errors").await;
    let ok = platform.post_task(json!({"type": "echo"})).await;
    let failing = platform
        .post_task(json!({"type": "echo", "payload": {"fail_times": 1}}))
        .await;
    let failing_trace = failing["trace_id"].as_str().unwrap();
    for task in [&ok, &failing] {
        let id = task["id"].as_str().unwrap();
        platform.wait_for_task(id, Duration::from_secs(20)).await;
    }

    let text = everything_the_viewer_will_print(platform, viewer).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "--summary --errors: one line, the failing trace:\n{text}"
    );
    assert!(
        lines[0].contains(failing_trace) && lines[0].contains("1 error"),
        "{text}"
    );
    assert!(!text.contains(ok["trace_id"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_id_and_service_filters_show_only_that_trace_and_service() {
    let wanted = "8bf92f3577b34da6a3ce929d0e0e4736";
    let viewer = Viewer::start(
        "trace-id",
        &["--trace-id", wanted, "--service", "worker-service"],
    );
    let platform = platform_exporting_to(&viewer, "trace-view-trace-id").await;
    let other = platform.post_task(json!({"type": "echo"})).await;
    let response = platform
        .http
        .post(platform.url("/api/tasks"))
        .header("traceparent", format!("00-{wanted}-00f067aa0ba902b7-01"))
        .json(&json!({"type": "echo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let asked_for: serde_json::Value = response.json().await.unwrap();
    for id in [&other["id"], &asked_for["id"]] {
        let id = id.as_str().unwrap();
        platform.wait_for_task(id, Duration::from_secs(20)).await;
    }

    let text = everything_the_viewer_will_print(platform, viewer).await;
    assert_eq!(
        text.matches("\ntrace ").count() + usize::from(text.starts_with("trace ")),
        1,
        "{text}"
    );
    assert!(text.contains(&format!("trace {wanted}")), "{text}");
    assert!(
        !text.contains(other["trace_id"].as_str().unwrap()),
        "{text}"
    );
    // A trace the worker took part in (the filter selects traces, not spans).
    assert!(text.contains("worker-service"), "{text}");
}

fn span(trace: u64, id: u64, parent: u64) -> Span {
    Span {
        trace_id: trace.to_be_bytes().repeat(2),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: "flood".into(),
        kind: 1,
        start_time_unix_nano: 1_000_000,
        end_time_unix_nano: 2_000_000,
        attributes: vec![KeyValue {
            key: "padding".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("x".repeat(200))),
            }),
            ..KeyValue::default()
        }],
        ..Span::default()
    }
}

fn request(spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("flooder".into())),
                    }),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

async fn export(http: &reqwest::Client, viewer: &Viewer, body: Vec<u8>) -> reqwest::Response {
    http.post(format!("http://127.0.0.1:{}/v1/traces", viewer.http_port))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_spans_keeps_the_viewers_memory_bounded() {
    let mut viewer = Viewer::start(
        "flood",
        &["--summary", "--max-traces", "200", "--quiet", "30s"],
    );
    let http = reqwest::Client::new();
    // 50,000 traces whose root never comes: each stays pending until evicted.
    for batch in 0..100u64 {
        let spans = (0..500u64)
            .map(|i| {
                let trace = batch * 500 + i + 1;
                span(trace, trace, 0xdead)
            })
            .collect();
        assert_eq!(export(&http, &viewer, request(spans)).await.status(), 200);
    }
    let rss_mib = viewer.rss_kib() / 1024;
    assert!(rss_mib < 100, "RSS {rss_mib} MiB after 50,000 traces");
    let text = viewer
        .wait_for("evicted traces", |t| t.lines().count() >= 49_000)
        .await;
    assert!(
        text.lines()
            .all(|l| l.contains("incomplete: too many traces pending")),
        "{}",
        &text[..2000.min(text.len())]
    );
    assert!(viewer.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_either_port_gets_the_protocols_error_and_the_viewer_keeps_working() {
    let mut viewer = Viewer::start("garbage", &["--summary", "--quiet", "200ms"]);
    let http = reqwest::Client::new();
    let junk = export(&http, &viewer, b"\xff\xfe not protobuf".to_vec()).await;
    assert_eq!(junk.status(), 400);
    assert_eq!(junk.headers()["content-type"], "application/x-protobuf");
    assert!(
        !junk.bytes().await.unwrap().is_empty(),
        "a google.rpc.Status body"
    );
    let json = http
        .post(format!("http://127.0.0.1:{}/v1/traces", viewer.http_port))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);

    // Raw bytes on the gRPC port: not even HTTP/2.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", viewer.grpc_port))
        .await
        .unwrap();
    raw.write_all(b"GET / HTTP/1.0\r\n\r\n\x00\x01\x02garbage")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await;
    // A gRPC call whose message does not decode.
    let status =
        grpc_export_raw(viewer.grpc_port, b"\xff\xff\xff\xff not a message".to_vec()).await;
    assert_ne!(status, tonic::Code::Ok);

    // Still serving: a real export is printed.
    assert!(viewer.is_running());
    assert_eq!(
        export(&http, &viewer, request(vec![span(7, 7, 0)]))
            .await
            .status(),
        200
    );
    viewer
        .wait_for("the good trace", |t| t.contains("0000000000000007"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_discarding_sink_counts_every_span_on_both_ports_and_prints_none() {
    let mut viewer = Viewer::start("discard", &["--discard", "--quiet", "100ms"]);
    let http = reqwest::Client::new();
    let spans = |first: u64, n: u64| (first..first + n).map(|i| span(i, i, 0)).collect();
    // Two resources, the first with two scopes: 3 + 2 + 4 spans.
    let nested = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                scope_spans: vec![
                    ScopeSpans {
                        spans: spans(1, 3),
                        ..ScopeSpans::default()
                    },
                    ScopeSpans {
                        spans: spans(10, 2),
                        ..ScopeSpans::default()
                    },
                ],
                ..ResourceSpans::default()
            },
            ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: spans(20, 4),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            },
        ],
    }
    .encode_to_vec();
    assert_eq!(export(&http, &viewer, nested.clone()).await.status(), 200);
    assert_eq!(
        grpc_export_raw(viewer.grpc_port, nested).await,
        tonic::Code::Ok
    );
    assert_eq!(
        export(&http, &viewer, request(spans(30, 5))).await.status(),
        200
    );

    // A span is not decoded, but a malformed one is still refused: here
    // its length runs past the end of the request.
    let mut truncated = request(spans(40, 1));
    truncated.truncate(truncated.len() - 10);
    assert_eq!(
        export(&http, &viewer, truncated.clone()).await.status(),
        400
    );
    assert_ne!(
        grpc_export_raw(viewer.grpc_port, truncated).await,
        tonic::Code::Ok
    );
    // Only Export is served.
    assert_eq!(
        grpc_call_raw(
            viewer.grpc_port,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Other",
            Vec::new()
        )
        .await,
        tonic::Code::Unimplemented
    );

    assert!(viewer.is_running());
    let printed = viewer.stop();
    assert_eq!(printed, "", "a discarding viewer prints no trace");
    let log = viewer.log();
    assert!(log.contains("stopped after 23 spans"), "{log}");
}

/// `TraceService/Export` with `body` as the message, undecoded; the status.
async fn grpc_export_raw(port: u16, body: Vec<u8>) -> tonic::Code {
    grpc_call_raw(
        port,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        body,
    )
    .await
}

/// The gRPC method at `path` with `body` as the message, undecoded; the
/// status.
async fn grpc_call_raw(port: u16, path: &'static str, body: Vec<u8>) -> tonic::Code {
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    struct Raw;
    struct RawEncoder;
    struct RawDecoder;
    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            use bytes::BufMut;
            dst.put_slice(&item);
            Ok(())
        }
    }
    impl Decoder for RawDecoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
            use bytes::Buf;
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }
    impl Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    match client.unary(tonic::Request::new(body), path, Raw).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}
