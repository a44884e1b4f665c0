"""A UCP/EMI SMSC simulator for tests: the server side of UCP on Twisted, in-process.

Like ``smsc.py`` for SMPP it is an *independent* implementation: frames are cut, checked and
built here, never with ``protocols/ucp.py``, so that a bug in smsd's codec cannot hide behind
the same bug in its test peer (only the GSM 03.38 alphabet comes from ``protocols.gsm0338``,
which has tests of its own).

Typical use in a trial test::

    smsc = UcpSmscFactory(accounts={"esme": "secret"})
    port = smsc.listen()                  # 127.0.0.1, random port
    self.addCleanup(smsc.stop)
    ...
    yield smsc.wait_for(lambda: smsc.accepted, what="an OT 51")
    result = yield smsc.deliver_mo("1234", "+15551230001", "hello")   # the client's ACK/NACK

It answers OT 60 (``accounts``; a refusal is NACK 07), OT 51 (ACK ``AdC:SCTS``, SCTS unique
and increasing), OT 31 (ACK), and NACKs what it cannot take (01 checksum, 02 syntax, 03 unknown
OT). Faults, switchable at any time: ``ack_delay``, ``nack_next(code, count)``, ``ignore_next``
(never answer), ``drop_after`` (close with TRNs outstanding), ``hang``, garbage towards the
client (``send_garbage``, ``send_bad_checksum``). OT 52/53 go to the client
(``deliver_mo``, ``notify``, or ``notifications=True`` for submits with NRq=1), over the main
connection or over connections to a second listener (``listen_inbound()``, ``mo_via``).
Everything seen or sent is recorded (``frames``, ``logins``, ``submits``, ``alerts``,
``results_received``, ``bad_frames``, ``raw_sent``, ``events``).

Standalone, for manual checks: ``python -m tests.peers.ucpsmsc --port 3600``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from protocols import gsm0338
from tests.peers.timers import Timers

STX = b"\x02"
ETX = b"\x03"
MAX_FRAME = 8192

FIELDS_5X = [
    "AdC",
    "OAdC",
    "AC",
    "NRq",
    "NAdC",
    "NT",
    "NPID",
    "LRq",
    "LRAd",
    "LPID",
    "DD",
    "DDT",
    "VP",
    "RPID",
    "SCTS",
    "Dst",
    "Rsn",
    "DSCTS",
    "MT",
    "NB",
    "Msg",
    "MMS",
    "PR",
    "DCs",
    "MCLs",
    "RPI",
    "CPg",
    "RPLy",
    "OTOA",
    "HPLMN",
    "XSer",
    "RES4",
    "RES5",
]
FIELDS_60 = [
    "OAdC",
    "OTON",
    "ONPI",
    "STYP",
    "PWD",
    "NPWD",
    "VERS",
    "LAdC",
    "LTON",
    "LNPI",
    "OPID",
    "RES1",
]
FIELDS_31 = ["AdC", "PID"]

EC_CHECKSUM = 1
EC_SYNTAX = 2
EC_NOT_SUPPORTED = 3
EC_NOT_ALLOWED = 4
EC_ADC_INVALID = 6
EC_AUTHENTICATION = 7


# --- The codec ---------------------------------------------------------------------------------


class BadFrame(Exception):
    """A frame that is not UCP; ``ec`` is what to NACK it with, header parts if readable."""

    def __init__(self, ec: int, reason: str, trn: str = "", kind: str = "", ot: str = "") -> None:
        super().__init__(reason)
        self.ec = ec
        self.reason = reason
        self.trn = trn
        self.kind = kind
        self.ot = ot


@dataclass
class Frame:
    """One frame as it went over the wire: header parts as text, fields by position."""

    trn: int
    kind: str  # "O" or "R"
    ot: int
    fields: list[str]
    raw: bytes = b""
    peer: str = ""

    def named(self) -> dict[str, str]:
        names = {51: FIELDS_5X, 52: FIELDS_5X, 53: FIELDS_5X, 60: FIELDS_60, 31: FIELDS_31}
        return dict(zip(names.get(self.ot, []), self.fields, strict=False))

    @property
    def ack(self) -> bool:
        return self.kind == "R" and bool(self.fields) and self.fields[0] == "A"


def pack_frame(trn: int, kind: str, ot: int, fields: Sequence[str]) -> bytes:
    """STX TRN/LEN/O|R/OT/fields.../CK ETX."""
    data = "".join(f + "/" for f in fields)
    head = f"{trn:02d}/{len(data) + 16:05d}/{kind}/{ot:02d}/{data}".encode("latin-1")
    return STX + head + f"{sum(head) % 256:02X}".encode() + ETX


def unpack_frame(raw: bytes) -> Frame:
    """Parse STX...ETX strictly; BadFrame otherwise."""
    text = raw[1:-1].decode("latin-1")
    parts = text.split("/")
    trn, _, kind, ot = ([*parts, "", "", "", ""])[:4]
    if len(parts) < 5:
        raise BadFrame(EC_SYNTAX, "too few fields", trn, kind, ot)
    body = raw[1:-3]
    try:
        ck = int(parts[-1], 16)
    except ValueError:
        raise BadFrame(EC_SYNTAX, f"checksum {parts[-1]!r}", trn, kind, ot) from None
    if len(parts[-1]) != 2 or ck != sum(body) % 256:
        raise BadFrame(EC_CHECKSUM, "checksum mismatch", trn, kind, ot)
    if not (len(trn) == 2 and trn.isdigit() and len(ot) == 2 and ot.isdigit()):
        raise BadFrame(EC_SYNTAX, "TRN/OT not two digits", trn, kind, ot)
    if len(parts[1]) != 5 or not parts[1].isdigit() or int(parts[1]) != len(text):
        raise BadFrame(EC_SYNTAX, f"LEN {parts[1]!r} for {len(text)} characters", trn, kind, ot)
    if kind not in ("O", "R"):
        raise BadFrame(EC_SYNTAX, f"O/R {kind!r}", trn, kind, ot)
    return Frame(int(trn), kind, int(ot), parts[4:-1], raw)


def hex_text(text: str) -> str:
    """AMsg: GSM 03.38 codes, unpacked, in hex."""
    return gsm0338.encode(text).hex().upper()


def text_of(hexed: str) -> str:
    return gsm0338.decode(bytes.fromhex(hexed))


def unpack_alphanumeric(oadc: str) -> str:
    raw = bytes.fromhex(oadc)
    return gsm0338.decode(gsm0338.unpack(raw[1:], raw[0] * 4 // 7))


# --- records -------------------------------------------------------------------------------------


@dataclass(eq=False)
class Login:
    account: str
    password: str
    fields: dict[str, str]
    peer: str
    accepted: bool = False


@dataclass(eq=False)
class Submit:
    """An OT 51 the simulator decoded, and what it did with it."""

    trn: int
    fields: dict[str, str]
    extra: list[str]
    peer: str
    received_at: float
    scts: str | None = None  # when accepted
    error: int | None = None  # the NACK code decided; None with scts: ACK
    answered: bool = False  # the result was actually written
    held: bool = False  # never answered (ignore_next, drop_after, hang)

    @property
    def adc(self) -> str:
        return self.fields.get("AdC", "")

    @property
    def oadc(self) -> str:
        oadc = self.fields.get("OAdC", "")
        if self.fields.get("OTOA") == "5039" and oadc:
            return unpack_alphanumeric(oadc)
        return oadc

    @property
    def text(self) -> str | None:
        if self.fields.get("MT") == "3":
            return text_of(self.fields.get("Msg", ""))
        return None

    @property
    def data(self) -> bytes | None:
        if self.fields.get("MT") == "4":
            return bytes.fromhex(self.fields.get("Msg", ""))
        return None

    @property
    def id(self) -> str | None:
        return f"{self.adc}:{self.scts}" if self.scts else None


# --- The protocol --------------------------------------------------------------------------------


class UcpSmscProtocol(protocol.Protocol):
    """One ESME connection (main, or to the inbound listener when ``inbound``)."""

    def __init__(self, factory: UcpSmscFactory, inbound: bool = False) -> None:
        self.factory = factory
        self.inbound = inbound
        self.buffer = b""
        self.peer = "?"
        self.connected_now = False
        self.closing = False
        self.logged_in = False
        self.account: str | None = None
        self._trn = -1
        self._pending: dict[int, tuple[Deferred[Frame | None], Any]] = {}
        self._lost: list[Deferred[None]] = []

    def connectionMade(self) -> None:
        self.connected_now = True
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self.factory.connections.append(self)
        self.factory._event("connect", peer=self.peer, inbound=self.inbound or None)
        self.factory._flush_waiting()  # without accounts a connection can receive at once

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.connected_now = False
        if self in self.factory.connections:
            self.factory.connections.remove(self)
        self.factory._event("disconnect", peer=self.peer)
        pending, self._pending = self._pending, {}
        for d, call in pending.values():
            self.factory._timers.cancel(call)
            d.callback(None)
        lost, self._lost = self._lost, []
        for d in lost:
            d.callback(None)

    def when_lost(self) -> Deferred[None]:
        if not self.connected_now:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._lost.append(d)
        return d

    # framing

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        f = self.factory
        while self.connected_now and not self.closing:
            start = self.buffer.find(STX)
            if start < 0:
                if self.buffer:
                    f.bad_frames.append(self.buffer)
                self.buffer = b""
                return
            if start:
                f.bad_frames.append(self.buffer[:start])
                self.buffer = self.buffer[start:]
            end = self.buffer.find(ETX)
            if end < 0:
                if len(self.buffer) > MAX_FRAME:
                    f.bad_frames.append(self.buffer[:64])
                    self.buffer = b""
                return
            raw, self.buffer = self.buffer[: end + 1], self.buffer[end + 1 :]
            self._frame(raw)

    def _frame(self, raw: bytes) -> None:
        f = self.factory
        try:
            frame = unpack_frame(raw)
        except BadFrame as e:
            f.bad_frames.append(raw)
            f._event("bad_frame", reason=e.reason, ec=f"{e.ec:02d}")
            if e.kind == "O" and e.trn.isdigit() and e.ot.isdigit():
                self.write_result(int(e.trn), int(e.ot), e.ec, e.reason)
            return
        frame.peer = self.peer
        f.frames.append(frame)
        if frame.kind == "R":
            f.results_received.append(frame)
            f._event("result", ot=f"{frame.ot:02d}", trn=f"{frame.trn:02d}", ack=frame.ack)
            entry = self._pending.pop(frame.trn, None)
            if entry is not None:
                f._timers.cancel(entry[1])
                entry[0].callback(frame)
            return
        if f.hang:
            f._event("ignored", ot=f"{frame.ot:02d}", trn=f"{frame.trn:02d}")
            return
        handler = {60: self._login, 51: self._submit, 31: self._alert}.get(frame.ot)
        if handler is None:
            self.write_result(frame.trn, frame.ot, EC_NOT_SUPPORTED, "Operation not supported")
            return
        handler(frame)

    # writing

    def write(self, data: bytes) -> bool:
        if not self.connected_now or self.closing:
            return False
        self.transport.write(data)
        return True

    def write_result(self, trn: int, ot: int, ec: int | None = None, sm: str = "") -> bool:
        """ACK (``ec`` None) or NACK, in the layout of ``ot``."""
        if ec is not None:
            fields = ["N", f"{ec:02d}", sm]
        elif 50 <= ot <= 59:
            fields = ["A", "", sm]
        else:
            fields = ["A", sm]
        return self.write(pack_frame(trn, "R", ot, fields))

    def send_raw(self, data: bytes) -> None:
        if self.write(data):
            self.factory.raw_sent.append(data)

    def next_trn(self) -> int:
        self._trn = (self._trn + 1) % 100
        return self._trn

    def operation(self, ot: int, fields: Sequence[str], timeout: float) -> Deferred[Frame | None]:
        """Send an operation; fires with the client's result, None on timeout/disconnect."""
        trn = self.next_trn()
        d: Deferred[Frame | None] = Deferred()
        if not self.write(pack_frame(trn, "O", ot, fields)):
            d.callback(None)
            return d
        call = self.factory._later(timeout, self._expire, trn)
        self._pending[trn] = (d, call)
        return d

    def _expire(self, trn: int) -> None:
        entry = self._pending.pop(trn, None)
        if entry is not None:
            entry[0].callback(None)

    def close(self) -> None:
        self.closing = True
        self.transport.loseConnection()

    # operations from the client

    def _login(self, frame: Frame) -> None:
        f = self.factory
        named = frame.named()
        account = named.get("OAdC", "")
        try:
            password = bytes.fromhex(named.get("PWD", "")).decode("latin-1")
        except ValueError:
            self.write_result(frame.trn, 60, EC_SYNTAX, "PWD not hex")
            return
        login = Login(account, password, named, self.peer)
        f.logins.append(login)
        ok = f.accounts is None or f.accounts.get(account) == password
        if f.login_failures:
            ok, code = False, f.login_failures.pop(0)
        else:
            code = EC_AUTHENTICATION
        f._event("login", account=account, ok=ok)
        if not ok:
            self.write_result(frame.trn, 60, code, "Authentication failure")
            if f.close_on_login_failure:
                self.close()
            return
        login.accepted = self.logged_in = True
        self.account = account
        self.write_result(frame.trn, 60)
        f._flush_waiting()

    def _alert(self, frame: Frame) -> None:
        self.factory.alerts.append(frame)
        self.write_result(frame.trn, 31)

    def _submit(self, frame: Frame) -> None:
        f = self.factory
        named = frame.named()
        sub = Submit(
            frame.trn, named, frame.fields[len(FIELDS_5X) :], self.peer, f.reactor.seconds()
        )
        f.submits.append(sub)
        adc = sub.adc
        if f.ignore_count > 0 or f.drop_after is not None:
            sub.held = True
            if f.ignore_count > 0:
                f.ignore_count -= 1
                f._event("submit", trn=f"{frame.trn:02d}", to=adc, status="ignored")
                return
            assert f.drop_after is not None
            f.drop_after -= 1
            f._event("submit", trn=f"{frame.trn:02d}", to=adc, status="held")
            if f.drop_after <= 0:
                f.drop_after = None
                f._event("drop", peer=self.peer)
                self.close()
            return
        if f.accounts is not None and not self.logged_in:
            sub.error = f.not_logged_in_error
        elif f.nack_queue:
            sub.error = f.nack_queue.pop(0)
        elif not adc.isdigit() or len(adc) > 16:
            sub.error = EC_ADC_INVALID
        else:
            try:
                _ = sub.text, sub.data, sub.oadc
            except ValueError:
                sub.error = EC_SYNTAX
        if sub.error is None:
            sub.scts = f._new_scts()
        f._event(
            "submit",
            trn=f"{frame.trn:02d}",
            to=adc,
            status="ack" if sub.error is None else f"nack {sub.error:02d}",
            id=sub.id,
        )
        f._answer_later(self, sub)

    def answer(self, sub: Submit) -> None:
        sm = sub.id or ""
        if sub.error is not None:
            sm = "throttled" if sub.error == EC_NOT_ALLOWED else "refused"
        if self.write_result(sub.trn, 51, sub.error, sm):
            sub.answered = True


