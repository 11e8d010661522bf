#!/usr/bin/env python3
"""Writes link-layout/<service>.order: the functions each service's release
binary runs, hottest first, for the linker to place together
(link-layout/mod.rs says why).

    scripts/symbol-order.py            # all four services (about 4 minutes)
    scripts/symbol-order.py backend    # one
    scripts/symbol-order.py --check    # how much of each order file the
                                       # current release build still has

Each service runs under `valgrind --tool=callgrind` in a platform of its
own (bench.py's: a RabbitMQ vhost, SQLite files, a span sink) through
start-up, every endpoint of the API (errors included), a short load of
each kind bench.py measures, and a graceful stop; the functions it ran are
ordered by the instructions they executed themselves. Run it again when the
dependencies or the toolchain change: symbol names carry hashes of both,
and `--check` shows how many names still match. Needs what bench.py needs
(wrk, valgrind).
"""

import argparse
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

SERVICES = ["gateway", "backend", "product", "worker"]
LAYOUT = bench.ROOT / "link-layout"


def self_costs(dump):
    """Instructions each function executed itself, from a callgrind dump
    (name compression on: `fn=(id) name` the first time, `fn=(id)` after)."""
    names, costs = {}, defaultdict(int)
    current, after_call = None, False
    for line in dump.read_text().splitlines():
        if line.startswith("fn="):
            found = re.match(r"fn=\((\d+)\)(?: (.*))?", line)
            if found.group(2):
                names[found.group(1)] = found.group(2)
            current, after_call = names.get(found.group(1)), False
        elif line.startswith(("cfn=", "cfi=", "cfl=", "cob=")):
            found = re.match(r"cfn=\((\d+)\) (.*)", line)
            if found:
                names[found.group(1)] = found.group(2)
        elif line.startswith("calls="):
            after_call = True
        elif current and line[:1] in "0123456789+-*":
            # `<position> <instructions>`; the line after `calls=` is the
            # call's inclusive cost, not the function's own.
            parts = line.split()
            if not after_call and len(parts) == 2:
                costs[current] += int(parts[1])
            after_call = False
    return costs


def request(url, body=None):
    data = body.encode() if body else None
    headers = {"Content-Type": "application/json"} if body else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as r:
            return r.read()
    except urllib.error.HTTPError as err:  # 4xx/5xx are part of the tour
        return err.read()


def tour(stack):
    """Every endpoint, the error paths, then a short load of each kind."""
    gw = stack.url("gateway")
    for name in SERVICES:
        for path in ("/health", "/ready", "/metrics", "/nowhere"):
            request(stack.url(name, path))
    for path in ("/api/products", "/api/products?category=books&limit=5&offset=1", "/api/products?limit=0",
                 "/api/products/1", "/api/products/999999", "/api/products/x", "/api/openapi.json",
                 "/api/tasks/00000000-0000-0000-0000-000000000000", "/api/tasks/not-an-id"):
        request(gw + path)
    for body in ('{"type":"echo","payload":{"n":1}}', '{"type":"hash","payload":{"data":"a","rounds":10}}',
                 '{"type":"sleep","payload":{"ms":10}}', '{"type":"nope","payload":{}}', "not json"):
        request(gw + "/api/tasks", body)
    bench.wrk(gw + "/api/products", seconds=5, connections=8)
    bench.wrk(gw + "/api/tasks", seconds=5, connections=8, post=True)
    bench.loadgen("mixed", "--host", gw, "--users", "8", "--duration", "5s")
    time.sleep(6)  # the last tasks finish, the last spans are exported


def record(name):
    """`name`'s functions over start-up, the tour and a graceful stop."""
    with bench.platform_up(()) as (_, _, stack):
        out = stack.workdir / f"callgrind.{name}"
        # Names as the linker sees them; recursion not split into `f'2`
        # (a name the binary does not have).
        prefix = ["valgrind", "--tool=callgrind", "--demangle=no", "--separate-recs=1",
                  f"--callgrind-out-file={out}.%p"]
        traced = stack.start(name, prefix=prefix, timeout=180)
        for other in SERVICES:
            if other != name:
                stack.start(other)
        tour(stack)
        traced.proc.send_signal(signal.SIGTERM)
        code = traced.proc.wait(120)
        if code != 0:
            raise RuntimeError(f"{name} exited with {code} under callgrind (its log: {stack.workdir / name}.log)")
        return self_costs(Path(f"{out}.{traced.proc.pid}"))


def check(services):
    for name in services:
        listed, found, laid_out = bench.layout_match(name)
        share = f"{found / listed:.0%}" if listed else "an empty list"
        state = "laid out" if laid_out else "NOT laid out by it (ASYNC_MICRO_LINK_LAYOUT=off, or another linker)"
        print(f"{name}: {found:,} of {listed:,} listed functions are in the build ({share}); {state}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("services", nargs="*", default=SERVICES)
    parser.add_argument("--check", action="store_true", help="compare the order files with the current build")
    args = parser.parse_args()
    subprocess.run([str(bench.ROOT / "scripts" / "build-release.sh")], check=True)
    bench.BIN = bench.target_dir()
    if args.check:
        return check(args.services)
    for name in args.services:
        costs = record(name)
        have = bench.text_symbols(bench.BIN / name)
        ordered = sorted((symbol for symbol in costs if symbol in have), key=lambda s: -costs[s])
        header = (f"# {name}: the functions it runs, hottest first (scripts/symbol-order.py;\n"
                  "# link-layout/mod.rs says why). Written by the script: do not edit.\n")
        (LAYOUT / f"{name}.order").write_text(header + "\n".join(ordered) + "\n")
        print(f"{name}: {len(ordered):,} functions", flush=True)
    subprocess.run([str(bench.ROOT / "scripts" / "build-release.sh")], check=True)
    check(args.services)


if __name__ == "__main__":
    main()
