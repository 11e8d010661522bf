//! `GET /api/products[?category=&limit=&offset=]` and `GET /api/products/{id}`.

use actix::Addr;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared::{
    db::DbError,
    http::{only, ApiError, ErrorCode},
    TracedSend,
};

use crate::actors::{CatalogActor, GetProduct, ListProducts};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page.
pub const MAX_LIMIT: usize = 100;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    category: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

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
    let page = catalog
        .send_traced(ListProducts {
            category: query.category.filter(|c| !c.is_empty()),
            limit,
            offset: query.offset.unwrap_or(0),
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(storage_error)?;
    Ok(HttpResponse::Ok().json(page))
}

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
        .map(|p| HttpResponse::Ok().json(p))
        .ok_or_else(not_found)
}

/// 503 while the database is down or too slow, 500 for anything else.
fn storage_error(err: DbError) -> ApiError {
    if err.is_unavailable() {
        ApiError::storage_unavailable(format!("the catalog is unavailable: {err}"))
    } else {
        ApiError::internal(format!("reading the catalog: {err}"))
    }
}
