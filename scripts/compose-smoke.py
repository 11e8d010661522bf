#!/usr/bin/env python3
"""End-to-end check of the compose stack, the way a user would look at it.

Brings up compose/docker-compose.yml from scratch (build included), then
checks that a task goes through the gateway, that its trace is whole in
Jaeger, that Prometheus scrapes every target and holds exemplars, that
Grafana's datasources answer and its dashboard is provisioned, that RabbitMQ
has the durable task queue with the worker's consumers, that the worker and
the backend scale with --scale, that tasks survive a backend restart
(PostgreSQL), and that traces survive a Jaeger restart. Takes the stack down
(with its volumes) at the end unless --keep.

Needs Docker with the compose plugin, and Python 3 (standard library only).

    scripts/compose-smoke.py              # build, up, check, down -v
    scripts/compose-smoke.py --keep       # leave the stack running
    scripts/compose-smoke.py --no-compose --skip jaeger,grafana
        # check services someone else started (no docker commands);
        # the URLs come from GATEWAY_URL, JAEGER_URL, PROMETHEUS_URL,
        # GRAFANA_URL, RABBITMQ_URL (defaults: the compose ports on localhost)
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Its own project: `down --volumes` at the end removes this run's volumes,
# never those of a stack the user runs under the default project name.
COMPOSE = [
    "docker", "compose", "-p", "async-micro-smoke",
    "-f", os.path.join(ROOT, "compose", "docker-compose.yml"),
]
GATEWAY = os.environ.get("GATEWAY_URL", "http://localhost:3000")
JAEGER = os.environ.get("JAEGER_URL", "http://localhost:16686")
PROMETHEUS = os.environ.get("PROMETHEUS_URL", "http://localhost:9090")
GRAFANA = os.environ.get("GRAFANA_URL", "http://localhost:3001")
RABBITMQ = os.environ.get("RABBITMQ_URL", "http://localhost:15672")
RABBITMQ_AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()
# compose's default WORKER_CONCURRENCY
CONCURRENCY = int(os.environ.get("WORKER_CONCURRENCY", "4"))
SERVICE_JOBS = {"gateway-service", "backend-service", "product-service", "worker-service"}


class CheckFailed(Exception):
    pass


def request(method, url, body=None, headers=None, timeout=10):
    """(status, parsed JSON or text, headers); status 0 if unreachable."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, resp_headers = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        status, raw, resp_headers = err.code, err.read(), err.headers
    except (urllib.error.URLError, OSError):
        return 0, None, {}
    try:
        return status, json.loads(raw), resp_headers
    except ValueError:
        return status, raw.decode(errors="replace"), resp_headers


def get(url, **kw):
    return request("GET", url, **kw)


