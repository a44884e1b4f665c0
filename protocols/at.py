"""The AT command dialogue with a GSM modem (TS 27.005 / TS 27.007), sans-IO: bytes and times
in, events out, no sockets, no timers, no clock.

A modem is a line-oriented half-duplex peer that also talks on its own: unsolicited result
codes (URCs: ``+CMTI``, ``+CDS``, ``RING``, Huawei's ``^RSSI``...) arrive at any moment, even
between ``AT+CMGS=<n>`` and its ``> `` prompt, or between an information line and the final
``OK``. :class:`AtSession` is therefore an event-driven line parser, not a "write, then read
until OK" loop: it keeps one command in flight, queues the rest, and sorts every line into a
:class:`Response` for the command in flight, a :class:`Urc`, or :class:`Noise`. Timeouts are
the caller's clock, passed in (:meth:`AtSession.expired`, :meth:`AtSession.next_deadline`).

Helpers for what the lines carry: :func:`fields` splits a value into its parameters,
:data:`CMS_ERRORS` / :data:`CME_ERRORS` name the error codes, and :func:`transient` tells a
failure worth retrying from one that is not.

Nothing here does I/O, reads a clock or imports Twisted (or smsd).
"""

from __future__ import annotations

import collections
import re
from typing import Any, Final

import attrs

__all__ = [
    "CME_ERRORS",
    "CMS_ERRORS",
    "ESC",
    "MAX_LINE",
    "QUIET",
    "AtSession",
    "Event",
    "Noise",
    "Response",
    "Timeout",
    "Urc",
    "fields",
    "transient",
]

ESC: Final = b"\x1b"
"""Written to leave a ``> `` prompt without sending (TS 27.005 §3.5.1)."""

MAX_LINE: Final = 4096
"""Longest line kept (bytes); longer input is cut there and reported as :class:`Noise`."""

QUIET: Final = 0.5
"""Seconds of silence after a timeout before the next command goes out (see
:class:`AtSession`)."""


# Events ----------------------------------------------------------------------------------


@attrs.frozen
class Response:
    """A command finished with a final result code.

    ``result`` is "OK", "ERROR", "CMS" / "CME" (``+CMS ERROR`` / ``+CME ERROR``; then ``code``
    is the number, or None for the text form of ``AT+CMEE=2``) or another final code as the
    modem spelled it ("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE", "COMMAND NOT SUPPORT",
    "TOO MANY PARAMETERS"). ``text`` is "" on OK, else the words: the table's description for
    a numeric CMS/CME code, the modem's own text otherwise. ``lines`` are the information lines
    in order, echoes of the command and of the payload removed."""

    command: str
    tag: Any
    ok: bool
    result: str
    code: int | None
    text: str
    lines: tuple[str, ...]


@attrs.frozen
class Timeout:
    """The command got no final result in time (or was dropped: queued behind one that timed
    out, or by :meth:`AtSession.abort`). ``prompted``: the ``> `` prompt had come, so the payload
    went out and the modem may have acted on it (an SMS may be on its way)."""

    command: str
    tag: Any
    lines: tuple[str, ...]
    prompted: bool


@attrs.frozen
class Urc:
    """An unsolicited result code. ``value`` is the text after ``name:``, stripped ("" for
    bare words such as RING); ``pdu`` is the line that followed ``+CMT``, ``+CDS`` (PDU form)
    and ``+CBM`` headers, None for every other URC, and None when the line that followed was
    clearly not one (a final code or another URC: the PDU was lost)."""

    name: str
    value: str
    pdu: str | None = None


@attrs.frozen
class Noise:
    """A line that belongs to nothing: a stray final code, garbage, a line over
    :data:`MAX_LINE`, anything heard while resynchronising. For the log only."""

    line: str


Event = Response | Timeout | Urc | Noise


# Tables -----------------------------------------------------------------------------------

