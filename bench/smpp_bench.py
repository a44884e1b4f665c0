"""HTTP -> store -> SMPP, smsd against Kannel, in one run, on the same SMSC sink.

    .venv/bin/python bench/smpp_bench.py --requests 20000 --connections 32 [--record]
    .venv/bin/python bench/smpp_bench.py --only smsd        # or --only kannel

The SMSC is ``bench/smpp_sink.c`` (compiled here with ``gcc -O2`` into a
cache directory under the system's temporary directory, once per version of
the source): one epoll thread in C that answers every submit_sm at once with
a new message id and, 50 ms later, sends a delivery receipt (deliver_sm,
esm_class 4, Appendix B text and the receipted_message_id and message_state
TLVs) for every message that asks for one. It acknowledges every TCP
segment at once (TCP_QUICKACK; ``--sink-delayed-ack`` turns that off, and
Kannel, which does not set TCP_NODELAY, then stalls on Nagle + delayed ACK
at about 400 msg/s). Its CPU per message and receipt goes from about 1 µs
(PDUs batched in segments) to 30-45 µs (one PDU per segment: mostly the
kernel's loopback TCP); in these runs about 15 µs with smsd and 28 with
Kannel, i.e. 3-15 % of one of the two cores (``sink_cpu_us_per_msg``). Each
gateway gets a fresh sink, started the same way.

For each gateway, in turn (smsd first, then Kannel):

* smsd: ``twistd -n smsd`` (tests/process.py's SmsdProcess) with one
  ``type = "smpp"`` gateway to the sink, one transceiver bind, a window of
  10 unacknowledged submit_sm; Kannel: bearerbox + smsbox from
  ``bench/kannel/kannel-smpp.conf`` (store-type = file, smpp transceiver,
  max-pending-submits = 10), each message asking for a receipt with
  ``dlr-mask=3`` (delivered or not: SMPP registered_delivery = 1) and no
  ``dlr-url``: bearerbox matches each receipt to its message and passes it
  through its store to smsbox, which has no URL to call and acknowledges it.
  smsd matches each receipt to its message and writes it to the store; the
  benchmark asks neither for a status callback.
* h2load in HTTP/1.1 mode, exactly as bench/http_bench.py (its ``drive()``):
  N requests over C keep-alive connections (opened eight at a time, 10 ms
  apart: Kannel's listen backlog is 10), one SMS per request, every
  connection walking the same list of numbers from its start; p50/p99 of the
  HTTP answer time from its per-request log, and ``in_flight``, the requests
  waiting for an answer on average (about C when every connection is busy).
* then waits (every wait bounded by --timeout) until the sink has answered a
  submit_sm for every accepted message and has every receipt acknowledged,
  and the gateway has nothing left (smsd: no message queued or sending, as
  many reports received as parts sent; Kannel: no queue and an empty store).

What the JSON line says (``"bench": "smpp-smsd"`` / ``"smpp-kannel"``, the
keys of http_bench's lines where they apply):

* ``delivered_per_s``: messages the SMSC acknowledged per second, from the
  start of h2load to the sink's last submit_sm_resp (the sink's clock);
  ``settled_per_s``: the same up to the moment every receipt was acknowledged
  and the gateway had drained (20 ms polling);
* ``accepted_per_s``, ``p50_ms``, ``p99_ms``, ``max_ms``, ``in_flight``: h2load's;
* ``cpu_us_per_msg``: user + system CPU of the gateway's processes (smsd's
  one process; bearerbox + smsbox) from the start of h2load to settling, per
  message; ``h2load_cpu_us_per_msg`` and ``sink_cpu_us_per_msg`` for the rest
  of the machine;
* ``peak_rss_mb``: VmHWM of each gateway process (summed for Kannel).

``busy_before`` is the share of the machine busy just before the run (a
warning goes to stderr above 10 %: other work skews everything).

The last line (``"bench": "smpp-ratio"``) divides smsd's numbers by Kannel's.
With ``--split`` the sink is stopped (SIGSTOP) while h2load runs and let go
afterwards: ``split`` in the JSON line then gives each side's speed and CPU
per message alone (``http_alone_*``: accepting with nothing sent;
``smpp_alone_*``: sending the queue and matching its receipts with no HTTP
load), for seeing where a gateway's time goes. Not for ``--record``.

With ``--record`` the lines go to bench/results.jsonl and a table row to
bench/RESULTS.md. Exits 2 if gcc, h2load, Kannel or smsd's SMPP gateway is
missing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import resource
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from types import ModuleType
from typing import IO, Any

HERE = os.path.dirname(os.path.abspath(__file__))
SINK_SOURCE = os.path.join(HERE, "smpp_sink.c")
TEMPLATE = os.path.join(HERE, "kannel", "kannel-smpp.conf")
RESULTS_MD = os.path.join(HERE, "RESULTS.md")
SYSTEM_ID = "bench"
SMSC_PASSWORD = "bench"
DLR_MASK = 3  # delivered (1) + not delivered (2): SMPP registered_delivery = 1


def _load(name: str) -> ModuleType:
    """bench/ is not a package: load a sibling script by its path."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


