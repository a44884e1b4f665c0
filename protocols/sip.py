"""SIP (RFC 3261) for a MESSAGE (RFC 3428) front-end, sans-IO: message model, UDP and TCP
framing, serializer, URIs and name-addrs, digest authentication and non-INVITE transactions.

Why not :mod:`twisted.protocols.sip`: it follows RFC 2543, knows UDP only, sends no To-tag and
counts Content-Length in characters, so a UTF-8 body makes it lie about the length. This module
is what an SMS gateway needs from SIP and no more: no dialogs, no INVITE, no proxying.

Values: the start line and headers are ``str`` (SIP is UTF-8 throughout), bodies are ``bytes``.
:class:`Headers` is an ordered multi-map with case-insensitive names in which compact forms are
already expanded and comma lists (where RFC 3261 allows them) already split, so code looks up
``"Via"`` and gets every hop, never ``"v"`` or one line with three hops.

One error type for what the peer did wrong: :class:`SipError`, whose ``status`` is the response
to answer a request with (400, 413, 416, 505, 513...). ``ValueError`` is our own misuse. Nothing
here does I/O, reads a clock or imports Twisted: times are arguments, randomness (tags, branches)
comes from :mod:`secrets`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Iterator
from typing import Final

import attrs

__all__ = [
    "COMPACT",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_HEADER",
    "LIST_HEADERS",
    "MAGIC_COOKIE",
    "PONG",
    "REASONS",
    "T1",
    "T2",
    "T4",
    "UDP_MESSAGE_LIMIT",
    "Absorbed",
    "Address",
    "ClientState",
    "ClientTransaction",
    "Credentials",
    "Headers",
    "Message",
    "NewRequest",
    "NonceCheck",
    "Ping",
    "Request",
    "Resend",
    "Response",
    "ServerTransactions",
    "SipError",
    "Step",
    "StreamParser",
    "Uri",
    "Via",
    "authenticate",
    "canonical_name",
    "check_message",
    "check_nonce",
    "check_request",
    "digest_response",
    "ha1",
    "is_keepalive",
    "make_challenge",
    "make_message",
    "make_nonce",
    "make_request",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse",
    "parse_address",
    "parse_authorization",
    "parse_uri",
    "parse_via",
    "phone_number",
    "serialize",
    "server_key",
    "split_list",
    "target_number",
    "verify_digest",
]

T1: Final = 0.5
"""RTT estimate (s), RFC 3261 §17.1.1.1: the first retransmission interval."""
T2: Final = 4.0
"""Longest retransmission interval of a non-INVITE request (s)."""
T4: Final = 5.0
"""Longest time a message stays in the network (s): how long a client absorbs retransmitted
final responses (Timer K)."""
MAGIC_COOKIE: Final = "z9hG4bK"
"""Prefix of an RFC 3261 branch; without it the request came from an RFC 2543 element."""
DEFAULT_MAX_HEADER: Final = 16 * 1024
"""Longest start line plus headers accepted (bytes); longer answers 513."""
DEFAULT_MAX_BODY: Final = 64 * 1024
"""Longest body accepted (bytes); longer answers 413."""
UDP_MESSAGE_LIMIT: Final = 1300
"""RFC 3428 §5: a MESSAGE outside a session must not exceed this over a transport without
congestion control (UDP). Enforcing it is the caller's policy."""
PONG: Final = b"\r\n"
"""The answer to an RFC 5626 double-CRLF keep-alive :class:`Ping` on a stream."""

REASONS: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}
"""Reason phrases of RFC 3261 §21 (and 202 from RFC 3265/3428)."""


class SipError(Exception):
    """What the peer sent is not acceptable SIP. ``status`` is what to answer a request with;
    ``reason`` is one line for the log (and a fine reason phrase or Warning text). ``message``
    is the request or response as far as it was understood (headers parsed, body rejected), so
    the caller can still build a response; None when not even the headers made sense."""

    def __init__(self, status: int, reason: str, message: Request | Response | None = None) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {REASONS.get(self.status, '')}: {self.reason}"


# --- headers -------------------------------------------------------------------------------------

COMPACT: Final[dict[str, str]] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
"""Compact header names (RFC 3261 §7.3.3 and later extensions) and what they stand for."""

_KNOWN = [
    *COMPACT.values(),
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Authentication-Info",
    "Authorization",
    "Call-Info",
    "Content-Disposition",
    "Content-Language",
    "CSeq",
    "Date",
    "Error-Info",
    "Expires",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Reason",
    "Record-Route",
    "Reply-To",
    "Require",
    "Retry-After",
    "Route",
    "Server",
    "Service-Route",
    "Timestamp",
    "Unsupported",
    "User-Agent",
    "Warning",
    "WWW-Authenticate",
]
_CANONICAL = {name.lower(): name for name in _KNOWN}
_CANONICAL.update(COMPACT)

