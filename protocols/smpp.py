"""SMPP 3.4 for the ESME side, sans-IO: PDU tables, one generic codec, stream framing, text and
delivery-receipt helpers, and the ESME session as a state machine (bytes in, events out).

Why our own codec: the Twisted SMPP library pins an old Twisted and encodes about 12,000
submit_sm/s; this one walks precompiled tables with :mod:`struct` and does an order of
magnitude more, which matters when one process drives many binds.

The PDUs are declared as data, the way Kannel's ``smpp_pdu.def`` does it: :data:`BODIES` maps
each command to its mandatory fields in wire order, each a :class:`Field` (name, kind, size);
:data:`TLVS` maps optional-parameter tags to (name, kind, sizes). :func:`encode` and
:func:`decode` are the only code that knows the wire format, and :class:`Parser` cuts a TCP
stream into PDUs. Values in :class:`Pdu`: C-strings are ``str`` decoded as Latin-1 (every octet
maps to one code point, so any bytes an SMSC sends survive a decode/encode round trip),
``short_message`` is ``bytes`` (text is the caller's business: see
:func:`encode_short_message`), integers are ``int``, and TLVs stay raw ``(tag, bytes)`` in the
order received, unknown tags included.

Two error kinds, as in h11: :class:`PduError` / :class:`Garbled` / :class:`Oversize` for what
the peer did wrong (answer it in SMPP terms, or close), :class:`SessionError` and ``ValueError``
for our own misuse. Nothing here does I/O, reads a clock or imports Twisted.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Callable, Iterable
from datetime import datetime
from operator import itemgetter
from typing import Any, Final, NamedTuple

import attrs

from protocols import gsm0338

__all__ = [
    "BODIES",
    "DEFAULT_MAX_LENGTH",
    "HEADER_LENGTH",
    "MESSAGE_STATES",
    "RESPONSE",
    "TLVS",
    "AlertNotification",
    "BindRefused",
    "Bound",
    "Command",
    "DataSm",
    "DeliverSm",
    "EsmeSession",
    "Event",
    "Field",
    "Garbled",
    "GenericNack",
    "Kind",
    "Outbind",
    "Oversize",
    "Parser",
    "Pdu",
    "PduError",
    "PeerError",
    "ProtocolFailure",
    "QueryResult",
    "Receipt",
    "Response",
    "SessionError",
    "State",
    "Status",
    "Stray",
    "SubmitResult",
    "Tag",
    "TlvSpec",
    "UnbindComplete",
    "Unbound",
    "coding_alphabet",
    "decode",
    "decode_short_message",
    "encode",
    "encode_short_message",
    "is_response",
    "make",
    "normalise_id",
    "parse_receipt",
    "receipt_from_pdu",
    "response_for",
    "status_name",
    "tlv_value",
]

HEADER_LENGTH: Final = 16
RESPONSE: Final = 0x80000000
"""Bit 31 of command_id: set on every response."""
DEFAULT_MAX_LENGTH: Final = 0x10000 + HEADER_LENGTH
"""Longest PDU :class:`Parser` accepts by default: a 64 KiB body plus the header."""
MAX_SEQUENCE: Final = 0x7FFFFFFF


# --- tables ------------------------------------------------------------------------------------


class Command(enum.IntEnum):
    """command_id values of SMPP 3.4 (§5.1.2.1)."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class Status(enum.IntEnum):
    """command_status values (SMPP 3.4 §5.1.3; 0x100-0x106 are SMPP 5.0, seen in the wild)."""

    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RINVPRTFLG = 0x06
    ESME_RINVREGDLVFLG = 0x07
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RINVMSGID = 0x0C
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RCANCELFAIL = 0x11
    ESME_RREPLACEFAIL = 0x13
    ESME_RMSGQFUL = 0x14
    ESME_RINVSERTYP = 0x15
    ESME_RINVNUMDESTS = 0x33
    ESME_RINVDLNAME = 0x34
    ESME_RINVDESTFLAG = 0x40
    ESME_RINVSUBREP = 0x42
    ESME_RINVESMCLASS = 0x43
    ESME_RCNTSUBDL = 0x44
    ESME_RSUBMITFAIL = 0x45
    ESME_RINVSRCTON = 0x48
    ESME_RINVSRCNPI = 0x49
    ESME_RINVDSTTON = 0x50
    ESME_RINVDSTNPI = 0x51
    ESME_RINVSYSTYP = 0x53
    ESME_RINVREPFLAG = 0x54
    ESME_RINVNUMMSGS = 0x55
    ESME_RTHROTTLED = 0x58
    ESME_RINVSCHED = 0x61
    ESME_RINVEXPIRY = 0x62
    ESME_RINVDFTMSGID = 0x63
    ESME_RX_T_APPN = 0x64
    ESME_RX_P_APPN = 0x65
    ESME_RX_R_APPN = 0x66
    ESME_RQUERYFAIL = 0x67
    ESME_RINVOPTPARSTREAM = 0xC0
    ESME_ROPTPARNOTALLWD = 0xC1
    ESME_RINVPARLEN = 0xC2
    ESME_RMISSINGOPTPARAM = 0xC3
    ESME_RINVOPTPARAMVAL = 0xC4
    ESME_RDELIVERYFAILURE = 0xFE
    ESME_RUNKNOWNERR = 0xFF
    ESME_RSERTYPUNAUTH = 0x100
    ESME_RPROHIBITED = 0x101
    ESME_RSERTYPUNAVAIL = 0x102
    ESME_RSERTYPDENIED = 0x103
    ESME_RINVDCS = 0x104
    ESME_RINVSRCADDRSUBUNIT = 0x105
    ESME_RINVDSTADDRSUBUNIT = 0x106


_STATUS_NAMES = {s.value: s.name for s in Status}


def status_name(code: int) -> str:
    """``"ESME_RTHROTTLED (0x58)"``, or ``"0x00000401"`` for a code we have no name for."""
    name = _STATUS_NAMES.get(code)
    return f"{name} (0x{code:02X})" if name else f"0x{code:08X}"


class Kind(enum.Enum):
    """How a field is laid out on the wire."""

    CSTRING = "cstring"  # octets then NUL; size = the SMPP maximum including the NUL
    INT1 = "int1"
    INT2 = "int2"
    INT4 = "int4"
    OCTETS = "octets"  # TLVs only: the TLV length says how many
    SHORT_MESSAGE = "short_message"  # sm_length (1 octet) then that many octets; size = 254
    DEST_ADDRESSES = "dest_addresses"  # submit_multi: number_of_dests then dest_address entries
    UNSUCCESS_SMES = "unsuccess_smes"  # submit_multi_resp: no_unsuccess then unsuccess_sme entries


class Field(NamedTuple):
    """One mandatory parameter: its name, wire kind, size (see :class:`Kind`) and default."""

    name: str
    kind: Kind
    size: int
    default: Any


def _c(name: str, size: int) -> Field:
    return Field(name, Kind.CSTRING, size, "")


def _i1(name: str, default: int = 0) -> Field:
    return Field(name, Kind.INT1, 1, default)


_BIND = (
    _c("system_id", 16),
    _c("password", 9),
    _c("system_type", 13),
    _i1("interface_version", 0x34),
    _i1("addr_ton"),
    _i1("addr_npi"),
    _c("address_range", 41),
)
_BIND_RESP = (_c("system_id", 16),)
_SHORT_MESSAGE = Field("short_message", Kind.SHORT_MESSAGE, 254, b"")
_SM = (
    _c("service_type", 6),
    _i1("source_addr_ton"),
    _i1("source_addr_npi"),
    _c("source_addr", 21),
    _i1("dest_addr_ton"),
    _i1("dest_addr_npi"),
    _c("destination_addr", 21),
    _i1("esm_class"),
    _i1("protocol_id"),
    _i1("priority_flag"),
    _c("schedule_delivery_time", 17),
    _c("validity_period", 17),
    _i1("registered_delivery"),
    _i1("replace_if_present_flag"),
    _i1("data_coding"),
    _i1("sm_default_msg_id"),
    _SHORT_MESSAGE,
)
_MESSAGE_ID = (_c("message_id", 65),)

