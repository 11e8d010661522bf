//! The in-process OTLP receiver the tests export to: `trace-view`'s
//! receiver (gRPC and HTTP/protobuf) with a sink that keeps every span.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use trace_view::{flatten, ExportTraceServiceRequest, Receiver, SpanSink};

pub use trace_view::{ReceivedEvent, ReceivedSpan, SpanKind};

/// Every span received, in arrival order.
#[derive(Default)]
struct Store(Mutex<Vec<ReceivedSpan>>);

impl SpanSink for Store {
    type Request = ExportTraceServiceRequest;

    fn accept(&self, request: ExportTraceServiceRequest) {
        let spans = flatten(request);
        if let Ok(mut store) = self.0.lock() {
            store.extend(spans);
        }
    }
}

/// The receiver. Dropping it (or [`stop`](Self::stop)) stops both listeners.
pub struct OtlpCollector {
    receiver: Receiver,
    store: Arc<Store>,
}

impl OtlpCollector {
    /// Starts both listeners on free loopback ports.
    pub async fn start() -> Self {
        Self::start_at("127.0.0.1:0").await
    }

    /// Starts the gRPC listener on `grpc_addr` (the HTTP one on a free port).
    pub async fn start_at(grpc_addr: &str) -> Self {
        let store = Arc::new(Store::default());
        let receiver = Receiver::start(grpc_addr, "127.0.0.1:0", store.clone())
            .await
            .unwrap_or_else(|e| panic!("start the OTLP receiver on {grpc_addr}: {e}"));
        Self { receiver, store }
    }

    /// `http://127.0.0.1:PORT` of the gRPC listener (for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with the default protocol).
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.receiver.grpc_addr())
    }

    /// `http://127.0.0.1:PORT` of the HTTP/protobuf listener (the exporter
    /// appends `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.receiver.http_addr())
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The spans of one trace received so far.
    pub fn trace(&self, trace_id: &str) -> crate::Trace {
        crate::Trace::new(
            self.spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect(),
        )
    }

    /// Waits until the spans of `trace_id` satisfy `ready` (spans arrive in
    /// batches from several processes), or panics after `timeout` showing
    /// what did arrive.
    pub async fn wait_for_trace(
        &self,
        trace_id: &str,
        timeout: Duration,
        ready: impl Fn(&crate::Trace) -> bool,
    ) -> crate::Trace {
        crate::eventually(timeout, format!("trace {trace_id} complete"), || {
            let trace = self.trace(trace_id);
            let outcome = if ready(&trace) {
                Ok(trace)
            } else {
                Err(format!("received:\n{}", trace.render()))
            };
            std::future::ready(outcome)
        })
        .await
    }

    /// The spans `service` sent named `name`, once at least `count` have
    /// arrived, or after `timeout` those that did (the caller's assertions
    /// then say what is missing).
    pub async fn spans_named(
        &self,
        service: &str,
        name: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<ReceivedSpan> {
        let matching = || {
            self.spans()
                .into_iter()
                .filter(|s| s.service == service && s.name == name)
                .collect::<Vec<_>>()
        };
        crate::within(timeout, || {
            let spans = matching();
            std::future::ready((spans.len() >= count).then_some(spans))
        })
        .await
        .unwrap_or_else(matching)
    }

    /// Stops listening: exporters pointed here now fail to connect.
    pub fn stop(&mut self) {
        self.receiver.stop();
    }
}
