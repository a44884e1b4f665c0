"""The GSM modem gateway: SMS out with AT+CMGS in PDU mode, SMS and status reports in.

One ``[[gateway]]`` of type ``modem`` is one modem on a serial or USB port,
opened with Twisted's ``SerialPort`` (pyserial). ``protocols.at`` keeps the
AT dialogue (one command in flight, URCs at any moment) and ``protocols.tpdu``
builds and reads the PDUs; this module adds the I/O, the timers and what the
gateway decides, so that a modem keeps working without anyone watching it:

* start-up: ESC (leaves a half-sent CMGS without sending it), ATZ, ATE0,
  AT+CMEE=1, SIM PIN (entered once: a PIN the SIM refused is never tried
  again, so smsd cannot lock the SIM), PDU mode, the SMSC address if
  configured, storages, new-message indications, identity for the status
  page, registration, then a sweep of what is stored on the SIM;
* a health check (AT+CSQ, AT+CREG?) every ``check_interval``: more than two
  in a row without an answer close the port and open it again; three failed
  sends in a row re-initialise the modem (with ``reset_command`` after
  repeated failures); a vanished device is reopened with back-off until it
  returns; lost registration takes the modem out of the pool until it is back;
* inbound SMS and status reports from +CMTI/+CDSI (read with CMGR), +CMT/+CDS
  (given directly) and the periodic CMGL sweep; a stored SMS is deleted from
  the SIM only after the store committed it, and a PDU that does not decode
  is kept raw in the inbox, never lost;
* TP-MR wraps at 256, so each sent part gets an id of its own and a status
  report finds it by (TP-MR, recipient): the oldest open one.
"""

from __future__ import annotations

import collections
import contextlib
import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from protocols import at, tpdu
from smsd import numbers
from smsd.configschema import Duration, between, one_of, setting
from smsd.gateways.base import Gateway, GatewayEvents, Health, check_within_send_timeout
from smsd.model import Inbound, Message, PartResult, Report, State

log = Logger()

REPORT_MEMORY = 7 * 86400.0  # how long a sent part waits for its status report
# A modem that rebooted says so: SIMCom "RDY", Cinterion and Huawei "^SYSSTART", Wavecom
# "+WIND: 3" / "+WIND: 4" (ready for AT commands).
RESTARTED = frozenset({"RDY", "^SYSSTART"})
REGISTERED = {"1": "home network", "5": "roaming"}
REGISTRATION = {
    "0": "not registered, not searching",
    "2": "not registered, searching",
    "3": "registration denied",
    "4": "registration unknown",
}


@attrs.frozen
class Options:
    device: str = setting(doc="the serial device, e.g. /dev/ttyUSB0 or a udev name")
    baudrate: int = setting(115200, "serial speed (USB modems ignore it)")
    pin: str = setting("", "SIM PIN, entered once if the SIM asks (never logged)")
    number: str = setting("", "the SIM's own number, the recipient of what comes in")
    smsc: str = setting("", "SMSC address for AT+CSCA; empty: the one on the SIM")
    storage: str = setting("SM", "message storage for AT+CPMS: SM (SIM), ME or MT")
    status_reports: bool = setting(True, "ask the network for status reports")
    validity: int = setting(-1, "relative TP-VP octet (167 = 1 day); -1: none (the SMSC's default)")
    per_minute: float = setting(0.0, "SMS parts a minute at most; 0: as fast as it goes")
    command_timeout: Duration = setting(Duration(10), "longest wait for an AT command's answer")
    cmgs_timeout: Duration = setting(
        Duration(45), "longest wait for AT+CMGS's answer; shorter than send_timeout"
    )
    cmgs_unanswered: str = setting(
        "resend",
        "an AT+CMGS with no answer after the PDU went out: resend (a hung modem seldom"
        " sent it) or assume-sent (never twice, maybe never)",
        one_of("resend", "assume-sent"),
    )
    check_interval: Duration = setting(Duration(30), "time between health checks")
    check_failures: int = setting(
        3, "unanswered health checks in a row that reopen the port", between(1, 1000)
    )
    send_failures: int = setting(
        3, "failed sends in a row that re-initialise the modem", between(1, 1000)
    )
    reset_command: str = setting(
        "", "sent after repeated re-initialisations fail, e.g. AT+CFUN=1,1; empty: none"
    )
    reopen_min: Duration = setting(Duration(1), "first wait before reopening the port")
    reopen_max: Duration = setting(Duration(60), "longest wait before reopening the port")
    sweep_interval: Duration = setting(
        Duration(300), "time between sweeps of the stored messages (lost URCs)"
    )
    cnmi: str = setting("2,1,0,2,0", "AT+CNMI parameters: store SMS and reports, tell us")
    init: list[str] = setting(factory=list, doc="extra AT commands after the standard start-up")


