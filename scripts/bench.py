#!/usr/bin/env python3
"""Reproduces every figure of BENCHMARKS.md on this machine and rewrites its
measured sections (between <!-- bench:NAME --> markers; the hand-written
parts stay).

    scripts/bench.py                       # everything (about 37 minutes; more if the headline steps down)
    scripts/bench.py --only tracing,hop    # some sections
    scripts/bench.py --only instructions   # callgrind counts (repeatable)
    scripts/bench.py --headline-minutes 2  # a shorter sustained run

Needs what scripts/test.sh provisions (RabbitMQ with its Prometheus plugin),
wrk (apt-get install wrk), valgrind for the instructions section, and
matplotlib for the worker scaling plot (pip; the table is written without
it). Runs the release binaries, each run on a
RabbitMQ vhost and SQLite files of its own, the services exporting every span
to `trace-view --discard` (a sink, as a collector on another machine would
be). Absolute figures move by +-25 % between runs on shared machines: compare
the ratios, each measured within one run. The instructions section is the
exception: callgrind's counts repeat within a few per cent across runs.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"

# The Python/Node original, measured on this machine kind (issue: performance).
ORIGINAL = {
    "post_rps": 555,
    "products_rps": 871,
    "drain_tps": 1908,
    "rss_mib": 612,
    "sustained_tps": 555,
}

SECTIONS = ["machine", "headline", "cpu", "tracing", "hop", "broker", "scaling", "memory", "e2e", "instructions"]


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def target_dir():
    meta = json.loads(sh("cargo", "metadata", "--format-version", "1", "--no-deps", cwd=ROOT))
    return Path(meta["target_directory"]) / "release"


BIN = None


class Vhost:
    def __init__(self):
        self.name = f"bench-{uuid.uuid4().hex[:8]}"
        sh("rabbitmqctl", "-q", "add_vhost", self.name)
        sh("rabbitmqctl", "-q", "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def url(self):
        return f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def depth(self, queue="task_queue"):
        out = sh("rabbitmqctl", "-q", "list_queues", "-p", self.name, "name", "messages")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return int(parts[1])
        return None

    def close(self):
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.name], capture_output=True)


class Service:
    def __init__(self, name, env, workdir, prefix=()):
        self.name = name
        self.port = int(env["PORT"])
        log = open(workdir / f"{name}.log", "w")
        full = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DATABASE_", "WORKER_"))}
        full.update(env)
        # `prefix` runs the binary under another program (valgrind); that
        # program execs the service in the same process, so the pid is the
        # service's.
        self.proc = subprocess.Popen([*prefix, str(BIN / name)], env=full, cwd=workdir, stdout=log, stderr=log)

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_healthy(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited")
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy")

    def rss_mib(self, field="VmRSS"):
        """Resident memory from `/proc/<pid>/status`: all of it (`VmRSS`), or
        one part: `RssAnon` (what the service allocated) or `RssFile` (pages
        of the binary and the libraries, its code)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Stack:
    """Services on a vhost and a directory of their own, exporting to a sink."""

    def __init__(self, services, env, per_service):
        self.vhost = Vhost()
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-"))
        grpc = free_port()
        self.sink_log = self.workdir / "sink.log"
        self.sink = subprocess.Popen(
            [str(BIN / "trace-view"), "--discard", "--grpc-port", str(grpc), "--http-port", str(free_port())],
            stdout=subprocess.DEVNULL, stderr=open(self.sink_log, "w"),
        )
        self.spans_received = None
        self.ports = {name: free_port() for name in ("backend", "product", "worker", "gateway")}
        self.env = {
            "AMQP_URL": self.vhost.url(),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc}",
            "RUST_LOG": "info",
            "BACKEND_URL": f"http://127.0.0.1:{self.ports['backend']}",
            "PRODUCT_URL": f"http://127.0.0.1:{self.ports['product']}",
        }
        self.env.update(env or {})
        self.per_service = per_service or {}
        self.services = {}
        for name in services:
            self.start(name)

    def url(self, name, path=""):
        """The address of service `name`, started or not."""
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def start(self, name, extra=None, prefix=(), timeout=30):
        env = dict(self.env, PORT=str(self.ports[name]))
        env.update(self.per_service.get(name, {}))
        env.update(extra or {})
        service = Service(name, env, self.workdir, prefix)
        self.services[name] = service
        service.wait_healthy(timeout)
        return service

    def close(self):
        # The services flush their spans as they stop; the sink then says
        # how many it received.
        for service in self.services.values():
            service.stop()
        self.sink.terminate()
        self.sink.wait()
        found = re.search(r"stopped after (\d+) spans", self.sink_log.read_text())
        self.spans_received = int(found.group(1)) if found else None
        self.vhost.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def platform_up(services=("backend", "product", "worker", "gateway"), env=None, per_service=None):
    """The services named, as a Stack; yields (services by name, vhost, stack)."""
    stack = Stack(services, env, per_service)
    try:
        yield stack.services, stack.vhost, stack
    finally:
        stack.close()


