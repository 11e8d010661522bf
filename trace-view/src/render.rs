//! A finished trace as text: a tree (one line per span: service, name, kind,
//! duration, a bar placing the span in the trace's time, status), or one
//! summary line. Colours only when asked (the binary asks when stdout is a
//! terminal).

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use crate::{
    assembler::{FinishedTrace, Incomplete},
    span::ReceivedSpan,
};

/// How to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours.
    pub color: bool,
    /// Each span's attributes below it.
    pub attributes: bool,
    /// Each span's events below it.
    pub events: bool,
    /// Characters of the timeline bar.
    pub bar_width: usize,
}

impl Default for Style {
    fn default() -> Self {
        Self {
            color: false,
            attributes: false,
            events: false,
            bar_width: 30,
        }
    }
}

/// Which traces to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only traces with a span of this service.
    pub service: Option<String>,
    /// Only traces at least this long.
    pub min_duration: Option<Duration>,
    /// Only traces with a span whose status is ERROR.
    pub errors_only: bool,
    /// Only this trace.
    pub trace_id: Option<String>,
}

impl Filter {
    /// Whether `trace` passes.
    pub fn matches(&self, trace: &FinishedTrace) -> bool {
        self.trace_id
            .as_ref()
            .is_none_or(|id| id.eq_ignore_ascii_case(&trace.trace_id))
            && self
                .service
                .as_ref()
                .is_none_or(|service| trace.spans.iter().any(|s| &s.service == service))
            && self
                .min_duration
                .is_none_or(|min| Duration::from_nanos(extent(&trace.spans).2) >= min)
            && (!self.errors_only || trace.spans.iter().any(ReceivedSpan::is_error))
    }
}

/// `(start, end, end - start)` of the spans, in nanoseconds.
fn extent(spans: &[ReceivedSpan]) -> (u64, u64, u64) {
    let start = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_ns).max().unwrap_or(start);
    (start, end, end.saturating_sub(start))
}

/// `850 µs`, `12.3 ms`, `1.25 s`.
pub fn format_duration(ns: u64) -> String {
    match ns {
        0..1_000_000 => format!("{} µs", ns / 1_000),
        1_000_000..1_000_000_000 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn service(&self, service: &str, padded: &str) -> String {
        // A stable colour per service name.
        const PALETTE: [&str; 6] = ["36", "33", "35", "32", "34", "96"];
        let hash = service
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        self.wrap(PALETTE[hash % PALETTE.len()], padded)
    }
}

/// The header line: id, duration, span count, services, root, status.
fn header(trace: &FinishedTrace, paint: &Paint) -> String {
    let (_, _, total) = extent(&trace.spans);
    let mut services: Vec<&str> = Vec::new();
    for span in &trace.spans {
        if !services.contains(&span.service.as_str()) {
            services.push(&span.service);
        }
    }
    let roots = roots(&trace.spans);
    let root = roots
        .first()
        .map(|r| format!("{}: {}", r.service, r.name))
        .unwrap_or_default();
    let errors = trace.spans.iter().filter(|s| s.is_error()).count();
    let mut notes = Vec::new();
    if errors > 0 {
        notes.push(paint.wrap(
            "1;31",
            &format!("{errors} error{}", if errors == 1 { "" } else { "s" }),
        ));
    }
    match trace.incomplete {
        Some(Incomplete::TooOld) => {
            notes.push(paint.wrap("33", "incomplete: still receiving spans"))
        }
        Some(Incomplete::TooManyPending) => {
            notes.push(paint.wrap("33", "incomplete: too many traces pending"))
        }
        None => {}
    }
    if trace.late {
        notes.push(paint.wrap("33", "late spans of a trace shown earlier"));
    }
    if trace.dropped_spans > 0 {
        notes.push(paint.wrap("33", &format!("{} spans not kept", trace.dropped_spans)));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!("  [{}]", notes.join(", "))
    };
    format!(
        "trace {}  {}  {} span{}  {}  {}{notes}",
        paint.wrap("1", &trace.trace_id),
        format_duration(total),
        trace.spans.len(),
        if trace.spans.len() == 1 { "" } else { "s" },
        services.join(", "),
        root
    )
}

/// Spans whose parent is not in the trace (the root, and orphans of a trace
/// printed incomplete), earliest first.
fn roots(spans: &[ReceivedSpan]) -> Vec<&ReceivedSpan> {
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut roots: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| !ids.contains(s.parent_span_id.as_str()))
        .collect();
    roots.sort_by_key(|s| s.start_ns);
    roots
}

