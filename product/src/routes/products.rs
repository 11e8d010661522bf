//! `GET /api/products[?category=&limit=&offset=]` and `GET /api/products/{id}`.

use actix::Addr;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::{
    db::DbError,
    http::{only, ApiError, ErrorBody, ErrorCode},
    TracedSend,
};
use utoipa::{IntoParams, OpenApi};

use crate::{
    actors::{CatalogActor, GetProduct, ListProducts},
    products_table::{Product, ProductPage},
};

/// The catalog's part of the OpenAPI document (the gateway serves the whole
/// document at `/api/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    paths(list_products, get_product),
    components(schemas(Product, ProductPage, ErrorBody)),
    tags((name = "products", description = "The product catalog"))
)]
pub struct CatalogApi;

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page.
pub const MAX_LIMIT: usize = 100;
/// Largest offset: what a database's `OFFSET` takes (a signed 64-bit
/// integer); the document says so too (`maximum` on `offset`).
pub const MAX_OFFSET: usize = i64::MAX as usize;

/// Registers the product routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/products")
            .route(web::get().to(list_products))
            .default_service(only("GET")),
    )
    .service(
        web::resource("/api/products/{id}")
            .route(web::get().to(get_product))
            .default_service(only("GET")),
    );
}

/// The query of `GET /api/products`; any other parameter is a 400.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only products of this category.
    category: Option<String>,
    /// Page size (20 by default).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// How many matching products to skip (0 by default).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)] // MAX_OFFSET
    offset: Option<usize>,
}

/// A page of the catalog, in id order, with the number of matches in all.
#[utoipa::path(
    get,
    path = "/api/products",
    tag = "products",
    params(ListQuery),
    responses(
        (status = 200, description = "One page", body = ProductPage),
        (status = 400, description = "`invalid_query`: a parameter out of range, malformed or unknown", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    )
)]
async fn list_products(
    query: web::Query<ListQuery>,
    catalog: web::Data<Addr<CatalogActor>>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let offset = query.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("offset must be between 0 and {MAX_OFFSET}"),
        ));
    }
    let page = catalog
        .send_traced(ListProducts {
            category: query.category.filter(|c| !c.is_empty()),
            limit,
            offset,
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(storage_error)?;
    page.ok_response().map_err(rendering_error)
}

/// One product.
#[utoipa::path(
    get,
    path = "/api/products/{id}",
    tag = "products",
    params(("id" = u32, Path, description = "The product id")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 404, description = "`product_not_found`", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    )
)]
async fn get_product(
    path: web::Path<String>,
    catalog: web::Data<Addr<CatalogActor>>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || {
        ApiError::new(
            ErrorCode::ProductNotFound,
            format!("no product with id {path}"),
        )
    };
    let id: u32 = path.parse().map_err(|_| not_found())?;
    let product = catalog
        .send_traced(GetProduct(id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(storage_error)?;
    product
        .ok_or_else(not_found)?
        .ok_response()
        .map_err(rendering_error)
}

/// A value that does not serialise is a bug; the caller gets a 500 that says so.
fn rendering_error(err: serde_json::Error) -> ApiError {
    ApiError::internal(format!("rendering the answer as JSON: {err}"))
}

/// 503 while the database is down or too slow, 500 for anything else.
fn storage_error(err: DbError) -> ApiError {
    if err.is_unavailable() {
        ApiError::storage_unavailable(format!("the catalog is unavailable: {err}"))
    } else {
        ApiError::internal(format!("reading the catalog: {err}"))
    }
}