CMS_ERRORS: Final[dict[int, str]] = {
    # 0..127: RP causes (TS 24.011 §8.2.5.4, Annex E-2), reported by the network
    1: "number not assigned (unallocated)",
    8: "barred by the operator",
    10: "call barred",
    21: "short message transfer rejected by the network",
    22: "recipient's memory capacity exceeded",
    27: "destination out of service",
    28: "subscriber not identified by the network",
    29: "facility rejected by the network",
    30: "subscriber unknown to the network",
    38: "network out of order",
    41: "temporary network failure",
    42: "network congestion",
    47: "network resources unavailable",
    50: "facility not subscribed",
    69: "facility not implemented by the network",
    81: "invalid short message transfer reference",
    95: "semantically incorrect message",
    96: "mandatory information missing or invalid",
    97: "message type unknown or not implemented",
    98: "message not compatible with the protocol state",
    99: "information element unknown or not implemented",
    111: "protocol error, unspecified",
    127: "interworking error, unspecified",
    # 128..255: TP-FCS (TS 23.040 §9.2.3.22), reported by the service centre
    0x80: "telematic interworking not supported",
    0x81: "short message type 0 not supported",
    0x82: "cannot replace the short message",
    0x8F: "TP-PID error, unspecified",
    0x90: "data coding scheme not supported",
    0x91: "message class not supported",
    0x9F: "TP-DCS error, unspecified",
    0xA0: "command cannot be actioned",
    0xA1: "command not supported",
    0xAF: "TP-Command error, unspecified",
    0xB0: "TPDU not supported",
    0xC0: "service centre busy",
    0xC1: "no subscription at the service centre",
    0xC2: "service centre system failure",
    0xC3: "invalid SME address",
    0xC4: "destination SME barred",
    0xC5: "duplicate message rejected",
    0xC6: "validity period format not supported",
    0xC7: "validity period not supported",
    0xD0: "SIM SMS storage full",
    0xD1: "no SMS storage on the SIM",
    0xD2: "error in the mobile station",
    0xD3: "memory capacity exceeded",
    0xD4: "SIM application toolkit busy",
    0xD5: "SIM data download error",
    0xFF: "unspecified error",
    # 300..: the ME itself (TS 27.005 §3.2.5)
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    317: "SIM PIN2 required",
    318: "SIM PUK2 required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
}
"""``+CMS ERROR: <n>`` codes (TS 27.005 §3.2.5); 512 and up are manufacturer-specific."""

CME_ERRORS: Final[dict[int, str]] = {
    0: "phone failure",
    1: "no connection to phone",
    2: "phone-adaptor link reserved",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    6: "PH-FSIM PIN required",
    7: "PH-FSIM PUK required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    26: "dial string too long",
    27: "invalid characters in dial string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    40: "network personalisation PIN required",
    41: "network personalisation PUK required",
    42: "network subset personalisation PIN required",
    43: "network subset personalisation PUK required",
    44: "service provider personalisation PIN required",
    45: "service provider personalisation PUK required",
    46: "corporate personalisation PIN required",
    47: "corporate personalisation PUK required",
    50: "incorrect parameters",
    100: "unknown",
    103: "illegal MS",
    106: "illegal ME",
    107: "GPRS services not allowed",
    111: "PLMN not allowed",
    112: "location area not allowed",
    113: "roaming not allowed in this location area",
    132: "service option not supported",
    133: "requested service option not subscribed",
    134: "service option temporarily out of order",
    148: "unspecified GPRS error",
}
"""``+CME ERROR: <n>`` codes (TS 27.007 §9.2), the ones modems commonly send."""

# Failures that retrying cannot cure. Everything else is transient: TS 24.011 §8.2.5.4 has an
# unknown RP cause treated as 41 "temporary failure", and an unknown modem error may be cured by
# a retry or a re-init.
_CMS_PERMANENT: Final = frozenset(
    {1, 8, 10, 21, 28, 29, 30, 50, 69, 81, 95, 96, 97, 98, 99, 111, 127}  # RP: refused
    | set(range(0x80, 0xC0))  # TP-FCS: the PDU's PID/DCS/command cannot be handled
    | {0xC1, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xD1}  # TP-FCS: address, subscription, VP
    | {301, 303, 304, 305, 310, 311, 312, 313, 315, 316, 317, 318, 320, 321, 330, 340}
)
_CME_PERMANENT: Final = frozenset(
    {4, 5, 6, 7, 10, 11, 12, 13, 15, 16, 17, 18, 21, 22, 23, 24, 25, 26, 27, 32, 50}
    | set(range(40, 51))
    | {103, 106, 107, 111, 112, 113, 132, 133}
)
_PERMANENT_FINALS: Final = frozenset({"COMMAND NOT SUPPORT", "TOO MANY PARAMETERS"})


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("(u)sim", "sim").rstrip(".").split())