BODIES: dict[int, tuple[Field, ...]] = {
    Command.GENERIC_NACK: (),
    Command.BIND_RECEIVER: _BIND,
    Command.BIND_RECEIVER_RESP: _BIND_RESP,
    Command.BIND_TRANSMITTER: _BIND,
    Command.BIND_TRANSMITTER_RESP: _BIND_RESP,
    Command.BIND_TRANSCEIVER: _BIND,
    Command.BIND_TRANSCEIVER_RESP: _BIND_RESP,
    Command.OUTBIND: (_c("system_id", 16), _c("password", 9)),
    Command.QUERY_SM: (
        _c("message_id", 65),
        _i1("source_addr_ton"),
        _i1("source_addr_npi"),
        _c("source_addr", 21),
    ),
    Command.QUERY_SM_RESP: (
        _c("message_id", 65),
        _c("final_date", 17),
        _i1("message_state"),
        _i1("error_code"),
    ),
    Command.SUBMIT_SM: _SM,
    Command.SUBMIT_SM_RESP: _MESSAGE_ID,
    Command.DELIVER_SM: _SM,
    Command.DELIVER_SM_RESP: (_c("message_id", 1),),  # "unused, set to NULL"
    Command.UNBIND: (),
    Command.UNBIND_RESP: (),
    Command.REPLACE_SM: (
        _c("message_id", 65),
        _i1("source_addr_ton"),
        _i1("source_addr_npi"),
        _c("source_addr", 21),
        _c("schedule_delivery_time", 17),
        _c("validity_period", 17),
        _i1("registered_delivery"),
        _i1("sm_default_msg_id"),
        _SHORT_MESSAGE,
    ),
    Command.REPLACE_SM_RESP: (),
    Command.CANCEL_SM: (
        _c("service_type", 6),
        _c("message_id", 65),
        _i1("source_addr_ton"),
        _i1("source_addr_npi"),
        _c("source_addr", 21),
        _i1("dest_addr_ton"),
        _i1("dest_addr_npi"),
        _c("destination_addr", 21),
    ),
    Command.CANCEL_SM_RESP: (),
    Command.ENQUIRE_LINK: (),
    Command.ENQUIRE_LINK_RESP: (),
    Command.SUBMIT_MULTI: (
        _c("service_type", 6),
        _i1("source_addr_ton"),
        _i1("source_addr_npi"),
        _c("source_addr", 21),
        # ((1, ton, npi, address) | (2, dl_name), ...), count first on the wire
        Field("dest_addresses", Kind.DEST_ADDRESSES, 254, ()),
        *_SM[7:],  # esm_class .. short_message, as in submit_sm
    ),
    Command.SUBMIT_MULTI_RESP: (
        _c("message_id", 65),
        # ((ton, npi, address, error_status_code), ...), count first on the wire
        Field("unsuccess_smes", Kind.UNSUCCESS_SMES, 255, ()),
    ),
    Command.ALERT_NOTIFICATION: (
        _i1("source_addr_ton"),
        _i1("source_addr_npi"),
        _c("source_addr", 65),
        _i1("esme_addr_ton"),
        _i1("esme_addr_npi"),
        _c("esme_addr", 65),
    ),
    Command.DATA_SM: (
        _c("service_type", 6),
        _i1("source_addr_ton"),
        _i1("source_addr_npi"),
        _c("source_addr", 65),
        _i1("dest_addr_ton"),
        _i1("dest_addr_npi"),
        _c("destination_addr", 65),
        _i1("esm_class"),
        _i1("registered_delivery"),
        _i1("data_coding"),
    ),
    Command.DATA_SM_RESP: _MESSAGE_ID,
}
"""Mandatory body of every command, in wire order. Optional parameters (TLVs) may follow any
body; the decoder keeps whatever it finds."""

BODYLESS_ON_ERROR: Final = frozenset(
    {
        Command.BIND_RECEIVER_RESP,
        Command.BIND_TRANSMITTER_RESP,
        Command.BIND_TRANSCEIVER_RESP,
        Command.SUBMIT_SM_RESP,
    }
)
"""Responses whose body SMPP 3.4 says is not returned with a non-zero command_status."""

# What to answer when a C-string is longer than its maximum (default ESME_RINVPARLEN).
_FIELD_STATUS = {
    "system_id": Status.ESME_RINVSYSID,
    "password": Status.ESME_RINVPASWD,
    "system_type": Status.ESME_RINVSYSTYP,
    "service_type": Status.ESME_RINVSERTYP,
    "source_addr": Status.ESME_RINVSRCADR,
    "destination_addr": Status.ESME_RINVDSTADR,
    "message_id": Status.ESME_RINVMSGID,
    "schedule_delivery_time": Status.ESME_RINVSCHED,
    "validity_period": Status.ESME_RINVEXPIRY,
    "short_message": Status.ESME_RINVMSGLEN,
    "dest_addresses": Status.ESME_RINVNUMDESTS,
}


class Tag(enum.IntEnum):
    """Optional parameter tags of SMPP 3.4 (§5.3.2)."""

    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383


class TlvSpec(NamedTuple):
    """A standard TLV: its name, kind and value size range in octets (C-strings: with NUL)."""

    name: str
    kind: Kind
    min: int
    max: int


def _tlv(tag: Tag, kind: Kind, low: int = 0, high: int = 0) -> tuple[int, TlvSpec]:
    if kind in _INT_SIZE:
        low = high = _INT_SIZE[kind]
    return tag, TlvSpec(tag.name.lower(), kind, low, high)


_INT_SIZE = {Kind.INT1: 1, Kind.INT2: 2, Kind.INT4: 4}
_I1, _I2, _I4, _CS, _OS = Kind.INT1, Kind.INT2, Kind.INT4, Kind.CSTRING, Kind.OCTETS

TLVS: dict[int, TlvSpec] = dict(
    (
        _tlv(Tag.DEST_ADDR_SUBUNIT, _I1),
        _tlv(Tag.DEST_NETWORK_TYPE, _I1),
        _tlv(Tag.DEST_BEARER_TYPE, _I1),
        _tlv(Tag.DEST_TELEMATICS_ID, _I2),
        _tlv(Tag.SOURCE_ADDR_SUBUNIT, _I1),
        _tlv(Tag.SOURCE_NETWORK_TYPE, _I1),
        _tlv(Tag.SOURCE_BEARER_TYPE, _I1),
        _tlv(Tag.SOURCE_TELEMATICS_ID, _I1),
        _tlv(Tag.QOS_TIME_TO_LIVE, _I4),
        _tlv(Tag.PAYLOAD_TYPE, _I1),
        _tlv(Tag.ADDITIONAL_STATUS_INFO_TEXT, _CS, 1, 256),
        _tlv(Tag.RECEIPTED_MESSAGE_ID, _CS, 1, 65),
        _tlv(Tag.MS_MSG_WAIT_FACILITIES, _I1),
        _tlv(Tag.PRIVACY_INDICATOR, _I1),
        _tlv(Tag.SOURCE_SUBADDRESS, _OS, 2, 23),
        _tlv(Tag.DEST_SUBADDRESS, _OS, 2, 23),
        _tlv(Tag.USER_MESSAGE_REFERENCE, _I2),
        _tlv(Tag.USER_RESPONSE_CODE, _I1),
        _tlv(Tag.SOURCE_PORT, _I2),
        _tlv(Tag.DESTINATION_PORT, _I2),
        _tlv(Tag.SAR_MSG_REF_NUM, _I2),
        _tlv(Tag.LANGUAGE_INDICATOR, _I1),
        _tlv(Tag.SAR_TOTAL_SEGMENTS, _I1),
        _tlv(Tag.SAR_SEGMENT_SEQNUM, _I1),
        _tlv(Tag.SC_INTERFACE_VERSION, _I1),
        _tlv(Tag.CALLBACK_NUM_PRES_IND, _I1),
        _tlv(Tag.CALLBACK_NUM_ATAG, _OS, 0, 65),
        _tlv(Tag.NUMBER_OF_MESSAGES, _I1),
        _tlv(Tag.CALLBACK_NUM, _OS, 4, 19),
        _tlv(Tag.DPF_RESULT, _I1),
        _tlv(Tag.SET_DPF, _I1),
        _tlv(Tag.MS_AVAILABILITY_STATUS, _I1),
        _tlv(Tag.NETWORK_ERROR_CODE, _OS, 3, 3),  # network type, then a 2-octet error code
        _tlv(Tag.MESSAGE_PAYLOAD, _OS, 0, 0xFFFF),
        _tlv(Tag.DELIVERY_FAILURE_REASON, _I1),
        _tlv(Tag.MORE_MESSAGES_TO_SEND, _I1),
        _tlv(Tag.MESSAGE_STATE, _I1),
        _tlv(Tag.USSD_SERVICE_OP, _OS, 1, 1),
        _tlv(Tag.DISPLAY_TIME, _I1),
        _tlv(Tag.SMS_SIGNAL, _I2),
        _tlv(Tag.MS_VALIDITY, _I1),
        _tlv(Tag.ALERT_ON_MESSAGE_DELIVERY, _OS, 0, 0),  # presence is the message
        _tlv(Tag.ITS_REPLY_TYPE, _I1),
        _tlv(Tag.ITS_SESSION_INFO, _OS, 2, 2),
    )
)
"""Standard optional parameters by tag. Decoding keeps every TLV raw, these included; the table
is what :func:`tlv_value` checks and converts against."""

MESSAGE_STATES: dict[int, str] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
"""message_state (TLV 0x0427, query_sm_resp) -> the stat word of a receipt's text."""


def is_response(command: int) -> bool:
    return bool(command & RESPONSE)


def response_for(command: int) -> int:
    """The command_id that answers ``command`` (``submit_sm`` -> ``submit_sm_resp``)."""
    return command | RESPONSE


def _command_name(command: int) -> str:
    try:
        return Command(command).name.lower()
    except ValueError:
        return f"command 0x{command:08X}"


# --- the PDU -----------------------------------------------------------------------------------


@attrs.frozen
class Pdu:
    """One SMPP PDU. ``params`` holds the mandatory fields by name (see :data:`BODIES`); an
    error response that came without a body has empty ``params``. ``tlvs`` holds every optional
    parameter as raw ``(tag, value)``, in wire order."""

    command: int
    status: int = 0
    sequence: int = 0
    params: dict[str, Any] = attrs.field(factory=dict)
    tlvs: tuple[tuple[int, bytes], ...] = ()

    def tlv(self, tag: int) -> bytes | None:
        """Value of the first TLV with ``tag``, or None."""
        for t, value in self.tlvs:
            if t == tag:
                return value
        return None

    def tlv_int(self, tag: int) -> int | None:
        """The TLV read as a big-endian unsigned integer (of whatever length it came in)."""
        value = self.tlv(tag)
        return None if value is None else int.from_bytes(value, "big")

    def tlv_str(self, tag: int) -> str | None:
        """The TLV as text up to its NUL (tolerating a missing NUL), Latin-1 like C-strings."""
        value = self.tlv(tag)
        return None if value is None else _text_to_nul(value)

    @property
    def name(self) -> str:
        return _command_name(self.command)


def _text_to_nul(value: bytes) -> str:
    """A C-string TLV's text: up to its NUL (tolerating a missing one), Latin-1."""
    nul = value.find(b"\0")
    return (value if nul < 0 else value[:nul]).decode("latin-1")


