//! Acknowledging a channel's settled deliveries in groups.
//!
//! Every acknowledgement costs RabbitMQ a write to the queue's index; one
//! with `multiple` set settles every delivery up to its tag for the cost of
//! one (BENCHMARKS.md: the broker's CPU per consumed message fell to between
//! a third and a half with every 16th acknowledged that way). The guarantee does not
//! change: a delivery is acknowledged only once it is settled (its reports
//! and republishes confirmed). A `multiple` acknowledgement reaches only up
//! to the lowest delivery not yet settled; deliveries settled above that one
//! are acknowledged one by one, so a slow task holds back no other
//! delivery's acknowledgement (nor the prefetch slot it frees).
//!
//! The acknowledgements then go out strictly in order ([`AckQueue`]): a
//! `multiple` one that overtook an earlier single one it covers would leave
//! that one naming a delivery already acknowledged, which the broker
//! answers by closing the channel.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The deliveries of one channel between their arrival and their
/// acknowledgement. `A` is what acknowledges one (lapin's `Acker`).
#[derive(Debug)]
pub struct AckWindow<A> {
    /// Delivered, and neither settled nor handed back: no `multiple`
    /// acknowledgement may cover them. A delivery left unstarted at shutdown
    /// stays here, so closing the channel hands it back.
    unsettled: BTreeSet<u64>,
    /// Settled; their acknowledgement is not sent yet.
    ready: BTreeMap<u64, A>,
}

/// One acknowledgement to send.
#[derive(Debug, PartialEq, Eq)]
pub struct Ack<A> {
    /// Acknowledges the delivery it belongs to.
    pub acker: A,
    /// Also acknowledges every earlier delivery of the channel.
    pub multiple: bool,
    /// How many deliveries it settles.
    pub deliveries: usize,
}

impl<A> Default for AckWindow<A> {
    fn default() -> Self {
        Self {
            unsettled: BTreeSet::new(),
            ready: BTreeMap::new(),
        }
    }
}

impl<A> AckWindow<A> {
    /// Delivery `tag` arrived (every delivery, started or not).
    pub fn delivered(&mut self, tag: u64) {
        self.unsettled.insert(tag);
    }

    /// Delivery `tag` is settled and may be acknowledged with `acker`.
    pub fn settled(&mut self, tag: u64, acker: A) {
        if self.unsettled.remove(&tag) {
            self.ready.insert(tag, acker);
        }
    }

    /// Delivery `tag` went back to the broker (nacked): nothing to send.
    pub fn handed_back(&mut self, tag: u64) {
        self.unsettled.remove(&tag);
    }

    /// The acknowledgements that settle every delivery now ready: one with
    /// `multiple` for those below the lowest unsettled delivery, one each
    /// for those above it.
    pub fn take(&mut self) -> Vec<Ack<A>> {
        let above = match self.unsettled.first() {
            Some(lowest) => self.ready.split_off(lowest),
            None => BTreeMap::new(),
        };
        let below = std::mem::take(&mut self.ready);
        let covered = below.len();
        below
            .into_values()
            .next_back()
            .map(|acker| Ack {
                acker,
                multiple: covered > 1,
                deliveries: covered,
            })
            .into_iter()
            .chain(above.into_values().map(|acker| Ack {
                acker,
                multiple: false,
                deliveries: 1,
            }))
            .collect()
    }
}

/// Acknowledgements waiting to be sent, handed out a batch at a time: the
/// next batch only once the one before it is on the wire.
#[derive(Debug)]
pub struct AckQueue<A> {
    unsent: VecDeque<Ack<A>>,
    sending: bool,
}

impl<A> Default for AckQueue<A> {
    fn default() -> Self {
        Self {
            unsent: VecDeque::new(),
            sending: false,
        }
    }
}

impl<A> AckQueue<A> {
    /// Queues `acks` behind those queued before.
    pub fn push(&mut self, acks: impl IntoIterator<Item = Ack<A>>) {
        self.unsent.extend(acks);
    }

    /// Everything queued, to be sent in this order, unless a batch is still
    /// being sent (then `None`; ask again after [`sent`](Self::sent)).
    pub fn next_batch(&mut self) -> Option<Vec<Ack<A>>> {
        if self.sending || self.unsent.is_empty() {
            return None;
        }
        self.sending = true;
        Some(self.unsent.drain(..).collect())
    }

    /// The batch handed out last is on the wire.
    pub fn sent(&mut self) {
        self.sending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(tag: u64, multiple: bool, deliveries: usize) -> Ack<u64> {
        Ack {
            acker: tag,
            multiple,
            deliveries,
        }
    }

    fn window(delivered: &[u64]) -> AckWindow<u64> {
        let mut window = AckWindow::default();
        for &tag in delivered {
            window.delivered(tag);
        }
        window
    }

    #[test]
    fn deliveries_settled_in_order_are_acknowledged_by_one_multiple_ack() {
        let mut window = window(&[1, 2, 3, 4]);
        for tag in [2, 1, 3, 4] {
            window.settled(tag, tag);
        }
        assert_eq!(window.take(), vec![ack(4, true, 4)]);
        assert_eq!(window.take(), vec![]);
    }

    #[test]
    fn a_multiple_ack_stops_below_the_first_unsettled_delivery_and_the_rest_go_one_by_one() {
        let mut window = window(&[1, 2, 3, 4, 5]);
        for tag in [1, 2, 4, 5] {
            window.settled(tag, tag);
        }
        assert_eq!(
            window.take(),
            vec![ack(2, true, 2), ack(4, false, 1), ack(5, false, 1)]
        );
        window.settled(3, 3);
        assert_eq!(window.take(), vec![ack(3, false, 1)]);
    }

    #[test]
    fn a_single_settled_delivery_is_acknowledged_alone() {
        let mut window = window(&[7, 8]);
        window.settled(7, 7);
        assert_eq!(window.take(), vec![ack(7, false, 1)]);
    }

    #[test]
    fn a_delivery_never_settled_is_never_covered() {
        // 2 was left unstarted (shutdown): it must go back to the broker.
        let mut window = window(&[1, 2, 3]);
        window.settled(1, 1);
        window.settled(3, 3);
        assert_eq!(window.take(), vec![ack(1, false, 1), ack(3, false, 1)]);
    }

    #[test]
    fn a_delivery_handed_back_no_longer_holds_the_others() {
        let mut window = window(&[1, 2, 3]);
        window.handed_back(1);
        window.settled(2, 2);
        window.settled(3, 3);
        assert_eq!(window.take(), vec![ack(3, true, 2)]);
    }

    #[test]
    fn settling_what_was_never_delivered_or_twice_sends_nothing() {
        let mut window = window(&[1]);
        window.settled(9, 9);
        window.settled(1, 1);
        window.settled(1, 1);
        assert_eq!(window.take(), vec![ack(1, false, 1)]);
        assert_eq!(window.take(), vec![]);
    }

    #[test]
    fn acknowledgements_go_out_in_order_and_a_batch_waits_for_the_one_before() {
        let mut queue = AckQueue::default();
        queue.push([ack(3, false, 1)]);
        assert_eq!(queue.next_batch(), Some(vec![ack(3, false, 1)]));
        // Queued while the first batch is on its way: held back.
        queue.push([ack(2, true, 2)]);
        queue.push([ack(5, false, 1)]);
        assert_eq!(queue.next_batch(), None);
        queue.sent();
        assert_eq!(
            queue.next_batch(),
            Some(vec![ack(2, true, 2), ack(5, false, 1)])
        );
        queue.sent();
        assert_eq!(queue.next_batch(), None);
    }
}