# The standard verbose texts (AT+CMEE=2) where our words differ, so text forms classify too.
_CMS_BY_TEXT: Final[dict[str, int]] = {_norm(v): k for k, v in CMS_ERRORS.items() if k >= 300}
_CMS_BY_TEXT.update(
    {
        "unassigned (unallocated) number": 1,
        "operator determined barring": 8,
        "call barred": 10,
        "short message transfer rejected": 21,
        "network out of order": 38,
        "temporary failure": 41,
        "congestion": 42,
        "resources unavailable, unspecified": 47,
        "invalid mandatory information": 96,
        "sc busy": 0xC0,
        "invalid sme address": 0xC3,
        "ps busy": 535,
        "unknown": 500,
    }
)
_CME_BY_TEXT: Final[dict[str, int]] = {_norm(v): k for k, v in CME_ERRORS.items()}
_CME_BY_TEXT.update(
    {
        "network personalization pin required": 40,
        "no network": 30,
        "unknown error": 100,
    }
)


def transient(response: Response) -> bool:
    """Whether a failed response is worth retrying (False for an OK response: nothing failed).

    Transient (CMS 300, 302, 314 SIM busy, 322 memory full, 331 no network, 332 network
    timeout, 500, 512+ such as 535; RP causes 22, 27, 38, 41, 42, 47 and unknown ones; TP-FCS
    0xC0 SC busy, 0xC2, 0xD0, 0xD2..0xFF; CME 0, 3, 14 SIM busy, 20, 30, 31, 100 and unknown
    ones; plain ERROR; NO CARRIER / BUSY / NO ANSWER / NO DIALTONE; unknown text forms): the
    caller keeps the message and retries with back-off, counting the failure toward the modem's
    re-init threshold (so many in a row: re-initialise, reset with ``AT+CFUN``, reopen the port).

    Permanent (CMS 304/305 bad PDU or parameter, RP causes 1, 8, 10, 21, 28..30, 50, 69, 81,
    95..127, TP-FCS 0x80..0xBF, 0xC1, 0xC3 invalid SME address, 0xC4..0xC7: the message or its
    recipient; CMS 301, 303, 310..318, 320, 321, 330 SMSC unknown, 340 and CME 4, 5..7, 10..13,
    15..18, 21..27, 32, 40..50, GPRS refusals: the modem or its SIM; COMMAND NOT SUPPORT, TOO
    MANY PARAMETERS): retrying gives the same answer. The caller fails the message when the
    cause is the message's, and takes the modem out of service (and says why) when it is the
    modem's or the SIM's; neither counts toward the re-init threshold.
    """
    if response.ok:
        return False
    code = response.code
    if response.result == "CMS":
        if code is None:
            code = _CMS_BY_TEXT.get(_norm(response.text))
        return code is None or code not in _CMS_PERMANENT
    if response.result == "CME":
        if code is None:
            code = _CME_BY_TEXT.get(_norm(response.text))
        return code is None or code not in _CME_PERMANENT
    return response.result not in _PERMANENT_FINALS


def fields(value: str) -> list[str]:
    """Split a result value into its parameters: ``0,"SM","+4917..",145`` ->
    ``["0", "SM", "+4917..", "145"]``. Quotes are removed (commas inside them kept), spaces
    around fields dropped, empty fields kept (``,24`` -> ``["", "24"]``), and a parenthesised
    range list such as ``("SM","ME"),(0-3)`` stays one field each, as written. "" -> []."""
    if not value.strip():
        return []
    out: list[str] = []
    start = 0
    quoted = False
    depth = 0
    for i, ch in enumerate(value):
        if ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == "," and not depth:
            out.append(_unquote(value[start:i]))
            start = i + 1
    out.append(_unquote(value[start:]))
    return out


