//! The catalog through the gateway, and its trace:
//! gateway SERVER -> CLIENT -> product SERVER -> catalog lookup.

use std::time::Duration;

use e2e_tests::{
    trace::{assert_attr, assert_kind},
    Platform, SpanKind,
};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_filters_pages_and_finds_products() {
    let platform = Platform::start("products").await;
    let get = |path: &str| {
        let url = platform.url(path);
        let http = platform.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    let (status, all) = get("/api/products?limit=100").await;
    assert_eq!(status, 200);
    let total = all["total"].as_u64().unwrap();
    assert!(total >= 20, "at least 20 products: {total}");
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len() as u64, total);
    let categories: std::collections::HashSet<&str> = items
        .iter()
        .map(|p| p["category"].as_str().unwrap())
        .collect();
    assert!(categories.len() >= 3, "several categories: {categories:?}");
    for item in items {
        for field in ["id", "name", "price", "category", "stock"] {
            assert!(item.get(field).is_some(), "{field} missing in {item}");
        }
    }

    let (_, default_page) = get("/api/products").await;
    assert_eq!(default_page["items"].as_array().unwrap().len(), 20);
    assert_eq!(default_page["total"].as_u64().unwrap(), total);

    let (_, books) = get("/api/products?category=books").await;
    let book_items = books["items"].as_array().unwrap();
    assert!(!book_items.is_empty());
    assert!(book_items.iter().all(|p| p["category"] == "books"));
    assert_eq!(books["total"].as_u64().unwrap() as usize, book_items.len());

    let (_, page) = get("/api/products?limit=2&offset=3").await;
    assert_eq!(page["items"].as_array().unwrap().as_slice(), &items[3..5]);
    assert_eq!(page["total"].as_u64().unwrap(), total);

    let (_, none) = get("/api/products?category=no-such-category").await;
    assert_eq!(none["total"], 0);
    assert_eq!(none["items"].as_array().unwrap().len(), 0);

    let first = &items[0];
    let (status, one) = get(&format!("/api/products/{}", first["id"])).await;
    assert_eq!(status, 200);
    assert_eq!(&one, first);

    for missing in ["/api/products/999999", "/api/products/not-a-number"] {
        let (status, body) = get(missing).await;
        assert_eq!(status, 404, "{missing}");
        assert_eq!(body["error"]["code"], "product_not_found", "{body}");
    }
    for bad in [
        "/api/products?limit=0",
        "/api/products?limit=1000",
        "/api/products?limit=abc",
        "/api/products?offset=-1",
    ] {
        let (status, body) = get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["message"].as_str().is_some(), "{body}");
    }
}

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
    assert_attr(gateway_server, "http.response.status_code", "200");
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
    assert_attr(client, "http.response.status_code", "200");
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
    assert_attr(lookup, "product.id", "3");
    assert_attr(lookup, "product.found", "true");
}
