//! Sending encoded batches of spans over OTLP/gRPC or OTLP/HTTP, transient
//! failures retried, and failures logged once a minute instead of once a
//! batch.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use http::{
    header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT as USER_AGENT_HEADER},
    uri::PathAndQuery,
    HeaderMap, HeaderValue, Request, Uri,
};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::{bytes::Bytes, Message as _};
use tonic::{
    metadata::MetadataMap,
    transport::{Channel, Endpoint},
    Code,
};

use super::{ExportProtocol, ExportTarget, TelemetryError};

/// How often at most an export failure is logged.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct FailureLog {
    failing: bool,
    last_logged: Option<Instant>,
    batches_since: u64,
    spans_since: u64,
}

impl FailureLog {
    /// Records a failed batch; returns what to log now, if anything.
    fn failed(&mut self, spans: u64, now: Instant) -> Option<(u64, u64)> {
        self.failing = true;
        self.batches_since += 1;
        self.spans_since += spans;
        let due = self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last_logged = Some(now);
        let counts = (self.batches_since, self.spans_since);
        self.batches_since = 0;
        self.spans_since = 0;
        Some(counts)
    }

    /// Records a success; true when it ends a failure streak.
    fn succeeded(&mut self) -> bool {
        let recovered = self.failing;
        self.failing = false;
        if recovered {
            // The next outage is news: warned about at once.
            self.last_logged = None;
        }
        self.batches_since = 0;
        self.spans_since = 0;
        recovered
    }
}

/// How an export ended, for [`report`].
enum Outcome {
    /// The collector took every span.
    Delivered,
    /// The collector answered but refused this many spans (OTLP's partial
    /// success), saying why.
    Rejected(u64, String),
    /// Nothing was delivered.
    Failed(String),
}

/// Logs the outcome of one export as [`OtlpExporter`] describes.
fn report(failures: &Mutex<FailureLog>, spans: usize, outcome: Outcome) {
    let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
    let (error, dropped) = match outcome {
        Outcome::Delivered => {
            if failures.succeeded() {
                tracing::info!("span export to the collector works again");
            }
            return;
        }
        Outcome::Rejected(rejected, reason) => (
            format!("the collector refused {rejected} of {spans} spans: {reason}"),
            rejected,
        ),
        Outcome::Failed(error) => (error, spans as u64),
    };
    if let Some((batches, spans)) = failures.failed(dropped, Instant::now()) {
        tracing::warn!(
            error = %error,
            failed_batches = batches,
            dropped_spans = spans,
            "span export failed; spans are dropped until the collector is reachable (logged at most once a minute)"
        );
    } else {
        tracing::debug!(error = %error, dropped_spans = dropped, "span export still failing");
    }
}

/// Sends encoded batches to the collector over the target's protocol.
///
/// A missing or hanging collector costs one warning a minute (with a count
/// of what failed meanwhile) instead of one error line per batch, and a
/// recovery is logged once. Spans of a failed batch are dropped; the batch
/// processor's queue (`OTEL_BSP_MAX_QUEUE_SIZE`) bounds memory while the
/// collector is away.
#[derive(Debug)]
pub(super) struct OtlpExporter {
    transport: Transport,
    failures: Mutex<FailureLog>,
}

impl OtlpExporter {
    /// Sends one `ExportTraceServiceRequest` of `spans` spans, retrying
    /// transient failures, and logs how it ended.
    pub(super) async fn export(&self, request: Bytes, spans: usize) {
        let outcome = self.transport.send_with_retries(request).await;
        report(&self.failures, spans, outcome);
    }
}

/// Who is sending, as the OTLP specification asks exporters to say.
const USER_AGENT: &str = concat!("async-micro-otlp-exporter-rust/", env!("CARGO_PKG_VERSION"));

/// The gRPC method OTLP/gRPC exports spans with.
const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// How a batch reaches the collector.
// One per process, behind an `Arc`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Transport {
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
        timeout: Duration,
    },
    Http {
        client: Client<HttpConnector, Full<Bytes>>,
        url: Uri,
        /// The environment's headers, the content type and the user agent.
        headers: HeaderMap,
        timeout: Duration,
    },
}

/// Why one attempt failed: worth another try or not.
enum AttemptError {
    /// Worth another try, no sooner than the collector's `Retry-After`
    /// if it gave one.
    Transient(String, Option<Duration>),
    Permanent(String),
}

/// Retries: OTLP's exporter defaults (three more attempts, 100 ms apart and
/// doubling, with up to 100 ms of jitter), none started once the export's
/// timeout has passed.
const RETRIES: u32 = 3;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

impl Transport {
    fn timeout(&self) -> Duration {
        match self {
            Transport::Grpc { timeout, .. } | Transport::Http { timeout, .. } => *timeout,
        }
    }

