//! The end-to-end harness: runs the four service binaries as processes (the
//! way users run them) against the real RabbitMQ, each test in its own vhost,
//! with an in-process OTLP receiver, and turns the spans it received into a
//! trace that assertions can walk.
//!
//! The binaries are taken from the cargo target directory this test binary was
//! built into: build them first (`cargo build --workspace --bins`), which the
//! README's test command does.

pub mod broker;
pub mod collector;
pub mod database;
pub mod platform;
pub mod prometheus;
pub mod repo;
pub mod trace;

pub use collector::{OtlpCollector, ReceivedSpan, SpanKind};
pub use database::{DbKind, PrivatePostgres, TestDatabase};
pub use platform::{Platform, PlatformOptions, Service, ServiceProcess};
pub use trace::Trace;