def _unquote(field: str) -> str:
    field = field.strip()
    if field.startswith('"'):
        return field[1:-1] if len(field) > 1 and field.endswith('"') else field[1:]
    return field


# Line classification ----------------------------------------------------------------------

_STRIP: Final = " \t\x00\x1a\x1b"  # padding, NULs, and a stray Ctrl-Z / ESC echo
_STRIP_BYTES: Final = _STRIP.encode("ascii")
_TERMINATOR: Final = re.compile(rb"[\r\n]")
_CM_ERROR: Final = re.compile(r"\+CM([SE]) ERROR\b\s*:?\s*(.*)$", re.IGNORECASE)
_NUMBER: Final = re.compile(r"[0-9]{1,6}")
_QUOTED: Final = re.compile(r'"[^"]*"?')
_COMMAND_NAME: Final = re.compile(r"[+^$%][A-Z][A-Z0-9]*", re.IGNORECASE)

_FINALS: Final[dict[str, str]] = {
    "OK": "OK",
    "ERROR": "ERROR",
    "NO CARRIER": "NO CARRIER",
    "BUSY": "BUSY",
    "NO ANSWER": "NO ANSWER",
    "NO DIALTONE": "NO DIALTONE",
    "NO DIAL TONE": "NO DIALTONE",
    "COMMAND NOT SUPPORT": "COMMAND NOT SUPPORT",
    "TOO MANY PARAMETERS": "TOO MANY PARAMETERS",
}

# URCs written "name: value" (or "name:value"), by upper-cased name.
_URC_PREFIXES: Final[dict[str, str]] = {
    name.upper(): name
    for name in (
        # TS 27.005 / 27.007
        "+CMTI",
        "+CMT",
        "+CDS",
        "+CDSI",
        "+CBM",
        "+CBMI",
        "+CREG",
        "+CGREG",
        "+CEREG",
        "+CRING",
        "+CLIP",
        "+CCWA",
        "+CUSD",
        "+CIEV",
        "+CPIN",
        "+CFUN",
        "+CSQN",
        "+CGEV",
        "+CTZV",
        "+CTZE",
        "+CSSI",
        "+CSSU",
        # Huawei
        "^RSSI",
        "^HCSQ",
        "^BOOT",
        "^MODE",
        "^SIMST",
        "^SRVST",
        "^SYSSTART",
        "^DSFLOWRPT",
        "^CEND",
        "^ORIG",
        "^CONF",
        "^CONN",
        "^STIN",
        "^NWTIME",
        # SIMCom, Quectel, Wavecom, Cinterion, Sierra
        "*PSUTTZ",
        "+PSUTTZ",
        "DST",
        "+QIND",
        "+QUSIM",
        "+WIND",
        "^SBC",
        "+STIN",
    )
}
# URCs that are a whole line of words.
_URC_WORDS: Final[dict[str, str]] = {
    name.upper(): name
    for name in (
        "RING",
        "RDY",
        "SMS Ready",
        "Call Ready",
        "^SYSSTART",
        "+PACSP0",
        "+PACSP1",
        "NORMAL POWER DOWN",
        "POWERED DOWN",
        "UNDER-VOLTAGE POWER DOWN",
        "OVER-VOLTAGE POWER DOWN",
    )
}
_PDU_URCS: Final = frozenset({"+CMT", "+CDS", "+CBM"})


def _final(text: str) -> tuple[str, int | None, str] | None:
    """(result, code, text) when ``text`` is a final result code."""
    upper = text.upper()
    word = _FINALS.get(upper)
    if word is not None:
        return word, None, "" if word == "OK" else word
    if not upper.startswith("+CM"):
        return None
    m = _CM_ERROR.match(text)
    if m is None:
        return None
    kind = "CMS" if m[1].upper() == "S" else "CME"
    value = m[2].strip().strip('"').strip()
    if _NUMBER.fullmatch(value):
        code = int(value)
        return kind, code, _describe(kind, code)
    return kind, None, value


