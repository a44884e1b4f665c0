"""What every benchmark here does the same way: latency percentiles and the result line."""

from __future__ import annotations

import concurrent.futures
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def latency_ms(latencies: list[float]) -> dict[str, float]:
    """p50 and p99 of ``latencies`` (seconds), in milliseconds."""
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 2),
    }


def emit(result: dict[str, Any], record: bool) -> None:
    """One JSON line on stdout, and in bench/results.jsonl with ``--record``."""
    line = json.dumps(result)
    print(line)
    if record:
        with open(os.path.join(HERE, "results.jsonl"), "a") as f:
            f.write(line + "\n")


def fan_out(
    client: Callable[[int, int, int], tuple[int, list[float]]], port: int, total: int, clients: int
) -> tuple[int, list[float], float]:
    """Run ``client(port, first, count)`` in ``clients`` processes of their own (threads would
    share one core's GIL and measure the client), ``total`` requests split between them:
    (answered, every latency, seconds of wall time)."""
    per = total // clients
    with concurrent.futures.ProcessPoolExecutor(clients) as pool:
        started = time.monotonic()
        done = list(
            pool.map(client, [port] * clients, [n * per for n in range(clients)], [per] * clients)
        )
        seconds = time.monotonic() - started
    return sum(n for n, _ in done), [t for _, ts in done for t in ts], seconds
