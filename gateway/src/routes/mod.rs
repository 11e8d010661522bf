//! HTTP routes of the gateway.

pub mod proxy;
