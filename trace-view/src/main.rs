//! trace-view: receives OTLP on the standard ports and prints each trace
//! once it is finished, as a tree (or one line per trace with `--summary`).
//!
//! ```text
//! trace-view                                  # 4317 (gRPC) and 4318 (HTTP)
//! trace-view --errors --attributes --events   # only failed traces, in detail
//! trace-view --summary --min-duration 50ms
//! ```

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use trace_view::{
    assembler::{Assembler, FinishedTrace, Limits},
    flatten,
    render::{self, Filter, Style},
    span_count, ExportTraceServiceRequest, Receiver, SpanSink, SpanTally,
};

// jemalloc, as the services use: decoding spans allocates a string or a
// vector per field, and under glibc's malloc allocation took more of the
// viewer's CPU than its own code (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "\
usage: trace-view [options]

Receives OTLP traces and prints each one once no new span of it arrived for
the quiet period: a tree of service, span name, kind, duration, a bar for
where the span sits in the trace's time, and its status (errors marked).

  --grpc-port N        OTLP/gRPC port (default 4317)
  --http-port N        OTLP/HTTP port, POST /v1/traces (default 4318)
  --bind ADDR          address to listen on (default 127.0.0.1)
  --quiet D            a trace is finished after D without new spans (default 3s)
  --service NAME       only traces with a span of this service
  --min-duration D     only traces at least this long (e.g. 50ms)
  --errors             only traces with an error
  --trace-id ID        only this trace
  --summary            one line per trace instead of a tree
  --attributes         each span's attributes below it
  --events             each span's events below it
  --color WHEN         auto (default: when stdout is a terminal), always, never
  --max-traces N       traces assembled at once; past it the oldest is printed
                       as incomplete (default 10000)
  --max-age D          a trace still receiving spans after D is printed as
                       incomplete (default 60s)
  --discard            receive and drop everything (a sink for benchmarks)";