WRK_REQUESTS = {"total": 0}


def wrk(url, seconds=10, connections=64, post=False, threads=2):
    """(requests/s, p99 ms) of a wrk run; adds its requests to WRK_REQUESTS."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    script = None
    if post:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write('wrk.method = "POST"\nwrk.body = \'{"type":"echo","payload":{"n":1}}\'\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
        script.close()
        args += ["-s", script.name]
    out = sh(*args, url)
    if script:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    WRK_REQUESTS["total"] += int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    value, unit = float(p99.group(1)), p99.group(2)
    p99_ms = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors and int(errors.group(1)) > 0:
        raise RuntimeError(f"wrk {url}: {errors.group(1)} error responses")
    return rps, p99_ms


def loadgen(*args):
    out = Path(tempfile.mktemp(suffix=".json"))
    subprocess.run([str(BIN / "loadgen"), *args, "--json", str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.loads(out.read_text())
    out.unlink()
    return summary


def fill_queue(gateway_or_backend, seconds):
    """POSTs as fast as wrk can for `seconds` with no worker running."""
    wrk(gateway_or_backend + "/api/tasks", seconds=seconds, post=True)


def marker(base):
    req = urllib.request.Request(base + "/api/tasks", data=b'{"type":"echo","payload":{"marker":1}}',
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["id"]


def wait_succeeded(base, task_id, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with urllib.request.urlopen(f"{base}/api/tasks/{task_id}", timeout=10) as r:
            if json.load(r)["status"] == "succeeded":
                return
        time.sleep(0.05)
    raise RuntimeError(f"task {task_id} not done")


# --- sections -------------------------------------------------------------


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    rabbit = sh("rabbitmqctl", "-q", "version").strip() if shutil.which("rabbitmqctl") else "?"
    # BBR stalls loopback connections for 200 ms now and then, which shows
    # in every p99 (BENCHMARKS.md, "Where a slow POST waits").
    congestion = Path("/proc/sys/net/ipv4/tcp_congestion_control")
    tcp = congestion.read_text().strip() if congestion.exists() else "?"
    lines = [
        f"- {os.cpu_count()} CPUs ({cpu}), {mem / 1024:.0f} GiB, Linux {platform.release()}, "
        f"TCP congestion control {tcp}",
        f"- {sh('rustc', '-V').strip()}, RabbitMQ {rabbit}, SQLite (bundled with sqlx) for task state",
        f"- measured {time.strftime('%Y-%m-%d')}; `scripts/bench.py`",
    ]
    print("\n".join(lines))
    return "\n".join(lines)


def wrk_cpu(url, pids, seconds=10, post=False):
    """A wrk run as (requests/s, p99 ms, {process: CPU µs per request}): the
    CPU time each of `pids` (name -> pid) used during the run, divided by
    the requests wrk made."""
    start = WRK_REQUESTS["total"]
    before = {n: cpu_seconds(p) for n, p in pids.items()}
    rps, p99 = wrk(url, seconds=seconds, post=post)
    after = {n: cpu_seconds(p) for n, p in pids.items()}
    requests = max(WRK_REQUESTS["total"] - start, 1)
    return rps, p99, {n: (after[n] - before[n]) * 1e6 / requests for n in pids}


def process_pids(svc, stack, names):
    """name -> pid of the services named, and of the span sink."""
    pids = {name: svc[name].proc.pid for name in names}
    pids["sink"] = stack.sink.pid
    return pids


# The machine's speed drifts within a minute by more than tracing costs:
# each sampling is run this many times, the runs of a round back to back,
# and the ratio is the median of the rounds' ratios.
TRACING_ROUNDS = 3


def tracing_cost():
    samplings = [
        ("`OTEL_SDK_DISABLED=true`", {"OTEL_SDK_DISABLED": "true"}),
        ("100 % (`parentbased_always_on`)", {}),
        ("10 % (`parentbased_traceidratio`, 0.1)", {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                                    "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
    ]
    products = {label: [] for label, _ in samplings}
    post = {label: [] for label, _ in samplings}
    delivered = {label: [] for label, _ in samplings}
    for _ in range(TRACING_ROUNDS):
        for label, env in samplings:
            WRK_REQUESTS["total"] = 0
            with platform_up(("product",), env=env) as (svc, _, stack):
                wrk(svc["product"].url("/api/products"), seconds=3)
                run = wrk_cpu(svc["product"].url("/api/products"), process_pids(svc, stack, ["product"]))
            products[label].append(run)
            # Each products request is two spans (SERVER and catalog-lookup).
            delivered[label].append(stack.spans_received / (2 * WRK_REQUESTS["total"]))
            print("tracing products", label, run, flush=True)
        for label, env in samplings:
            with platform_up(("backend", "worker"), env=env) as (svc, _, stack):
                svc["worker"].stop()
                wrk(svc["backend"].url("/api/tasks"), seconds=3, post=True)
                run = wrk_cpu(svc["backend"].url("/api/tasks"), process_pids(svc, stack, ["backend"]), post=True)
            post[label].append(run)
            print("tracing post", label, run, flush=True)

    off = samplings[0][0]

    def ratios(runs, label):
        return [run[0] / base[0] for run, base in zip(runs[label], runs[off])]

    table = ["| sampling | products req/s | p99 ms | CPU µs/request: product, sink | products spans received "
             "| POST req/s | p99 ms | CPU µs/request: backend, sink |",
             "|---|---|---|---|---|---|---|---|"]
    for i, (label, _) in enumerate(samplings):
        got = "-" if i == 0 else f"{statistics.median(delivered[label]):.0%}"  # the SDK disabled exports nothing
        cells = []
        for runs, service in ((products, "product"), (post, "backend")):
            share = statistics.median(ratios(runs, label))
            # One decimal: the target's line is 90 %, and 89.5 % must not read as 90 %.
            cells.append(f"{statistics.median([r[0] for r in runs[label]]):,.0f} ({share:.1%}) "
                         f"| {statistics.median([r[1] for r in runs[label]]):.1f} "
                         f"| {statistics.median([r[2][service] for r in runs[label]]):.1f}, "
                         f"{statistics.median([r[2]['sink'] for r in runs[label]]):.1f}")
        table.append(f"| {label} | {cells[0]} | {got} | {cells[1]} |")
    rounds = "; ".join(
        f"{label.split(' (')[0]}: products " + " / ".join(f"{r:.1%}" for r in ratios(products, label))
        + ", POST " + " / ".join(f"{r:.1%}" for r in ratios(post, label))
        for label, _ in samplings[1:])
    return ("Direct to the service (no gateway), `wrk -t2 -c64 -d10s`; POST with the worker stopped. "
            f"{TRACING_ROUNDS} rounds, each running the three samplings back to back (products, then POST); "
            "every figure is the median of the rounds, and each percentage the median of the rounds' own "
            "ratios to the throughput with the SDK disabled (the machine's speed drifts between rounds by "
            f"more than tracing costs). The rounds' ratios: {rounds}. *CPU µs/request*: the CPU time "
            "(`utime + stime`, `/proc/<pid>/stat`) the service and the span sink used during the run, per "
            "request; the rest of the two cores went to wrk and the kernel's loopback work. *Spans received*: "
            "what the sink (`trace-view --discard`, on the same 2 cores) counted, of two per products request; "
            "at 10 % sampling about 10 % is all there is.\n\n" + "\n".join(table))


def gateway_hop():
    WRK_REQUESTS["total"] = 0
    with platform_up(("product", "gateway")) as (svc, _, stack):
        pids = process_pids(svc, stack, ["gateway", "product"])
        wrk(svc["gateway"].url("/api/products"), seconds=3)
        via_requests = WRK_REQUESTS["total"]
        direct = wrk_cpu(svc["product"].url("/api/products"), pids)
        direct_requests = WRK_REQUESTS["total"] - via_requests
        via = wrk_cpu(svc["gateway"].url("/api/products"), pids)
        via_requests = WRK_REQUESTS["total"] - direct_requests
    # Two spans per direct request, four through the gateway (its SERVER and
    # CLIENT spans too).
    received = stack.spans_received / (2 * direct_requests + 4 * via_requests)
    with platform_up(("backend", "gateway")) as (svc, _, stack):
        wrk(svc["gateway"].url("/api/tasks"), seconds=3, post=True)
        post_via = wrk_cpu(svc["gateway"].url("/api/tasks"), process_pids(svc, stack, ["gateway", "backend"]),
                           post=True)
    print("hop", direct, via, post_via)

    def cpu(run, upstream):
        return (f"{run[2]['gateway']:.1f}" if run is not direct else "-") + \
            f" | {run[2][upstream]:.1f} | {run[2]['sink']:.1f}"
    return "\n".join([
        f"`wrk -t2 -c64 -d10s` with 100 % sampling; POST with no worker running. The sink received "
        f"{received:.0%} of the products runs' spans. *CPU µs/request*: the CPU time (`utime + stime`) each "
        "process used during the run, per request; wrk and the kernel's loopback work take the rest of the "
        "two cores.\n",
        "| | req/s | p99 ms | vs the Python/Node original | CPU µs/request: gateway | upstream | sink |",
        "|---|---|---|---|---|---|---|",
        f"| GET /api/products, direct | {direct[0]:,.0f} | {direct[1]:.1f} | | {cpu(direct, 'product')} |",
        f"| GET /api/products, via the gateway | {via[0]:,.0f} ({via[0] / direct[0]:.0%} of direct) | {via[1]:.1f} "
        f"| {via[0] / ORIGINAL['products_rps']:.1f}x ({ORIGINAL['products_rps']}) | {cpu(via, 'product')} |",
        f"| POST /api/tasks, via the gateway | {post_via[0]:,.0f} | {post_via[1]:.1f} "
        f"| {post_via[0] / ORIGINAL['post_rps']:.1f}x ({ORIGINAL['post_rps']}) | {cpu(post_via, 'backend')} |",
    ])


def broker_ceiling():
    vhost = Vhost()
    try:
        result = json.loads(sh(str(BIN / "broker-ceiling"), "--amqp", vhost.url(), "--messages", "60000"))
    finally:
        vhost.close()
    print("broker", result)
    per_task_drain = 1.0 + 2.0 / 64  # a delivery, and 1/64 of a report message each way (measured batches)
    return "\n".join([
        "`broker-ceiling --messages 60000`: a bare lapin publisher and consumer, durable queue, "
        "persistent messages, publisher confirms, manual acks.\n",
        "| | messages/s |",
        "|---|---|",
        f"| publishing alone ({result['confirms_in_flight']} confirms in flight) | {result['publish_alone_per_s']:,.0f} |",
        f"| consuming alone (prefetch {result['prefetch']}, one ack each) | {result['consume_alone_per_s']:,.0f} |",
        f"| consuming alone, every {result['grouped_acks']}th delivery acknowledged with `multiple` "
        f"| {result['consume_grouped_acks_per_s']:,.0f} |",
        f"| both at once (each way) | {result['publish_and_consume_per_s']:,.0f} |",
        f"| publishing one at a time, waiting for each confirm | {result['publish_one_at_a_time_per_s']:,.0f} |",
        f"| {result['latency_publishers']} publishers at once, each waiting for its confirm (as `POST /api/tasks` "
        f"on {result['latency_publishers']} connections): confirm p50 {result['confirm_p50_ms']:.1f} ms, "
        f"p99 {result['confirm_p99_ms']:.1f} ms | {result['publish_latency_run_per_s']:,.0f} |",
        "",
        "A task costs the broker one publish (the POST) and one delivery (the worker), plus its share of a "
        "status-report message (one publish and one delivery carrying up to 256 reports; about "
        "1/64 of one each at full drain). Draining a backlog is bound by consuming: "
        f"{result['consume_alone_per_s']:,.0f} / {per_task_drain:.2f} = "
        f"**{result['consume_alone_per_s'] / per_task_drain:,.0f} tasks/s** with one ack each, and "
        f"{result['consume_grouped_acks_per_s'] / per_task_drain:,.0f} tasks/s with every {result['grouped_acks']}th "
        "delivery acknowledged with `multiple` (the worker acknowledges deliveries that settle together with one); "
        f"accepting and running tasks at once by the both-ways rate: "
        f"{result['publish_and_consume_per_s']:,.0f} / 1.03 = "
        f"**{result['publish_and_consume_per_s'] / 1.03:,.0f} tasks/s**.",
    ]), result


def drain(concurrency, kind, count_seconds=None, sleeps=None):
    """Tasks per second a worker with `concurrency` actors drains a backlog at."""
    with platform_up(("backend", "worker"), per_service={"worker": {"WORKER_CONCURRENCY": str(concurrency)}}) as (svc, vhost, stack):
        svc["worker"].stop()
        base = svc["backend"].url()
        if kind == "echo":
            fill_queue(base, count_seconds)
        else:
            body = json.dumps({"type": "sleep", "payload": {"ms": 100}}).encode()
            for _ in range(sleeps):
                urllib.request.urlopen(urllib.request.Request(
                    base + "/api/tasks", data=body, headers={"content-type": "application/json"}, method="POST"))
        last = marker(base)
        tasks = vhost.depth()
        started = time.time()
        stack.start("worker")
        wait_succeeded(base, last)
        return tasks, time.time() - started


def scaling():
    rows = []
    for concurrency in [1, 2, 4, 8, 16]:
        echo_tasks, echo_s = drain(concurrency, "echo", count_seconds=5)
        sleep_tasks, sleep_s = drain(concurrency, "sleep", sleeps=400)
        rows.append((concurrency, echo_tasks, echo_s, sleep_tasks, sleep_s))
        print("scaling", rows[-1])
    table = ["| `WORKER_CONCURRENCY` | echo: tasks, seconds, tasks/s | sleep 100 ms: tasks, seconds, tasks/s |",
             "|---|---|---|"]
    for c, et, es, st, ss in rows:
        default = " (default)" if c == 4 else ""
        table.append(f"| {c}{default} | {et:,} in {es:.1f} s: **{et / es:,.0f}/s** | {st} in {ss:.2f} s: {st / ss:,.0f}/s |")
    plot = ROOT / "docs" / "worker-scaling.png"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = [r[0] for r in rows]
        ax.plot(xs, [r[1] / r[2] for r in rows], marker="o", label="echo (CPU and broker bound)")
        ax.plot(xs, [r[3] / r[4] for r in rows], marker="s", label="sleep 100 ms (waiting bound)")
        ax.axhline(ORIGINAL["drain_tps"], color="grey", linestyle="--", label="Python worker, echo (1,908/s)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("WORKER_CONCURRENCY (consumer actors, prefetch 32 each)")
        ax.set_ylabel("tasks drained per second")
        ax.legend()
        ax.grid(alpha=0.3)
        plot.parent.mkdir(exist_ok=True)
        fig.tight_layout()
        fig.savefig(plot, dpi=100)
        image = "\n\n![worker scaling](docs/worker-scaling.png)"
    except ImportError:
        image = "\n\n(No plot: `pip install matplotlib` and run again.)"
    default = next(r for r in rows if r[0] == 4)
    return ("A backlog POSTed with no worker running (echo: 5 s of `wrk -c64`; sleep: 400 tasks of 100 ms), "
            "then one worker process started; the time until the last task is `succeeded`.\n\n"
            + "\n".join(table) + image), default[1] / default[2]


def text_symbols(binary):
    """The function symbols `binary` defines, with their addresses."""
    out = sh("nm", "--defined-only", str(binary))
    return {parts[2]: int(parts[0], 16) for parts in (line.split() for line in out.splitlines())
            if len(parts) == 3 and parts[1] in "tTwW"}


def layout_match(name):
    """(listed, found, laid out): the functions link-layout/<name>.order
    lists, how many of them the release binary has, and whether it was
    linked by the list (the first listed function it has opens `.text`).
    Symbol names carry hashes of the dependencies and the toolchain: a list
    written for another build lays out less of the code
    (scripts/symbol-order.py writes it afresh)."""
    listed = [line.strip() for line in (ROOT / "link-layout" / f"{name}.order").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    addresses = text_symbols(BIN / name)
    found = [symbol for symbol in listed if symbol in addresses]
    text = re.search(r"\.text\s+PROGBITS\s+([0-9a-f]+)", sh("readelf", "-SW", str(BIN / name)))
    laid_out = bool(found and text) and addresses[found[0]] - int(text.group(1), 16) < 64
    return len(listed), len(found), laid_out


def memory():
    def rss(svc):
        return {n: {f: s.rss_mib(f) for f in ("VmRSS", "RssAnon", "RssFile")} for n, s in svc.items()}

    with platform_up() as (svc, _, _):
        time.sleep(2)
        idle = rss(svc)
        gw = svc["gateway"].url()
        wrk(gw + "/api/products", seconds=10)
        wrk(gw + "/api/tasks", seconds=10, post=True)
        loadgen("mixed", "--host", gw, "--users", "32", "--duration", "10s")
        time.sleep(3)
        after = rss(svc)
    print("memory", idle, after)

    def total(of, field="VmRSS"):
        return sum(v[field] for v in of.values())

    table = ["| service | idle MiB | after load MiB | of which allocated (`RssAnon`) | of which code (`RssFile`) |",
             "|---|---|---|---|---|"]
    for name in ["gateway", "backend", "product", "worker"]:
        a = after[name]
        table.append(f"| {name} | {idle[name]['VmRSS']:.1f} | {a['VmRSS']:.1f} | {a['RssAnon']:.1f} | {a['RssFile']:.1f} |")
    table.append(f"| **all four** | {total(idle):.1f} | **{total(after):.1f}** "
                 f"({total(after) / ORIGINAL['rss_mib']:.2f}x the original's {ORIGINAL['rss_mib']}) "
                 f"| {total(after, 'RssAnon'):.1f} | {total(after, 'RssFile'):.1f} |")
    matched = {name: layout_match(name) for name in ["gateway", "backend", "product", "worker"]}
    layout = ", ".join(f"{name} {found:,} of {listed:,}" + ("" if laid_out else ", **not laid out**")
                       for name, (listed, found, laid_out) in matched.items())
    return ("RSS from `/proc/<pid>/status` after start-up, and after 10 s of products, 10 s of POSTs "
            "(`wrk -c64`) and 10 s of `loadgen mixed --users 32`, split after the load into the anonymous "
            "pages (heap, stacks, allocator caches) and the file-backed ones (the binary's and the shared "
            "libraries' code and read-only data, as much of them as the kernel mapped in). The binaries' code "
            f"is laid out by `link-layout/*.order` (functions listed there and found in this build: {layout}).\n\n"
            + "\n".join(table))


def cpu_seconds(pid):
    """utime + stime of a process so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rabbitmq_pid():
    """The local RabbitMQ node's operating-system process."""
    return int(sh("rabbitmqctl", "-q", "eval", "os:getpid().").strip().strip('"'))


