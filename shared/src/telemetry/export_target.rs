//! Where spans go and how they are sent, read from the standard
//! `OTEL_EXPORTER_OTLP_*` variables (the signal-specific `_TRACES_` ones
//! first), with a fallback for setups written for the Jaeger agent.

use std::{fmt, time::Duration};

use http::{
    header::{HeaderMap, HeaderName, HeaderValue},
    Uri,
};

/// The OTLP destination and request settings resolved from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportTarget {
    /// `grpc` or `http/protobuf`.
    pub protocol: ExportProtocol,
    /// The collector's URL; for HTTP the full one, `/v1/traces` included.
    pub endpoint: String,
    /// The Jaeger agent host that produced `endpoint`, if any.
    pub jaeger_agent_host: Option<String>,
    /// Sent with every export request (`OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`);
    /// the values are marked sensitive, so `Debug` does not show them.
    pub headers: HeaderMap,
    /// How long one export request may take, retries included
    /// (`OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`, milliseconds).
    pub timeout: Duration,
    /// A compression asked for that this build does not do.
    pub unsupported_compression: Option<String>,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportProtocol {
    /// OTLP/gRPC (port 4317 by convention).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318, path `/v1/traces`).
    HttpProtobuf,
}

/// The OTLP specification's default export timeout.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

impl ExportTarget {
    /// A gRPC target at `endpoint` with the default settings.
    pub fn grpc(endpoint: impl Into<String>) -> Self {
        Self {
            protocol: ExportProtocol::Grpc,
            endpoint: endpoint.into(),
            jaeger_agent_host: None,
            headers: HeaderMap::new(),
            timeout: DEFAULT_EXPORT_TIMEOUT,
            unsupported_compression: None,
        }
    }

    /// Reads the `OTEL_EXPORTER_OTLP_[TRACES_]*` variables (protocol,
    /// endpoint, headers, timeout, compression) and `JAEGER_AGENT_HOST`.
    pub fn from_env() -> Result<Self, String> {
        Self::resolve(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    fn resolve(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        // The signal's own variable wins over the general one.
        let traces_or_general = |name: &str| {
            let traces = name.replacen("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_", 1);
            var(&traces)
                .map(|value| (traces, value))
                .or_else(|| var(name).map(|value| (name.to_string(), value)))
        };
        // Enum values are case-insensitive, as the OTLP exporters read them.
        let protocol = match traces_or_general("OTEL_EXPORTER_OTLP_PROTOCOL")
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("grpc") => ExportProtocol::Grpc,
            Some("http/protobuf") => ExportProtocol::HttpProtobuf,
            Some(other) => {
                return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported; use grpc or http/protobuf"
            ))
            }
        };

