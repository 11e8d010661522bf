//! A product lookup's trace across processes:
//! gateway SERVER -> CLIENT -> product SERVER -> catalog lookup. (The
//! catalog's answers are tested in process: `http_api::products`.)

use std::time::Duration;

use e2e_tests::{
    trace::{assert_attr, assert_kind},
    Platform, SpanKind,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_lookup_is_traced_from_the_gateway_into_the_catalog_actor() {
    let platform = Platform::start("product-trace").await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let response = platform
        .http
        .get(platform.url("/api/products/3"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let traceresponse = response.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        traceresponse.starts_with(&format!("00-{trace_id}-")),
        "{traceresponse}"
    );

    let trace = platform
        .collector
        .wait_for_trace(trace_id, Duration::from_secs(20), |t| {
            t.has("product-service", "catalog-lookup")
                && t.spans()
                    .iter()
                    .filter(|s| s.service == "gateway-service")
                    .count()
                    >= 2
                && t.has("product-service", "GET /api/products/{id}")
        })
        .await;

    let gateway_server = trace.find_kind(
        "gateway-service",
        "GET /api/products/{id}",
        SpanKind::Server,
    );
    assert_eq!(gateway_server.parent_span_id, caller_span);
    assert_attr(gateway_server, "http.route", "/api/products/{id}");
    assert_eq!(
        gateway_server.int_attr("http.response.status_code"),
        Some(200)
    );
    let client = trace.find_kind(
        "gateway-service",
        "GET /api/products/{id}",
        SpanKind::Client,
    );
    trace.assert_child_of(client, gateway_server);
    assert!(client
        .attr("url.full")
        .unwrap()
        .ends_with("/api/products/3"));
    let upstream = reqwest::Url::parse(client.attr("url.full").unwrap()).unwrap();
    assert_attr(client, "server.address", upstream.host_str().unwrap());
    assert_eq!(
        client.int_attr("server.port"),
        Some(i64::from(upstream.port().unwrap()))
    );
    assert_eq!(client.int_attr("http.response.status_code"), Some(200));
    let product_server = trace.find_kind(
        "product-service",
        "GET /api/products/{id}",
        SpanKind::Server,
    );
    trace.assert_child_of(product_server, client);
    assert_attr(product_server, "http.request.method", "GET");
    assert_attr(product_server, "url.path", "/api/products/3");
    let lookup = trace.find("product-service", "catalog-lookup");
    assert_kind(lookup, SpanKind::Internal);
    trace.assert_child_of(lookup, product_server);
    // An integer in the trace, not the string "3".
    assert_eq!(lookup.int_attr("product.id"), Some(3));
    assert_attr(lookup, "product.found", "true");
}
