//! The product service: `GET /api/products` and `GET /api/products/{id}`,
//! answered by the [`actors::CatalogActor`] that holds the seed catalog.

pub mod actors;
pub mod catalog;
pub mod config;
pub mod routes;
pub mod startup;
