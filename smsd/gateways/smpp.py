"""The SMPP 3.4 gateway: SMS out as submit_sm, MO and delivery receipts in as deliver_sm.

One link (a ``[[gateway]]`` of type ``smpp``) is one or more binds to the
operator's SMSC: transceivers by default, or a transmitter and a receiver
for SMSCs without transceiver support. Each bind is a TCP (or TLS)
connection driven by ``protocols.smpp.EsmeSession``; this module only adds
the I/O, the timers and what the gateway decides:

* a window of unacknowledged submit_sm per bind, and a pause that adapts
  when the SMSC says "throttled" or "queue full" (those parts go back to the
  queue without counting an attempt);
* temporary or permanent errors by status code, with per-link overrides;
* a submit_sm whose response never comes is not sent again blindly: by
  default it counts as accepted without an id (``unanswered = "assume-sent"``);
* message ids normalised per link (hex in responses, decimal in receipts...)
  so that every receipt finds its message;
* deliver_sm answered only once what it carried (an MO part, a receipt) is
  committed; a concatenated MO (UDH or SAR) is joined in the store;
* reconnects with exponential back-off and jitter; a bind refused for its
  credentials waits ``bind_refused_delay`` and says so in the health state,
  instead of retrying at full speed;
* on shutdown, the window drains before the unbind.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from protocols import smpp
from smsd import numbers
from smsd.configschema import ConfigError, Duration, one_of, setting
from smsd.gateways.base import Gateway, GatewayEvents, Health, all_or_timeout
from smsd.gateways.link import ReconnectingLink
from smsd.model import Message, OutPart, PartResult, Report, State
from smsd.sendnow import send_now
from smsd.tls import load_trust_root

log = Logger()

# What the SMSC's status codes mean to us, before the link's overrides.
THROTTLING = frozenset({0x58, 0x14})  # ESME_RTHROTTLED, ESME_RMSGQFUL: slow down, no failure
TEMPORARY = frozenset(
    {0x08, 0x14, 0x58, 0x64, 0x65, 0xFE}
)  # RSYSERR, ..., RX_T_APPN, delivery failure

HOLD_WHILE_PAUSED = 1.0  # seconds a paused link keeps what waits for it

RECEIPT_STATES = {
    "DELIVRD": State.DELIVERED,
    "EXPIRED": State.EXPIRED,
    "DELETED": State.FAILED,
    "UNDELIV": State.FAILED,
    "REJECTD": State.FAILED,
    "ACCEPTD": State.SENT,
    "ENROUTE": State.SENT,
    "UNKNOWN": State.SENT,
}

BIND_MODES = ("transceiver", "transmitter+receiver", "transmitter", "receiver")


def _statuses(value: list[str]) -> None:
    for v in value:
        parse_status(v)


def parse_status(value: str) -> int:
    """An SMPP status by name (``ESME_RSYSERR``) or number (``0x45``, ``69``)."""
    try:
        return smpp.Status[value.upper()].value
    except KeyError:
        pass
    try:
        return int(value, 0)
    except ValueError:
        raise ValueError(f"not an SMPP status name or number: {value!r}") from None


def _backlog(value: int) -> None:
    if value < -1:
        raise ValueError(f"must be -1 (automatic) or more, got {value}")


def _ton_npi(value: int) -> None:
    if not -1 <= value <= 255:
        raise ValueError(f"must be -1 (automatic) or 0..255, got {value}")


@attrs.frozen
class Options:
    host: str = setting(doc="the SMSC's host name or address")
    system_id: str = setting(doc="the account the operator gave you")
    port: int = setting(2775, "the SMSC's port")
    password: str = setting("", "the account's password (never logged)")
    system_type: str = setting("", "system_type in the bind, if the operator asks for one")
    address_range: str = setting("", "address_range in the bind (receivers)")
    bind: str = setting(
        "transceiver",
        "transceiver, transmitter+receiver (for SMSCs without transceivers), transmitter"
        " or receiver",
        one_of(*BIND_MODES),
    )
    binds: int = setting(1, "binds that send (each with its own window)")
    backlog: int = setting(
        -1,
        "messages held ready per sending bind beyond its window, so that a free window slot"
        " never waits for the store; -1: four windows",
        _backlog,
    )
    tls: bool = setting(False, "TLS to the SMSC (the host name is verified)")
    tls_ca: str = setting(
        "", "PEM file of the CA(s) that signed the SMSC's certificate; empty: the system's"
    )
    enquire_link: Duration = setting(Duration(30), "enquire_link after this long idle")
    response_timeout: Duration = setting(
        Duration(30), "a request with no response after this counts as lost; the bind reconnects"
    )
    unanswered: str = setting(
        "assume-sent",
        "a submit_sm whose response never came: assume-sent (never send twice) or resend",
        one_of("assume-sent", "resend"),
    )
    reconnect_min: Duration = setting(Duration(1), "first reconnect delay")
    reconnect_max: Duration = setting(Duration(60), "longest reconnect delay")
    bind_refused_delay: Duration = setting(
        Duration(300), "wait after the SMSC refused the credentials"
    )
    throttle_delay: Duration = setting(
        Duration(1), "first pause of a bind told 'throttled' or 'queue full' (doubles)"
    )
    long_messages: str = setting(
        "udh",
        "udh (in short_message), sar (TLVs) or payload (message_payload)",
        one_of("udh", "sar", "payload"),
    )
    default_alphabet: str = setting(
        "gsm7",
        "what data_coding 0 carries on this link: gsm7 (unpacked), latin1 or ascii",
        one_of("gsm7", "latin1", "ascii"),
    )
    registered_delivery: bool = setting(True, "ask for delivery receipts")
    message_id: str = setting(
        "as-is", "form of ids in submit_sm_resp: as-is, hex or dec", one_of("as-is", "hex", "dec")
    )
    receipt_id: str = setting(
        "as-is", "form of ids in receipts: as-is, hex or dec", one_of("as-is", "hex", "dec")
    )
    source_ton: int = setting(-1, "TON of the sender address; -1: from its form", _ton_npi)
    source_npi: int = setting(-1, "NPI of the sender address; -1: from its form", _ton_npi)
    dest_ton: int = setting(-1, "TON of the recipient; -1: from its form", _ton_npi)
    dest_npi: int = setting(-1, "NPI of the recipient; -1: from its form", _ton_npi)
    temporary_errors: list[str] = setting(
        factory=list, doc="status codes to retry besides the usual ones", check=_statuses
    )
    permanent_errors: list[str] = setting(
        factory=list,
        doc="status codes never to retry (override the usual ones)",
        check=_statuses,
    )
    max_pdu: int = setting(65_536, "longest PDU accepted from the SMSC, in octets")


# Addresses -------------------------------------------------------------------


def address(value: str | None, ton: int, npi: int) -> tuple[int, int, str]:
    """(TON, NPI, digits or text) from the address's form; -1 asks for the automatic value."""
    if not value:
        auto = (0, 0, "")
    elif value.startswith("+") and value[1:].isdigit():
        auto = (1, 1, value[1:])  # international, E.164
    elif value.isdigit():
        auto = (3, 0, value)  # short code: network specific
    else:
        auto = (5, 0, value)  # alphanumeric
    return (auto[0] if ton < 0 else ton, auto[1] if npi < 0 else npi, auto[2])