/// One line for the trace.
pub fn summary_line(trace: &FinishedTrace, style: Style) -> String {
    header(trace, &Paint { on: style.color })
}

/// The trace as a tree, children in start order, with a header line.
pub fn tree(trace: &FinishedTrace, style: Style) -> String {
    let paint = Paint { on: style.color };
    let (start, _, total) = extent(&trace.spans);
    let mut children: HashMap<&str, Vec<&ReceivedSpan>> = HashMap::new();
    for span in &trace.spans {
        children
            .entry(span.parent_span_id.as_str())
            .or_default()
            .push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_ns);
    }
    // Lines first (prefix, span), to size the columns.
    let mut lines: Vec<(String, String, &ReceivedSpan)> = Vec::new();
    let roots = roots(&trace.spans);
    let mut stack: Vec<(&ReceivedSpan, String, String)> = roots
        .iter()
        .rev()
        .map(|root| (*root, String::new(), String::new()))
        .collect();
    let mut guard = 0;
    while let Some((span, own, continuation)) = stack.pop() {
        guard += 1;
        if guard > trace.spans.len() {
            break; // a cycle in the parent ids: never loop forever
        }
        let kids = children
            .get(span.span_id.as_str())
            .cloned()
            .unwrap_or_default();
        for (i, kid) in kids.iter().enumerate().rev() {
            let last = i + 1 == kids.len();
            let own = format!("{continuation}{}", if last { "└─ " } else { "├─ " });
            let next = format!("{continuation}{}", if last { "   " } else { "│  " });
            stack.push((kid, own, next));
        }
        lines.push((own, continuation, span));
    }
    let name_width = lines
        .iter()
        .map(|(prefix, _, span)| prefix.chars().count() + span.name.chars().count())
        .max()
        .unwrap_or(0);
    let service_width = lines
        .iter()
        .map(|(_, _, s)| s.service.chars().count())
        .max()
        .unwrap_or(0);

    let mut out = header(trace, &paint);
    out.push('\n');
    for (prefix, continuation, span) in &lines {
        let name = format!("{prefix}{}", span.name);
        let pad = name_width - name.chars().count();
        let bar = bar(span, start, total, style.bar_width);
        let status = if span.is_error() {
            let message = if span.status_message.is_empty() {
                String::new()
            } else {
                format!(": {}", span.status_message)
            };
            format!("  {}", paint.wrap("1;31", &format!("ERROR{message}")))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {}{}{}  {}  {:<8} {:>9}  |{}|{status}",
            paint.wrap("2", prefix),
            span.name,
            " ".repeat(pad),
            paint.service(&span.service, &format!("{:<service_width$}", span.service)),
            span.kind.label(),
            format_duration(span.duration_ns()),
            bar,
        );
        let detail = format!(
            "  {continuation}{}",
            if children_of(span, &trace.spans) {
                "│     "
            } else {
                "      "
            }
        );
        if style.attributes {
            let mut keys: Vec<&String> = span.attributes.keys().collect();
            keys.sort();
            for key in keys {
                let _ = writeln!(
                    out,
                    "{}{} = {}",
                    paint.wrap("2", &detail),
                    key,
                    span.attributes[key]
                );
            }
        }
        if style.events {
            for event in &span.events {
                let at = event.time_ns.saturating_sub(span.start_ns);
                let mut attrs: Vec<String> = event
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                attrs.sort();
                let _ = writeln!(
                    out,
                    "{}◆ {} +{} {}",
                    paint.wrap("2", &detail),
                    event.name,
                    format_duration(at),
                    attrs.join(" ")
                );
            }
        }
    }
    out
}