CPU_RATES = (1000, 2000, 3000)
CPU_COLUMNS = ["backend", "worker", "gateway", "rabbitmq", "sink", "loadgen"]


def cpu_per_task():
    """CPU time per task of every process on the machine, at fixed POST rates."""
    rows = []
    for rate in CPU_RATES:
        seconds = 20
        with platform_up() as (svc, _, stack):
            pids = process_pids(svc, stack, ["backend", "worker", "gateway"])
            pids["rabbitmq"] = rabbitmq_pid()
            out = Path(tempfile.mktemp(suffix=".json"))
            load = subprocess.Popen([str(BIN / "loadgen"), "post-tasks", "--host", svc["gateway"].url(),
                                     "--rate", str(rate), "--duration", f"{seconds}s", "--json", str(out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            pids["loadgen"] = load.pid
            # The middle of the run: past start-up, before the last requests drain.
            time.sleep(3)
            before, started = {n: cpu_seconds(p) for n, p in pids.items()}, time.time()
            time.sleep(seconds - 6)
            after, elapsed = {n: cpu_seconds(p) for n, p in pids.items()}, time.time() - started
            load.wait()
            summary = json.loads(out.read_text())
            out.unlink()
        # loadgen's own count of the iterations it started.
        tasks = summary["iterations_per_second"] * elapsed
        micros = {n: (after[n] - before[n]) * 1e6 / tasks for n in pids}
        rows.append((rate, summary, micros))
        print("cpu", rate, {n: round(v) for n, v in micros.items()})
    cpus = os.cpu_count() or 1
    table = ["| rate | reached | " + " | ".join(CPU_COLUMNS) + f" | all | {cpus} cores allow |",
             "|---|---|" + "---|" * (len(CPU_COLUMNS) + 2)]
    for rate, summary, micros in rows:
        total = sum(micros.values())
        table.append(f"| {rate:,}/s | {summary['iterations_per_second']:,.0f}/s, {summary['failed_iterations']} failed | "
                     + " | ".join(f"{micros[n]:.0f}" for n in CPU_COLUMNS)
                     + f" | **{total:,.0f} µs** | {cpus * 1e6 / rate:,.0f} µs |")
    return (f"`loadgen post-tasks --rate R --duration 20s` through the gateway with the worker running; CPU time "
            f"(`utime + stime` from `/proc/<pid>/stat`) of each process over the middle {20 - 6} s, divided by the "
            "tasks posted in that time (at the rate loadgen reached), in µs per task. Everything shares the machine's cores, so the sustainable "
            "rate is where *all* reaches what the cores allow. The product service takes no part (0 µs).\n\n"
            + "\n".join(table))


def e2e():
    rows = []
    with platform_up() as (svc, _, _):
        gw = svc["gateway"].url()
        for rate in [200, 500, 1000]:
            s = loadgen("e2e", "--host", gw, "--rate", str(rate), "--duration", "30s", "--poll-ms", "2")
            lat = s["end_to_end"]["latency"]
            rows.append((rate, s["iterations_per_second"], lat, s["end_to_end"]["unfinished"]))
            print("e2e", rows[-1])
    table = ["| POST rate | reached /s | p50 ms | p99 ms | max ms | unfinished |", "|---|---|---|---|---|---|"]
    for rate, reached, lat, lost in rows:
        table.append(f"| {rate}/s | {reached:,.0f} | {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | {lat['max_ms']:.1f} | {lost} |")
    return ("`loadgen e2e --rate R --duration 30s --poll-ms 2`: each task POSTed through the gateway on a fixed "
            "schedule and polled every 2 ms until `succeeded`; latency from the POST, including up to one poll "
            "interval. The polls are load too (a GET every 2 ms per task in flight).\n\n" + "\n".join(table))


# The arrival rates the headline tries, from the top (tasks/s).
HEADLINE_RATES = [6000, 5500, 5000, 4500, 4000, 3500, 3000, 2500, 2000, 1500, 1000]


def headline(minutes, start_at):
    """The highest fixed POST rate sustained with the queue bounded."""
    probes = []
    sustained = None
    for rate in [r for r in HEADLINE_RATES if r <= start_at]:
        ok, detail = sustain(rate, 60)
        probes.append((rate, ok, detail))
        print("probe", rate, ok, detail)
        if ok:
            sustained = rate
            break
    if sustained is None:
        return "No rate probed was sustained.", None
    # A rate that holds for a minute may not hold for ten (the machine's
    # speed drifts): the long run steps down until one holds.
    longer = []
    for rate in [r for r in HEADLINE_RATES if r <= sustained]:
        ok, detail = sustain(rate, minutes * 60)
        longer.append((rate, ok, detail))
        print("headline", rate, ok, detail)
        if ok:
            break
    rate, ok, detail = longer[-1]
    return detail_table(rate, minutes, ok, detail, probes, longer[:-1]), (rate if ok else None)


def sustain(rate, seconds):
    with platform_up() as (svc, vhost, _):
        gw = svc["gateway"].url()
        proc = subprocess.Popen([str(BIN / "loadgen"), "post-tasks", "--host", gw, "--rate", str(rate),
                                 "--duration", f"{seconds}s", "--follow-every", "200",
                                 "--json", "/tmp/bench-headline.json"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        depths, rss = [], []
        started = time.time()
        while proc.poll() is None:
            time.sleep(5)
            depth = vhost.depth()
            if depth is not None:
                depths.append(depth)
            if int(time.time() - started) % 60 < 5:
                rss.append({n: round(s.rss_mib(), 1) for n, s in svc.items()})
        summary = json.loads(Path("/tmp/bench-headline.json").read_text())
    bound = rate  # one second's worth
    steady = depths[len(depths) // 4:] or depths
    ok = (summary["iterations_per_second"] >= 0.95 * rate and summary["failed_iterations"] == 0
          and steady and max(steady) < bound)
    return ok, {"summary": summary, "max_depth": max(steady) if steady else None, "rss": rss}


def detail_table(rate, minutes, ok, detail, probes, failed_long=()):
    s = detail["summary"]
    e2e = s.get("end_to_end") or {}
    lat = e2e.get("latency", {})
    post = next((r for r in s["requests"] if r["name"] == "POST /api/tasks"), None)
    rss = detail["rss"]
    order = ["gateway", "backend", "product", "worker"]
    rss_line = ", ".join(f"min {i}: " + "/".join(f"{r[n]:.0f}" for n in order) for i, r in enumerate(rss))
    verdict = "sustained" if ok else "NOT sustained"
    lines = [
        f"**{rate:,} tasks/s {verdict} for {minutes} minutes** through the gateway "
        f"({rate / ORIGINAL['sustained_tps']:.1f}x the Python/Node original's {ORIGINAL['sustained_tps']}/s): "
        f"`loadgen post-tasks --rate {rate} --duration {minutes}m --follow-every 200` with the worker running.",
        "",
        "| | |",
        "|---|---|",
        f"| reached | {s['iterations_per_second']:,.0f} tasks/s, {s['failed_iterations']} failed |",
        f"| task queue depth (max after the first quarter) | {detail['max_depth']} (bound: {rate:,}, one second's worth) |",
        f"| POST p50 / p99 | {post['latency']['p50_ms']:.0f} / {post['latency']['p99_ms']:.0f} ms |" if post else "| POST | - |",
        f"| end to end, POST to `succeeded` (every 200th task followed) p50 / p99 | "
        f"{lat.get('p50_ms', 0):.0f} / {lat.get('p99_ms', 0):.0f} ms |",
        f"| RSS gateway/backend/product/worker (MiB) | {rss_line} |",
        "",
        "Probed first, 60 s each, from the top: " + ", ".join(
            f"{r:,}/s {'held' if ok_ else 'not held'}" for r, ok_, _ in probes) + "." + "".join(
            f" {r:,}/s then did not hold for {minutes} minutes ({d['summary']['iterations_per_second']:,.0f}/s "
            f"reached, queue at most {d['max_depth']:,})." for r, _, d in failed_long),
    ]
    return "\n".join(lines)


class Callgrind:
    """A service run under `valgrind --tool=callgrind`: the instructions it
    executes between `zero()` and `count()`. The same binary given the same
    work executes nearly the same number whatever else the machine does
    (batching still depends on timing), so these figures compare across runs
    where wall-clock ones do not. They count user space only: the kernel's
    socket work is not in them."""

    def __init__(self, stack, name, extra=None):
        self.out = stack.workdir / f"callgrind.{name}"
        prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}.%p"]
        self.service = stack.start(name, extra=extra, prefix=prefix, timeout=120)
        self.pid = self.service.proc.pid

    def control(self, option):
        # callgrind_control exits 0 even when it reached no process; only
        # its "OK" says the command was carried out.
        out = sh("callgrind_control", option, str(self.pid))
        if "OK" not in out:
            raise RuntimeError(f"callgrind_control {option} {self.pid} failed: {out.strip()}")

    def zero(self):
        self.control("-z")

    def count(self):
        """Instructions since `zero()` (the counters are dumped to a file)."""
        self.control("-d")
        dump = Path(f"{self.out}.{self.pid}.1")
        deadline = time.time() + 60
        while time.time() < deadline:
            if dump.exists():
                found = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), flags=re.M)
                if found:
                    return int(found.group(1))
            time.sleep(0.5)
        raise RuntimeError(f"no callgrind dump from {self.service.name}")


def instructions():
    """Instructions per request or task of the service that does the work,
    under callgrind (one at a time, the others run normally)."""
    rows = []

    def measure(label, stack, name, load, extra=None, settle=6, then=()):
        """`load()` -> the requests or tasks it made; after `settle` seconds
        (past the export schedule, so the last spans are exported), the
        instructions per one. `then`: services started after the traced one."""
        traced = Callgrind(stack, name, extra)
        for other in then:
            stack.start(other)
        load()  # warm-up: connections, caches, the first batch exported
        time.sleep(1)
        traced.zero()
        made = load()
        if made == 0:
            raise RuntimeError(f"{label}: the load made no requests against {name} under callgrind")
        time.sleep(settle)
        per = traced.count() / made
        rows.append((label, per))
        print("instructions", label, round(per))

    def requests(url, post=False):
        def run():
            before = WRK_REQUESTS["total"]
            wrk(url, seconds=10, connections=4, post=post, threads=1)
            return WRK_REQUESTS["total"] - before
        return run

    for label, env in [("`OTEL_SDK_DISABLED=true`", {"OTEL_SDK_DISABLED": "true"}), ("100 %", {})]:
        with platform_up((), env=env) as (_, _, stack):
            measure(f"`GET /api/products` direct, product service, {label}", stack, "product",
                    requests(stack.url("product", "/api/products")))
    with platform_up(("product",)) as (_, _, stack):
        measure("`GET /api/products` via the gateway, gateway, 100 %", stack, "gateway",
                requests(stack.url("gateway", "/api/products")))
    with platform_up(()) as (_, _, stack):  # no worker: the tasks wait in the queue
        measure("`POST /api/tasks` direct, backend, 100 %", stack, "backend",
                requests(stack.url("backend", "/api/tasks"), post=True))
    with platform_up(("backend",)) as (svc, _, stack):
        base = svc["backend"].url()

        def echo_tasks():
            before = WRK_REQUESTS["total"]
            wrk(base + "/api/tasks", seconds=3, connections=8, post=True)
            wait_succeeded(base, marker(base))
            return WRK_REQUESTS["total"] - before + 1
        measure("an echo task, worker (`WORKER_CONCURRENCY` 4), 100 %", stack, "worker", echo_tasks)
    with platform_up(()) as (_, _, stack):
        base = stack.url("backend")

        def accepted_and_finished():
            before = WRK_REQUESTS["total"]
            wrk(base + "/api/tasks", seconds=5, connections=64, post=True)
            wait_succeeded(base, marker(base))
            return WRK_REQUESTS["total"] - before + 1
        measure("an echo task accepted and its reports applied under load, backend, 100 %", stack, "backend",
                accepted_and_finished, then=("worker",))

    table = ["| what | instructions per request or task |", "|---|---|"]
    table += [f"| {label} | {per:,.0f} |" for label, per in rows]
    return ("The service doing the work runs under `valgrind --tool=callgrind`, the others as usual. "
            "Each load runs twice: once to warm up, then with the counters zeroed (`callgrind_control -z`) "
            "and read 6 s after it (`callgrind_control -d`; the spans of the run exported by then), divided by the requests or tasks it made. Requests: "
            "`wrk -t1 -c4 -d10s`. Echo tasks: 3 s of `wrk -t2 -c8` POSTs to the backend while the worker "
            "drains them, until the last is `succeeded`; under load: 5 s of `wrk -t2 -c64` POSTs to the backend "
            "(slowed by callgrind, so its INSERTs and UPDATEs take large batches) while the worker drains them, "
            "until the last is `succeeded`. The same binary given the same work executes nearly "
            "the same instructions however busy the machine is (three runs on one machine differed by at most "
            "2.4 %: how spans, inserts and confirms fall into batches depends on timing, and on the load's "
            "concurrency, so compare only figures measured this way), so these compare across runs where "
            "the wall-clock figures do not. User space only: the kernel's socket work, much of a cheap "
            "request's cost, is not counted.\n\n" + "\n".join(table))


def write_section(name, body):
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


def main():
    global BIN
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--headline-minutes", type=int, default=10)
    parser.add_argument("--headline-from", type=int, default=6000, help="the first rate probed (tasks/s)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if shutil.which("wrk") is None:
        sys.exit("bench.py needs wrk: apt-get install wrk")
    if "instructions" in only and shutil.which("valgrind") is None:
        sys.exit("the instructions section needs valgrind: apt-get install valgrind")
    subprocess.run([str(ROOT / "scripts" / "build-release.sh")], check=True)
    BIN = target_dir()
    if "machine" in only:
        write_section("machine", machine())
    if "cpu" in only:
        write_section("cpu", cpu_per_task())
    if "tracing" in only:
        write_section("tracing", tracing_cost())
    if "hop" in only:
        write_section("hop", gateway_hop())
    if "broker" in only:
        text, _ = broker_ceiling()
        write_section("broker", text)
    if "scaling" in only:
        text, _ = scaling()
        write_section("scaling", text)
    if "memory" in only:
        write_section("memory", memory())
    if "e2e" in only:
        write_section("e2e", e2e())
    if "instructions" in only:
        write_section("instructions", instructions())
    if "headline" in only:
        text, _ = headline(args.headline_minutes, args.headline_from)
        write_section("headline", text)
    print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    sys.exit(main())
