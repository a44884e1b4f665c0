"""Kannel under http_bench.py's load: accepted and delivered msg/s, accept latency p50/p99.

The peer for ``bench/http_bench.py``: run the two one after the other, on the
same machine, with the same arguments, and compare the lines they print (this
machine's speed drifts over the day; only side-by-side numbers mean anything).

    .venv/bin/python bench/http_bench.py --requests 20000 --connections 32
    .venv/bin/python bench/kannel_bench.py --requests 20000 --connections 32

What it runs: Kannel 1.4 from Debian (package ``kannel``), bearerbox and
smsbox, with a configuration written into a temporary directory from
``bench/kannel/kannel.conf`` (free loopback ports for the admin page, the
smsbox link and sendsms; ``store-type = file``; log level 2, also on the
console with ``-v 2``, so that neither box logs every message).

What it measures, exactly as http_bench.py does for smsd: h2load in HTTP/1.1
mode (``--h1 -n N -c C -t T -m 1 -i uris.txt --log-file``: keep-alive
connections, one SMS per request; every connection walks uris.txt from its
first line, so 20,000 requests on 32 connections go to 625 numbers) sends
``GET /cgi-bin/sendsms?username=..&password=..&to=%2B1555NNNNNNN&text=Benchmark+message+N``
from 127.0.0.1. ``accepted_per_s``, ``p50_ms``, ``p99_ms`` and ``max_ms`` come
from h2load's per-request log through http_bench's ``summarise()``; smsbox
answers (202 ``0: Accepted for delivery``) once bearerbox has put the message
in its store, as smsd answers once the message is committed. Then the script
polls bearerbox's ``/status.xml`` every 20 ms until every accepted message is
sent, no queue holds anything and the store is empty (every MT and every MO
acknowledged): ``delivered_per_s`` is accepted messages over the time from the
start of h2load to then. ``kannel_cpu_us_per_msg`` is the CPU time (user +
system, from /proc, with http_bench's ``cpu_seconds()``) that bearerbox and
smsbox used together over the same span, per accepted message; the split is
in ``kannel.cpu_us_per_msg``.

The SMSC: ``smsc = loopback``, the closest thing Kannel has to smsd's loopback
gateway without a second program. It reports every MT sent as soon as
bearerbox hands it over (no wire, no latency, no window) and feeds it back to
bearerbox as an MO, which bearerbox stores and passes to smsbox, and smsbox
answers with a catch-all ``sms-service`` that does nothing (``keyword =
default``, ``text = ""``, ``omit-empty``, ``max-messages = 0``: no HTTP request,
no reply SMS) before bearerbox removes it from the store. That MO round trip
stands in for smsd's delivery report, which also comes back from the gateway
and is written to the store. The alternatives were worse: ``smsc = fake`` and
``smsc = http`` need another program (fakesmsc from kannel-extras, or an HTTP
server) whose own cost would be left out or muddled in, and the SMPP and other
drivers need a real SMSC peer; Kannel has no option to drop the loopback MOs
(its black and white lists are core-wide and would stop the MTs too).

Where the comparison is not even:

* Kannel never fsyncs: its file store is a write + fflush per message and per
  acknowledgement; smsd commits each accepted message with fsync (SQLite
  synchronous=FULL) before answering.
* Kannel's answer carries no message id (``0: Accepted for delivery``); smsd's
  carries one per recipient.
* smsd's loopback gateway waits ``latency`` (5 ms) per batch of up to
  ``window`` (100) messages, writes a JSON line per part to its log file and
  sends a delivery report ``report_delay`` (50 ms) later, which it applies to
  the store; Kannel's loopback sends at once and writes nothing, and its MO
  echo costs it a second store entry, a trip through smsbox and an
  acknowledgement instead.
* Kannel is C with a thread per task and uses both cores; smsd is one Python
  process (with a few threads for SQLite).

Prints one JSON line (``"bench": "http-submit-kannel"``, the keys of
http_bench.py's line where they apply) and, with ``--record``, appends it to
``bench/results.jsonl``. Exits 2 if Kannel or h2load is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from types import ModuleType
from typing import IO, Any

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "kannel", "kannel.conf")
BEARERBOX = "/usr/sbin/bearerbox"
SMSBOX = "/usr/sbin/smsbox"
ADMIN_PASSWORD = "bench-admin"
USERNAME = "bench"
PASSWORD = "bench-secret"


def _load_http_bench() -> ModuleType:
    """bench/ is not a package: load http_bench.py by its path, for drive() and
    cpu_seconds() (loading it also puts the checkout on sys.path, for tests.process)."""
    spec = importlib.util.spec_from_file_location("http_bench", os.path.join(HERE, "http_bench.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


http_bench = _load_http_bench()
drive: Callable[..., dict[str, Any]] = http_bench.drive
cpu_seconds: Callable[[int], float] = http_bench.cpu_seconds

from tests.process import free_port  # noqa: E402 - on sys.path once http_bench is loaded


class Box:
    """One Kannel box (bearerbox or smsbox) run from the config file, its console to a file."""

    def __init__(self, program: str, config: str, directory: str) -> None:
        self.name = os.path.basename(program)
        self.console_path = os.path.join(directory, f"{self.name}.console")
        self._console: IO[bytes] = open(self.console_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [program, "-v", "2", config],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            with open(self.console_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"{self.name} ignored SIGTERM for {timeout}s: killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait(10)
        self._console.close()


class Kannel:
    """bearerbox + smsbox from ``bench/kannel/kannel.conf`` in a temporary directory."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        ports: set[int] = set()
        while len(ports) < 3:  # three different ones
            ports.add(free_port())
        self.admin_port, self.smsbox_port, self.sendsms_port = sorted(ports)
        with open(TEMPLATE) as f:
            template = string.Template(f.read())
        self.config_path = os.path.join(directory, "kannel.conf")
        with open(self.config_path, "w") as f:
            f.write(
                template.substitute(
                    dir=directory,
                    admin_port=self.admin_port,
                    smsbox_port=self.smsbox_port,
                    sendsms_port=self.sendsms_port,
                    admin_password=ADMIN_PASSWORD,
                    username=USERNAME,
                    password=PASSWORD,
                )
            )
        self.bearerbox: Box | None = None
        self.smsbox: Box | None = None

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    @property
    def boxes(self) -> list[Box]:
        return [b for b in (self.bearerbox, self.smsbox) if b is not None]

    def start(self, timeout: float = 30.0) -> None:
        self.bearerbox = Box(BEARERBOX, self.config_path, self.dir)
        self._wait(self._bearerbox_ready, timeout, "bearerbox's status page and SMSC")
        self.smsbox = Box(SMSBOX, self.config_path, self.dir)
        self._wait(self._smsbox_ready, timeout, "smsbox's link and sendsms port")

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for box in self.boxes:
                box.check_running()
            try:
                if ready():
                    return
            except (OSError, ET.ParseError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {b.name}:\n{b.tail()}" for b in self.boxes)
                raise SystemExit(f"Kannel: no {what} within {timeout}s\n{logs}")
            time.sleep(0.1)

    def _bearerbox_ready(self) -> bool:
        status = self.status_xml()
        smscs = status.findall("smscs/smsc")
        return bool(smscs) and all((s.findtext("status") or "").startswith("online") for s in smscs)

    def _smsbox_ready(self) -> bool:
        types = [b.findtext("type") for b in self.status_xml().iter("box")]
        if "smsbox" not in types:
            return False
        # No credentials: smsbox answers 403 and sends nothing.
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(self.sendsms_url, timeout=5).close()
        return True

    def status_xml(self) -> ET.Element:
        url = f"http://127.0.0.1:{self.admin_port}/status.xml?password={ADMIN_PASSWORD}"
        with urllib.request.urlopen(url, timeout=30) as r:
            root = ET.fromstring(r.read())
        if root.find("sms") is None:
            raise OSError(f"unexpected status page: {ET.tostring(root)[:200]!r}")
        return root

    def counters(self) -> dict[str, int]:
        """Message counts from bearerbox's status page: MTs sent, MOs received, what waits."""
        root = self.status_xml()

        def number(path: str) -> int:
            return int(root.findtext(path) or 0)

        return {
            "sent": number("sms/sent/total"),
            "received": number("sms/received/total"),
            "sent_queued": number("sms/sent/queued"),
            "received_queued": number("sms/received/queued"),
            "store": number("sms/storesize"),
            "box_queued": sum(int(b.findtext("queue") or 0) for b in root.iter("box")),
            "smsc_queued": sum(int(s.findtext("queued") or 0) for s in root.iter("smsc")),
        }

    def stop(self) -> None:
        """smsbox first (it would otherwise retry its link), then bearerbox."""
        for box in reversed(self.boxes):
            box.stop()


def kannel_version() -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "kannel"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="h2load threads")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for delivery")
    p.add_argument("--record", action="store_true", help="append to bench/results.jsonl")
    p.add_argument("--note", default="")
    args = p.parse_args()
    if not (os.path.exists(BEARERBOX) and os.path.exists(SMSBOX)):
        print("Kannel is not installed (Debian package kannel)", file=sys.stderr)
        return 2
    h2load = shutil.which("h2load")
    if h2load is None:
        print("h2load is not installed (Debian package nghttp2-client)", file=sys.stderr)
        return 2
    directory = tempfile.mkdtemp(prefix="kannel-bench-")
    kannel: Kannel | None = None
    try:
        kannel = Kannel(directory)
        kannel.start()
        uris = os.path.join(kannel.dir, "uris.txt")
        with open(uris, "w") as f:
            for n in range(args.requests):
                f.write(
                    f"{kannel.sendsms_url}?username={USERNAME}&password={PASSWORD}"
                    f"&to=%2B1555{n:07d}&text=Benchmark+message+{n}\n"
                )
        requests_log = os.path.join(kannel.dir, "requests.tsv")
        boxes = kannel.boxes
        before = kannel.counters()
        cpu_before = {b.name: cpu_seconds(b.pid) for b in boxes}
        started = time.monotonic()
        load = drive(h2load, uris, requests_log, args.requests, args.connections, args.threads)
        accept_seconds = time.monotonic() - started
        answered = load["requests"] - load["errors"]  # 2xx: in bearerbox's store
        deadline = time.monotonic() + args.timeout
        while True:
            c = kannel.counters()
            waiting = (
                c["sent_queued"]
                + c["received_queued"]
                + c["store"]
                + c["box_queued"]
                + c["smsc_queued"]
            )
            if c["sent"] - before["sent"] >= answered and not waiting:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"not delivered within {args.timeout}s: {c}")
            for box in boxes:
                box.check_running()
            time.sleep(0.02)
        delivered_seconds = time.monotonic() - started
        cpu = {b.name: cpu_seconds(b.pid) - cpu_before[b.name] for b in boxes}
        accepted = c["sent"] - before["sent"]
        if not accepted:
            raise SystemExit(f"Kannel accepted nothing: {load}")
        result = {
            **http_bench.common_result(
                "http-submit-kannel", args, load, accepted, accept_seconds, delivered_seconds
            ),
            "kannel_cpu_us_per_msg": round(sum(cpu.values()) / accepted * 1e6),
            "kannel": {
                "version": kannel_version(),
                "smsc": "loopback",
                "store": "file",
                "mo_echoed": c["received"] - before["received"],
                "cpu_us_per_msg": {k: round(v / accepted * 1e6) for k, v in cpu.items()},
            },
            "cpus": os.cpu_count(),
            "note": args.note,
        }
        http_bench.report(result, args.record)
        return 0
    finally:
        if kannel is not None:
            kannel.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