LIST_HEADERS: Final = frozenset(
    name.lower()
    for name in (
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Reject-Contact",
        "Require",
        "Route",
        "Service-Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    )
)
"""Headers whose grammar is a comma list (``#element``, RFC 3261 §7.3.1): one line with
``a, b`` means two values. Not the auth headers (commas separate parameters there), nor
Date (commas inside a value)."""


def canonical_name(name: str) -> str:
    """The spelling we use for a header name: compact forms expanded, known names in RFC case,
    others as given."""
    return _CANONICAL.get(name.lower(), name)


class Headers:
    """An ordered multi-map of header values: names compare case-insensitively and compact
    forms are expanded on the way in; every value is its own entry (a comma list arrives split
    by :func:`parse`) and goes out on its own line."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        key = canonical_name(name).lower()
        for n, v in self._items:
            if n.lower() == key:
                return v
        return default

    def getall(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = canonical_name(name).lower()
        return [v for n, v in self._items if n.lower() == key]

    def add(self, name: str, value: str) -> None:
        """Append a value (after any others of the same name)."""
        self._items.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by one, where the first one was (else at the end)."""
        name = canonical_name(name)
        key = name.lower()
        out: list[tuple[str, str]] = []
        done = False
        for n, v in self._items:
            if n.lower() != key:
                out.append((n, v))
            elif not done:
                out.append((name, value))
                done = True
        if not done:
            out.append((name, value))
        self._items = out

    def set_first(self, name: str, value: str) -> None:
        """Replace the first value of ``name`` only (a proxy's or registrar's edit of the
        top Via); add it if there is none."""
        key = canonical_name(name).lower()
        for i, (n, _) in enumerate(self._items):
            if n.lower() == key:
                self._items[i] = (n, value)
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        """Drop every value of ``name`` (none is fine)."""
        key = canonical_name(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def copy(self) -> Headers:
        return Headers(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def split_list(value: str) -> list[str]:
    """A comma list split into its elements, commas inside ``"..."`` (with ``\\`` escapes) and
    ``<...>`` left alone, empty elements dropped."""
    out: list[str] = []
    start = 0
    quoted = angle = False
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == "," and not angle:
            out.append(value[start:i])
            start = i + 1
        i += 1
    out.append(value[start:])
    return [part.strip(" \t") for part in out if part.strip(" \t")]


# --- messages ------------------------------------------------------------------------------------


def _headers_field() -> Headers:
    return Headers()


class _HeaderViews:
    """What requests and responses both read from their headers."""

    headers: Headers

    @property
    def call_id(self) -> str | None:
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method) of the CSeq header. Raises :class:`SipError` (400)."""
        return _cseq(self.headers, self)  # type: ignore[arg-type]

    @property
    def top_via(self) -> Via:
        """The topmost Via: the hop that sent this. Raises :class:`SipError` (400)."""
        value = self.headers.get("Via")
        if value is None:
            raise SipError(400, "no Via", self)  # type: ignore[arg-type]
        return parse_via(value)


@attrs.define(eq=True)
class Request(_HeaderViews):
    """A SIP request. ``uri`` is the Request-URI as text (see :func:`parse_uri`)."""

    method: str
    uri: str
    headers: Headers = attrs.field(factory=_headers_field)
    body: bytes = b""


@attrs.define(eq=True)
class Response(_HeaderViews):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers = attrs.field(factory=_headers_field)
    body: bytes = b""


def _cseq(headers: Headers, message: Request | Response) -> tuple[int, str]:
    value = headers.get("CSeq")
    match = _CSEQ.fullmatch(value or "")
    if match is None:
        raise SipError(400, f"bad CSeq {value!r}", message)
    number = int(match[1])
    if number >= 2**31:
        raise SipError(400, f"CSeq number {number} too big", message)
    return number, match[2]


Message = Request | Response


# --- parsing -------------------------------------------------------------------------------------

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) (\S+) (SIP/\d+\.\d+)")
_STATUS_LINE = re.compile(r"(SIP/\d+\.\d+) ([1-6]\d\d) ?(.*)")
_HEADER_NAME = re.compile(_TOKEN)
_CSEQ = re.compile(rf"(\d{{1,10}})[ \t]+({_TOKEN})")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")
_DIGITS = re.compile(r"\d{1,10}")


def _parse_head(head: bytes) -> Request | Response:
    """The start line and headers (no blank line) into a message with an empty body."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError(400, "headers are not UTF-8") from None
    lines = _LINE_END.split(text)
    start = lines[0]
    message: Request | Response
    match = _REQUEST_LINE.fullmatch(start)
    if match is not None:
        if match[3].upper() != "SIP/2.0":
            raise SipError(505, f"version {match[3]}")
        message = Request(match[1], match[2])
    else:
        match = _STATUS_LINE.fullmatch(start)
        if match is None:
            raise SipError(400, f"bad start line {start[:80]!r}")
        if match[1].upper() != "SIP/2.0":
            raise SipError(505, f"version {match[1]}")
        if "\r" in match[3] or "\x00" in match[3]:
            raise SipError(400, "bad reason phrase")
        message = Response(int(match[2]), match[3])
    folded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not folded:
                raise SipError(400, "continuation line before any header")
            folded[-1] += " " + line.strip(" \t")
        elif line:
            folded.append(line)
    headers = message.headers
    for line in folded:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _HEADER_NAME.fullmatch(name):
            raise SipError(400, f"bad header line {line[:80]!r}")
        if "\r" in value or "\x00" in value:
            raise SipError(400, f"control character in {name}")
        value = value.strip(" \t")
        if canonical_name(name).lower() in LIST_HEADERS:
            for v in split_list(value) or [""]:  # "Supported:" may be empty
                headers.add(name, v)
        else:
            headers.add(name, value)
    return message


def _content_length(message: Request | Response) -> int | None:
    values = message.headers.getall("Content-Length")
    if not values:
        return None
    if len(set(values)) > 1 or not _DIGITS.fullmatch(values[0]):
        raise SipError(400, f"bad Content-Length {values!r}", message)
    return int(values[0])


def parse(
    datagram: bytes,
    *,
    max_header: int = DEFAULT_MAX_HEADER,
    max_body: int = DEFAULT_MAX_BODY,
) -> Request | Response:
    """One message from a UDP datagram. Content-Length is optional (the body is the rest of
    the datagram); a body longer than it is cut to it (RFC 3261 §18.3), a shorter one means the
    datagram was truncated (400). Raises :class:`SipError`."""
    datagram = bytes(datagram)
    while datagram.startswith(b"\r\n"):  # stray keep-alive CRLFs before the start line
        datagram = datagram[2:]
    match = _BLANK_LINE.search(datagram, 0, max_header + 4)
    if match is None:
        if len(datagram) > max_header:
            raise SipError(513, f"headers over {max_header} bytes")
        head, body = datagram.rstrip(b"\r\n"), b""  # no blank line: tolerated, no body
    else:
        head, body = datagram[: match.start()], datagram[match.end() :]
        if match.start() > max_header:
            raise SipError(513, f"headers over {max_header} bytes")
    if not head:
        raise SipError(400, "empty message")
    message = _parse_head(head)
    length = _content_length(message)
    if length is not None:
        if length > len(body):
            raise SipError(400, f"Content-Length {length}, body {len(body)} bytes", message)
        body = body[:length]
    if len(body) > max_body:
        raise SipError(413, f"body of {len(body)} bytes, limit {max_body}", message)
    message.body = body
    return message


def is_keepalive(datagram: bytes) -> bool:
    """True for a UDP keep-alive (only CR/LF, as Linphone and others send): drop it, no
    answer."""
    return not datagram.strip(b"\r\n")


@attrs.frozen
class Ping:
    """An RFC 5626 double-CRLF keep-alive on a stream: answer with :data:`PONG`."""


class StreamParser:
    """Cuts a TCP/TLS byte stream into messages framed by Content-Length (required on a
    stream: RFC 3261 §18.3). CRLFs between messages are skipped; a double CRLF there is an
    RFC 5626 keep-alive and yields :class:`Ping`.

    :meth:`feed` raises :class:`SipError` when framing is lost (bad headers, no or bad
    Content-Length, limits exceeded): answer it if you can (``error.message``), then close;
    the parser starts afresh. As with :func:`parse`, what the messages say is not checked:
    run :func:`check_request` on each."""

    def __init__(
        self, *, max_header: int = DEFAULT_MAX_HEADER, max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        self.max_header = max_header
        self.max_body = max_body
        self._buf = bytearray()
        self._scanned = 0  # bytes of the head already searched for the blank line
        self._pending: Request | Response | None = None  # head parsed, body awaited
        self._need = 0

    @property
    def buffered(self) -> int:
        """Bytes received that do not make a whole message yet."""
        return len(self._buf)

    def _reset(self) -> None:
        self._buf.clear()
        self._scanned = 0
        self._pending = None

    def feed(self, data: bytes) -> list[Request | Response | Ping]:
        """Every whole message (or keep-alive) now available, in order."""
        self._buf += data
        out: list[Request | Response | Ping] = []
        buf = self._buf
        while True:
            if self._pending is not None:
                if len(buf) < self._need:
                    return out
                message, self._pending = self._pending, None
                message.body = bytes(buf[: self._need])
                del buf[: self._need]
                out.append(message)
                continue
            # between messages: CRLF keep-alives
            if buf[:1] == b"\r" or buf[:1] == b"\n":
                if buf[:4] == b"\r\n\r\n":
                    del buf[:4]
                    out.append(Ping())
                    continue
                if b"\r\n\r\n".startswith(bytes(buf[:4])):
                    return out  # maybe a ping, wait for more
                del buf[: 2 if buf[:2] == b"\r\n" else 1]  # a lone CRLF (or LF, CR): skip
                continue
            if not buf:
                return out
            match = _BLANK_LINE.search(buf, max(0, self._scanned - 3))
            if match is None or match.start() > self.max_header:
                if len(buf) > self.max_header + 4:
                    self._reset()
                    raise SipError(513, f"headers over {self.max_header} bytes")
                self._scanned = len(buf)
                return out
            head = bytes(buf[: match.start()])
            del buf[: match.end()]
            self._scanned = 0
            try:
                message = _parse_head(head)
                length = _content_length(message)
            except SipError:
                self._reset()
                raise
            if length is None:
                self._reset()
                raise SipError(400, "no Content-Length on a stream", message)
            if length > self.max_body:
                self._reset()
                raise SipError(413, f"body of {length} bytes, limit {self.max_body}", message)
            self._pending, self._need = message, length


# --- validation ----------------------------------------------------------------------------------


def check_message(message: Request | Response) -> None:
    """Raises :class:`SipError` (400) when a mandatory header (RFC 3261 §8.1.1) is missing or
    malformed: Via (requests), From, To, Call-ID, CSeq (whose method must be the request's),
    Max-Forwards if present."""
    headers = message.headers
    for name in ("From", "To", "Call-ID", "CSeq"):
        if headers.get(name) is None:
            raise SipError(400, f"no {name}", message)
    _, method = _cseq(headers, message)
    if isinstance(message, Request):
        if headers.get("Via") is None:
            raise SipError(400, "no Via", message)
        if method != message.method:
            raise SipError(400, f"CSeq method {method} is not {message.method}", message)
        forwards = headers.get("Max-Forwards")
        if forwards is not None and not _DIGITS.fullmatch(forwards):
            raise SipError(400, f"bad Max-Forwards {forwards!r}", message)


def check_request(request: Request) -> None:
    """:func:`check_message`, plus the parts a UAS reads: the top Via, From and To parse."""
    check_message(request)
    request.top_via  # noqa: B018  (parses, raises)
    for name in ("From", "To"):
        value = request.headers.get(name)
        assert value is not None
        try:
            parse_address(value)
        except SipError as e:
            raise SipError(e.status, f"{name}: {e.reason}", request) from None


# --- serializing ---------------------------------------------------------------------------------


def serialize(message: Request | Response) -> bytes:
    """The message on the wire: one header line per value, in order, and Content-Length in
    bytes (replacing any given, where it was; else last)."""
    if isinstance(message, Request):
        start = f"{message.method} {message.uri} SIP/2.0"
    else:
        start = f"SIP/2.0 {message.status} {message.reason}"
    headers = message.headers.copy()
    headers.set("Content-Length", str(len(message.body)))
    lines = [start]
    for name, value in headers:
        if "\r" in value or "\n" in value:
            raise ValueError(f"{name}: line break in value")
        lines.append(f"{name}: {value}")
    lines.append("")
    lines.append("")
    return "\r\n".join(lines).encode("utf-8") + message.body


def new_tag() -> str:
    """A From/To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return secrets.token_hex(8)


def new_branch() -> str:
    """A Via branch: the magic cookie and 96 random bits, unique across space and time."""
    return MAGIC_COOKIE + secrets.token_hex(12)


def new_call_id(host: str) -> str:
    """A Call-ID ``random@host``."""
    return f"{secrets.token_hex(12)}@{host}"


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """The response to ``request`` per RFC 3261 §8.2.6: every Via in order, From, To (with
    ``to_tag`` added if it has no tag yet: a fresh one if None; never on 100), Call-ID, CSeq,
    and Timestamp on 100; then ``headers``. Content-Length is :func:`serialize`'s job."""
    out = Headers()
    for value in request.headers.getall("Via"):
        out.add("Via", value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "To" and status != 100 and _tag_of(value) is None:
            value = f"{value};tag={to_tag or new_tag()}"
        out.add(name, value)
    if status == 100:
        stamp = request.headers.get("Timestamp")
        if stamp is not None:
            out.add("Timestamp", stamp)
    for name, value in headers:
        out.add(name, value)
    return Response(status, reason if reason is not None else REASONS.get(status, ""), out, body)


def _tag_of(value: str) -> str | None:
    try:
        return parse_address(value).tag
    except SipError:
        return None


def _bracket(address: str) -> str:
    """A URI as a name-addr (``<uri>``); an address already in that form as is."""
    return address if "<" in address else f"<{address}>"


def make_request(
    method: str,
    uri: str,
    *,
    from_address: str,
    to_address: str,
    via_host: str,
    via_port: int | None = None,
    transport: str = "UDP",
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str | None = None,
    branch: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Request:
    """A request for our UAC side with the headers RFC 3261 §8.1.1 requires: Via with a
    fresh branch and ``rport`` (RFC 3581, for the NATs between us and a phone), Max-Forwards
    70, From with a tag, To, Call-ID, CSeq; then ``headers``."""
    sent_by = via_host if via_port is None else f"{via_host}:{via_port}"
    out = Headers(
        [
            ("Via", f"SIP/2.0/{transport.upper()} {sent_by};branch={branch or new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{_bracket(from_address)};tag={from_tag or new_tag()}"),
            ("To", _bracket(to_address)),
            ("Call-ID", call_id or new_call_id(via_host)),
            ("CSeq", f"{cseq} {method}"),
        ]
    )
    for name, value in headers:
        out.add(name, value)
    return Request(method, uri, out, body)


def make_message(
    uri: str,
    text: str,
    *,
    from_address: str,
    to_address: str | None = None,
    via_host: str,
    via_port: int | None = None,
    transport: str = "UDP",
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str | None = None,
    branch: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Request:
    """A MESSAGE (RFC 3428) carrying ``text`` as text/plain UTF-8 to ``uri`` (a registered
    contact); To defaults to the same URI. No Contact: MESSAGE makes no dialog."""
    return make_request(
        "MESSAGE",
        uri,
        from_address=from_address,
        to_address=to_address or uri,
        via_host=via_host,
        via_port=via_port,
        transport=transport,
        call_id=call_id,
        cseq=cseq,
        from_tag=from_tag,
        branch=branch,
        headers=[("Content-Type", "text/plain;charset=UTF-8"), *headers],
        body=text.encode("utf-8"),
    )


# --- URIs, addresses, Via ------------------------------------------------------------------------

_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+")


def _unescape(text: str) -> str:
    """``%XX`` escapes decoded (as UTF-8); a stray ``%`` is kept."""
    if "%" not in text:
        return text

    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%" and re.fullmatch(r"[0-9A-Fa-f]{2}", text[i + 1 : i + 3]):
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            raw += text[i].encode("utf-8")
            i += 1
    return raw.decode("utf-8", "replace")


def _params(text: str, message: str) -> dict[str, str | None]:
    """``;a=b;c`` (leading ``;`` optional) into {name (lower case): value or None}."""
    out: dict[str, str | None] = {}
    for part in text.split(";"):
        part = part.strip(" \t")
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip(" \t").lower()
        if not name:
            raise SipError(400, f"empty parameter name in {message!r}")
        out[name] = value.strip(" \t") if eq else None
    return out


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@attrs.frozen
class Uri:
    """A ``sip:``/``sips:``/``tel:`` URI. ``user`` is unescaped (None when absent; for tel: the
    number); ``host`` is "" for tel:; parameter names are lower case."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = attrs.field(factory=dict)
    headers: dict[str, str] = attrs.field(factory=dict)
    password: str | None = None

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{_format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user if self.password is None else f"{self.user}:{self.password}"
            userinfo += "@"
        port = "" if self.port is None else f":{self.port}"
        query = "&".join(f"{k}={v}" for k, v in self.headers.items())
        return f"{self.scheme}:{userinfo}{self.host}{port}{_format_params(self.params)}" + (
            f"?{query}" if query else ""
        )


def parse_uri(text: str) -> Uri:
    """A sip:, sips: or tel: URI (RFC 3261 §19.1, RFC 3966). Raises :class:`SipError`: 416
    for another scheme, 400 for a malformed URI."""
    text = text.strip(" \t")
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or not re.fullmatch(r"[a-z][a-z0-9+\-.]*", scheme):
        raise SipError(400, f"not a URI: {text[:80]!r}")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise SipError(400, f"tel: URI without a number: {text[:80]!r}")
        return Uri("tel", _unescape(number), "", None, _params(params, text))
    if scheme not in ("sip", "sips"):
        raise SipError(416, f"unsupported URI scheme {scheme}")
    rest, _, query = rest.partition("?")
    user = password = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user_raw, _, pw = userinfo.partition(":")
        if not user_raw:
            raise SipError(400, f"empty user part in {text[:80]!r}")
        user = _unescape(user_raw)
        password = _unescape(pw) if ":" in userinfo else None
    hostport, _, params = rest.partition(";")
    match = re.fullmatch(r"(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?", hostport)
    if match is None or not _HOST.fullmatch(match[1]):
        raise SipError(400, f"bad host in {text[:80]!r}")
    port = int(match[2]) if match[2] else None
    if port is not None and port > 65535:
        raise SipError(400, f"bad port in {text[:80]!r}")
    headers: dict[str, str] = {}
    for part in query.split("&") if query else ():
        name, _, value = part.partition("=")
        headers[_unescape(name)] = _unescape(value)
    return Uri(scheme, user, match[1].lower(), port, _params(params, text), headers, password)


@attrs.frozen
class Address:
    """A From/To/Contact value: display name (None if absent), URI, header parameters
    (lower-case names: ``tag``, ``expires``, ``q``...). ``uri`` is None for Contact ``*``."""

    display: str | None
    uri: Uri | None
    params: dict[str, str | None] = attrs.field(factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        value = self.params.get("expires")
        return int(value) if value is not None and value.isdigit() else None

    def __str__(self) -> str:
        if self.uri is None:
            return "*"
        display = "" if self.display is None else _quote(self.display) + " "
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(text: str) -> str:
    """A quoted-string's content (without the quotes), escapes resolved."""
    return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.S)


_QUOTED = r'"(?:[^"\\]|\\.)*"'
_NAME_ADDR = re.compile(rf"\s*({_QUOTED}|[^<\"]*?)\s*<([^>]*)>(.*)", re.S)


def parse_address(value: str) -> Address:
    """A name-addr (``"Bob" <sip:bob@x>;tag=1``) or addr-spec (``sip:bob@x;tag=1``: then the
    ``;params`` belong to the header, not the URI, RFC 3261 §20.10). Raises
    :class:`SipError` (400, or 416 for a URI scheme we do not speak)."""
    value = value.strip(" \t")
    if value == "*":
        return Address(None, None, {})
    match = _NAME_ADDR.fullmatch(value)
    if match is not None:
        display_raw, uri_text, rest = match[1], match[2], match[3].strip(" \t")
        if rest and not rest.startswith(";"):
            raise SipError(400, f"junk after <uri> in {value[:80]!r}")
        display: str | None
        if display_raw.startswith('"'):
            display = _unquote(display_raw)
        else:
            display = display_raw.strip(" \t") or None
        return Address(display, parse_uri(uri_text), _params(rest, value))
    if '"' in value or "<" in value or ">" in value:
        raise SipError(400, f"bad address {value[:80]!r}")
    uri_text, _, params = value.partition(";")
    if "?" in uri_text:
        raise SipError(400, f"URI headers need <...>: {value[:80]!r}")
    return Address(None, parse_uri(uri_text), _params(params, value))


@attrs.frozen
class Via:
    """A parsed Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = attrs.field(factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        """(host, port) with the transport's default port filled in, for comparisons."""
        default = 5061 if self.transport in ("TLS", "WSS") else 5060
        return self.host.lower(), self.port if self.port is not None else default


_VIA = re.compile(
    r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-]+)\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
    r"(?:\s*:\s*(\d{1,5}))?\s*((?:;.*)?)",
    re.I | re.S,
)


def parse_via(value: str) -> Via:
    """One Via value (use :meth:`Headers.getall` for every hop). Raises :class:`SipError`."""
    match = _VIA.fullmatch(value.strip(" \t"))
    if match is None:
        raise SipError(400, f"bad Via {value[:80]!r}")
    port = int(match[3]) if match[3] else None
    if port is not None and port > 65535:
        raise SipError(400, f"bad port in Via {value[:80]!r}")
    return Via(match[1].upper(), match[2], port, _params(match[4], value))


_SEPARATORS = str.maketrans("", "", "-.() ")


def phone_number(uri: Uri | str) -> str | None:
    """The phone number candidate a URI names: the number of a tel: URI, or the user part of a
    sip:/sips: URI (up to any ``;isub``/``;phone-context``), visual separators (``- . ( )``
    space) removed; a leading ``+`` kept. None if anything but digits is left. Normalising it
    (country prefix...) is someone else's job."""
    if isinstance(uri, str):
        try:
            uri = parse_uri(uri)
        except SipError:
            return None
    if uri.user is None:
        return None
    number = uri.user.partition(";")[0].translate(_SEPARATORS)
    plus = number.startswith("+")
    digits = number[1:] if plus else number
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    return ("+" if plus else "") + digits


def target_number(request: Request) -> str | None:
    """The number a request is for, as OpenSIPS' ``sms`` module finds it: the Request-URI's
    user part, else the To URI's (when the R-URI has no user part)."""
    try:
        uri = parse_uri(request.uri)
    except SipError:
        return None
    if uri.user is not None:
        return phone_number(uri)
    to = request.headers.get("To")
    if to is None:
        return None
    try:
        address = parse_address(to)
    except SipError:
        return None
    return phone_number(address.uri) if address.uri is not None else None


# --- digest authentication -----------------------------------------------------------------------


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def ha1(username: str, realm: str, password: str) -> str:
    """What to store instead of a password: MD5(username:realm:password), hex."""
    return _md5(f"{username}:{realm}:{password}")


def digest_response(
    ha1_hex: str,
    method: str,
    uri: str,
    nonce: str,
    *,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value of RFC 2617 §3.2.2.1 (MD5): with ``qop`` auth or auth-int,
    KD(HA1, nonce:nc:cnonce:qop:HA2); without, the RFC 2069 form KD(HA1, nonce:HA2)."""
    if qop == "auth-int":
        ha2 = _md5(f"{method}:{uri}:{hashlib.md5(body).hexdigest()}")
    else:
        ha2 = _md5(f"{method}:{uri}")
    if qop:
        return _md5(f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1_hex}:{nonce}:{ha2}")


_NONCE = re.compile(r"([0-9a-f]{1,16})\.([0-9a-f]{32})")


def _nonce_mac(secret: bytes, stamp: str) -> str:
    return hmac.new(secret, stamp.encode("ascii"), hashlib.sha256).hexdigest()[:32]


def make_nonce(secret: bytes, now: float) -> str:
    """A nonce that proves itself: ``<seconds, hex>.<HMAC-SHA256(secret, seconds)>``, so
    :func:`check_nonce` needs no table of nonces handed out, and they expire."""
    stamp = f"{int(now):x}"
    return f"{stamp}.{_nonce_mac(secret, stamp)}"


class NonceCheck(enum.StrEnum):
    """What :func:`check_nonce` says: ``ok``, ``stale`` (ours but expired: challenge again
    with ``stale=true``, the client keeps its password) or ``bad`` (not ours)."""

    OK = "ok"
    STALE = "stale"
    BAD = "bad"


def check_nonce(secret: bytes, nonce: str, now: float, lifetime: float) -> NonceCheck:
    """Whether ``nonce`` came from :func:`make_nonce` with ``secret`` and is younger than
    ``lifetime`` seconds. A nonce from the future is bad."""
    match = _NONCE.fullmatch(nonce)
    if match is None or not hmac.compare_digest(match[2], _nonce_mac(secret, match[1])):
        return NonceCheck.BAD
    issued = int(match[1], 16)
    if issued > now:
        return NonceCheck.BAD
    return NonceCheck.STALE if now - issued > lifetime else NonceCheck.OK


def make_challenge(
    realm: str, nonce: str, *, stale: bool = False, opaque: str | None = None
) -> str:
    """A ``WWW-Authenticate`` (401) or ``Proxy-Authenticate`` (407) value: Digest, MD5,
    qop=auth."""
    parts = [f"Digest realm={_quote(realm)}", f"nonce={_quote(nonce)}"]
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    if stale:
        parts.append("stale=true")
    parts += ["algorithm=MD5", 'qop="auth"']
    return ", ".join(parts)


@attrs.frozen
class Credentials:
    """A parsed ``Authorization``/``Proxy-Authorization`` value: the scheme and its
    parameters (lower-case names, values unquoted)."""

    scheme: str
    params: dict[str, str]

    username = property(lambda self: self.params.get("username"))
    realm = property(lambda self: self.params.get("realm"))
    nonce = property(lambda self: self.params.get("nonce"))
    uri = property(lambda self: self.params.get("uri"))
    response = property(lambda self: self.params.get("response"))
    algorithm = property(lambda self: self.params.get("algorithm"))
    cnonce = property(lambda self: self.params.get("cnonce"))
    nc = property(lambda self: self.params.get("nc"))
    qop = property(lambda self: self.params.get("qop"))
    opaque = property(lambda self: self.params.get("opaque"))


_AUTH_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*({_QUOTED}|[^\s,\"]*)\s*(,|$)", re.S)


def parse_authorization(value: str) -> Credentials:
    """``Digest username="..", realm="..", ...`` into :class:`Credentials`. Raises
    :class:`SipError` (400)."""
    value = value.strip(" \t")
    scheme, _, rest = value.partition(" ")
    if not re.fullmatch(_TOKEN, scheme):
        raise SipError(400, f"bad authorization scheme in {value[:80]!r}")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip(" \t")
    while pos < len(rest):
        match = _AUTH_PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            raise SipError(400, f"bad authorization parameters {rest[pos : pos + 80]!r}")
        raw = match[2]
        params[match[1].lower()] = _unquote(raw) if raw.startswith('"') else raw
        pos = match.end()
    return Credentials(scheme, params)


def verify_digest(credentials: Credentials, ha1_hex: str, method: str, *, realm: str) -> bool:
    """Whether the digest ``response`` is right for this HA1: scheme Digest, our realm,
    MD5, qop absent (RFC 2069) or auth/auth-int with nc and cnonce. Constant-time compare. The
    nonce is :func:`check_nonce`'s business (or use :func:`authenticate`)."""
    c = credentials
    if c.scheme.lower() != "digest" or c.realm != realm:
        return False
    if (c.algorithm or "MD5").upper() != "MD5":
        return False
    if c.nonce is None or c.uri is None or c.response is None or c.username is None:
        return False
    qop = c.qop
    if qop is not None and (qop not in ("auth",) or c.nc is None or c.cnonce is None):
        return False
    expected = digest_response(ha1_hex, method, c.uri, c.nonce, qop=qop, nc=c.nc, cnonce=c.cnonce)
    return hmac.compare_digest(expected, c.response.lower())


def authenticate(
    credentials: Credentials,
    ha1_hex: str,
    method: str,
    *,
    realm: str,
    secret: bytes,
    now: float,
    lifetime: float = 300.0,
) -> NonceCheck:
    """A request's credentials checked: ``ok``; ``stale`` when the response is right but the
    nonce expired (challenge again with ``stale=true``); ``bad`` otherwise (wrong password,
    forged nonce: challenge again without stale)."""
    if not verify_digest(credentials, ha1_hex, method, realm=realm):
        return NonceCheck.BAD
    assert credentials.nonce is not None
    return check_nonce(secret, credentials.nonce, now, lifetime)


# --- transactions --------------------------------------------------------------------------------

ServerKey = tuple[str, ...]


def server_key(request: Request) -> ServerKey:
    """The server transaction a request belongs to (RFC 3261 §17.2.3): (branch, sent-by,
    method), ACK counted as INVITE; for an RFC 2543 branch (no magic cookie) the old match on
    Request-URI, tags, Call-ID, CSeq and top Via. Raises :class:`SipError` (400)."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        host, port = via.sent_by
        return ("3261", branch, f"{host}:{port}", method)
    number, _ = request.cseq
    tags = []
    for name in ("To", "From"):
        value = request.headers.get(name) or ""
        tags.append(_tag_of(value) or "")
    return (
        "2543",
        request.uri,
        *tags,
        request.call_id or "",
        str(number),
        method,
        request.headers.get("Via") or "",
    )


@attrs.frozen
class NewRequest:
    """A request no transaction knows: hand it to the application, then answer it with
    :meth:`ServerTransactions.respond`."""

    request: Request
    key: ServerKey


@attrs.frozen
class Resend:
    """A retransmission of a request already answered: send ``response`` again."""

    response: Response


@attrs.frozen
class Absorbed:
    """A retransmission of a request still being worked on, and no provisional sent: drop."""

    request: Request


@attrs.define
class _ServerTx:
    response: Response | None
    deadline: float
    final: bool = False


class ServerTransactions:
    """Non-INVITE server transactions (RFC 3261 §17.2.2), keyed by :func:`server_key`, so a
    retransmitted MESSAGE gets the same response (same To-tag) and is processed once.

    A transaction answered with a final response lingers for Timer J (64*T1 on an unreliable
    transport, 0 on a reliable one) to absorb retransmissions. One still waiting for the
    application is dropped after 64*T1 too: by then the client's Timer F has given up."""

    def __init__(self, t1: float = T1) -> None:
        self.t1 = t1
        self._txs: dict[ServerKey, _ServerTx] = {}

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, key: object) -> bool:
        return key in self._txs

    def receive(self, request: Request, now: float) -> NewRequest | Resend | Absorbed:
        """Sort an incoming request. Raises :class:`SipError` (400) if it has no usable Via or
        CSeq."""
        key = server_key(request)
        tx = self._txs.get(key)
        if tx is None:
            self._txs[key] = _ServerTx(None, now + 64 * self.t1)
            return NewRequest(request, key)
        if tx.response is None:
            return Absorbed(request)
        return Resend(tx.response)

    def respond(
        self, key: ServerKey, response: Response, now: float, *, reliable: bool = False
    ) -> Response:
        """Record the response sent for transaction ``key`` (provisional or final) and return
        it, for sending. Raises ``ValueError`` for an unknown or already finished one."""
        tx = self._txs.get(key)
        if tx is None or tx.final:
            raise ValueError(f"no transaction awaits a response: {key!r}")
        tx.response = response
        if response.status >= 200:
            tx.final = True
            tx.deadline = now + (0.0 if reliable else 64 * self.t1)
        return response

    def next_deadline(self) -> float | None:
        """When :meth:`expire` has something to drop next; None if nothing is kept."""
        return min((tx.deadline for tx in self._txs.values()), default=None)

    def expire(self, now: float) -> list[ServerKey]:
        """Drop transactions whose time is up (Timer J, or no answer within 64*T1)."""
        gone = [key for key, tx in self._txs.items() if tx.deadline <= now]
        for key in gone:
            del self._txs[key]
        return gone


class ClientState(enum.Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


@attrs.frozen
class Step:
    """What a :class:`ClientTransaction` wants: ``send`` this request now (first transmission
    or retransmission) if not None; call :meth:`ClientTransaction.tick` at ``wake`` (None:
    never again); ``final`` is the final response, reported once; ``timed_out`` is Timer F
    (treat as 408)."""

    send: Request | None = None
    wake: float | None = None
    final: Response | None = None
    timed_out: bool = False
    provisional: Response | None = None


class ClientTransaction:
    """A non-INVITE client transaction (RFC 3261 §17.1.2), e.g. a MESSAGE to a registered UA.

    On UDP the request is retransmitted by Timer E (T1, doubling up to T2; every T2 once a
    provisional came) until a final response or Timer F (64*T1: timed out). After the final
    response it absorbs retransmitted ones for Timer K (T4 on UDP, 0 on TCP). Time comes from
    the ``now`` arguments; :attr:`Step.wake` says when to call :meth:`tick` next."""

    def __init__(
        self,
        request: Request,
        *,
        reliable: bool = False,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
    ) -> None:
        self.request = request
        self.reliable = reliable
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.state = ClientState.TRYING
        self.final: Response | None = None
        self.timed_out = False
        self.transmissions = 0
        self._branch = request.top_via.branch
        self._method = request.method
        self._e_at: float | None = None
        self._e_interval = t1
        self._f_at: float | None = None
        self._k_at: float | None = None

    @property
    def done(self) -> bool:
        return self.state is ClientState.TERMINATED

    def _wake(self) -> float | None:
        times = [t for t in (self._e_at, self._f_at, self._k_at) if t is not None]
        return min(times) if times else None

    def start(self, now: float) -> Step:
        """The first transmission: start Timers E (unreliable only) and F."""
        if self.transmissions:
            raise ValueError("transaction already started")
        self.transmissions = 1
        self._f_at = now + 64 * self.t1
        if not self.reliable:
            self._e_at = now + self.t1
        return Step(send=self.request, wake=self._wake())

    def matches(self, response: Response) -> bool:
        """Whether ``response`` belongs here (RFC 3261 §17.1.3: top Via branch and CSeq
        method)."""
        try:
            return response.top_via.branch == self._branch and response.cseq[1] == self._method
        except SipError:
            return False

    def tick(self, now: float) -> Step:
        """Fire the timers due at ``now``."""
        if self.state is ClientState.TERMINATED:
            return Step()
        if self._k_at is not None:
            if now >= self._k_at:
                self._k_at = None
                self.state = ClientState.TERMINATED
            return Step(wake=self._wake())
        if self._f_at is not None and now >= self._f_at:
            self._e_at = self._f_at = None
            self.state = ClientState.TERMINATED
            self.timed_out = True
            return Step(timed_out=True)
        send = None
        if self._e_at is not None and now >= self._e_at:
            send = self.request
            self.transmissions += 1
            if self.state is ClientState.PROCEEDING:
                self._e_interval = self.t2
            else:
                self._e_interval = min(2 * self._e_interval, self.t2)
            self._e_at += self._e_interval
            if self._e_at <= now:  # called late: do not burst to catch up
                self._e_at = now + self._e_interval
        return Step(send=send, wake=self._wake())

    def receive(self, response: Response, now: float) -> Step:
        """A response for this transaction (check :meth:`matches` first). A provisional moves
        to Proceeding; the first final one is reported in :attr:`Step.final`; later ones are
        absorbed."""
        if self.state in (ClientState.COMPLETED, ClientState.TERMINATED):
            return Step(wake=self._wake())
        if response.status < 200:
            self.state = ClientState.PROCEEDING
            return Step(wake=self._wake(), provisional=response)
        self.final = response
        self._e_at = self._f_at = None
        if self.reliable:
            self.state = ClientState.TERMINATED
        else:
            self.state = ClientState.COMPLETED
            self._k_at = now + self.t4
        return Step(wake=self._wake(), final=response)
