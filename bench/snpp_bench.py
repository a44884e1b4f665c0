"""SNPP pages per second over concurrent sessions.

    .venv/bin/python bench/snpp_bench.py --pages 4000 --sessions 8 [--record]

Starts ``twistd -n smsd`` (tests/process.py's SmsdProcess) with the loopback
gateway and ``[snpp] listen``; ``--sessions`` client processes each keep one
SNPP connection open (as a paging system's queue runner does) and page
``--pages / --sessions`` times: PAGE, MESS, SEND, one phone each, waiting for
each reply. ``pages_per_s`` counts SEND's 250 answers (each after the commit,
with fsync) per second of wall time, with p50/p99 of the time from SEND to its
250; ``sent_per_s`` counts the SMS the loopback gateway had sent by then.

One JSON line on stdout (and in bench/results.jsonl with ``--record``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import emit, fan_out, latency_ms  # noqa: E402
from tests.process import SmsdProcess, free_port  # noqa: E402

CONFIG = """
[smsd]
traffic_log = ""
domain = "sms.example.org"
trusted_networks = ["127.0.0.1/32"]
[http]
listen = ["tcp:{port}:interface=127.0.0.1"]
[snpp]
listen = ["tcp:%(snpp)d:interface=127.0.0.1"]
[sip]
listen = []
[[gateway]]
id = "loopback"
type = "loopback"
latency = "1ms"
report_delay = "50ms"
"""


def page(port: int, start: int, count: int) -> tuple[int, list[float]]:
    """One paging client: one session, ``count`` pages; (250s to SEND, seconds each)."""
    queued = 0
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", port), 30) as s, s.makefile("rb") as f:
        f.readline()  # 220
        for i in range(start, start + count):
            for line in (f"PAGE +1555{i:07d}", f"MESS page {i}: server room too hot"):
                s.sendall(line.encode() + b"\r\n")
                f.readline()
            t0 = time.monotonic()
            s.sendall(b"SEND\r\n")
            answer = f.readline()
            latencies.append(time.monotonic() - t0)
            queued += answer.startswith(b"250 ")
        s.sendall(b"QUIT\r\n")
        f.readline()
    return queued, latencies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pages", type=int, default=4000)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--record", action="store_true")
    args = p.parse_args()

    snpp_port = free_port()
    smsd = SmsdProcess(CONFIG % {"snpp": snpp_port})
    result: dict[str, Any] = {
        "bench": "snpp",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "pages": args.pages,
        "sessions": args.sessions,
    }
    try:
        smsd.start()
        queued, latencies, seconds = fan_out(page, snpp_port, args.pages, args.sessions)
        _, health = smsd.get("/api/v1/health")
        sent = sum(g.get("sent_parts", 0) for g in health.get("gateways", []))
        result.update(
            queued=queued,
            pages_per_s=round(queued / seconds),
            **latency_ms(latencies),
            sent_per_s=round(sent / seconds),
        )
    finally:
        smsd.cleanup()
    emit(result, args.record)


if __name__ == "__main__":
    main()