struct Options {
    grpc_port: u16,
    http_port: u16,
    bind: String,
    limits: Limits,
    filter: Filter,
    summary: bool,
    style: Style,
    discard: bool,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut args = args.into_iter();
    let mut options = Options {
        grpc_port: 4317,
        http_port: 4318,
        bind: "127.0.0.1".into(),
        limits: Limits::default(),
        filter: Filter::default(),
        summary: false,
        style: Style {
            color: std::io::stdout().is_terminal(),
            ..Style::default()
        },
        discard: false,
    };
    let duration = |flag: &str, raw: String| {
        humantime::parse_duration(&raw).map_err(|e| format!("{flag} {raw}: {e}"))
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--grpc-port" => options.grpc_port = port(&flag, value()?)?,
            "--http-port" => options.http_port = port(&flag, value()?)?,
            "--bind" => options.bind = value()?,
            "--quiet" => options.limits.quiet = duration(&flag, value()?)?,
            "--max-age" => options.limits.max_age = duration(&flag, value()?)?,
            "--max-traces" => {
                let raw = value()?;
                options.limits.max_pending_traces = raw
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--max-traces {raw}: a positive number expected"))?;
            }
            "--service" => options.filter.service = Some(value()?),
            "--min-duration" => options.filter.min_duration = Some(duration(&flag, value()?)?),
            "--errors" => options.filter.errors_only = true,
            "--trace-id" => options.filter.trace_id = Some(value()?),
            "--summary" => options.summary = true,
            "--attributes" => options.style.attributes = true,
            "--events" => options.style.events = true,
            "--color" => {
                options.style.color = match value()?.as_str() {
                    "always" => true,
                    "never" => false,
                    "auto" => std::io::stdout().is_terminal(),
                    other => return Err(format!("--color {other}: auto, always or never")),
                }
            }
            "--discard" => options.discard = true,
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

fn port(flag: &str, raw: String) -> Result<u16, String> {
    raw.parse()
        .map_err(|_| format!("{flag} {raw}: a port number expected"))
}

/// Where finished traces are printed.
struct View {
    options: Options,
    assembler: Mutex<Assembler>,
    received: AtomicU64,
}

impl View {
    fn print(&self, traces: Vec<FinishedTrace>) {
        if traces.is_empty() {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        for trace in traces.iter().filter(|t| self.options.filter.matches(t)) {
            let text = if self.options.summary {
                format!("{}\n", render::summary_line(trace, self.options.style))
            } else {
                format!("{}\n", render::tree(trace, self.options.style))
            };
            // A closed pipe ends the output, not the receiver.
            let _ = stdout.write_all(text.as_bytes());
        }
        let _ = stdout.flush();
    }

    fn tick(&self) {
        let due = match self.assembler.lock() {
            Ok(mut assembler) => assembler.due(Instant::now()),
            Err(_) => return,
        };
        self.print(due);
    }
}

impl SpanSink for View {
    type Request = ExportTraceServiceRequest;

    fn accept(&self, request: ExportTraceServiceRequest) {
        self.received
            .fetch_add(span_count(&request) as u64, Ordering::Relaxed);
        let spans = flatten(request);
        let evicted = match self.assembler.lock() {
            Ok(mut assembler) => assembler.add(spans, Instant::now()),
            Err(_) => return,
        };
        self.print(evicted);
    }
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trace-view: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(options))
}

/// `--discard`: counts spans and drops them, decoding no more of a request
/// than counting needs.
#[derive(Default)]
struct Discard {
    received: AtomicU64,
}

impl SpanSink for Discard {
    type Request = SpanTally;

    fn accept(&self, request: SpanTally) {
        self.received
            .fetch_add(request.spans() as u64, Ordering::Relaxed);
    }
}

async fn serve(options: Options) -> ExitCode {
    let grpc = format!("{}:{}", options.bind, options.grpc_port);
    let http = format!("{}:{}", options.bind, options.http_port);
    if options.discard {
        return discard(&grpc, &http).await;
    }
    let limits = options.limits;
    let view = Arc::new(View {
        options,
        assembler: Mutex::new(Assembler::new(limits)),
        received: Default::default(),
    });
    let what = format!(
        "a trace is printed {} after its last span",
        humantime::format_duration(limits.quiet)
    );
    let Some(receiver) = listen(&grpc, &http, view.clone(), &what).await else {
        return ExitCode::from(2);
    };
    let ticker_view = view.clone();
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        loop {
            interval.tick().await;
            ticker_view.tick();
        }
    });
    shutdown_signal().await;
    ticker.abort();
    drop(receiver);
    // What is still pending is printed as it stands.
    let pending = match view.assembler.lock() {
        Ok(mut assembler) => assembler.drain(),
        Err(_) => Vec::new(),
    };
    view.print(pending);
    eprintln!(
        "trace-view: stopped after {} spans",
        view.received.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}

/// `--discard` until stopped, then how many spans it took.
async fn discard(grpc: &str, http: &str) -> ExitCode {
    let sink = Arc::new(Discard::default());
    let Some(receiver) = listen(grpc, http, sink.clone(), "spans are counted and dropped").await
    else {
        return ExitCode::from(2);
    };
    shutdown_signal().await;
    drop(receiver);
    eprintln!(
        "trace-view: stopped after {} spans",
        sink.received.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}

/// Starts the receiver for `sink` and says where it listens (`None`, said
/// on stderr, if it cannot).
async fn listen<S: SpanSink>(grpc: &str, http: &str, sink: Arc<S>, what: &str) -> Option<Receiver> {
    match Receiver::start(grpc, http, sink).await {
        Ok(receiver) => {
            eprintln!(
                "trace-view: OTLP on {} (gRPC) and http://{}/v1/traces; {what}",
                receiver.grpc_addr(),
                receiver.http_addr(),
            );
            Some(receiver)
        }
        Err(err) => {
            eprintln!("trace-view: cannot listen on {grpc} and {http}: {err}");
            None
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
