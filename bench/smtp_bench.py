"""Mail to SMS and SMS to mail: mails accepted per second, inbound SMS mailed per second.

    .venv/bin/python bench/smtp_bench.py --mails 3000 --concurrency 16 --inbound 2000 [--record]

Starts ``twistd -n smsd`` (tests/process.py's SmsdProcess) with the loopback
gateway, ``[smtp] listen`` and ``[smtp] relay`` pointing at an aiosmtpd server in
this process (the organisation's mail server), then:

* **mail in**: ``--concurrency`` processes, each with one smtplib connection kept
  open (as a mail server's connection cache does), send ``--mails`` mails with
  one recipient each; ``mails_per_s`` counts 250 answers (each after the
  commit, with fsync) per second of wall time, with p50/p99 of the time from
  DATA's end to the 250;
* **SMS in, mail out**: ``--inbound`` SMS are injected through the JSON API
  (``POST /api/v1/inbound``, 16 at a time) for a ``default_mailbox``;
  ``inbound_mailed_per_s`` counts mails the relay received per second, from
  the first injection to the last mail.

One JSON line on stdout (and in bench/results.jsonl with ``--record``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import smtplib
import sys
import threading
import time
import urllib.request
from email.message import EmailMessage
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from aiosmtpd.controller import Controller  # noqa: E402

from bench.common import emit, fan_out, latency_ms  # noqa: E402
from tests.process import SmsdProcess, free_port  # noqa: E402

CONFIG = """
[smsd]
traffic_log = ""
domain = "sms.example.org"
trusted_networks = ["127.0.0.1/32"]
[snpp]
listen = []
[sip]
listen = []
[http]
listen = ["tcp:{port}:interface=127.0.0.1"]
[smtp]
listen = ["tcp:%(smtp)d:interface=127.0.0.1"]
relay = "127.0.0.1:%(relay)d"
anonymous = true
[inbound]
default_mailbox = "sms@example.org"
[[gateway]]
id = "loopback"
type = "loopback"
latency = "1ms"
report_delay = "50ms"
"""


class Relay:
    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += 1
            self.last = time.monotonic()
        return "250 OK"


def send_mails(port: int, start: int, count: int) -> tuple[int, list[float]]:
    """One client: one connection, ``count`` mails; (250s, seconds from DATA to 250 each)."""
    sent = 0
    latencies: list[float] = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("bench.example.org")
        for i in range(start, start + count):
            m = EmailMessage()
            m["From"] = "bench@example.org"
            m["To"] = f"+1555{i:07d}@sms.example.org"
            m["Subject"] = "bench"
            m.set_content(f"message {i}")
            s.mail("bench@example.org")
            s.rcpt(m["To"])
            t0 = time.monotonic()
            code, _ = s.data(m.as_bytes())
            latencies.append(time.monotonic() - t0)
            if code == 250:
                sent += 1
    return sent, latencies


def inject(url: str, i: int) -> None:
    body = json.dumps({"from": f"+1666{i:07d}", "to": "+15550000000", "text": f"in {i}"})
    request = urllib.request.Request(
        url + "/api/v1/inbound", body.encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        r.read()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mails", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--inbound", type=int, default=2000)
    p.add_argument("--record", action="store_true")
    args = p.parse_args()

    relay = Relay()
    relay_port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=relay_port)
    controller.start()
    smtp_port = free_port()
    smsd = SmsdProcess(CONFIG % {"smtp": smtp_port, "relay": relay_port})
    result: dict[str, Any] = {
        "bench": "smtp",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "mails": args.mails,
        "concurrency": args.concurrency,
        "inbound": args.inbound,
    }
    try:
        smsd.start()
        accepted, latencies, seconds = fan_out(send_mails, smtp_port, args.mails, args.concurrency)
        result.update(
            accepted=accepted,
            mails_per_s=round(accepted / seconds),
            **latency_ms(latencies),
        )
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: inject(smsd.url, i), range(args.inbound)))
        deadline = time.monotonic() + 300
        while relay.count < args.inbound and time.monotonic() < deadline:
            time.sleep(0.05)
        result.update(
            inbound_mailed=relay.count,
            inbound_mailed_per_s=round(relay.count / (relay.last - started)),
        )
    finally:
        smsd.cleanup()
        controller.stop()
    emit(result, args.record)


if __name__ == "__main__":
    main()
