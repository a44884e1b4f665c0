"""The loopback gateway: a simulated network for the default setup, demos and tests.

Every part it "sends" becomes one JSON line in its log file (by default
``loopback.jsonl`` in the data directory)::

    {"id": 17, "part": 1, "parts": 2, "number": "+15551234567", "sender": null,
     "text": "...", "encoding": "gsm7", "udh": "050003a70201", "dcs": 0,
     "provider_id": "lb-...", "at": 1795000000.0, "created": 1795000000.0}

(``hex`` instead of ``text`` for binary parts). It simulates latency, a
share of refused submits (temporary errors, retried) and of failed
deliveries, and sends a delivery report per part.

Like an SMSC with duplicate detection it remembers what it accepted: a part
it already has (same message id, part and creation time; a crash between its
acceptance and the store's commit sends it again) is acknowledged with the
same id and not written twice. At start it reads the tail of its log to
remember, and repeats the reports of recent parts (the store ignores those
it has applied already), as an SMSC repeats unacknowledged reports.

Its network's side (the submits, their answers, the reports) runs as an
SMPP bind's does, after the clients that are ready (``foreground.later``).
HTTP -> loopback, two sets of alternating runs (3 and 4 pairs, medians):
accepts +8% and +5% (8,030 -> 8,650 and 7,580 -> 7,980 msg/s), delivered +7%
and +5%, p99 7.6 -> 6.5 and 7.9 -> 7.4 ms.
"""

from __future__ import annotations

import json
import os
import random
import signal
from collections import deque
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from smsd import foreground
from smsd.appender import Appender
from smsd.configschema import Duration, setting
from smsd.gateways.base import Gateway, GatewayEvents, Health
from smsd.model import Inbound, Message, PartResult, Report, State

log = Logger()

TAIL_BYTES = 16 * 1024 * 1024
REPLAY_WINDOW = 86400.0
MEMORY = 200_000  # accepted parts remembered for duplicate detection


