"""Inbound SMS from gateways -> committed to the inbox.

Deciding whose SMS it is (``#user@example.org#`` in the text, dedicated
numbers, reply tracking, sort words, default mailbox) comes with the mail
channel; for now every inbound SMS is stored, logged and listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from smsd.model import Inbound
from smsd.traffic import TrafficLog


class Receiver:
    def __init__(self, store: Any, reactor: Any, traffic: TrafficLog | None = None) -> None:
        self.store = store
        self.reactor = reactor
        self.traffic = traffic
        self.listeners: list[Callable[[Inbound], None]] = []
        self.received = 0

    def receive(self, inbound: Inbound) -> Deferred[int]:
        """Fires with the inbox id once committed; only then may the network get its ack."""
        if not inbound.received_at:
            inbound = attrs.evolve(inbound, received_at=self.reactor.seconds())
        d = self.store.add_inbound([inbound])
        d.addCallback(self._stored, inbound)
        return d

    def _stored(self, ids: list[int], inbound: Inbound) -> int:
        self.received += 1
        stored = attrs.evolve(inbound, id=ids[0])
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
            listener(stored)
        return ids[0]