def from_address(value: str, ton: int, default_country: str) -> str:
    """A number the network sent, in our form (+E.164, short code or text)."""
    if ton == 5 or not value:
        return value
    if ton == 1 and value.isdigit():
        return "+" + value
    try:
        return numbers.normalise(value, default_country)
    except numbers.NumberError:
        return value


# User data -------------------------------------------------------------------


def split_udh(udh: bytes) -> tuple[tuple[int, int, int] | None, bytes]:
    """(concatenation (ref, total, seq) or None, the UDH without that element)."""
    if not udh:
        return None, b""
    body = udh[1 : 1 + udh[0]]
    concat = None
    rest = bytearray()
    i = 0
    while i + 1 < len(body):
        iei, length = body[i], body[i + 1]
        data = body[i + 2 : i + 2 + length]
        if iei == 0x00 and length == 3:
            concat = (data[0], data[1], data[2])
        elif iei == 0x08 and length == 4:
            concat = ((data[0] << 8) | data[1], data[2], data[3])
        else:
            rest += body[i : i + 2 + length]
        i += 2 + length
    return concat, (bytes([len(rest)]) + bytes(rest)) if rest else b""


@attrs.define
class _Submission:
    """One submit_sm on its way: the parts of a message it carries, and its answer."""

    message: Message
    seqs: tuple[int, ...]  # the parts it carries (several with message_payload)
    params: dict[str, Any]
    tlvs: tuple[tuple[int, bytes], ...]
    result: _MessageResult
    bind: _Bind | None = None


