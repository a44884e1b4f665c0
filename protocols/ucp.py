"""UCP/EMI (CMG/LogicaCMG) for the ESME side, sans-IO: frame codec, stream framing, field
helpers and the client session as a state machine (bytes in, events out).

A frame is ``STX TRN/LEN/O|R/OT/field/.../field/CK ETX`` in printable ASCII: TRN is the
sender's transaction number (00-99, echoed by the result), LEN the five-digit count of
characters between STX and ETX, CK the sum of the bytes from TRN up to the last ``/`` mod 256
in two upper-case hex digits. Operations carry fields by position (:data:`FIELDS`); results are
``A[/MVP]/SM`` or ``N/EC/SM`` (:data:`RESULT_FIELDS`).

Values stay text: an :class:`Operation` keeps its fields by name as ``str`` (Latin-1 decoded, so
whatever an SMSC sends survives a decode/encode round trip) and fields beyond the table in
``extra``, never dropped. Turning them into text, bytes, addresses and times is left to helpers
(:func:`make_submit`, :func:`read_message`, :func:`parse_notification`, ...), because SMSCs
disagree on the details and the raw field is what a support ticket needs.

Errors, as in :mod:`protocols.smpp`: :class:`FrameError` / :class:`Garbled` / :class:`Noise` for
what the peer did wrong, :class:`SessionError` and ``ValueError`` (:class:`FieldError`) for our
own misuse. Nothing here does I/O, reads a clock or imports Twisted.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import attrs

from protocols import gsm0338

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_WINDOW",
    "ETX",
    "FIELDS",
    "MAX_WINDOW",
    "OT",
    "RESULT_FIELDS",
    "STX",
    "TEMPORARY_ERRORS",
    "Acked",
    "Alert",
    "DeliveryStatus",
    "Error",
    "EsmeSession",
    "Event",
    "FieldError",
    "Frame",
    "FrameError",
    "Garbled",
    "Late",
    "LoggedIn",
    "LoginRefused",
    "Message",
    "MoReceived",
    "Nacked",
    "Noise",
    "Notification",
    "NotificationReceived",
    "Operation",
    "Parser",
    "PeerError",
    "Pending",
    "Result",
    "SessionError",
    "State",
    "Stray",
    "WindowFull",
    "checksum",
    "decode",
    "decode_alphanumeric",
    "decode_hex_text",
    "decode_ira",
    "decode_xser",
    "encode",
    "encode_alphanumeric",
    "encode_hex_text",
    "encode_ira",
    "encode_xser",
    "error_name",
    "error_text",
    "format_scts",
    "format_vp",
    "is_temporary",
    "make_submit",
    "message_id",
    "parse_notification",
    "parse_scts",
    "parse_vp",
    "read_message",
    "split_message_id",
    "validate",
]

STX: Final = 0x02
ETX: Final = 0x03
HEADER_LENGTH: Final = 14
"""``TT/LLLLL/O/OT/``: what precedes the first field."""
DEFAULT_MAX_LENGTH: Final = 4096
"""Longest frame (STX to ETX) :class:`Parser` waits for. A full 160-character MT 3 message is
about 450 characters; LEN allows 99999, which no SMSC needs and a broken stream would fill."""
MAX_TRN: Final = 100
DEFAULT_WINDOW: Final = 10
"""Kannel defaults to 100; a small window limits the damage when a throttling SMSC slows its
ACKs down and something resends on timeout (specs §5: mass duplicates)."""
MAX_WINDOW: Final = MAX_TRN


# --- tables -------------------------------------------------------------------------------------


class OT(enum.IntEnum):
    """Operation types an ESME meets (EMI 4.x)."""

    CALL_INPUT = 1
    ALERT = 31
    SUBMIT = 51
    DELIVER = 52
    NOTIFICATION = 53
    SESSION = 60


_FIELDS_5X: Final = (
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
)

FIELDS: Final[dict[int, tuple[str, ...]]] = {
    OT.CALL_INPUT: ("AdC", "OAdC", "AC", "MT", "Msg"),
    OT.ALERT: ("AdC", "PID"),
    OT.SUBMIT: _FIELDS_5X,
    OT.DELIVER: _FIELDS_5X,
    OT.NOTIFICATION: _FIELDS_5X,
    OT.SESSION: (
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
    ),
}
"""Operation fields in wire order (Kannel ``emimsg.h``). Other OTs decode with every field in
``extra``."""

_FIELD_INDEX = {ot: {name: i for i, name in enumerate(names)} for ot, names in FIELDS.items()}

RESULT_FIELDS: Final = {
    "ack_5x": ("ACK", "MVP", "SM"),
    "ack": ("ACK", "SM"),
    "nack": ("NACK", "EC", "SM"),
}
"""Result layouts: 50-series ACKs carry a modified validity period before SM."""


def _is_5x(ot: int) -> bool:
    return 50 <= ot <= 59


class Error(enum.IntEnum):
    """NACK error codes (EC), names as Kannel's ``emi_strerror``."""

    CHECKSUM_ERROR = 1
    SYNTAX_ERROR = 2
    OPERATION_NOT_SUPPORTED = 3
    OPERATION_NOT_ALLOWED = 4
    CALL_BARRING_ACTIVE = 5
    ADC_INVALID = 6
    AUTHENTICATION_FAILURE = 7
    LEGITIMISATION_CODE_FAILURE = 8
    GA_NOT_VALID = 9
    REPETITION_NOT_ALLOWED = 10
    LEGITIMISATION_CODE_REPETITION_FAILURE = 11
    PRIORITY_CALL_NOT_ALLOWED = 12
    LEGITIMISATION_CODE_PRIORITY_FAILURE = 13
    URGENT_MESSAGE_NOT_ALLOWED = 14
    LEGITIMISATION_CODE_URGENT_FAILURE = 15
    REVERSE_CHARGING_NOT_ALLOWED = 16
    LEGITIMISATION_CODE_REVERSE_CHARGING_FAILURE = 17
    DEFERRED_DELIVERY_NOT_ALLOWED = 18
    NEW_AC_NOT_VALID = 19
    NEW_LEGITIMISATION_CODE_NOT_VALID = 20
    STANDARD_TEXT_NOT_VALID = 21
    TIME_PERIOD_NOT_VALID = 22
    MESSAGE_TYPE_NOT_SUPPORTED = 23
    MESSAGE_TOO_LONG = 24
    REQUESTED_STANDARD_TEXT_NOT_VALID = 25
    MESSAGE_TYPE_NOT_VALID = 26
    MESSAGE_NOT_FOUND = 27
    SUBSCRIBER_HANG_UP = 30
    FAX_GROUP_NOT_SUPPORTED = 31
    FAX_MESSAGE_TYPE_NOT_SUPPORTED = 32
    ADDRESS_ALREADY_IN_LIST = 33
    ADDRESS_NOT_IN_LIST = 34
    LIST_FULL = 35
    RPID_ALREADY_IN_USE = 36
    DELIVERY_IN_PROGRESS = 37
    MESSAGE_FORWARDED = 38