http_bench = _load("http_bench")  # also puts the checkout on sys.path
kannel_bench = _load("kannel_bench")
drive: Callable[..., dict[str, Any]] = http_bench.drive
cpu_seconds: Callable[[int], float] = http_bench.cpu_seconds

from tests.process import SmsdProcess, free_port, processes  # noqa: E402

SMSD_CONFIG = """
[store]
writer = "%(store_writer)s"
[snpp]
listen = []
[sip]
listen = []
[http]
listen = ["tcp:{port}:interface=127.0.0.1"]
max_recipients = 10
workers = %(http_workers)d
[[gateway]]
id = "sink"
type = "smpp"
host = "127.0.0.1"
port = %(sink_port)d
system_id = "%(system_id)s"
password = "%(password)s"
window = %(window)d
binds = %(binds)d
"""


class Missing(Exception):
    """A tool the benchmark needs is not installed: one line, exit 2."""


def peak_rss_mb(pid: int) -> float:
    """VmHWM (the peak resident set) of a running process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def machine_busy(seconds: float = 0.5) -> float:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat), before a run:
    anything else running on the machine skews the numbers."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return round(1 - (idle1 - idle0) / max(1, total1 - total0), 2)


def children_cpu() -> float:
    """CPU of the children this script has waited for (h2load)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# --- the sink -------------------------------------------------------------------


