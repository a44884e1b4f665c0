"""A connection to an SMSC that comes back: what SMPP binds and UCP links share.

Connect; when the connection cannot be made or is lost, try again after a
back-off that doubles from ``reconnect_min`` to ``reconnect_max`` with jitter
(``reconnect_delay``), and tell the gateway each time so that its health
follows; stop trying once the gateway stops. The protocol on the connection
is the subclass's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from smsd import foreground
from smsd.gateways.base import reconnect_delay


class ReconnectingLink:
    """Subclasses give ``endpoint()``, ``new_protocol()`` and ``changed()``."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway  # its options have reconnect_min and reconnect_max
        self.reactor = gateway.reactor
        self.problem = ""  # why it is not up, for the health page
        self.failures = 0  # connection attempts in a row that came to nothing
        self.stopping = False
        self.closed: Deferred[None] = succeed(None)  # fires once the connection is gone
        self._retry: Any = None

    def endpoint(self) -> Any:
        raise NotImplementedError

    def new_protocol(self) -> Protocol:
        raise NotImplementedError

    def changed(self) -> None:
        """The link's state changed: the gateway recomputes its health."""

    def connect(self) -> None:
        self._retry = None
        if self.stopping:
            return
        self.closed = Deferred()
        d = self.endpoint().connect(Factory.forProtocol(self.new_protocol))
        d.addCallbacks(_served_after_clients, self._not_connected)

    def _not_connected(self, failure: Failure) -> None:
        self.problem = f"cannot connect: {failure.getErrorMessage()}"
        self.closed.callback(None)
        self._again(self._backoff())

    def _backoff(self) -> float:
        o = self.gateway.options
        self.failures += 1
        return reconnect_delay(self.failures, o.reconnect_min, o.reconnect_max)

    def _again(self, delay: float) -> None:
        self.changed()
        if not self.stopping and self._retry is None:
            self._retry = self.reactor.callLater(delay, self.connect)

    def _cancel_retry(self) -> None:
        self.stopping = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None


def _served_after_clients(protocol: Protocol) -> Protocol:
    """A link is fed from the queue: when the reactor is busy, clients go first
    (:mod:`smsd.foreground`)."""
    foreground.background(protocol.transport)
    return protocol