def _describe(kind: str, code: int) -> str:
    if kind == "CME":
        return CME_ERRORS.get(code, "manufacturer-specific error" if code >= 256 else "")
    known = CMS_ERRORS.get(code)
    if known is not None:
        return known
    if code < 128:
        return f"network cause {code}"
    if code < 256:
        return f"service centre cause 0x{code:02X}"
    return "manufacturer-specific error" if code >= 512 else ""


def _urc(text: str) -> tuple[str, str] | None:
    """(name, value) when ``text`` is a known URC."""
    head, sep, value = text.partition(":")
    if sep:
        name = _URC_PREFIXES.get(head.strip().upper())
        if name is not None:
            return name, value.strip()
    name = _URC_WORDS.get(text.upper())
    return (name, "") if name is not None else None


def _prefix(text: str) -> str | None:
    head, sep, _ = text.partition(":")
    return head.strip().upper() if sep else None


def _names(line: str) -> frozenset[str]:
    """The extended-command names in a command line ("AT+CMGS=23" -> {"+CMGS"}): the
    prefixes its own answer lines carry."""
    return frozenset(m.upper() for m in _COMMAND_NAME.findall(_QUOTED.sub("", line)))


def _text(raw: bytes) -> str:
    return raw.decode("latin-1").strip(_STRIP)


@attrs.define
class _Command:
    line: str
    wire: bytes
    timeout: float
    payload: bytes | None
    tag: Any
    names: frozenset[str]
    echo: frozenset[str]  # the payload's lines as a modem echoes them (upper-cased)
    queued: float  # when command() was called
    deadline: float = 0.0  # set when written
    prompted: bool = False
    lines: list[str] = attrs.Factory(list)

    def timed_out(self) -> Timeout:
        return Timeout(self.line, self.tag, tuple(self.lines), self.prompted)


# The session ------------------------------------------------------------------------------


