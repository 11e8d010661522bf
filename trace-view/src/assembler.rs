//! Groups spans into traces and decides when a trace is finished: when no
//! new span of it arrived for a quiet period. Memory stays bounded: a trace
//! pending too long, or the oldest one when too many are pending, is handed
//! out as incomplete; spans past a per-trace limit are counted, not kept; a
//! finished trace is handed out and forgotten.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use crate::span::ReceivedSpan;

/// When a trace counts as finished, and how much is kept meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A trace is finished once no span of it arrived for this long.
    pub quiet: Duration,
    /// A trace still receiving spans after this long is handed out as
    /// incomplete (a stuck producer must not pin memory).
    pub max_age: Duration,
    /// Traces pending at once; past it the oldest is handed out incomplete.
    pub max_pending_traces: usize,
    /// Spans kept per trace; more are counted and dropped.
    pub max_spans_per_trace: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            quiet: Duration::from_secs(3),
            max_age: Duration::from_secs(60),
            max_pending_traces: 10_000,
            max_spans_per_trace: 10_000,
        }
    }
}

/// Why a trace was handed out before it went quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incomplete {
    /// It was still receiving spans after [`Limits::max_age`].
    TooOld,
    /// Too many traces were pending; it was the oldest.
    TooManyPending,
}

/// A trace ready to print.
#[derive(Debug, Clone)]
pub struct FinishedTrace {
    /// 32 hex chars.
    pub trace_id: String,
    /// Its spans, in arrival order.
    pub spans: Vec<ReceivedSpan>,
    /// Set when it was handed out before it went quiet.
    pub incomplete: Option<Incomplete>,
    /// Spans dropped past [`Limits::max_spans_per_trace`].
    pub dropped_spans: usize,
    /// Spans that arrived after the trace was already handed out.
    pub late: bool,
}

struct Pending {
    spans: Vec<ReceivedSpan>,
    first_seen: Instant,
    last_seen: Instant,
    dropped: usize,
}

/// The traces being assembled.
pub struct Assembler {
    limits: Limits,
    pending: HashMap<String, Pending>,
    // Arrival order of pending traces, for evicting the oldest; may hold ids
    // already handed out (skipped).
    order: VecDeque<String>,
    // Recently handed out traces, so late spans are labelled as such.
    done: RecentIds,
}

impl Assembler {
    /// An empty assembler.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pending: HashMap::new(),
            order: VecDeque::new(),
            done: RecentIds::new(limits.max_pending_traces),
        }
    }

    /// Takes spans that arrived at `now`; returns traces evicted to stay
    /// within [`Limits::max_pending_traces`].
    pub fn add(&mut self, spans: Vec<ReceivedSpan>, now: Instant) -> Vec<FinishedTrace> {
        let mut evicted = Vec::new();
        for span in spans {
            let trace_id = span.trace_id.clone();
            let pending = match self.pending.get_mut(&trace_id) {
                Some(pending) => pending,
                None => {
                    if self.pending.len() >= self.limits.max_pending_traces {
                        evicted.extend(self.evict_oldest());
                    }
                    self.order.push_back(trace_id.clone());
                    self.pending.entry(trace_id).or_insert(Pending {
                        spans: Vec::new(),
                        first_seen: now,
                        last_seen: now,
                        dropped: 0,
                    })
                }
            };
            pending.last_seen = now;
            if pending.spans.len() < self.limits.max_spans_per_trace {
                pending.spans.push(span);
            } else {
                pending.dropped += 1;
            }
        }
        evicted
    }

    /// Traces that went quiet, or grew too old, by `now`.
    pub fn due(&mut self, now: Instant) -> Vec<FinishedTrace> {
        let limits = self.limits;
        let ready: Vec<(String, Option<Incomplete>)> = self
            .pending
            .iter()
            .filter_map(|(id, pending)| {
                if now.duration_since(pending.last_seen) >= limits.quiet {
                    Some((id.clone(), None))
                } else if now.duration_since(pending.first_seen) >= limits.max_age {
                    Some((id.clone(), Some(Incomplete::TooOld)))
                } else {
                    None
                }
            })
            .collect();
        let mut finished: Vec<FinishedTrace> = ready
            .into_iter()
            .filter_map(|(id, incomplete)| self.finish(&id, incomplete))
            .collect();
        finished.sort_by_key(|t| t.spans.iter().map(|s| s.start_ns).min().unwrap_or(0));
        self.compact();
        finished
    }

    /// Everything still pending, as incomplete as it is (at exit).
    pub fn drain(&mut self) -> Vec<FinishedTrace> {
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        ids.into_iter()
            .filter_map(|id| self.finish(&id, None))
            .collect()
    }

    /// Traces pending now.
    pub fn pending_traces(&self) -> usize {
        self.pending.len()
    }

    fn evict_oldest(&mut self) -> Option<FinishedTrace> {
        while let Some(id) = self.order.pop_front() {
            if self.pending.contains_key(&id) {
                return self.finish(&id, Some(Incomplete::TooManyPending));
            }
        }
        None
    }

    fn finish(&mut self, id: &str, incomplete: Option<Incomplete>) -> Option<FinishedTrace> {
        let pending = self.pending.remove(id)?;
        let late = !self.done.insert(id.to_string());
        Some(FinishedTrace {
            trace_id: id.to_string(),
            spans: pending.spans,
            incomplete,
            dropped_spans: pending.dropped,
            late,
        })
    }

    /// Drops ids of handed-out traces from the arrival order before they pile up.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.order.retain(|id| pending.contains_key(id));
        }
    }
}