class _Factory(protocol.ServerFactory):
    def __init__(self, parent: UcpSmscFactory, inbound: bool) -> None:
        self.parent = parent
        self.inbound = inbound

    def buildProtocol(self, addr: Any) -> UcpSmscProtocol:
        return UcpSmscProtocol(self.parent, self.inbound)


# --- The factory: configuration, faults, records, helpers ---------------------------------------


class UcpSmscFactory(protocol.ServerFactory):
    """The simulated SMSC. Keyword options are also attributes, changeable at run time.

    ``accounts`` (account -> password; None: no login needed, as SMSCs that authenticate by
    IP), ``close_on_login_failure``, ``not_logged_in_error`` (the NACK for a submit before a
    login when accounts are set), ``ack_delay``, ``notifications`` (send OT 53 for submits
    with NRq=1, after ``notify_delay``, with ``notify_status`` (Dst, Rsn)), ``mo_via``
    ("main", "inbound" or "any": where OT 52/53 go), ``result_timeout`` (how long to wait for
    the client's ACK), ``hang``, ``drop_after``.
    """

    def buildProtocol(self, addr: Any) -> UcpSmscProtocol:
        return UcpSmscProtocol(self)

    def __init__(
        self,
        *,
        accounts: dict[str, str] | None = None,
        close_on_login_failure: bool = False,
        not_logged_in_error: int = EC_AUTHENTICATION,
        ack_delay: float = 0.0,
        notifications: bool = False,
        notify_delay: float = 0.0,
        notify_status: tuple[int, str] = (0, "000"),
        mo_via: str = "any",
        result_timeout: float = 5.0,
        hang: bool = False,
        drop_after: int | None = None,
        first_scts: datetime = datetime(2025, 1, 2, 12, 0, 0),
        on_event: Callable[[str], None] | None = None,
        reactor: Any = None,
    ) -> None:
        if mo_via not in ("main", "inbound", "any"):
            raise ValueError("mo_via: main, inbound or any")
        self.reactor: Any = reactor if reactor is not None else global_reactor
        self.accounts = accounts
        self.close_on_login_failure = close_on_login_failure
        self.not_logged_in_error = not_logged_in_error
        self.ack_delay = ack_delay
        self.notifications = notifications
        self.notify_delay = notify_delay
        self.notify_status = notify_status
        self.mo_via = mo_via
        self.result_timeout = result_timeout
        self.hang = hang
        self.drop_after = drop_after
        self.on_event = on_event
        self.nack_queue: list[int] = []
        self.login_failures: list[int] = []
        self.ignore_count = 0
        # records
        self.frames: list[Frame] = []
        self.logins: list[Login] = []
        self.submits: list[Submit] = []
        self.alerts: list[Frame] = []
        self.results_received: list[Frame] = []
        self.bad_frames: list[bytes] = []
        self.raw_sent: list[bytes] = []
        self.operations_sent: list[tuple[int, list[str]]] = []  # (OT, fields)
        self.events: list[str] = []
        # state
        self.connections: list[UcpSmscProtocol] = []
        self.listeners: list[Any] = []
        self.inbound_listeners: list[Any] = []
        self._scts = first_scts
        self._timers = Timers(self.reactor, "simulator stopped")
        self._waiting: list[tuple[int, list[str], Deferred[Frame | None]]] = []

    @property
    def accepted(self) -> list[Submit]:
        return [s for s in self.submits if s.scts is not None]

    @property
    def outstanding(self) -> list[Submit]:
        """Submits never answered (held, ignored, or answer pending)."""
        return [s for s in self.submits if not s.answered]

    # life cycle

    def listen(self, port: int = 0, interface: str = "127.0.0.1") -> int:
        listener = self.reactor.listenTCP(port, _Factory(self, False), interface=interface)
        self.listeners.append(listener)
        return listener.getHost().port

    def listen_inbound(self, port: int = 0, interface: str = "127.0.0.1") -> int:
        """A second port some SMSCs offer for OT 52/53 only: the client connects (and may
        log in) there to receive."""
        listener = self.reactor.listenTCP(port, _Factory(self, True), interface=interface)
        self.inbound_listeners.append(listener)
        return listener.getHost().port

    @property
    def port(self) -> int:
        return self.listeners[0].getHost().port

    def stop(self) -> Deferred[None]:
        """Close listeners and connections, cancel every timer; fires when all is closed."""
        self._timers.stop()
        waiting, self._waiting = self._waiting, []
        for _, _, d in waiting:
            if not d.called:
                d.callback(None)
        ds: list[Deferred[Any]] = []
        for listener in self.listeners + self.inbound_listeners:
            ds.append(defer.maybeDeferred(listener.stopListening))
        self.listeners, self.inbound_listeners = [], []
        for conn in list(self.connections):
            ds.append(conn.when_lost())
            conn.transport.abortConnection()
        return defer.gatherResults(ds).addCallback(lambda _: None)

    def _later(self, delay: float, f: Callable[..., Any], *args: Any) -> Any:
        return self._timers.later(delay, f, *args)

    def _event(self, event: str, /, **fields: Any) -> None:
        line = " ".join([event] + [f"{k}={v}" for k, v in fields.items() if v is not None])
        self.events.append(line)
        if self.on_event is not None:
            self.on_event(line)

    # faults

    def nack_next(self, code: int = EC_NOT_ALLOWED, count: int = 1) -> None:
        """NACK the next ``count`` submits with ``code`` (04: what throttling SMSCs send)."""
        self.nack_queue.extend([code] * count)

    def ignore_next(self, count: int = 1) -> None:
        """Never answer the next ``count`` submits."""
        self.ignore_count += count

    def fail_next_logins(self, code: int = EC_AUTHENTICATION, count: int = 1) -> None:
        self.login_failures.extend([code] * count)

    def _new_scts(self) -> str:
        """A fresh SCTS, one second after the last: ids stay unique per AdC."""
        self._scts += timedelta(seconds=1)
        return self._scts.strftime("%d%m%y%H%M%S")

    def _answer_later(self, conn: UcpSmscProtocol, sub: Submit) -> None:
        if self.ack_delay > 0:
            self._later(self.ack_delay, conn.answer, sub)
        else:
            conn.answer(sub)
        if sub.scts and self.notifications and sub.fields.get("NRq") == "1":
            dst, rsn = self.notify_status
            self._later(self.ack_delay + self.notify_delay, self.notify, sub, dst, rsn)

    # operations towards the client

    def _target(self) -> UcpSmscProtocol | None:
        live = [c for c in self.connections if c.connected_now and not c.closing]
        if self.accounts is not None:
            live = [c for c in live if c.logged_in]
        inbound = [c for c in live if c.inbound]
        main = [c for c in live if not c.inbound]
        chosen = {"inbound": inbound, "main": main, "any": inbound or main}[self.mo_via]
        return chosen[-1] if chosen else None

    def send_operation(self, ot: int, fields: Sequence[str]) -> Deferred[Frame | None]:
        """Send OT ``ot`` to the client (queued until a connection can take it); fires with
        the client's result frame, or None if it never answered."""
        d: Deferred[Frame | None] = Deferred()
        self._waiting.append((ot, list(fields), d))
        self._flush_waiting()
        return d

    def _flush_waiting(self) -> None:
        conn = self._target()
        if conn is None:
            return
        waiting, self._waiting = self._waiting, []
        for ot, fields, d in waiting:
            self.operations_sent.append((ot, fields))
            self._event("operation", ot=f"{ot:02d}", peer=conn.peer)
            conn.operation(ot, fields, self.result_timeout).chainDeferred(d)

    def deliver_mo(
        self,
        adc: str,
        oadc: str,
        text: str | None = None,
        *,
        data: bytes | None = None,
        xser: str = "",
        scts: str | None = None,
        **extra: str,
    ) -> Deferred[Frame | None]:
        """An OT 52 MO from ``oadc`` to ``adc`` (MT 3 ``text`` or MT 4 ``data``)."""
        values = {"AdC": adc, "OAdC": oadc, "SCTS": scts or self._new_scts(), "XSer": xser}
        if data is not None:
            values.update(MT="4", NB=str(8 * len(data)), Msg=data.hex().upper())
        else:
            values.update(MT="3", Msg=hex_text(text or ""))
        values.update(extra)
        return self.send_operation(52, [values.get(n, "") for n in FIELDS_5X])

    def notify(
        self, sub: Submit, dst: int = 0, rsn: str = "000", text: str | None = None
    ) -> Deferred[Frame | None]:
        """An OT 53 for ``sub``: AdC and SCTS as its ACK gave them, Dst 0/1/2, Rsn."""
        assert sub.scts is not None, "only accepted submits get notifications"
        when = datetime.strptime(sub.scts, "%d%m%y%H%M%S") + timedelta(seconds=5)
        state = {0: "delivered", 1: "buffered", 2: "not delivered"}.get(dst, "unknown")
        values = {
            "AdC": sub.adc,
            "OAdC": sub.fields.get("OAdC", ""),
            "SCTS": sub.scts,
            "Dst": str(dst),
            "Rsn": rsn,
            "DSCTS": when.strftime("%d%m%y%H%M%S"),
            "MT": "3",
            "Msg": hex_text(
                text or f"Message for {sub.adc}, with identification {sub.scts} has been {state}"
            ),
        }
        return self.send_operation(53, [values.get(n, "") for n in FIELDS_5X])

    def send_alert(self, adc: str = "", pid: str = "0539") -> Deferred[Frame | None]:
        return self.send_operation(31, [adc, pid])

    def _live(self) -> UcpSmscProtocol:
        live = [c for c in self.connections if c.connected_now and not c.closing]
        if not live:
            raise LookupError("no client connection")
        return live[-1]

    def send_garbage(self, data: bytes = b"noise\r\n") -> None:
        """Bytes outside any frame."""
        self._live().send_raw(data)
        self._event("garbage", size=len(data))

    def send_bad_checksum(self, ot: int = 52, trn: int = 77) -> Deferred[Frame | None]:
        """A well-formed operation with a wrong checksum; the client should NACK it with 01.
        Fires with the client's result (or None)."""
        conn = self._live()
        frame = pack_frame(trn, "O", ot, [""] * (2 if ot == 31 else len(FIELDS_5X)))
        bad = frame[:-3] + (b"00" if frame[-3:-1] != b"00" else b"01") + ETX
        d: Deferred[Frame | None] = Deferred()
        call = self._later(self.result_timeout, self._give_up, conn, trn)
        conn._pending[trn] = (d, call)
        conn.send_raw(bad)
        self._event("garbage", kind="bad_checksum", trn=trn)
        return d

    def _give_up(self, conn: UcpSmscProtocol, trn: int) -> None:
        conn._expire(trn)

    def drop_connections(self) -> Deferred[None]:
        """Close every connection from the SMSC side."""
        conns = list(self.connections)
        ds = [c.when_lost() for c in conns]
        for c in conns:
            c.close()
        return defer.gatherResults(ds).addCallback(lambda _: None)

    def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 10.0,
        interval: float = 0.01,
        what: str = "condition",
    ) -> Deferred[Any]:
        """Poll ``predicate``; fires with its first truthy value, AssertionError on timeout."""
        return self._timers.wait_for(predicate, timeout, interval, what)


# --- Standalone ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.peers.ucpsmsc``: run the simulator, one line per event on stdout."""
    parser = argparse.ArgumentParser(prog="python -m tests.peers.ucpsmsc", description=__doc__)
    parser.add_argument("--port", type=int, default=3600, help="0: a free port")
    parser.add_argument("--inbound-port", type=int, default=None)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--account", action="append", default=[], metavar="NAME:PASSWORD")
    parser.add_argument("--notifications", action="store_true")
    parser.add_argument("--ack-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    accounts = dict(a.split(":", 1) for a in args.account) if args.account else None

    def emit(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    factory = UcpSmscFactory(
        accounts=accounts,
        notifications=args.notifications,
        ack_delay=args.ack_delay,
        on_event=emit,
    )
    port = factory.listen(args.port, args.interface)
    emit(f"listening interface={args.interface} port={port}")
    if args.inbound_port is not None:
        emit(f"inbound port={factory.listen_inbound(args.inbound_port, args.interface)}")
    global_reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