class AtSession:
    """One AT dialogue, h11 style: feed it what the port read (:meth:`receive`) with the time,
    write what :meth:`data_to_send` returns, call :meth:`expired` at :meth:`next_deadline`.

    One command is in flight at a time; :meth:`command` queues, and the next goes out when the
    one before has its final result. Each line the modem sends is, in this order: ignored when
    empty; dropped when it is the echo of the command or of the payload (echo on or off both
    work); the PDU of a pending ``+CMT``/``+CDS``/``+CBM`` header (those headers always take
    the next line, command in flight or not); a final result code of the command in flight; an
    information line of the command in flight when its prefix (the text before ":") is the
    command's own name ("+CREG: 0,1" while "AT+CREG?" runs); a :class:`Urc` when it is a known
    URC; an information line when a command is in flight (ATI, CMGR/CMGL PDU lines); otherwise
    :class:`Noise`. The ``> `` prompt needs no line end: a payload command that sees a line
    begin with ">" writes its payload at once. A ">" at any other time is Noise.

    Resynchronising: after a :class:`Timeout` the dialogue cannot be trusted, since a late
    answer would be taken for the next command's. So the session fails everything queued as
    Timeout too, writes ESC if the modem was at the prompt, and holds newly queued commands
    until the modem has been quiet for :data:`QUIET` seconds (measured from the timeout and
    from every byte received since, with the ``now`` given to :meth:`receive`). Meanwhile final
    codes and answer lines are Noise; URCs are still reported, except those named like the
    timed-out command (a late "+CREG: 0,1" to AT+CREG? looks like a +CREG URC). The quiet time
    ends in :meth:`expired` or :meth:`command` called at or after :meth:`next_deadline`; a
    partial line left over then is dropped as Noise. A command that waits for the quiet time
    longer than its own timeout (a modem that never falls silent) fails as Timeout. :meth:`abort`
    resynchronises the same way when a command was in flight, the quiet time starting at the
    next call that has a ``now``.

    Never raises on anything the modem sends; ValueError for a command line that cannot be sent.
    """

    def __init__(self) -> None:
        self._queue: collections.deque[_Command] = collections.deque()
        self._current: _Command | None = None
        self._out: list[bytes] = []
        self._buffer = b""  # the line being received
        self._discarding = False  # cutting an overlong line: drop bytes up to its end
        self._header: tuple[str, str, str] | None = None  # +CMT-like (name, value, line)
        self._resync = False
        self._quiet_until: float | None = None  # None while resyncing: set by the next `now`
        self._dead: frozenset[str] = frozenset()  # names of the command that timed out
        self._backlog: list[Event] = []  # events raised where nothing can return them

    # What the caller asks ------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A command in flight or queued."""
        return self._current is not None or bool(self._queue)

    @property
    def in_flight(self) -> str | None:
        """The command line waiting for its final result, if any."""
        return self._current.line if self._current is not None else None

    def next_deadline(self) -> float | None:
        """When :meth:`expired` should be called next (None: no need)."""
        if self._current is not None:
            return self._current.deadline
        if self._resync and self._queue:
            waited = min(c.queued + c.timeout for c in self._queue)
            return waited if self._quiet_until is None else min(waited, self._quiet_until)
        return None

    def data_to_send(self) -> bytes:
        """Everything to write to the port now, once."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def command(
        self,
        line: str,
        now: float,
        *,
        timeout: float,
        payload: bytes | None = None,
        tag: Any = None,
    ) -> None:
        """Queue a command (sent when the one before has finished). With payload, the command
        is one that prompts ("> "), e.g. AT+CMGS=<n>: after the prompt the payload is written as
        given (the caller includes the final Ctrl-Z 0x1A). ``timeout`` counts from when the
        command is written and covers the whole exchange, prompt included."""
        if not line.strip() or any(c in line for c in "\r\n\x1a\x1b"):
            raise ValueError(f"not a command line: {line!r}")
        wire = line.encode("latin-1") + b"\r"  # UnicodeEncodeError is a ValueError
        echo: frozenset[str] = frozenset()
        if payload is not None:
            payload = bytes(payload)
            segments = re.split(r"[\r\n]", payload.decode("latin-1"))
            echo = frozenset(s.strip(_STRIP).upper() for s in segments if s.strip(_STRIP))
        names = _names(line)
        self._queue.append(_Command(line, wire, timeout, payload, tag, names, echo, now))
        self._pump(now)

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Events for ``data`` read from the port. Never raises on what the modem sends."""
        events = self._take_backlog()
        if not data:
            return events
        if self._resync:
            quiet = now + QUIET
            self._quiet_until = max(quiet, self._quiet_until or quiet)
        buffer = self._buffer + data if self._buffer else data
        start = 0
        while True:
            m = _TERMINATOR.search(buffer, start)
            if m is None:
                break
            end = m.start()
            if self._discarding:
                self._discarding = False
            elif end > start:
                self._line(buffer[start:end], now, events)
            start = end + 1
        rest = buffer[start:]
        if self._discarding:
            rest = b""
        elif len(rest) > MAX_LINE:
            events.append(Noise(_text(rest[:MAX_LINE])))
            self._discarding = True
            rest = b""
        elif rest:
            self._check_prompt(rest)
        self._buffer = rest
        return events

    def expired(self, now: float) -> list[Event]:
        """Call from a timer: the command in flight becomes a :class:`Timeout` once its deadline
        has passed, and everything queued with it; then the quiet time starts."""
        events = self._take_backlog()
        current = self._current
        if current is not None and now >= current.deadline:
            self._current = None
            events.append(current.timed_out())
            events.extend(self._drop_queue())
            if current.prompted:
                self._out.append(ESC)
            self._resync = True
            self._quiet_until = now + QUIET
            self._dead = current.names
        self._pump(now)
        if self._resync and self._queue:  # a modem that never falls silent
            waited = [c for c in self._queue if now >= c.queued + c.timeout]
            for command in waited:
                self._queue.remove(command)
                events.append(command.timed_out())
        return events

    def abort(self) -> list[Event]:
        """Drop the command in flight and everything queued, each as a :class:`Timeout` (e.g.
        the port closed). Writes ESC if the modem was at the prompt. A partial line or a
        ``+CMT`` header still waiting for its PDU is reported as Noise."""
        events = self._take_backlog()
        current = self._current
        if current is not None:
            self._current = None
            events.append(current.timed_out())
            if current.prompted:
                self._out.append(ESC)
            self._resync = True
            self._quiet_until = None
            self._dead = current.names
        events.extend(self._drop_queue())
        if self._header is not None:
            events.append(Noise(self._header[2]))
            self._header = None
        text = _text(self._buffer)
        if text:
            events.append(Noise(text))
        self._buffer = b""
        self._discarding = False
        return events

    # Lines ----------------------------------------------------------------------------------

    def _check_prompt(self, raw: bytes) -> None:
        current = self._current
        if (
            current is not None
            and current.payload is not None
            and not current.prompted
            and raw.lstrip(_STRIP_BYTES)[:1] == b">"
        ):
            current.prompted = True
            self._out.append(current.payload)

    def _line(self, raw: bytes, now: float, events: list[Event]) -> None:
        self._check_prompt(raw)
        if len(raw) > MAX_LINE:
            events.append(Noise(_text(raw[:MAX_LINE])))
            return
        text = _text(raw)
        if text:
            self._classify(text, now, events)

    def _classify(self, text: str, now: float, events: list[Event]) -> None:
        current = self._current
        if current is not None:
            if current.payload is not None and text[0] == ">":
                text = text.lstrip("> \t")  # the prompt, perhaps followed by the payload echo
                if not text or text.upper() in current.echo:
                    return
            elif current.prompted and text.upper() in current.echo:
                return
            if text.upper() == current.line.strip().upper():
                return  # echo of the command
        header = self._header
        if header is not None:
            self._header = None
            if text[0] != ">" and _final(text) is None and _urc(text) is None:
                events.append(Urc(header[0], header[1], text))
                return
            events.append(Urc(header[0], header[1], None))
        if self._resync:
            urc = _urc(text)
            if urc is not None and urc[0].upper() not in self._dead:
                self._on_urc(text, urc, events)
            else:
                events.append(Noise(text))
            return
        if current is None:
            if text.upper() == "NO CARRIER":
                events.append(Urc("NO CARRIER", ""))
                return
            urc = _urc(text)
            if urc is not None:
                self._on_urc(text, urc, events)
            else:
                events.append(Noise(text))
            return
        final = _final(text)
        if final is not None:
            result, code, words = final
            self._current = None
            ok = result == "OK"
            lines = tuple(current.lines)
            events.append(Response(current.line, current.tag, ok, result, code, words, lines))
            self._pump(now)
            return
        if text[0] == ">":
            events.append(Noise(text))
            return
        prefix = _prefix(text)
        if prefix is not None and prefix in current.names:
            current.lines.append(text)
            return
        urc = _urc(text)
        if urc is not None:
            self._on_urc(text, urc, events)
            return
        current.lines.append(text)

    def _on_urc(self, text: str, urc: tuple[str, str], events: list[Event]) -> None:
        name, value = urc
        if name in _PDU_URCS and (name != "+CDS" or _NUMBER.fullmatch(value)):
            self._header = (name, value, text)  # the PDU line follows
        else:
            events.append(Urc(name, value))

    # Plumbing -------------------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Write the next queued command if nothing is in flight and the quiet time is over."""
        if self._resync:
            if self._quiet_until is None:
                self._quiet_until = now + QUIET
            if now < self._quiet_until:
                return
            self._resync = False
            self._quiet_until = None
            self._dead = frozenset()
            if not self._discarding:
                text = _text(self._buffer)
                if text:
                    self._backlog.append(Noise(text))
                self._buffer = b""
        if self._current is None and self._queue:
            command = self._queue.popleft()
            command.deadline = now + command.timeout
            self._current = command
            self._out.append(command.wire)

    def _drop_queue(self) -> list[Event]:
        dropped: list[Event] = [c.timed_out() for c in self._queue]
        self._queue.clear()
        return dropped

    def _take_backlog(self) -> list[Event]:
        events, self._backlog = self._backlog, []
        return events
