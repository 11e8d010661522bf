//! The summary at the end: per request type, requests per second, p50, p90,
//! p99 and max latency, and errors by kind; the end-to-end latency of tasks
//! followed until done. Printed as a table and written as JSON.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use goose::metrics::GooseMetrics;
use serde::Serialize;

use crate::cli::Options;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// One request type's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestSummary {
    /// `GET /api/products`, ...
    pub name: String,
    /// Requests sent.
    pub requests: usize,
    /// Requests per second over the run.
    pub per_second: f64,
    /// Response times.
    pub latency: Latency,
    /// Failed requests by kind (`503`, `connection`, ...).
    pub errors: BTreeMap<String, usize>,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The scenario.
    pub scenario: String,
    /// `closed` or `fixed-rate`.
    pub mode: String,
    /// The fixed rate asked for (iterations per second), if any.
    pub target_rate: Option<usize>,
    /// Simulated users.
    pub users: usize,
    /// Seconds the load ran.
    pub duration_s: f64,
    /// Iterations started, and per second.
    pub iterations: u64,
    /// Iterations per second over the run.
    pub iterations_per_second: f64,
    /// Iterations that ended in an error.
    pub failed_iterations: u64,
    /// Per request type.
    pub requests: Vec<RequestSummary>,
    /// POST to `succeeded` (e2e and mixed), if any task was followed.
    pub end_to_end: Option<EndToEnd>,
}

/// End-to-end latencies of the tasks followed until done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndToEnd {
    /// Tasks that reached `succeeded`.
    pub succeeded: usize,
    /// Tasks that `failed` or were not done within a minute.
    pub unfinished: u64,
    /// From the POST to seeing `succeeded`; measured by polling, so it
    /// includes up to one poll interval.
    pub latency: Latency,
}

impl Summary {
    /// Builds the summary from goose's metrics and the run's own figures.
    pub fn new(
        options: &Options,
        metrics: &GooseMetrics,
        run: &crate::scenarios::Run,
        ran: Duration,
    ) -> Self {
        use std::sync::atomic::Ordering;
        let seconds = ran.as_secs_f64().max(f64::EPSILON);
        let mut requests: Vec<RequestSummary> = metrics
            .requests
            .values()
            .map(|aggregate| {
                let mut errors: BTreeMap<String, usize> = aggregate
                    .status_code_counts
                    .iter()
                    .filter(|(code, _)| !(200..400).contains(*code))
                    .map(|(code, n)| {
                        let kind = if *code == 0 {
                            "connection".to_string()
                        } else {
                            code.to_string()
                        };
                        (kind, *n)
                    })
                    .collect();
                let counted: usize = errors.values().sum();
                if aggregate.fail_count > counted {
                    *errors.entry("other".into()).or_default() += aggregate.fail_count - counted;
                }
                let times: Vec<(f64, usize)> = aggregate
                    .raw_data
                    .times
                    .iter()
                    .map(|(ms, n)| (*ms as f64, *n))
                    .collect();
                RequestSummary {
                    name: aggregate.path.clone(),
                    requests: aggregate.raw_data.counter,
                    per_second: aggregate.raw_data.counter as f64 / seconds,
                    latency: percentiles(&times, aggregate.raw_data.maximum_time as f64),
                    errors,
                }
            })
            .collect();
        requests.sort_by(|a, b| a.name.cmp(&b.name));
        let mut micros = run.e2e_micros.lock().map(|l| l.clone()).unwrap_or_default();
        micros.sort_unstable();
        let end_to_end =
            (!micros.is_empty() || run.unfinished.load(Ordering::Relaxed) > 0).then(|| {
                let times: Vec<(f64, usize)> =
                    micros.iter().map(|us| (*us as f64 / 1000.0, 1)).collect();
                EndToEnd {
                    succeeded: micros.len(),
                    unfinished: run.unfinished.load(Ordering::Relaxed),
                    latency: percentiles(
                        &times,
                        micros.last().map_or(0.0, |us| *us as f64 / 1000.0),
                    ),
                }
            });
        let iterations = run.iterations.load(Ordering::Relaxed);
        let (mode, target_rate) = match options.load {
            crate::cli::Load::Closed { .. } => ("closed", None),
            crate::cli::Load::FixedRate { rate, .. } => ("fixed-rate", Some(rate)),
        };
        Self {
            scenario: options.scenario.to_string(),
            mode: mode.to_string(),
            target_rate,
            users: options.users(),
            duration_s: seconds,
            iterations,
            iterations_per_second: iterations as f64 / seconds,
            failed_iterations: run.failures.load(Ordering::Relaxed),
            requests,
            end_to_end,
        }
    }

    /// The table printed at the end.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let rate = self
            .target_rate
            .map(|r| format!(", target {r}/s"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\n{} ({}{rate}, {} users, {:.1} s): {} iterations, {:.0}/s, {} failed",
            self.scenario,
            self.mode,
            self.users,
            self.duration_s,
            self.iterations,
            self.iterations_per_second,
            self.failed_iterations
        );
        let _ = writeln!(
            out,
            "{:<30} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}  errors",
            "request", "count", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        let row = |out: &mut String,
                   name: &str,
                   count: usize,
                   per_second: Option<f64>,
                   l: &Latency,
                   errors: String| {
            let per_second = per_second
                .map(|r| format!("{r:.0}"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "{name:<30} {count:>9} {per_second:>9} {:>8.1} {:>8.1} {:>8.1} {:>8.1}  {errors}",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            );
        };
        for request in &self.requests {
            let errors = if request.errors.is_empty() {
                "-".to_string()
            } else {
                request
                    .errors
                    .iter()
                    .map(|(kind, n)| format!("{kind}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            row(
                &mut out,
                &request.name,
                request.requests,
                Some(request.per_second),
                &request.latency,
                errors,
            );
        }
        if let Some(e2e) = &self.end_to_end {
            row(
                &mut out,
                "POST to succeeded (e2e)",
                e2e.succeeded,
                None,
                &e2e.latency,
                if e2e.unfinished > 0 {
                    format!("unfinished: {}", e2e.unfinished)
                } else {
                    "-".into()
                },
            );
        }
        out
    }
}

/// Percentiles of `(value, count)` pairs sorted by value.
fn percentiles(sorted: &[(f64, usize)], max: f64) -> Latency {
    let total: usize = sorted.iter().map(|(_, n)| n).sum();
    let at = |q: f64| -> f64 {
        if total == 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as usize).clamp(1, total);
        let mut seen = 0;
        for (value, n) in sorted {
            seen += n;
            if seen >= rank {
                return *value;
            }
        }
        max
    };
    Latency {
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_read_off_the_counts() {
        // 100 requests: 90 at 1 ms, 9 at 10 ms, 1 at 200 ms.
        let latency = percentiles(&[(1.0, 90), (10.0, 9), (200.0, 1)], 200.0);
        assert_eq!(latency.p50_ms, 1.0);
        assert_eq!(latency.p90_ms, 1.0);
        assert_eq!(latency.p99_ms, 10.0);
        assert_eq!(latency.max_ms, 200.0);
        assert_eq!(percentiles(&[], 0.0).p99_ms, 0.0);
    }
}
