//! Answers catalog lookups; each lookup is its own span (`catalog-lookup`), a
//! child of the request that asked.
//!
//! The `products` table is the truth; the actor keeps what it read for
//! `CATALOG_CACHE_TTL` (1 s by default), so that a hot catalog costs the
//! database one statement per distinct query, second and worker thread
//! rather than one per request (a statement through the database driver costs several times the
//! rest of the request; see BENCHMARKS.md). Answers are shared (`Arc`), not
//! copied, with the requests they go to, and carry their JSON once a
//! response has rendered it ([`Rendered`]).
//!
//! Each HTTP worker thread runs an actor of its own (see `startup`): a
//! lookup is then a message to an actor on the same thread, where one actor
//! for the process cost two thread wake-ups per request.
//!
//! A lookup that reads the database has the statement's CLIENT span
//! (`SELECT products`) inside it, and every lookup says which it was
//! (`product.cache`: `hit` or `miss`).

use std::{
    collections::HashMap,
    hash::Hash,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{Actor, ActorFutureExt, Context, Handler, Message, ResponseActFuture, WrapFuture};
use shared::{
    db::{Database, DbError},
    telemetry::int_attribute,
    Traced,
};
use tracing::Instrument;

use crate::{
    products_table::{self, Product, ProductPage},
    rendered::Rendered,
};

/// Most distinct queries remembered; past it the oldest are forgotten.
const MAX_CACHED: usize = 4096;

/// The actor answering catalog lookups.
pub struct CatalogActor {
    db: Database,
    pages: Cache<PageKey, Arc<Rendered<ProductPage>>>,
    products: Cache<u32, Option<Arc<Rendered<Product>>>>,
}

impl CatalogActor {
    /// A catalog read from `db`, remembering answers for `ttl` (zero: every
    /// lookup reads the database).
    pub fn new(db: Database, ttl: Duration) -> Self {
        Self {
            db,
            pages: Cache::new(ttl),
            products: Cache::new(ttl),
        }
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
    type Result = Result<Arc<Rendered<ProductPage>>, DbError>;
}

/// Look up one product.
pub struct GetProduct(pub u32);

impl Message for GetProduct {
    type Result = Result<Option<Arc<Rendered<Product>>>, DbError>;
}

type PageKey = (Option<String>, usize, usize);

impl Handler<Traced<ListProducts>> for CatalogActor {
    type Result = ResponseActFuture<Self, Result<Arc<Rendered<ProductPage>>, DbError>>;

    fn handle(&mut self, msg: Traced<ListProducts>, _: &mut Self::Context) -> Self::Result {
        let query = msg.message();
        let span = tracing::info_span!(
            "catalog-lookup",
            product.category = query.category.as_deref().unwrap_or_default(),
            product.limit = int_attribute(query.limit),
            product.offset = int_attribute(query.offset),
            product.total = tracing::field::Empty,
            product.cache = tracing::field::Empty,
        );
        let (query, span) = msg.into_parts(span);
        let key = (query.category, query.limit, query.offset);
        if let Some(page) = self.pages.get(&key) {
            span.record("product.cache", "hit");
            span.record("product.total", int_attribute(page.value().total));
            return Box::pin(actix::fut::ready(Ok(page)));
        }
        span.record("product.cache", "miss");
        let db = self.db.clone();
        let (category, limit, offset) = key.clone();
        let read = async move {
            let page = products_table::list(&db, category, limit, offset).await?;
            tracing::Span::current().record("product.total", int_attribute(page.total));
            Ok(Arc::new(Rendered::new(page)))
        }
        .instrument(span);
        Box::pin(read.into_actor(self).map(move |page, act, _| {
            if let Ok(page) = &page {
                act.pages.insert(key, page.clone());
            }
            page
        }))
    }
}

impl Handler<Traced<GetProduct>> for CatalogActor {
    type Result = ResponseActFuture<Self, Result<Option<Arc<Rendered<Product>>>, DbError>>;

    fn handle(&mut self, msg: Traced<GetProduct>, _: &mut Self::Context) -> Self::Result {
        let span = tracing::info_span!(
            "catalog-lookup",
            product.id = int_attribute(msg.message().0),
            product.found = tracing::field::Empty,
            product.cache = tracing::field::Empty,
        );
        let (GetProduct(id), span) = msg.into_parts(span);
        if let Some(product) = self.products.get(&id) {
            span.record("product.cache", "hit");
            span.record("product.found", product.is_some());
            return Box::pin(actix::fut::ready(Ok(product)));
        }
        span.record("product.cache", "miss");
        let db = self.db.clone();
        let read = async move {
            let product = products_table::get(&db, id).await?;
            tracing::Span::current().record("product.found", product.is_some());
            Ok(product.map(|product| Arc::new(Rendered::new(product))))
        }
        .instrument(span);
        Box::pin(read.into_actor(self).map(move |product, act, _| {
            if let Ok(product) = &product {
                act.products.insert(id, product.clone());
            }
            product
        }))
    }
}

/// Answers remembered for a while, at most [`MAX_CACHED`] of them.
struct Cache<K, V> {
    ttl: Duration,
    entries: HashMap<K, (Instant, V)>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: HashMap::new(),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let (read_at, value) = self.entries.get(key)?;
        (read_at.elapsed() < self.ttl).then(|| value.clone())
    }

    fn insert(&mut self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= MAX_CACHED {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (read_at, _)| read_at.elapsed() < ttl);
            if self.entries.len() >= MAX_CACHED {
                // Every entry is fresh: a flood of distinct queries. Start over.
                self.entries.clear();
            }
        }
        self.entries.insert(key, (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_remembered_for_the_ttl_and_never_with_a_zero_ttl() {
        let mut cache = Cache::new(Duration::from_millis(40));
        cache.insert(1, "one");
        assert_eq!(cache.get(&1), Some("one"));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(cache.get(&1), None);
        let mut off = Cache::new(Duration::ZERO);
        off.insert(1, "one");
        assert_eq!(off.get(&1), None);
    }

    #[test]
    fn the_cache_stays_bounded_under_a_flood_of_distinct_queries() {
        let mut cache = Cache::new(Duration::from_secs(60));
        for key in 0..(3 * MAX_CACHED) {
            cache.insert(key, key);
        }
        assert!(cache.entries.len() <= MAX_CACHED);
        assert_eq!(cache.get(&(3 * MAX_CACHED - 1)), Some(3 * MAX_CACHED - 1));
    }
}
