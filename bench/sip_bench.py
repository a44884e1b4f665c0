"""SIP MESSAGE requests per second over UDP into the loopback gateway.

    .venv/bin/python bench/sip_bench.py --messages 5000 --clients 8 [--record]

Starts ``twistd -n smsd`` (tests/process.py's SmsdProcess) with the loopback
gateway and ``[sip] listen`` on UDP; ``--clients`` processes (a PBX's worth of
phones, from the trusted network: no digest) each send ``--messages /
--clients`` MESSAGEs, one at a time, each waiting for its 202 (sent once the SMS
is committed with fsync) and resending on the SIP timer T1 (0.5 s) as phones do.
``messages_per_s`` counts 202s per second of wall time, with p50/p99 from the
request to its 202.

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
listen = []
[sip]
listen = ["udp:%(sip)d:interface=127.0.0.1"]
[[gateway]]
id = "loopback"
type = "loopback"
latency = "1ms"
report_delay = "50ms"
"""


def phone(port: int, start: int, count: int) -> tuple[int, list[float]]:
    """One client: ``count`` MESSAGEs, each answered before the next; (202s, seconds each)."""
    accepted = 0
    latencies: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.5)
        local = s.getsockname()[1]
        for i in range(start, start + count):
            body = f"message {i}: server room too hot".encode()
            request = (
                f"MESSAGE sip:+1555{i:07d}@sms.example.org SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKb{i}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:bench@pbx.example.org>;tag=b{i}\r\n"
                f"To: <sip:+1555{i:07d}@sms.example.org>\r\nCall-ID: bench-{i}\r\n"
                f"CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            t0 = time.monotonic()
            for _ in range(8):  # T1 retransmissions, bounded
                s.sendto(request, ("127.0.0.1", port))
                try:
                    answer = s.recv(65535)
                except TimeoutError:
                    continue
                if answer.startswith(b"SIP/2.0 202"):
                    accepted += 1
                    latencies.append(time.monotonic() - t0)
                break
    return accepted, latencies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--record", action="store_true")
    args = p.parse_args()

    sip_port = free_port()
    smsd = SmsdProcess(CONFIG % {"sip": sip_port})
    result: dict[str, Any] = {
        "bench": "sip",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "messages": args.messages,
        "clients": args.clients,
    }
    try:
        smsd.start()
        accepted, latencies, seconds = fan_out(phone, sip_port, args.messages, args.clients)
        result.update(
            accepted=accepted,
            messages_per_s=round(accepted / seconds),
            **latency_ms(latencies),
        )
    finally:
        smsd.cleanup()
    emit(result, args.record)


if __name__ == "__main__":
    main()