_ERROR_TEXT: Final = {
    1: "Checksum error",
    2: "Syntax error",
    3: "Operation not supported by system",
    4: "Operation not allowed",
    5: "Call barring active",
    6: "AdC invalid",
    7: "Authentication failure",
    8: "Legitimisation code for all calls, failure",
    9: "GA not valid",
    10: "Repetition not allowed",
    11: "Legitimisation code for repetition, failure",
    12: "Priority call not allowed",
    13: "Legitimisation code for priority call, failure",
    14: "Urgent message not allowed",
    15: "Legitimisation code for urgent message, failure",
    16: "Reverse charging not allowed",
    17: "Legitimisation code for reverse charging, failure",
    18: "Deferred delivery not allowed",
    19: "New AC not valid",
    20: "New legitimisation code not valid",
    21: "Standard text not valid",
    22: "Time period not valid",
    23: "Message type not supported by system",
    24: "Message too long",
    25: "Requested standard text not valid",
    26: "Message type not valid for the pager type",
    27: "Message not found in smsc",
    30: "Subscriber hang-up",
    31: "Fax group not supported",
    32: "Fax message type not supported",
    33: "Address already in list (60 series)",
    34: "Address not in list (60 series)",
    35: "List full, cannot add address to list (60 series)",
    36: "RPID already in use",
    37: "Delivery in progress",
    38: "Message forwarded",
}

TEMPORARY_ERRORS: Final = frozenset(
    {
        Error.CHECKSUM_ERROR,  # the line garbled our submit: it was not taken, send it again
        Error.OPERATION_NOT_ALLOWED,  # what SMSCs answer when throttling or the window is full
        Error.CALL_BARRING_ACTIVE,  # also used for throttling / temporary barring
        Error.SUBSCRIBER_HANG_UP,
        Error.DELIVERY_IN_PROGRESS,
    }
)
"""Codes worth retrying later. Everything else in :class:`Error` is permanent (our request or
the recipient is wrong); codes outside the table are vendor-specific and treated as temporary,
so that an unknown code costs a bounded retry rather than a lost message."""


def error_text(code: int) -> str:
    """Kannel's wording for ``code``, or ``"!UNRECOGNIZED ERROR CODE!"`` as Kannel prints."""
    return _ERROR_TEXT.get(code, "!UNRECOGNIZED ERROR CODE!")


def error_name(code: int) -> str:
    """``"OPERATION_NOT_ALLOWED (04)"``, or ``"EC 99"`` for a code we have no name for."""
    try:
        return f"{Error(code).name} ({code:02d})"
    except ValueError:
        return f"EC {code:02d}"


def is_temporary(code: int) -> bool:
    """Whether a NACK with ``code`` should be retried (see :data:`TEMPORARY_ERRORS`)."""
    return code in TEMPORARY_ERRORS or code not in _ERROR_TEXT


# --- frames ---------------------------------------------------------------------------------


class FieldError(ValueError):
    """A value that cannot go into (or come out of) a UCP field."""


