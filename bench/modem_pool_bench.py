"""A pool of fake modems: SMS a minute through it, and how long a stalled modem is out.

    .venv/bin/python bench/modem_pool_bench.py --modems 4 --per-minute 10 --messages 48 [--record]

Runs smsd in this process (``make_service``) with ``--modems`` gateways of
``type = "modem"``, each on a fake modem (``tests/peers/fakemodem.py``, on a
pty, answering AT+CMGS after ``--send-delay`` seconds as a real network does)
and paced at ``--per-minute`` parts a minute, queues ``--messages`` one-part
SMS at once and measures, from the modems' own clocks of each accepted
AT+CMGS:

* ``per_minute``: the pool's steady rate, (messages - modems) over the time
  from the first send of the last modem to start to the last send (the first
  send of each modem is not paced, so counting it would flatter the rate);
* ``per_minute_overall``: messages over the time from queueing to the last send.

With ``--stall`` the first modem stops answering after a third of the
messages were sent and answers again once the rest are out; the JSON line
then gives ``stall_to_out_s`` (until smsd took it out of the pool),
``answering_to_up_s`` (from answering again until it was up) and
``resent``, messages that the stalled modem had but never confirmed, sent
again by the others. The timings are smsd's defaults unless given
(``--check-interval``, ``--command-timeout``, ``--cmgs-timeout``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from twisted.internet import defer, task  # noqa: E402

from bench.common import emit  # noqa: E402
from smsd.config import load  # noqa: E402
from smsd.gateways.base import Health  # noqa: E402
from smsd.model import Submission  # noqa: E402
from smsd.service import make_service  # noqa: E402
from tests.peers.fakemodem import FakeModem  # noqa: E402

CONFIG = """
[smsd]
traffic_log = ""
[snpp]
listen = []
[sip]
listen = []
[http]
listen = []
[dispatch]
retry_min = "1s"
retry_max = "5s"
{gateways}
"""

GATEWAY = """
[[gateway]]
id = "modem{n}"
type = "modem"
device = "{device}"
per_minute = {per_minute}
max_failures = 1000
check_interval = "{check_interval}"
command_timeout = "{command_timeout}"
cmgs_timeout = "{cmgs_timeout}"
"""


async def wait(reactor: Any, predicate: Any, timeout: float, what: str) -> None:
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise SystemExit(f"modem_pool_bench: timed out waiting for {what}")
        await task.deferLater(reactor, 0.05, lambda: None)


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix="modem-pool-bench-")
    modems = [
        FakeModem(
            reactor, os.path.join(directory, "dev"), name=f"ttyFAKE{i}", send_delay=args.send_delay
        )
        for i in range(args.modems)
    ]
    tables = "".join(
        GATEWAY.format(
            n=i + 1,
            device=m.path,
            per_minute=float(args.per_minute),
            check_interval=args.check_interval,
            command_timeout=args.command_timeout,
            cmgs_timeout=args.cmgs_timeout,
        )
        for i, m in enumerate(modems)
    )
    path = os.path.join(directory, "smsd.toml")
    with open(path, "w") as f:
        f.write(CONFIG.format(gateways=tables))
    root = make_service(load(path, os.path.join(directory, "data")), reactor)
    root.startService()
    result: dict[str, Any] = {
        "bench": "modem-pool",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "modems": args.modems,
        "per_minute_each": args.per_minute,
        "messages": args.messages,
        "send_delay_s": args.send_delay,
    }
    try:
        await wait(reactor, lambda: all(g.health == Health.UP for g in root.gateways), 60, "up")
        assert root.submitter is not None
        queued_at = reactor.seconds()
        for i in range(args.messages):
            await root.submitter.submit(
                Submission(recipients=(f"+1555{i:07d}",), text=f"message {i}"), None
            )

        def sent() -> list[Any]:
            return [s for m in modems for s in m.sent]

        stalled = modems[0]
        if args.stall:
            await wait(reactor, lambda: len(sent()) >= args.messages // 3, 3600, "a third sent")
            stalled.stall()
            stalled_at = reactor.seconds()
            await wait(reactor, lambda: root.gateways[0].health != Health.UP, 3600, "taken out")
            result["stall_to_out_s"] = round(reactor.seconds() - stalled_at, 2)
        await wait(reactor, lambda: len(sent()) >= args.messages, 3600, "every message sent")
        if args.stall:
            stalled.unstall()
            answering_at = reactor.seconds()
            await wait(reactor, lambda: root.gateways[0].health == Health.UP, 3600, "back up")
            result["answering_to_up_s"] = round(reactor.seconds() - answering_at, 2)
            texts = [s.text for s in sent()]
            result["resent"] = len(texts) - len(set(texts))
        times = sorted(s.at for s in sent())
        starts = [min(s.at for s in m.sent) for m in modems if m.sent]
        steady = times[-1] - max(starts)
        paced = len(times) - len(starts)
        result["per_minute"] = round(paced / steady * 60, 1) if steady > 0 else None
        result["per_minute_overall"] = round(len(times) / (times[-1] - queued_at) * 60, 1)
        result["sent_by_modem"] = [len(m.sent) for m in modems]
    finally:
        await root.stopService()
        for m in modems:
            m.close()
        shutil.rmtree(directory, True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--modems", type=int, default=4)
    p.add_argument("--per-minute", type=float, default=10)
    p.add_argument("--messages", type=int, default=48)
    p.add_argument("--send-delay", type=float, default=0.5, help="seconds before +CMGS")
    p.add_argument("--stall", action="store_true", help="stall the first modem mid-run")
    p.add_argument("--check-interval", default="30s")
    p.add_argument("--command-timeout", default="10s")
    p.add_argument("--cmgs-timeout", default="45s")
    p.add_argument("--record", action="store_true", help="append to bench/results.jsonl")
    args = p.parse_args()

    def go(reactor: Any) -> defer.Deferred[None]:
        async def body() -> None:
            result = await run(reactor, args)
            emit(result, args.record)

        return defer.ensureDeferred(body())

    task.react(go)


if __name__ == "__main__":
    main()