def tlv_value(tag: int, value: int | str | bytes) -> bytes:
    """Wire value for TLV ``tag``: ints and strings converted by :data:`TLVS`' kind and checked
    against its sizes; bytes pass through as they are (the only form for unknown tags)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    spec = TLVS.get(tag)
    label = spec.name if spec else f"TLV 0x{tag:04X}"
    if spec is None:
        raise ValueError(f"{label}: unknown tag, give its value as bytes")
    if spec.kind in _INT_SIZE:
        if not isinstance(value, int):
            raise ValueError(f"{label}: needs an int, got {type(value).__name__}")
        try:
            return value.to_bytes(spec.max, "big")
        except OverflowError:
            raise ValueError(f"{label}: {value} does not fit in {spec.max} octet(s)") from None
    if spec.kind is Kind.CSTRING and isinstance(value, str):
        raw = _cstring_octets(label, value)
        if len(raw) >= spec.max:
            raise ValueError(f"{label}: {len(raw)} octets, at most {spec.max - 1}")
        return raw + b"\0"
    raise ValueError(f"{label}: needs bytes, got {type(value).__name__}")


def make(
    command: int,
    sequence: int,
    status: int = 0,
    tlvs: Iterable[tuple[int, int | str | bytes]] = (),
    **params: Any,
) -> Pdu:
    """A PDU with every mandatory field the caller did not give set to its default (empty
    string, 0, b"", interface_version 0x34), so callers write only what matters. TLV values may
    be ints or strings (see :func:`tlv_value`). An error response of a kind SMPP sends without
    a body (:data:`BODYLESS_ON_ERROR`) gets no body unless fields or TLVs are given."""
    body = BODIES.get(command)
    if body is None:
        raise ValueError(f"unknown command_id 0x{command:08X}")
    unknown = params.keys() - _NAMES[command]
    if unknown:
        raise ValueError(f"{_command_name(command)} has no field {', '.join(sorted(unknown))}")
    wire_tlvs = tuple((int(tag), tlv_value(tag, value)) for tag, value in tlvs)
    if params or wire_tlvs or not (status and command in BODYLESS_ON_ERROR):
        params = {**_DEFAULTS[command], **params}
    return Pdu(_COMMANDS.get(command, command), status, sequence, params, wire_tlvs)


_COMMANDS = {c.value: c for c in Command}
_NAMES = {cmd: frozenset(f.name for f in body) for cmd, body in BODIES.items()}
_DEFAULTS = {cmd: {f.name: f.default for f in body} for cmd, body in BODIES.items()}


# --- the codec ---------------------------------------------------------------------------------


class PduError(Exception):
    """A PDU that can be framed but not decoded. ``status`` is what to answer it with (in a
    generic_nack or the matching response); ``reason`` is one line for the log."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        command: int | None = None,
        sequence: int | None = None,
        peer_status: int = 0,
    ) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.command = command
        self.sequence = sequence
        self.peer_status = peer_status

    def __str__(self) -> str:
        return f"{self.reason} ({status_name(self.status)})"


_HEADER = struct.Struct(">IIII")
_TLV_HEADER = struct.Struct(">HH")
_LENGTH = struct.Struct(">I")
_INT_FORMAT = {Kind.INT1: "B", Kind.INT2: "H", Kind.INT4: "I"}

# A body compiles into steps; consecutive integers become one struct step.
_OP_CSTRING, _OP_INTS, _OP_SHORT, _OP_DESTS, _OP_UNSUCCESS = range(5)


class _Step(NamedTuple):
    op: int
    name: str  # the field (for ints: the first of the run)
    size: int  # C-string maximum incl. NUL, short_message maximum, entry count maximum
    status: int  # what a decode failure of this field answers
    names: tuple[str, ...] = ()  # ints: every field of the run
    packer: struct.Struct | None = None
    get: Any = None  # ints: itemgetter for the run, always returning a tuple
    defaults: tuple[int, ...] = ()  # ints: the run's defaults


def _compile(body: tuple[Field, ...]) -> tuple[_Step, ...]:
    steps: list[_Step] = []
    run: list[Field] = []

    def flush() -> None:
        if run:
            names = tuple(f.name for f in run)
            fmt = ">" + "".join(_INT_FORMAT[f.kind] for f in run)
            get = itemgetter(*names) if len(names) > 1 else (lambda p, n=names[0]: (p[n],))
            defaults = tuple(f.default for f in run)
            packer = struct.Struct(fmt)
            steps.append(
                _Step(_OP_INTS, names[0], 0, Status.ESME_RINVCMDLEN, names, packer, get, defaults)
            )
            run.clear()

    for f in body:
        if f.kind in _INT_FORMAT:
            run.append(f)
            continue
        flush()
        status = _FIELD_STATUS.get(f.name, Status.ESME_RINVPARLEN)
        op = {
            Kind.CSTRING: _OP_CSTRING,
            Kind.SHORT_MESSAGE: _OP_SHORT,
            Kind.DEST_ADDRESSES: _OP_DESTS,
            Kind.UNSUCCESS_SMES: _OP_UNSUCCESS,
        }[f.kind]
        steps.append(_Step(op, f.name, f.size, status))
    flush()
    return tuple(steps)


_PLANS: dict[int, tuple[_Step, ...]] = {cmd: _compile(body) for cmd, body in BODIES.items()}


# Straight-line codecs. Walking a plan step by step costs a branch and a few lookups per
# field; for the bodies a gateway meets on every message (submit_sm, deliver_sm and their
# responses) that was half of the codec's time. So each plan is also written out once, at
# import, as a Python function with one line per field, in the way namedtuple and attrs
# write theirs: submit_sm encodes in 2.8 µs instead of 4.8, a submit_sm_resp and a
# receipt decode in 5.7-6.2 instead of 8.4-9.0 (2026-12-02). These take only the plain
# case (every C-string ASCII text within its limit, bytes for short_message, every field
# there) and return None for anything else, which then goes the interpreted way above and
# below: the rules, the lenient reading of responses and the error messages live in one
# place only.


def _fast_encoder(plan: tuple[_Step, ...]) -> Callable[[dict[str, Any]], bytes | None] | None:
    """``encode_body(params) -> bytes``, or None for a body it does not cover."""
    lines, parts, env = ["def encode_body(p):", "  try:"], [], {}
    for i, step in enumerate(plan):
        if step.op == _OP_CSTRING:
            lines += [
                f"    v{i} = p[{step.name!r}]",
                f"    if v{i}.__class__ is not str or len(v{i}) >= {step.size}"
                f' or not v{i}.isascii() or "\\0" in v{i}: return None',
            ]
            parts += [f"v{i}.encode()", 'b"\\0"']
        elif step.op == _OP_INTS:
            env[f"S{i}"] = step.packer
            parts.append(f"S{i}.pack({', '.join(f'p[{n!r}]' for n in step.names)})")
        elif step.op == _OP_SHORT:
            lines += [
                f"    v{i} = p[{step.name!r}]",
                f"    if v{i}.__class__ is not bytes or len(v{i}) > {step.size}: return None",
            ]
            parts += [f"bytes((len(v{i}),))", f"v{i}"]
        else:
            return None  # submit_multi's lists: the interpreted way only
    if not parts:
        return None  # no body: nothing to gain
    lines += [
        f"    return b''.join(({', '.join(parts)},))",
        "  except (KeyError, struct.error, TypeError):",  # missing, wrong type, out of range
        "    return None",
    ]
    return _define("\n".join(lines), "encode_body", env)


def _fast_decoder(
    plan: tuple[_Step, ...],
) -> Callable[[bytes, int, int], tuple[dict[str, Any], int] | None] | None:
    """``decode_body(buf, pos, end) -> (params, pos)``, or None for a body it does not cover."""
    lines, names, env = ["def decode_body(buf, pos, end):"], [], {}
    for i, step in enumerate(plan):
        if step.op == _OP_CSTRING:
            lines += [
                f"    limit = pos + {step.size}",
                '    nul = buf.find(b"\\0", pos, limit if limit < end else end)',
                "    if nul < 0: return None",
                f'    v{i} = buf[pos:nul].decode("latin-1")',
                "    pos = nul + 1",
            ]
            names.append((step.name, f"v{i}"))
        elif step.op == _OP_INTS:
            env[f"S{i}"] = step.packer
            assert step.packer is not None
            values = [f"v{i}_{j}" for j in range(len(step.names))]
            lines += [
                f"    if pos + {step.packer.size} > end: return None",
                f"    {', '.join(values)}, = S{i}.unpack_from(buf, pos)",
                f"    pos += {step.packer.size}",
            ]
            names += zip(step.names, values, strict=True)
        elif step.op == _OP_SHORT:
            lines += [
                "    if pos >= end: return None",
                "    size = buf[pos]",
                f"    if size > {step.size} or pos + 1 + size > end: return None",
                f"    v{i} = buf[pos + 1 : pos + 1 + size]",
                "    pos += 1 + size",
            ]
            names.append((step.name, f"v{i}"))
        else:
            return None
    fields = ", ".join(f"{name!r}: {value}" for name, value in names)
    lines.append(f"    return {{{fields}}}, pos")
    return _define("\n".join(lines), "decode_body", env)


def _define(source: str, name: str, env: dict[str, Any]) -> Any:
    namespace = {"struct": struct, **env}
    exec(compile(source, f"<smpp {name}>", "exec"), namespace)  # our own source, from the plans
    fn = namespace[name]
    fn.source = source  # for a reader in a debugger: what runs
    return fn


_ENCODERS = {cmd: _fast_encoder(plan) for cmd, plan in _PLANS.items()}
_DECODERS = {cmd: _fast_decoder(plan) for cmd, plan in _PLANS.items()}


def _cstring_octets(name: str, value: Any) -> bytes:
    if isinstance(value, str):
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError as e:
            bad = value[e.start]
            raise ValueError(
                f"{name}: character {bad!r} at index {e.start} is outside Latin-1"
            ) from None
    elif isinstance(value, bytes):
        raw = value
    else:
        raise ValueError(f"{name}: needs str, got {type(value).__name__}")
    if b"\0" in raw:
        raise ValueError(f"{name}: contains NUL")
    return raw


def _encode_cstring(name: str, value: Any, size: int) -> bytes:
    raw = _cstring_octets(name, value)
    if len(raw) >= size:
        raise ValueError(f"{name}: {len(raw)} octets, at most {size - 1}")
    return raw