    /// Sends `body`, retrying transient failures within the timeout.
    async fn send_with_retries(&self, body: Bytes) -> Outcome {
        let timeout = self.timeout();
        let deadline = Instant::now() + timeout;
        let mut delay = FIRST_RETRY_DELAY;
        let mut retries = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (error, retry_after) =
                match tokio::time::timeout(left, self.send(body.clone(), left)).await {
                    Ok(Ok(None)) => return Outcome::Delivered,
                    Ok(Ok(Some((rejected, reason)))) => return Outcome::Rejected(rejected, reason),
                    Ok(Err(AttemptError::Permanent(error))) => return Outcome::Failed(error),
                    Ok(Err(AttemptError::Transient(error, after))) => (error, after),
                    Err(_) => {
                        return Outcome::Failed(format!(
                            "no answer within {timeout:?} (OTEL_EXPORTER_OTLP_TIMEOUT)"
                        ))
                    }
                };
            let pause = (delay + jitter(FIRST_RETRY_DELAY)).max(retry_after.unwrap_or_default());
            if retries == RETRIES || Instant::now() + pause >= deadline {
                return Outcome::Failed(error);
            }
            tokio::time::sleep(pause).await;
            delay *= 2;
            retries += 1;
        }
    }

    /// One attempt; the spans the collector refused, if any, and why.
    async fn send(
        &self,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Option<(u64, String)>, AttemptError> {
        match self {
            Transport::Grpc {
                channel, metadata, ..
            } => {
                let mut client = tonic::client::Grpc::new(channel.clone());
                client.ready().await.map_err(|err| {
                    AttemptError::Transient(format!("gRPC channel not ready: {err}"), None)
                })?;
                let mut request = tonic::Request::new(EncodedRequest(body));
                *request.metadata_mut() = metadata.clone();
                request.set_timeout(timeout);
                let codec =
                    tonic_prost::ProstCodec::<EncodedRequest, ExportTraceServiceResponse>::default(
                    );
                let response = client
                    .unary(request, PathAndQuery::from_static(GRPC_EXPORT_PATH), codec)
                    .await
                    .map_err(grpc_error)?;
                Ok(rejected(response.into_inner()))
            }
            Transport::Http {
                client,
                url,
                headers,
                ..
            } => {
                let mut request = Request::post(url.clone())
                    .body(Full::new(body))
                    .map_err(|err| AttemptError::Permanent(format!("HTTP request: {err}")))?;
                *request.headers_mut() = headers.clone();
                let response = client
                    .request(request)
                    .await
                    .map_err(|err| AttemptError::Transient(format!("HTTP request: {err}"), None))?;
                let status = response.status();
                if !status.is_success() {
                    let error = format!("the collector answered HTTP {status}");
                    // The specification's retryable HTTP statuses; a
                    // `Retry-After` in seconds is honoured (within the
                    // export's timeout).
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    return Err(match status.as_u16() {
                        429 | 502 | 503 | 504 => AttemptError::Transient(error, retry_after),
                        _ => AttemptError::Permanent(error),
                    });
                }
                // An empty or unreadable body is a full success.
                let body = match response.into_body().collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(_) => Bytes::new(),
                };
                Ok(ExportTraceServiceResponse::decode(body)
                    .ok()
                    .and_then(rejected))
            }
        }
    }
}

/// A gRPC status as an attempt's error, as the OTLP specification says:
/// its retryable codes are transient, no sooner than the collector's
/// `RetryInfo` delay if it sent one; `RESOURCE_EXHAUSTED` is transient only
/// with a `RetryInfo` (the collector saying that it will recover), since
/// retrying an exhausted collector unasked only adds to its load. The
/// collector's message is left out: it may echo credentials from the
/// request's headers.
fn grpc_error(status: tonic::Status) -> AttemptError {
    let error = format!("gRPC status {:?}", status.code());
    let retry_delay = retry_delay(status.details());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => AttemptError::Transient(error, retry_delay),
        Code::ResourceExhausted if retry_delay.is_some() => {
            AttemptError::Transient(error, retry_delay)
        }
        _ => AttemptError::Permanent(error),
    }
}

/// `google.rpc.Status`, as a gRPC error's binary details carry it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(message, repeated, tag = "3")]
    details: Vec<RpcAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The delay of the `RetryInfo` among a gRPC error's details, if there is
/// one (a negative delay counts as none to wait).
fn retry_delay(details: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|any| any.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(info.value.as_slice())
        .ok()?
        .retry_delay
        .unwrap_or_default();
    let seconds = u64::try_from(delay.seconds).unwrap_or(0);
    let nanos = u32::try_from(delay.nanos).unwrap_or(0);
    Some(Duration::new(seconds, nanos.min(999_999_999)))
}

/// OTLP's partial success: how many spans the collector refused, and why.
fn rejected(response: ExportTraceServiceResponse) -> Option<(u64, String)> {
    response
        .partial_success
        .filter(|partial| partial.rejected_spans > 0)
        .map(|partial| (partial.rejected_spans as u64, partial.error_message))
}

