//! Sends status reports to the backend over the results queue, many per
//! message.
//!
//! Each report is a `report-status` span in the task's trace (a child of the
//! sender's `process-task`), and the report carries that span's context in
//! its body, so the backend applies it in the same trace. Reports that arrive
//! while earlier batches await their publisher confirm go into the next
//! message (at most [`MAX_BATCH_REPORTS`] reports or about
//! [`MAX_BATCH_BYTES`]); that message's PRODUCER span `send <queue>` is a
//! child of its first report's span and linked to the others'. A report's
//! request is answered once the message that carried it was confirmed: the
//! consumer acknowledges its delivery only then.

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, ResponseFuture,
    WrapFuture,
};
use opentelemetry::trace::TraceContextExt;
use shared::{
    amqp::{Publish, QueuePublisher},
    task::{StatusReport, StatusUpdate, TaskIdText},
    telemetry::int_attribute,
    Traced,
};
use tokio::sync::oneshot;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Most reports in one message.
pub const MAX_BATCH_REPORTS: usize = 256;
/// A message stops taking reports past this size (results can be 64 KiB).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Messages awaiting their confirm at once: the next batch fills meanwhile.
const MAX_IN_FLIGHT: usize = 4;

/// Report one status change; answered once the broker confirmed it.
pub struct ReportStatus(pub StatusUpdate);

impl Message for ReportStatus {
    type Result = Result<(), ReportFailed>;
}

/// The report was not confirmed by the broker.
#[derive(Debug, Clone, thiserror::Error)]
#[error("status report not confirmed: {0}")]
pub struct ReportFailed(String);

/// The actor batching status reports.
pub struct StatusReporter {
    publisher: Addr<QueuePublisher>,
    waiting: Vec<Waiting>,
    in_flight: usize,
}

/// A report waiting for a message, and who waits for its confirm.
struct Waiting {
    encoded: Vec<u8>,
    span: Span,
    done: oneshot::Sender<Result<(), ReportFailed>>,
}

impl StatusReporter {
    /// A reporter publishing through `publisher` (to the results queue).
    pub fn new(publisher: Addr<QueuePublisher>) -> Self {
        Self {
            publisher,
            waiting: Vec::new(),
            in_flight: 0,
        }
    }

    /// Publishes what waits, as long as fewer than [`MAX_IN_FLIGHT`]
    /// messages await their confirm.
    fn send_waiting(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < MAX_IN_FLIGHT && !self.waiting.is_empty() {
            let batch = self.next_batch();
            self.in_flight += 1;
            let mut body =
                Vec::with_capacity(batch.iter().map(|w| w.encoded.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (i, waiting) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&waiting.encoded);
            }
            body.push(b']');
            let links = batch[1..]
                .iter()
                .map(|w| w.span.context().span().span_context().clone())
                .collect();
            let publish = Publish::new(uuid::Uuid::new_v4().to_string(), body).linked_to(links);
            let sent = self
                .publisher
                .send(Traced::with_context(publish, batch[0].span.context()));
            ctx.spawn(sent.into_actor(self).map(move |result, act, ctx| {
                let outcome = match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(err)) => Err(ReportFailed(err.to_string())),
                    Err(mailbox) => Err(ReportFailed(format!("publisher unavailable: {mailbox}"))),
                };
                for waiting in batch {
                    // The consumer may have given up (shutdown).
                    let _ = waiting.done.send(outcome.clone());
                }
                act.in_flight -= 1;
                act.send_waiting(ctx);
            }));
        }
    }

    /// The oldest waiting reports that fit one message (at least one).
    fn next_batch(&mut self) -> Vec<Waiting> {
        let mut bytes = 0;
        let mut count = 0;
        for waiting in &self.waiting {
            if count == MAX_BATCH_REPORTS
                || (count > 0 && bytes + waiting.encoded.len() > MAX_BATCH_BYTES)
            {
                break;
            }
            bytes += waiting.encoded.len() + 1;
            count += 1;
        }
        self.waiting.drain(..count).collect()
    }
}

impl Actor for StatusReporter {
    type Context = Context<Self>;
}

impl Handler<Traced<ReportStatus>> for StatusReporter {
    type Result = ResponseFuture<Result<(), ReportFailed>>;

    fn handle(&mut self, msg: Traced<ReportStatus>, ctx: &mut Self::Context) -> Self::Result {
        let update = &msg.message().0;
        let span = tracing::info_span!(
            "report-status",
            task.id = TaskIdText::new(update.id).as_str(),
            task.status = update.status.as_str(),
            task.attempt = int_attribute(update.attempt),
        );
        let (ReportStatus(update), span) = msg.into_parts(span);
        let report = StatusReport::new(update, &span.context());
        let encoded = match serde_json::to_vec(&report) {
            Ok(encoded) => encoded,
            Err(err) => {
                let failed = ReportFailed(format!("encoding the report: {err}"));
                return Box::pin(async move { Err(failed) });
            }
        };
        let (done, confirmed) = oneshot::channel();
        self.waiting.push(Waiting {
            encoded,
            span: span.clone(),
            done,
        });
        self.send_waiting(ctx);
        Box::pin(
            async move {
                confirmed
                    .await
                    .unwrap_or_else(|_| Err(ReportFailed("the reporter stopped".into())))
            }
            .instrument(span),
        )
    }
}