def _encode_ints(step: _Step, params: dict[str, Any]) -> bytes:
    """The careful path for an integer run: defaults for missing fields, errors by name."""
    assert step.packer is not None
    values = []
    for name, default, fmt in zip(step.names, step.defaults, step.packer.format[1:], strict=True):
        value = params.get(name, default)
        limit = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}[fmt]
        if not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f"{name}: {value!r} is not an integer in 0..{limit}")
        values.append(value)
    return step.packer.pack(*values)


def _encode_body(command: int, params: dict[str, Any], out: list[bytes]) -> None:
    for step in _PLANS[command]:
        op = step.op
        if op == _OP_CSTRING:
            value = params.get(step.name, "")
            if value.__class__ is str and value.isascii() and "\0" not in value:
                raw = value.encode("ascii")  # the fast, common path
                if len(raw) >= step.size:
                    raise ValueError(f"{step.name}: {len(raw)} octets, at most {step.size - 1}")
            else:
                raw = _encode_cstring(step.name, value, step.size)
            out.append(raw)
            out.append(b"\0")
        elif op == _OP_INTS:
            try:
                out.append(step.packer.pack(*step.get(params)))  # type: ignore[union-attr]
            except (KeyError, struct.error, TypeError):
                out.append(_encode_ints(step, params))
        elif op == _OP_SHORT:
            sm = params.get(step.name, b"")
            if not isinstance(sm, bytes | bytearray):
                raise ValueError(
                    f"{step.name}: needs bytes, got {type(sm).__name__} (see encode_short_message)"
                )
            if len(sm) > step.size:
                raise ValueError(f"{step.name}: {len(sm)} octets, at most {step.size}")
            out.append(bytes((len(sm),)))
            out.append(bytes(sm))
        elif op == _OP_DESTS:
            _encode_dests(step, params.get(step.name, ()), out)
        else:
            _encode_unsuccess(step, params.get(step.name, ()), out)


def _encode_dests(step: _Step, entries: Any, out: list[bytes]) -> None:
    entries = tuple(entries)
    if len(entries) > step.size:
        raise ValueError(f"{step.name}: {len(entries)} destinations, at most {step.size}")
    out.append(bytes((len(entries),)))
    for entry in entries:
        if len(entry) == 4 and entry[0] == 1:
            _, ton, npi, address = entry
            if not (isinstance(ton, int) and isinstance(npi, int) and 0 <= ton <= 255 >= npi >= 0):
                raise ValueError(f"{step.name}: bad TON/NPI in {entry!r}")
            out.append(bytes((1, ton, npi)))
            out.append(_encode_cstring(f"{step.name} address", address, 21) + b"\0")
        elif len(entry) == 2 and entry[0] == 2:
            out.append(b"\x02" + _encode_cstring(f"{step.name} dl_name", entry[1], 21) + b"\0")
        else:
            raise ValueError(
                f"{step.name}: {entry!r} is neither (1, ton, npi, address) nor (2, dl_name)"
            )


def _encode_unsuccess(step: _Step, entries: Any, out: list[bytes]) -> None:
    entries = tuple(entries)
    if len(entries) > step.size:
        raise ValueError(f"{step.name}: {len(entries)} entries, at most {step.size}")
    out.append(bytes((len(entries),)))
    for entry in entries:
        try:
            ton, npi, address, error = entry
            head = bytes((ton, npi))
            tail = struct.pack(">I", error)
        except (ValueError, TypeError, struct.error):
            raise ValueError(
                f"{step.name}: {entry!r} is not (ton, npi, address, error_status_code)"
            ) from None
        out.append(head + _encode_cstring(f"{step.name} address", address, 21) + b"\0" + tail)


def encode(pdu: Pdu) -> bytes:
    """The PDU on the wire, header included.

    Fields missing from ``params`` take their defaults; a response with empty ``params`` and
    no TLVs is sent without a body. Raises ValueError naming the field for anything SMPP 3.4
    does not allow: a C-string at or over its maximum (which counts the NUL), a NUL or
    non-Latin-1 character in one, short_message over 254 octets, an integer out of range, an
    unknown field name."""
    command = pdu.command
    params = pdu.params
    plan = _PLANS.get(command)
    if plan is None:
        raise ValueError(f"unknown command_id 0x{command:08X}")
    body = b""
    if params or pdu.tlvs or not command & RESPONSE:
        names = _NAMES[command]
        if len(params) != len(names):  # some fields left to their defaults, or unknown ones
            params = {**_DEFAULTS[command], **params}
        fast = _ENCODERS[command]
        # With as many fields as names, the fast way's success means no unknown field.
        encoded = fast(params) if fast is not None and len(params) == len(names) else None
        if encoded is None:
            if not params.keys() <= names:
                unknown = ", ".join(sorted(params.keys() - names))
                raise ValueError(f"{_command_name(command)} has no field {unknown}")
            out: list[bytes] = []
            _encode_body(command, params, out)
            encoded = b"".join(out)
        body = encoded
    if pdu.tlvs:
        body = b"".join((body, *_encode_tlvs(pdu.tlvs)))
    try:
        return _HEADER.pack(HEADER_LENGTH + len(body), command, pdu.status, pdu.sequence) + body
    except struct.error:
        raise ValueError(
            f"status {pdu.status!r} or sequence {pdu.sequence!r} is not a 32-bit unsigned integer"
        ) from None


def _encode_tlvs(tlvs: tuple[tuple[int, bytes], ...]) -> list[bytes]:
    out: list[bytes] = []
    for tag, value in tlvs:
        if value.__class__ is not bytes:
            raise ValueError(f"TLV 0x{tag:04X}: value must be bytes (see tlv_value)")
        if len(value) > 0xFFFF or not 0 <= tag <= 0xFFFF:
            raise ValueError(f"TLV 0x{tag:04X}: tag or length ({len(value)}) out of range")
        out.append(_TLV_HEADER.pack(tag, len(value)))
        out.append(value)
    return out


def decode(frame: bytes, *, strict: bool = True) -> Pdu:
    """The PDU in ``frame``, exactly one whole PDU including its header.

    Raises :class:`PduError` with the status to answer: ESME_RINVCMDLEN when command_length
    disagrees with the frame or the body ends inside a field, ESME_RINVCMDID for an unknown
    command_id, ESME_RINVMSGLEN when sm_length runs past the body, the field's own status
    (ESME_RINVSRCADR, ESME_RINVSYSID, ... else ESME_RINVPARLEN) for a C-string over its maximum,
    ESME_RINVOPTPARSTREAM for broken TLV framing. A response with an empty body decodes with
    empty ``params``. ``strict=False`` accepts over-long C-strings and a final C-string cut by
    the end of the frame: what :class:`Parser` uses for responses, whose content (a message id)
    is worth more than the peer's conformance."""
    if len(frame) < HEADER_LENGTH:
        raise PduError(Status.ESME_RINVCMDLEN, f"{len(frame)} octets cannot hold an SMPP header")
    (length,) = _LENGTH.unpack_from(frame)
    if length != len(frame):
        raise PduError(
            Status.ESME_RINVCMDLEN, f"command_length {length} but the frame has {len(frame)}"
        )
    return _decode(frame, 0, length, strict)


def _decode(buf: bytes, start: int, end: int, strict: bool) -> Pdu:
    _, command, status, sequence = _HEADER.unpack_from(buf, start)
    plan = _PLANS.get(command)
    if plan is None:
        raise PduError(
            Status.ESME_RINVCMDID,
            f"unknown command_id 0x{command:08X}",
            command=command,
            sequence=sequence,
            peer_status=status,
        )
    pos = start + HEADER_LENGTH
    params: dict[str, Any] = {}
    try:
        if plan and (pos < end or not command & RESPONSE):
            fast = _DECODERS[command]
            decoded = fast(buf, pos, end) if fast is not None else None
            if decoded is None:
                pos = _decode_body(buf, pos, end, plan, params, strict)
            else:
                params, pos = decoded
        tlvs: list[tuple[int, bytes]] = []
        while pos < end:
            if end - pos < 4:
                raise PduError(Status.ESME_RINVOPTPARSTREAM, f"{end - pos} stray octet(s) at end")
            tag, size = _TLV_HEADER.unpack_from(buf, pos)
            pos += 4
            if pos + size > end:
                raise PduError(
                    Status.ESME_RINVOPTPARSTREAM,
                    f"TLV 0x{tag:04X} of {size} octets runs past the end of the PDU",
                )
            tlvs.append((tag, buf[pos : pos + size]))
            pos += size
    except PduError as e:
        e.command, e.sequence, e.peer_status = command, sequence, status
        e.reason = f"{_command_name(command)}: {e.reason}"
        raise
    return Pdu(_COMMANDS[command], status, sequence, params, tuple(tlvs))


def _decode_body(
    buf: bytes, pos: int, end: int, plan: tuple[_Step, ...], params: dict[str, Any], strict: bool
) -> int:
    for step in plan:
        op = step.op
        if op == _OP_CSTRING:
            pos = _decode_cstring(buf, pos, end, step.name, step.size, step.status, params, strict)
        elif op == _OP_INTS:
            st = step.packer
            assert st is not None
            if pos + st.size > end:
                raise PduError(Status.ESME_RINVCMDLEN, f"body ends inside {step.name}")
            if len(step.names) == 1:
                params[step.name] = st.unpack_from(buf, pos)[0]
            else:
                params.update(zip(step.names, st.unpack_from(buf, pos), strict=True))
            pos += st.size
        elif op == _OP_SHORT:
            if pos >= end:
                raise PduError(Status.ESME_RINVCMDLEN, "body ends before sm_length")
            size = buf[pos]
            pos += 1
            if size > step.size or pos + size > end:
                raise PduError(
                    Status.ESME_RINVMSGLEN,
                    f"sm_length {size} but {end - pos} octet(s) left (at most {step.size})",
                )
            params[step.name] = buf[pos : pos + size]
            pos += size
        elif op == _OP_DESTS:
            pos = _decode_dests(buf, pos, end, step, params, strict)
        else:
            pos = _decode_unsuccess(buf, pos, end, step, params, strict)
    return pos


