"""Inbound SMS from gateways -> committed to the inbox.

Deciding whose SMS it is and mailing it to them is ``channels/replies.py``'s
work, which listens here and reads the inbox: a committed SMS waits there
until it is handed over.

Concatenated SMS arrive part by part. Each part is committed as it comes
(so the network may be acknowledged at once, and a crash loses nothing);
the store joins them when the last one is there. Parts whose siblings never
come are stored each on its own after ``reassembly_timeout``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from smsd.model import Inbound, InboundPart
from smsd.traffic import TrafficLog

log = Logger()


class Receiver(Service):
    name = "receiver"

    def __init__(
        self,
        store: Any,
        reactor: Any,
        traffic: TrafficLog | None = None,
        *,
        reassembly_timeout: float = 600.0,
    ) -> None:
        self.store = store
        self.reactor = reactor
        self.traffic = traffic
        self.reassembly_timeout = reassembly_timeout
        self.listeners: list[Callable[[Inbound], None]] = []
        self.received = 0
        self._sweep = LoopingCall(self.flush_incomplete)
        self._sweep.clock = reactor

    def startService(self) -> None:
        super().startService()
        self._sweep.start(min(60.0, max(1.0, self.reassembly_timeout / 4)), now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._sweep.running:
            self._sweep.stop()

    def receive(self, inbound: Inbound) -> Deferred[int]:
        """Fires with the inbox id once committed; only then may the network get its ack."""
        if not inbound.received_at:
            inbound = attrs.evolve(inbound, received_at=self.reactor.seconds())
        d = self.store.add_inbound([inbound])
        d.addCallback(lambda ids: self._stored(attrs.evolve(inbound, id=ids[0])))
        return d

    def receive_part(self, part: InboundPart) -> Deferred[int | None]:
        """Fires once the part is committed: with the inbox id when it completed
        its message, else None (the network may be acknowledged either way)."""
        if not part.received_at:
            part = attrs.evolve(part, received_at=self.reactor.seconds())
        d = self.store.add_inbound_part(part)
        d.addCallback(lambda whole: None if whole is None else self._stored(whole))
        return d

    def flush_incomplete(self) -> Deferred[None]:
        """Store the parts of messages that stayed incomplete, each on its own."""
        d = self.store.flush_inbound_parts(self.reactor.seconds() - self.reassembly_timeout)

        def stored(messages: list[Inbound]) -> None:
            if messages:
                log.warn(
                    "{count} parts of concatenated SMS never completed; stored one by one",
                    count=len(messages),
                )
            for m in messages:
                self._stored(m)

        d.addCallback(stored)
        d.addErrback(lambda f: log.failure("storing incomplete concatenated SMS failed", f))
        return d

    def _stored(self, inbound: Inbound) -> int:
        self.received += 1
        if self.traffic is not None:
            chars = len(inbound.text) if inbound.text is not None else len(inbound.data or b"")
            self.traffic.inbound(
                inbound.gateway,
                inbound.sender,
                inbound.recipient,
                chars,
                inbound.parts,
                inbound.received_at,
            )
        for listener in self.listeners:
            listener(inbound)
        assert inbound.id is not None
        return inbound.id
