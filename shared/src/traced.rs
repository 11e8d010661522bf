//! Carrying an OpenTelemetry `Context` across an actix mailbox.
//!
//! An actor handler runs later, on whatever task the mailbox is polled from,
//! so the sender's current span is gone by then. [`Traced`] captures the
//! sender's context when the message is built; the handler calls
//! [`Traced::into_parts`] with its span to make that span a child of the
//! sender's.
//!
//! ```ignore
//! // sender, inside some span:
//! let task = store.send_traced(GetTask { id }).await?;
//! // receiver:
//! impl Handler<Traced<GetTask>> for TaskStore {
//!     type Result = Option<TaskRecord>;
//!     fn handle(&mut self, msg: Traced<GetTask>, _: &mut Self::Context) -> Self::Result {
//!         let (msg, span) = msg.into_parts(tracing::info_span!("get-task"));
//!         let _entered = span.enter();
//!         self.tasks.get(&msg.id).cloned()
//!     }
//! }
//! ```

use actix::{dev::ToEnvelope, Actor, Addr, Handler, Message};
use opentelemetry::Context;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// An actix message `M` together with the OpenTelemetry context of the code
/// that sent it. Its result type is `M`'s.
#[derive(Debug, Clone)]
pub struct Traced<M> {
    message: M,
    context: Context,
}

impl<M> Traced<M> {
    /// Wraps `message` with the context of the current `tracing` span.
    pub fn new(message: M) -> Self {
        Self::with_context(message, Span::current().context())
    }

    /// Wraps `message` with an explicit context (e.g. one extracted from AMQP
    /// headers).
    pub fn with_context(message: M, context: Context) -> Self {
        Self { message, context }
    }

    /// The sender's context.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The wrapped message.
    pub fn message(&self) -> &M {
        &self.message
    }

    /// Makes `span` a child of the sender's context and hands back the message
    /// and that span. Pass a freshly created span: its parent can only be set
    /// before it is entered.
    pub fn into_parts(self, span: Span) -> (M, Span) {
        if let Err(err) = span.set_parent(self.context) {
            tracing::debug!(error = %err, "handler span was already started; parent not set");
        }
        (self.message, span)
    }
}

impl<M> Message for Traced<M>
where
    M: Message,
    M::Result: 'static,
{
    type Result = M::Result;
}

/// `addr.send_traced(msg)`: sends `msg` wrapped in [`Traced`] with the
/// current span's context.
pub trait TracedSend<A: Actor> {
    /// Sends the message and waits for the handler's result.
    fn send_traced<M>(&self, message: M) -> actix::dev::Request<A, Traced<M>>
    where
        A: Handler<Traced<M>>,
        A::Context: ToEnvelope<A, Traced<M>>,
        M: Message + Send + 'static,
        M::Result: Send;
}

impl<A: Actor> TracedSend<A> for Addr<A> {
    fn send_traced<M>(&self, message: M) -> actix::dev::Request<A, Traced<M>>
    where
        A: Handler<Traced<M>>,
        A::Context: ToEnvelope<A, Traced<M>>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.send(Traced::new(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span_recorder::{record_spans, span_named};
    use actix::{Context as ActorContext, ResponseFuture};
    use opentelemetry::trace::SpanId;
    use tracing::Instrument;

    struct Echo;
    impl Actor for Echo {
        type Context = ActorContext<Self>;
    }

    struct Ping;
    impl Message for Ping {
        type Result = SpanId;
    }

    impl Handler<Traced<Ping>> for Echo {
        type Result = ResponseFuture<SpanId>;
        fn handle(&mut self, msg: Traced<Ping>, _: &mut Self::Context) -> Self::Result {
            let (_ping, span) = msg.into_parts(tracing::info_span!("handle-ping"));
            Box::pin(
                async {
                    // an await inside the handler, as real handlers have
                    actix::clock::sleep(std::time::Duration::from_millis(1)).await;
                    use opentelemetry::trace::TraceContextExt;
                    Span::current().context().span().span_context().span_id()
                }
                .instrument(span),
            )
        }
    }

    #[test]
    fn span_opened_in_a_handler_is_the_child_of_the_span_that_sent_the_message() {
        let spans = record_spans(|| {
            actix::System::new().block_on(async {
                let echo = Echo.start();
                let sender = tracing::info_span!("send-ping");
                // The context is captured when the message is built, so build
                // it inside the sender's span.
                let handler_span_id = async { echo.send_traced(Ping).await }
                    .instrument(sender.clone())
                    .await
                    .expect("mailbox open");
                drop(sender);
                assert_ne!(handler_span_id, SpanId::INVALID);
            });
        });

        let sender = span_named(&spans, "send-ping");
        let handler = span_named(&spans, "handle-ping");
        assert_eq!(handler.parent_span_id, sender.span_context.span_id());
        assert_eq!(
            handler.span_context.trace_id(),
            sender.span_context.trace_id()
        );
    }

    #[test]
    fn a_message_sent_outside_any_span_starts_a_new_trace_in_the_handler() {
        let spans = record_spans(|| {
            actix::System::new().block_on(async {
                Echo.start().send_traced(Ping).await.expect("mailbox open");
            });
        });
        let handler = span_named(&spans, "handle-ping");
        assert_eq!(handler.parent_span_id, SpanId::INVALID);
    }
}