def _decode_cstring(
    buf: bytes,
    pos: int,
    end: int,
    name: str,
    size: int,
    status: int,
    params: dict[str, Any],
    strict: bool,
) -> int:
    limit = pos + size
    nul = buf.find(b"\0", pos, limit if limit < end else end)
    if nul < 0:
        if not strict:
            nul = buf.find(b"\0", pos, end)
            if nul < 0:  # cut by the end of the frame: take what is there
                params[name] = buf[pos:end].decode("latin-1")
                return end
        elif limit <= end:
            raise PduError(status, f"{name} longer than {size - 1} octets")
        else:
            raise PduError(Status.ESME_RINVCMDLEN, f"body ends inside {name} (no NUL)")
    params[name] = buf[pos:nul].decode("latin-1")
    return nul + 1


def _decode_dests(
    buf: bytes, pos: int, end: int, step: _Step, params: dict[str, Any], strict: bool
) -> int:
    if pos >= end:
        raise PduError(Status.ESME_RINVCMDLEN, "body ends before number_of_dests")
    count = buf[pos]
    pos += 1
    if count > step.size:
        raise PduError(Status.ESME_RINVNUMDESTS, f"number_of_dests {count} over {step.size}")
    entries: list[tuple[Any, ...]] = []
    scratch: dict[str, Any] = {}
    for _ in range(count):
        if pos >= end:
            raise PduError(Status.ESME_RINVCMDLEN, "body ends inside dest_address")
        flag = buf[pos]
        if flag == 1:
            if pos + 3 > end:
                raise PduError(Status.ESME_RINVCMDLEN, "body ends inside dest_address")
            ton, npi = buf[pos + 1], buf[pos + 2]
            pos = _decode_cstring(
                buf, pos + 3, end, "a", 21, Status.ESME_RINVDSTADR, scratch, strict
            )
            entries.append((1, ton, npi, scratch["a"]))
        elif flag == 2:
            pos = _decode_cstring(
                buf, pos + 1, end, "a", 21, Status.ESME_RINVDLNAME, scratch, strict
            )
            entries.append((2, scratch["a"]))
        else:
            raise PduError(Status.ESME_RINVDESTFLAG, f"dest_flag {flag}")
    params[step.name] = tuple(entries)
    return pos


def _decode_unsuccess(
    buf: bytes, pos: int, end: int, step: _Step, params: dict[str, Any], strict: bool
) -> int:
    if pos >= end:
        raise PduError(Status.ESME_RINVCMDLEN, "body ends before no_unsuccess")
    count = buf[pos]
    pos += 1
    entries: list[tuple[Any, ...]] = []
    scratch: dict[str, Any] = {}
    for _ in range(count):
        if pos + 2 > end:
            raise PduError(Status.ESME_RINVCMDLEN, "body ends inside unsuccess_sme")
        ton, npi = buf[pos], buf[pos + 1]
        pos = _decode_cstring(buf, pos + 2, end, "a", 21, Status.ESME_RINVDSTADR, scratch, strict)
        if pos + 4 > end:
            raise PduError(Status.ESME_RINVCMDLEN, "body ends inside unsuccess_sme")
        (error,) = _LENGTH.unpack_from(buf, pos)
        pos += 4
        entries.append((ton, npi, scratch["a"], error))
    params[step.name] = tuple(entries)
    return pos


# --- stream framing ----------------------------------------------------------------------------


@attrs.frozen
class Garbled:
    """A frame that could be cut from the stream but not decoded. ``status`` is what to answer
    it with, ``peer_status`` the command_status the frame itself carried."""

    sequence: int
    command: int
    status: int
    reason: str
    peer_status: int = 0


class Oversize(Exception):
    """command_length below 16 or above the limit: the stream cannot be resynchronised, so the
    connection must close. ``parsed`` holds what the same feed decoded before the bad frame
    (responses among them may carry message ids that must not be lost)."""

    def __init__(self, length: int, limit: int, parsed: list[Pdu | Garbled]) -> None:
        super().__init__(f"command_length {length} outside {HEADER_LENGTH}..{limit}")
        self.length = length
        self.limit = limit
        self.parsed = parsed


class Parser:
    """Cuts a byte stream into PDUs. Requests are decoded strictly (the peer gets told what is
    wrong); responses leniently unless ``lenient_responses`` is False (see :func:`decode`).

    Chunks are only joined once a whole frame is there, so a 64 KiB PDU arriving in small TCP
    segments costs one copy, and frames are decoded in place from the joined buffer."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH, *, lenient_responses: bool = True):
        self.max_length = max_length
        self.lenient_responses = lenient_responses
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 4

    @property
    def buffered(self) -> int:
        """Octets received that do not make a whole PDU yet."""
        return self._have

    def feed(self, data: bytes) -> list[Pdu | Garbled]:
        """Every whole PDU now available, in order. Raises :class:`Oversize`."""
        if data:
            self._chunks.append(data if data.__class__ is bytes else bytes(data))
            self._have += len(data)
        if self._have < self._need:
            return []
        chunks = self._chunks
        buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        out: list[Pdu | Garbled] = []
        pos, size, need = 0, len(buf), 4
        lenient = self.lenient_responses
        while size - pos >= 4:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length < HEADER_LENGTH or length > self.max_length:
                self._chunks, self._have, self._need = [], 0, 4
                raise Oversize(length, self.max_length, out)
            if size - pos < length:
                need = length
                break
            end = pos + length
            try:
                strict = not (lenient and buf[pos + 4] & 0x80)
                out.append(_decode(buf, pos, end, strict))
            except PduError as e:
                assert e.command is not None and e.sequence is not None
                out.append(Garbled(e.sequence, e.command, e.status, e.reason, e.peer_status))
            pos = end
        rest = buf[pos:] if pos else buf
        self._chunks = [rest] if rest else []
        self._have = len(rest)
        self._need = need
        return out


# --- text ----------------------------------------------------------------------------------------

# SMPP 3.4 §5.2.19 data_coding 0x01..0x0E; missing values (JIS, pictogram, reserved) are "binary".
_SMPP_CODINGS = {
    0x01: "ascii",
    0x02: "binary",
    0x03: "latin1",
    0x04: "binary",
    0x06: "iso8859_5",
    0x07: "iso8859_8",
    0x08: "ucs2",
    0x0A: "iso2022_jp",
    0x0E: "euc_kr",
}
_DEFAULT_ALPHABETS = ("gsm7", "latin1", "ascii")


def coding_alphabet(data_coding: int, default_alphabet: str = "gsm7") -> str:
    """How to read the short_message of ``data_coding``: ``"gsm7"``, ``"ucs2"``,
    ``"binary"``, or a Python codec name (``"ascii"``, ``"latin1"``, ``"iso8859_5"`` ...).

    ==========  ============================================================================
    0x00        the SMSC default alphabet: ``default_alphabet`` (per link: gsm7/latin1/ascii)
    0x01        IA5 / ASCII
    0x02, 0x04  8-bit binary
    0x03        Latin-1 (ISO-8859-1)
    0x06, 0x07  ISO-8859-5 (Cyrillic), ISO-8859-8 (Latin/Hebrew)
    0x08        UCS-2 (UTF-16BE in practice, astral characters as surrogate pairs)
    0x0A, 0x0E  ISO-2022-JP, KS C 5601 (EUC-KR)
    0x10-0x7F   GSM 03.38 general data coding groups passed through: bits 3-2 choose
                GSM 7-bit / 8-bit / UCS-2; compressed (bit 5) counts as binary
    0xC0-0xDF   message waiting indication groups: GSM 7-bit
    0xE0-0xEF   message waiting indication, UCS-2
    0xF0-0xFF   data coding / message class group: bit 2 clear = GSM 7-bit, set = 8-bit
    others      binary (0x05 JIS, 0x09 pictogram, 0x0D JIS X 0212, reserved values)
    ==========  ============================================================================
    """
    if data_coding == 0:
        if default_alphabet not in _DEFAULT_ALPHABETS:
            raise ValueError(f"default_alphabet must be one of {_DEFAULT_ALPHABETS}")
        return default_alphabet
    if data_coding < 0x10:
        return _SMPP_CODINGS.get(data_coding, "binary")
    if data_coding >= 0xF0:
        return "binary" if data_coding & 0x04 else "gsm7"
    if data_coding < 0x80:
        if data_coding & 0x20:
            return "binary"
        return ("gsm7", "binary", "ucs2", "binary")[(data_coding >> 2) & 3]
    if 0xC0 <= data_coding < 0xE0:
        return "gsm7"
    if 0xE0 <= data_coding < 0xF0:
        return "ucs2"
    return "binary"


def encode_short_message(
    text: str, data_coding: int, *, gsm_unpacked: bool = True, default_alphabet: str = "gsm7"
) -> bytes:
    """``text`` as short_message octets for ``data_coding`` (see :func:`coding_alphabet`).

    GSM 7-bit is one septet per octet unless ``gsm_unpacked`` is False (packed 8 septets in 7
    octets, for the few SMSCs that want that). Raises ValueError when a character has no
    encoding, or when ``data_coding`` is binary (pass octets, not text)."""
    alphabet = coding_alphabet(data_coding, default_alphabet)
    if alphabet == "gsm7":
        septets = gsm0338.encode(text)
        if gsm_unpacked:
            return septets
        if len(septets) % 8 == 7:  # 23.038 §6.1.2.3.1: a free final septet is padded with CR
            septets += b"\r"
        return gsm0338.pack(septets)
    if alphabet == "ucs2":
        return gsm0338.ucs2_encode(text)
    if alphabet == "binary":
        raise ValueError(f"data_coding 0x{data_coding:02X} is binary: send octets, not text")
    return text.encode(alphabet)


_HIGH_OCTETS = re.compile(rb"([\x80-\xff]+)")


def decode_short_message(
    data: bytes, data_coding: int, *, default_alphabet: str = "gsm7", gsm_unpacked: bool = True
) -> str:
    """Text of short_message octets for ``data_coding`` (see :func:`coding_alphabet`).

    Never raises on the data: what does not decode becomes U+FFFD (an octet over 0x7F in
    unpacked GSM, a bad ASCII octet, a lone UTF-16 surrogate). Binary codings come back as
    Latin-1, one character per octet, so nothing is lost."""
    alphabet = coding_alphabet(data_coding, default_alphabet)
    if alphabet == "gsm7":
        if not gsm_unpacked:
            count = len(data) * 8 // 7
            septets = gsm0338.unpack(data, count)
            if count and count % 8 == 0 and septets[-1] == 0x0D:
                septets = septets[:-1]  # 23.038 §6.1.2.3.1: CR pads a final free septet
            return gsm0338.decode(septets)
        if data.isascii():
            return gsm0338.decode(data)
        pieces = _HIGH_OCTETS.split(data)  # odd items are runs of octets over 0x7F
        return "".join(
            "\ufffd" * len(p) if i % 2 else gsm0338.decode(p) for i, p in enumerate(pieces)
        )
    if alphabet == "ucs2":
        return gsm0338.ucs2_decode(data)
    if alphabet == "binary":
        return data.decode("latin-1")
    return data.decode(alphabet, "replace")


# --- delivery receipts ---------------------------------------------------------------------------


@attrs.frozen
class Receipt:
    """A delivery receipt, from the SMPP 3.4 Appendix B text and/or the receipt TLVs.

    Fields are the text's raw values (None where absent): ``stat`` upper-cased
    (``DELIVRD``...), ``err`` as given (``"000"``), dates naive datetimes as the SMSC wrote them
    (usually UTC). ``state`` and ``network_error_code`` are the TLVs message_state and
    network_error_code when present."""

    id: str | None = None
    stat: str | None = None
    err: str | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    sub: str | None = None
    dlvrd: str | None = None
    text: str | None = None
    state: int | None = None
    network_error_code: bytes | None = None


_RECEIPT_KEY = re.compile(
    r"(?<![A-Za-z_])(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err|text)\s*:\s*",
    re.IGNORECASE,
)


def _receipt_date(value: str) -> datetime | None:
    digits = "".join(ch for ch in value if ch.isdigit())
    try:
        if len(digits) == 10:
            return datetime.strptime(digits, "%y%m%d%H%M")
        if len(digits) == 12:
            return datetime.strptime(digits, "%y%m%d%H%M%S")
        if len(digits) == 14:
            return datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError:
        pass
    return None


def parse_receipt(text: str | bytes) -> Receipt | None:
    """The receipt in an Appendix B style text, or None when it has neither ``id:`` nor
    ``stat:``.

    ``id:ab12 sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 stat:DELIVRD
    err:000 text:Hello`` -- tolerant of key case, ``submit_date``/``submitdate`` spellings,
    spaces around the colon, missing fields, extra words after a value, and 10-, 12- or
    14-digit dates (YYMMDDhhmm, YYMMDDhhmmss, YYYYMMDDhhmmss). ``text:`` takes the rest of the
    line whatever it contains."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("latin-1")
    found: dict[str, str] = {}
    matches = list(_RECEIPT_KEY.finditer(text))
    for i, m in enumerate(matches):
        key = m.group(1).lower().replace(" ", "").replace("_", "")
        if key == "text":
            found.setdefault(key, text[m.end() :].strip())
            break
        stop = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[m.end() : stop].strip()
        if key not in ("submitdate", "donedate"):
            value = value.split(None, 1)[0] if value else ""
        found.setdefault(key, value)
    if "id" not in found and "stat" not in found:
        return None
    return Receipt(
        id=found.get("id"),
        stat=found["stat"].upper() if found.get("stat") else None,
        err=found.get("err") or None,
        submit_date=_receipt_date(found.get("submitdate", "")),
        done_date=_receipt_date(found.get("donedate", "")),
        sub=found.get("sub"),
        dlvrd=found.get("dlvrd"),
        text=found.get("text"),
    )