def _rate(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a fraction between 0 and 1, got {value!r}")


@attrs.frozen
class Options:
    latency: Duration = setting(Duration(0.01), "how long a submit takes")
    report_delay: Duration = setting(Duration(0.1), "delivery report this long after sending")
    reports: bool = setting(True, "send delivery reports")
    failure_rate: float = setting(0.0, "share of parts whose report says undeliverable", _rate)
    reject_rate: float = setting(0.0, "share of submits refused with a temporary error", _rate)
    log: str = setting("loopback.jsonl", "output file, relative to data_dir")
    seed: int = setting(0, "random seed for repeatable runs; 0: random")
    crash_after: int = setting(
        0,
        "fault test: kill smsd (SIGKILL) once this many parts are written, before the"
        " acknowledgement reaches the store; 0: never",
    )


class LoopbackGateway(Gateway):
    type = "loopback"

    def __init__(
        self,
        gateway_id: str,
        events: GatewayEvents,
        options: Options,
        path: str,
        reactor: Any,
        *,
        sender: str = "",
    ) -> None:
        super().__init__(gateway_id, events, sender=sender)
        self.options = options
        self.path = path
        self.reactor = reactor
        self.random = random.Random(options.seed or None)
        self._appender: Appender | None = None
        self._accepted: dict[tuple[int, int, float], str] = {}  # oldest first
        self._cut_line = False
        self._outbox: list[tuple[Message, Deferred[list[PartResult]]]] = []
        self._submit_call: Any = None
        self._pending_reports: deque[tuple[float, str]] = deque()
        self._report_call: Any = None
        self._prefix = os.urandom(4).hex()  # provider ids differ across restarts
        self._serial = 0
        self.sent_parts = 0
        self.reports_sent = 0

    def startService(self) -> Any:
        super().startService()
        pool = self.reactor.getThreadPool()
        d = deferToThreadPool(self.reactor, pool, read_tail, self.path, TAIL_BYTES)
        d.addCallback(self._remember)
        d.addErrback(lambda f: log.failure("cannot read {path}", f, path=self.path))
        d.addBoth(lambda _: self._open())
        return d

    def _remember(self, tail: tuple[list[dict[str, Any]], bool]) -> None:
        entries, self._cut_line = tail
        now = self.reactor.seconds()
        replay = []
        for e in entries:
            try:
                key = (int(e["id"]), int(e["part"]), float(e["created"]))
                provider_id = str(e["provider_id"])
            except (KeyError, TypeError, ValueError):
                continue
            self._accept(key, provider_id)
            if self.options.reports and now - float(e.get("at", 0)) < REPLAY_WINDOW:
                replay.append(provider_id)
        if replay:
            log.info(
                "loopback {id}: repeating {count} recent delivery reports",
                id=self.id,
                count=len(replay),
            )
            for provider_id in replay:
                self._schedule_report(provider_id)

    def _accept(self, key: tuple[int, int, float], provider_id: str) -> None:
        self._accepted[key] = provider_id
        if len(self._accepted) > MEMORY:
            del self._accepted[next(iter(self._accepted))]

    def _open(self) -> None:
        self._appender = Appender(self.path, self.reactor)
        if self._cut_line:  # a crash cut the last line: end it, so the next one stands alone
            self._appender.add([""])
        if self.running:
            self.set_health(Health.UP)

    def stopService(self) -> Any:
        super().stopService()
        self.set_health(Health.DOWN, "stopped")
        if self._report_call is not None and self._report_call.active():
            self._report_call.cancel()  # unsent reports are repeated at the next start
        self._report_call = None
        if self._appender is not None:
            return self._appender.close()
        return None

    def send(self, message: Message) -> Deferred[list[PartResult]]:
        """Messages handed in during one ``latency`` window are submitted together."""
        d: Deferred[list[PartResult]] = Deferred()
        self._outbox.append((message, d))
        if self._submit_call is None:
            self._submit_call = foreground.call_later(
                self.reactor, self.options.latency, self._submit
            )
        return d

    def _submit(self) -> None:
        assert self._appender is not None
        self._submit_call = None
        batch, self._outbox = self._outbox, []
        now = self.reactor.seconds()
        lines: list[str] = []
        answers = []
        for message, d in batch:
            if self.options.reject_rate and self.random.random() < self.options.reject_rate:
                status = "loopback: submit refused (simulated)"
                refused = [PartResult(p.seq, False, status=status) for p in message.parts]
                answers.append((d, refused))
                continue
            sender = message.sender or self.default_sender
            results = []
            for part in message.parts:
                key = (message.id, part.seq, message.created_at)
                provider_id = self._accepted.get(key)
                if provider_id is None:  # else: a repeat after a crash, kept once
                    self._serial += 1
                    provider_id = f"{self._prefix}{self._serial:x}"
                    self._accept(key, provider_id)
                    lines.append(self._entry(message, part, sender, provider_id, now))
                results.append(PartResult(part.seq, True, provider_id=provider_id))
            answers.append((d, results))
        self.sent_parts += len(lines)
        self._appender.write(lines).addBoth(
            lambda written: foreground.later(self.reactor, self._answer, written, answers)
        )

    def _answer(self, written: Any, answers: list[tuple[Deferred[Any], list[PartResult]]]) -> None:
        if self.options.crash_after and self.sent_parts >= self.options.crash_after:
            # The worst moment for a crash: the network has the parts, the store
            # does not know yet. A restart must not send them a second time.
            os.kill(os.getpid(), signal.SIGKILL)
        for d, results in answers:
            if isinstance(written, Failure):
                d.errback(written)
                continue
            for r in results:
                if r.ok:
                    self._schedule_report(r.provider_id or "")
            d.callback(results)

    def _entry(
        self, message: Message, part: Any, sender: str | None, provider_id: str, now: float
    ) -> str:
        """One JSON line, formatted by hand: json.dumps of a dict costs several times more."""
        if part.text is not None:
            payload = f'"text": {_json(part.text)}'
        else:
            payload = f'"hex": "{(part.data or b"").hex()}"'
        udh = f'"{part.udh.hex()}"' if part.udh else "null"
        return (
            f'{{"id": {message.id}, "part": {part.seq}, "parts": {message.total}, '
            f'"number": {_json(message.recipient)}, "sender": {_json(sender)}, {payload}, '
            f'"encoding": "{message.encoding}", "udh": {udh}, "dcs": {message.dcs}, '
            f'"provider_id": "{provider_id}", "at": {now!r}, "created": {message.created_at!r}}}'
        )

    def _schedule_report(self, provider_id: str) -> None:
        """Reports leave ``report_delay`` after the send, in order, on one timer."""
        if not self.options.reports:
            return
        due = self.reactor.seconds() + self.options.report_delay
        self._pending_reports.append((due, provider_id))
        if self._report_call is None:
            self._report_call = foreground.call_later(
                self.reactor, self.options.report_delay, self._report
            )

    def _report(self) -> None:
        self._report_call = None
        if not self.running:
            return  # stopped since this came due: repeated at the next start
        now = self.reactor.seconds()
        pending = self._pending_reports
        while pending and pending[0][0] <= now:
            _, provider_id = pending.popleft()
            if self.options.failure_rate and self.random.random() < self.options.failure_rate:
                state, status = State.FAILED, "stat:UNDELIV err:001"
            else:
                state, status = State.DELIVERED, "stat:DELIVRD err:000"
            self.reports_sent += 1
            # A failed commit is logged by the sink; this network does not retry reports.
            self.events.report(Report(self.id, provider_id, state, status, now)).addErrback(
                lambda _: None
            )
        if pending:
            self._report_call = foreground.call_later(
                self.reactor, pending[0][0] - now, self._report
            )

    def inject(self, sender: str, recipient: str, text: str) -> Deferred[int]:
        """Simulate an SMS from a phone to one of our numbers."""
        return self.events.receive(
            Inbound(self.id, sender, recipient, text, received_at=self.reactor.seconds())
        )

    def status(self) -> dict[str, Any]:
        return {"log": self.path, "parts_written": self.sent_parts, "reports": self.reports_sent}


def _json(value: str | None) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def read_tail(path: str, size: int) -> tuple[list[dict[str, Any]], bool]:
    """The JSON entries in the last ``size`` bytes of ``path`` (runs in a thread),
    and whether the file ends in a cut line."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return [], False
    with f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - size))
        chunk = f.read()
    lines = chunk.split(b"\n")
    if end > size:
        lines = lines[1:]  # the first line is cut
    entries = []
    for line in lines:
        if line.strip():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash
    return entries, bool(chunk) and not chunk.endswith(b"\n")


def make(common: Any, options: Options, events: GatewayEvents, context: Any) -> LoopbackGateway:
    from smsd.config import resolve

    return LoopbackGateway(
        common.id,
        events,
        options,
        resolve(context.config, options.log),
        context.reactor,
        sender=common.sender,
    )
