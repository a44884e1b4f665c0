"""A lean HTTP/1.1 server for the HTTP channel: httptools' parser under a Twisted protocol.

Why not twisted.web: its Request and header objects, line-by-line parsing
and per-request timers cost about 90 µs of CPU per request more than this
module on the 2-core development machine (bench/http_bench.py, 2026-12-01:
662 -> 570 µs per message for the whole path), and the HTTP channel shares
one reactor with the SMPP binds, whose windows wait while it is busy.
The parsing itself is done by httptools (the C parser
behind uvicorn, maintained by MagicStack), which also handles chunked
bodies; this module adds only what the channel needs:

* requests answered one at a time and in order (pipelined requests wait);
* keep-alive as HTTP/1.0 and 1.1 define it, ``Expect: 100-continue``, HEAD;
* ``Upgrade`` offers (h2c, WebSocket) declined: the connection goes on in HTTP/1.1;
* limits: head size, body size (413 before the body is read), idle
  connections closed by a sweep;
* query strings and urlencoded or multipart form bodies as ``args`` (the
  shape twisted.web gives: bytes -> list of bytes);
* a ``Request`` with the few methods the resources use.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import time
import weakref
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from smsd.sendnow import send_now

log = Logger()

MAX_HEAD = 16 * 1024  # request line and headers
_BODY_HEADERS = {b"content-length", b"transfer-encoding"}


class TooLarge(Exception):
    """A request body over the site's limit."""


REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class Request:
    """One HTTP request and the answer being built for it."""

    def __init__(
        self,
        channel: HttpProtocol,
        method: bytes,
        url: bytes,
        version: str,
        headers: dict[bytes, bytes],
    ) -> None:
        self.channel = channel
        self.method = method
        self.uri = url
        parsed = httptools.parse_url(url)
        self.path: bytes = parsed.path or b"/"
        self.query: bytes = parsed.query or b""
        self.version = version
        self.headers = headers
        self.content = io.BytesIO()
        self.keep_alive = True
        self.postpath: list[bytes] = []
        self.code = 200
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.finished = False
        self._args: dict[bytes, list[bytes]] | None = None

    @property
    def args(self) -> dict[bytes, list[bytes]]:
        """Query string and form body parameters (bytes -> values, in order)."""
        if self._args is None:
            args = parse_query(self.query) if self.query else {}
            if self.method == b"POST":
                for k, v in _form(
                    self.headers.get(b"content-type", b""), self.content.getvalue()
                ).items():
                    args.setdefault(k, []).extend(v)
            self._args = args
        return self._args

    def getHeader(self, name: bytes) -> bytes | None:
        return self.headers.get(name.lower())

    def getClientAddress(self) -> Any:
        return self.channel.peer

    @property
    def disconnected(self) -> bool:
        """The client has gone: nothing can be written to it any more."""
        return self.channel.gone

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.response_headers.append((name, value))

    def write(self, data: bytes) -> None:
        self.body.append(data)

    def finish(self) -> None:
        """Send the answer (once); the connection goes on to the next request."""
        if self.finished:
            return
        self.finished = True
        self.channel.answered(self)


def parse_query(raw: bytes) -> dict[bytes, list[bytes]]:
    """A query string or urlencoded body as bytes -> values, the bytes kept as sent
    (the form's ``charset`` says how to read them, later)."""
    fields: dict[bytes, list[bytes]] = {}
    for field in raw.split(b"&"):
        if not field:
            continue
        name, _, value = field.partition(b"=")
        fields.setdefault(_unquote_plus(name), []).append(_unquote_plus(value))
    return fields


def _unquote_plus(raw: bytes) -> bytes:
    """Form decoding of one name or value; most come as they are, and cost nothing.

    Not urllib's parse_qs: it decodes bytes to text and back, a third of the
    channel's time per request in the benchmark."""
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    return unquote_to_bytes(raw) if b"%" in raw else raw


