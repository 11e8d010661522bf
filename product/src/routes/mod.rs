//! HTTP routes of the product service.

pub mod products;
