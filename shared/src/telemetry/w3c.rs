//! Trace and span ids written the way W3C Trace Context writes them:
//! lowercase hex, `00-<trace-id>-<span-id>-<flags>` for a whole context.
//!
//! Every traced request writes its ids at least twice (the `traceresponse`
//! header and its metrics exemplar; a POST also into its body, a JSON log
//! line into its fields). Through `format!` and the ids' `Display` (a `u128`
//! padded to 32 hex digits) that cost a few thousand instructions per
//! request, a few per cent of a cheap one (BENCHMARKS.md); a table lookup per
//! byte costs a few hundred.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// `trace_id` as 32 lowercase hex digits (as Jaeger's URLs and the W3C
/// headers write it).
pub fn trace_id_hex(trace_id: TraceId) -> String {
    let mut out = String::with_capacity(32);
    push_hex(&mut out, &trace_id.to_bytes());
    out
}

/// `span_id` as 16 lowercase hex digits.
pub fn span_id_hex(span_id: SpanId) -> String {
    let mut out = String::with_capacity(16);
    push_hex(&mut out, &span_id.to_bytes());
    out
}

/// The `traceparent` / `traceresponse` value naming `span_context`
/// (`00-<trace-id>-<span-id>-<flags>`), `None` for an invalid context.
pub fn header_value(span_context: &SpanContext) -> Option<String> {
    written(span_context, span_context.trace_flags())
}

/// The `traceparent` a sender writes for `span_context`: as
/// [`header_value`], with only the sampled flag of its flags (the one flag
/// W3C Trace Context level 1 defines, and all OpenTelemetry's propagator
/// sends).
pub fn traceparent(span_context: &SpanContext) -> Option<String> {
    written(
        span_context,
        span_context.trace_flags() & TraceFlags::SAMPLED,
    )
}

/// The trace id, parent id and flags of a `traceparent` value (surrounding
/// white space allowed), or `None` when it is not one: W3C Trace Context's
/// format exactly (lowercase hex of fixed lengths; version `ff` invalid;
/// version `00` exactly 55 characters, a later version at least that, with
/// a `-` after them). Only the sampled flag is kept, as OpenTelemetry's
/// propagator keeps it. All-zero ids come back as they are, for the caller's
/// validity check.
///
/// OpenTelemetry's propagator reads the same values through a split into a
/// `Vec` and integer parsing, at several times the cost (BENCHMARKS.md). It
/// also takes what W3C Trace Context asks receivers to ignore, and this does
/// not: fields of another width that still parse as numbers (`00-1-1-01`,
/// ids with an extra leading zero, a `+` sign), a `-` after a version `00`
/// value, and an uppercase version.
pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let value = value.trim().as_bytes();
    let version = hex_bytes::<1>(value.get(0..2)?)?[0];
    let fits = match version {
        0xff => false,
        0 => value.len() == 55,
        _ => value.len() == 55 || value.get(55) == Some(&b'-'),
    };
    if !fits || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = TraceId::from_bytes(hex_bytes::<16>(&value[3..35])?);
    let span_id = SpanId::from_bytes(hex_bytes::<8>(&value[36..52])?);
    let flags = TraceFlags::new(hex_bytes::<1>(&value[53..55])?[0]) & TraceFlags::SAMPLED;
    Some((trace_id, span_id, flags))
}

/// `N` bytes from `2 * N` lowercase hex digits.
fn hex_bytes<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}

fn written(span_context: &SpanContext, flags: TraceFlags) -> Option<String> {
    if !span_context.is_valid() {
        return None;
    }
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, &span_context.trace_id().to_bytes());
    out.push('-');
    push_hex(&mut out, &span_context.span_id().to_bytes());
    out.push('-');
    push_hex(&mut out, &[flags.to_u8()]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceState;

    fn context(trace: u128, span: u64, flags: TraceFlags) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            flags,
            true,
            TraceState::NONE,
        )
    }

    #[test]
    fn ids_are_written_as_the_sdks_display_writes_them() {
        for (trace, span) in [
            (1, 1),
            (0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331),
            (u128::MAX, u64::MAX),
            (0x00ff_0000_0000_0000_0000_0000_0000_00a0, 0x0f),
        ] {
            for flags in [TraceFlags::SAMPLED, TraceFlags::NOT_SAMPLED] {
                let context = context(trace, span, flags);
                assert_eq!(
                    header_value(&context).as_deref(),
                    Some(
                        format!(
                            "00-{}-{}-{:02x}",
                            context.trace_id(),
                            context.span_id(),
                            flags.to_u8()
                        )
                        .as_str()
                    )
                );
                assert_eq!(
                    trace_id_hex(context.trace_id()),
                    context.trace_id().to_string()
                );
                assert_eq!(
                    span_id_hex(context.span_id()),
                    context.span_id().to_string()
                );
            }
        }
        assert_eq!(
            header_value(&context(
                0x0af7651916cd43dd8448eb211c80319c,
                0xb7ad6b7169203331,
                TraceFlags::SAMPLED
            ))
            .as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
    }

    #[test]
    fn traceparent_sends_only_the_sampled_flag() {
        let ids = (0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331);
        for (flags, written) in [
            (TraceFlags::SAMPLED, "01"),
            (TraceFlags::NOT_SAMPLED, "00"),
            (TraceFlags::new(0x03), "01"),
            (TraceFlags::new(0x02), "00"),
        ] {
            let context = context(ids.0, ids.1, flags);
            assert_eq!(
                traceparent(&context),
                Some(format!(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{written}"
                ))
            );
        }
        assert_eq!(traceparent(&SpanContext::empty_context()), None);
    }

    #[test]
    fn an_invalid_context_has_no_header() {
        assert_eq!(header_value(&SpanContext::empty_context()), None);
        assert_eq!(
            header_value(&context(0, 1, TraceFlags::SAMPLED)),
            None,
            "all-zero trace id"
        );
    }
}