class FrameError(Exception):
    """A frame cut from the stream that is not valid UCP. ``error`` is the EC to NACK it with
    (01 checksum, 02 syntax); ``trn``/``kind``/``ot`` are what could be read (None if not)."""

    def __init__(
        self,
        error: int,
        reason: str,
        trn: int | None = None,
        kind: str | None = None,
        ot: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.trn = trn
        self.kind = kind
        self.ot = ot


def _clean_fields(fields: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if v}


@attrs.frozen
class Operation:
    """An operation (``O``). ``fields`` holds the non-empty named fields of :data:`FIELDS`;
    ``extra`` the positions beyond the table (for an OT not in the table: all of them)."""

    trn: int
    ot: int
    fields: dict[str, str] = attrs.field(factory=dict, converter=_clean_fields)
    extra: tuple[str, ...] = ()

    def get(self, name: str) -> str:
        """The field's value, ``""`` when empty or absent."""
        return self.fields.get(name, "")

    @property
    def known(self) -> bool:
        return self.ot in FIELDS


@attrs.frozen
class Result:
    """A result (``R``): ACK when ``error`` is None, else NACK with that EC. ``mvp`` exists in
    50-series ACKs only; ``message`` is SM (for an OT 51 ACK: ``AdC:SCTS``)."""

    trn: int
    ot: int
    error: int | None = None
    message: str = ""
    mvp: str = ""
    extra: tuple[str, ...] = ()

    @property
    def ack(self) -> bool:
        return self.error is None


Frame = Operation | Result

_FORBIDDEN = re.compile("[/\x00-\x1f\x7f]")


def _check_value(name: str, value: str) -> None:
    if _FORBIDDEN.search(value):
        raise FieldError(f"{name}: {value!r} contains '/' or a control character")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError as e:
        raise FieldError(f"{name}: {value!r} is not Latin-1") from e


def checksum(data: bytes) -> str:
    """The two hex digits for ``data`` (TRN up to the last ``/``)."""
    return f"{sum(data) & 0xFF:02X}"


def _result_fields(result: Result) -> list[str]:
    if result.error is not None:
        if not 0 <= result.error <= 99:
            raise FieldError(f"EC must be 0..99, not {result.error}")
        if result.mvp:
            raise FieldError("a NACK has no MVP")
        return ["N", f"{result.error:02d}", result.message]
    if _is_5x(result.ot):
        return ["A", result.mvp, result.message]
    if result.mvp:
        raise FieldError(f"OT {result.ot:02d} results have no MVP")
    return ["A", result.message]


def encode(frame: Frame) -> bytes:
    """Wire bytes, STX to ETX. FieldError for out-of-range TRN/OT, unknown field names, and
    values with ``/``, control characters or non-Latin-1 characters."""
    if not 0 <= frame.trn <= 99:
        raise FieldError(f"TRN must be 0..99, not {frame.trn}")
    if not 0 <= frame.ot <= 99:
        raise FieldError(f"OT must be 0..99, not {frame.ot}")
    if isinstance(frame, Operation):
        kind = "O"
        names = FIELDS.get(frame.ot, ())
        index = _FIELD_INDEX.get(frame.ot, {})
        values = [""] * len(names)
        for name, value in frame.fields.items():
            i = index.get(name)
            if i is None:
                raise FieldError(f"OT {frame.ot:02d} has no field {name!r}")
            values[i] = value
    else:
        kind = "R"
        values = _result_fields(frame)
    values.extend(frame.extra)
    for i, value in enumerate(values):
        _check_value(f"field {i + 1}", value)
    data = "".join(v + "/" for v in values)
    length = HEADER_LENGTH + len(data) + 2
    if length > 99999:
        raise FieldError(f"frame of {length} characters: LEN has five digits")
    head = f"{frame.trn:02d}/{length:05d}/{kind}/{frame.ot:02d}/{data}".encode("latin-1")
    return b"\x02" + head + checksum(head).encode("ascii") + b"\x03"


_DIGITS2 = re.compile(r"[0-9]{2}\Z")
_DIGITS5 = re.compile(r"[0-9]{5}\Z")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}\Z")


def decode(frame: bytes) -> Frame:
    """The :class:`Operation` or :class:`Result` in ``frame`` (STX and ETX included, as
    :class:`Parser` cuts it). Raises :class:`FrameError`: checksum (01) is checked before LEN
    and the rest (02), since a corrupted byte is the likelier cause of both. Missing trailing
    fields of a known OT read as empty (older EMI versions send fewer)."""
    if len(frame) < 2 or frame[0] != STX or frame[-1] != ETX:
        raise FrameError(Error.SYNTAX_ERROR, "not framed by STX and ETX")
    text = frame[1:-1].decode("latin-1")
    parts = text.split("/")
    trn = int(parts[0]) if _DIGITS2.match(parts[0]) else None
    kind = parts[2] if len(parts) > 2 and parts[2] in ("O", "R") else None
    ot = int(parts[3]) if len(parts) > 3 and _DIGITS2.match(parts[3]) else None

    def fail(error: int, reason: str) -> FrameError:
        return FrameError(error, reason, trn, kind, ot)

    if len(parts) < 5:
        raise fail(Error.SYNTAX_ERROR, f"{len(parts) - 1} separators, at least 4 needed")
    ck = parts[-1]
    if not _HEX2.match(ck):
        raise fail(Error.SYNTAX_ERROR, f"checksum {ck!r} is not two hex digits")
    body = frame[1:-3]
    if int(ck, 16) != sum(body) & 0xFF:
        raise fail(Error.CHECKSUM_ERROR, f"checksum {ck} where {checksum(body)} was expected")
    if trn is None:
        raise fail(Error.SYNTAX_ERROR, f"TRN {parts[0]!r} is not two digits")
    if not _DIGITS5.match(parts[1]):
        raise fail(Error.SYNTAX_ERROR, f"LEN {parts[1]!r} is not five digits")
    if int(parts[1]) != len(text):
        raise fail(Error.SYNTAX_ERROR, f"LEN {parts[1]} but {len(text)} characters")
    if kind is None:
        raise fail(Error.SYNTAX_ERROR, f"O/R {parts[2]!r} is neither O nor R")
    if ot is None:
        raise fail(Error.SYNTAX_ERROR, f"OT {parts[3]!r} is not two digits")
    values = parts[4:-1]
    if kind == "O":
        names = FIELDS.get(ot, ())
        return Operation(
            trn, ot, dict(zip(names, values, strict=False)), tuple(values[len(names) :])
        )
    flag = values[0] if values else ""
    if flag == "A":
        if _is_5x(ot):
            values += [""] * (3 - len(values))
            return Result(trn, ot, None, values[2], values[1], tuple(values[3:]))
        values += [""] * (2 - len(values))
        return Result(trn, ot, None, values[1], "", tuple(values[2:]))
    if flag == "N":
        ec = values[1] if len(values) > 1 else ""
        if not _DIGITS2.match(ec):
            raise fail(Error.SYNTAX_ERROR, f"NACK error code {ec!r} is not two digits")
        values += [""] * (3 - len(values))
        return Result(trn, ot, int(ec), values[2], "", tuple(values[3:]))
    raise fail(Error.SYNTAX_ERROR, f"result flag {flag!r} is neither A nor N")


