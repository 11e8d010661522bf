//! `/api/products` through the gateway: listing, filtering by category,
//! paging, lookups by id, and JSON errors for what does not exist or does not
//! parse.

use e2e_tests::in_process::HttpStack;
use serde_json::Value;

use super::{assert_error_body, status_and_json};

async fn get(stack: &HttpStack, path: &str) -> (u16, Value) {
    status_and_json(stack.http.get(stack.url(path)).send().await.unwrap()).await
}

/// The whole catalog in one page: at least 20 products in several
/// categories, each with every field.
async fn whole_catalog(stack: &HttpStack) -> Vec<Value> {
    let (status, all) = get(stack, "/api/products?limit=100").await;
    assert_eq!(status, 200, "{all}");
    let total = all["total"].as_u64().unwrap();
    assert!(total >= 20, "at least 20 products: {total}");
    let items = all["items"].as_array().unwrap().clone();
    assert_eq!(items.len() as u64, total);
    let categories: std::collections::HashSet<&str> = items
        .iter()
        .map(|p| p["category"].as_str().unwrap())
        .collect();
    assert!(categories.len() >= 3, "several categories: {categories:?}");
    for item in &items {
        for field in ["id", "name", "price", "category", "stock"] {
            assert!(item.get(field).is_some(), "{field} missing in {item}");
        }
    }
    items
}

#[actix_web::test]
async fn the_catalog_lists_filters_pages_and_finds_products() {
    let stack = HttpStack::start("api-products").await;
    let items = whole_catalog(&stack).await;
    let total = items.len() as u64;

    // Paging: 20 by default, any window by limit and offset, the total always.
    let (_, default_page) = get(&stack, "/api/products").await;
    assert_eq!(default_page["items"].as_array().unwrap().len(), 20);
    assert_eq!(default_page["total"].as_u64().unwrap(), total);
    let (_, page) = get(&stack, "/api/products?limit=2&offset=3").await;
    assert_eq!(page["items"].as_array().unwrap().as_slice(), &items[3..5]);
    assert_eq!(page["total"].as_u64().unwrap(), total);
    let (_, past_the_end) = get(&stack, &format!("/api/products?offset={total}")).await;
    assert_eq!(past_the_end["items"].as_array().unwrap().len(), 0);

    // Filtering by category.
    let (_, books) = get(&stack, "/api/products?category=books").await;
    let book_items = books["items"].as_array().unwrap();
    assert!(!book_items.is_empty());
    assert!(book_items.iter().all(|p| p["category"] == "books"));
    assert_eq!(books["total"].as_u64().unwrap() as usize, book_items.len());
    let (_, none) = get(&stack, "/api/products?category=no-such-category").await;
    assert_eq!(none["total"], 0);
    assert_eq!(none["items"].as_array().unwrap().len(), 0);

    // By id: the same product as in the listing.
    let first = &items[0];
    let (status, one) = get(&stack, &format!("/api/products/{}", first["id"])).await;
    assert_eq!(status, 200);
    assert_eq!(&one, first);
}

#[actix_web::test]
async fn missing_products_get_404_and_bad_paging_400_as_json() {
    let stack = HttpStack::start("api-products-errors").await;
    for missing in ["/api/products/999999", "/api/products/not-a-number"] {
        let (status, body) = get(&stack, missing).await;
        assert_eq!(status, 404, "{missing}");
        assert_error_body(&body, "product_not_found");
    }
    for bad in [
        "/api/products?limit=0",
        "/api/products?limit=1000",
        "/api/products?limit=abc",
        "/api/products?offset=-1",
    ] {
        let (status, body) = get(&stack, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_error_body(&body, "invalid_query");
    }
}