/// The last `capacity` ids seen.
struct RecentIds {
    capacity: usize,
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Remembers `id`; false if it was remembered already.
    fn insert(&mut self, id: String) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.set.insert(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SpanKind;

    fn span(trace: &str, id: &str) -> ReceivedSpan {
        ReceivedSpan {
            service: "svc".into(),
            resource: Default::default(),
            trace_id: trace.into(),
            span_id: id.into(),
            parent_span_id: String::new(),
            name: "work".into(),
            kind: SpanKind::Internal,
            attributes: Default::default(),
            int_attributes: Default::default(),
            events: Vec::new(),
            status_code: 0,
            status_message: String::new(),
            start_ns: 1,
            end_ns: 2,
            links: Vec::new(),
        }
    }

    fn limits() -> Limits {
        Limits {
            quiet: Duration::from_secs(2),
            max_age: Duration::from_secs(10),
            max_pending_traces: 2,
            max_spans_per_trace: 3,
        }
    }

    #[test]
    fn a_trace_is_finished_once_it_went_quiet_and_then_forgotten() {
        let mut assembler = Assembler::new(limits());
        let t0 = Instant::now();
        assembler.add(vec![span("a", "1")], t0);
        assembler.add(vec![span("a", "2")], t0 + Duration::from_secs(1));
        assert!(
            assembler.due(t0 + Duration::from_secs(2)).is_empty(),
            "still talking"
        );
        let done = assembler.due(t0 + Duration::from_secs(3));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].spans.len(), 2);
        assert_eq!(done[0].incomplete, None);
        assert_eq!(assembler.pending_traces(), 0);
        // A straggler is its own, late, tree.
        assembler.add(vec![span("a", "3")], t0 + Duration::from_secs(4));
        let late = assembler.due(t0 + Duration::from_secs(7));
        assert!(late[0].late);
    }

    #[test]
    fn memory_stays_bounded_by_the_limits() {
        let mut assembler = Assembler::new(limits());
        let t0 = Instant::now();
        assert!(assembler
            .add(vec![span("a", "1"), span("b", "1")], t0)
            .is_empty());
        let evicted = assembler.add(vec![span("c", "1")], t0);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].trace_id, "a");
        assert_eq!(evicted[0].incomplete, Some(Incomplete::TooManyPending));
        let many: Vec<_> = (0..5).map(|i| span("b", &i.to_string())).collect();
        assembler.add(many, t0);
        // b keeps talking past max_age: handed out as incomplete.
        for s in 1..=10 {
            assembler.add(vec![span("b", "x")], t0 + Duration::from_secs(s));
        }
        let old = assembler.due(t0 + Duration::from_secs(10));
        let b = old.iter().find(|t| t.trace_id == "b").unwrap();
        assert_eq!(b.incomplete, Some(Incomplete::TooOld));
        assert_eq!(b.spans.len(), 3);
        assert_eq!(b.dropped_spans, 13);
    }
}
