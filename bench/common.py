"""What every benchmark here does the same way: latency percentiles and the result line."""

from __future__ import annotations

import json
import os
import statistics
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
