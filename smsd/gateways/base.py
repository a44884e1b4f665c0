"""The one interface between the core and every network-side driver.

A gateway is a Twisted service with ``send(message)``: it hands the
message's pending parts to its network and answers, per part, sent (with the
network's id for the delivery report) or failed (temporary or permanent,
with the network's own words). What comes back unasked (delivery reports,
inbound SMS, its own health) it gives to the ``GatewayEvents`` the core
handed it. Gateways never call channels and never touch the store.
"""

from __future__ import annotations

import enum
import random
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from smsd.configschema import ConfigError
from smsd.model import Inbound, InboundPart, Message, PartResult, Report


class Health(enum.StrEnum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"  # the driver knows it cannot send (link down, modem gone)
    DISABLED = "disabled"


class GatewayEvents(Protocol):
    """What the core gives each gateway to report what the network says."""

    def report(self, report: Report) -> Deferred[None]:
        """Fires once the report is committed (then the network may get its ack)."""
        ...

    def receive(self, inbound: Inbound) -> Deferred[int]:
        """Fires with the inbox id once the SMS is committed (then, and only
        then, may a modem delete it from the SIM or an SMSC get its ack)."""
        ...

    def receive_part(self, part: InboundPart) -> Deferred[int | None]:
        """One part of a concatenated SMS: fires once it is committed (with the
        inbox id if it completed its message); then the network may get its ack."""
        ...

    def health_changed(self, gateway: Gateway, health: Health, reason: str) -> None: ...


class Gateway(Service):
    """Base class: keeps the id, the events sink and the health state."""

    type: str = "base"

    def __init__(self, gateway_id: str, events: GatewayEvents, *, sender: str = "") -> None:
        self.id = gateway_id
        self.name = f"gateway:{gateway_id}"
        self.events = events
        self.default_sender = sender or None
        self.health = Health.STARTING
        self.health_reason = ""

    def set_health(self, health: Health, reason: str = "") -> None:
        if health != self.health or reason != self.health_reason:
            self.health, self.health_reason = health, reason
            self.events.health_changed(self, health, reason)

    def send(self, message: Message) -> Deferred[list[PartResult]]:
        """Send ``message.parts``; one PartResult per part, in order.

        Errors must come back as PartResults, not as a failed Deferred; a
        failed Deferred is taken as a temporary error of every part.
        """
        raise NotImplementedError

    def in_flight_limit(self, window: int) -> int:
        """How many messages the pool may hand over at once, given the link's window
        (a driver with several connections multiplies it)."""
        return window

    def status(self) -> dict[str, Any]:
        """What the health page shows about this gateway, beyond its state."""
        return {}

    def hand_in(
        self,
        sender: str,
        recipient: str,
        text: str | None,
        raw: bytes | None,
        encoding: str,
        concat: tuple[int, int, int] | None,
        now: float,
    ) -> Deferred[Any]:
        """An SMS from a phone to the core: whole, or one part (``concat`` = ref, total,
        seq) of a long one, which the store joins. Fires once committed."""
        if concat is not None and concat[1] > 1:
            ref, total, seq = concat
            return self.events.receive_part(
                InboundPart(
                    self.id, sender, recipient, ref, total, seq or 1, text, raw, encoding, now
                )
            )
        return self.events.receive(Inbound(self.id, sender, recipient, text, raw, encoding, now))


def check_within_send_timeout(path: str, common: Any, key: str, value: float) -> None:
    """A driver's own answer timeout must run out before the dispatcher's ``send_timeout``:
    otherwise the dispatcher gives the message up (and may send it again elsewhere)
    while the driver still waits for the network's answer. Raises ConfigError."""
    if common.send_timeout and value >= common.send_timeout:
        raise ConfigError(
            f"{path}: gateway.{common.id}.{key}: must be shorter than send_timeout"
            f" ({common.send_timeout:g}s), or a slow answer could send the message twice"
        )


def reconnect_delay(failures: int, low: float, high: float) -> float:
    """Exponential back-off from ``low`` to ``high`` after ``failures`` failures in a row,
    with 20% jitter so that links cut at once do not all call back at once."""
    delay = min(high, low * 2 ** min(max(failures, 1) - 1, 30))
    return delay * random.uniform(0.8, 1.2)


def all_or_timeout(deferreds: list[Deferred[Any]], reactor: Any, timeout: float) -> Deferred[None]:
    """Fires when every Deferred has fired, or after ``timeout`` (a drain at shutdown)."""
    done: Deferred[None] = Deferred()
    left = [len(deferreds)]
    timer = reactor.callLater(timeout, lambda: done.called or done.callback(None))

    def one(_: Any) -> None:
        left[0] -= 1
        if left[0] <= 0 and not done.called:
            timer.cancel()
            done.callback(None)

    if not deferreds:
        timer.cancel()
        done.callback(None)
    for d in deferreds:
        d.addBoth(one)
    return done