_RECEIPT_ESM_TYPES = 0x04 | 0x08 | 0x20  # SMSC receipt, SME delivery ack, intermediate notice


def _receipt_tlv_values(pdu: Pdu) -> tuple[str | None, int | None, bytes | None]:
    """receipted_message_id (as text), message_state and network_error_code, in one pass over
    the TLVs (the first of each tag counts, as with :meth:`Pdu.tlv`); None where missing."""
    raw_id = state = network_error = None
    for tag, value in pdu.tlvs:
        if tag == _RECEIPTED_MESSAGE_ID:
            if raw_id is None:
                raw_id = value
        elif tag == _MESSAGE_STATE:
            if state is None:
                state = int.from_bytes(value, "big")
        elif tag == _NETWORK_ERROR_CODE and network_error is None:
            network_error = value
    tlv_id = None if raw_id is None else _text_to_nul(raw_id)
    return tlv_id, state, network_error


_RECEIPTED_MESSAGE_ID = int(Tag.RECEIPTED_MESSAGE_ID)
_MESSAGE_STATE = int(Tag.MESSAGE_STATE)
_NETWORK_ERROR_CODE = int(Tag.NETWORK_ERROR_CODE)


def _marked_receipt(pdu: Pdu, tlv_id: str | None, state: int | None) -> bool:
    """esm_class says receipt, or (for SMSCs that leave esm_class 0) both receipt TLVs are
    there. receipted_message_id alone is not enough: Kannel's drive_smpp puts a dummy one on
    every MO."""
    if pdu.params.get("esm_class", 0) & _RECEIPT_ESM_TYPES:
        return True
    return tlv_id is not None and state is not None


def _receipt_tlvs(
    tlv_id: str | None, state: int | None, network_error: bytes | None
) -> tuple[str | None, str | None, str | None]:
    """(id, stat, err) as the receipt TLVs say them; None where a TLV is missing."""
    err = None
    if network_error is not None and len(network_error) >= 3:
        err = f"{int.from_bytes(network_error[1:3], 'big'):03d}"
    stat = MESSAGE_STATES.get(state) if state is not None else None
    return (tlv_id.strip() if tlv_id else None), stat, err


def _receipt_text(pdu: Pdu) -> bytes:
    return pdu.params.get("short_message") or pdu.tlv(Tag.MESSAGE_PAYLOAD) or b""


def receipt_from_pdu(pdu: Pdu, *, sniff: bool = False) -> Receipt | None:
    """The receipt a deliver_sm or data_sm carries, or None when it is an ordinary MO.

    It is a receipt when esm_class says so (0x04 SMSC receipt, 0x08 SME ack, 0x20 intermediate
    notification) or the receipted_message_id and message_state TLVs are there; with ``sniff``
    also when an esm_class 0 text parses as one (for SMSCs that do not mark receipts). The TLVs
    receipted_message_id, message_state (1..8 -> ENROUTE, DELIVRD, EXPIRED, DELETED, UNDELIV,
    ACCEPTD, UNKNOWN, REJECTD) and network_error_code win over the text; the text (from
    short_message, else message_payload) fills the rest. A PDU marked as a receipt always gives
    a Receipt, with ``id`` None if nothing said which message: never mistake one for an MO."""
    if pdu.command not in (Command.DELIVER_SM, Command.DATA_SM):
        return None
    tlv_id, state, network_error = _receipt_tlv_values(pdu)
    marked = _marked_receipt(pdu, tlv_id, state)
    parsed = parse_receipt(_receipt_text(pdu)) if (marked or sniff) else None
    if not marked and (parsed is None or parsed.id is None or parsed.stat is None):
        return None
    changes: dict[str, Any] = {"state": state, "network_error_code": network_error}
    values = _receipt_tlvs(tlv_id, state, network_error)
    for name, value in zip(("id", "stat", "err"), values, strict=True):
        if value is not None:  # the TLVs win over the text
            changes[name] = value
    return attrs.evolve(parsed or Receipt(), **changes)


_QUICK_FIELD = re.compile(rb"(?i)\b(id|stat|err):\s*([^\s]*)")
_QUICK_ERR = re.compile(rb"(?i)\berr:\s*([^\s]*)")  # the usual gap: id and stat came as TLVs


def receipt_essentials(pdu: Pdu) -> tuple[str | None, str | None, str | None] | None:
    """(id, stat, err) of a receipt, or None for an MO: what a gateway needs to
    match it, at a fraction of receipt_from_pdu's cost (no dates, no Receipt).

    Same rules as receipt_from_pdu (marked by esm_class or the receipt TLVs; TLVs win
    over the text), without ``sniff``.
    """
    tlv_id, state, network_error = _receipt_tlv_values(pdu)
    if not _marked_receipt(pdu, tlv_id, state):
        return None
    receipt_id, stat, err = _receipt_tlvs(tlv_id, state, network_error)
    if receipt_id is not None and stat is not None and err is None:
        m = _QUICK_ERR.search(_receipt_text(pdu))
        err = m.group(1).decode("latin-1") if m else None
    elif receipt_id is None or stat is None or err is None:
        for key, value in _QUICK_FIELD.findall(_receipt_text(pdu)):
            word = value.decode("latin-1")
            key = key.lower()
            if key == b"id" and receipt_id is None:
                receipt_id = word
            elif key == b"stat" and stat is None:
                stat = word.upper()
            elif key == b"err" and err is None:
                err = word
    return receipt_id, stat, err


# --- message ids ---------------------------------------------------------------------------------

_HEX_ID = re.compile(r"(?:0[xX])?([0-9A-Fa-f]+)")
_DEC_ID = re.compile(r"[0-9]+")