# --- stream framing -------------------------------------------------------------------------------


@attrs.frozen
class Garbled:
    """A frame cut from the stream (STX..ETX) that did not decode. ``error`` is the EC to NACK
    it with; ``trn``/``kind``/``ot`` what could be read of its header."""

    error: int
    reason: str
    trn: int | None
    kind: str | None
    ot: int | None
    raw: bytes = attrs.field(repr=False, default=b"")


@attrs.frozen
class Noise:
    """Bytes skipped outside any frame: garbage between frames, a frame start that another STX
    cut short, or the start of a frame longer than the limit. ``sample``: the first 32."""

    size: int
    reason: str
    sample: bytes = attrs.field(repr=False, default=b"")


class Parser:
    """Cuts a TCP byte stream into frames. STX and ETX never occur inside a frame, so unlike
    SMPP the stream resynchronises at the next STX: nothing here raises on input."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < HEADER_LENGTH + 4:
            raise ValueError(f"max_length {max_length} is below a minimal frame")
        self.max_length = max_length
        self._buf = bytearray()
        self._skipping = 0  # bytes of an oversize frame dropped so far (0: not skipping)

    @property
    def buffered(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | Garbled | Noise]:
        """Every frame now complete, and what was skipped, in stream order."""
        buf = self._buf
        buf += data
        out: list[Frame | Garbled | Noise] = []
        while buf:
            start = buf.find(b"\x02")
            if self._skipping:
                if start < 0:
                    self._skipping += len(buf)
                    buf.clear()
                    break
                self._skipping += start
                out.append(Noise(self._skipping, "frame longer than the limit"))
                self._skipping = 0
                del buf[:start]
                continue
            if start != 0:
                end = len(buf) if start < 0 else start
                out.append(Noise(end, "bytes outside a frame", bytes(buf[: min(end, 32)])))
                del buf[:end]
                continue
            etx = buf.find(b"\x03", 1)
            stx = buf.find(b"\x02", 1, etx if etx >= 0 else len(buf))
            if stx > 0:  # a frame start without its end: drop it, resync on the new STX
                out.append(Noise(stx, "frame cut short by a new STX", bytes(buf[: min(stx, 32)])))
                del buf[:stx]
                continue
            if etx < 0:
                if len(buf) > self.max_length:
                    self._skipping = len(buf)
                    buf.clear()
                break
            if etx + 1 > self.max_length:
                out.append(Noise(etx + 1, "frame longer than the limit", bytes(buf[:32])))
                del buf[: etx + 1]
                continue
            raw = bytes(buf[: etx + 1])
            del buf[: etx + 1]
            try:
                out.append(decode(raw))
            except FrameError as e:
                out.append(Garbled(e.error, e.reason, e.trn, e.kind, e.ot, raw))
        return out


# --- field helpers ----------------------------------------------------------------------------


_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*\Z")


def _unhex(value: str, what: str) -> bytes:
    if not _HEX.match(value):
        raise FieldError(f"{what} {value[:40]!r} is not an even number of hex digits")
    return bytes.fromhex(value)


def encode_ira(text: str) -> str:
    """AMsg (MT 3): the GSM 03.38 code of each character as two hex digits, unpacked, as Kannel
    and CMG SMSCs do it (extension characters take two codes). FieldError if not GSM."""
    try:
        return gsm0338.encode(text).hex().upper()
    except ValueError as e:
        raise FieldError(str(e)) from None


def decode_ira(value: str) -> str:
    """Text of an AMsg. FieldError for odd or non-hex digits or codes above 0x7F."""
    try:
        return gsm0338.decode(_unhex(value, "AMsg"))
    except FieldError:
        raise
    except ValueError as e:
        raise FieldError(f"AMsg: {e}") from None


def encode_hex_text(text: str) -> str:
    """Hex of ``text``'s Latin-1 octets: PWD and NPWD of OT 60 (Kannel hexes the password's
    bytes as they are, no GSM mapping)."""
    try:
        return text.encode("latin-1").hex().upper()
    except UnicodeEncodeError as e:
        raise FieldError(f"{text!r} is not Latin-1") from e


def decode_hex_text(value: str) -> str:
    """Inverse of :func:`encode_hex_text`."""
    return _unhex(value, "hex text").decode("latin-1")


MAX_ALPHANUMERIC: Final = 11


def encode_alphanumeric(text: str) -> str:
    """OAdC for OTOA 5039: the number of useful hex digits (2 hex digits), then the GSM
    septets packed 8-into-7, in hex (Kannel ``pack_7bit``). FieldError beyond 11 characters
    (what TP-OA holds) or outside the GSM alphabet."""
    try:
        septets = gsm0338.encode(text)
    except ValueError as e:
        raise FieldError(str(e)) from None
    if not 0 < len(septets) <= MAX_ALPHANUMERIC:
        raise FieldError(f"alphanumeric originator of {len(septets)} septets (1..11)")
    nibbles = (len(septets) * 7 + 3) // 4
    return f"{nibbles:02X}" + gsm0338.pack(septets).hex().upper()


def decode_alphanumeric(value: str) -> str:
    """Text of an OTOA 5039 OAdC. The septet count comes from the useful-digit count."""
    raw = _unhex(value, "alphanumeric OAdC")
    if not raw:
        raise FieldError("empty alphanumeric OAdC")
    count = raw[0] * 4 // 7
    try:
        return gsm0338.decode(gsm0338.unpack(raw[1:], count))
    except ValueError as e:
        raise FieldError(f"alphanumeric OAdC {value!r}: {e}") from None


XSER_UDH: Final = 0x01
XSER_DCS: Final = 0x02


def encode_xser(items: Iterable[tuple[int, bytes]]) -> str:
    """XSer: each service as type, length and data octets, in hex (type 01 GSM UDH with its
    UDHL, 02 DCS, 0C billing id...)."""
    out = []
    for kind, data in items:
        if not 0 <= kind <= 0xFF or len(data) > 0xFF:
            raise FieldError(f"XSer type {kind} with {len(data)} octets")
        out.append(bytes([kind, len(data)]) + data)
    return b"".join(out).hex().upper()


def decode_xser(value: str) -> list[tuple[int, bytes]]:
    """The services in an XSer, unknown types included, in order. FieldError when a length
    runs past the end."""
    raw = _unhex(value, "XSer")
    items = []
    pos = 0
    while pos < len(raw):
        if pos + 2 > len(raw) or pos + 2 + raw[pos + 1] > len(raw):
            raise FieldError(f"XSer {value[:40]!r}: service at octet {pos} runs past the end")
        kind, size = raw[pos], raw[pos + 1]
        items.append((kind, raw[pos + 2 : pos + 2 + size]))
        pos += 2 + size
    return items


def format_scts(when: datetime) -> str:
    """SCTS/DSCTS form ``DDMMYYhhmmss``."""
    return when.strftime("%d%m%y%H%M%S")


def format_vp(when: datetime) -> str:
    """VP/DDT form ``DDMMYYhhmm``."""
    return when.strftime("%d%m%y%H%M")


def _parse_time(value: str, fmt: str, size: int, what: str) -> datetime:
    if len(value) != size or not value.isdigit():
        raise FieldError(f"{what} {value!r} is not {size} digits")
    try:
        return datetime.strptime(value, fmt)
    except ValueError as e:
        raise FieldError(f"{what} {value!r}: {e}") from None


def parse_scts(value: str) -> datetime:
    """A naive datetime from ``DDMMYYhhmmss`` (the SMSC's local time; years 2000-2068 as
    strptime's %y pivot has it)."""
    return _parse_time(value, "%d%m%y%H%M%S", 12, "SCTS")


def parse_vp(value: str) -> datetime:
    """A naive datetime from ``DDMMYYhhmm``."""
    return _parse_time(value, "%d%m%y%H%M", 10, "VP")


def message_id(adc: str, scts: str) -> str:
    """The id of a submitted message as an OT 51 ACK gives it and OT 53 matches it."""
    return f"{adc}:{scts}"


def split_message_id(sm: str) -> tuple[str, str] | None:
    """(AdC, SCTS) of an ACK's SM ``AdC:SCTS``, or None when it is not of that form."""
    adc, sep, scts = sm.rpartition(":")
    if not sep or len(scts) != 12 or not scts.isdigit():
        return None
    return adc, scts


def _adc(number: str) -> str:
    if number.startswith("+"):
        number = "00" + number[1:]
    if not number.isdigit() or len(number) > 16:
        raise FieldError(f"AdC {number!r}: 1..16 digits (a leading + becomes 00)")
    return number


def make_submit(
    adc: str,
    oadc: str,
    text: str | None = None,
    *,
    data: bytes | None = None,
    udh: bytes | None = None,
    dcs: int | None = None,
    notify: int = 0,
    validity: datetime | None = None,
    deferred: datetime | None = None,
    pid: int | None = None,
    **fields: str,
) -> dict[str, str]:
    """OT 51 fields for one message, as Kannel builds them. Either ``text`` (MT 3, GSM
    alphabet) or ``data`` (MT 4, NB bits, MCLs 1); ``udh`` (UDHL included) goes to XSer 01,
    ``dcs`` (e.g. 0x08 for UCS-2 ``data``) to XSer 02. A non-numeric ``oadc`` is sent
    alphanumeric (OTOA 5039), ``+digits`` as OTOA 1139 without the +, an empty one is left
    for the SMSC to fill in; a ``+`` in ``adc``
    becomes 00. ``notify``: NT bitmask (1 delivered, 2 not delivered, 4 buffered), sets NRq.
    ``fields`` override or add raw fields by name."""
    if (text is None) == (data is None):
        raise FieldError("give text or data")
    out: dict[str, str] = {"AdC": _adc(adc)}
    if not oadc:
        pass  # the SMSC puts in the account's own address
    elif oadc.startswith("+") and oadc[1:].isdigit():
        out["OAdC"], out["OTOA"] = oadc[1:], "1139"
    elif oadc.isdigit():
        out["OAdC"] = oadc
    else:
        out["OAdC"], out["OTOA"] = encode_alphanumeric(oadc.removeprefix("+")), "5039"
    if notify:
        if not 0 < notify <= 7:
            raise FieldError(f"NT {notify}: a bitmask of 1, 2, 4")
        out["NRq"], out["NT"] = "1", str(notify)
    if validity is not None:
        out["VP"] = format_vp(validity)
    if deferred is not None:
        out["DD"], out["DDT"] = "1", format_vp(deferred)
    if pid is not None:
        out["RPID"] = f"{pid:04d}"
    if text is not None:
        out["MT"], out["Msg"] = "3", encode_ira(text)
    else:
        assert data is not None
        out["MT"], out["NB"], out["Msg"] = "4", f"{8 * len(data):04d}", data.hex().upper()
        out["MCLs"] = "1"
    xser = []
    if udh:
        xser.append((XSER_UDH, udh))
    if dcs is not None:
        xser.append((XSER_DCS, bytes([dcs])))
    if xser:
        out["XSer"] = encode_xser(xser)
    out.update(fields)
    return out


@attrs.frozen
class Message:
    """What an OT 01/5x operation carries, decoded. ``text`` for MT 3 (and 2: digits),
    ``data`` for MT 4 (NB bits, truncated to whole octets); ``udh``/``dcs`` from XSer;
    ``xser`` every service, unknown ones included."""

    sender: str
    recipient: str
    text: str | None = None
    data: bytes | None = None
    udh: bytes | None = None
    dcs: int | None = None
    xser: tuple[tuple[int, bytes], ...] = ()
    alphanumeric_sender: bool = False


def read_message(op: Operation) -> Message:
    """Decode the message of an operation. FieldError on malformed MT/NB/Msg/XSer/OAdC."""
    oadc = op.get("OAdC")
    alpha = op.get("OTOA") == "5039"
    sender = decode_alphanumeric(oadc) if alpha and oadc else oadc
    mt, msg = op.get("MT"), op.get("Msg")
    text = data = None
    if mt == "3" or (mt == "" and msg):
        text = decode_ira(msg)
    elif mt == "2":
        if msg and not msg.isdigit():
            raise FieldError(f"NMsg {msg[:40]!r} is not digits")
        text = msg
    elif mt == "4":
        data = _unhex(msg, "TMsg")
        nb = op.get("NB")
        if nb:
            if not nb.isdigit():
                raise FieldError(f"NB {nb!r} is not a number")
            data = data[: int(nb) // 8]
    elif mt:
        raise FieldError(f"MT {mt!r} not supported")
    xser = tuple(decode_xser(op.get("XSer")))
    udh = next((v for k, v in xser if k == XSER_UDH), None)
    dcs_raw = next((v for k, v in xser if k == XSER_DCS), None)
    dcs = dcs_raw[0] if dcs_raw else None
    return Message(sender, op.get("AdC"), text, data, udh, dcs, xser, alpha)


class DeliveryStatus(enum.IntEnum):
    """Dst of an OT 53."""

    DELIVERED = 0
    BUFFERED = 1
    NOT_DELIVERED = 2


@attrs.frozen
class Notification:
    """An OT 53 decoded: the message ``AdC:SCTS`` (see :func:`message_id`) reached ``status``,
    with reason ``reason`` (3 digits, None if absent) at ``delivered_at`` (DSCTS)."""

    id: str
    recipient: str
    scts: str
    status: DeliveryStatus | int
    reason: int | None
    delivered_at: datetime | None
    text: str

    @property
    def final(self) -> bool:
        """Delivered or not delivered; buffered notifications are intermediate."""
        return self.status != DeliveryStatus.BUFFERED


def parse_notification(op: Operation) -> Notification:
    """Decode an OT 53. FieldError when Dst, Rsn, SCTS or DSCTS is malformed or missing."""
    adc, scts, dst, rsn = op.get("AdC"), op.get("SCTS"), op.get("Dst"), op.get("Rsn")
    parse_scts(scts)
    if not dst.isdigit():
        raise FieldError(f"Dst {dst!r} is not a number")
    if rsn and not rsn.isdigit():
        raise FieldError(f"Rsn {rsn!r} is not a number")
    dscts = op.get("DSCTS")
    try:
        status: DeliveryStatus | int = DeliveryStatus(int(dst))
    except ValueError:
        status = int(dst)
    msg = op.get("Msg")
    text = decode_ira(msg) if msg and op.get("MT") in ("", "3") else ""
    return Notification(
        message_id(adc, scts),
        adc,
        scts,
        status,
        int(rsn) if rsn else None,
        parse_scts(dscts) if dscts else None,
        text,
    )


def validate(op: Operation) -> tuple[int, str] | None:
    """(EC, reason) for an operation an ESME must refuse, None when it is acceptable: an OT
    an ESME does not serve is 03, malformed content of OT 01/52/53 is 02."""
    if op.ot not in (OT.CALL_INPUT, OT.ALERT, OT.DELIVER, OT.NOTIFICATION):
        return Error.OPERATION_NOT_SUPPORTED, f"OT {op.ot:02d} is not served by an ESME"
    try:
        if op.ot == OT.NOTIFICATION:
            parse_notification(op)
        elif op.ot != OT.ALERT:
            read_message(op)
            scts = op.get("SCTS")
            if scts:
                parse_scts(scts)
    except FieldError as e:
        return Error.SYNTAX_ERROR, str(e)
    return None


# --- the session ------------------------------------------------------------------------------


class State(enum.Enum):
    OPEN = "open"  # connected; submits allowed (SMSCs that authenticate by IP need no login)
    LOGGING_IN = "logging_in"  # OT 60 sent, nothing else until its result
    LOGGED_IN = "logged_in"
    CLOSED = "closed"


class SessionError(Exception):
    """The caller asked for something the session cannot do now (our bug, not the peer's)."""


class WindowFull(SessionError):
    """No room in the window (or no free TRN): wait for results before sending more."""


@attrs.frozen
class Pending:
    """An operation we sent that has no result yet."""

    trn: int
    ot: int
    ref: Any
    sent_at: float
    adc: str = ""


@attrs.frozen
class LoggedIn:
    trn: int


@attrs.frozen
class LoginRefused:
    """OT 60 NACKed (07 authentication failure, typically); the session is OPEN again."""

    trn: int
    error: int
    message: str


@attrs.frozen
class Acked:
    """An operation of ours was accepted. For OT 51, ``id`` is the ACK's ``AdC:SCTS`` (None if
    the SMSC sent no such SM) and ``scts`` its time stamp, the key for OT 53."""

    trn: int
    ot: int
    ref: Any
    id: str | None
    message: str
    mvp: str = ""

    @property
    def scts(self) -> str | None:
        parts = split_message_id(self.id) if self.id else None
        return parts[1] if parts else None


@attrs.frozen
class Nacked:
    """An operation of ours was refused with ``error``; ``temporary`` says whether to retry."""

    trn: int
    ot: int
    ref: Any
    error: int
    message: str

    @property
    def temporary(self) -> bool:
        return is_temporary(self.error)


@attrs.frozen
class Late:
    """A result for a TRN given up by :meth:`EsmeSession.expired`: what became of it after all
    (an ACK here means the message *was* accepted; do not send it again)."""

    pending: Pending
    result: Result


@attrs.frozen
class MoReceived:
    """OT 52 (or 01): a message for us. Answer with :meth:`EsmeSession.ack` once stored."""

    trn: int
    operation: Operation


@attrs.frozen
class NotificationReceived:
    """OT 53: a delivery notification. Answer with :meth:`EsmeSession.ack` once stored."""

    trn: int
    operation: Operation
    notification: Notification


@attrs.frozen
class Alert:
    """OT 31 from the SMSC. Answer with :meth:`EsmeSession.ack`."""

    trn: int
    operation: Operation


@attrs.frozen
class PeerError:
    """The peer sent something malformed; the session NACKed it where UCP allows that."""

    reason: str


@attrs.frozen
class Stray:
    """A result for no TRN we have outstanding (or for another OT than we sent)."""

    result: Result


Event = (
    LoggedIn
    | LoginRefused
    | Acked
    | Nacked
    | Late
    | MoReceived
    | NotificationReceived
    | Alert
    | PeerError
    | Stray
)


class EsmeSession:
    """The ESME side of one UCP connection, h11 style: no sockets, no timers. Feed it what the
    socket read (:meth:`receive`), write what :meth:`data_to_send` returns.

    TRNs 00-99 are allocated round-robin skipping busy ones, at most ``window`` outstanding.
    The session NACKs by itself what it cannot accept (garbled operations: 01/02; OTs an ESME
    does not serve: 03; malformed content: 02) and leaves to the caller: answering OT 52/53/31
    (:meth:`ack`/:meth:`nack`, once what they carry is committed), keep-alive timing
    (:meth:`needs_keepalive`, :meth:`keepalive`) and timeouts (:meth:`expired`). Expired TRNs
    are not reused on this connection, so a late result can only mean what it says
    (:class:`Late`); reconnect and reconcile rather than resend blindly.

    Garbled *results* are never NACKed (a result has no result) and settle nothing: their
    TRN stays outstanding until the caller expires it.
    """

    def __init__(
        self,
        *,
        window: int = DEFAULT_WINDOW,
        max_length: int = DEFAULT_MAX_LENGTH,
        first_trn: int = 0,
    ) -> None:
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be 1..{MAX_WINDOW}, not {window}")
        if not 0 <= first_trn <= 99:
            raise ValueError(f"first_trn must be 0..99, not {first_trn}")
        self.window = window
        self.state = State.OPEN
        self.idle_since: float | None = None
        """When anything was last sent or received (None before the first activity)."""
        self._next_trn = first_trn
        self._parser = Parser(max_length)
        self._out: list[bytes] = []
        self._pending: dict[int, Pending] = {}
        self._expired: dict[int, Pending] = {}
        self._peer_pending: dict[int, list[int]] = {}  # peer TRN -> OTs waiting for ack()

    # What the caller asks ----------------------------------------------------------------

    @property
    def outstanding(self) -> dict[int, Pending]:
        """Operations sent and not answered, by TRN (a copy)."""
        return dict(self._pending)

    @property
    def can_send(self) -> bool:
        """Whether :meth:`submit` would find room now."""
        return (
            self.state in (State.OPEN, State.LOGGED_IN)
            and len(self._pending) < self.window
            and len(self._pending) + len(self._expired) < MAX_TRN
        )

    def data_to_send(self) -> bytes:
        """Everything queued for the socket, once."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def login(self, account: str, password: str, *, now: float, **fields: str) -> int:
        """Send OT 60 (OTON 6, ONPI 5, STYP 1 open session, PWD hexed, VERS 0100); a
        :class:`LoggedIn` or :class:`LoginRefused` follows. Returns the TRN."""
        if self.state is not State.OPEN or self._pending:
            raise SessionError(f"login needs an idle OPEN session, not {self.state.name}")
        values = {
            "OAdC": account,
            "OTON": "6",
            "ONPI": "5",
            "STYP": "1",
            "PWD": encode_hex_text(password),
            "VERS": "0100",
            **fields,
        }
        trn = self._send(OT.SESSION, values, None, now, force=True)
        self.state = State.LOGGING_IN
        return trn

    def submit(
        self, fields: Mapping[str, str], *, now: float, ref: Any = None, ot: int = OT.SUBMIT
    ) -> int:
        """Send an OT 51 with ``fields`` (see :func:`make_submit`); an :class:`Acked` or
        :class:`Nacked` carrying ``ref`` follows. Returns the TRN. :class:`WindowFull` when
        the window is full, SessionError while logging in or closed, FieldError for bad
        fields (nothing is sent then)."""
        if self.state not in (State.OPEN, State.LOGGED_IN):
            raise SessionError(f"cannot submit in state {self.state.name}")
        return self._send(ot, dict(fields), ref, now)

    def keepalive(self, *, now: float, adc: str = "", pid: str = "0539") -> int:
        """Send an OT 31 alert (the caller's idle timer asks); its ACK only refreshes
        :attr:`idle_since`. Kannel puts the account or its own number in AdC."""
        if self.state is State.CLOSED:
            raise SessionError("the session is closed")
        return self._send(OT.ALERT, {"AdC": adc, "PID": pid}, None, now, force=True)

    def needs_keepalive(self, now: float, interval: float) -> bool:
        """True when idle for ``interval`` seconds with no OT 31 already outstanding."""
        if self.idle_since is None or self.state in (State.CLOSED, State.LOGGING_IN):
            return False
        if any(p.ot == OT.ALERT for p in self._pending.values()):
            return False
        return now - self.idle_since >= interval

    def ack(self, trn: int, *, message: str = "", now: float | None = None) -> bool:
        """ACK the peer's operation ``trn`` (an MO or notification, once committed). False,
        sending nothing, when the session is closed (the SMSC will send it again).
        SessionError when nothing with that TRN waits for an answer."""
        return self._answer(trn, None, message, now)

    def nack(self, trn: int, error: int, *, message: str = "", now: float | None = None) -> bool:
        """NACK the peer's operation ``trn`` with ``error`` (as :meth:`ack`)."""
        return self._answer(trn, error, message, now)

    def expired(self, now: float, timeout: float) -> list[Pending]:
        """Operations unanswered for ``timeout`` seconds or more, now given up. Their TRNs are
        not reused on this connection; a result arriving later is a :class:`Late`.
        ``expired(inf, 0)`` collects everything outstanding when the connection is lost."""
        gone = [p for p in self._pending.values() if now - p.sent_at >= timeout]
        for p in gone:
            del self._pending[p.trn]
            self._expired[p.trn] = p
        if self.state is State.LOGGING_IN and not any(
            p.ot == OT.SESSION for p in self._pending.values()
        ):
            self.state = State.OPEN
        return gone

    def close(self) -> None:
        """The connection is gone: nothing more is sent (answers to the peer are dropped)."""
        self.state = State.CLOSED

    # What the peer sends -----------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Events for ``data`` read from the socket. Never raises on anything the peer sends."""
        if data:
            self.idle_since = now
        events: list[Event] = []
        for item in self._parser.feed(data):
            if isinstance(item, Result):
                self._on_result(item, events)
            elif isinstance(item, Operation):
                self._on_operation(item, events)
            elif isinstance(item, Garbled):
                self._on_garbled(item, events)
            else:
                events.append(PeerError(f"{item.reason} ({item.size} bytes skipped)"))
        return events

    def _on_result(self, result: Result, events: list[Event]) -> None:
        trn = result.trn
        pending = self._pending.get(trn)
        if pending is None or pending.ot != result.ot:
            late = self._expired.get(trn)
            if late is not None and late.ot == result.ot:
                del self._expired[trn]
                events.append(Late(late, result))
            else:
                events.append(Stray(result))
            return
        del self._pending[trn]
        if pending.ot == OT.SESSION:
            if result.ack:
                self.state = State.LOGGED_IN
                events.append(LoggedIn(trn))
            else:
                self.state = State.OPEN
                assert result.error is not None
                events.append(LoginRefused(trn, result.error, result.message))
            return
        if result.error is not None:
            events.append(Nacked(trn, pending.ot, pending.ref, result.error, result.message))
        elif pending.ot != OT.ALERT:
            sm = result.message
            ident = sm if split_message_id(sm) is not None else None
            events.append(Acked(trn, pending.ot, pending.ref, ident, sm, result.mvp))

    def _on_operation(self, op: Operation, events: list[Event]) -> None:
        refusal = validate(op)
        if refusal is not None:
            code, reason = refusal
            self._reply(Result(op.trn, op.ot, code, error_text(code)))
            events.append(PeerError(f"OT {op.ot:02d} TRN {op.trn:02d}: {reason}: NACK {code:02d}"))
            return
        self._peer_pending.setdefault(op.trn, []).append(op.ot)
        if op.ot == OT.NOTIFICATION:
            events.append(NotificationReceived(op.trn, op, parse_notification(op)))
        elif op.ot == OT.ALERT:
            events.append(Alert(op.trn, op))
        else:
            events.append(MoReceived(op.trn, op))

    def _on_garbled(self, g: Garbled, events: list[Event]) -> None:
        if g.kind == "O" and g.trn is not None and g.ot is not None:
            self._reply(Result(g.trn, g.ot, g.error, error_text(g.error)))
            events.append(PeerError(f"{g.reason}: NACK {g.error:02d}"))
        else:
            events.append(PeerError(g.reason))

    # Plumbing ----------------------------------------------------------------------------

    def _allocate(self) -> int:
        busy = self._pending.keys() | self._expired.keys()
        trn = self._next_trn
        for _ in range(MAX_TRN):
            if trn not in busy:
                self._next_trn = (trn + 1) % MAX_TRN
                return trn
            trn = (trn + 1) % MAX_TRN
        raise WindowFull("all 100 TRNs are outstanding or expired: reconnect")

    def _send(
        self, ot: int, fields: dict[str, str], ref: Any, now: float, *, force: bool = False
    ) -> int:
        if not force and len(self._pending) >= self.window:
            raise WindowFull(f"{len(self._pending)} operations outstanding (window {self.window})")
        trn = self._allocate()
        frame = encode(Operation(trn, ot, fields))  # before registering: errors leave no trace
        self._out.append(frame)
        self._pending[trn] = Pending(trn, ot, ref, now, fields.get("AdC", ""))
        self.idle_since = now
        return trn

    def _answer(self, trn: int, error: int | None, message: str, now: float | None) -> bool:
        waiting = self._peer_pending.get(trn)
        if not waiting:
            raise SessionError(f"no operation with TRN {trn:02d} is waiting for an answer")
        ot = waiting.pop(0)
        if not waiting:
            del self._peer_pending[trn]
        if self.state is State.CLOSED:
            return False
        self._reply(Result(trn, ot, error, message))
        if now is not None:
            self.idle_since = now
        return True

    def _reply(self, result: Result) -> None:
        if self.state is not State.CLOSED:
            self._out.append(encode(result))
