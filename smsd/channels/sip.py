"""SIP MESSAGE (RFC 3428): desk phones, softphones and PBXs text phones through smsd.

``MESSAGE sip:+15551234567@sms.example.org`` (or ``tel:``, ``;user=phone``) with a
text/plain body becomes an SMS; 202 Accepted is answered once it is committed.
Users authenticate with SIP digest (the stored HA1, never the password); a PBX
in ``[smsd] trusted_networks`` sends for its users, who are named by From.
REGISTER records where a user's phone is (``sip_bindings`` in the store), so that
an answer from a phone comes back to it as a MESSAGE from
``sip:+<sender>@<domain>`` (the :class:`SipDestination` of InboxDelivery),
retransmitted over UDP by the RFC 3261 timers until answered; no binding, or no
answer, and it falls back to the user's mailbox.

The wire is ``protocols/sip.py``; this module is what SIP means for SMS.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from protocols import sip
from smsd import numbers
from smsd.channels.trust import Network, is_trusted
from smsd.config import SipSection
from smsd.core.submit import Refused, Submitter
from smsd.core.users import Directory, account_problem
from smsd.model import Inbound, Submission, User
from smsd.store.sip import Binding

log = Logger()

ALLOW = "MESSAGE, OPTIONS, REGISTER"


@attrs.frozen
class SipContext:
    """What the SIP channel needs from the rest of smsd (handed in by service.py)."""

    submitter: Submitter
    directory: Directory
    store: Any  # sip_bindings / sip_register
    settings: SipSection
    domain: str
    realm: str
    default_country: str
    trusted_networks: Sequence[Network]
    # Is a gateway up for (number, user, pinned gateway)? None: do not ask.
    reachable: Callable[[str, str | None, str | None], bool] | None = None
    secret: bytes = attrs.field(factory=lambda: os.urandom(32))  # signs nonces


@attrs.frozen
class Source:
    """Where a request came from, and how to answer it."""

    transport: str  # "udp" or "tcp"
    host: str
    port: int
    send: Callable[[bytes], None]

    @property
    def reliable(self) -> bool:
        return self.transport == "tcp"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Answer(Exception):
    """A final response decided early (raised by the checks)."""

    def __init__(self, status: int, reason: str | None = None, **headers: str) -> None:
        super().__init__(reason or sip.REASONS.get(status, ""))
        self.status = status
        self.reason = reason
        self.headers = [(k.replace("_", "-"), v) for k, v in headers.items()]


class SipCore:
    """The UAS for MESSAGE, REGISTER and OPTIONS, and the UAC for MESSAGEs to phones,
    over whichever transport brought the bytes."""

    def __init__(self, context: SipContext, reactor: Any) -> None:
        self.context = context
        self.settings = context.settings
        self.reactor = reactor
        self.transactions = sip.ServerTransactions()
        self.clients: dict[str, tuple[sip.ClientTransaction, Deferred[bool], Any]] = {}
        self.udp: Any = None  # the UDP port we send MESSAGEs from (the first one listened on)
        self.tcp: dict[str, Any] = {}  # "host:port" -> open TCP connection (our SipStream)
        self.timers: dict[str, Any] = {}  # branch -> the client transaction's next tick
        self._expiry: Any = None

    # Incoming -----------------------------------------------------------------------

    def received(self, message: sip.Request | sip.Response, source: Source) -> None:
        if isinstance(message, sip.Response):
            self._response(message)
            return
        now = self.reactor.seconds()
        try:
            sorted_ = self.transactions.receive(message, now)
        except sip.SipError as e:
            self._send(source, sip.make_response(message, e.status, e.reason))
            return
        self._schedule_expiry()
        if isinstance(sorted_, sip.Absorbed):
            return
        if isinstance(sorted_, sip.Resend):
            self._send(source, sorted_.response)
            return
        _stamp_via(message, source)
        d = ensureDeferred(self._handle(message, source))
        d.addErrback(self._crashed, message)
        d.addCallback(self._answer, sorted_.key, source)

    def refused(self, error: sip.SipError, source: Source) -> None:
        """A message that did not parse: answered when it was a readable request."""
        request = error.message
        if isinstance(request, sip.Request) and request.method != "ACK":
            with contextlib.suppress(sip.SipError):  # not even enough headers to answer
                self._send(source, sip.make_response(request, error.status, error.reason))

    def _answer(self, response: sip.Response, key: sip.ServerKey, source: Source) -> None:
        try:
            self.transactions.respond(
                key, response, self.reactor.seconds(), reliable=source.reliable
            )
        except ValueError:
            return  # the transaction expired meanwhile: the client gave up
        self._send(source, response)

    def _crashed(self, failure: Failure, request: sip.Request) -> sip.Response:
        log.failure("SIP {method} failed", failure, method=request.method)
        return sip.make_response(request, 500, "Server Internal Error")

    def _send(self, source: Source, message: sip.Request | sip.Response) -> None:
        try:
            source.send(sip.serialize(message))
        except Exception:
            log.failure("sending a SIP message to {to}", to=str(source))

    def _schedule_expiry(self) -> None:
        if self._expiry is not None and self._expiry.active():
            return
        deadline = self.transactions.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self.reactor.seconds())
            self._expiry = self.reactor.callLater(delay + 0.01, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        self.transactions.expire(self.reactor.seconds())
        self._schedule_expiry()

    async def _handle(self, request: sip.Request, source: Source) -> sip.Response:
        try:
            sip.check_request(request)
            if request.method == "MESSAGE":
                return await self._message(request, source)
            if request.method == "REGISTER":
                return await self._register(request, source)
            if request.method == "OPTIONS":
                headers = [("Allow", ALLOW), ("Accept", "text/plain")]
                return sip.make_response(request, 200, headers=headers)
            raise Answer(405, Allow=ALLOW)
        except Answer as a:
            return sip.make_response(request, a.status, a.reason, headers=a.headers)
        except sip.SipError as e:
            return sip.make_response(request, e.status, e.reason)

    # MESSAGE ------------------------------------------------------------------------

    async def _message(self, request: sip.Request, source: Source) -> sip.Response:
        user, reply_to = await self._sender(request, source)  # 401 before looking further
        text = self._text(request, source)
        number = self._number(request)
        reachable = self.context.reachable
        name = user.name if user else None
        if self.settings.when_down == "refuse" and reachable and not reachable(number, name, None):
            raise Answer(
                503,
                "No gateway is up to send it",
                Retry_After=str(int(self.settings.retry_after)),
            )
        sub = Submission(
            recipients=(number,),
            text=text,
            channel="sip",
            reply_to=reply_to,
            origin=f"sip from {source} ({request.headers.get('From', '')[:120]})",
        )
        try:
            accepted = await self.context.submitter.submit(
                sub, user, maxmsgs=self.settings.maxmsgs, truncate=self.settings.truncate
            )
        except Refused as e:
            raise _answer_for(e, self.settings.retry_after) from None
        ids = ",".join(str(a.id) for a in accepted)
        return sip.make_response(request, 202, headers=[("X-SMS-Id", ids)])

    def _text(self, request: sip.Request, source: Source) -> str:
        kind = (request.headers.get("Content-Type") or "text/plain").lower()
        media, *params = [p.strip() for p in kind.split(";")]
        if media != "text/plain":
            raise Answer(415, "Only text/plain can become an SMS", Accept="text/plain")
        limit = self.settings.max_body if source.reliable else self.settings.max_body_udp
        if len(request.body) > limit:
            raise Answer(413, f"Body over {limit} bytes")
        charset = "utf-8"
        for p in params:
            name, _, value = p.partition("=")
            if name.strip() == "charset":
                charset = value.strip().strip('"') or "utf-8"
        try:
            text = request.body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            raise Answer(415, f"Body is not {charset}", Accept="text/plain;charset=UTF-8") from None
        if not text.strip():
            raise Answer(400, "Empty text")
        return text

    def _number(self, request: sip.Request) -> str:
        raw = sip.target_number(request)
        if raw is None:
            raise Answer(404, "Not a phone number")
        try:
            return numbers.normalise(raw, self.context.default_country)
        except numbers.NumberError as e:
            raise Answer(484, f"Address incomplete: {e}") from None

    async def _sender(self, request: sip.Request, source: Source) -> tuple[User | None, str]:
        """Who sends, and where replies go: a digest-authenticated user (replies to their
        registered phones), or from a trusted PBX the user named by From (replies to the
        From URI, through the PBX)."""
        from_uri = sip.parse_address(request.headers.get("From") or "").uri
        if from_uri is None:
            raise Answer(400, "From is no address")
        if request.headers.get("Authorization") is None and is_trusted(
            source.host, self.context.trusted_networks
        ):
            user = await self.context.directory.get(from_uri.user) if from_uri.user else None
            if user is not None:
                self._check_account(user)
            return user, str(from_uri)[:200]
        user = await self._authenticated(request)
        return user, f"sip:{user.name}@{self.context.domain}"

    async def _authenticated(self, request: sip.Request) -> User:
        """The user whose digest this request carries, or a 401 (403 for a user who may
        not send)."""
        value = request.headers.get("Authorization")
        now = self.reactor.seconds()
        if value is None:
            raise self._challenge(now)
        try:
            credentials = sip.parse_authorization(value)
        except sip.SipError:
            raise self._challenge(now) from None
        name = credentials.username or ""
        user = await self.context.directory.get(name) if name else None
        ha1 = user.sip_ha1 if user is not None else None
        check = sip.NonceCheck.BAD
        if ha1 is not None and credentials.realm == self.context.realm:
            check = sip.authenticate(
                credentials,
                ha1,
                request.method,
                realm=self.context.realm,
                secret=self.context.secret,
                now=now,
                lifetime=self.settings.nonce_lifetime,
            )
        if check is sip.NonceCheck.STALE:
            raise self._challenge(now, stale=True)
        if check is not sip.NonceCheck.OK or user is None:
            log.info("SIP digest for {name!r} refused", name=name[:64])
            raise self._challenge(now)
        self._check_account(user)
        return user

    def _challenge(self, now: float, stale: bool = False) -> Answer:
        nonce = sip.make_nonce(self.context.secret, now)
        value = sip.make_challenge(self.context.realm, nonce, stale=stale)
        return Answer(401, WWW_Authenticate=value)

    def _check_account(self, user: User) -> None:
        problem = account_problem(user)
        if problem is not None:
            raise Answer(403, f"{user.name}: {problem}")

    # REGISTER -----------------------------------------------------------------------

    async def _register(self, request: sip.Request, source: Source) -> sip.Response:
        user = await self._authenticated(request)
        aor = sip.parse_address(request.headers.get("To") or "").uri
        if aor is None or (aor.user or "").lower() != user.name.lower():
            raise Answer(403, f"{user.name} may not register that address")
        now = self.reactor.seconds()
        call_id = request.call_id or ""
        cseq, _ = request.cseq
        default = _int(request.headers.get("Expires"), int(self.settings.register_max))
        changes: list[Binding] = []
        remove_all = False
        for value in request.headers.getall("Contact"):
            if value.strip() == "*":
                if default != 0 or len(request.headers.getall("Contact")) != 1:
                    raise Answer(400, "Contact: * needs Expires: 0 and no other Contact")
                remove_all = True
                continue
            contact = sip.parse_address(value)
            if contact.uri is None:
                raise Answer(400, "Contact: * needs Expires: 0 and no other Contact")
            expires = contact.expires if contact.expires is not None else default
            if 0 < expires < self.settings.register_min:
                raise Answer(
                    423, "Interval Too Brief", Min_Expires=str(int(self.settings.register_min))
                )
            expires = min(expires, int(self.settings.register_max))
            changes.append(
                Binding(
                    str(contact.uri),
                    now + expires if expires else now,
                    source.transport,
                    str(source),
                    call_id,
                    cseq,
                )
            )
        current = await self.context.store.sip_register(user.name, changes, remove_all, now)
        headers = [("Contact", f"<{b.contact}>;expires={int(b.expires_at - now)}") for b in current]
        return sip.make_response(request, 200, headers=[*headers, ("Date", _http_date(now))])

    # Outgoing MESSAGE ---------------------------------------------------------------

    def send_message(
        self, uri: str, sender: str, text: str, transport: str, source: str
    ) -> Deferred[bool]:
        """A MESSAGE to a phone: True on a 2xx, False on any other final answer or none.

        Over UDP from our own port (so the answer finds us); over TCP only on the
        connection the phone registered on, while it is open (phones behind a NAT
        accept no new connection). A host name is resolved without blocking the
        reactor (no SRV or NAPTR: a phone's Contact is an address).
        """
        return ensureDeferred(self._send_message(uri, sender, text, transport, source))

    async def _send_message(
        self, uri: str, sender: str, text: str, transport: str, source: str
    ) -> bool:
        try:
            target = sip.parse_uri(uri)
        except sip.SipError:
            return False
        connection = self.tcp.get(source) if transport == "tcp" else None
        if connection is None and self.udp is None:
            return False
        host, port = target.host.strip("[]"), target.port or 5060
        if connection is not None:
            host, port = connection.peer.host, connection.peer.port
        elif not _is_address(host):
            try:
                host = await self.reactor.resolve(host)
            except Exception as e:
                log.warn("cannot resolve {host}: {why}", host=host, why=str(e))
                return False
        local = connection.local if connection is not None else self._local_for(host)
        request = sip.make_message(
            uri,
            text,
            from_address=f"sip:{sender}@{self.context.domain}",
            via_host=local[0],
            via_port=local[1],
            transport="TCP" if connection is not None else "UDP",
        )
        tx = sip.ClientTransaction(request, reliable=connection is not None)
        done: Deferred[bool] = Deferred()
        branch = request.top_via.branch or ""

        def write(data: bytes) -> None:
            if connection is not None:
                connection.transport.write(data)
            else:
                self.udp.write(data, (host, port))

        self.clients[branch] = (tx, done, write)
        self._step(branch, tx.start(self.reactor.seconds()))
        return await done

    def _local_for(self, host: str) -> tuple[str, int]:
        """Our address as the phone sees it, for the Via (no packet is sent)."""
        address = self.udp.getHost()
        if address.host not in ("0.0.0.0", "::"):
            return address.host, address.port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((host, 9))
                return s.getsockname()[0], address.port
            except OSError:
                return "127.0.0.1", address.port

    def _step(self, branch: str, step: sip.Step) -> None:
        entry = self.clients.get(branch)
        if entry is None:
            return
        tx, done, write = entry
        if step.send is not None:
            try:
                write(sip.serialize(step.send))
            except Exception:
                log.failure("sending a MESSAGE")
        if step.final is not None and not done.called:
            done.callback(200 <= step.final.status < 300)
        if step.timed_out and not done.called:
            done.callback(False)
        timer = self.timers.pop(branch, None)
        if timer is not None and timer.active():
            timer.cancel()
        if tx.done or step.wake is None:
            self.clients.pop(branch, None)
            return
        delay = max(0.0, step.wake - self.reactor.seconds())
        self.timers[branch] = self.reactor.callLater(delay, self._tick, branch)

    def _tick(self, branch: str) -> None:
        self.timers.pop(branch, None)
        entry = self.clients.get(branch)
        if entry is not None:
            self._step(branch, entry[0].tick(self.reactor.seconds()))

    def _response(self, response: sip.Response) -> None:
        try:
            branch = response.top_via.branch or ""
        except sip.SipError:
            return
        entry = self.clients.get(branch)
        if entry is None or not entry[0].matches(response):
            return
        self._step(branch, entry[0].receive(response, self.reactor.seconds()))

    def stop(self) -> None:
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        for timer in self.timers.values():
            if timer.active():
                timer.cancel()
        self.timers.clear()
        for _, done, _ in list(self.clients.values()):
            if not done.called:
                done.callback(False)
        self.clients.clear()


def _answer_for(e: Refused, retry_after: float) -> Answer:
    if e.kind == Refused.UNAVAILABLE:
        return Answer(503, e.reason, Retry_After=str(int(retry_after)))
    if e.kind in (Refused.FORBIDDEN, Refused.QUOTA):
        return Answer(403, e.reason)
    if "more than maxmsgs" in e.reason:
        return Answer(413, e.reason)
    return Answer(400, e.reason)


def _stamp_via(request: sip.Request, source: Source) -> None:
    """Tell the sender where its request came from (RFC 3261 18.2.1 ``received``, RFC 3581
    ``rport``), in the top Via the response copies: a phone behind a NAT learns its
    outside address."""
    value = request.headers.get("Via")
    if value is None:
        return
    try:
        via = sip.parse_via(value)
    except sip.SipError:
        return
    stamped = value
    if "rport" in via.params and via.params["rport"] is None:
        stamped = re.sub(r";\s*rport(?=\s*(;|$))", f";rport={source.port}", stamped, count=1)
        stamped += f";received={source.host}"
    elif via.host.strip("[]") != source.host and "received" not in via.params:
        stamped += f";received={source.host}"
    if stamped != value:
        request.headers.set_first("Via", stamped)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        raise Answer(400, f"Expires: {value!r} is not a number") from None


def _http_date(now: float) -> str:
    return email.utils.formatdate(now, usegmt=True)


# Transports ---------------------------------------------------------------------------------


class SipDatagram(DatagramProtocol):
    def __init__(self, core: SipCore) -> None:
        self.core = core

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if sip.is_keepalive(datagram):
            return
        host, port = addr[0], addr[1]
        source = Source("udp", host, port, lambda data: self.transport.write(data, (host, port)))
        try:
            message = sip.parse(datagram, max_body=max(self.core.settings.max_body_udp, 8192))
        except sip.SipError as e:
            self.core.refused(e, source)
            return
        self.core.received(message, source)


class SipStream(Protocol):
    """One TCP connection: Content-Length framing; a phone that registered on it is
    sent its MESSAGEs on it while it lasts."""

    def __init__(self, core: SipCore) -> None:
        self.core = core
        self.parser = sip.StreamParser(max_body=core.settings.max_body)
        self.peer: Any = None
        self.local: tuple[str, int] = ("127.0.0.1", 0)

    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()
        host = self.transport.getHost()
        self.local = (host.host, host.port)
        self.core.tcp[f"{self.peer.host}:{self.peer.port}"] = self

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        key = f"{self.peer.host}:{self.peer.port}" if self.peer else ""
        if self.core.tcp.get(key) is self:
            del self.core.tcp[key]

    def dataReceived(self, data: bytes) -> None:
        source = Source("tcp", self.peer.host, self.peer.port, self.transport.write)
        try:
            messages = self.parser.feed(data)
        except sip.SipError as e:
            self.core.refused(e, source)
            self.transport.loseConnection()  # framing is lost: nothing after it can be trusted
            return
        for message in messages:
            if isinstance(message, sip.Ping):
                self.transport.write(sip.PONG)
                continue
            self.core.received(message, source)


class SipStreamFactory(Factory):
    def __init__(self, core: SipCore) -> None:
        self.core = core

    def buildProtocol(self, addr: Any) -> SipStream:
        return SipStream(self.core)


class SipUdpService(Service):
    """Listens on one UDP port (``udp:5060[:interface=...]``)."""

    def __init__(self, core: SipCore, reactor: Any, port: int, interface: str) -> None:
        self.core = core
        self.reactor = reactor
        self.port_number = port
        self.interface = interface
        self.port: Any = None

    def privilegedStartService(self) -> None:
        """The port is taken here, where smsd checks that every channel's port can be had."""
        super().privilegedStartService()
        if self.port is None:
            self.port = self.reactor.listenUDP(
                self.port_number, SipDatagram(self.core), interface=self.interface
            )
            if self.core.udp is None:
                self.core.udp = self.port

    def startService(self) -> None:
        super().startService()
        if self.port is None:
            self.privilegedStartService()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        self.core.stop()
        if self.core.udp is self.port:
            self.core.udp = None
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None


class SipDestination:
    """Inbound SMS to a user's registered phones (and to a PBX that sent for them)."""

    scheme = "sip"

    def __init__(self, core: SipCore) -> None:
        self.core = core

    def addresses(self, user: User) -> Deferred[list[str]]:
        d = self.core.context.store.sip_bindings(user.name, self.core.reactor.seconds())
        return d.addCallback(
            lambda found: [f"sip:{user.name}@{self.core.context.domain}"] if found else []
        )

    def deliver(self, inbound: Inbound, address: str, text: str) -> Deferred[bool]:
        return ensureDeferred(self._deliver(inbound, address, text))

    async def _deliver(self, inbound: Inbound, address: str, text: str) -> bool:
        sender = inbound.sender.replace(" ", "")
        uri = sip.parse_uri(address)
        if (uri.host or "").lower() == self.core.context.domain.lower() and uri.user:
            # One of our users: every registered phone of theirs, newest first, until one takes it.
            found = await self.core.context.store.sip_bindings(
                uri.user, self.core.reactor.seconds()
            )
            for b in found:
                if await self.core.send_message(b.contact, sender, text, b.transport, b.source):
                    return True
            return False
        return await self.core.send_message(address, sender, text, "udp", "")
