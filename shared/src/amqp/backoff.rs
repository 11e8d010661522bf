//! Capped exponential backoff: reconnect loops (stateful, [`next_delay`])
//! and the worker's retry delays (by attempt, [`delay_for`]) share it.
//!
//! [`next_delay`]: Backoff::next_delay
//! [`delay_for`]: Backoff::delay_for

use std::time::Duration;

/// Delays that double from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial` and never exceeding `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The `n`th delay (0-based): `initial × 2ⁿ`, at most `max`.
    pub fn delay_for(&self, n: u32) -> Duration {
        self.initial
            .saturating_mul(2u32.saturating_pow(n.min(30)))
            .min(self.max)
    }

    /// The delay to wait now; the following one will be twice as long (capped).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay_for(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Back to the initial delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    /// 250 ms doubling to at most 10 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_until_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
        assert_eq!(b.delay_for(1000), Duration::from_millis(350), "no overflow");
    }
}