@attrs.define
class _MessageResult:
    """Collects the answers for every part of one message, then fires."""

    message: Message
    deferred: Deferred[list[PartResult]]
    waiting: int
    results: dict[int, PartResult] = attrs.field(factory=dict)

    def set(self, seqs: tuple[int, ...], result: PartResult) -> None:
        for seq in seqs:
            self.results[seq] = result if result.seq == seq else attrs.evolve(result, seq=seq)
        self.waiting -= 1
        if self.waiting == 0:
            self.deferred.callback([self.results[p.seq] for p in self.message.parts])


class SmppGateway(Gateway):
    type = "smpp"

    def __init__(
        self,
        gateway_id: str,
        events: GatewayEvents,
        options: Options,
        reactor: Any,
        *,
        sender: str = "",
        default_country: str = "US",
        trust_root: Any = None,
    ) -> None:
        super().__init__(gateway_id, events, sender=sender)
        self.options = options
        self.trust_root = trust_root  # for TLS: None trusts the system's CAs
        self.reactor = reactor
        self.default_country = default_country
        temporary = set(TEMPORARY)
        temporary |= {parse_status(s) for s in options.temporary_errors}
        temporary -= {parse_status(s) for s in options.permanent_errors}
        self.temporary = frozenset(temporary)
        self.queue: deque[_Submission] = deque()
        self.binds: list[_Bind] = []
        if options.bind == "transmitter+receiver":
            modes = ["transmitter"] * options.binds + ["receiver"]
        elif options.bind == "receiver":
            modes = ["receiver"]
        else:
            modes = [options.bind] * options.binds
        self.binds = [_Bind(self, mode, i) for i, mode in enumerate(modes)]
        self.counters = {"submitted": 0, "receipts": 0, "mo": 0, "throttled": 0, "unanswered": 0}
        self.window = 10  # set from the [[gateway]] window by in_flight_limit()
        self._pump_call: Any = None

    # Life ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for b in self.binds:
            b.connect()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        d: Deferred[None] = Deferred()
        deadline = self.reactor.seconds() + 10

        def wait() -> None:  # let the windows drain, then unbind
            busy = self.queue or any(b.outstanding() for b in self.binds)
            if busy and self.reactor.seconds() < deadline:
                self.reactor.callLater(0.05, wait)
                return
            for b in self.binds:
                b.shutdown()
            if self._pump_call is not None and self._pump_call.active():
                self._pump_call.cancel()
            self._pump_call = None
            self._fail_queue("the gateway stopped before sending")
            self.set_health(Health.DOWN, "stopped")
            unbound = [b.closed for b in self.binds]
            all_or_timeout(unbound, self.reactor, 5.0).addBoth(lambda _: d.callback(None))

        wait()
        return d

    def in_flight_limit(self, window: int) -> int:
        """The window of every sending bind, and a backlog for each: the dispatcher
        claims from the store in batches, and a window that empties while a claim
        is being committed would idle the link (measured: with the window alone,
        one claim of nine messages per SMSC round trip)."""
        self.window = window  # unacknowledged submit_sm per bind
        backlog = self.options.backlog if self.options.backlog >= 0 else 4 * window
        return (window + backlog) * max(1, sum(b.mode != "receiver" for b in self.binds))

    def status(self) -> dict[str, Any]:
        return {
            "binds": [b.status() for b in self.binds],
            "bind_window": self.window,  # the pool's "window" adds each bind's backlog
            "queued": len(self.queue),
            **self.counters,
        }

    def bind_changed(self) -> None:
        """A bind came up or went down: our health is whether anything can send."""
        sending = [b for b in self.binds if b.mode != "receiver"]
        if not sending:  # a receive-only link is up while its bind is
            sending = self.binds
        if any(b.bound for b in sending):
            self.set_health(Health.UP)
        else:
            reasons = [b.problem for b in sending if b.problem]
            self.set_health(Health.DOWN, reasons[0] if reasons else "not bound")
            # What waits here was never sent: back to the queue at once, for this
            # link when it is back or for another gateway, not held until a timeout.
            self._fail_queue(f"not sent: {self.health_reason}")
        self._schedule_pump()

    # Sending ---------------------------------------------------------------

    def send(self, message: Message) -> Deferred[list[PartResult]]:
        d: Deferred[list[PartResult]] = Deferred()
        submissions = self._submissions(message, d)
        for s in submissions:
            self.queue.append(s)
        self._schedule_pump()
        return d

    def _submissions(self, message: Message, d: Deferred[list[PartResult]]) -> list[_Submission]:
        o = self.options
        src = address(message.sender or self.default_sender, o.source_ton, o.source_npi)
        dst = address(message.recipient, o.dest_ton, o.dest_npi)
        base = {
            "source_addr_ton": src[0],
            "source_addr_npi": src[1],
            "source_addr": src[2],
            "dest_addr_ton": dst[0],
            "dest_addr_npi": dst[1],
            "destination_addr": dst[2],
            "protocol_id": message.pid,
            "registered_delivery": 1
            if o.registered_delivery and message.registered_delivery
            else 0,
        }
        parts = message.parts
        if o.long_messages == "payload" and len(parts) > 1:
            result = _MessageResult(message, d, 1)
            payload, dc = b"".join(self._payload(message, p)[0] for p in parts), None
            dc = self._payload(message, parts[0])[1]
            tlvs = ((0x0424, payload),)
            params = {**base, "esm_class": 0, "data_coding": dc, "short_message": b""}
            return [_Submission(message, tuple(p.seq for p in parts), params, tlvs, result)]
        result = _MessageResult(message, d, len(parts))
        out = []
        for part in parts:
            payload, dc = self._payload(message, part)
            udh, tlvs = part.udh, ()
            if o.long_messages == "sar" and udh:
                concat, udh = split_udh(udh)
                if concat is not None:
                    ref, total, seq = concat
                    tlvs = (
                        (0x020C, ref.to_bytes(2, "big")),
                        (0x020E, bytes([total])),
                        (0x020F, bytes([seq])),
                    )
            params = {
                **base,
                "esm_class": 0x40 if udh else 0,
                "data_coding": dc,
                "short_message": udh + payload,
            }
            out.append(_Submission(message, (part.seq,), params, tlvs, result))
        return out

    def _payload(self, message: Message, part: OutPart) -> tuple[bytes, int]:
        """The octets of one part and the data_coding that says how to read them."""
        if part.text is None:
            return part.data or b"", message.dcs or 0x04
        if message.encoding == "ucs2":
            return smpp.encode_short_message(part.text, 0x08), message.dcs or 0x08
        alphabet = self.options.default_alphabet
        if alphabet == "gsm7":
            return smpp.encode_short_message(part.text, 0x00), message.dcs
        coding = 0x03 if alphabet == "latin1" else 0x01
        flash = 0x10 if message.dcs & 0x10 else 0
        return smpp.encode_short_message(part.text, coding), coding | flash if flash else coding

    def _schedule_pump(self) -> None:
        if self._pump_call is None:
            self._pump_call = self.reactor.callLater(0, self._pump)

    def pump_now(self) -> None:
        """Run a pump that is due, now, on the bind's own turn: the window's
        next submit_sm go out with this turn's answers, not a turn later."""
        if self._pump_call is not None:
            self._pump_call.cancel()
            self._pump()

    def _pump(self) -> None:
        """Hand queued submissions to the binds with room, the least busy first."""
        self._pump_call = None
        if not self.queue:
            return
        now = self.reactor.seconds()
        ready = [b for b in self.binds if b.can_submit(now)]
        used: set[_Bind] = set()
        while self.queue and ready:
            b = min(ready, key=lambda b: b.outstanding())
            submission = self.queue.popleft()
            try:
                b.submit(submission, now)
            except ValueError as e:  # a field SMPP cannot carry (a sender outside Latin-1)
                self._unsendable(submission, str(e))
                continue
            used.add(b)
            if not b.can_submit(now):
                ready.remove(b)
        # Written now, at the end of the pump (itself the end of a reactor turn), not
        # one more turn later: the window's submit_sm go out in one write per bind.
        for b in used:
            b.flush()
        if self.queue and not ready:
            pauses = [b.paused_until for b in self.binds if b.bound and b.paused_until > now]
            if not pauses:
                return  # window slots free up as responses come
            wait = min(pauses) - now
            if wait > HOLD_WHILE_PAUSED:
                # Held here they would outlast the dispatcher's send timeout and could go
                # out after it had given up on them: back to the queue, no attempt counted.
                self._fail_queue("the SMSC asked to slow down; back in the queue")
            else:
                self._pump_call = self.reactor.callLater(wait, self._pump)

    def _unsendable(self, submission: _Submission, why: str) -> None:
        """The codec refused this submit_sm: the message fails for good, saying why."""
        log.warn(
            "gateway {id}: message {message} cannot go over SMPP: {why}",
            id=self.id,
            message=submission.message.id,
            why=why,
        )
        result = PartResult(submission.seqs[0], False, status=why, temporary=False)
        submission.result.set(submission.seqs, result)

    def _fail_queue(self, why: str) -> None:
        """Submissions never sent: requeued without counting an attempt (as throttled ones)."""
        while self.queue:
            s = self.queue.popleft()
            s.result.set(
                s.seqs, PartResult(s.seqs[0], False, status=why, temporary=True, throttled=True)
            )

    def answered(self, submission: _Submission, status: int, message_id: str | None) -> None:
        """The SMSC's verdict on one submit_sm."""
        if status == 0:
            provider_id = smpp.normalise_id(message_id or "", self.options.message_id) or None
            self.counters["submitted"] += 1
            submission.result.set(
                submission.seqs, PartResult(submission.seqs[0], True, provider_id=provider_id)
            )
            return
        words = smpp.status_name(status)
        if status in THROTTLING and status in self.temporary:
            self.counters["throttled"] += 1
            submission.result.set(
                submission.seqs,
                PartResult(submission.seqs[0], False, status=words, temporary=True, throttled=True),
            )
            return
        temporary = status in self.temporary
        submission.result.set(
            submission.seqs,
            PartResult(submission.seqs[0], False, status=words, temporary=temporary),
        )

    def unanswered(self, submission: _Submission, why: str) -> None:
        """No response will come for this submit_sm (timeout, lost connection)."""
        self.counters["unanswered"] += 1
        if self.options.unanswered == "resend":
            result = PartResult(
                submission.seqs[0], False, status=f"{why}; sent again", temporary=True
            )
        else:
            result = PartResult(
                submission.seqs[0], True, status=f"{why}; assumed accepted, not sent again"
            )
        submission.result.set(submission.seqs, result)

    # Receiving -------------------------------------------------------------

    def deliver(self, link: _SmppProtocol, sequence: int, pdu: smpp.Pdu, command: int) -> None:
        """deliver_sm or data_sm: a receipt or an MO, answered once committed, on the
        connection it came on (if that is gone, the SMSC will send it again)."""
        try:
            receipt = smpp.receipt_essentials(pdu)
            d = self._receipt(*receipt) if receipt is not None else self._mo(pdu)
        except Exception:
            log.failure("gateway {id}: cannot handle a deliver_sm", id=self.id)
            link.respond(sequence, command, 0x64)  # ESME_RX_T_APPN: the SMSC tries again
            return
        answer = (link, sequence, command)
        d.addCallbacks(
            self._committed, self._not_committed, callbackArgs=answer, errbackArgs=answer
        )

    def _committed(self, _: Any, link: _SmppProtocol, sequence: int, command: int) -> None:
        link.respond(sequence, command, 0)

    def _not_committed(self, f: Failure, link: _SmppProtocol, sequence: int, command: int) -> None:
        log.failure("gateway {id}: a deliver_sm was not committed", f, id=self.id)
        link.respond(sequence, command, 0x64)

    def _receipt(self, receipt_id: str | None, stat: str | None, err: str | None) -> Deferred[Any]:
        self.counters["receipts"] += 1
        stat = (stat or "UNKNOWN").upper()
        state = RECEIPT_STATES.get(stat, State.SENT)
        words = f"stat:{stat} err:{err or '000'}"
        provider_id = smpp.normalise_id(receipt_id or "", self.options.receipt_id)
        return self.events.report(
            Report(self.id, provider_id, state, words, self.reactor.seconds())
        )

    def _mo(self, pdu: smpp.Pdu) -> Deferred[Any]:
        self.counters["mo"] += 1
        p = pdu.params
        sender = from_address(
            p.get("source_addr", ""), p.get("source_addr_ton", 0), self.default_country
        )
        recipient = from_address(
            p.get("destination_addr", ""), p.get("dest_addr_ton", 0), self.default_country
        )
        data = pdu.tlv(0x0424) or p.get("short_message", b"")
        concat = None
        if p.get("esm_class", 0) & 0x40 and data:
            udh_len = data[0] + 1
            concat, _ = split_udh(data[:udh_len])
            data = data[udh_len:]
        elif pdu.tlv(0x020C) is not None:
            concat = (pdu.tlv_int(0x020C), pdu.tlv_int(0x020E), pdu.tlv_int(0x020F))
        dc = p.get("data_coding", 0)
        text, raw, encoding = self._text(data, dc)
        if concat is not None:
            concat = (concat[0] or 0, concat[1] or 0, concat[2] or 1)
        return self.hand_in(sender, recipient, text, raw, encoding, concat, self.reactor.seconds())

    def _text(self, data: bytes, dc: int) -> tuple[str | None, bytes | None, str]:
        """(text, None, encoding) for text codings, (None, octets, "8bit") for binary."""
        binary = dc in (0x02, 0x04) or (dc & 0xF0 == 0xF0 and dc & 0x04)
        if binary:
            return None, data, "8bit"
        encoding = "ucs2" if dc == 0x08 or (dc & 0xEC) == 0x08 else "gsm7"
        default = self.options.default_alphabet
        return smpp.decode_short_message(data, dc, default_alphabet=default), None, encoding