        // The specification's rules: the signal's endpoint is used as it is;
        // the general one is a base URL to which HTTP adds `/v1/traces`.
        let traces_endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let general_endpoint = var("OTEL_EXPORTER_OTLP_ENDPOINT");
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces_endpoint),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &general_endpoint),
        ] {
            if let Some(value) = value {
                check_endpoint(name, value.trim())?;
            }
        }
        let jaeger_agent_host = if traces_endpoint.is_some() || general_endpoint.is_some() {
            None
        } else {
            var("JAEGER_AGENT_HOST").map(|h| h.trim().to_string())
        };
        let base = match (&general_endpoint, &jaeger_agent_host) {
            (Some(endpoint), _) => endpoint.trim().to_string(),
            (None, Some(host)) => match protocol {
                ExportProtocol::Grpc => format!("http://{host}:4317"),
                ExportProtocol::HttpProtobuf => format!("http://{host}:4318"),
            },
            (None, None) => match protocol {
                ExportProtocol::Grpc => "http://localhost:4317".to_string(),
                ExportProtocol::HttpProtobuf => "http://localhost:4318".to_string(),
            },
        };
        let endpoint = match (traces_endpoint, protocol) {
            (Some(endpoint), _) => endpoint.trim().to_string(),
            (None, ExportProtocol::Grpc) => base,
            (None, ExportProtocol::HttpProtobuf) => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
        };
        match endpoint.parse::<Uri>() {
            Ok(uri) if uri.host().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => return Err(format!("the OTLP endpoint {endpoint:?} names no host")),
            Err(err) => {
                return Err(format!(
                    "the OTLP endpoint {endpoint:?} is not a URL: {err}"
                ))
            }
        }

        let headers = match traces_or_general("OTEL_EXPORTER_OTLP_HEADERS") {
            Some((name, value)) => parse_headers(&value).map_err(|err| format!("{name}: {err}"))?,
            None => HeaderMap::new(),
        };
        let timeout = match traces_or_general("OTEL_EXPORTER_OTLP_TIMEOUT") {
            Some((name, value)) => match value.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(format!(
                        "{name}={value:?}: expected the milliseconds an export may take (a whole number above 0)"
                    ))
                }
            },
            None => DEFAULT_EXPORT_TIMEOUT,
        };
        let unsupported_compression = traces_or_general("OTEL_EXPORTER_OTLP_COMPRESSION")
            .map(|(name, value)| (name, value.trim().to_ascii_lowercase()))
            .filter(|(_, value)| value != "none")
            .map(|(name, value)| format!("{name}={value}"));

        Ok(Self {
            protocol,
            endpoint,
            jaeger_agent_host,
            headers,
            timeout,
            unsupported_compression,
        })
    }

    /// The start-up lines worth a user's attention: a Jaeger-agent fallback,
    /// a compression that is not applied.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(host) = &self.jaeger_agent_host {
            notes.push(format!(
                "JAEGER_AGENT_HOST={host} and no OTEL_EXPORTER_OTLP_ENDPOINT: exporting OTLP to {} (Jaeger ingests OTLP natively; the agent protocol is not used)",
                self.endpoint
            ));
        }
        if let Some(setting) = &self.unsupported_compression {
            notes.push(format!(
                "{setting} is not supported by this build; spans are sent uncompressed (every OTLP receiver accepts that)"
            ));
        }
        notes
    }
}

impl fmt::Display for ExportTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            ExportProtocol::Grpc => "otlp/grpc",
            ExportProtocol::HttpProtobuf => "otlp/http-protobuf",
        };
        write!(f, "{protocol} {}", self.endpoint)
    }
}

/// An OTLP endpoint this build can reach: `http://` only. The exporter
/// sends without TLS; this says what to write instead.
fn check_endpoint(name: &str, value: &str) -> Result<(), String> {
    match value.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => Ok(()),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => Err(format!(
            "{name}={value:?}: this build exports OTLP without TLS; give an http:// endpoint \
             (a collector beside the service can forward over TLS)"
        )),
        Some(_) => Err(format!(
            "{name}={value:?}: the endpoint must start with http://"
        )),
        None => Err(format!(
            "{name}={value:?} has no scheme; write http://{value}"
        )),
    }
}

/// `key1=value1,key2=value2`, values percent-decoded (the W3C Baggage
/// format the specification gives for `OTEL_EXPORTER_OTLP_HEADERS`).
fn parse_headers(value: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, raw)) = pair.split_once('=') else {
            return Err(format!("{pair:?} is not key=value"));
        };
        let name = HeaderName::from_bytes(key.trim().as_bytes())
            .map_err(|_| format!("{:?} is not a header name", key.trim()))?;
        let decoded = percent_decode(raw.trim())
            .ok_or_else(|| format!("the value of {name} is not valid percent-encoded UTF-8"))?;
        let mut value = HeaderValue::from_str(&decoded)
            .map_err(|_| format!("the value of {name} cannot be sent in a header"))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

