//! Futures spawned on an actor's context (`ctx.spawn(fut.into_actor(self))`),
//! polled only when they were woken.
//!
//! An actix context has one waker for everything it runs: when any of its
//! spawned futures is woken, it polls *all* of them. A worker's consumer
//! actor holds one future per task in flight; each spurious poll of one
//! enters and leaves that task's span on the way (the subscriber's
//! bookkeeping, about 850 instructions), and every task was polled about 19
//! times (BENCHMARKS.md, *Each task's future polled when woken*).
//! [`PolledWhenWoken`] answers a poll it was not woken for at once, without
//! touching the future inside.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll, Wake, Waker},
};

use futures_util::task::AtomicWaker;

pin_project_lite::pin_project! {
    /// A future that polls the one inside only after that one's own waker
    /// fired (and on its first poll). Whatever polls it is woken as before.
    pub struct PolledWhenWoken<F> {
        #[pin]
        inner: F,
        signal: Arc<WakeSignal>,
        // The waker handed to `inner`, made once.
        waker: Waker,
    }
}

/// Set by the inner future's waker; read and cleared by each poll.
struct WakeSignal {
    woken: AtomicBool,
    // The waker of whoever polls the wrapper (the actor's context).
    outer: AtomicWaker,
}

impl Wake for WakeSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.outer.wake();
    }
}

impl<F: Future> PolledWhenWoken<F> {
    /// Wraps `inner`; its first poll goes through.
    pub fn new(inner: F) -> Self {
        let signal = Arc::new(WakeSignal {
            woken: AtomicBool::new(true),
            outer: AtomicWaker::new(),
        });
        Self {
            inner,
            waker: Waker::from(signal.clone()),
            signal,
        }
    }
}

impl<F: Future> Future for PolledWhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Registered before the flag is read: a wake between the two still
        // reaches the caller.
        this.signal.outer.register(cx.waker());
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

/// `.polled_when_woken()` on any future.
pub trait PollWhenWoken: Future + Sized {
    /// This future, polled only when it was woken: see [`PolledWhenWoken`].
    fn polled_when_woken(self) -> PolledWhenWoken<Self> {
        PolledWhenWoken::new(self)
    }
}

impl<F: Future> PollWhenWoken for F {}

#[cfg(test)]
mod tests {
    use std::{
        cell::Cell,
        rc::Rc,
        sync::atomic::AtomicUsize,
        task::{Context, Poll},
    };

    use super::*;

    /// Counts the times it is woken.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Pending until `ready` is set; counts its polls and keeps the last
    /// waker it was given.
    fn gate(
        ready: Rc<Cell<bool>>,
        polls: Rc<Cell<u32>>,
        waker: Rc<Cell<Option<Waker>>>,
    ) -> impl Future<Output = u32> {
        std::future::poll_fn(move |cx| {
            polls.set(polls.get() + 1);
            waker.set(Some(cx.waker().clone()));
            if ready.get() {
                Poll::Ready(polls.get())
            } else {
                Poll::Pending
            }
        })
    }

    #[test]
    fn polls_that_nothing_woke_do_not_reach_the_future_and_a_wake_does() {
        let ready: Rc<Cell<bool>> = Rc::default();
        let polls: Rc<Cell<u32>> = Rc::default();
        let inner_waker: Rc<Cell<Option<Waker>>> = Rc::default();
        let mut wrapped =
            gate(ready.clone(), polls.clone(), inner_waker.clone()).polled_when_woken();
        let outer = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let outer_waker = Waker::from(outer.clone());
        let mut cx = Context::from_waker(&outer_waker);

        // The first poll goes through; the spurious ones after it do not.
        for _ in 0..5 {
            assert!(Pin::new(&mut wrapped).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.get(), 1);

        // The inner future's waker fires: the outer waker hears of it and
        // the next poll reaches the future.
        ready.set(true);
        inner_waker
            .take()
            .expect("the inner future got a waker")
            .wake();
        assert_eq!(outer.0.load(Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut wrapped).poll(&mut cx), Poll::Ready(2));
    }

    #[actix::test]
    async fn a_future_on_an_actors_context_still_completes() {
        use actix::{Actor, ActorFutureExt, AsyncContext, Context as ActorContext, WrapFuture};

        struct Spawner(Option<tokio::sync::oneshot::Sender<u32>>);
        impl Actor for Spawner {
            type Context = ActorContext<Self>;
            fn started(&mut self, ctx: &mut Self::Context) {
                let work = async {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    tokio::task::yield_now().await;
                    7
                };
                ctx.spawn(
                    work.polled_when_woken()
                        .into_actor(self)
                        .map(|n, act: &mut Self, _| {
                            if let Some(done) = act.0.take() {
                                let _ = done.send(n);
                            }
                        }),
                );
            }
        }
        let (done, result) = tokio::sync::oneshot::channel();
        let _actor = Spawner(Some(done)).start();
        assert_eq!(result.await, Ok(7));
    }
}