def sink_binary() -> str:
    """bench/smpp_sink.c compiled with gcc -O2, cached by the hash of its source."""
    with open(SINK_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"smsd-bench-{os.getuid()}")
    binary = os.path.join(cache, f"smpp_sink-{digest}")
    if os.access(binary, os.X_OK):
        return binary
    gcc = shutil.which("gcc")
    if gcc is None:
        raise Missing("gcc is not installed (Debian package gcc): needed for bench/smpp_sink.c")
    os.makedirs(cache, exist_ok=True)
    partial = f"{binary}.{os.getpid()}"
    out = subprocess.run(
        [gcc, "-O2", "-o", partial, SINK_SOURCE], capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise SystemExit(f"gcc failed on {SINK_SOURCE}:\n{out.stderr}")
    os.replace(partial, binary)
    return binary


class Sink:
    """One smpp_sink with --receipts on a free port; its stats file on demand."""

    def __init__(self, binary: str, directory: str, args: argparse.Namespace) -> None:
        self.port = free_port()
        self.stats_path = os.path.join(directory, "sink-stats.json")
        self.console_path = os.path.join(directory, "sink.console")
        self._console: IO[bytes] = open(self.console_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--receipts",
                "--report-delay-ms",
                str(args.report_delay_ms),
                "--stats-file",
                self.stats_path,
                *(["--delayed-ack"] if args.sink_delayed_ack else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while "listening" not in self.console():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"smpp_sink did not start:\n{self.console()}")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def console(self) -> str:
        with open(self.console_path, errors="replace") as f:
            return f.read()

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        """Ask for a fresh stats file (SIGUSR1) and read it."""
        if self.proc.poll() is not None:
            raise SystemExit(f"smpp_sink exited ({self.proc.returncode}):\n{self.console()}")
        asked = time.time()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.stats_path) as f:
                    stats: dict[str, Any] = json.load(f)
                if stats["written"] >= asked:
                    return stats
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"smpp_sink wrote no stats within {timeout}s")
            time.sleep(0.002)

    def stop(self) -> str:
        """SIGTERM (it writes its stats and a summary line); its last console line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._console.close()
        lines = self.console().strip().splitlines()
        return lines[-1] if lines else ""


# --- the gateways -------------------------------------------------------------------


class SmsdUnderTest:
    name = "smsd"

    def __init__(self, args: argparse.Namespace, directory: str, sink: Sink) -> None:
        config = SMSD_CONFIG % {
            "sink_port": sink.port,
            "system_id": SYSTEM_ID,
            "password": SMSC_PASSWORD,
            "window": args.window,
            "binds": args.binds,
            "http_workers": args.http_workers,
            "store_writer": args.store_writer,
        }
        self.smsd = SmsdProcess(config, directory)
        self.timeout = args.timeout
        self.store_writer = args.store_writer

    def start(self) -> None:
        try:
            self.smsd.start()
        except AssertionError as e:  # it exited or never answered: its log says why
            raise SystemExit(f"smsd did not start: {e}") from None
        deadline = time.monotonic() + 30
        while not self.health().get("ok"):  # bound to the sink
            if time.monotonic() > deadline:
                raise SystemExit(f"smsd's SMPP gateway did not come up:\n{self.smsd.log()}")
            time.sleep(0.05)

    def health(self) -> dict[str, Any]:
        try:
            return http_bench.health(self.smsd.url)
        except urllib.error.HTTPError as e:  # 503 while no gateway is up
            return json.loads(e.read() or b"{}")

    @property
    def pids(self) -> dict[str, int]:
        """The main process and its children: the store writer, HTTP workers ([http] workers)."""
        assert self.smsd.proc is not None
        return processes(self.smsd.proc.pid)

    def uri(self, n: int) -> str:
        return f"{self.smsd.url}/sms/?number=%2B1555{n:07d}&data=Benchmark+message+{n}"

    def drained(self) -> bool:
        if self.smsd.proc is None or self.smsd.proc.poll() is not None:
            raise SystemExit(f"smsd exited:\n{self.smsd.log()}")
        h = self.health()
        states = h["queue"]["states"]
        return (
            not states.get("queued")
            and not states.get("sending")
            and h["reports_received"] >= h["dispatcher"]["sent"]
        )

    def details(self) -> dict[str, Any]:
        h = self.health()
        return {
            "store_writer": self.store_writer,
            "dispatcher": h["dispatcher"],
            "reports_received": h["reports_received"],
            "gateway": next((g for g in h["gateways"] if g.get("id") == "sink"), None),
        }

    def stop(self) -> None:
        try:
            self.smsd.stop()
        except subprocess.TimeoutExpired:
            self.smsd.kill()


class KannelSmpp(kannel_bench.Kannel):  # type: ignore[name-defined,misc]
    """kannel_bench's bearerbox + smsbox, from kannel-smpp.conf, bound to the sink."""

    def __init__(self, directory: str, sink_port: int) -> None:
        self.dir = directory
        ports: set[int] = {sink_port}
        while len(ports) < 4:
            ports.add(free_port())
        ports.discard(sink_port)
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
                    admin_password=kannel_bench.ADMIN_PASSWORD,
                    username=kannel_bench.USERNAME,
                    password=kannel_bench.PASSWORD,
                    sink_port=sink_port,
                    system_id=SYSTEM_ID,
                    smsc_password=SMSC_PASSWORD,
                )
            )
        self.bearerbox = None
        self.smsbox = None


class KannelUnderTest:
    name = "kannel"

    def __init__(self, args: argparse.Namespace, directory: str, sink: Sink) -> None:
        self.kannel = KannelSmpp(directory, sink.port)
        self.before: dict[str, int] = {}

    def start(self) -> None:
        self.kannel.start()
        self.before = self.kannel.counters()

    @property
    def pids(self) -> dict[str, int]:
        return {b.name: b.pid for b in self.kannel.boxes}

    def uri(self, n: int) -> str:
        k = kannel_bench
        return (
            f"{self.kannel.sendsms_url}?username={k.USERNAME}&password={k.PASSWORD}"
            f"&to=%2B1555{n:07d}&text=Benchmark+message+{n}&dlr-mask={DLR_MASK}"
        )

    def drained(self) -> bool:
        for box in self.kannel.boxes:
            box.check_running()
        c = self.kannel.counters()
        return not (
            c["sent_queued"]
            + c["received_queued"]
            + c["store"]
            + c["box_queued"]
            + c["smsc_queued"]
        )

    def details(self) -> dict[str, Any]:
        c = self.kannel.counters()
        root = self.kannel.status_xml()
        return {
            "version": kannel_bench.kannel_version(),
            "sent": c["sent"] - self.before["sent"],
            "dlr_received": int(root.findtext("dlr/received/total") or 0),
            "dlr_queued": int(root.findtext("dlr/queued") or 0),
            "store": "file",
            "dlr_storage": "internal",
            "dlr_mask": DLR_MASK,
        }

    def stop(self) -> None:
        self.kannel.stop()


