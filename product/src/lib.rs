//! The product service: `GET /api/products` and `GET /api/products/{id}`,
//! answered by the [`actors::CatalogActor`] from the `products` table
//! ([`products_table`]), which a migration seeds with the catalog.

pub mod actors;
pub mod config;
pub mod products_table;
pub mod rendered;
pub mod routes;
pub mod startup;

/// The product service's schema (`product/migrations/`, SQL that SQLite and
/// PostgreSQL both take), applied at start-up.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!();