class CommandFailed(Exception):
    """An AT command the start-up or a check needs ended in an error or a timeout."""

    def __init__(
        self, command: str, words: str, *, timed_out: bool = False, prompted: bool = False
    ) -> None:
        super().__init__(f"{command}: {words}")
        self.command = command
        self.words = words
        self.timed_out = timed_out
        self.prompted = prompted  # a payload command's prompt had come: the payload went out


class _Port(Protocol):
    """Hands what the serial port reads to the gateway, and its loss."""

    def __init__(self, gateway: ModemGateway) -> None:
        self.gateway = gateway

    def dataReceived(self, data: bytes) -> None:
        self.gateway.received(self, data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.gateway.lost(self, reason)


@attrs.define
class _Job:
    """A message waiting for the modem, with the Deferred its sender waits on."""

    message: Message
    deferred: Deferred[list[PartResult]]


def serial_port(protocol: Protocol, device: str, reactor: Any, baudrate: int) -> Any:
    """Open ``device`` (raises OSError or serial's SerialException when it is not there)."""
    from twisted.internet.serialport import SerialPort

    return SerialPort(protocol, device, reactor, baudrate=baudrate)


class ModemGateway(Gateway):
    type = "modem"

    def __init__(
        self,
        gateway_id: str,
        events: GatewayEvents,
        options: Options,
        reactor: Any,
        *,
        sender: str = "",
        default_country: str = "US",
        open_port: Callable[[Protocol, str, Any, int], Any] = serial_port,
    ) -> None:
        super().__init__(gateway_id, events, sender=sender)
        self.options = options
        self.reactor = reactor
        self.default_country = default_country
        self.open_port = open_port
        self.session = at.AtSession()
        self.port: Any = None
        self.protocol: _Port | None = None
        self.ready = False  # initialised and registered: may send
        self.jobs: collections.deque[_Job] = collections.deque()
        self.sending = False
        self.identity: dict[str, str] = {}
        self.signal: int | None = None  # CSQ rssi 0..31, None: unknown
        self.registration = ""
        self.last_error = ""
        self.counters = collections.Counter(
            {"sent": 0, "failed": 0, "received": 0, "reports": 0, "reinits": 0, "opened": 0}
        )
        self._reopen_delay = options.reopen_min
        self._timers: dict[str, Any] = {}
        self._check_misses = 0
        self._send_errors = 0
        self._failed_inits = 0
        self._pin_refused = False
        self._reading: set[int] = set()  # storage indexes being read or committed
        self._open_reports: dict[int, list[tuple[str, str, float]]] = {}  # mr -> (digits, id, at)
        self._next_send_at = 0.0
        self._generation = 0  # bumps on every open: late callbacks of an old port are ignored
        self._stopping = False

    # Life ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._open()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopping = True
        for name in list(self._timers):
            self._cancel(name)
        self._fail_jobs("the gateway stopped before sending")
        self._close()
        self.set_health(Health.DOWN, "stopped")
        return succeed(None)

    def in_flight_limit(self, window: int) -> int:
        """One message at a time: a modem sends one SMS after the other."""
        return 1

    def status(self) -> dict[str, Any]:
        return {
            "device": self.options.device,
            "signal": _dbm(self.signal),
            "registration": self.registration,
            "identity": dict(self.identity),
            "last_error": self.last_error,
            "queued": len(self.jobs),
            **self.counters,
        }

    # The port --------------------------------------------------------------

    def _open(self) -> None:
        if self._stopping:
            return
        self._generation += 1
        self.session = at.AtSession()
        self.protocol = _Port(self)
        try:
            self.port = self.open_port(
                self.protocol, self.options.device, self.reactor, self.options.baudrate
            )
        except Exception as e:  # OSError, serial.SerialException: not there (yet)
            self.port = None
            self._down(f"cannot open {self.options.device}: {_words(e)}")
            self._schedule_reopen()
            return
        self.counters["opened"] += 1
        log.info("gateway {id}: {device} open", id=self.id, device=self.options.device)
        self._start_init()

    def _close(self) -> None:
        port, self.port = self.port, None
        self.ready = False
        if port is not None:
            self.protocol = None  # its connectionLost is ours, not a vanished device
            try:
                port.loseConnection()
            except Exception:
                log.failure(
                    "gateway {id}: closing {device}", id=self.id, device=self.options.device
                )
        self._fail_commands()

    def _schedule_reopen(self) -> None:
        if self._stopping:
            return
        delay = self._reopen_delay * (0.8 + 0.4 * random.random())
        self._reopen_delay = min(self._reopen_delay * 2, self.options.reopen_max)
        self._later("reopen", delay, self._open)

    def _reopen(self, why: str) -> None:
        """Close, wait, open again, initialise again."""
        log.warn(
            "gateway {id}: reopening {device}: {why}",
            id=self.id,
            device=self.options.device,
            why=why,
        )
        self._close()
        self._down(why)
        self._schedule_reopen()

    def received(self, protocol: _Port, data: bytes) -> None:
        if protocol is not self.protocol:
            return
        self._handle(self.session.receive(data, self.reactor.seconds()))

    def lost(self, protocol: _Port, reason: Failure | None) -> None:
        if protocol is not self.protocol:
            return  # a port we closed ourselves
        self.port = self.protocol = None
        self.ready = False
        self._fail_commands()
        why = f"{self.options.device} went away"
        self._down(why)
        log.warn("gateway {id}: {why}", id=self.id, why=why)
        self._schedule_reopen()

    def _write(self) -> None:
        data = self.session.data_to_send()
        if data and self.port is not None:
            self.port.write(data)
        self._arm_deadline()

    # The AT dialogue -------------------------------------------------------

    def command(
        self, line: str, *, timeout: float | None = None, payload: bytes | None = None
    ) -> Deferred[at.Response]:
        """Run one command; fires with its Response (errors too), fails on a timeout."""
        d: Deferred[at.Response] = Deferred()
        if self.port is None:
            d.errback(CommandFailed(_shown(line), "the port is closed"))
            return d
        self.session.command(
            line,
            self.reactor.seconds(),
            timeout=timeout or self.options.command_timeout,
            payload=payload,
            tag=d,
        )
        self._write()
        return d

    async def ok(self, line: str, *, timeout: float | None = None) -> at.Response:
        """Run one command that must succeed."""
        response = await self.command(line, timeout=timeout)
        if not response.ok:
            raise CommandFailed(_shown(line), _error_words(response))
        return response

    def _handle(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, at.Response):
                event.tag.callback(event)
            elif isinstance(event, at.Timeout):
                event.tag.errback(
                    CommandFailed(
                        _shown(event.command), "no answer", timed_out=True, prompted=event.prompted
                    )
                )
            elif isinstance(event, at.Urc):
                self._urc(event)
            elif isinstance(event, at.Noise):
                log.debug("gateway {id}: modem said {line!r}", id=self.id, line=event.line)
        self._write()

    def _arm_deadline(self) -> None:
        deadline = self.session.next_deadline()
        if deadline is None:
            self._cancel("deadline")
            return
        delay = max(0.0, deadline - self.reactor.seconds())
        self._later("deadline", delay, self._expire)

    def _expire(self) -> None:
        self._handle(self.session.expired(self.reactor.seconds()))

    def _fail_commands(self) -> None:
        self._handle(self.session.abort())

    # Start-up and checks ---------------------------------------------------

    def _start_init(self) -> None:
        generation = self._generation
        d = ensureDeferred(self._initialise())

        def done(_: Any) -> None:
            if generation == self._generation:
                self._failed_inits = 0
                self._reopen_delay = self.options.reopen_min

        def failed(f: Failure) -> None:
            if generation != self._generation or self._stopping:
                return
            why = _failure_words(f)
            self._failed_inits += 1
            self.last_error = why
            if self._pin_refused or "PUK" in why:
                # Retrying would lock or waste the SIM: wait for a person (and a restart).
                self._close()
                self._down(why)
                log.error("gateway {id}: {why}: not retrying", id=self.id, why=why)
                return
            if self._failed_inits >= 2 and self.options.reset_command and self.port is not None:
                self._failed_inits = 0
                log.warn(
                    "gateway {id}: start-up failed twice, sending {reset}",
                    id=self.id,
                    reset=self.options.reset_command,
                )
                self.port.write(self.options.reset_command.encode("ascii", "replace") + b"\r")
            self._reopen(f"start-up failed: {why}")

        d.addCallbacks(done, failed)

    async def _initialise(self) -> None:
        o = self.options
        self.ready = False
        self.counters["reinits"] += 1
        if self.port is not None:
            self.port.write(b"\x1b\r")  # leave a half-sent CMGS without sending it
        await self._pause(0.3)
        await self.command("ATZ")  # some answer ERROR to ATZ; what matters is what follows
        await self.ok("ATE0")
        await self.command("AT+CMEE=1")
        await self._unlock_sim()
        await self.ok("AT+CMGF=0")
        if o.smsc:
            await self.ok(f'AT+CSCA="{o.smsc}",{145 if o.smsc.startswith("+") else 129}')
        storage = o.storage.upper()
        await self.command(f'AT+CPMS="{storage}","{storage}","{storage}"')
        await self.ok(f"AT+CNMI={o.cnmi}")
        for extra in o.init:
            await self.ok(extra)
        await self._identify()
        await self._check_registration()
        self._check_misses = 0
        self._send_errors = 0
        self._later("check", o.check_interval, self._check)
        self._later("sweep", 0, self._sweep)
        log.info(
            "gateway {id}: modem ready: {identity}",
            id=self.id,
            identity=" ".join(self.identity.values()),
        )

    async def _pause(self, seconds: float, name: str = "pause") -> None:
        d: Deferred[None] = Deferred()
        self._later(name, seconds, lambda: d.callback(None))  # cancelled by a stop
        await d

    async def _unlock_sim(self) -> None:
        response = await self.command("AT+CPIN?")
        state = _value(response, "+CPIN").upper()
        if not response.ok and not state:
            raise CommandFailed("AT+CPIN?", _error_words(response))
        if state in ("READY", ""):
            return
        if "PUK" in state:
            raise CommandFailed("AT+CPIN?", "the SIM asks for its PUK")
        if state != "SIM PIN":
            raise CommandFailed("AT+CPIN?", f"the SIM asks for {state}")
        if not self.options.pin:
            raise CommandFailed("AT+CPIN?", "the SIM asks for a PIN and none is configured")
        if self._pin_refused:
            raise CommandFailed("AT+CPIN", "the SIM refused the configured PIN")
        response = await self.command(f'AT+CPIN="{self.options.pin}"')
        if not response.ok:
            self._pin_refused = True
            raise CommandFailed("AT+CPIN", f"the SIM refused the PIN ({_error_words(response)})")
        for _ in range(20):  # the SIM takes a moment to become ready
            await self._pause(0.5)
            check = await self.command("AT+CPIN?")
            if _value(check, "+CPIN").upper() == "READY":
                return
        raise CommandFailed("AT+CPIN?", "the SIM did not become ready after the PIN")

    async def _identify(self) -> None:
        for key, line in (
            ("manufacturer", "AT+CGMI"),
            ("model", "AT+CGMM"),
            ("revision", "AT+CGMR"),
            ("imei", "AT+CGSN"),
        ):
            response = await self.command(line)
            if response.ok and response.lines:
                self.identity[key] = _strip_prefix(response.lines[0])

    async def _check_registration(self) -> None:
        response = await self.ok("AT+CREG?")
        fields = at.fields(_value(response, "+CREG"))
        stat = fields[1] if len(fields) > 1 else (fields[0] if fields else "")
        signal = await self.command("AT+CSQ")
        csq = at.fields(_value(signal, "+CSQ"))
        if csq and csq[0].isdigit():
            self.signal = None if int(csq[0]) == 99 else int(csq[0])
        if stat in REGISTERED:
            self.registration = REGISTERED[stat]
            self.ready = True
            self._set_up()
        else:
            self.registration = REGISTRATION.get(stat, f"registration state {stat or '?'}")
            self.ready = False
            self._down(f"not registered: {self.registration}")

    def _check(self) -> None:
        """The periodic health check: AT+CSQ and AT+CREG?, each with its timeout."""
        generation = self._generation
        self._later("check", self.options.check_interval, self._check)
        if self.port is None or self.sending:
            return  # a send in progress is a check of its own

        def answered(_: Any) -> None:
            self._check_misses = 0

        def missed(f: Failure) -> None:
            if generation != self._generation:
                return
            if f.check(CommandFailed) and f.value.timed_out:
                self._check_misses += 1
                self.last_error = f"health check unanswered ({self._check_misses} in a row)"
                if self._check_misses >= self.options.check_failures:
                    self._check_misses = 0
                    self._reopen("the modem stopped answering")
                return
            self.last_error = _failure_words(f)

        ensureDeferred(self._check_registration()).addCallbacks(answered, missed)

    def _unanswered(self, why: str) -> None:
        """A command went unanswered: out of the pool at once, then checks decide."""
        if self.ready:
            self.ready = False
            self._down(why)
            self._later("check", 0, self._check)

    def _set_up(self) -> None:
        if self.health != Health.UP:
            self.set_health(Health.UP)
        self._pump()

    def _down(self, why: str) -> None:
        self.last_error = why
        self.set_health(Health.DOWN, why)
        self._fail_jobs(f"not sent: {why}")

    # Sending ---------------------------------------------------------------

    def send(self, message: Message) -> Deferred[list[PartResult]]:
        d: Deferred[list[PartResult]] = Deferred()
        self.jobs.append(_Job(message, d))
        self._pump()
        return d

    def _fail_jobs(self, why: str) -> None:
        """What waits here was never sent: back to the queue, no attempt counted."""
        jobs, self.jobs = list(self.jobs), collections.deque()
        for job in jobs:
            job.deferred.callback(
                [PartResult(p.seq, False, status=why, throttled=True) for p in job.message.parts]
            )

    def _pump(self) -> None:
        if self.sending or not self.jobs or not self.ready or self.port is None:
            return
        now = self.reactor.seconds()
        if now < self._next_send_at:
            self._later("pump", self._next_send_at - now, self._pump)
            return
        job = self.jobs.popleft()
        self.sending = True
        generation = self._generation

        def finished(results: list[PartResult]) -> None:
            self.sending = False
            job.deferred.callback(results)
            if generation == self._generation:
                self._after_send(results)
            self._pump()

        ensureDeferred(self._send(job.message)).addCallbacks(
            finished,
            lambda f: finished(
                [PartResult(p.seq, False, status=_failure_words(f)) for p in job.message.parts]
            ),
        )

    async def _send(self, message: Message) -> list[PartResult]:
        results: list[PartResult] = []
        parts = iter(message.parts)
        for part in parts:
            result = await self._send_part(message, part)
            results.append(result)
            if not result.ok:
                # The rest of the message waits with it: a phone cannot show half of it.
                word = result.status or "not sent"
                results += [
                    PartResult(
                        p.seq,
                        False,
                        status=word,
                        temporary=result.temporary,
                        throttled=result.throttled,
                    )
                    for p in parts
                ]
                break
        return results

    async def _send_part(self, message: Message, part: Any) -> PartResult:
        o = self.options
        try:
            encoded = tpdu.encode_submit(
                message.recipient,
                text=part.text,
                data=part.data,
                udh=part.udh,
                dcs=message.dcs,
                pid=message.pid,
                status_report=o.status_reports and message.registered_delivery,
                validity=o.validity if o.validity >= 0 else None,
            )
        except tpdu.TpduError as e:
            return PartResult(part.seq, False, status=f"cannot encode: {e}", temporary=False)
        if o.per_minute > 0:
            wait = self._next_send_at - self.reactor.seconds()
            if wait > 0:  # the next part of a long message keeps the pace too
                await self._pause(wait, "pace")
            self._next_send_at = self.reactor.seconds() + 60.0 / o.per_minute
        try:
            response = await self.command(
                f"AT+CMGS={encoded.length}",
                timeout=o.cmgs_timeout,
                payload=encoded.hex.encode("ascii") + b"\x1a",
            )
        except CommandFailed as e:
            if e.timed_out:
                self._unanswered(f"no answer to AT+CMGS within {o.cmgs_timeout:g} s")
            if e.prompted and o.cmgs_unanswered == "assume-sent":
                # The PDU went out and no +CMGS came: it may be on its way. Counted as
                # sent, with no report id, so that it cannot go out twice.
                log.warn(
                    "gateway {id}: AT+CMGS unanswered after the PDU: counted as sent", id=self.id
                )
                return PartResult(part.seq, True, provider_id=None, status="sent, unconfirmed")
            return PartResult(part.seq, False, status=f"modem: {e.words}")
        if response.ok:
            mr_text = at.fields(_value(response, "+CMGS"))
            provider_id = None
            if mr_text and mr_text[0].isdigit():
                provider_id = self._remember_sent(int(mr_text[0]), message.recipient)
            self.counters["sent"] += 1
            return PartResult(part.seq, True, provider_id=provider_id, status="+CMGS")
        self.counters["failed"] += 1
        words = _error_words(response)
        if response.result == "CMS" and response.code in (331, 332):
            self._later("check", 0, self._check)  # no network: is it still registered?
        return PartResult(part.seq, False, status=words, temporary=at.transient(response))

    def _after_send(self, results: list[PartResult]) -> None:
        if all(r.ok for r in results):
            self._send_errors = 0
            return
        failed = next(r for r in results if not r.ok)
        if failed.throttled:
            return
        self.last_error = failed.status or "send failed"
        if not failed.temporary:
            return  # the message's fault (a bad PDU, a bad number), not the modem's
        self._send_errors += 1
        if self._send_errors >= self.options.send_failures:
            self._send_errors = 0
            self._reinit(f"{self.options.send_failures} failed sends in a row")

    def _remember_sent(self, mr: int, recipient: str) -> str:
        now = self.reactor.seconds()
        provider_id = f"{mr}:{recipient}:{int(now * 1000)}"
        entries = [e for e in self._open_reports.get(mr, []) if now - e[2] < REPORT_MEMORY]
        entries.append((_digits(recipient), provider_id, now))
        self._open_reports[mr] = entries
        return provider_id

    def _match_report(self, report: tpdu.StatusReport) -> str | None:
        entries = self._open_reports.get(report.reference, [])
        digits = _digits(report.recipient)
        same = [e for e in entries if _same_number(e[0], digits)]
        if not same and len(entries) == 1:
            same = entries  # one candidate: the network wrote the number another way
        if not same:
            return None
        entry = same[0]  # the oldest one still open
        if report.final:
            entries.remove(entry)
        return entry[1]

    # Receiving -------------------------------------------------------------

    def _urc(self, urc: at.Urc) -> None:
        name = urc.name.upper()
        if name in ("+CMTI", "+CDSI"):
            fields = at.fields(urc.value)
            if len(fields) >= 2 and fields[1].isdigit():
                self._read_stored(int(fields[1]))
        elif name in ("+CMT", "+CDS") and urc.pdu:
            self._take_pdu(urc.pdu, None)
        elif name == "+CREG":
            fields = at.fields(urc.value)
            stat = fields[0] if len(fields) == 1 else (fields[1] if len(fields) > 1 else "")
            if stat in REGISTERED and not self.ready and self.port is not None:
                self._later("check", 0, self._check)
            elif stat and stat not in REGISTERED and self.ready:
                self.ready = False
                self.registration = REGISTRATION.get(stat, stat)
                self._down(f"lost network registration: {self.registration}")
        elif (name in RESTARTED or (name == "+WIND" and urc.value.strip() in ("3", "4"))) and (
            self.ready
        ):
            # The modem restarted by itself: its settings (PDU mode, CNMI) are gone.
            self._reinit("the modem restarted")
        elif name == "^RSSI":
            value = urc.value.strip()
            if value.isdigit():
                self.signal = None if int(value) == 99 else int(value)

    def _reinit(self, why: str) -> None:
        log.warn("gateway {id}: re-initialising: {why}", id=self.id, why=why)
        self.ready = False
        self._cancel("check")
        self._start_init()

    def _sweep(self) -> None:
        """Read what is stored (a lost +CMTI, messages from before a restart)."""
        self._later("sweep", self.options.sweep_interval, self._sweep)
        if self.port is None or not self.ready:
            return

        def listed(response: at.Response) -> None:
            if not response.ok:
                return
            lines = list(response.lines)
            for i, line in enumerate(lines):
                if not line.upper().startswith("+CMGL:") or i + 1 >= len(lines):
                    continue
                fields = at.fields(line.split(":", 1)[1])
                if len(fields) < 2 or not fields[0].isdigit():
                    continue
                index, stat = int(fields[0]), fields[1]
                if stat in ("0", "1") and index not in self._reading:
                    self._reading.add(index)
                    self._take_pdu(lines[i + 1], index)

        self.command("AT+CMGL=4").addCallbacks(listed, lambda f: None)

    def _read_stored(self, index: int) -> None:
        if index in self._reading:
            return
        self._reading.add(index)

        def read(response: at.Response) -> None:
            pdu = _pdu_after(response.lines, "+CMGR:") if response.ok else None
            if pdu is None:
                self._reading.discard(index)
                log.warn(
                    "gateway {id}: cannot read stored message {i}: {why}",
                    id=self.id,
                    i=index,
                    why=_error_words(response) if not response.ok else "no PDU",
                )
                return
            self._take_pdu(pdu, index)

        def failed(f: Failure) -> None:
            self._reading.discard(index)

        self.command(f"AT+CMGR={index}").addCallbacks(read, failed)

    def _take_pdu(self, pdu: str, index: int | None) -> None:
        """Commit what a PDU carries, then delete it from the storage (if it was stored)."""
        now = self.reactor.seconds()
        try:
            decoded = tpdu.decode_mt(pdu)
        except tpdu.TpduError as e:
            log.warn(
                "gateway {id}: a PDU that does not decode ({why}), kept raw: {pdu}",
                id=self.id,
                why=e,
                pdu=pdu,
            )
            raw = bytes.fromhex(pdu) if _is_hex(pdu) else pdu.encode("latin-1", "replace")
            d = self.events.receive(
                Inbound(self.id, "", self.options.number, None, raw, "8bit", now)
            )
        else:
            d = self._commit(decoded, now)

        def committed(_: Any) -> None:
            if index is not None:
                self.command(f"AT+CMGD={index}").addBoth(lambda _: self._reading.discard(index))
            elif self.port is not None:
                # Given directly (+CMT, +CDS): acknowledged once committed. A modem not
                # set up to expect it answers 340, which changes nothing.
                self.command("AT+CNMA").addBoth(lambda _: None)

        def failed(f: Failure) -> None:
            if index is not None:
                self._reading.discard(index)  # still on the SIM: the next sweep tries again
            log.failure("gateway {id}: an inbound message was not committed", f, id=self.id)

        d.addCallbacks(committed, failed)

    def _commit(self, decoded: tpdu.Deliver | tpdu.StatusReport, now: float) -> Deferred[Any]:
        if isinstance(decoded, tpdu.StatusReport):
            self.counters["reports"] += 1
            provider_id = self._match_report(decoded)
            if provider_id is None:
                log.info(
                    "gateway {id}: a status report for TP-MR {mr} to {to} matches nothing",
                    id=self.id,
                    mr=decoded.reference,
                    to=decoded.recipient,
                )
                return succeed(None)
            state = {
                "delivered": State.DELIVERED,
                "failed": State.FAILED,
            }.get(decoded.outcome, State.SENT)
            words = f"TP-ST 0x{decoded.status:02X}"
            return self.events.report(Report(self.id, provider_id, state, words, now))
        self.counters["received"] += 1
        sender = decoded.originator
        if sender and not sender.startswith("+") and sender.isdigit():
            with contextlib.suppress(numbers.NumberError):
                sender = numbers.normalise(sender, self.default_country)
        c = decoded.concat
        concat = (c.ref, c.total, c.seq) if c is not None else None
        return self.hand_in(
            sender, self.options.number, decoded.text, decoded.data, decoded.encoding, concat, now
        )

    # Timers ----------------------------------------------------------------

    def _later(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self._cancel(name)

        def fire() -> None:
            self._timers.pop(name, None)
            fn()

        self._timers[name] = self.reactor.callLater(delay, fire)

    def _cancel(self, name: str) -> None:
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()


# Helpers ---------------------------------------------------------------------


_SECRET = ("AT+CPIN=", "AT+CPWD=", "AT+CLCK=")


def _shown(command: str) -> str:
    """A command as logs and the health page may show it: never with a PIN in it."""
    for head in _SECRET:
        if command.upper().startswith(head):
            return head + "..."
    return command


def _value(response: at.Response, prefix: str) -> str:
    """The value of the first ``prefix: value`` line of a response, or ""."""
    for line in response.lines:
        if line.upper().startswith(prefix.upper() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _strip_prefix(line: str) -> str:
    """ "+CGMI: Huawei" -> "Huawei"; "Huawei" stays."""
    if line.startswith("+") and ":" in line:
        return line.split(":", 1)[1].strip().strip('"')
    return line.strip()


def _pdu_after(lines: tuple[str, ...], header: str) -> str | None:
    for i, line in enumerate(lines):
        if line.upper().startswith(header) and i + 1 < len(lines):
            return lines[i + 1]
    return None


def _error_words(response: at.Response) -> str:
    if response.result in ("CMS", "CME"):
        code = "" if response.code is None else f" {response.code}"
        words = f": {response.text}" if response.text else ""
        return f"+{response.result} ERROR{code}{words}"
    return response.text or response.result


def _failure_words(f: Failure) -> str:
    if f.check(CommandFailed):
        return str(f.value)
    return _words(f.value)


def _words(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


def _same_number(a: str, b: str) -> bool:
    """National and international forms of one number end alike."""
    n = min(len(a), len(b), 8)
    return n > 0 and a[-n:] == b[-n:]


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _dbm(rssi: int | None) -> int | None:
    """CSQ's 0..31 as dBm (27.007: 0 is -113 dBm or less, 31 is -51 or more)."""
    return None if rssi is None else -113 + 2 * rssi


def make(common: Any, options: Options, events: GatewayEvents, context: Any) -> ModemGateway:
    check_within_send_timeout(context.config.path, common, "cmgs_timeout", options.cmgs_timeout)
    return ModemGateway(
        common.id,
        events,
        options,
        context.reactor,
        sender=common.sender,
        default_country=context.config.smsd.default_country,
    )
