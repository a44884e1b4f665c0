"""Test doubles for the dispatcher tests: a scripted gateway and a small wired node.

``FakeGateway`` answers each ``send`` as its script says (accepted with a
provider id, temporary or permanent error, an exception, no answer until the
test gives one, an answer after a delay, fewer results than parts) and
records what it was given, with the reactor's clock. ``Node`` wires a real
SQLite store, a pool of fake gateways, a router, a report sink and a
dispatcher the way ``smsd.service.make_service`` does, and ``NodeTestCase``
gives every test its own store in a temporary directory.

Everything runs on the real reactor under trial; waits poll the store with
a bounded timeout, so a test that goes wrong fails in seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial import unittest

from smsd.config import DispatchSection, RouteSection
from smsd.configschema import Duration
from smsd.core.dispatch import Dispatcher
from smsd.core.pool import Member, Pool
from smsd.core.reports import ReportSink
from smsd.core.routing import Router
from smsd.gateways.base import Gateway, Health
from smsd.model import Inbound, Message, OutPart, PartResult, Report, State
from smsd.store import Change, NewMessage
from smsd.store.sqlite import SQLiteStore

reactor: Any = global_reactor

ALICE = "+15551230001"
BOB = "+15551230002"
SWEDEN = "+46701234567"

# What a fake gateway says about one part.
OK = "ok"
TEMPORARY = "temporary"
PERMANENT = "permanent"
THROTTLED = "throttled"


# Replies ---------------------------------------------------------------------


@attrs.frozen
class Reply:
    """How a fake gateway answers one ``send``.

    ``verdicts`` gives each part's fate in order (``OK``, ``TEMPORARY``,
    ``PERMANENT``); parts beyond the list share the last verdict, and an
    empty list accepts everything.
    """

    verdicts: tuple[str, ...] = ()
    status: str | None = None  # the network's own words for failed parts
    raises: Exception | None = None  # raise from send() itself
    fails: Exception | None = None  # answer with a failed Deferred
    hang: bool = False  # never answer until the test calls answer_hung()
    delay: float = 0.0  # answer this many seconds later
    keep: int | None = None  # answer only the first ``keep`` parts (a driver bug)

    def verdict(self, index: int) -> str:
        if not self.verdicts:
            return OK
        return self.verdicts[min(index, len(self.verdicts) - 1)]


def ok(delay: float = 0.0) -> Reply:
    """Every part accepted (after ``delay`` seconds)."""
    return Reply(delay=delay)


def temporary(status: str = "fake: SMSC busy, try later") -> Reply:
    """Every part refused for now: retry later or elsewhere."""
    return Reply((TEMPORARY,), status)


def throttled(status: str = "ESME_RTHROTTLED (0x58)") -> Reply:
    """Every part refused as too fast: the network's way of saying slow down."""
    return Reply((THROTTLED,), status)


def permanent(status: str = "fake: unknown subscriber") -> Reply:
    """Every part refused for good."""
    return Reply((PERMANENT,), status)


def per_part(*verdicts: str, status: str = "fake: part refused") -> Reply:
    """Each part as listed, e.g. ``per_part(OK, TEMPORARY)``."""
    return Reply(tuple(verdicts), status)


def raises(error: Exception) -> Reply:
    """``send`` raises ``error`` (a driver bug)."""
    return Reply(raises=error)


def fails(error: Exception) -> Reply:
    """``send`` answers with a failed Deferred."""
    return Reply(fails=error)


def hang() -> Reply:
    """No answer until the test calls ``answer_hung``."""
    return Reply(hang=True)


def short(keep: int) -> Reply:
    """Results for the first ``keep`` parts only (accepted); the rest are left out."""
    return Reply(keep=keep)


class FakeGatewayError(Exception):
    """What a fake gateway raises when its script says so."""


# The gateway -----------------------------------------------------------------


@attrs.frozen
class Sent:
    """One ``send`` call as the fake saw it."""

    message: Message
    at: float  # the reactor's clock when send() was called

    @property
    def seqs(self) -> list[int]:
        return [p.seq for p in self.message.parts]