class _Bind(ReconnectingLink):
    """One connection to the SMSC and its bind: reconnects, window, pauses."""

    def __init__(self, gateway: SmppGateway, mode: str, index: int) -> None:
        super().__init__(gateway)
        self.gateway: SmppGateway = gateway
        self.mode = mode
        self.index = index
        self.protocol: _SmppProtocol | None = None
        self.bound = False
        self.paused_until = 0.0
        self.throttle = 0.0  # current pause after "throttled"; doubles, resets on success
        self._unbind_timeout: Any = None  # closes the connection if unbind_resp never comes
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = self.reactor

    # Connection ------------------------------------------------------------

    def endpoint(self) -> Any:
        o = self.gateway.options
        endpoint: Any = HostnameEndpoint(self.reactor, o.host, o.port, timeout=10)
        if o.tls:
            trust = self.gateway.trust_root
            options = (
                ssl.optionsForClientTLS(o.host)
                if trust is None
                else ssl.optionsForClientTLS(o.host, trustRoot=trust)
            )
            endpoint = wrapClientTLS(options, endpoint)
        return endpoint

    def new_protocol(self) -> _SmppProtocol:
        return _SmppProtocol(self)

    def changed(self) -> None:
        self.gateway.bind_changed()

    def connected(self, protocol: _SmppProtocol) -> None:
        self.protocol = protocol
        o = self.gateway.options
        protocol.session.bind(
            self.mode,
            o.system_id,
            o.password,
            system_type=o.system_type,
            address_range=o.address_range,
            now=self.reactor.seconds(),
        )
        protocol.flush()
        if not self._ticker.running:
            self._ticker.start(1.0, now=False)

    def lost(self, reason: Failure) -> None:
        self.protocol = None
        was_bound, self.bound = self.bound, False
        if self._ticker.running:
            self._ticker.stop()
        if self._unbind_timeout is not None and self._unbind_timeout.active():
            self._unbind_timeout.cancel()
        self._unbind_timeout = None
        tls = _tls_failure(reason)
        if tls is not None and not was_bound:
            self.problem = f"TLS handshake failed: {tls}"
            log.error("gateway {id}: {why}", id=self.gateway.id, why=self.problem)
        elif not self.problem or was_bound:
            self.problem = f"connection lost: {reason.getErrorMessage()}"
        if not self.closed.called:
            self.closed.callback(None)
        self._again(self._backoff() if not was_bound else self.gateway.options.reconnect_min)

    def shutdown(self) -> None:
        self._cancel_retry()
        if self.protocol is None:
            return
        if self.bound:
            self.protocol.session.unbind(now=self.reactor.seconds())
            self.protocol.flush()
            self._unbind_timeout = self.reactor.callLater(5.0, self._close)
        else:
            self._close()

    def _close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.loseConnection()

    # Events from the session -------------------------------------------------

    def event(self, e: Any, link: _SmppProtocol) -> None:
        g = self.gateway
        # The two of every message first: a submit_sm's answer, a receipt (or MO).
        if isinstance(e, smpp.SubmitResult):
            submission = e.ref
            if e.status in THROTTLING:
                self._slow_down()
            elif e.status == 0:
                self.throttle = 0.0
            g.answered(submission, e.status, e.message_id)
            g._schedule_pump()
        elif isinstance(e, smpp.DeliverSm):
            g.deliver(link, e.sequence, e.pdu, smpp.Command.DELIVER_SM_RESP)
        elif isinstance(e, smpp.Bound):
            self.bound, self.problem, self.failures = True, "", 0
            log.info("gateway {id}: bound as {mode}", id=g.id, mode=self.mode)
            g.bind_changed()
        elif isinstance(e, smpp.BindRefused):
            words = smpp.status_name(e.status)
            self.problem = f"bind refused: {words}"
            log.error(
                "gateway {id}: the SMSC refused the bind: {words}; next try in {delay:g}s",
                id=g.id,
                words=words,
                delay=g.options.bind_refused_delay,
            )
            self._retry = self.reactor.callLater(g.options.bind_refused_delay, self.connect)
            self._close()
        elif isinstance(e, smpp.GenericNack):
            if e.ref is not None:
                g.answered(e.ref, e.status or 0x08, None)
                g._schedule_pump()
        elif isinstance(e, smpp.DataSm):
            g.deliver(link, e.sequence, e.pdu, smpp.Command.DATA_SM_RESP)
        elif isinstance(e, smpp.Unbound | smpp.UnbindComplete):
            self.bound = False
            self._close()
        elif isinstance(e, smpp.PeerError):
            log.warn("gateway {id}: garbled PDU from the SMSC: {why}", id=g.id, why=e.reason)
        elif isinstance(e, smpp.ProtocolFailure):
            log.error("gateway {id}: {why}; reconnecting", id=g.id, why=e.reason)
            self.problem = e.reason
            self._close()

    def _slow_down(self) -> None:
        o = self.gateway.options
        self.throttle = min(60.0, self.throttle * 2 if self.throttle else o.throttle_delay)
        self.paused_until = self.reactor.seconds() + self.throttle

    def _tick(self) -> None:
        """Once a second: lost responses, and enquire_link on an idle bind."""
        p = self.protocol
        if p is None:
            return
        o = self.gateway.options
        now = self.reactor.seconds()
        expired = p.session.expired(now, o.response_timeout)
        for _, _, ref in expired:
            if isinstance(ref, _Submission):
                self.gateway.unanswered(ref, f"no response in {o.response_timeout:g}s")
        if expired:  # a silent SMSC: start again on a new connection
            self.problem = f"no response in {o.response_timeout:g}s"
            self._close()
            return
        if self.bound and p.session.needs_enquire_link(now, o.enquire_link):
            p.session.enquire_link(now)
            p.flush()

    # Sending -----------------------------------------------------------------

    def outstanding(self) -> int:
        return self.protocol.session.outstanding if self.protocol is not None else 0

    def can_submit(self, now: float) -> bool:
        return (
            self.bound
            and self.mode != "receiver"
            and self.protocol is not None
            and self.outstanding() < self.gateway_window()
            and now >= self.paused_until
        )

    def gateway_window(self) -> int:
        return self.gateway.window

    def submit(self, submission: _Submission, now: float) -> None:
        assert self.protocol is not None
        submission.bind = self
        self.protocol.session.submit(submission.params, submission.tlvs, now=now, ref=submission)

    def flush(self) -> None:
        """Write what the session has queued (the submit_sm of a pump)."""
        if self.protocol is not None:
            self.protocol.flush()

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "bound": self.bound,
            "outstanding": self.outstanding(),
            "problem": self.problem,
        }


