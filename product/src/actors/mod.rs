//! The product service's actors.

mod catalog_actor;

pub use catalog_actor::{CatalogActor, GetProduct, ListProducts};
