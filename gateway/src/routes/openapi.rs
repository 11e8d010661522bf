//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the public API,
//! generated from the backend's and the product service's handlers (their
//! `#[utoipa::path]` annotations and the types they serialise), plus what the
//! gateway itself answers on every proxied operation (502, 504).

use actix_web::{web, HttpResponse};
use shared::http::{only, ErrorBody};
use utoipa::{
    openapi::{
        path::Operation, ContentBuilder, InfoBuilder, OpenApi as Document, Ref, ResponseBuilder,
    },
    OpenApi, ToSchema,
};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// The document, serialised once at start-up.
#[derive(Clone)]
pub struct OpenApiJson(web::Bytes);

impl OpenApiJson {
    /// Serialises [`document`].
    pub fn new() -> Result<Self, serde_json::Error> {
        Ok(Self(web::Bytes::from(document().to_json()?)))
    }
}

/// The whole public API: tasks (backend) and products (product service)
/// as the gateway exposes them.
pub fn document() -> Document {
    let mut document = backend::routes::tasks::TasksApi::openapi();
    document.merge(product::routes::products::CatalogApi::openapi());
    document.info = InfoBuilder::new()
        .title("async-micro")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Tasks run asynchronously and a product catalog, behind one gateway. \
             Every response carries a `traceresponse` header naming its trace.",
        ))
        .build();
    for item in document.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            add_gateway_errors(operation);
        }
    }
    document
}

/// The gateway's own answers: the upstream is down (502) or too slow (504).
fn add_gateway_errors(operation: &mut Operation) {
    for (status, description) in [
        (
            "502",
            "`upstream_unavailable`: the service behind the gateway is down",
        ),
        (
            "504",
            "`upstream_timeout`: the service behind the gateway did not answer in time",
        ),
    ] {
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                    .build(),
            )
            .build();
        operation
            .responses
            .responses
            .insert(status.to_string(), response.into());
    }
}

/// Registers `GET /api/openapi.json` (405 for other methods); the app
/// needs a `web::Data<OpenApiJson>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(OPENAPI_PATH)
            .route(web::get().to(serve))
            .default_service(only("GET")),
    );
}

async fn serve(json: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_every_operation_with_the_gateways_errors() {
        let document = serde_json::to_value(document()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        for (path, method) in [
            ("/api/tasks", "post"),
            ("/api/tasks/{id}", "get"),
            ("/api/products", "get"),
            ("/api/products/{id}", "get"),
        ] {
            let responses = &document["paths"][path][method]["responses"];
            for status in ["500", "502", "503", "504"] {
                assert!(responses.get(status).is_some(), "{method} {path} {status}");
            }
        }
        assert!(document["components"]["schemas"]["ErrorBody"].is_object());
    }
}