class _SmppProtocol(Protocol):
    """Bytes in and out of one bind's session."""

    def __init__(self, bind: _Bind) -> None:
        self.bind = bind
        self.session = smpp.EsmeSession(max_length=bind.gateway.options.max_pdu)
        self._flush_call: Any = None

    def connectionMade(self) -> None:
        self.bind.connected(self)

    def dataReceived(self, data: bytes) -> None:
        for event in self.session.receive(data, self.bind.reactor.seconds()):
            self.bind.event(event, self)
        self.bind.gateway.pump_now()
        self.flush()

    def respond(self, sequence: int, command: int, status: int) -> None:
        """Answer a deliver_sm on this connection (nothing if it has closed since)."""
        if self.session.respond(sequence, command, status):
            self.flush_soon()

    def flush_soon(self) -> None:
        """Write at the end of this reactor turn: the answers to a burst of
        receipts go out in one write."""
        if self._flush_call is None:
            self._flush_call = self.bind.reactor.callLater(0, self.flush)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        lost = self.session.expired(float("inf"), 0.0)  # will never be answered now
        for _, _, ref in lost:
            if isinstance(ref, _Submission):
                self.bind.gateway.unanswered(ref, "connection lost before the response")
        self.bind.lost(reason if reason is not None else Failure(ConnectionError()))

    def flush(self) -> None:
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        data = self.session.data_to_send()
        if data and self.transport is not None:
            send_now(self.transport, data)


def _tls_failure(reason: Failure) -> str | None:
    """What OpenSSL said, in its words ("certificate verify failed"), if TLS failed."""
    from OpenSSL.SSL import Error as TlsError

    if not reason.check(TlsError):
        return None
    words = [str(e[-1]) for e in reason.value.args[0] if isinstance(e, tuple) and e]
    return "; ".join(w for w in words if w) or "no reason given"


def make(common: Any, options: Options, events: GatewayEvents, context: Any) -> SmppGateway:
    from smsd.config import resolve

    trust_root = None
    if options.tls_ca:
        try:
            trust_root = load_trust_root(resolve(context.config, options.tls_ca))
        except ValueError as e:
            raise ConfigError(f"{context.config.path}: gateway {common.id}: tls_ca: {e}") from None
    return SmppGateway(
        common.id,
        events,
        options,
        context.reactor,
        sender=common.sender,
        default_country=context.config.smsd.default_country,
        trust_root=trust_root,
    )
