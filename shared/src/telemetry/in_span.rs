//! Polling a future inside a span that the caller keeps.
//!
//! `tracing`'s `Instrument` takes the span by value, so code that records the
//! outcome on the span afterwards hands it a clone; a clone and its drop are
//! two more trips to the subscriber's registry, and `Instrument` enters the
//! span once more to drop the future. On the hot paths
//! (each request's SERVER span, each database statement's CLIENT span) the
//! span is borrowed instead.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tracing::Span;

/// `future.in_span(&span)`: the future, with `span` entered while it is polled.
pub trait InSpan: Future + Sized {
    /// Enters `span` for each poll of this future, as `Instrument::instrument`
    /// does, borrowing the span rather than owning it. Unlike `Instrument`,
    /// the span is not entered while the future (and whatever it still owns)
    /// is dropped: what a destructor logs then is not in the span. Where that
    /// matters, await the work inside an `async` block given to `in_span`, so
    /// that it is dropped during the block's last poll.
    fn in_span(self, span: &Span) -> PolledInSpan<'_, Self> {
        PolledInSpan { span, future: self }
    }
}

impl<F: Future> InSpan for F {}

pin_project_lite::pin_project! {
    /// A future polled inside a borrowed span; see [`InSpan::in_span`].
    pub struct PolledInSpan<'a, F> {
        span: &'a Span,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for PolledInSpan<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        this.future.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span_recorder::{record_spans, span_named};

    #[test]
    fn spans_opened_while_polled_are_children_and_the_span_stays_the_callers() {
        let spans = record_spans(|| {
            let outer = tracing::info_span!("outer");
            let inner_span = actix_web::rt::System::new().block_on(
                async {
                    tokio::task::yield_now().await;
                    tracing::info_span!("inner").in_scope(|| tracing::Span::current().id())
                }
                .in_span(&outer),
            );
            assert!(inner_span.is_some());
            // Left after each poll, and still the caller's to end.
            assert!(tracing::Span::current().is_none());
            drop(outer);
        });
        let outer = span_named(&spans, "outer");
        let inner = span_named(&spans, "inner");
        assert_eq!(inner.parent_span_id, outer.span_context.span_id());
    }
}
