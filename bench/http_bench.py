"""HTTP submission benchmark: accepted and delivered msg/s, accept latency p50/p99.

Starts smsd (``twistd -n smsd``) in a temporary directory with a loopback
gateway, drives it with h2load (Debian ``nghttp2-client``, in HTTP/1.1 mode:
keep-alive connections, one SMS per request, exactly
``--requests`` requests, a log line per request for the percentiles), then
waits until every accepted message is delivered. Prints one JSON line
and appends it to ``bench/results.jsonl`` (with ``--record``).

    .venv/bin/python bench/http_bench.py --requests 20000 --connections 32 --record

Every message is committed with fsync (SQLite synchronous=FULL) before its
200 answer, and goes through dispatch, the loopback gateway's log file and a
delivery report, on the same two cores that wrk uses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.process import SmsdProcess, processes  # noqa: E402

CONFIG = """
[snpp]
listen = []
[sip]
listen = []
[http]
listen = ["tcp:{port}:interface=127.0.0.1"]
max_recipients = 10
[[gateway]]
id = "bench"
type = "loopback"
window = %(window)d
latency = "%(latency)s"
report_delay = "%(report_delay)s"
log = "loopback.jsonl"
send_timeout = "%(send_timeout)s"
"""


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/api/v1/health", timeout=30) as r:
        return json.loads(r.read())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Connections are opened RAMP at a time, RAMP_PERIOD apart, not all at once:
# Kannel's HTTP server listens with a backlog of 10, so 32 connections opened
# together left 22 of them waiting a second for the SYN to be sent again, and
# Kannel ran the first second of a three-second run with ten clients (lower
# latency, lower rate) instead of 32. Both gateways get the same ramp.
RAMP = 8
RAMP_PERIOD = "10ms"


def drive(h2load: str, uris: str, log: str, requests: int, connections: int, threads: int) -> dict:
    """h2load in HTTP/1.1 mode, one request at a time per keep-alive connection
    (each connection takes the lines of ``uris`` in order, from the first); the
    summary of its per-request log."""
    subprocess.run(
        [
            h2load,
            "--h1",
            "-n",
            str(requests),
            "-c",
            str(connections),
            "-t",
            str(threads),
            "-m",
            "1",
            "--rate",
            str(RAMP),
            "--rate-period",
            RAMP_PERIOD,
            "-i",
            uris,
            "--log-file",
            log,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return summarise(log)


def common_result(
    bench: str,
    args: argparse.Namespace,
    load: dict,
    accepted: int,
    accept_seconds: float,
    delivered_seconds: float,
) -> dict:
    """The fields every benchmark line has, in the same order."""
    return {
        "bench": bench,
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "requests": load["requests"],
        "connections": args.connections,
        "accepted": accepted,
        "errors": load["errors"],
        "accepted_per_s": round(load["requests"] / load["seconds"]),
        "delivered_per_s": round(accepted / delivered_seconds),
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "max_ms": load["max_ms"],
        "in_flight": load["in_flight"],
        "accept_seconds": round(accept_seconds, 2),
        "delivered_seconds": round(delivered_seconds, 2),
    }


def report(result: dict, record: bool) -> None:
    """Print the line; with ``record`` append it to bench/results.jsonl."""
    print(json.dumps(result))
    if record:
        with open(os.path.join(HERE, "results.jsonl"), "a") as f:
            f.write(json.dumps(result) + "\n")


def summarise(path: str) -> dict:
    """Rate and latency percentiles from h2load's per-request log."""
    starts, ends, latencies, errors = [], [], [], 0
    with open(path) as f:
        for line in f:
            start_us, status, took_us = (int(x) for x in line.split()[:3])
            starts.append(start_us)
            ends.append(start_us + took_us)
            latencies.append(took_us / 1000)
            errors += status not in (200, 202)
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    seconds = (max(ends) - min(starts)) / 1e6
    return {
        "requests": len(latencies),
        "seconds": seconds,
        "errors": errors,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 2),
        # Requests waiting for their answer, on average (Little's law): the
        # concurrency the latencies were measured at.
        "in_flight": round(sum(latencies) / 1000 / seconds, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="h2load threads")
    p.add_argument("--window", type=int, default=100, help="loopback messages in flight")
    p.add_argument("--latency", default="5ms", help="loopback submit latency")
    p.add_argument("--report-delay", default="50ms")
    p.add_argument("--send-timeout", default="60s")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for delivery")
    p.add_argument("--record", action="store_true", help="append to bench/results.jsonl")
    p.add_argument("--note", default="")
    args = p.parse_args()
    h2load = shutil.which("h2load")
    if h2load is None:
        print("h2load is not installed (Debian package nghttp2-client)", file=sys.stderr)
        return 2
    config = CONFIG % {
        "window": args.window,
        "latency": args.latency,
        "report_delay": args.report_delay,
        "send_timeout": args.send_timeout,
    }
    smsd = SmsdProcess(config, tempfile.mkdtemp(prefix="smsd-bench-"))
    try:
        smsd.start()
        uris = os.path.join(smsd.dir, "uris.txt")
        with open(uris, "w") as f:
            for n in range(args.requests):
                f.write(f"{smsd.url}/sms/?number=%2B1555{n:07d}&data=Benchmark+message+{n}\n")
        requests_log = os.path.join(smsd.dir, "requests.tsv")
        assert smsd.proc is not None
        pids = processes(smsd.proc.pid)  # with the store writer and any HTTP workers
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        load = drive(h2load, uris, requests_log, args.requests, args.connections, args.threads)
        accept_seconds = time.monotonic() - started
        deadline = time.monotonic() + args.timeout
        while True:
            h = health(smsd.url)
            states = h["queue"]["states"]
            if not states.get("queued") and not states.get("sending"):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"not delivered within {args.timeout}s: {states}")
            time.sleep(0.02)
        # The last delivery report follows the last send by report_delay.
        while h["reports_received"] < h["dispatcher"]["sent"]:
            time.sleep(0.02)
            h = health(smsd.url)
        delivered_seconds = time.monotonic() - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        accepted = h["dispatcher"]["sent"]
        result = {
            **common_result("http-submit", args, load, accepted, accept_seconds, delivered_seconds),
            "smsd_cpu_us_per_msg": round(sum(cpu.values()) / accepted * 1e6),
            "cpu_us_per_msg": {name: round(c / accepted * 1e6) for name, c in cpu.items()},
            "loopback": {
                "window": args.window,
                "latency": args.latency,
                "report_delay": args.report_delay,
            },
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "note": args.note,
        }
        report(result, args.record)
        return 0
    finally:
        smsd.stop()
        shutil.rmtree(smsd.dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
