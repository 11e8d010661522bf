//! Holds the catalog and answers lookups; each lookup is its own span
//! (`catalog-lookup`), a child of the request that asked.

use actix::{Actor, Context, Handler, Message, MessageResponse};
use shared::Traced;

use crate::catalog::Product;

/// The actor owning the catalog.
pub struct CatalogActor {
    products: Vec<Product>,
}

impl CatalogActor {
    /// A catalog of `products`.
    pub fn new(products: Vec<Product>) -> Self {
        Self { products }
    }
}

impl Actor for CatalogActor {
    type Context = Context<Self>;
}

/// List products, optionally of one category, a page at a time.
pub struct ListProducts {
    /// Only this category, if given.
    pub category: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Products to skip.
    pub offset: usize,
}

impl Message for ListProducts {
    type Result = ProductPage;
}

/// One page of products and the total that matched.
#[derive(Debug, Clone, MessageResponse, serde::Serialize)]
pub struct ProductPage {
    /// The products on this page.
    pub items: Vec<Product>,
    /// How many products matched in all.
    pub total: usize,
}

/// Look up one product.
pub struct GetProduct(pub u32);

impl Message for GetProduct {
    type Result = Option<Product>;
}

impl Handler<Traced<ListProducts>> for CatalogActor {
    type Result = ProductPage;

    fn handle(&mut self, msg: Traced<ListProducts>, _: &mut Self::Context) -> ProductPage {
        let query = msg.message();
        let span = tracing::info_span!(
            "catalog-lookup",
            product.category = query.category.as_deref().unwrap_or_default(),
            product.limit = query.limit,
            product.offset = query.offset,
            product.total = tracing::field::Empty,
        );
        let (query, span) = msg.into_parts(span);
        let _entered = span.enter();
        let matching: Vec<&Product> = self
            .products
            .iter()
            .filter(|p| query.category.as_deref().is_none_or(|c| p.category == c))
            .collect();
        span.record("product.total", matching.len());
        ProductPage {
            total: matching.len(),
            items: matching
                .into_iter()
                .skip(query.offset)
                .take(query.limit)
                .cloned()
                .collect(),
        }
    }
}

impl Handler<Traced<GetProduct>> for CatalogActor {
    type Result = Option<Product>;

    fn handle(&mut self, msg: Traced<GetProduct>, _: &mut Self::Context) -> Option<Product> {
        let id = msg.message().0;
        let span = tracing::info_span!(
            "catalog-lookup",
            product.id = id,
            product.found = tracing::field::Empty
        );
        let (_, span) = msg.into_parts(span);
        let _entered = span.enter();
        let product = self.products.iter().find(|p| p.id == id).cloned();
        span.record("product.found", product.is_some());
        product
    }
}