fn children_of(span: &ReceivedSpan, spans: &[ReceivedSpan]) -> bool {
    spans.iter().any(|s| s.parent_span_id == span.span_id)
}

/// Where the span sits in the trace's time, `width` characters wide.
fn bar(span: &ReceivedSpan, start: u64, total: u64, width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    let total = total.max(1) as f64;
    let from =
        ((span.start_ns.saturating_sub(start)) as f64 / total * width as f64).floor() as usize;
    let from = from.min(width - 1);
    let len = ((span.duration_ns() as f64 / total * width as f64).round() as usize)
        .clamp(1, width - from);
    format!(
        "{}{}{}",
        " ".repeat(from),
        "█".repeat(len),
        " ".repeat(width - from - len)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SpanKind;

    fn span(
        id: &str,
        parent: &str,
        service: &str,
        name: &str,
        start_ms: u64,
        end_ms: u64,
    ) -> ReceivedSpan {
        ReceivedSpan {
            service: service.into(),
            resource: Default::default(),
            trace_id: "t".repeat(32),
            span_id: id.into(),
            parent_span_id: parent.into(),
            name: name.into(),
            kind: SpanKind::Internal,
            attributes: [("task.id".to_string(), "42".to_string())].into(),
            int_attributes: Default::default(),
            events: Vec::new(),
            status_code: 0,
            status_message: String::new(),
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            links: Vec::new(),
        }
    }

    fn trace() -> FinishedTrace {
        let mut failed = span("c", "a", "worker-service", "process-task", 5, 10);
        failed.status_code = 2;
        failed.status_message = "boom".into();
        FinishedTrace {
            trace_id: "t".repeat(32),
            spans: vec![
                span("a", "", "gateway-service", "POST /api/tasks", 0, 10),
                failed,
                span("b", "a", "backend-service", "create-task", 1, 4),
            ],
            incomplete: None,
            dropped_spans: 0,
            late: false,
        }
    }

    #[test]
    fn the_tree_nests_children_in_start_order_with_bars_and_errors() {
        let text = tree(&trace(), Style::default());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(&format!("trace {}  10.0 ms  3 spans", "t".repeat(32))),
            "{text}"
        );
        assert!(lines[0].contains("1 error"), "{text}");
        assert!(lines[1].starts_with("  POST /api/tasks"), "{text}");
        assert!(lines[2].starts_with("  ├─ create-task"), "{text}");
        assert!(lines[3].starts_with("  └─ process-task"), "{text}");
        assert!(
            lines[3].contains("worker-service") && lines[3].contains("ERROR: boom"),
            "{text}"
        );
        assert!(
            lines[1].contains("|██████████████████████████████|"),
            "{text}"
        );
        assert!(
            lines[3].contains("|               ███████████████|"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no colour unless asked");
        let detailed = tree(
            &trace(),
            Style {
                attributes: true,
                ..Style::default()
            },
        );
        assert!(detailed.contains("task.id = 42"), "{detailed}");
    }

    #[test]
    fn filters_select_by_service_duration_errors_and_id() {
        let trace = trace();
        assert!(Filter::default().matches(&trace));
        let only = |f: Filter| f.matches(&trace);
        assert!(only(Filter {
            service: Some("worker-service".into()),
            ..Filter::default()
        }));
        assert!(!only(Filter {
            service: Some("product-service".into()),
            ..Filter::default()
        }));
        assert!(only(Filter {
            min_duration: Some(Duration::from_millis(10)),
            ..Filter::default()
        }));
        assert!(!only(Filter {
            min_duration: Some(Duration::from_millis(11)),
            ..Filter::default()
        }));
        assert!(only(Filter {
            errors_only: true,
            ..Filter::default()
        }));
        assert!(!only(Filter {
            trace_id: Some("f".repeat(32)),
            ..Filter::default()
        }));
    }
}
