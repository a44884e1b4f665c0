"""The UCP/EMI gateway: SMS out as OT 51, MO (OT 52) and delivery notifications (OT 53) in.

One ``[[gateway]]`` of type ``ucp`` is one TCP connection to the operator's SMSC (the
"large account" interface of CMG/LogicaCMG SMSCs), driven by ``protocols.ucp.EsmeSession``,
and optionally a second connection to the SMSC's inbound port for SMSCs that deliver
OT 52/53 only there. This module adds the I/O, the timers and what the gateway decides:

* OT 60 login when ``login`` is set (IP-authenticated links send none); a refused login
  (NACK 07) is a health state with the SMSC's words and a wait of ``login_refused_delay``,
  not a retry storm;
* at most ``window`` (<= 100, the TRN space) OT 51 unacknowledged; OT 31 on an idle link;
* an OT 51 whose ACK does not come in ``ack_timeout`` is never sent again blindly on the
  same link (the classic UCP duplicate storm): the link stops taking new submits, waits for
  the rest of its window, and reconnects; the unanswered submit counts as sent unconfirmed
  (``unanswered = "assume-sent"``) or goes back to the queue (``"resend"``). A result that
  comes late is logged and counted for the reconciliation (``late``);
* NACKs by EC: throttling-like codes (04 by default) pause the link and requeue without an
  attempt, temporary ones retry, the rest fail the part;
* GSM text as IRA (MT 3), UCS-2 and 8-bit as MT 4 with the DCS in XSer, UDH in XSer;
* OT 52/53 answered only once what they carry is committed; OT 53 found by the provider id
  ``AdC:SCTS`` of the submit's ACK (recipient and SMSC time stamp);
* reconnect with exponential back-off and jitter; on shutdown the window drains first.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from protocols import ucp
from smsd.configschema import ConfigError, Duration, between, one_of, setting
from smsd.gateways.base import (
    Gateway,
    GatewayEvents,
    Health,
    all_or_timeout,
    check_within_send_timeout,
)
from smsd.gateways.link import ReconnectingLink
from smsd.gateways.smpp import from_address, split_udh
from smsd.model import Message, OutPart, PartResult, Report, State
from smsd.sendnow import send_now

log = Logger()

HOLD_WHILE_PAUSED = 1.0  # seconds a paused link keeps what waits for it
MO_NOT_STORED = ucp.Error.OPERATION_NOT_ALLOWED  # temporary: the SMSC delivers it again

NOTIFICATION_STATES: dict[int, State] = {
    ucp.DeliveryStatus.DELIVERED: State.DELIVERED,
    ucp.DeliveryStatus.BUFFERED: State.SENT,  # intermediate: the phone is not reachable yet
    ucp.DeliveryStatus.NOT_DELIVERED: State.FAILED,
}


def _codes(value: list[int]) -> None:
    for code in value:
        if not 0 <= code <= 99:
            raise ValueError(f"NACK error codes are 0..99, got {code}")


def _backlog(value: int) -> None:
    if value < -1:
        raise ValueError(f"must be -1 (automatic) or more, got {value}")


@attrs.frozen
class Options:
    host: str = setting(doc="the SMSC's host name or address")
    port: int = setting(doc="the SMSC's port", check=between(1, 65535))
    login: str = setting("", "the account (OAdC of OT 60); empty: the SMSC authenticates by IP")
    password: str = setting("", "the account's password (never logged)")
    inbound_port: int = setting(
        0,
        "the SMSC's port for OT 52/53 on a second connection (some SMSCs deliver only"
        " there); 0: everything on the main connection",
        between(0, 65535),
    )
    keepalive: Duration = setting(Duration(30), "OT 31 after this long idle; 0: never")
    ack_timeout: Duration = setting(
        Duration(30),
        "an operation with no result after this is lost: the link reconnects"
        " (shorter than send_timeout)",
    )
    unanswered: str = setting(
        "assume-sent",
        "an OT 51 whose result never came: assume-sent (never send twice) or resend",
        one_of("assume-sent", "resend"),
    )
    reconnect_min: Duration = setting(Duration(1), "first reconnect delay")
    reconnect_max: Duration = setting(Duration(60), "longest reconnect delay")
    login_refused_delay: Duration = setting(Duration(300), "wait after the SMSC refused the login")
    throttle_delay: Duration = setting(
        Duration(1), "first pause of a link told to slow down (doubles)"
    )
    backlog: int = setting(
        -1,
        "messages held ready beyond the window, so that a free TRN never waits for the"
        " store; -1: four windows",
        _backlog,
    )
    notifications: bool = setting(True, "ask for delivery notifications (NRq, NT)")
    notify_types: int = setting(
        7, "NT bitmask: 1 delivered, 2 not delivered, 4 buffered", between(1, 7)
    )
    notification_address: str = setting(
        "AdC",
        "the OT 53 field with the original recipient: AdC (the EMI specification) or OAdC"
        " (what some SMSCs and Kannel use)",
        one_of("AdC", "OAdC"),
    )
    throttling_errors: list[int] = setting(
        factory=lambda: [int(ucp.Error.OPERATION_NOT_ALLOWED)],
        doc="NACK codes that mean 'too fast': pause and requeue without an attempt",
        check=_codes,
    )
    temporary_errors: list[int] = setting(
        factory=list, doc="NACK codes to retry besides the usual ones", check=_codes
    )
    permanent_errors: list[int] = setting(
        factory=list, doc="NACK codes never to retry (override the usual ones)", check=_codes
    )
    max_frame: int = setting(
        ucp.DEFAULT_MAX_LENGTH, "longest frame accepted from the SMSC", between(64, 99999)
    )


def provider_id(adc: str, scts: str) -> str:
    """``AdC:SCTS`` with the address in one form: SMSCs write ``0046...``, ``+46...`` or
    ``46...`` for the same recipient in an ACK and in the notification."""
    adc = adc.removeprefix("+")
    if adc.startswith("00"):
        adc = adc[2:]
    return ucp.message_id(adc, scts)


def _number(value: str, default_country: str, *, international: bool = False) -> str:
    """An address the SMSC sent, in our form: ``00`` or OTOA 1139 is international."""
    if international or value.startswith("00"):
        return from_address(value.removeprefix("00"), 1, default_country)
    return from_address(value, 0, default_country)


def _words(text: str) -> str:
    """Text that fits in a UCP field (our NACK's SM)."""
    return "".join(c if " " <= c <= "~" and c != "/" else " " for c in text)[:60]


@attrs.define
class _Submission:
    """One OT 51 on its way: the part it carries and the message's collector."""

    part: OutPart
    fields: dict[str, str]
    result: _MessageResult


@attrs.define
class _MessageResult:
    """Collects the answers for every part of one message, then fires."""

    message: Message
    deferred: Deferred[list[PartResult]]
    waiting: int
    results: dict[int, PartResult] = attrs.field(factory=dict)

    def set(self, result: PartResult) -> None:
        if result.seq in self.results:
            return
        self.results[result.seq] = result
        self.waiting -= 1
        if self.waiting == 0:
            self.deferred.callback([self.results[p.seq] for p in self.message.parts])


class UcpGateway(Gateway):
    type = "ucp"

    def __init__(
        self,
        gateway_id: str,
        events: GatewayEvents,
        options: Options,
        reactor: Any,
        *,
        sender: str = "",
        default_country: str = "US",
    ) -> None:
        super().__init__(gateway_id, events, sender=sender)
        self.options = options
        self.reactor = reactor
        self.default_country = default_country
        temporary = set(ucp.TEMPORARY_ERRORS) | set(options.temporary_errors)
        self.permanent = frozenset(options.permanent_errors)
        self.temporary = frozenset(temporary - self.permanent)
        self.throttling = frozenset(options.throttling_errors) - self.permanent
        self.queue: deque[_Submission] = deque()
        self.main = _Link(self, "main", options.port)
        self.links = [self.main]
        if options.inbound_port:
            self.links.append(_Link(self, "inbound", options.inbound_port))
        self.counters = {
            "submitted": 0,
            "notifications": 0,
            "mo": 0,
            "throttled": 0,
            "unanswered": 0,
            "late": 0,
            "nacked_by_us": 0,
        }
        self.window = ucp.DEFAULT_WINDOW  # set from the [[gateway]] window by in_flight_limit()
        self._pump_call: Any = None

    # Life ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for link in self.links:
            link.connect()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        d: Deferred[None] = Deferred()
        deadline = self.reactor.seconds() + 10

        def wait() -> None:  # let the window drain (UCP has no logout), then close
            busy = self.queue or self.main.submits_outstanding()
            if busy and self.main.ready and self.reactor.seconds() < deadline:
                self.reactor.callLater(0.05, wait)
                return
            if self._pump_call is not None and self._pump_call.active():
                self._pump_call.cancel()
            self._pump_call = None
            for link in self.links:
                link.shutdown()
            self._fail_queue("the gateway stopped before sending")
            self.set_health(Health.DOWN, "stopped")
            all_or_timeout([link.closed for link in self.links], self.reactor, 5.0).addBoth(
                lambda _: d.callback(None)
            )

        wait()
        return d

    def in_flight_limit(self, window: int) -> int:
        """The TRN window on the wire plus a backlog ready behind it, as for SMPP."""
        self.window = min(window, ucp.MAX_WINDOW)
        backlog = self.options.backlog if self.options.backlog >= 0 else 4 * self.window
        return self.window + backlog

    def status(self) -> dict[str, Any]:
        return {
            "links": [link.status() for link in self.links],
            "ucp_window": self.window,
            "queued": len(self.queue),
            **self.counters,
        }

    def link_changed(self) -> None:
        """A link came up or went down: health is whether the main link can send."""
        if self.main.ready:
            self.set_health(Health.UP)
        else:
            self.set_health(Health.DOWN, self.main.problem or "not connected")
            # Never sent: back to the queue at once, for this link or another gateway.
            self._fail_queue(f"not sent: {self.health_reason}")
        self._schedule_pump()

    # Sending ---------------------------------------------------------------

    def send(self, message: Message) -> Deferred[list[PartResult]]:
        d: Deferred[list[PartResult]] = Deferred()
        result = _MessageResult(message, d, len(message.parts))
        for part in message.parts:
            try:
                fields = self._fields(message, part)
            except ucp.FieldError as e:
                result.set(
                    PartResult(part.seq, False, status=f"cannot encode: {e}", temporary=False)
                )
                continue
            self.queue.append(_Submission(part, fields, result))
        if not self.main.ready:
            self._fail_queue(f"not sent: {self.health_reason or 'not connected'}")
        self._schedule_pump()
        return d

    def _fields(self, message: Message, part: OutPart) -> dict[str, str]:
        """OT 51 fields of one part: MT 3 for GSM text, MT 4 with XSer DCS otherwise."""
        o = self.options
        sender = message.sender or self.default_sender or ""
        notify = o.notify_types if o.notifications and message.registered_delivery else 0
        pid = message.pid or None
        udh = part.udh or None
        if part.text is not None and message.encoding != "ucs2":
            dcs = message.dcs if message.dcs not in (0, None) else None
            return ucp.make_submit(
                message.recipient, sender, part.text, udh=udh, dcs=dcs, notify=notify, pid=pid
            )
        if part.text is not None:
            data, dcs = part.text.encode("utf-16-be"), message.dcs or 0x08
        else:
            data, dcs = part.data or b"", message.dcs or 0x04
        return ucp.make_submit(
            message.recipient, sender, data=data, udh=udh, dcs=dcs, notify=notify, pid=pid
        )

    def _schedule_pump(self) -> None:
        if self._pump_call is None:
            self._pump_call = self.reactor.callLater(0, self._pump)

    def _pump(self) -> None:
        """Hand queued submissions to the main link while its window has room."""
        self._pump_call = None
        link = self.main
        now = self.reactor.seconds()
        while self.queue and link.can_submit(now):
            link.submit(self.queue.popleft(), now)
        if self.queue and link.ready and link.paused_until > now:
            wait = link.paused_until - now
            if wait > HOLD_WHILE_PAUSED:
                # Held here they would outlast the dispatcher's send timeout: back to the
                # queue, no attempt counted.
                self._fail_queue("the SMSC asked to slow down; back in the queue")
            else:
                self._pump_call = self.reactor.callLater(wait, self._pump)

    def _fail_queue(self, why: str) -> None:
        """Submissions never sent: requeued without counting an attempt."""
        while self.queue:
            s = self.queue.popleft()
            s.result.set(PartResult(s.part.seq, False, status=why, temporary=True, throttled=True))

    def acked(self, s: _Submission, event: ucp.Acked) -> None:
        self.counters["submitted"] += 1
        ident = ucp.split_message_id(event.id) if event.id else None
        pid = provider_id(*ident) if ident else None
        status = None if pid else f"ACK without AdC:SCTS ({event.message!r}): no notification"
        s.result.set(PartResult(s.part.seq, True, provider_id=pid, status=status))

    def nacked(self, s: _Submission, error: int, message: str) -> bool:
        """The SMSC refused one OT 51; True when it asked us to slow down."""
        words = f"NACK {ucp.error_name(error)}" + (f": {message}" if message else "")
        if error in self.throttling:
            self.counters["throttled"] += 1
            s.result.set(
                PartResult(s.part.seq, False, status=words, temporary=True, throttled=True)
            )
            return True
        temporary = error not in self.permanent and (
            error in self.temporary or ucp.is_temporary(error)
        )
        s.result.set(PartResult(s.part.seq, False, status=words, temporary=temporary))
        return False

    def unanswered(self, s: _Submission, why: str) -> None:
        """No result will come on this connection for this OT 51 (timeout, lost link)."""
        self.counters["unanswered"] += 1
        if self.options.unanswered == "resend":
            result = PartResult(s.part.seq, False, status=f"{why}; sent again", temporary=True)
        else:
            result = PartResult(s.part.seq, True, status=f"{why}; assumed accepted, not sent again")
        s.result.set(result)

    def late(self, event: ucp.Late) -> None:
        """A result for an OT 51 already given up: what became of it, for the log."""
        s = event.pending.ref
        if not isinstance(s, _Submission):
            return
        self.counters["late"] += 1
        r = event.result
        resent = self.options.unanswered == "resend"
        if r.ack:
            what = "sent twice: it was resent" if resent else "assumed sent, and it was"
            log.warn(
                "gateway {id}: late ACK {sm} for message {mid} part {seq}: {what}",
                id=self.id,
                sm=r.message,
                mid=s.result.message.id,
                seq=s.part.seq,
                what=what,
            )
        else:
            assert r.error is not None
            what = "resent" if resent else "assumed sent, but it was not"
            log.error(
                "gateway {id}: late NACK {ec} for message {mid} part {seq}: {what}",
                id=self.id,
                ec=ucp.error_name(r.error),
                mid=s.result.message.id,
                seq=s.part.seq,
                what=what,
            )

    # Receiving -------------------------------------------------------------

    def mo(self, link: _UcpProtocol, event: ucp.MoReceived) -> None:
        """OT 52 (or 01): committed, then ACKed on the connection it came on."""
        try:
            d = self._mo(event.operation)
        except (ucp.FieldError, UnicodeDecodeError) as e:
            self.counters["nacked_by_us"] += 1
            log.warn("gateway {id}: an MO that does not decode: {e}", id=self.id, e=e)
            link.answer(event.trn, ucp.Error.SYNTAX_ERROR, _words(str(e)))
            return
        self._answer_when(d, link, event.trn, "an MO")

    def notification(self, link: _UcpProtocol, event: ucp.NotificationReceived) -> None:
        """OT 53: committed as a report, then ACKed."""
        self.counters["notifications"] += 1
        n = event.notification
        adc = event.operation.get(self.options.notification_address) or n.recipient
        state = NOTIFICATION_STATES.get(int(n.status), State.SENT)
        words = f"Dst:{int(n.status)}" + (f" Rsn:{n.reason:03d}" if n.reason is not None else "")
        report = Report(self.id, provider_id(adc, n.scts), state, words, self.reactor.seconds())
        self._answer_when(self.events.report(report), link, event.trn, "a notification")

    def _answer_when(self, d: Deferred[Any], link: _UcpProtocol, trn: int, what: str) -> None:
        def failed(f: Failure) -> None:
            log.failure("gateway {id}: {what} was not committed", f, id=self.id, what=what)
            link.answer(trn, MO_NOT_STORED, "not stored, try again")

        d.addCallbacks(lambda _: link.answer(trn), failed)

    def _mo(self, op: ucp.Operation) -> Deferred[Any]:
        m = ucp.read_message(op)
        self.counters["mo"] += 1
        if m.alphanumeric_sender:
            sender = m.sender
        else:
            sender = _number(m.sender, self.default_country, international=op.get("OTOA") == "1139")
        recipient = _number(m.recipient, self.default_country)
        text: str | None
        raw: bytes | None = None
        dcs = m.dcs or 0
        if m.text is not None:
            text, encoding = m.text, "gsm7"
        elif dcs == 0x08 or (dcs & 0xEC) == 0x08:
            text, encoding = (m.data or b"").decode("utf-16-be"), "ucs2"
        else:
            text, raw, encoding = None, m.data or b"", "8bit"
        concat, _ = split_udh(m.udh or b"")
        return self.hand_in(sender, recipient, text, raw, encoding, concat, self.reactor.seconds())


class _Link(ReconnectingLink):
    """One connection to the SMSC: connect, log in, keep alive, time out, reconnect."""

    def __init__(self, gateway: UcpGateway, role: str, port: int) -> None:
        super().__init__(gateway)
        self.gateway: UcpGateway = gateway
        self.role = role  # "main" sends (and receives); "inbound" only receives
        self.port = port
        self.protocol: _UcpProtocol | None = None
        self.ready = False  # connected and, if a login is configured, logged in
        self.draining = False  # an ACK timed out: no new submits, close once answered
        self.paused_until = 0.0
        self.throttle = 0.0
        o = gateway.options
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = self.reactor
        self._tick_every = min(1.0, max(0.05, o.ack_timeout / 4))

    # Connection ------------------------------------------------------------

    def endpoint(self) -> Any:
        o = self.gateway.options
        return HostnameEndpoint(self.reactor, o.host, self.port, timeout=10)

    def new_protocol(self) -> _UcpProtocol:
        return _UcpProtocol(self)

    def changed(self) -> None:
        self.gateway.link_changed()

    def connected(self, protocol: _UcpProtocol) -> None:
        self.protocol = protocol
        self.draining = False
        if self.stopping:  # the connection came after the gateway stopped
            self._close()
            return
        o = self.gateway.options
        if o.login:
            protocol.session.login(o.login, o.password, now=self.reactor.seconds())
            protocol.flush()
        else:
            self._up()
        if not self._ticker.running:
            self._ticker.start(self._tick_every, now=False)

    def _up(self) -> None:
        self.ready, self.problem, self.failures = True, "", 0
        log.info(
            "gateway {id}: {role} connection to the SMSC up", id=self.gateway.id, role=self.role
        )
        self.gateway.link_changed()

    def lost(self, reason: Failure) -> None:
        self.protocol = None
        was_ready, self.ready = self.ready, False
        if self._ticker.running:
            self._ticker.stop()
        if not self.problem or was_ready:
            self.problem = f"connection lost: {reason.getErrorMessage()}"
        if not self.closed.called:
            self.closed.callback(None)
        if self._retry is not None:  # a refused login already set the wait
            self.gateway.link_changed()
            return
        self._again(self.gateway.options.reconnect_min if was_ready else self._backoff())

    def shutdown(self) -> None:
        self._cancel_retry()
        self._close()

    def _close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.loseConnection()

    # Events from the session -------------------------------------------------

    def event(self, e: Any, link: _UcpProtocol) -> None:
        g = self.gateway
        if isinstance(e, ucp.LoggedIn):
            self._up()
        elif isinstance(e, ucp.LoginRefused):
            words = ucp.error_name(e.error)
            self.problem = f"login refused: {words}"
            delay = g.options.login_refused_delay
            log.error(
                "gateway {id}: the SMSC refused the login of {account}: {words};"
                " next try in {delay:g}s",
                id=g.id,
                account=g.options.login,
                words=words,
                delay=delay,
            )
            if self._retry is None and not self.stopping:
                self._retry = self.reactor.callLater(delay, self.connect)
            self._close()
        elif isinstance(e, ucp.Acked):
            if isinstance(e.ref, _Submission):
                self.throttle = 0.0
                g.acked(e.ref, e)
                g._schedule_pump()
        elif isinstance(e, ucp.Nacked):
            if isinstance(e.ref, _Submission):
                if g.nacked(e.ref, e.error, e.message):
                    self._slow_down()
                g._schedule_pump()
            elif e.ot == ucp.OT.ALERT:
                log.info("gateway {id}: OT 31 NACKed ({ec})", id=g.id, ec=ucp.error_name(e.error))
        elif isinstance(e, ucp.Late):
            g.late(e)
        elif isinstance(e, ucp.MoReceived):
            g.mo(link, e)
        elif isinstance(e, ucp.NotificationReceived):
            g.notification(link, e)
        elif isinstance(e, ucp.Alert):
            link.answer(e.trn)
        elif isinstance(e, ucp.PeerError):
            g.counters["nacked_by_us"] += 1
            log.warn("gateway {id}: from the SMSC: {why}", id=g.id, why=e.reason)
        elif isinstance(e, ucp.Stray):
            log.warn(
                "gateway {id}: a result for TRN {trn:02d} that nothing waits for",
                id=g.id,
                trn=e.result.trn,
            )

    def _slow_down(self) -> None:
        o = self.gateway.options
        self.throttle = min(60.0, self.throttle * 2 if self.throttle else o.throttle_delay)
        self.paused_until = self.reactor.seconds() + self.throttle

    def _tick(self) -> None:
        """Lost results, a draining link that can close, and OT 31 on an idle link."""
        p = self.protocol
        if p is None:
            return
        o = self.gateway.options
        now = self.reactor.seconds()
        expired = p.session.expired(now, o.ack_timeout)
        for pending in expired:
            if isinstance(pending.ref, _Submission):
                self.gateway.unanswered(pending.ref, f"no ACK in {o.ack_timeout:g}s")
        if expired:
            self.problem = f"no result in {o.ack_timeout:g}s"
            if not self.draining:
                log.warn(
                    "gateway {id}: {why}; no more submits on this connection, it reconnects",
                    id=self.gateway.id,
                    why=self.problem,
                )
            self.draining = True
            self.ready = False
            self.gateway.link_changed()
        if self.draining:
            if not p.session.outstanding:
                self._close()
            return
        if o.keepalive and p.session.needs_keepalive(now, o.keepalive):
            p.session.keepalive(now=now, adc=o.login)
            p.flush()

    # Sending -----------------------------------------------------------------

    def submits_outstanding(self) -> int:
        if self.protocol is None:
            return 0
        return sum(1 for p in self.protocol.session.outstanding.values() if p.ot == ucp.OT.SUBMIT)

    def can_submit(self, now: float) -> bool:
        return (
            self.ready
            and self.protocol is not None
            and self.submits_outstanding() < self.gateway.window
            and self.protocol.session.can_send
            and now >= self.paused_until
        )

    def submit(self, s: _Submission, now: float) -> None:
        assert self.protocol is not None
        try:
            self.protocol.session.submit(s.fields, now=now, ref=s)
        except ucp.FieldError as e:
            s.result.set(
                PartResult(s.part.seq, False, status=f"cannot encode: {e}", temporary=False)
            )
            return
        self.protocol.flush_soon()

    def status(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "port": self.port,
            "up": self.ready,
            "outstanding": self.submits_outstanding(),
            "problem": self.problem,
        }


class _UcpProtocol(Protocol):
    """Bytes in and out of one connection's session."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        o = link.gateway.options
        self.session = ucp.EsmeSession(
            window=min(link.gateway.window, ucp.MAX_WINDOW), max_length=o.max_frame
        )
        self._flush_call: Any = None

    def connectionMade(self) -> None:
        # Frames are small and the window waits on their ACKs: with Nagle a frame written
        # while another is unacknowledged waits for the peer's delayed TCP ACK (measured on
        # loopback, window 10: 580 -> 1,260 OT 51 a second with it off).
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self.link.connected(self)

    def dataReceived(self, data: bytes) -> None:
        for event in self.session.receive(data, self.link.reactor.seconds()):
            self.link.event(event, self)
        self.flush()

    def answer(self, trn: int, error: int | None = None, message: str = "") -> None:
        """ACK (or NACK with ``error``) the SMSC's operation ``trn`` on this connection;
        nothing if it has closed since (the SMSC will deliver it again)."""
        try:
            now = self.link.reactor.seconds()
            if error is None:
                sent = self.session.ack(trn, now=now)
            else:
                sent = self.session.nack(trn, error, message=message, now=now)
        except ucp.SessionError:
            return
        if sent:
            self.flush_soon()

    def flush_soon(self) -> None:
        """Write at the end of this reactor turn: a window of OT 51 in one write."""
        if self._flush_call is None:
            self._flush_call = self.link.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        data = self.session.data_to_send()
        if data and self.transport is not None:
            send_now(self.transport, data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        self.session.close()
        for pending in self.session.expired(float("inf"), 0.0):  # never answered now
            if isinstance(pending.ref, _Submission):
                self.link.gateway.unanswered(pending.ref, "connection lost before the ACK")
        self.link.lost(reason if reason is not None else Failure(ConnectionError()))


def make(common: Any, options: Options, events: GatewayEvents, context: Any) -> UcpGateway:
    label = f"{context.config.path}: gateway.{common.id}"
    if common.window > ucp.MAX_WINDOW:
        raise ConfigError(
            f"{label}.window: at most {ucp.MAX_WINDOW} on a UCP link (TRNs 00-99),"
            f" got {common.window}"
        )
    check_within_send_timeout(context.config.path, common, "ack_timeout", options.ack_timeout)
    return UcpGateway(
        common.id,
        events,
        options,
        context.reactor,
        sender=common.sender,
        default_country=context.config.smsd.default_country,
    )
