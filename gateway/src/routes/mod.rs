//! HTTP routes of the gateway.

pub mod openapi;
pub mod proxy;
