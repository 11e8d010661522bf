//! What the gateway passes on: the caller's `X-Forwarded-For` chain with the
//! caller appended, `X-Forwarded-Proto`/`-Host`, and never a hop-by-hop
//! header, including those the `Connection` header names.

use std::time::Duration;

use e2e_tests::{platform::bin_dir, Service, ServiceProcess};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// An upstream that answers every request with the request head it got.
async fn echo_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
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
    (url, serve)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_appended_and_hop_by_hop_headers_stay_behind() {
    let (upstream, _serve) = echo_upstream().await;
    let mut gateway = ServiceProcess::spawn(
        Service::Gateway,
        &[
            ("BACKEND_URL".into(), upstream.clone()),
            ("PRODUCT_URL".into(), upstream),
            ("OTEL_SDK_DISABLED".into(), "true".into()),
        ],
        &bin_dir().join("e2e-logs").join("gateway-headers"),
    );
    gateway.wait_healthy().await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/products", gateway.url()))
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "keep-alive, x-hop-secret")
        .header("x-hop-secret", "do not forward")
        .header("x-end-to-end", "forward me")
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
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_string)
    };
    assert_eq!(
        header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1"),
        "{head}"
    );
    assert_eq!(
        header("x-forwarded-proto").as_deref(),
        Some("http"),
        "{head}"
    );
    let host = gateway.url().trim_start_matches("http://").to_string();
    assert_eq!(header("x-forwarded-host"), Some(host), "{head}");
    assert_eq!(
        header("x-end-to-end").as_deref(),
        Some("forward me"),
        "{head}"
    );
    assert_eq!(header("x-hop-secret"), None, "{head}");
}