fn percent_decode(value: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)]) -> Result<ExportTarget, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExportTarget::resolve(|name| vars.get(name).cloned())
    }

    #[test]
    fn grpc_to_localhost_4317_is_the_default() {
        let target = resolve(&[]).unwrap();
        assert_eq!(target.protocol, ExportProtocol::Grpc);
        assert_eq!(target.endpoint, "http://localhost:4317");
        assert_eq!(target.timeout, Duration::from_secs(10));
        assert!(target.headers.is_empty());
        assert!(target.notes().is_empty());
    }

    #[test]
    fn http_protobuf_is_selected_by_the_protocol_variable() {
        let target = resolve(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).unwrap();
        assert_eq!(target.protocol, ExportProtocol::HttpProtobuf);
        assert_eq!(target.endpoint, "http://localhost:4318/v1/traces");
        let target = resolve(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", " HTTP/Protobuf ")]).unwrap();
        assert_eq!(target.protocol, ExportProtocol::HttpProtobuf);
        assert!(resolve(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]).is_err());
    }

    #[test]
    fn http_adds_v1_traces_to_the_general_endpoint_and_takes_the_signals_as_it_is() {
        let http = ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        let general = resolve(&[http, ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]).unwrap();
        assert_eq!(general.endpoint, "http://c:4318/v1/traces");
        let signal = resolve(&[
            http,
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9000/spans"),
        ])
        .unwrap();
        assert_eq!(signal.endpoint, "http://t:9000/spans");
        let grpc = resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap();
        assert_eq!(grpc.endpoint, "http://c:4317");
    }

    #[test]
    fn an_endpoint_without_http_is_refused_with_what_to_write_instead() {
        assert!(resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317")]).is_ok());
        assert!(resolve(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "HTTP://jaeger:4318/v1/traces"
        )])
        .is_ok());

        let err = resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4317")]).unwrap_err();
        assert!(err.contains("write http://jaeger:4317"), "{err}");
        let err = resolve(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://otel.example.com",
        )])
        .unwrap_err();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") && err.contains("without TLS"),
            "{err}"
        );
        assert!(resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://jaeger:4317")]).is_err());
        assert!(resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://")]).is_err());
    }

    #[test]
    fn jaeger_agent_host_alone_points_otlp_at_that_host() {
        let target = resolve(&[("JAEGER_AGENT_HOST", "jaeger")]).unwrap();
        assert_eq!(target.endpoint, "http://jaeger:4317");
        assert!(target.notes()[0].contains("http://jaeger:4317"));
        let target = resolve(&[
            ("JAEGER_AGENT_HOST", "jaeger"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        assert_eq!(target.endpoint, "http://jaeger:4318/v1/traces");
    }

    #[test]
    fn an_otlp_endpoint_wins_over_jaeger_agent_host() {
        let target = resolve(&[
            ("JAEGER_AGENT_HOST", "jaeger"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ])
        .unwrap();
        assert_eq!(target.endpoint, "http://collector:4317");
        assert_eq!(target.jaeger_agent_host, None);
        assert!(target.notes().is_empty());
    }

    #[test]
    fn headers_are_percent_decoded_and_the_signals_variable_wins() {
        let target = resolve(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=a%20b%3Dc, X-Tenant = blue ,",
        )])
        .unwrap();
        assert_eq!(target.headers["api-key"], "a b=c");
        assert_eq!(target.headers["x-tenant"], "blue");
        assert!(
            !format!("{:?}", target.headers).contains("a b=c"),
            "values stay out of Debug output"
        );
        let target = resolve(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "general=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "traces=1"),
        ])
        .unwrap();
        assert!(target.headers.contains_key("traces") && !target.headers.contains_key("general"));
        for bad in ["novalue", "bad key=1", "k=%zz", "k=%E2%28"] {
            let err = resolve(&[("OTEL_EXPORTER_OTLP_HEADERS", bad)]).unwrap_err();
            assert!(
                err.starts_with("OTEL_EXPORTER_OTLP_HEADERS: "),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_timeout_is_whole_milliseconds_and_the_signals_variable_wins() {
        let target = resolve(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "500")]).unwrap();
        assert_eq!(target.timeout, Duration::from_millis(500));
        let target = resolve(&[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "250"),
        ])
        .unwrap();
        assert_eq!(target.timeout, Duration::from_millis(250));
        for bad in ["0", "1.5", "10s", "-1"] {
            let err = resolve(&[("OTEL_EXPORTER_OTLP_TIMEOUT", bad)]).unwrap_err();
            assert!(err.contains("OTEL_EXPORTER_OTLP_TIMEOUT"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_compression_is_noted_as_not_applied_and_none_is_quiet() {
        let target = resolve(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]).unwrap();
        assert!(target.notes()[0].contains("OTEL_EXPORTER_OTLP_COMPRESSION=gzip"));
        let target = resolve(&[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "None")]).unwrap();
        assert!(target.notes().is_empty());
    }
}