def provider_id(gateway_id: str, message_id: int, seq: int) -> str:
    """The id a fake gateway gives an accepted part (what a report names)."""
    return f"{gateway_id}-{message_id}-{seq}"


class FakeGateway(Gateway):
    """A gateway that answers as scripted and records what it was asked to send.

    ``script`` replies are used once each, in order; then ``default`` for
    every further send. ``in_flight`` counts sends not yet answered and
    ``max_in_flight`` the most there ever were.
    """

    type = "fake"

    def __init__(
        self,
        gateway_id: str,
        events: Any,
        *,
        script: Sequence[Reply] = (),
        default: Reply | None = None,
        health: Health = Health.UP,
        clock: Any = None,
    ) -> None:
        super().__init__(gateway_id, events)
        self.health = health  # as if it had started already; no event for this one
        self.script = list(script)
        self.default = default or ok()
        self.clock = clock or reactor
        self.sent: list[Sent] = []
        self.hung: list[tuple[Message, Deferred[list[PartResult]]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._delayed: list[tuple[Any, Message, Reply, Deferred[list[PartResult]]]] = []

    def send(self, message: Message) -> Deferred[list[PartResult]]:
        self.sent.append(Sent(message, self.clock.seconds()))
        reply = self.script.pop(0) if self.script else self.default
        if reply.raises is not None:
            raise reply.raises
        if reply.fails is not None:
            return defer.fail(reply.fails)
        d: Deferred[list[PartResult]] = Deferred()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if reply.hang:
            self.hung.append((message, d))
        elif reply.delay:
            entry: list[Any] = []
            call = self.clock.callLater(reply.delay, self._later, entry)
            entry.append((call, message, reply, d))
            self._delayed.append(entry[0])
        else:
            self._answer(d, message, reply)
        return d

    def _later(self, entry: list[Any]) -> None:
        self._delayed.remove(entry[0])
        _, message, reply, d = entry[0]
        self._answer(d, message, reply)

    def _answer(self, d: Deferred[list[PartResult]], message: Message, reply: Reply) -> None:
        self.in_flight -= 1
        d.callback(self.results(message, reply))

    def results(self, message: Message, reply: Reply) -> list[PartResult]:
        """The PartResults ``reply`` makes of ``message``'s parts."""
        results = []
        for i, part in enumerate(message.parts):
            verdict = reply.verdict(i)
            if verdict == OK:
                pid = provider_id(self.id, message.id, part.seq)
                results.append(PartResult(part.seq, True, provider_id=pid))
            else:
                results.append(
                    PartResult(
                        part.seq,
                        False,
                        status=reply.status,
                        temporary=verdict in (TEMPORARY, THROTTLED),
                        throttled=verdict == THROTTLED,
                    )
                )
        return results if reply.keep is None else results[: reply.keep]

    def answer_hung(self, reply: Reply | None = None) -> int:
        """Answer every send that hangs (accepted unless ``reply`` says otherwise)."""
        hung, self.hung = self.hung, []
        for message, d in hung:
            self._answer(d, message, reply or ok())
        return len(hung)

    def answer_now(self) -> None:
        """Answer hanging and delayed sends at once (used when a test ends)."""
        self.answer_hung()
        delayed, self._delayed = self._delayed, []
        for call, message, reply, d in delayed:
            if call.active():
                call.cancel()
            self._answer(d, message, reply)

    def received(self) -> list[int]:
        """Ids of the messages handed to this gateway, in order (repeats included)."""
        return [s.message.id for s in self.sent]


# Wiring ----------------------------------------------------------------------


class Events:
    """The GatewayEvents the fakes get: reports to the sink, health to listeners."""

    def __init__(self) -> None:
        self.sink: ReportSink | None = None
        self.on_health: list[Callable[[Gateway, Health, str], None]] = []
        self.inbound: list[Inbound] = []

    def report(self, report: Report) -> Deferred[None]:
        assert self.sink is not None
        return self.sink.report(report)

    def receive(self, inbound: Inbound) -> Deferred[int]:
        self.inbound.append(inbound)
        return defer.succeed(len(self.inbound))

    def health_changed(self, gateway: Gateway, health: Health, reason: str) -> None:
        for listener in self.on_health:
            listener(gateway, health, reason)


def fast_settings(**overrides: Any) -> DispatchSection:
    """Dispatch settings with short delays, so that retries and polls happen within a test."""
    values: dict[str, Any] = {
        "batch": 64,
        "retry_min": Duration(0.2),
        "retry_max": Duration(1.0),
        "poll": Duration(0.2),
        "lease": Duration(300),
        "purge_after": Duration(0),
    }
    values.update(overrides)
    return DispatchSection(**values)


class Node:
    """One smsd node wired as ``service.py`` wires it, with fake gateways.

    Add gateways with ``gateway()``, then ``start()`` builds the pool, the
    router, the report sink and the dispatcher and starts them. ``changes``
    collects what the dispatcher and the report sink tell ``notify``.
    """

    def __init__(
        self,
        store: Any,
        *,
        owner: str = "node-1",
        settings: DispatchSection | None = None,
        routes: Sequence[RouteSection] = (),
        clock: Any = None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.settings = settings or fast_settings()
        self.routes = list(routes)
        self.clock = clock or reactor
        self.events = Events()
        self.gateways: dict[str, FakeGateway] = {}
        self._member_options: dict[str, dict[str, Any]] = {}
        self.changes: list[Change] = []
        self.reports = ReportSink(store, self.clock, self.notify)
        self.events.sink = self.reports
        self.pool: Pool | None = None
        self.router: Router | None = None
        self._dispatcher: Dispatcher | None = None

    def gateway(
        self,
        gateway_id: str,
        *,
        script: Sequence[Reply] = (),
        default: Reply | None = None,
        health: Health = Health.UP,
        **member: Any,
    ) -> FakeGateway:
        """A fake gateway in this node's pool; ``member`` are Member's keywords (window...)."""
        gateway = FakeGateway(
            gateway_id, self.events, script=script, default=default, health=health, clock=self.clock
        )
        self.gateways[gateway_id] = gateway
        self._member_options[gateway_id] = member
        return gateway

    @property
    def dispatcher(self) -> Dispatcher:
        assert self._dispatcher is not None, "start() the node first"
        return self._dispatcher

    def member(self, gateway_id: str) -> Member:
        assert self.pool is not None
        return self.pool.members[gateway_id]

    def start(self) -> Dispatcher:
        now = self.clock.seconds()
        self.pool = Pool(
            Member(gateway, now=now, **self._member_options[gid])
            for gid, gateway in self.gateways.items()
        )
        ids = list(self.gateways)
        self.router = Router.from_config(self.routes, ids)
        dispatcher = Dispatcher(
            store=self.store,
            router=self.router,
            pool=self.pool,
            reactor=self.clock,
            owner=self.owner,
            settings=self.settings,
            notify=self.notify,
        )
        self._dispatcher = dispatcher
        self.events.on_health.append(lambda *_: dispatcher.wake())  # as service.py does
        for gateway in self.gateways.values():
            gateway.startService()
        dispatcher.startService()
        return dispatcher

    def notify(self, changes: list[Change]) -> None:
        self.changes.extend(changes)

    async def stop(self) -> None:
        """Stop the dispatcher; sends still open are answered at once so that it need not wait."""
        if self._dispatcher is not None and self._dispatcher.running:
            d = self._dispatcher.stopService()
            for gateway in self.gateways.values():
                gateway.answer_now()
            await d
        for gateway in self.gateways.values():
            if gateway.running:
                gateway.stopService()

    def changed(self, message_id: int) -> list[State]:
        """The states ``notify`` was told for one message, in order."""
        return [c.state for c in self.changes if c.message_id == message_id]


# Messages and waiting --------------------------------------------------------


def out_parts(count: int, text: str = "hello") -> tuple[OutPart, ...]:
    """``count`` text parts; several get a concatenation UDH."""
    if count == 1:
        return (OutPart(1, b"", text, None),)
    return tuple(
        OutPart(seq, bytes([5, 0, 3, 0x2A, count, seq]), f"{text} {seq}", None)
        for seq in range(1, count + 1)
    )


def new_message(
    recipient: str = ALICE,
    *,
    parts: int = 1,
    text: str = "hello",
    due_in: float = 0.0,
    expires_in: float = 3600.0,
    pin_gateway: str | None = None,
    user: str | None = None,
    client_ref: str | None = None,
    route: str | None = None,
) -> NewMessage:
    """A message as the Submitter would commit it, due ``due_in`` seconds from now."""
    now = reactor.seconds()
    return NewMessage(
        recipient=recipient,
        sender="smsd",
        text=text,
        encoding="gsm7",
        dcs=0,
        pid=0,
        parts=out_parts(parts, text),
        created_at=now,
        due_at=now + due_in,
        expires_at=now + expires_in,
        user=user,
        channel="http",
        client_ref=client_ref,
        pin_gateway=pin_gateway,
        route=route,
    )


async def add(store: Any, *messages: NewMessage) -> list[int]:
    """Commit messages to the outbox; their ids."""
    added = await store.add_messages(list(messages), None)
    return [a.id for a in added]


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 8.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` (plain or async) until it is true; its value. Fails after ``timeout``."""
    deadline = reactor.seconds() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if reactor.seconds() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await sleep(0.02)


async def wait_message(
    store: Any,
    message_id: int,
    check: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 5.0,
    what: str = "",
) -> dict[str, Any]:
    """The message (as ``get_message`` shows it) once ``check`` holds for it."""
    last: dict[str, Any] = {}

    async def probe() -> dict[str, Any] | None:
        nonlocal last
        last = await store.get_message(message_id) or {}
        return last if last and check(last) else None

    try:
        return await wait_for(probe, timeout=timeout, what=what or f"message {message_id}")
    except AssertionError as e:
        summary = {k: last.get(k) for k in ("state", "attempts", "gateway", "status", "error")}
        raise AssertionError(f"{e}; last seen {summary}") from None


async def wait_state(
    store: Any, message_id: int, *states: State, timeout: float = 5.0
) -> dict[str, Any]:
    """The message once it is in one of ``states``."""
    wanted = {s.value for s in states}
    return await wait_message(
        store,
        message_id,
        lambda m: m["state"] in wanted,
        timeout=timeout,
        what=f"message {message_id} to be {'/'.join(sorted(wanted))}",
    )


async def states(store: Any, ids: Sequence[int]) -> dict[int, str]:
    """Each message's state now."""
    out = {}
    for message_id in ids:
        m = await store.get_message(message_id)
        out[message_id] = m["state"] if m else "missing"
    return out


# The test case ---------------------------------------------------------------


class NodeTestCase(unittest.TestCase):
    """A fresh SQLite store per test in its own temporary directory, closed in cleanup."""

    timeout = 20

    def setUp(self) -> None:
        # Not self.mktemp(): under pytest that lands in the checkout.
        self.directory = tempfile.mkdtemp(prefix="smsd-test-dispatch-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.path = os.path.join(self.directory, "smsd.db")
        self.store = self.open_store()

    def open_store(self) -> SQLiteStore:
        """Another connection to the same file, as a second process would have."""
        store = SQLiteStore.open(self.path)
        self.addCleanup(store.close)
        return store

    def node(self, store: Any = None, **options: Any) -> Node:
        """A node on this test's store; stopped (before the store closes) in cleanup."""
        node = Node(self.store if store is None else store, **options)
        self.addCleanup(lambda: defer.ensureDeferred(node.stop()))
        return node


class WatchedStore:
    """The real store with every call counted by name; claims can be held back.

    With ``hold_claims`` set, a claim runs in the store at once (its lease is
    taken) but its answer reaches the dispatcher only at ``let_claims_through()``,
    as if the database were slow to answer.
    """

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: dict[str, int] = {}
        self.hold_claims = False
        self._held: list[tuple[Deferred[Any], Deferred[Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            d = attr(*args, **kwargs)
            if name != "claim" or not self.hold_claims:
                return d
            held: Deferred[Any] = Deferred()
            self._held.append((d, held))
            return held

        return call

    async def let_claims_through(self) -> int:
        """Hand held claim answers to the dispatcher; how many messages they held."""
        held, self._held = self._held, []
        count = 0
        for real, to_caller in held:
            messages = await real
            count += len(messages)
            to_caller.callback(messages)
        return count
