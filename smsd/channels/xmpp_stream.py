"""The XEP-0114 component stream to the XMPP server, kept up.

twisted.words does the stream and the handshake (SHA-1 of stream id and secret);
this adds what a long-running component needs: connecting again with doubling
waits when the stream is lost or refused, a keep-alive ping through the server
(which also finds a peer that vanished without closing), and ``flushed()``, which
tells when the server has read everything written so far. That is what lets the
gateway say an inbound SMS was handed over only once the server has it: a ping
to the component's own domain goes through the server and comes back, and the
server handles a stream's stanzas in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import component, error, xmlstream
from twisted.words.xish import domish

from protocols.xmpp import NS_PING, stanza

log = Logger()

PING_PREFIX = "smsd-ka-"
CLOSE_WAIT = 3.0  # seconds the server has to close after our footer


class _Factory(Factory):
    def __init__(self, stream: ComponentStream) -> None:
        self.stream = stream

    def buildProtocol(self, addr: Any) -> xmlstream.XmlStream:
        s = self.stream
        xs = xmlstream.XmlStream(component.ConnectComponentAuthenticator(s.domain, s._secret))
        xs.factory = self
        xs.addObserver(xmlstream.STREAM_AUTHD_EVENT, s._authenticated)
        xs.addObserver(xmlstream.STREAM_ERROR_EVENT, s._stream_error)
        xs.addObserver(xmlstream.INIT_FAILED_EVENT, s._init_failed)
        xs.addObserver(xmlstream.STREAM_END_EVENT, s._ended, xs=xs)
        return xs


class ComponentStream:
    """One component connection at a time; ``start`` and ``stop`` it, ``send`` on it."""

    def __init__(
        self,
        reactor: Any,
        endpoint: Any,  # an IStreamClientEndpoint
        domain: str,
        secret: str,
        on_stanza: Callable[[domish.Element], None],
        on_up: Callable[[], None] = lambda: None,
        reconnect_min: float = 1.0,
        reconnect_max: float = 60.0,
        keepalive: float = 60.0,
        server: str = "",  # for the log
    ) -> None:
        self.reactor = reactor
        self.endpoint = endpoint
        self.domain = domain
        self._secret = secret
        self.on_stanza = on_stanza
        self.on_up = on_up
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.keepalive = keepalive
        self.server = server
        self.xs: xmlstream.XmlStream | None = None  # authenticated stream, or None
        self.connections = 0  # authenticated streams so far
        self._connecting: Deferred[Any] | None = None
        self._pending: xmlstream.XmlStream | None = None  # connected, not yet authenticated
        self._retry: Any = None
        self._failures = 0
        self._running = False
        self._why = ""  # the last stream error, for the log
        self._ids = itertools.count(1)
        self._written = 0  # stanzas written on the current stream
        # Outstanding pings: id -> (stanzas written before it, sent at, waiters).
        self._pings: dict[str, tuple[int, float, list[Deferred[bool]]]] = {}
        self._ticker: Any = None
        self._closed: list[Deferred[None]] = []

    # Life -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.xs is not None

    def start(self) -> None:
        self._running = True
        self._connect()

    def stop(self, goodbye: list[domish.Element] = ()) -> Deferred[None]:  # type: ignore[assignment]
        """Say ``goodbye`` (unavailable presences), close the stream, wait for the server."""
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        xs = self.xs or self._pending
        if xs is None or xs.transport is None:
            return succeed(None)
        if self.xs is not None:
            for element in goodbye:
                self.send(element)
            xs.sendFooter()
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        xs.transport.loseConnection()
        timer = self.reactor.callLater(CLOSE_WAIT, xs.transport.abortConnection)
        d.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
        return d

    def _connect(self) -> None:
        self._retry = None
        if not self._running:
            return
        d = self.endpoint.connect(_Factory(self))
        self._connecting = d

        def connected(xs: xmlstream.XmlStream) -> None:
            self._connecting = None
            self._pending = xs

        def failed(f: Failure) -> None:
            self._connecting = None
            if self._running:
                self._again(f.getErrorMessage())

        d.addCallbacks(connected, failed)

    def _again(self, why: str) -> None:
        wait = min(self.reconnect_max, self.reconnect_min * 2**self._failures)
        self._failures += 1
        log.warn(
            "XMPP component {domain}: no stream to {server} ({why}); again in {wait:g} s",
            domain=self.domain,
            server=self.server,
            why=why,
            wait=wait,
        )
        self._retry = self.reactor.callLater(wait, self._connect)

    def _authenticated(self, xs: xmlstream.XmlStream) -> None:
        self._pending = None
        self.xs = xs
        self._failures = 0
        self._written = 0
        self._why = ""
        self.connections += 1
        for name in ("message", "presence", "iq"):
            xs.addObserver(f"/{name}", self._element)
        self._ticker = self.reactor.callLater(self.keepalive, self._tick)
        log.info(
            "XMPP component {domain} connected to {server}", domain=self.domain, server=self.server
        )
        try:
            self.on_up()
        except Exception:
            log.failure("XMPP component: after connecting")

    def _stream_error(self, f: Failure) -> None:
        if f.check(error.StreamError):
            e = f.value
            self._why = f"stream error {e.condition}" + (f": {e.text}" if e.text else "")
            if e.condition == "not-authorized":
                self._why += " (is [xmpp] secret the server's component_secret?)"
        else:
            self._why = f.getErrorMessage()

    def _init_failed(self, f: Failure) -> None:
        self._why = self._why or f.getErrorMessage()

    def _ended(self, reason: Any, xs: xmlstream.XmlStream) -> None:
        was_up = self.xs is xs
        if was_up:
            self.xs = None
        if self._pending is xs:
            self._pending = None
        if self._ticker is not None and self._ticker.active():
            self._ticker.cancel()
        self._ticker = None
        for _, _, waiters in self._pings.values():
            for w in waiters:
                w.callback(False)
        self._pings.clear()
        closed, self._closed = self._closed, []
        for d in closed:
            d.callback(None)
        if self._running:
            why = self._why or getattr(reason, "getErrorMessage", lambda: "closed")()
            self._why = ""
            self._again(why if was_up else f"refused: {why}")

    # Sending ----------------------------------------------------------------------

    def send(self, element: domish.Element) -> bool:
        """Write a stanza; False when there is no authenticated stream."""
        if self.xs is None:
            return False
        self.xs.send(element)
        self._written += 1
        return True

    def flushed(self) -> Deferred[bool]:
        """True once the server has read everything written until now; False if the
        stream is lost first (what was written may or may not have arrived)."""
        if self.xs is None:
            return succeed(False)
        d: Deferred[bool] = Deferred()
        for written, _, waiters in self._pings.values():
            if written >= self._written:  # a ping already on the way covers it
                waiters.append(d)
                return d
        self._ping([d])
        return d

    def _ping(self, waiters: list[Deferred[bool]]) -> None:
        pid = f"{PING_PREFIX}{next(self._ids)}"
        iq = stanza("iq", self.domain, self.domain, "get", pid)
        iq.addElement((NS_PING, "ping"))
        self.send(iq)
        self._pings[pid] = (self._written, self.reactor.seconds(), waiters)

    def _tick(self) -> None:
        """Keep-alive: a ping each period; one unanswered for a period ends the stream."""
        self._ticker = None
        if self.xs is None:
            return
        now = self.reactor.seconds()
        if any(now - sent >= self.keepalive for _, sent, _ in self._pings.values()):
            log.warn("XMPP component {domain}: the server does not answer", domain=self.domain)
            self._why = f"no answer to a ping within {self.keepalive:g} s"
            if self.xs.transport is not None:
                self.xs.transport.abortConnection()
            return
        self._ping([])
        self._ticker = self.reactor.callLater(self.keepalive, self._tick)

    # Receiving --------------------------------------------------------------------

    def _element(self, element: domish.Element) -> None:
        own = element.name == "iq" and element.getAttribute("id", "").startswith(PING_PREFIX)
        if own and self._own_ping(element):
            return
        try:
            self.on_stanza(element)
        except Exception:
            log.failure("XMPP component: a stanza from the server")

    def _own_ping(self, iq: domish.Element) -> bool:
        """Our keep-alive coming back: answer it, or count its answer."""
        if iq.getAttribute("from") != self.domain:
            return False
        kind = iq.getAttribute("type")
        if kind == "get":
            self.send(stanza("iq", self.domain, self.domain, "result", iq["id"]))
            return True
        entry = self._pings.pop(iq["id"], None)
        if entry is None:
            return kind in ("result", "error")
        # The server handles a stream in order: older pings were read too.
        for pid in [p for p, (written, _, _) in self._pings.items() if written <= entry[0]]:
            for w in self._pings.pop(pid)[2]:
                w.callback(True)
        for w in entry[2]:
            w.callback(True)
        return True