# --- one run -------------------------------------------------------------------


def run_one(
    gateway_class: type[SmsdUnderTest] | type[KannelUnderTest],
    args: argparse.Namespace,
    h2load: str,
    binary: str,
) -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix=f"smpp-bench-{gateway_class.name}-")
    sink: Sink | None = None
    gateway: SmsdUnderTest | KannelUnderTest | None = None
    try:
        sink = Sink(binary, directory, args)
        gateway = gateway_class(args, directory, sink)
        gateway.start()
        uris = os.path.join(directory, "uris.txt")
        with open(uris, "w") as f:
            f.writelines(gateway.uri(n) + "\n" for n in range(args.requests))
        busy = machine_busy()
        if busy > 0.1:
            print(
                f"smpp_bench: warning: the machine is {busy:.0%} busy before the"
                f" {gateway.name} run: its numbers will be low",
                file=sys.stderr,
            )
        pids = gateway.pids
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        sink_cpu_before = cpu_seconds(sink.pid)
        h2load_cpu_before = children_cpu()
        if args.split:  # the SMSC stands still: HTTP alone, then SMPP alone
            sink.proc.send_signal(signal.SIGSTOP)
        started_wall = time.time()
        started = time.monotonic()
        load = drive(
            h2load,
            uris,
            os.path.join(directory, "requests.tsv"),
            args.requests,
            args.connections,
            args.threads,
        )
        accept_seconds = time.monotonic() - started
        h2load_cpu = children_cpu() - h2load_cpu_before
        split: dict[str, Any] = {}
        if args.split:
            accept_cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
            split_cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
            resumed_wall = time.time()
            sink.proc.send_signal(signal.SIGCONT)
        answered = load["requests"] - load["errors"]
        deadline = time.monotonic() + args.timeout
        while True:
            s = sink.stats()
            if (
                s["answered"] >= answered
                and not s["receipts_waiting"]
                and s["receipts_acked"] + s["receipts_nacked"] >= s["receipts_sent"]
                and gateway.drained()
            ):
                break
            if time.monotonic() > deadline:
                counts = {k: v for k, v in s.items() if k != "per_second"}
                raise SystemExit(
                    f"{gateway.name}: not settled within {args.timeout}s:"
                    f" {answered} answered by HTTP; sink {counts}"
                )
            time.sleep(0.02)
        settled_seconds = time.monotonic() - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        sink_cpu = cpu_seconds(sink.pid) - sink_cpu_before
        rss = {name: peak_rss_mb(pid) for name, pid in pids.items()}
        delivered = s["answered"]
        if not delivered:
            raise SystemExit(f"{gateway.name}: the SMSC got nothing: {load}")
        delivered_seconds = s["last_submit"] - started_wall
        if args.split:
            drain_seconds = max(s["last_submit"] - resumed_wall, 1e-3)
            drain_cpu = sum(cpu_seconds(pid) - split_cpu[name] for name, pid in pids.items())
            split = {
                "http_alone_per_s": round(answered / accept_seconds),
                "http_alone_cpu_us_per_msg": round(sum(accept_cpu.values()) / answered * 1e6),
                "smpp_alone_per_s": round(delivered / drain_seconds),
                "smpp_alone_cpu_us_per_msg": round(drain_cpu / delivered * 1e6),
            }
        result = {
            **http_bench.common_result(
                f"smpp-{gateway.name}", args, load, delivered, accept_seconds, delivered_seconds
            ),
            "settled_per_s": round(delivered / settled_seconds),
            "settled_seconds": round(settled_seconds, 2),
            "cpu_us_per_msg": round(sum(cpu.values()) / delivered * 1e6),
            "peak_rss_mb": round(sum(rss.values()), 1),
            "h2load_cpu_us_per_msg": round(h2load_cpu / delivered * 1e6),
            "sink_cpu_us_per_msg": round(sink_cpu / delivered * 1e6, 1),
            "sink": {
                "answered": s["answered"],
                "refused": s["refused"],
                "receipts_sent": s["receipts_sent"],
                "receipts_acked": s["receipts_acked"],
                "receipts_nacked": s["receipts_nacked"],
                "binds": s["binds"],
                "report_delay_ms": args.report_delay_ms,
                "quick_ack": not args.sink_delayed_ack,
                "peak_per_s": max((row[1] for row in s["per_second"]), default=0),
            },
            gateway.name: {
                "window": args.window,
                "cpu_us_per_msg": {k: round(v / delivered * 1e6) for k, v in cpu.items()},
                "peak_rss_mb": rss,
                **gateway.details(),
            },
            **({"split": split} if split else {}),
            "cpus": os.cpu_count(),
            "busy_before": busy,
            "note": args.note,
        }
        return result
    finally:
        if gateway is not None:
            gateway.stop()
        if sink is not None:
            sink.stop()
        if args.keep:
            print(f"kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


# --- RESULTS.md -------------------------------------------------------------------

RESULTS_HEADER = """\
# SMPP benchmark: smsd against Kannel

Written by `bench/smpp_bench.py --record` (one row per run; the full JSON
lines are in `bench/results.jsonl`, `"bench": "smpp-smsd"`, `"smpp-kannel"`
and `"smpp-ratio"`). Run it with

    .venv/bin/python bench/smpp_bench.py --requests 20000 --connections 32 --record

What it measures: HTTP -> store -> SMPP. h2load (HTTP/1.1, 32 keep-alive
connections opened eight at a time, one SMS per request) submits 20,000
messages to smsd (`/sms/`), then the same to Kannel 1.4 from Debian
(bearerbox + smsbox, `store-type = file`, `/cgi-bin/sendsms` with
`dlr-mask=3`, no `dlr-url`). Both send to the same SMSC,
`bench/smpp_sink.c` (one epoll thread in C; a fresh one for each gateway),
over one transceiver bind with a window of 10 unacknowledged submit_sm; the
sink answers each at once and sends a delivery receipt 50 ms later, which
each gateway matches to its message and records (smsd in its SQLite store;
Kannel in bearerbox's memory, then through its file store to smsbox, which
has no URL to call). Everything runs on one 2-core machine's loopback; the
sink's CPU is about 15 µs per message and receipt with smsd and 28 with
Kannel (one PDU per TCP segment), h2load's about 20 (both in the JSON lines).

* msg/s: messages the SMSC acknowledged per second, from the first HTTP
  request to the last submit_sm_resp;
* p50/p99: HTTP answer time (smsd answers once the message is committed with
  fsync; Kannel once bearerbox has written it to its store, without fsync);
* CPU: user + system CPU of the gateway's processes (smsd: one; Kannel:
  bearerbox + smsbox) per message, receipts included;
* RSS: peak resident memory (VmHWM) of those processes;
* ratio: smsd / Kannel (msg/s: above 1 is smsd faster; p99: below 1 is smsd
  quicker to answer).

Not even, in Kannel's favour: it never fsyncs (smsd commits every message
before answering), keeps its message id -> message map in memory only
(`dlr-storage = internal`; smsd's is in its store), and runs two
multi-threaded processes on both cores (smsd is one Python process). The
sink acknowledges TCP segments at once: with the kernel's delayed ACKs,
Kannel (no TCP_NODELAY) falls to about 400 msg/s (`--sink-delayed-ack`).

"""
COLUMNS = [
    "date (UTC)",
    "smsd msg/s",
    "smsd p50 / p99 ms",
    "smsd CPU µs/msg",
    "smsd RSS MB",
    "Kannel msg/s",
    "Kannel p50 / p99 ms",
    "Kannel CPU µs/msg",
    "Kannel RSS MB",
    "msg/s ratio",
    "p99 ratio",
    "note",
]
TABLE_HEADER = "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|\n"


def results_row(smsd: dict[str, Any] | None, kannel: dict[str, Any] | None, note: str) -> str:
    def side(r: dict[str, Any] | None) -> list[str]:
        if r is None:
            return ["-"] * 4
        return [
            str(r["delivered_per_s"]),
            f"{r['p50_ms']} / {r['p99_ms']}",
            str(r["cpu_us_per_msg"]),
            str(r["peak_rss_mb"]),
        ]

    date = (smsd or kannel or {}).get("date", time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    ratio = ratios(smsd, kannel)
    cells = [
        date,
        *side(smsd),
        *side(kannel),
        f"{ratio['delivered_per_s']:.2f}" if ratio else "-",
        f"{ratio['p99_ms']:.2f}" if ratio else "-",
        note.replace("|", "/"),
    ]
    return "| " + " | ".join(cells) + " |\n"


def ratios(smsd: dict[str, Any] | None, kannel: dict[str, Any] | None) -> dict[str, Any] | None:
    if smsd is None or kannel is None:
        return None
    return {
        "bench": "smpp-ratio",
        "date": smsd["date"],
        "delivered_per_s": round(smsd["delivered_per_s"] / kannel["delivered_per_s"], 3),
        "p99_ms": round(smsd["p99_ms"] / kannel["p99_ms"], 3),
        "cpu_us_per_msg": round(smsd["cpu_us_per_msg"] / kannel["cpu_us_per_msg"], 3),
        "peak_rss_mb": round(smsd["peak_rss_mb"] / kannel["peak_rss_mb"], 3),
    }


def record_markdown(row: str) -> None:
    """Add ``row`` at the end of the SMPP table (RESULTS.md holds other benchmarks' tables
    after it), or start the file."""
    if not os.path.exists(RESULTS_MD):
        with open(RESULTS_MD, "w") as f:
            f.write(RESULTS_HEADER + TABLE_HEADER + row)
        return
    with open(RESULTS_MD) as f:
        lines = f.readlines()
    header = TABLE_HEADER.splitlines(keepends=True)[0]
    if header not in lines:
        lines += ["\n", TABLE_HEADER, row]
    else:
        end = lines.index(header) + 2
        while end < len(lines) and lines[end].startswith("| "):
            end += 1
        lines.insert(end, row)
    with open(RESULTS_MD, "w") as f:
        f.writelines(lines)


# --- main -------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="h2load threads")
    p.add_argument("--only", choices=["smsd", "kannel"], help="run one gateway only")
    p.add_argument("--window", type=int, default=10, help="smsd's window (Kannel's is in its conf)")
    p.add_argument("--binds", type=int, default=1, help="smsd's binds")
    p.add_argument(
        "--http-workers", type=int, default=0, help="smsd's [http] workers (0: in-process)"
    )
    p.add_argument(
        "--store-writer",
        choices=("process", "thread"),
        default="process",
        help="smsd: [store] writer (where its commits run)",
    )
    p.add_argument("--report-delay-ms", type=int, default=50, help="sink: receipt delay")
    p.add_argument(
        "--sink-delayed-ack",
        action="store_true",
        help="sink: the kernel's delayed ACKs (Kannel then crawls; see smpp_sink.c)",
    )
    p.add_argument(
        "--split",
        action="store_true",
        help="stop the SMSC while h2load runs, then let it go: each side's speed and CPU"
        " alone (the combined msg/s and latencies are then not comparable)",
    )
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for settling")
    p.add_argument("--record", action="store_true", help="append to results.jsonl, RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the run directories (logs)")
    p.add_argument("--note", default="")
    args = p.parse_args()
    # SIGTERM too goes through the finally blocks that stop what this started.
    signal.signal(signal.SIGTERM, lambda signo, frame: sys.exit(128 + signo))
    if args.split and args.record:
        p.error("--split measures each side alone: its numbers are not for RESULTS.md")
    try:
        h2load = shutil.which("h2load")
        if h2load is None:
            raise Missing("h2load is not installed (Debian package nghttp2-client)")
        if args.only != "smsd" and not (
            os.path.exists(kannel_bench.BEARERBOX) and os.path.exists(kannel_bench.SMSBOX)
        ):
            raise Missing("Kannel is not installed (Debian package kannel)")
        if args.only != "kannel":
            from smsd.config import GATEWAY_TYPES, gateway_module

            if "smpp" not in GATEWAY_TYPES:
                raise Missing("this smsd has no SMPP gateway (smsd.config.GATEWAY_TYPES)")
            try:
                gateway_module("smpp")
            except ImportError as e:
                raise Missing(f"smsd's SMPP gateway does not import: {e}") from None
        binary = sink_binary()
    except Missing as e:
        print(f"smpp_bench: {e}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {}
    for gateway_class in (SmsdUnderTest, KannelUnderTest):
        if args.only in (None, gateway_class.name):
            results[gateway_class.name] = run_one(gateway_class, args, h2load, binary)
            http_bench.report(results[gateway_class.name], args.record)
    ratio = ratios(results.get("smsd"), results.get("kannel"))
    if ratio is not None:
        http_bench.report(ratio, args.record)
    if args.record:
        record_markdown(results_row(results.get("smsd"), results.get("kannel"), args.note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