def _form(content_type: bytes, body: bytes) -> dict[bytes, list[bytes]]:
    """The fields of an urlencoded or multipart/form-data body."""
    kind = content_type.split(b";", 1)[0].strip().lower()
    if kind == b"application/x-www-form-urlencoded" and body:
        return parse_query(body)
    if kind == b"multipart/form-data" and body:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type + b"\r\n\r\n" + body
        )
        fields: dict[bytes, list[bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                value = part.get_payload(decode=True) or b""
                fields.setdefault(str(name).encode(), []).append(value)
        return fields
    return {}


class HttpProtocol(Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, site: HttpSite) -> None:
        self.site = site
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.busy: Request | None = None
        self.gone = False
        self.peer: Any = None  # the client's address, asked once per connection
        self.closing = False
        self.last_data = time.monotonic()
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._head_size = 0
        self._request: Request | None = None
        self._too_large = False
        self._last = False  # the connection's last request is in: nothing after it is read
        self._reread = b""  # the head of an upgrade offer with a body, without the offer

    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()

    # Parsing (httptools calls these) -------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        while data and not self.closing and not self._last:
            try:
                self.parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as e:
                # An Upgrade offer (h2c, websocket) is declined by going on in HTTP/1.1
                # (RFC 9110 7.8): httptools stops after the head and skips the body, so
                # a request with a body is read again from its head without the offer.
                data, self._reread = self._reread + data[e.args[0] :], b""
            except httptools.HttpParserCallbackError as e:  # what our callbacks raised
                if isinstance(e.__context__, TooLarge) or self._too_large:
                    self._refuse(413, b"ERROR: request body over %d bytes" % self.site.max_body)
                else:
                    self._refuse(400, b"malformed request")
                return
            except httptools.HttpParserError as e:
                if not self._last:  # else bytes after the last request: not read, not refused
                    why = str(e).encode(errors="replace")[:80]
                    self._refuse(400, b"malformed request: " + why)
                return

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow(len(name) + len(value))
        name = name.lower()
        old = self._headers.get(name)
        self._headers[name] = value if old is None else old + b", " + value

    def _grow(self, n: int) -> None:
        self._head_size += n
        if self._head_size > MAX_HEAD:
            raise httptools.HttpParserError("request head too large")

    def on_headers_complete(self) -> None:
        p = self.parser
        headers = self._headers
        if p.should_upgrade() and b"upgrade" in headers and headers.keys() & _BODY_HEADERS:
            self._reread = b"%s %s HTTP/%s\r\n%s\r\n" % (
                p.get_method(),
                self._url,
                p.get_http_version().encode(),
                b"".join(b"%s: %s\r\n" % kv for kv in headers.items() if kv[0] != b"upgrade"),
            )
            return
        request = Request(self, p.get_method(), self._url, p.get_http_version(), self._headers)
        request.keep_alive = p.should_keep_alive()
        self._request = request
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.site.max_body:
            # Refused before the body is read (with Expect: 100-continue it is never sent).
            self._too_large = True
            raise TooLarge()
        if (
            self._headers.get(b"expect", b"").lower() == b"100-continue"
            and not self.queue
            and self.busy is None
        ):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        r = self._request
        if r is not None:
            if r.content.tell() + len(body) > self.site.max_body:
                self._too_large = True
                raise TooLarge()  # a chunked body that grows past the limit
            r.content.write(body)

    def on_message_complete(self) -> None:
        request, self._request = self._request, None
        if request is None:
            return
        request.content.seek(0)
        if not request.keep_alive:
            self._last = True
        self.queue.append(request)
        if self.busy is None:
            self._next()

    # Answering -----------------------------------------------------------------

    def _next(self) -> None:
        while self.busy is None and self.queue and not self.gone:
            request = self.busy = self.queue.popleft()
            try:
                self.site.handle(request)
            except Exception:
                log.failure("HTTP request {path} failed", path=request.path)
                if not request.finished:
                    self._simple(request, 500, b"internal error (logged)\n")

    def answered(self, request: Request) -> None:
        if request is not self.busy:
            return
        self.busy = None
        if not self.gone:
            body = b"".join(request.body)
            close = not request.keep_alive or self.closing
            head = [b"HTTP/1.1 %d %s\r\n" % (request.code, REASONS.get(request.code, b"Unknown"))]
            for name, value in request.response_headers:
                head.append(name + b": " + value + b"\r\n")
            head.append(
                b"content-length: %d\r\ndate: %s\r\nserver: smsd\r\n"
                % (len(body), self.site.date())
            )
            if close:
                head.append(b"connection: close\r\n")
            elif request.version == "1.0":  # HTTP/1.0 keep-alive is asked for, and confirmed
                head.append(b"connection: keep-alive\r\n")
            head.append(b"\r\n")
            if request.method != b"HEAD":
                head.append(body)
            send_now(self.transport, b"".join(head))
            if close:
                self.closing = True
                self.transport.loseConnection()
                return
        self._next()

    def _simple(self, request: Request, code: int, text: bytes) -> None:
        request.response_headers = [(b"content-type", b"text/plain; charset=utf-8")]
        request.body = [text]
        request.code = code
        request.finished = True
        self.answered(request)

    def _refuse(self, code: int, why: bytes) -> None:
        """A request that cannot be parsed: answer, then close (the stream is lost).

        A request still being handled gets its own answer first (it may have been
        committed: the client must hear so), then the connection closes; requests
        queued behind it were not started and are dropped with the connection."""
        self.closing = True
        self.queue.clear()
        if self.busy is not None:
            return  # answered() writes its answer, then closes
        if not self.gone:
            text = why + b"\n"
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (code, REASONS.get(code, b"Error"), len(text), text)
            )
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.gone = True
        self.queue.clear()


@implementer(IProtocolNegotiationFactory)
class HttpSite(Factory):
    """Routes requests to handlers by path prefix, and owns the limits."""

    def __init__(
        self,
        routes: dict[tuple[bytes, ...], Any],
        *,
        max_body: int,
        idle_timeout: float,
        reactor: Any,
        not_found: Callable[[Request], None],
    ) -> None:
        self.routes = sorted(routes.items(), key=lambda kv: -len(kv[0]))
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.reactor = reactor
        self.not_found = not_found
        self._routed: dict[bytes, tuple[Callable[[Request], None], tuple[bytes, ...]]] = {}
        self.channels: weakref.WeakSet[HttpProtocol] = weakref.WeakSet()
        self._sweep = LoopingCall(self._close_idle)
        self._sweep.clock = reactor
        self._date_second = -1
        self._date = b""

    def acceptableProtocols(self) -> list[bytes]:
        """For TLS: the ALPN answer (clients offer h2 first; we speak HTTP/1.1)."""
        return [b"http/1.1"]

    def buildProtocol(self, addr: Any) -> HttpProtocol:
        protocol = HttpProtocol(self)
        protocol.factory = self
        self.channels.add(protocol)
        return protocol

    def handle(self, request: Request) -> None:
        route = self._routed.get(request.path)
        if route is None:
            route = self._route(request.path)
            if len(self._routed) >= 1024:  # paths with ids in them: keep the cache small
                self._routed.clear()
            self._routed[request.path] = route
        render, postpath = route
        request.postpath = list(postpath)
        render(request)

    def _route(self, path: bytes) -> tuple[Callable[[Request], None], tuple[bytes, ...]]:
        segments = [unquote_to_bytes(s) for s in path.split(b"/") if s]
        for prefix, handler in self.routes:
            if tuple(segments[: len(prefix)]) == prefix:
                return handler.render, tuple(segments[len(prefix) :])
        return self.not_found, ()

    def date(self) -> bytes:
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._date = formatdate(second, usegmt=True).encode()
        return self._date

    def startFactory(self) -> None:
        if not self._sweep.running:
            self._sweep.start(max(1.0, self.idle_timeout / 4), now=False)

    def stopFactory(self) -> None:
        if self._sweep.running:
            self._sweep.stop()

    def _close_idle(self) -> None:
        limit = time.monotonic() - self.idle_timeout
        for channel in list(self.channels):
            if channel.last_data < limit and channel.busy is None and channel.transport:
                channel.transport.loseConnection()
