//! The gateway service: every request gets a SERVER span (continuing the
//! caller's `traceparent`), each upstream call a CLIENT span whose context is
//! sent on, and every response a `traceresponse` header.

pub mod config;
pub mod routes;
pub mod startup;