def normalise_id(raw: str, form: str) -> str:
    """A message id as a comparable key, so that the id in a submit_sm_resp and the one in its
    receipt meet even when the SMSC writes them differently.

    ``form`` says how this link writes ids:

    * ``"as-is"``: whitespace stripped, lower-cased (``" AbC-12 "`` -> ``"abc-12"``);
    * ``"hex"``: a hexadecimal number -> its canonical decimal (``"1A2B"`` -> ``"6699"``,
      ``"0x001a2b"`` -> ``"6699"``);
    * ``"dec"``: a decimal number -> without leading zeros (``"006699"`` -> ``"6699"``).

    So a link whose responses say ``1A2B`` (form hex) and whose receipts say ``6699`` (form
    dec) files both under ``6699``: Nexmo's behaviour. An id that is not a number of its form
    falls back to ``"as-is"``."""
    value = raw.strip()
    if form == "hex":
        m = _HEX_ID.fullmatch(value)
        if m:
            return str(int(m.group(1), 16))
    elif form == "dec":
        if _DEC_ID.fullmatch(value):
            return str(int(value))
    elif form != "as-is":
        raise ValueError(f"id form must be as-is, hex or dec; got {form!r}")
    return value.lower()


_BARE_BODIES: dict[tuple[int, int], bytes] = {}


def _bare_response(command: int, sequence: int, status: int) -> bytes:
    """``encode(make(command, sequence, status))``, its body made once per command and status
    (a deliver_sm_resp per receipt: 0.3 µs instead of 1.7)."""
    body = _BARE_BODIES.get((command, status))
    if body is None:
        body = encode(make(command, 0, status))[HEADER_LENGTH:]
        if len(_BARE_BODIES) < 256:  # the statuses a peer can provoke are few, but not bounded
            _BARE_BODIES[command, status] = body
    return _HEADER.pack(HEADER_LENGTH + len(body), command, status, sequence) + body


# --- the ESME session ----------------------------------------------------------------------------


class State(enum.Enum):
    OPEN = "open"  # connected, not bound
    BINDING = "binding"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"


class SessionError(Exception):
    """Our own misuse of the session (submit before bind, answering twice...)."""


@attrs.frozen
class Bound:
    """The SMSC accepted the bind."""

    mode: str
    system_id: str
    interface_version: int | None = None  # sc_interface_version TLV, if sent


@attrs.frozen
class BindRefused:
    """The SMSC refused the bind (bind_*_resp or generic_nack with this status)."""

    status: int


@attrs.frozen
class SubmitResult:
    """The answer to a submit_sm (or data_sm): ``message_id`` is None when the response had no
    body. ``pdu`` is the response itself (TLVs, e.g. data_sm_resp's delivery_failure_reason);
    None when the response was garbled."""

    ref: Any
    sequence: int
    status: int
    message_id: str | None
    pdu: Pdu | None = None


@attrs.frozen
class QueryResult:
    """The answer to a query_sm (fields None when the response had no body)."""

    ref: Any
    sequence: int
    status: int
    message_id: str | None
    final_date: str | None
    message_state: int | None
    error_code: int | None


@attrs.frozen
class Response:
    """The answer to a request sent with :meth:`EsmeSession.request` (cancel_sm...)."""

    ref: Any
    sequence: int
    pdu: Pdu


@attrs.frozen
class DeliverSm:
    """An MO or a receipt. Not answered: call :meth:`EsmeSession.respond` once it is safe."""

    sequence: int
    pdu: Pdu


@attrs.frozen
class DataSm:
    """As DeliverSm, for data_sm."""

    sequence: int
    pdu: Pdu


@attrs.frozen
class Outbind:
    """The SMSC asks us to bind (as a receiver); nothing is answered."""

    system_id: str
    password: str = ""


@attrs.frozen
class AlertNotification:
    """A handset became available (no response exists in SMPP)."""

    pdu: Pdu


@attrs.frozen
class Unbound:
    """The peer unbound us; the session answered unbind_resp and is CLOSED."""


@attrs.frozen
class UnbindComplete:
    """The peer answered our unbind; the session is CLOSED."""


@attrs.frozen
class GenericNack:
    """A request we sent was answered with generic_nack: ``ref`` is the request's."""

    sequence: int
    status: int
    ref: Any


@attrs.frozen
class PeerError:
    """The peer sent something malformed or out of place; the session answered what SMPP asks
    (generic_nack, an error response) and goes on."""

    reason: str


@attrs.frozen
class ProtocolFailure:
    """The connection must be closed (bad command_length, a bind answered wrongly...). The
    session ignores further input; outstanding requests stay for :meth:`EsmeSession.expired`."""

    reason: str


@attrs.frozen
class Stray:
    """A response to no request we have outstanding (late after expiry, or the peer's mistake)."""

    pdu: Pdu


Event = (
    Bound
    | BindRefused
    | SubmitResult
    | QueryResult
    | Response
    | DeliverSm
    | DataSm
    | Outbind
    | AlertNotification
    | Unbound
    | UnbindComplete
    | GenericNack
    | PeerError
    | ProtocolFailure
    | Stray
)

_BINDS = {
    "transmitter": (Command.BIND_TRANSMITTER, State.BOUND_TX),
    "receiver": (Command.BIND_RECEIVER, State.BOUND_RX),
    "transceiver": (Command.BIND_TRANSCEIVER, State.BOUND_TRX),
}
_BIND_COMMANDS = frozenset(c for c, _ in _BINDS.values())
_TRANSMITTING = frozenset({State.BOUND_TX, State.BOUND_TRX})
_BOUND = frozenset({State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX})
_RECEIVING_MODES = frozenset({"receiver", "transceiver"})
_ANSWERED_BY_CALLER = {Command.DELIVER_SM: DeliverSm, Command.DATA_SM: DataSm}