def wait_for(what, probe, timeout):
    """Calls probe() until it returns a result: anything truthy but a
    string, which (like None, False or an exception) means "not yet, this is
    why". Fails with the last reason after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as err:
            last = f"unexpected answer: {err!r}"
        if last and not isinstance(last, str):
            return last
        time.sleep(2)
    raise CheckFailed(f"{what}: not after {timeout} s (last: {last})")


def ok(message):
    print(f"ok    {message}", flush=True)


def compose(*args):
    print("+ docker compose " + " ".join(args), flush=True)
    subprocess.run(COMPOSE + list(args), check=True)


def check_gateway_up(timeout):
    wait_for("gateway /health", lambda: get(f"{GATEWAY}/health")[0] == 200, timeout)
    ok(f"gateway answers on {GATEWAY}")


def check_task_kept(task_id):
    status, task, _ = get(f"{GATEWAY}/api/tasks/{task_id}")
    if status != 200 or task.get("status") != "succeeded":
        raise CheckFailed(f"task {task_id} after the backend restart: {status} {task}")
    ok(f"task {task_id} is still there after the backend restarted (PostgreSQL)")


def check_task():
    status, body, headers = request(
        "POST", f"{GATEWAY}/api/tasks", {"type": "hash", "payload": {"data": "smoke", "rounds": 10}}
    )
    if status != 202:
        raise CheckFailed(f"POST /api/tasks: {status} {body}")
    if "traceresponse" not in {k.lower() for k in headers.keys()}:
        raise CheckFailed("POST /api/tasks: no traceresponse header")
    task_id, trace_id = body["id"], body["trace_id"]

    def done():
        _, task, _ = get(f"{GATEWAY}/api/tasks/{task_id}")
        return task if task.get("status") in ("succeeded", "failed") else None

    task = wait_for(f"task {task_id}", done, 60)
    if task["status"] != "succeeded":
        raise CheckFailed(f"task {task_id}: {task}")
    ok(f"task {task_id} succeeded (trace {trace_id})")
    return task_id, trace_id


def check_products():
    status, body, _ = get(f"{GATEWAY}/api/products/1")
    if status != 200 or not isinstance(body, dict) or "id" not in body:
        raise CheckFailed(f"GET /api/products/1: {status} {body}")
    ok("catalog answers through the gateway")


def jaeger_trace(trace_id):
    status, body, _ = get(f"{JAEGER}/api/traces/{trace_id}")
    if status != 200 or not body.get("data"):
        return f"{status} {str(body)[:200]}"
    return body["data"][0]


def check_trace(trace_id, timeout=60):
    expected = {
        ("gateway-service", "POST /api/tasks"),
        ("backend-service", "POST /api/tasks"),
        ("backend-service", "send task_queue"),
        ("worker-service", "process task_queue"),
        ("worker-service", "process-task"),
    }

    def whole():
        trace = jaeger_trace(trace_id)
        if isinstance(trace, str):
            return trace
        processes = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
        seen = {(processes[s["processID"]], s["operationName"]) for s in trace["spans"]}
        missing = expected - seen
        if missing:
            return f"missing {sorted(missing)}"
        ids = {s["spanID"] for s in trace["spans"]}
        roots = [s for s in trace["spans"] if not any(r["spanID"] in ids for r in s.get("references", []))]
        if len(roots) != 1:
            return f"{len(roots)} roots: {[r['operationName'] for r in roots]}"
        return trace

    trace = wait_for(f"trace {trace_id} in Jaeger", whole, timeout)
    ok(f"Jaeger holds the whole trace: {len(trace['spans'])} spans, one root, "
       f"{len(trace['processes'])} processes")


def prometheus_query(expr):
    _, body, _ = get(f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return body["data"]["result"]


def check_prometheus(workers=1, backends=1):
    def targets_up():
        _, body, _ = get(f"{PROMETHEUS}/api/v1/targets?state=active")
        targets = body["data"]["activeTargets"]
        down = [(t["labels"]["job"], t["lastError"]) for t in targets if t["health"] != "up"]
        jobs = [t["labels"]["job"] for t in targets]
        if down or not SERVICE_JOBS | {"rabbitmq"} <= set(jobs):
            return f"jobs {sorted(jobs)}, down {down}"
        if jobs.count("worker-service") != workers:
            return f"{jobs.count('worker-service')} worker targets, {workers} expected"
        if jobs.count("backend-service") != backends:
            return f"{jobs.count('backend-service')} backend targets, {backends} expected"
        return targets

    targets = wait_for("every Prometheus target up", targets_up, 90)
    ok(f"Prometheus scrapes {len(targets)} targets, all up")
    wait_for(
        "tasks_processed_total in Prometheus",
        lambda: any(float(r["value"][1]) > 0 for r in prometheus_query("sum(tasks_processed_total)")),
        60,
    )
    now = time.time()
    params = urllib.parse.urlencode({
        "query": 'http_server_request_duration_seconds_bucket{job="gateway-service",http_route=~"/api/.*"}',
        "start": now - 900,
        "end": now,
    })

    def exemplars():
        _, body, _ = get(f"{PROMETHEUS}/api/v1/query_exemplars?{params}")
        return [e for s in body["data"] for e in s["exemplars"] if e["labels"].get("trace_id")]

    found = wait_for("trace-id exemplars in Prometheus", exemplars, 60)
    ok(f"Prometheus holds {len(found)} trace-id exemplars of the gateway's latency")


def check_grafana():
    for uid in ("prometheus", "jaeger"):
        def healthy(uid=uid):
            status, body, _ = get(f"{GRAFANA}/api/datasources/uid/{uid}/health")
            return status == 200 and body.get("status") == "OK" or f"{status} {body}"
        wait_for(f"Grafana datasource {uid}", healthy, 60)
        ok(f"Grafana datasource {uid} is healthy")
    status, body, _ = get(f"{GRAFANA}/api/dashboards/uid/async-micro-overview")
    if status != 200:
        raise CheckFailed(f"Grafana dashboard: {status} {body}")
    ok(f"Grafana dashboard '{body['dashboard']['title']}' is provisioned")


def check_rabbitmq(workers=1):
    def queue():
        status, body, _ = get(f"{RABBITMQ}/api/queues/%2F/task_queue", headers={"authorization": RABBITMQ_AUTH})
        if status != 200:
            return f"{status} {body}"
        if not body["durable"] or body["consumers"] != workers * CONCURRENCY:
            return f"durable={body['durable']} consumers={body['consumers']}"
        return body

    body = wait_for(f"task_queue with {workers * CONCURRENCY} consumers", queue, 90)
    ok(f"RabbitMQ: task_queue is durable, {body['consumers']} consumers")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--no-compose", action="store_true", help="run no docker commands")
    parser.add_argument("--skip", default="", help="comma-separated: jaeger, grafana, rabbitmq, prometheus")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    use_compose = not args.no_compose
    if use_compose and get(f"{GATEWAY}/health")[0] != 0:
        print(f"FAIL  something already answers on {GATEWAY}: stop your stack first "
              "(docker compose -f compose/docker-compose.yml down)", file=sys.stderr)
        return 1
    try:
        if use_compose:
            compose("up", "--build", "--detach")
        check_gateway_up(timeout=300)
        _, trace_id = check_task()
        check_products()
        if "jaeger" not in skip:
            check_trace(trace_id)
        if "prometheus" not in skip:
            check_prometheus()
        if "grafana" not in skip:
            check_grafana()
        if "rabbitmq" not in skip:
            check_rabbitmq()
        if use_compose:
            compose("up", "--detach", "--no-recreate", "--scale", "worker=3", "worker")
            check_rabbitmq(workers=3)
            check_prometheus(workers=3)
            kept, _ = check_task()
            # Task state is in PostgreSQL: two backends behind the gateway,
            # and a restart forgets nothing.
            compose("up", "--detach", "--no-recreate", "--scale", "backend=2", "backend")
            check_prometheus(workers=3, backends=2)
            for _ in range(4):
                check_task()
            compose("restart", "backend")
            check_gateway_up(timeout=120)
            wait_for("the backend after its restart", lambda: get(f"{GATEWAY}/api/tasks/{kept}")[0] == 200, 120)
            check_task_kept(kept)
            if "jaeger" not in skip:
                # trace_id was whole in Jaeger before; Badger keeps it on the volume.
                compose("restart", "jaeger")
                check_trace(trace_id, timeout=120)
                ok("the trace survived a Jaeger restart")
    except CheckFailed as err:
        print(f"FAIL  {err}", file=sys.stderr)
        if use_compose:
            subprocess.run(COMPOSE + ["ps"], check=False)
            subprocess.run(COMPOSE + ["logs", "--tail", "30"], check=False)
        return 1
    finally:
        if use_compose and not args.keep:
            compose("down", "--volumes")
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
