//! A received trace as a tree that assertions can walk.

use crate::{ReceivedSpan, SpanKind};

/// The spans of one trace.
#[derive(Debug, Clone)]
pub struct Trace {
    spans: Vec<ReceivedSpan>,
}

impl Trace {
    /// Wraps spans (all of one trace).
    pub fn new(spans: Vec<ReceivedSpan>) -> Self {
        Self { spans }
    }

    /// All spans.
    pub fn spans(&self) -> &[ReceivedSpan] {
        &self.spans
    }

    /// The first span of `service` named `name`, if any.
    pub fn get(&self, service: &str, name: &str) -> Option<&ReceivedSpan> {
        self.spans
            .iter()
            .find(|s| s.service == service && s.name == name)
    }

    /// Whether a span of `service` named `name` arrived.
    pub fn has(&self, service: &str, name: &str) -> bool {
        self.get(service, name).is_some()
    }

    /// The span of `service` named `name`; panics with the whole tree if absent.
    pub fn find(&self, service: &str, name: &str) -> &ReceivedSpan {
        self.get(service, name)
            .unwrap_or_else(|| panic!("no span {name:?} from {service}; trace:\n{}", self.render()))
    }

    /// The span of `service` named `name` of kind `kind` (a gateway has a
    /// SERVER and a CLIENT span of the same name); panics if absent.
    pub fn find_kind(&self, service: &str, name: &str, kind: SpanKind) -> &ReceivedSpan {
        self.spans
            .iter()
            .find(|s| s.service == service && s.name == name && s.kind == kind)
            .unwrap_or_else(|| {
                panic!(
                    "no {kind:?} span {name:?} from {service}; trace:\n{}",
                    self.render()
                )
            })
    }

    /// Every span of `service` named `name`.
    pub fn find_all(&self, service: &str, name: &str) -> Vec<&ReceivedSpan> {
        self.spans
            .iter()
            .filter(|s| s.service == service && s.name == name)
            .collect()
    }

    /// The span with this id.
    pub fn by_id(&self, span_id: &str) -> Option<&ReceivedSpan> {
        self.spans.iter().find(|s| s.span_id == span_id)
    }

    /// Panics unless `child`'s parent is `parent`.
    pub fn assert_child_of(&self, child: &ReceivedSpan, parent: &ReceivedSpan) {
        assert_eq!(
            child.parent_span_id,
            parent.span_id,
            "{} ({}) should be a child of {} ({}); trace:\n{}",
            child.name,
            child.service,
            parent.name,
            parent.service,
            self.render()
        );
    }

    /// Whether `ancestor` is on `span`'s parent chain.
    pub fn is_descendant(&self, span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
        let mut current = span;
        for _ in 0..self.spans.len() {
            if current.parent_span_id == ancestor.span_id {
                return true;
            }
            match self.by_id(&current.parent_span_id) {
                Some(parent) => current = parent,
                None => return false,
            }
        }
        false
    }

    /// Panics unless `span` descends from `ancestor`.
    pub fn assert_descendant_of(&self, span: &ReceivedSpan, ancestor: &ReceivedSpan) {
        assert!(
            self.is_descendant(span, ancestor),
            "{} ({}) should descend from {} ({}); trace:\n{}",
            span.name,
            span.service,
            ancestor.name,
            ancestor.service,
            self.render()
        );
    }

    /// The children of `span`.
    pub fn children(&self, span: &ReceivedSpan) -> Vec<&ReceivedSpan> {
        self.spans
            .iter()
            .filter(|s| s.parent_span_id == span.span_id)
            .collect()
    }

    /// The tree as indented text, for failure messages.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let ids: std::collections::HashSet<&str> =
            self.spans.iter().map(|s| s.span_id.as_str()).collect();
        for root in self
            .spans
            .iter()
            .filter(|s| !ids.contains(s.parent_span_id.as_str()))
        {
            self.render_from(root, 0, &mut out);
        }
        out
    }

    fn render_from(&self, span: &ReceivedSpan, depth: usize, out: &mut String) {
        out.push_str(&format!(
            "{}{} [{}] {:?} span={} parent={}{}\n",
            "  ".repeat(depth),
            span.name,
            span.service,
            span.kind,
            span.span_id,
            span.parent_span_id,
            if span.is_error() { " ERROR" } else { "" }
        ));
        if depth < 64 {
            for child in self.children(span) {
                self.render_from(child, depth + 1, out);
            }
        }
    }
}

/// Panics unless `span` has kind `kind`.
pub fn assert_kind(span: &ReceivedSpan, kind: SpanKind) {
    assert_eq!(span.kind, kind, "kind of {} ({})", span.name, span.service);
}

/// Panics unless `span` has attribute `key` equal to `value`.
pub fn assert_attr(span: &ReceivedSpan, key: &str, value: &str) {
    assert_eq!(
        span.attr(key),
        Some(value),
        "attribute {key} of {} ({}); all: {:?}",
        span.name,
        span.service,
        span.attributes
    );
}