class EsmeSession:
    """The ESME side of one SMPP connection, h11 style: no sockets, no timers. Feed it what the
    socket read (:meth:`receive`) with the time, write what :meth:`data_to_send` returns, and
    call :meth:`expired` and :meth:`needs_enquire_link` from a timer.

    It answers by itself: enquire_link (enquire_link_resp), unbind (unbind_resp, then CLOSED),
    garbled requests (generic_nack with the frame's status and sequence), and requests an ESME
    never serves or cannot take in its bind state (the matching response with
    ESME_RINVBNDSTS). It leaves to the caller: answering deliver_sm and data_sm
    (:meth:`respond`, once what they carry is committed), enquire_link timing, response
    timeouts, reconnecting. Garbled *responses* are never nacked (the peer's own numbering would
    take the nack for one of its requests): their request is settled from the header's status.
    """

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH, first_sequence: int = 1) -> None:
        if not 1 <= first_sequence <= MAX_SEQUENCE:
            raise ValueError(f"first_sequence must be in 1..0x7FFFFFFF, not {first_sequence}")
        self.state = State.OPEN
        self.mode: str | None = None
        self.idle_since: float | None = None
        """When anything was last sent or received (None before the first activity)."""
        self.last_sequence = first_sequence - 1 if first_sequence > 1 else MAX_SEQUENCE
        """The last sequence number used; the next request takes the next free one."""
        self._parser = Parser(max_length)
        self._out: list[bytes] = []
        self._pending: dict[int, tuple[int, Any, float]] = {}  # seq -> (command, ref, sent at)
        self._peer_pending: dict[int, int] = {}  # peer seq -> command, waiting for respond()
        self._failed = False

    # What the caller asks ----------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Requests sent and not yet answered (the caller's window)."""
        return len(self._pending)

    def data_to_send(self) -> bytes:
        """Everything queued for the socket, once."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def bind(
        self,
        mode: str,
        system_id: str,
        password: str,
        system_type: str = "",
        addr_ton: int = 0,
        addr_npi: int = 0,
        address_range: str = "",
        *,
        now: float,
    ) -> int:
        """Send bind_transmitter/receiver/transceiver; a :class:`Bound` or
        :class:`BindRefused` event follows. Returns the sequence number."""
        if mode not in _BINDS:
            raise SessionError(f"bind mode must be transmitter, receiver or transceiver: {mode!r}")
        if self.state is not State.OPEN:
            raise SessionError(f"cannot bind in state {self.state.name}")
        command = _BINDS[mode][0]
        params = {
            "system_id": system_id,
            "password": password,
            "system_type": system_type,
            "addr_ton": addr_ton,
            "addr_npi": addr_npi,
            "address_range": address_range,
        }
        sequence = self._send(command, params, (), None, now)
        self.state = State.BINDING
        self.mode = mode
        return sequence

    def submit(
        self,
        params: dict[str, Any],
        tlvs: Iterable[tuple[int, int | str | bytes]] = (),
        *,
        now: float,
        ref: Any = None,
    ) -> int:
        """Send a submit_sm (``params``: its fields by name, the rest default); the
        :class:`SubmitResult` (or :class:`GenericNack`) that follows carries ``ref``. Returns
        the sequence number. SessionError unless bound as transmitter or transceiver;
        ValueError from :func:`encode` for bad fields."""
        self._require_transmitting("submit_sm")
        return self._send(Command.SUBMIT_SM, params, tlvs, ref, now)

    def data(
        self,
        params: dict[str, Any],
        tlvs: Iterable[tuple[int, int | str | bytes]] = (),
        *,
        now: float,
        ref: Any = None,
    ) -> int:
        """As :meth:`submit`, with data_sm (answered by a :class:`SubmitResult` too)."""
        self._require_transmitting("data_sm")
        return self._send(Command.DATA_SM, params, tlvs, ref, now)

    def query(
        self,
        message_id: str,
        source_addr: str = "",
        source_addr_ton: int = 0,
        source_addr_npi: int = 0,
        *,
        now: float,
        ref: Any = None,
    ) -> int:
        """Send a query_sm; a :class:`QueryResult` follows."""
        self._require_transmitting("query_sm")
        params = dict(
            message_id=message_id,
            source_addr=source_addr,
            source_addr_ton=source_addr_ton,
            source_addr_npi=source_addr_npi,
        )
        return self._send(Command.QUERY_SM, params, (), ref, now)

    def request(
        self,
        command: int,
        params: dict[str, Any],
        tlvs: Iterable[tuple[int, int | str | bytes]] = (),
        *,
        now: float,
        ref: Any = None,
    ) -> int:
        """Send cancel_sm, replace_sm or submit_multi; a :class:`Response` follows."""
        if command not in (Command.CANCEL_SM, Command.REPLACE_SM, Command.SUBMIT_MULTI):
            raise SessionError(
                f"request() sends cancel_sm, replace_sm, submit_multi; not {_command_name(command)}"
            )
        self._require_transmitting(_command_name(command))
        return self._send(command, params, tlvs, ref, now)

    def enquire_link(self, now: float) -> int:
        """Send an enquire_link (its response only refreshes :attr:`idle_since`)."""
        if self.state is State.CLOSED:
            raise SessionError("the session is closed")
        return self._send(Command.ENQUIRE_LINK, {}, (), None, now)

    def unbind(self, now: float) -> int:
        """Send unbind; :class:`UnbindComplete` follows. Deliveries may still arrive until then."""
        if self.state not in _BOUND:
            raise SessionError(f"cannot unbind in state {self.state.name}")
        sequence = self._send(Command.UNBIND, {}, (), None, now)
        self.state = State.UNBINDING
        return sequence

    def respond(
        self,
        sequence: int,
        command: int,
        status: int = 0,
        *,
        now: float | None = None,
        tlvs: Iterable[tuple[int, int | str | bytes]] = (),
        **params: Any,
    ) -> bool:
        """Answer the peer's deliver_sm or data_sm ``sequence`` (``command`` may name the
        request or its response). Returns False, sending nothing, when the session is already
        closed (the SMSC will deliver again). SessionError for a sequence not waiting for an
        answer: answering twice or inventing one is a bug."""
        command = response_for(command)
        waiting = self._peer_pending.get(sequence)
        if waiting is None or response_for(waiting) != command:
            raise SessionError(
                f"no {_command_name(command & ~RESPONSE)} {sequence} is waiting for an answer"
            )
        del self._peer_pending[sequence]
        if self.state is State.CLOSED:
            return False
        if params or tlvs:
            self._out.append(encode(make(command, sequence, status, tlvs, **params)))
        else:
            self._out.append(_bare_response(command, sequence, status))
        if now is not None:
            self.idle_since = now
        return True

    def expired(self, now: float, timeout: float) -> list[tuple[int, int, Any]]:
        """Requests unanswered for ``timeout`` seconds or more, as (sequence, command, ref),
        now forgotten: a late response becomes a :class:`Stray`. ``expired(inf, 0)`` collects
        everything outstanding when the connection is lost."""
        gone = [seq for seq, (_, _, sent) in self._pending.items() if now - sent >= timeout]
        return [(seq, *self._pending.pop(seq)[:2]) for seq in gone]

    def needs_enquire_link(self, now: float, interval: float) -> bool:
        """True when nothing was sent or received for ``interval`` seconds and no
        enquire_link is already waiting."""
        if self.idle_since is None or self.state is State.CLOSED:
            return False
        if any(command == Command.ENQUIRE_LINK for command, _, _ in self._pending.values()):
            return False
        return now - self.idle_since >= interval

    # What the peer sends -----------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Events for ``data`` read from the socket. Never raises on anything the peer sends."""
        if self._failed:
            return []
        if data:
            self.idle_since = now
        try:
            items = self._parser.feed(data)
        except Oversize as e:
            events = self._handle(e.parsed)
            if not self._failed:
                events.append(self._fail(str(e)))
            return events
        return self._handle(items)

    def _handle(self, items: list[Pdu | Garbled]) -> list[Event]:
        events: list[Event] = []
        for item in items:
            if isinstance(item, Garbled):
                self._on_garbled(item, events)
            elif item.command & RESPONSE:
                self._on_response(item, events)
            else:
                self._on_request(item, events)
            if self._failed:
                break
        return events

    def _on_response(self, pdu: Pdu, events: list[Event]) -> None:
        sequence = pdu.sequence
        request = self._pending.get(sequence)
        if request is None:
            events.append(Stray(pdu))
            return
        command, ref, _ = request
        if pdu.command == Command.GENERIC_NACK:
            del self._pending[sequence]
            if command in _BIND_COMMANDS:
                self.state = State.OPEN
                events.append(BindRefused(pdu.status or Status.ESME_RBINDFAIL))
            else:
                events.append(GenericNack(sequence, pdu.status, ref))
            return
        if pdu.command != command | RESPONSE:
            if command in _BIND_COMMANDS:
                del self._pending[sequence]
                events.append(self._fail(f"{pdu.name} in answer to {_command_name(command)}"))
            else:
                events.append(Stray(pdu))
            return
        del self._pending[sequence]
        p = pdu.params
        if command in _BIND_COMMANDS:
            self._bind_answered(pdu.status, p.get("system_id", ""), pdu, events)
        elif command in (Command.SUBMIT_SM, Command.DATA_SM):
            events.append(SubmitResult(ref, sequence, pdu.status, p.get("message_id"), pdu))
        elif command == Command.QUERY_SM:
            events.append(
                QueryResult(
                    ref,
                    sequence,
                    pdu.status,
                    p.get("message_id"),
                    p.get("final_date"),
                    p.get("message_state"),
                    p.get("error_code"),
                )
            )
        elif command == Command.UNBIND:
            self.state = State.CLOSED
            events.append(UnbindComplete())
        elif command != Command.ENQUIRE_LINK:
            events.append(Response(ref, sequence, pdu))

    def _bind_answered(
        self, status: int, system_id: str, pdu: Pdu | None, events: list[Event]
    ) -> None:
        if status:
            self.state = State.OPEN
            events.append(BindRefused(status))
            return
        assert self.mode is not None
        self.state = _BINDS[self.mode][1]
        version = pdu.tlv_int(Tag.SC_INTERFACE_VERSION) if pdu is not None else None
        events.append(Bound(self.mode, system_id, version))

    def _on_request(self, pdu: Pdu, events: list[Event]) -> None:
        command, sequence = pdu.command, pdu.sequence
        if command == Command.ENQUIRE_LINK:
            if self.state is not State.CLOSED:
                self._answer(Command.ENQUIRE_LINK_RESP, sequence)
        elif command in _ANSWERED_BY_CALLER:
            receiving = self.mode in _RECEIVING_MODES and (
                self.state in _BOUND or self.state is State.UNBINDING
            )
            if receiving:
                self._peer_pending[sequence] = command
                events.append(_ANSWERED_BY_CALLER[command](sequence, pdu))
            else:
                self._answer(response_for(command), sequence, Status.ESME_RINVBNDSTS)
                events.append(
                    PeerError(
                        f"{pdu.name} {sequence} in state {self.state.name}: "
                        "answered ESME_RINVBNDSTS"
                    )
                )
        elif command == Command.UNBIND:
            self._answer(Command.UNBIND_RESP, sequence)
            self.state = State.CLOSED
            events.append(Unbound())
        elif command == Command.ALERT_NOTIFICATION:
            events.append(AlertNotification(pdu))
        elif command == Command.OUTBIND:
            events.append(Outbind(pdu.params.get("system_id", ""), pdu.params.get("password", "")))
        else:  # a request only an SMSC serves
            self._answer(response_for(command), sequence, Status.ESME_RINVBNDSTS)
            events.append(
                PeerError(f"{pdu.name} {sequence} from the SMSC: answered ESME_RINVBNDSTS")
            )

    def _on_garbled(self, g: Garbled, events: list[Event]) -> None:
        events.append(PeerError(g.reason))
        if not g.command & RESPONSE:
            self._answer(Command.GENERIC_NACK, g.sequence, g.status)
            return
        if g.command == Command.GENERIC_NACK:  # junk after a nack: the header says it all
            self._on_response(Pdu(Command.GENERIC_NACK, g.peer_status, g.sequence), events)
            return
        request = self._pending.get(g.sequence)
        if request is None:
            return
        command, ref, _ = request
        if g.command != command | RESPONSE:
            return
        del self._pending[g.sequence]
        if command in _BIND_COMMANDS:
            self._bind_answered(g.peer_status, "", None, events)
        elif command in (Command.SUBMIT_SM, Command.DATA_SM):
            events.append(SubmitResult(ref, g.sequence, g.peer_status, None, None))
        elif command == Command.QUERY_SM:
            events.append(QueryResult(ref, g.sequence, g.peer_status, None, None, None, None))
        elif command == Command.UNBIND:
            self.state = State.CLOSED
            events.append(UnbindComplete())

    # Plumbing ----------------------------------------------------------------------------

    def _require_transmitting(self, what: str) -> None:
        if self.state not in _TRANSMITTING:
            raise SessionError(f"cannot send {what} in state {self.state.name}")

    def _next_sequence(self) -> int:
        sequence = self.last_sequence
        pending = self._pending
        for _ in range(len(pending) + 1):
            sequence = sequence + 1 if sequence < MAX_SEQUENCE else 1
            if sequence not in pending:
                self.last_sequence = sequence
                return sequence
        raise SessionError("no free sequence number")  # pragma: no cover - 2**31 outstanding

    def _send(
        self,
        command: int,
        params: dict[str, Any],
        tlvs: Iterable[tuple[int, int | str | bytes]],
        ref: Any,
        now: float,
    ) -> int:
        sequence = self._next_sequence()
        wire_tlvs = tuple(
            (tag, value if value.__class__ is bytes else tlv_value(tag, value))  # type: ignore[arg-type]
            for tag, value in tlvs
        )
        pdu = Pdu(command, 0, sequence, params, wire_tlvs)  # type: ignore[arg-type]
        self._out.append(encode(pdu))  # before registering: a ValueError leaves no trace
        self._pending[sequence] = (command, ref, now)
        self.idle_since = now
        return sequence

    def _answer(self, command: int, sequence: int, status: int = 0) -> None:
        self._out.append(_bare_response(command, sequence, status))

    def _fail(self, reason: str) -> ProtocolFailure:
        self._failed = True
        self.state = State.CLOSED
        return ProtocolFailure(reason)
