//! What the gateway passes on and what it answers when an upstream fails:
//! the caller's `X-Forwarded-For` chain with the caller appended,
//! `X-Forwarded-Proto`/`-Host`, `traceparent` continuing the caller's trace,
//! never a hop-by-hop header (including those `Connection` names); 502 for
//! an upstream that is down, 504 for one that hangs.

use std::time::{Duration, Instant};

use e2e_tests::{in_process, platform::free_port};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::{assert_error_body, status_and_json};

/// An upstream that answers every request with the request head it got.
async fn echo_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    actix_web::rt::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            actix_web::rt::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close, x-upstream-private\r\nx-upstream-private: 1\r\ncontent-length: {}\r\n\r\n",
                    head.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.write_all(&head).await;
            });
        }
    });
    url
}

/// An upstream that accepts connections and never answers.
async fn hanging_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    actix_web::rt::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    url
}

/// The value of header `name` in a request head (lower-cased).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::to_string)
}

#[actix_web::test]
async fn forwarding_headers_are_appended_and_hop_by_hop_headers_stay_behind() {
    let upstream = echo_upstream().await;
    let gateway = in_process::gateway(&upstream, &upstream, Duration::from_secs(10));
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let response = reqwest::Client::new()
        .get(format!("{}/api/products", gateway.url()))
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "keep-alive, x-hop-secret")
        .header("x-hop-secret", "do not forward")
        .header("x-end-to-end", "forward me")
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("x-upstream-private").is_none(),
        "a header the upstream's Connection names is not relayed"
    );
    let head = response.text().await.unwrap().to_lowercase();

    let forwarded_for = header(&head, "x-forwarded-for");
    assert_eq!(
        forwarded_for.as_deref(),
        Some("203.0.113.7, 127.0.0.1"),
        "{head}"
    );
    assert_eq!(
        header(&head, "x-forwarded-proto").as_deref(),
        Some("http"),
        "{head}"
    );
    let host = gateway.url().trim_start_matches("http://").to_string();
    assert_eq!(header(&head, "x-forwarded-host"), Some(host), "{head}");
    assert_eq!(
        header(&head, "x-end-to-end").as_deref(),
        Some("forward me"),
        "{head}"
    );
    assert_eq!(header(&head, "x-hop-secret"), None, "{head}");

    // The caller's trace goes on, under the gateway's CLIENT span.
    let traceparent = header(&head, "traceparent").expect("traceparent forwarded");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], trace_id, "{traceparent}");
    assert_ne!(parts[2], "b7ad6b7169203331", "{traceparent}");
    assert_eq!(parts[3], "01", "{traceparent}");
    // No vendor state: no `tracestate` at all (W3C: avoid sending an empty one).
    assert_eq!(header(&head, "tracestate"), None, "{head}");
}

#[actix_web::test]
async fn a_callers_tracestate_goes_on_with_its_trace_and_not_without_it() {
    let upstream = echo_upstream().await;
    let gateway = in_process::gateway(&upstream, &upstream, Duration::from_secs(10));
    let upstream_head = |traceparent: &'static str| {
        let url = format!("{}/api/products", gateway.url());
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .header("traceparent", traceparent)
                .header("tracestate", "congo=t61rcWkgMzE")
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap().to_lowercase()
        }
    };

    let continued = upstream_head("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").await;
    assert_eq!(
        header(&continued, "tracestate").as_deref(),
        Some("congo=t61rcwkgmze"), // the echoed head is lowercased
        "{continued}"
    );

    // An unusable traceparent starts a new trace; the state of the old one
    // stays behind.
    let restarted = upstream_head("00-not-a-trace-01").await;
    assert!(header(&restarted, "traceparent").is_some(), "{restarted}");
    assert_eq!(header(&restarted, "tracestate"), None, "{restarted}");
}

#[actix_web::test]
async fn the_gateway_answers_502_for_a_down_upstream_and_504_for_a_hanging_one() {
    let down = format!("http://127.0.0.1:{}", free_port());
    let hanging = hanging_upstream().await;
    let gateway = in_process::gateway(&down, &hanging, Duration::from_secs(1));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let started = Instant::now();
    let response = http
        .post(format!("{}/api/tasks", gateway.url()))
        .json(&json!({"type": "echo"}))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("traceresponse"));
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 502, "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_error_body(&body, "upstream_unavailable");

    let started = Instant::now();
    let response = http
        .get(format!("{}/api/products", gateway.url()))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 504, "{body}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(10),
        "gave up after {waited:?} (UPSTREAM_TIMEOUT_MS is 1 s here)"
    );
    assert_error_body(&body, "upstream_timeout");
}
