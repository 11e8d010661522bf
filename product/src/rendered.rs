//! A catalog answer together with its JSON body, rendered once.
//!
//! The catalog's answers are cached and shared (`Arc`) by every request
//! that asks the same question within the cache's lifetime, so their JSON
//! is the same bytes each time. Serialising a page of products was a
//! quarter of the instructions a cached `GET /api/products` cost
//! (BENCHMARKS.md); the first response renders it and the others reuse it.

use std::sync::OnceLock;

use actix_web::{http::header::ContentType, web::Bytes, HttpResponse};
use serde::Serialize;

/// `value` and, once a response has needed it, its JSON.
#[derive(Debug)]
pub struct Rendered<T> {
    value: T,
    json: OnceLock<Bytes>,
}

impl<T: Serialize> Rendered<T> {
    /// Wraps `value`; nothing is rendered yet.
    pub fn new(value: T) -> Self {
        Self {
            value,
            json: OnceLock::new(),
        }
    }

    /// The value itself.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The JSON of the value, rendered on the first call. (Two threads
    /// asking at once may both render; one result is kept.)
    pub fn json(&self) -> Result<Bytes, serde_json::Error> {
        if let Some(json) = self.json.get() {
            return Ok(json.clone());
        }
        let json = Bytes::from(serde_json::to_vec(&self.value)?);
        Ok(self.json.get_or_init(|| json).clone())
    }

    /// A `200 OK` with the JSON as its body.
    pub fn ok_response(&self) -> Result<HttpResponse, serde_json::Error> {
        Ok(HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(self.json()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::products_table::{Product, ProductPage};

    fn page() -> ProductPage {
        ProductPage {
            items: vec![Product {
                id: 7,
                name: "Tea \"Assam\"".into(),
                price: 4.5,
                category: "grocery".into(),
                stock: 3,
            }],
            total: 1,
        }
    }

    #[test]
    fn every_body_is_the_values_json() {
        let rendered = Rendered::new(page());
        let expected = serde_json::to_vec(&page()).unwrap();
        assert_eq!(rendered.json().unwrap(), expected);
        assert_eq!(rendered.json().unwrap(), expected);
        assert_eq!(rendered.value(), &page());
    }

    #[actix_web::test]
    async fn the_response_is_json() {
        let response = Rendered::new(page()).ok_response().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "application/json"
        );
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["items"][0]["name"], "Tea \"Assam\"");
        assert_eq!(parsed["total"], 1);
    }
}
