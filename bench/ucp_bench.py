"""Messages per second over one UCP/EMI link, smsd to the UCP SMSC simulator.

    .venv/bin/python bench/ucp_bench.py --messages 5000 --window 10 --clients 8 [--record]

Starts ``twistd -n smsd`` (tests/process.py's SmsdProcess) with one ``type = "ucp"``
gateway (OT 60 login, ``--window`` OT 51 unacknowledged, notifications requested) and
the UCP SMSC simulator of tests/peers/ucpsmsc.py in a process of its own (this script
with ``--simulator``), which ACKs every OT 51 at once with ``AdC:SCTS`` and sends an
OT 53 "delivered" for it, which smsd commits and ACKs. Two phases:

* **link**: ``--messages`` SMS are queued over HTTP (``/sms/?number=..&data=..``,
  ``--clients`` keep-alive connections in processes of their own) while the simulator
  is not yet listening, then it starts: ``link_per_s`` is OT 51 ACKed per second from
  the simulator's first ACK to its last, i.e. store -> UCP -> ACK -> store alone;
* **end to end**: as many again over HTTP with the link up: ``e2e_per_s`` is OT 51 ACKed
  per second from the first HTTP request to the last ACK (HTTP -> store -> UCP -> ACK),
  ``accepted_per_s`` the HTTP answers (each after an fsync'd commit) per second, and
  ``smsd_cpu_us_per_msg`` / ``smsc_cpu_us_per_msg`` the CPU of smsd's process and of the
  simulator's per message of this phase (notifications included).

``delivered`` counts the messages smsd had as delivered (OT 53 matched) at the end.
One JSON line on stdout (and in bench/results.jsonl with ``--record``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import emit  # noqa: E402
from tests.process import SmsdProcess, free_port  # noqa: E402

LOGIN, PASSWORD = "12345", "secret"

CONFIG = """
[smsd]
traffic_log = ""
trusted_networks = ["127.0.0.1/32"]
[http]
listen = ["tcp:{port}:interface=127.0.0.1"]
[snpp]
listen = []
[sip]
listen = []
[[gateway]]
id = "ucp"
type = "ucp"
host = "127.0.0.1"
port = %(ucp)d
login = "%(login)s"
password = "%(password)s"
window = %(window)d
reconnect_min = "50ms"
reconnect_max = "100ms"
"""


def simulator(port: int, stats: str) -> None:
    """The SMSC, in this process: every 50 ms its counts go to ``stats`` (JSON)."""
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall

    from tests.peers.ucpsmsc import UcpSmscFactory

    smsc = UcpSmscFactory(accounts={LOGIN: PASSWORD}, notifications=True)
    smsc.listen(port)

    def write() -> None:
        accepted = smsc.accepted
        answered = [r for r in smsc.results_received if r.ot == 53 and r.ack]
        out = {
            "accepted": len(accepted),
            "submits": len(smsc.submits),
            "first": accepted[0].received_at if accepted else None,
            "last": accepted[-1].received_at if accepted else None,
            "notifications_acked": len(answered),
            "logins": len(smsc.logins),
        }
        with open(stats + ".new", "w") as f:
            json.dump(out, f)
        os.replace(stats + ".new", stats)

    LoopingCall(write).start(0.05)
    reactor.run()  # type: ignore[attr-defined]


def post(port: int, start: int, count: int) -> tuple[int, float, float]:
    """One HTTP client, one keep-alive connection: (accepted, first send, last answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    accepted, first = 0, time.time()
    for i in range(start, start + count):
        query = urllib.parse.urlencode({"number": f"+1555{i:07d}", "data": f"bench message {i}"})
        conn.request("GET", f"/sms/?{query}")
        r = conn.getresponse()
        body = r.read()
        accepted += r.status == 200 and body.startswith(b"OK")
    conn.close()
    return accepted, first, time.time()


def submit_all(port: int, start: int, count: int, clients: int) -> tuple[int, float, float]:
    per = count // clients
    with concurrent.futures.ProcessPoolExecutor(clients) as pool:
        done = list(
            pool.map(
                post,
                [port] * clients,
                [start + n * per for n in range(clients)],
                [per] * clients,
            )
        )
    return sum(d[0] for d in done), min(d[1] for d in done), max(d[2] for d in done)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_stats(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"ucp_bench: timed out after {timeout:g}s waiting for {what}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=5000, help="per phase")
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--record", action="store_true")
    p.add_argument("--simulator", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--stats", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.simulator is not None:
        simulator(args.simulator, args.stats)
        return

    n = args.messages - args.messages % args.clients
    ucp_port = free_port()
    work = tempfile.mkdtemp(prefix="smsd-ucp-bench-")
    stats = os.path.join(work, "smsc.json")
    smsd = SmsdProcess(
        CONFIG % {"ucp": ucp_port, "login": LOGIN, "password": PASSWORD, "window": args.window}
    )
    result: dict[str, Any] = {
        "bench": "ucp",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "messages": n,
        "window": args.window,
        "clients": args.clients,
    }
    sim: subprocess.Popen[bytes] | None = None
    try:
        smsd.start()
        # Phase 1: the queue fills while the SMSC is away, then drains over the link.
        queued, _, _ = submit_all(smsd.port, 0, n, args.clients)
        sim = subprocess.Popen(
            [sys.executable, __file__, "--simulator", str(ucp_port), "--stats", stats],
            stdout=subprocess.DEVNULL,
        )
        s = wait(
            lambda: (st := read_stats(stats)).get("accepted", 0) >= queued and st,
            args.timeout,
            "the queue to drain over UCP",
        )
        link_seconds = s["last"] - s["first"]
        assert smsd.proc is not None
        smsd_cpu, smsc_cpu = cpu_seconds(smsd.proc.pid), cpu_seconds(sim.pid)
        # Phase 2: HTTP and UCP at once.
        accepted, started, answered = submit_all(smsd.port, n, n, args.clients)
        s = wait(
            lambda: (st := read_stats(stats)).get("accepted", 0) >= queued + accepted and st,
            args.timeout,
            "the second batch over UCP",
        )
        e2e_seconds = s["last"] - started
        wait(
            lambda: read_stats(stats).get("notifications_acked", 0) >= queued + accepted,
            args.timeout,
            "every notification acknowledged",
        )
        smsd_cpu = cpu_seconds(smsd.proc.pid) - smsd_cpu
        smsc_cpu = cpu_seconds(sim.pid) - smsc_cpu
        _, health = smsd.get("/api/v1/health")
        [gw] = [g for g in health.get("gateways", []) if g.get("id") == "ucp"]
        result.update(
            link_per_s=round((queued - 1) / link_seconds) if link_seconds > 0 else None,
            e2e_per_s=round(accepted / e2e_seconds),
            accepted_per_s=round(accepted / (answered - started)),
            smsd_cpu_us_per_msg=round(smsd_cpu / accepted * 1e6),
            smsc_cpu_us_per_msg=round(smsc_cpu / accepted * 1e6),
            submits_seen=s["submits"],
            logins=s["logins"],
            notifications=gw.get("notifications"),
            unanswered=gw.get("unanswered"),
            throttled=gw.get("throttled"),
        )
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(10)
        smsd.cleanup()
    emit(result, args.record)


if __name__ == "__main__":
    main()
