"""A whole smsd in the test's own process (``make_service``), as the channel tests run it.

The channel tests (SMTP, SNPP, SIP, replies...) each start smsd on a configuration of
their own, talk to it with a real client, and look at what a user would see: the
stored messages and what the loopback gateway sent. This is that once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from smsd.config import load
from smsd.gateways.base import Health
from smsd.model import Inbound, Submission
from smsd.service import Smsd, make_service
from smsd.store.sqlite import SQLiteStore
from tests.fakes import wait_for


class DaemonCase(unittest.TestCase):
    """``run_smsd(config)``: smsd started in a temporary directory, stopped in cleanup."""

    timeout = 40

    def setUp(self) -> None:
        # Not self.mktemp(): under pytest that lands in the checkout.
        self.directory = tempfile.mkdtemp(prefix=f"smsd-test-{type(self).__name__}-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.data = os.path.join(self.directory, "data")
        self.root: Smsd | None = None

    def build_smsd(self, config: str) -> Smsd:
        """smsd made from ``config`` but not started (to add users first); stopped in
        cleanup once started."""
        path = os.path.join(self.directory, "smsd.toml")
        with open(path, "w") as f:
            f.write(config)
        root = make_service(load(path, self.data))
        self.root = root
        self.addCleanup(lambda: defer.ensureDeferred(self._stop_smsd()))
        return root

    def run_smsd(self, config: str) -> Smsd:
        root = self.build_smsd(config)
        root.startService()
        return root

    async def gateways_started(self) -> None:
        """Wait until every gateway has left ``starting``: the loopback reads its log's
        tail in a thread first, and until then a channel that refuses while no gateway
        is up (SIP, SNPP) would rightly answer 503 or 554."""
        root = self.root
        assert root is not None
        await wait_for(
            lambda: all(g.health is not Health.STARTING for g in root.gateways),
            what="every gateway past starting",
        )

    async def _stop_smsd(self) -> None:
        if self.root is not None and self.root.running:
            await self.root.stopService()

    async def stored_messages(self) -> list[dict[str, Any]]:
        """Every queued message so far, as the JSON API's store view shows it (ids 1...)."""
        assert self.root is not None
        out = []
        for i in range(1, 1000):
            m = await self.root.store.get_message(i)
            if m is None:
                break
            out.append(m)
        return out

    async def loopback_parts(self, count: int, log: str = "loopback.jsonl") -> list[dict[str, Any]]:
        """What the loopback gateway sent, once it has sent ``count`` parts."""
        path = os.path.join(self.data, log)

        def read() -> list[dict[str, Any]] | None:
            try:
                with open(path) as f:
                    lines = [json.loads(line) for line in f if line.strip()]
            except FileNotFoundError:
                return None
            return lines if len(lines) >= count else None

        return await wait_for(read, what=f"{count} parts at the loopback gateway")


def watch(store: Any, name: str) -> defer.Deferred[None]:
    """Fires once the store's method ``name`` has been called and has finished."""
    done: defer.Deferred[None] = defer.Deferred()
    method = getattr(store, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        d = method(*args, **kwargs)
        d.addBoth(lambda result: (done.called or done.callback(None), result)[1])
        return d

    setattr(store, name, call)
    return done


class GatewayCase(DaemonCase):
    """One network gateway under test inside a whole smsd: submit as the HTTP form would,
    and look at what became of it as the JSON API shows it."""

    recipient = "+15551234567"

    async def start_gateway(self, config: str) -> Smsd:
        """Returns once the dispatcher's start-up release of old leases is done."""
        root = self.build_smsd(config)
        released = watch(root.store, "release_leases")
        root.startService()
        await released
        return root

    def stop(self) -> defer.Deferred[None]:
        """Stop smsd once (a test may have stopped it already)."""
        return defer.ensureDeferred(self._stop_smsd())

    @property
    def gateway(self) -> Any:
        assert self.root is not None
        return self.root.gateways[0]

    @property
    def store(self) -> Any:
        assert self.root is not None
        return self.root.store

    async def submit(self, text: str | None = "Hello", **fields: Any) -> int:
        """Queue one SMS as the HTTP form would; its message id."""
        assert self.root is not None and self.root.submitter is not None
        fields.setdefault("recipients", (self.recipient,))
        accepted = await self.root.submitter.submit(Submission(text=text, **fields), None)
        return accepted[0].id

    async def message(self, message_id: int) -> dict[str, Any]:
        m = await self.store.get_message(message_id)
        assert m is not None
        return m

    async def wait_state(
        self, message_id: int, *states: str, timeout: float = 8.0
    ) -> dict[str, Any]:
        """The message once it is in one of ``states`` (as the JSON API shows them)."""
        return await wait_state(self.message, message_id, *states, timeout=timeout)

    async def assert_sent_after_stop(self, ids: list[int]) -> None:
        """Read from the database file once smsd has stopped: every message is sent,
        with the SMSC's id kept (what a stop that drains its window must leave)."""
        store = SQLiteStore.open(os.path.join(self.data_dir, "smsd.db"))
        try:
            for message_id in ids:
                m = await store.get_message(message_id)
                self.assertEqual(m["state"], "sent")
                self.assertIsNotNone(m["parts"][0]["provider_id"])
        finally:
            await store.close()

    async def inbox(self) -> list[Inbound]:
        return list(await self.store.list_inbound(0, 100))

    def member(self) -> dict[str, Any]:
        """The gateway as the health API shows it (the pool's view plus status())."""
        assert self.root is not None and self.root.dispatcher is not None
        [status] = self.root.dispatcher.pool.status(self.root.reactor.seconds())
        return status

    def capture_log(self) -> list[str]:
        """Every log line from now on, formatted."""
        lines: list[str] = []

        def observer(event: dict[str, Any]) -> None:
            lines.append(f"{event.get('log_level', LogLevel.info).name}: {formatEvent(event)}")

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return lines


async def wait_state(
    message: Callable[[int], Awaitable[dict[str, Any]]],
    message_id: int,
    *states: str,
    timeout: float,
) -> dict[str, Any]:
    """The message (as ``message`` reads it) once it is in one of ``states``; on a
    timeout the error says what was last seen."""
    last: dict[str, Any] = {}

    async def probe() -> dict[str, Any] | None:
        nonlocal last
        last = await message(message_id)
        return last if last["state"] in states else None

    try:
        return await wait_for(probe, timeout=timeout, what=f"message {message_id} {states}")
    except AssertionError as e:
        seen = {k: last.get(k) for k in ("state", "attempts", "status", "error", "parts")}
        raise AssertionError(f"{e}; last seen {seen}") from None