/// Up to `max` of jitter, so that services that failed together do not
/// retry together.
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_nanos(u64::from(nanos) % max.as_nanos().max(1) as u64)
}

/// An already encoded `ExportTraceServiceRequest`, as the gRPC codec's
/// message: it writes its bytes as they are.
#[derive(Debug, Default, Clone)]
struct EncodedRequest(Bytes);

impl prost::Message for EncodedRequest {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded; skipping keeps the contract if it ever is.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// Builds the span exporter and the runtime its requests run on.
pub(super) fn build(
    target: &ExportTarget,
) -> Result<(OtlpExporter, tokio::runtime::Runtime), TelemetryError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()?;
    let transport = match target.protocol {
        ExportProtocol::Grpc => {
            let endpoint = Endpoint::from_shared(target.endpoint.clone())
                .map_err(|err| TelemetryError::Config(format!("{}: {err}", target.endpoint)))?
                .timeout(target.timeout)
                .user_agent(USER_AGENT)
                .map_err(|err| TelemetryError::Config(format!("OTLP user agent: {err}")))?;
            // tonic binds its connection to the runtime current at build time.
            let _entered = runtime.enter();
            Transport::Grpc {
                channel: endpoint.connect_lazy(),
                metadata: MetadataMap::from_headers(target.headers.clone()),
                timeout: target.timeout,
            }
        }
        ExportProtocol::HttpProtobuf => {
            let url = target
                .endpoint
                .parse::<Uri>()
                .map_err(|err| TelemetryError::Config(format!("{}: {err}", target.endpoint)))?;
            let mut headers = target.headers.clone();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
            headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
            Transport::Http {
                client: Client::builder(TokioExecutor::new()).build_http(),
                url,
                headers,
                timeout: target.timeout,
            }
        }
    };
    let exporter = OtlpExporter {
        transport,
        failures: Mutex::default(),
    };
    Ok((exporter, runtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with_retry_info(code: Code, delay: Option<Duration>) -> tonic::Status {
        let details = match delay {
            None => Vec::new(),
            Some(delay) => RpcStatus {
                details: vec![
                    // Details of other kinds come first: the one that
                    // matters is found by its type.
                    RpcAny {
                        type_url: "type.googleapis.com/google.rpc.DebugInfo".into(),
                        value: b"\x0a\x03abc".to_vec(),
                    },
                    RpcAny {
                        type_url: RETRY_INFO_TYPE.into(),
                        value: RetryInfo {
                            retry_delay: Some(ProtoDuration {
                                seconds: delay.as_secs() as i64,
                                nanos: delay.subsec_nanos() as i32,
                            }),
                        }
                        .encode_to_vec(),
                    },
                ],
            }
            .encode_to_vec(),
        };
        tonic::Status::with_details(code, "busy", details.into())
    }

    fn classified(status: tonic::Status) -> (bool, Option<Duration>) {
        match grpc_error(status) {
            AttemptError::Transient(_, delay) => (true, delay),
            AttemptError::Permanent(_) => (false, None),
        }
    }

    #[test]
    fn grpc_errors_are_retried_as_otlp_says_resource_exhausted_only_with_retry_info() {
        let later = Some(Duration::from_millis(1_500));
        // (code, the collector's RetryInfo delay) → (retried, no sooner than)
        let cases = [
            // Unasked, an exhausted collector is not retried; asked, it is,
            // no sooner than it said.
            (Code::ResourceExhausted, None, (false, None)),
            (Code::ResourceExhausted, later, (true, later)),
            // The retryable codes are retried either way, with the delay if
            // given.
            (Code::Unavailable, None, (true, None)),
            (Code::Unavailable, later, (true, later)),
            // Others are not, whatever the details say.
            (Code::InvalidArgument, later, (false, None)),
        ];
        for (code, delay, expected) in cases {
            let got = classified(status_with_retry_info(code, delay));
            assert_eq!(got, expected, "{code:?} with RetryInfo {delay:?}");
        }
        // Details that are not a google.rpc.Status change nothing.
        let garbage = tonic::Status::with_details(
            Code::ResourceExhausted,
            "busy",
            b"\xff\xff".to_vec().into(),
        );
        assert_eq!(classified(garbage), (false, None));
    }

    #[test]
    fn export_failures_are_logged_once_a_minute_with_counts_and_recovery_once() {
        let start = Instant::now();
        let mut log = FailureLog::default();
        assert_eq!(log.failed(10, start), Some((1, 10)));
        assert_eq!(log.failed(5, start + Duration::from_secs(1)), None);
        assert_eq!(log.failed(5, start + Duration::from_secs(59)), None);
        assert_eq!(
            log.failed(1, start + Duration::from_secs(60)),
            Some((3, 11))
        );
        assert!(log.succeeded());
        assert!(!log.succeeded());
        // A new outage after the recovery is warned about at once.
        assert_eq!(log.failed(2, start + Duration::from_secs(61)), Some((1, 2)));
    }
}
