//! Seeing traces without a tracing backend: an OTLP receiver (gRPC and
//! HTTP/protobuf) and the pieces of the `trace-view` terminal viewer. The
//! end-to-end tests receive spans through the same [`receiver`].
//!
//! - [`span`]: a received span, flattened with its service's resource.
//! - [`receiver`]: the two OTLP listeners, feeding a [`receiver::SpanSink`].
//! - [`assembler`]: spans grouped into traces, finished when they go quiet,
//!   within bounded memory.
//! - [`render`]: a finished trace as a tree or a summary line, and filters.

pub mod assembler;
pub mod receiver;
pub mod render;
pub mod span;

pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
pub use receiver::{Receiver, SpanSink};
pub use span::{flatten, span_count, ReceivedEvent, ReceivedSpan, SpanKind, SpanTally};
