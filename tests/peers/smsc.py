"""An SMSC simulator for tests: the server side of SMPP 3.4 on Twisted, in-process.

It is deliberately an *independent* implementation: every PDU is packed and
unpacked here with :mod:`struct`, never with ``protocols/smpp.py``, so that a
bug in smsd's codec cannot hide behind the same bug in its test peer. Decoding
is strict (C-string lengths, time formats, ``sm_length``, TLV framing and
sizes, UDH) and a malformed request gets the matching error status.

Typical use in a trial test::

    smsc = SmscFactory(accounts={"esme": "secret"}, id_format="hex")
    port = smsc.listen()                  # 127.0.0.1, random port
    self.addCleanup(smsc.stop)
    ...
    yield smsc.wait_for(lambda: smsc.accepted, what="a submit_sm")
    status = yield smsc.deliver_mo("esme", "+15551230001", "1234", "hello")

Faults are plain attributes or methods, switchable at any time (``submit_delay``,
``throttle_rate``, ``fail_next``, ``queue_full``, ``status_for_prefix``,
``receipt_before_response``, ``drop_after``, ``hang``) and garbage can be sent
to the client (``send_unknown_command``, ``send_bad_length``, ``send_noise``).
Everything the simulator sees or sends is recorded (``sessions``, ``submits``,
``deliveries``, ``responses_sent``, ``nacks_received``, ...).

Standalone, for manual checks: ``python -m tests.peers.smsc --port 2775 --receipts``.
"""

from __future__ import annotations

import argparse
import collections
import random
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from tests.peers.timers import Timers

# --- Command ids (SMPP 3.4 §5.1.2) -------------------------------------------------------------

RESP = 0x80000000
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
QUERY_SM = 0x00000003
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
REPLACE_SM = 0x00000007
CANCEL_SM = 0x00000008
BIND_TRANSCEIVER = 0x00000009
OUTBIND = 0x0000000B
ENQUIRE_LINK = 0x00000015
SUBMIT_MULTI = 0x00000021
ALERT_NOTIFICATION = 0x00000102
DATA_SM = 0x00000103

COMMAND_NAMES = {
    BIND_RECEIVER: "bind_receiver",
    BIND_TRANSMITTER: "bind_transmitter",
    QUERY_SM: "query_sm",
    SUBMIT_SM: "submit_sm",
    DELIVER_SM: "deliver_sm",
    UNBIND: "unbind",
    REPLACE_SM: "replace_sm",
    CANCEL_SM: "cancel_sm",
    BIND_TRANSCEIVER: "bind_transceiver",
    OUTBIND: "outbind",
    ENQUIRE_LINK: "enquire_link",
    SUBMIT_MULTI: "submit_multi",
    ALERT_NOTIFICATION: "alert_notification",
    DATA_SM: "data_sm",
}
BIND_MODES = {
    BIND_RECEIVER: "receiver",
    BIND_TRANSMITTER: "transmitter",
    BIND_TRANSCEIVER: "transceiver",
}


def command_name(command_id: int) -> str:
    """``submit_sm``, ``submit_sm_resp``, ``generic_nack`` or ``unknown_0x...``."""
    if command_id == GENERIC_NACK:
        return "generic_nack"
    base = COMMAND_NAMES.get(command_id & ~RESP)
    if base is None:
        return f"unknown_0x{command_id:08X}"
    return base + "_resp" if command_id & RESP else base


# --- command_status values (§5.1.3) ------------------------------------------------------------

ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RINVSERTYP = 0x15
ESME_RINVESMCLASS = 0x43
ESME_RTHROTTLED = 0x58
ESME_RINVSCHED = 0x61
ESME_RINVEXPIRY = 0x62
ESME_RX_T_APPN = 0x64
ESME_RX_P_APPN = 0x65
ESME_RINVOPTPARSTREAM = 0xC0
ESME_RINVPARLEN = 0xC2

# --- TLV tags (§5.3.2) -------------------------------------------------------------------------

TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_USER_MESSAGE_REFERENCE = 0x0204
TAG_SOURCE_PORT = 0x020A
TAG_DESTINATION_PORT = 0x020B
TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F
TAG_SC_INTERFACE_VERSION = 0x0210
TAG_NETWORK_ERROR_CODE = 0x0423
TAG_MESSAGE_PAYLOAD = 0x0424
TAG_MORE_MESSAGES_TO_SEND = 0x0426
TAG_MESSAGE_STATE = 0x0427

TLV_SIZES = {  # fixed-size TLVs: a different length is ESME_RINVPARLEN
    TAG_USER_MESSAGE_REFERENCE: 2,
    TAG_SOURCE_PORT: 2,
    TAG_DESTINATION_PORT: 2,
    TAG_SAR_MSG_REF_NUM: 2,
    TAG_SAR_TOTAL_SEGMENTS: 1,
    TAG_SAR_SEGMENT_SEQNUM: 1,
    TAG_SC_INTERFACE_VERSION: 1,
    TAG_NETWORK_ERROR_CODE: 3,
    TAG_MORE_MESSAGES_TO_SEND: 1,
    TAG_MESSAGE_STATE: 1,
}

MESSAGE_STATES = {  # receipt ``stat:`` word -> message_state TLV value
    "ENROUTE": 1,
    "DELIVRD": 2,
    "EXPIRED": 3,
    "DELETED": 4,
    "UNDELIV": 5,
    "ACCEPTD": 6,
    "UNKNOWN": 7,
    "REJECTD": 8,
}

ESM_RECEIPT = 0x04
ESM_UDHI = 0x40

HEADER = struct.Struct(">IIII")
MAX_PDU = 16 + 1024 + 65535  # the largest sane PDU: mandatory part plus a full message_payload
NETWORK_TYPE_GSM = 3


# --- The codec ---------------------------------------------------------------------------------


class DecodeError(Exception):
    """A malformed request; ``status`` is what the SMSC answers."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Reader:
    """Consumes a PDU body field by field."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u8(self, what: str) -> int:
        if self.pos + 1 > len(self.data):
            raise DecodeError(ESME_RINVCMDLEN, f"{what}: body ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def octets(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError(ESME_RINVMSGLEN, f"{what}: {n} octets announced, body ends early")
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return value

    def cstring(self, what: str, max_len: int, status: int) -> str:
        """A C-Octet String; ``max_len`` counts the NUL, as in the specification."""
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise DecodeError(status, f"{what}: no NUL terminator")
        value = self.data[self.pos : end]
        if len(value) + 1 > max_len:
            raise DecodeError(status, f"{what}: {len(value) + 1} octets, at most {max_len}")
        self.pos = end + 1
        return value.decode("latin-1")

    def time(self, what: str, status: int) -> str:
        """schedule_delivery_time / validity_period: empty or exactly 16 characters."""
        value = self.cstring(what, 17, status)
        if value and len(value) != 16:
            raise DecodeError(status, f"{what}: {value!r} is neither empty nor 16 characters")
        return value

    def rest(self) -> bytes:
        value = self.data[self.pos :]
        self.pos = len(self.data)
        return value


def cstring(value: str | bytes) -> bytes:
    """Encode a C-Octet String."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    if b"\0" in raw:
        raise ValueError(f"NUL inside a C-Octet String: {raw!r}")
    return raw + b"\0"


def parse_tlvs(data: bytes) -> dict[int, bytes]:
    """Optional parameters; strict about framing, duplicates and fixed sizes."""
    tlvs: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise DecodeError(ESME_RINVOPTPARSTREAM, f"{len(data) - pos} stray octets after TLVs")
        tag, length = struct.unpack_from(">HH", data, pos)
        pos += 4
        if pos + length > len(data):
            raise DecodeError(
                ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04X}: length {length} overruns the PDU"
            )
        if tag in tlvs:
            raise DecodeError(ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04X} twice")
        expected = TLV_SIZES.get(tag)
        if expected is not None and length != expected:
            raise DecodeError(
                ESME_RINVPARLEN, f"TLV 0x{tag:04X}: length {length}, must be {expected}"
            )
        tlvs[tag] = data[pos : pos + length]
        pos += length
    return tlvs


def encode_tlvs(tlvs: dict[int, bytes] | Iterable[tuple[int, bytes]]) -> bytes:
    items = tlvs.items() if isinstance(tlvs, dict) else tlvs
    return b"".join(struct.pack(">HH", tag, len(value)) + value for tag, value in items)


def pack_pdu(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    """Header plus body."""
    return HEADER.pack(16 + len(body), command_id, status, sequence) + body


def split_udh(payload: bytes) -> tuple[bytes, bytes]:
    """(UDH including its length octet, the rest) of a message with UDHI set."""
    if not payload:
        raise DecodeError(ESME_RINVESMCLASS, "UDHI set on an empty message")
    end = 1 + payload[0]
    if end > len(payload):
        raise DecodeError(ESME_RINVESMCLASS, f"UDH length {payload[0]} exceeds the message")
    return payload[:end], payload[end:]


def udh_concat(udh: bytes) -> tuple[int, int, int] | None:
    """(reference, total, seqnum) from a concatenation IE (8-bit 0x00 or 16-bit 0x08)."""
    pos = 1
    while pos + 2 <= len(udh):
        iei, length = udh[pos], udh[pos + 1]
        value = udh[pos + 2 : pos + 2 + length]
        if iei == 0x00 and length == 3:
            return value[0], value[1], value[2]
        if iei == 0x08 and length == 4:
            return (value[0] << 8) | value[1], value[2], value[3]
        pos += 2 + length
    return None


def concat_udh(ref: int, total: int, seqnum: int) -> bytes:
    """A concatenation UDH: 8-bit reference when it fits, else 16-bit."""
    if ref <= 0xFF:
        return bytes([5, 0x00, 3, ref, total, seqnum])
    return bytes([6, 0x08, 4, ref >> 8, ref & 0xFF, total, seqnum])


@dataclass(eq=False)
class SmFields:
    """The decoded body of a submit_sm, deliver_sm or data_sm (text fields as latin-1 str)."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def message_payload(self) -> bytes | None:
        return self.tlvs.get(TAG_MESSAGE_PAYLOAD)

    @property
    def payload(self) -> bytes:
        """What carries the message: message_payload if present, else short_message."""
        payload = self.message_payload
        return self.short_message if payload is None else payload

    @property
    def udh(self) -> bytes | None:
        """The UDH (with its length octet) when esm_class has UDHI."""
        return split_udh(self.payload)[0] if self.esm_class & ESM_UDHI else None

    @property
    def text(self) -> bytes:
        """The user data without UDH, still encoded as data_coding says."""
        return split_udh(self.payload)[1] if self.esm_class & ESM_UDHI else self.payload

    @property
    def concat(self) -> tuple[int, int, int] | None:
        """(ref, total, seqnum) from the UDH."""
        udh = self.udh
        return udh_concat(udh) if udh else None

    @property
    def sar(self) -> tuple[int, int, int] | None:
        """(sar_msg_ref_num, sar_total_segments, sar_segment_seqnum) when all three are there."""
        try:
            ref = struct.unpack(">H", self.tlvs[TAG_SAR_MSG_REF_NUM])[0]
            return ref, self.tlvs[TAG_SAR_TOTAL_SEGMENTS][0], self.tlvs[TAG_SAR_SEGMENT_SEQNUM][0]
        except KeyError:
            return None


SM_FIELD_NAMES = [f for f in SmFields.__dataclass_fields__ if f != "tlvs"]


def decode_sm(command_id: int, body: bytes) -> SmFields:
    """Decode a submit_sm, deliver_sm or data_sm body (mandatory fields and TLVs)."""
    r = _Reader(body)
    sm = SmFields()
    sm.service_type = r.cstring("service_type", 6, ESME_RINVSERTYP)
    addr_len = 65 if command_id == DATA_SM else 21
    sm.source_addr_ton = r.u8("source_addr_ton")
    sm.source_addr_npi = r.u8("source_addr_npi")
    sm.source_addr = r.cstring("source_addr", addr_len, ESME_RINVSRCADR)
    sm.dest_addr_ton = r.u8("dest_addr_ton")
    sm.dest_addr_npi = r.u8("dest_addr_npi")
    sm.destination_addr = r.cstring("destination_addr", addr_len, ESME_RINVDSTADR)
    sm.esm_class = r.u8("esm_class")
    if command_id == DATA_SM:
        sm.registered_delivery = r.u8("registered_delivery")
        sm.data_coding = r.u8("data_coding")
    else:
        sm.protocol_id = r.u8("protocol_id")
        sm.priority_flag = r.u8("priority_flag")
        sm.schedule_delivery_time = r.time("schedule_delivery_time", ESME_RINVSCHED)
        sm.validity_period = r.time("validity_period", ESME_RINVEXPIRY)
        sm.registered_delivery = r.u8("registered_delivery")
        sm.replace_if_present_flag = r.u8("replace_if_present_flag")
        sm.data_coding = r.u8("data_coding")
        sm.sm_default_msg_id = r.u8("sm_default_msg_id")
        sm_length = r.u8("sm_length")
        if sm_length > 254:
            raise DecodeError(ESME_RINVMSGLEN, f"sm_length {sm_length} > 254")
        sm.short_message = r.octets(sm_length, "short_message")
    sm.tlvs = parse_tlvs(r.rest())
    if sm.short_message and TAG_MESSAGE_PAYLOAD in sm.tlvs:
        raise DecodeError(ESME_RINVMSGLEN, "both short_message and message_payload")
    if sm.esm_class & ESM_UDHI:
        split_udh(sm.payload)  # raises on a bad UDH
    return sm


def encode_sm(sm: SmFields, command_id: int = DELIVER_SM) -> bytes:
    """Encode a submit_sm / deliver_sm (or data_sm) body."""
    if len(sm.short_message) > 254:
        raise ValueError(f"short_message of {len(sm.short_message)} octets (at most 254)")
    head = (
        cstring(sm.service_type)
        + struct.pack(">BB", sm.source_addr_ton, sm.source_addr_npi)
        + cstring(sm.source_addr)
        + struct.pack(">BB", sm.dest_addr_ton, sm.dest_addr_npi)
        + cstring(sm.destination_addr)
    )
    if command_id == DATA_SM:
        body = head + struct.pack(">BBB", sm.esm_class, sm.registered_delivery, sm.data_coding)
    else:
        body = (
            head
            + struct.pack(">BB", sm.esm_class, sm.protocol_id)
            + struct.pack(">B", sm.priority_flag)
            + cstring(sm.schedule_delivery_time)
            + cstring(sm.validity_period)
            + struct.pack(
                ">BBBBB",
                sm.registered_delivery,
                sm.replace_if_present_flag,
                sm.data_coding,
                sm.sm_default_msg_id,
                len(sm.short_message),
            )
            + sm.short_message
        )
    return body + encode_tlvs(sm.tlvs)


def encode_text(message: str | bytes, data_coding: int) -> bytes:
    """Text to octets for a data_coding (bytes pass through untouched).

    0 is the GSM default alphabet unpacked, one septet per octet (via the PyPI
    ``gsm0338`` codec, not smsd's), 1 ASCII, 3 Latin-1, 8 UCS-2 (UTF-16BE).
    """
    if isinstance(message, bytes):
        return message
    if data_coding == 0:
        import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

        return message.encode("gsm03.38")
    codecs = {1: "ascii", 3: "latin-1", 8: "utf-16-be"}
    if data_coding not in codecs:
        raise ValueError(f"pass bytes for data_coding {data_coding}")
    return message.encode(codecs[data_coding])


def split_message(message: str | bytes, data_coding: int, parts: int) -> list[bytes]:
    """Cut a message into ``parts`` nearly equal pieces, each encoded on its own.

    Text is cut on code points (never inside a GSM escape or a UTF-16 pair);
    bytes are cut on octets, on even boundaries for UCS-2.
    """
    if parts < 1:
        raise ValueError("parts must be >= 1")
    if isinstance(message, str):
        step = -(-len(message) // parts)
        pieces = [message[i * step : (i + 1) * step] for i in range(parts)]
        return [encode_text(p, data_coding) for p in pieces]
    unit = 2 if data_coding == 8 else 1
    units = len(message) // unit
    step = -(-units // parts) * unit
    return [message[i * step : (i + 1) * step] for i in range(parts)]


def receipt_text(
    receipt_id: str,
    stat: str,
    err: str,
    submitted: float,
    done: float,
    text: bytes,
) -> bytes:
    """SMPP 3.4 Appendix B delivery receipt text (dates YYMMDDhhmm, local time)."""

    def date(t: float) -> str:
        return time.strftime("%y%m%d%H%M", time.localtime(t))

    dlvrd = 1 if stat == "DELIVRD" else 0
    head = (
        f"id:{receipt_id} sub:001 dlvrd:{dlvrd:03d} submit date:{date(submitted)} "
        f"done date:{date(done)} stat:{stat} err:{err} text:"
    )
    return head.encode("ascii") + text[:20]


# --- Records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pdu:
    """One PDU as it went over the wire."""

    command_id: int
    status: int
    sequence: int
    body: bytes = b""
    system_id: str | None = None  # of the bind it came on or went to, if bound

    @property
    def name(self) -> str:
        return command_name(self.command_id)


@dataclass(eq=False)
class Session:
    """One bind request (accepted or not) and the connection it came on."""

    mode: str  # "transmitter", "receiver" or "transceiver"
    system_id: str
    password: str
    system_type: str
    interface_version: int
    addr_ton: int
    addr_npi: int
    address_range: str
    peer: str
    status: int | None = None  # what the simulator answered; None: no answer
    bound: bool = False  # accepted, and the connection is still up
    connection: SmscProtocol | None = field(default=None, repr=False)

    @property
    def receives(self) -> bool:
        return self.mode in ("receiver", "transceiver")


@dataclass(eq=False)
class Submit(SmFields):
    """A submit_sm or data_sm the simulator decoded, and what it did with it."""

    command: str = "submit_sm"
    system_id: str = ""
    sequence: int = 0
    received_at: float = 0.0
    status: int | None = None  # the answer decided; None: never answered (hang, drop_after)
    message_id: str | None = None  # when accepted: the id in the response ("" for empty/none)
    internal_id: str | None = None  # when accepted: the counter (receipts use it if no id)
    answered: bool = False  # the response was actually written


@dataclass(eq=False)
class Delivery:
    """A deliver_sm the simulator sends: a receipt or an MO, with its re-sends."""

    kind: str  # "receipt" or "mo"
    system_id: str
    sm: SmFields
    message_id: str | None = None  # receipt: the id given in submit_sm_resp
    receipt_id: str | None = None  # receipt: the id as the receipt carries it
    stat: str | None = None
    err: str | None = None
    submit: Submit | None = field(default=None, repr=False)
    attempts: int = 0  # deliver_sm sent; re-sends are attempts - 1
    sequences: list[int] = field(default_factory=list)
    via: list[str] = field(default_factory=list)  # bind mode of each attempt
    statuses: list[int] = field(default_factory=list)  # every deliver_sm_resp status
    status: int | None = None  # the first deliver_sm_resp status
    given_up: bool = False  # re-sent max_redeliveries times without an answer
    _waiters: list[Deferred[int | None]] = field(default_factory=list, repr=False)

    @property
    def resends(self) -> int:
        return max(self.attempts - 1, 0)

    @property
    def finished(self) -> bool:
        return self.status is not None or self.given_up

    def wait(self) -> Deferred[int | None]:
        """Fires with the first deliver_sm_resp status, or None if never answered."""
        if self.finished:
            return defer.succeed(self.status)
        d: Deferred[int | None] = Deferred()
        self._waiters.append(d)
        return d

    def _finish(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(self.status)


StateChooser = Callable[[Submit], "tuple[str, str] | Sequence[tuple[str, str]]"]


def _delivered(_: Submit) -> tuple[str, str]:
    return ("DELIVRD", "000")


# --- The protocol ------------------------------------------------------------------------------


class SmscProtocol(protocol.Protocol):
    """One ESME connection."""

    def __init__(self, factory: SmscFactory) -> None:
        self.factory = factory
        self.buffer = b""
        self.session: Session | None = None
        self.peer = "?"
        self.connected_now = False
        self.closing = False  # we asked for the close: read and write nothing more
        self._seq = 0
        self._pending: dict[int, tuple[Deferred[Pdu | None], Any]] = {}
        self._nack_waiters: list[Deferred[Pdu | None]] = []
        self._lost_waiters: list[Deferred[None]] = []

    # connection events

    def connectionMade(self) -> None:
        self.connected_now = True
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self.factory.connections.append(self)
        self.factory._event("connect", peer=self.peer)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.connected_now = False
        if self in self.factory.connections:
            self.factory.connections.remove(self)
        if self.session is not None:
            self.session.bound = False
        self.factory._event("disconnect", peer=self.peer, system_id=self._system_id())
        pending, self._pending = self._pending, {}
        for d, call in pending.values():
            if call is not None and call.active():
                call.cancel()
            d.callback(None)
        nacks, self._nack_waiters = self._nack_waiters, []
        for d in nacks:
            d.callback(None)
        lost, self._lost_waiters = self._lost_waiters, []
        for d in lost:
            d.callback(None)

    def when_lost(self) -> Deferred[None]:
        """Fires when this connection is gone."""
        if not self.connected_now:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        return d

    def _system_id(self) -> str | None:
        return self.session.system_id if self.session is not None else None

    # framing

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while self.connected_now and not self.closing and len(self.buffer) >= 4:
            (length,) = struct.unpack_from(">I", self.buffer)
            if length < 16 or length > MAX_PDU:
                self._bad_frame(length)
                return
            if len(self.buffer) < length:
                return
            frame, self.buffer = self.buffer[:length], self.buffer[length:]
            self._frame(frame)

    def _bad_frame(self, length: int) -> None:
        """A command_length we cannot frame: generic_nack RINVCMDLEN and close (no resync)."""
        sequence = struct.unpack_from(">I", self.buffer, 12)[0] if len(self.buffer) >= 16 else 0
        self.factory.bad_frames.append(self.buffer[:64])
        self.factory._event("bad_frame", command_length=length, peer=self.peer)
        self.buffer = b""
        self._write(GENERIC_NACK, ESME_RINVCMDLEN, sequence)
        self.close()

    def _frame(self, frame: bytes) -> None:
        _, command_id, status, sequence = HEADER.unpack_from(frame)
        pdu = Pdu(command_id, status, sequence, frame[16:], self._system_id())
        f = self.factory
        f.received.append(pdu)
        f.counts[pdu.name] += 1
        if command_id & RESP:
            self._response(pdu)
            return
        if command_id == ENQUIRE_LINK:
            f.enquire_links_received.append(pdu)
        if f.hang:
            f._event("ignored", command=pdu.name, seq=sequence)
            return
        handler = {
            BIND_RECEIVER: self._bind,
            BIND_TRANSMITTER: self._bind,
            BIND_TRANSCEIVER: self._bind,
            SUBMIT_SM: self._submit,
            DATA_SM: self._submit,
            ENQUIRE_LINK: self._enquire_link,
            UNBIND: self._unbind,
        }.get(command_id)
        if handler is None:
            f._event("unsupported", command=pdu.name, seq=sequence)
            self._write(GENERIC_NACK, ESME_RINVCMDID, sequence)
            return
        handler(pdu)

    def _response(self, pdu: Pdu) -> None:
        f = self.factory
        f.responses_received.append(pdu)
        if pdu.command_id == GENERIC_NACK:
            f.nacks_received.append(pdu)
            f._event("generic_nack", status=f"0x{pdu.status:08X}", seq=pdu.sequence)
            waiters, self._nack_waiters = self._nack_waiters, []
            for d in waiters:
                d.callback(pdu)
        else:
            f._event(pdu.name, status=f"0x{pdu.status:08X}", seq=pdu.sequence)
        entry = self._pending.pop(pdu.sequence, None)
        if entry is not None:
            d, call = entry
            if call is not None and call.active():
                call.cancel()
            d.callback(pdu)

    # writing

    def _write(self, command_id: int, status: int, sequence: int, body: bytes = b"") -> bool:
        """Send one PDU; False when hanging or disconnected (nothing recorded then)."""
        if self.factory.hang or not self.connected_now or self.closing:
            return False
        self.transport.write(pack_pdu(command_id, status, sequence, body))
        pdu = Pdu(command_id, status, sequence, body, self._system_id())
        if command_id & RESP:
            self.factory.responses_sent.append(pdu)
        else:
            self.factory.requests_sent.append(pdu)
        return True

    def next_sequence(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    def request(
        self, command_id: int, body: bytes = b"", timeout: float = 5.0
    ) -> tuple[int, Deferred[Pdu | None]]:
        """Send a request; the Deferred fires with the client's answer (response or
        generic_nack with our sequence) or None on timeout or disconnection."""
        sequence = self.next_sequence()
        d: Deferred[Pdu | None] = Deferred()
        if not self._write(command_id, ESME_ROK, sequence, body):
            self.factory._later(timeout, d.callback, None)
            return sequence, d
        call = self.factory._later(timeout, self._expire, sequence)
        self._pending[sequence] = (d, call)
        return sequence, d

    def _expire(self, sequence: int) -> None:
        entry = self._pending.pop(sequence, None)
        if entry is not None:
            entry[0].callback(None)

    def next_nack(self, timeout: float) -> Deferred[Pdu | None]:
        """Fires with the next generic_nack on this connection, or None (timeout, lost)."""
        d: Deferred[Pdu | None] = Deferred()
        self._nack_waiters.append(d)

        def expire() -> None:
            if d in self._nack_waiters:
                self._nack_waiters.remove(d)
                d.callback(None)

        self.factory._later(timeout, expire)
        return d

    def close(self) -> None:
        """Close after what was written (TCP FIN); nothing more is read or written."""
        self.closing = True
        self.transport.loseConnection()

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are, outside any framing (for garbage)."""
        if self.connected_now and not self.closing:
            self.transport.write(data)
            self.factory.raw_sent.append(data)

    # requests from the client

    def _bind(self, pdu: Pdu) -> None:
        f = self.factory
        resp_id = pdu.command_id | RESP
        mode = BIND_MODES[pdu.command_id]
        r = _Reader(pdu.body)
        try:
            system_id = r.cstring("system_id", 16, ESME_RINVSYSID)
            password = r.cstring("password", 9, ESME_RINVPASWD)
            system_type = r.cstring("system_type", 13, ESME_RBINDFAIL)
            interface_version = r.u8("interface_version")
            addr_ton = r.u8("addr_ton")
            addr_npi = r.u8("addr_npi")
            address_range = r.cstring("address_range", 41, ESME_RBINDFAIL)
            if r.rest():
                raise DecodeError(ESME_RINVCMDLEN, "octets after address_range")
        except DecodeError as e:
            f.decode_errors.append((pdu, e.reason))
            f._event("bind_malformed", mode=mode, reason=e.reason)
            self._write(resp_id, e.status, pdu.sequence)
            return
        session = Session(
            mode,
            system_id,
            password,
            system_type,
            interface_version,
            addr_ton,
            addr_npi,
            address_range,
            self.peer,
            connection=self,
        )
        f.sessions.append(session)
        if self.session is not None:
            status = ESME_RALYBND
        elif mode == "transceiver" and f.transceiver == "ignore":
            f._event("bind", mode=mode, system_id=system_id, status="no answer")
            return
        elif mode == "transceiver" and f.transceiver == "reject":
            status = ESME_RINVCMDID
        elif f.bind_failures:
            status = f.bind_failures.pop(0)
        elif f.accounts is not None and system_id not in f.accounts:
            status = ESME_RINVSYSID
        elif f.accounts is not None and f.accounts[system_id] != password:
            status = ESME_RINVPASWD
        else:
            status = ESME_ROK
        session.status = status
        f._event("bind", mode=mode, system_id=system_id, status=f"0x{status:08X}")
        if status != ESME_ROK:
            self._write(resp_id, status, pdu.sequence)
            if f.on_bind_failure == "close" and status != ESME_RALYBND:
                self.close()
            return
        self.session = session
        session.bound = True
        body = cstring(f.smsc_system_id) + encode_tlvs({TAG_SC_INTERFACE_VERSION: b"\x34"})
        self._write(resp_id, ESME_ROK, pdu.sequence, body)
        if session.receives:
            f._flush_waiting(system_id)

    def _enquire_link(self, pdu: Pdu) -> None:
        self._write(ENQUIRE_LINK | RESP, ESME_ROK, pdu.sequence)

    def _unbind(self, pdu: Pdu) -> None:
        self.factory._event("unbind", system_id=self._system_id())
        self._write(UNBIND | RESP, ESME_ROK, pdu.sequence)
        if self.session is not None:
            self.session.bound = False
        self.close()

    def _submit(self, pdu: Pdu) -> None:
        f = self.factory
        command = COMMAND_NAMES[pdu.command_id]
        try:
            sm = decode_sm(pdu.command_id, pdu.body)
        except DecodeError as e:
            f.decode_errors.append((pdu, e.reason))
            f._event(command + "_malformed", seq=pdu.sequence, reason=e.reason)
            self._answer(pdu.command_id, pdu.sequence, e.status, None)
            return
        sub = Submit(
            **{name: getattr(sm, name) for name in SM_FIELD_NAMES},
            tlvs=sm.tlvs,
            command=command,
            system_id=self._system_id() or "",
            sequence=pdu.sequence,
            received_at=f.reactor.seconds(),
        )
        f.submits.append(sub)
        if self.session is None or self.session.mode == "receiver":
            sub.status = ESME_RINVBNDSTS
        elif f.drop_after is not None:
            f.drop_after -= 1
            f._event(command, seq=pdu.sequence, to=sub.destination_addr, status="held")
            if f.drop_after <= 0:
                f.drop_after = None
                f._event("drop", system_id=self._system_id())
                self.close()
            return
        else:
            sub.status = f._decide(sub)
        if sub.status == ESME_ROK:
            sub.message_id, sub.internal_id = f._new_id()
        f._event(
            command,
            system_id=sub.system_id,
            seq=pdu.sequence,
            source=sub.source_addr,
            to=sub.destination_addr,
            dc=sub.data_coding,
            esm=f"0x{sub.esm_class:02X}",
            rd=sub.registered_delivery,
            status=f"0x{sub.status:08X}",
            id=sub.message_id,
        )
        if sub.status != ESME_ROK:
            self._answer(pdu.command_id, pdu.sequence, sub.status, sub)
            return
        f._accepted(self, pdu.command_id, sub)

    def _answer(self, command_id: int, sequence: int, status: int, sub: Submit | None) -> None:
        """submit_sm_resp / data_sm_resp."""
        f = self.factory
        if status != ESME_ROK:
            body = b"" if f.empty_body_on_error else b"\0"
        elif f.id_format == "none":
            body = b""
        else:
            body = cstring(sub.message_id if sub is not None and sub.message_id else "")
        if self._write(command_id | RESP, status, sequence, body) and sub is not None:
            sub.answered = True


# --- The factory: configuration, faults, records, helpers --------------------------------------


class SmscFactory(protocol.ServerFactory):
    """The simulated SMSC. All keyword options are also attributes, changeable at run time.

    Binds: ``accounts`` (system_id -> password; None accepts anyone),
    ``on_bind_failure`` ("keep" the connection open or "close" it),
    ``transceiver`` ("accept", "reject" with ESME_RINVCMDID, or "ignore": no answer),
    ``smsc_system_id`` (in bind responses).

    Message ids: ``id_format`` ("hex" upper-case, "dec", "uuid", "empty" (a lone NUL),
    "none" (no body at all), or a callable int -> str), ``id_width`` (zero padding for
    hex/dec), ``first_id`` (the counter's start).

    Receipts: ``receipts`` (send them when registered_delivery asks), ``receipt_delay``,
    ``receipt_tlvs`` (receipted_message_id / message_state / network_error_code),
    ``receipt_id_form`` ("same", "dec", "hex", "strip_zeros", "lower", "upper" or a
    callable str -> str), ``final_state`` (Submit -> (stat, err), or a list of them for
    intermediate receipts), ``deliver_timeout`` and ``max_redeliveries`` (unanswered
    deliver_sm are re-sent).

    Faults: ``submit_delay``, ``throttle_rate`` (accepted submits per second and system_id,
    beyond: ESME_RTHROTTLED), ``queue_full`` (ESME_RMSGQFUL), ``status_for_prefix``
    (destination prefix -> status), ``receipt_before_response``, ``drop_after`` (drop the
    connection after that many submits, unanswered), ``hang`` (no output at all),
    ``fail_next()`` / ``fail_next_binds()`` (status queues), ``empty_body_on_error``.
    """

    protocol = SmscProtocol

    def buildProtocol(self, addr: Any) -> SmscProtocol:
        return SmscProtocol(self)

    def __init__(
        self,
        *,
        accounts: dict[str, str] | None = None,
        on_bind_failure: str = "keep",
        transceiver: str = "accept",
        smsc_system_id: str = "SMSCSIM",
        id_format: str | Callable[[int], str] = "hex",
        id_width: int = 8,
        first_id: int = 0x0ABC0001,
        receipts: bool = True,
        receipt_delay: float = 0.0,
        receipt_tlvs: bool = True,
        receipt_id_form: str | Callable[[str], str] = "same",
        final_state: StateChooser = _delivered,
        deliver_timeout: float = 5.0,
        max_redeliveries: int = 3,
        submit_delay: float = 0.0,
        throttle_rate: float | None = None,
        queue_full: bool = False,
        status_for_prefix: dict[str, int] | None = None,
        receipt_before_response: bool = False,
        drop_after: int | None = None,
        hang: bool = False,
        empty_body_on_error: bool = True,
        now: Callable[[], float] | None = None,
        on_event: Callable[[str], None] | None = None,
        reactor: Any = None,
    ) -> None:
        if on_bind_failure not in ("keep", "close"):
            raise ValueError("on_bind_failure: keep or close")
        if transceiver not in ("accept", "reject", "ignore"):
            raise ValueError("transceiver: accept, reject or ignore")
        self.reactor: Any = reactor if reactor is not None else global_reactor
        self.accounts = accounts
        self.on_bind_failure = on_bind_failure
        self.transceiver = transceiver
        self.smsc_system_id = smsc_system_id
        self.id_format = id_format
        self.id_width = id_width
        self.receipts = receipts
        self.receipt_delay = receipt_delay
        self.receipt_tlvs = receipt_tlvs
        self.receipt_id_form = receipt_id_form
        self.final_state = final_state
        self.deliver_timeout = deliver_timeout
        self.max_redeliveries = max_redeliveries
        self.submit_delay = submit_delay
        self.throttle_rate = throttle_rate
        self.queue_full = queue_full
        self.status_for_prefix: dict[str, int] = dict(status_for_prefix or {})
        self.receipt_before_response = receipt_before_response
        self.drop_after = drop_after
        self.hang = hang
        self.empty_body_on_error = empty_body_on_error
        self.now: Callable[[], float] = now if now is not None else self.reactor.seconds
        self.on_event = on_event
        self.fail_queue: list[int] = []
        self.bind_failures: list[int] = []
        # records
        self.sessions: list[Session] = []
        self.submits: list[Submit] = []
        self.deliveries: list[Delivery] = []
        self.received: list[Pdu] = []
        self.responses_sent: list[Pdu] = []
        self.requests_sent: list[Pdu] = []
        self.responses_received: list[Pdu] = []
        self.nacks_received: list[Pdu] = []
        self.enquire_links_received: list[Pdu] = []
        self.decode_errors: list[tuple[Pdu, str]] = []
        self.bad_frames: list[bytes] = []
        self.raw_sent: list[bytes] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.events: list[str] = []
        # state
        self.connections: list[SmscProtocol] = []
        self.listeners: list[Any] = []
        self.stopped = False
        self._next_id = first_id
        self._timers = Timers(self.reactor, "simulator stopped")
        self._waiting: list[Delivery] = []
        self._accept_times: dict[str, collections.deque[float]] = {}

    # records, filtered

    @property
    def accepted(self) -> list[Submit]:
        """Submits answered (or to be answered) with ESME_ROK."""
        return [s for s in self.submits if s.status == ESME_ROK]

    @property
    def receipts_sent(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.kind == "receipt"]

    @property
    def mos_sent(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.kind == "mo"]

    def bound(self, system_id: str | None = None, receiving: bool = False) -> list[Session]:
        """Live binds, optionally of one system_id and able to receive."""
        return [
            s
            for s in self.sessions
            if s.bound
            and (system_id is None or s.system_id == system_id)
            and (not receiving or s.receives)
        ]

    # life cycle

    def listen(self, port: int = 0, interface: str = "127.0.0.1") -> int:
        """Listen on TCP (0: a free port); returns the port number."""
        listener = self.reactor.listenTCP(port, self, interface=interface)
        self.listeners.append(listener)
        return listener.getHost().port

    @property
    def port(self) -> int:
        return self.listeners[0].getHost().port

    def stop(self) -> Deferred[None]:
        """Close listeners and connections, cancel every timer; fires when all is closed."""
        self.stopped = True
        self._timers.stop()
        self._waiting = []
        for delivery in self.deliveries:
            if not delivery.finished:
                delivery.given_up = True
                delivery._finish()
        ds: list[Deferred[Any]] = []
        for listener in self.listeners:
            ds.append(defer.maybeDeferred(listener.stopListening))
        self.listeners = []
        for conn in list(self.connections):
            ds.append(conn.when_lost())
            conn.transport.abortConnection()
        return defer.gatherResults(ds).addCallback(lambda _: None)

    def _later(self, delay: float, f: Callable[..., Any], *args: Any) -> Any:
        """reactor.callLater, remembered so that stop() can cancel it."""
        return self._timers.later(delay, f, *args)

    def _event(self, event: str, /, **fields: Any) -> None:
        line = " ".join([event] + [f"{k}={v}" for k, v in fields.items() if v is not None])
        self.events.append(line)
        if self.on_event is not None:
            self.on_event(line)

    # faults

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` submits with ``status`` (e.g. ESME_RTHROTTLED)."""
        self.fail_queue.extend([status] * count)

    def throttle_next(self, count: int = 1) -> None:
        self.fail_next(ESME_RTHROTTLED, count)

    def fail_next_binds(self, status: int = ESME_RBINDFAIL, count: int = 1) -> None:
        """Refuse the next ``count`` binds with ``status``."""
        self.bind_failures.extend([status] * count)

    def _decide(self, sub: Submit) -> int:
        if self.fail_queue:
            return self.fail_queue.pop(0)
        if self.queue_full:
            return ESME_RMSGQFUL
        if self.throttle_rate is not None:
            now = self.now()
            times = self._accept_times.setdefault(sub.system_id, collections.deque())
            while times and times[0] <= now - 1.0:
                times.popleft()
            if len(times) >= self.throttle_rate:
                return ESME_RTHROTTLED
            times.append(now)
        for prefix, status in sorted(self.status_for_prefix.items(), key=lambda i: -len(i[0])):
            if sub.destination_addr.startswith(prefix):
                return status
        return ESME_ROK

    # message ids

    def _new_id(self) -> tuple[str, str]:
        """(the id for submit_sm_resp as ``id_format`` says, the counter in decimal)."""
        n = self._next_id
        self._next_id += 1
        fmt = self.id_format
        if callable(fmt):
            return fmt(n), str(n)
        if fmt == "hex":
            return f"{n:0{self.id_width}X}", str(n)
        if fmt == "dec":
            return f"{n:0{self.id_width}d}", str(n)
        if fmt == "uuid":
            return str(uuid.UUID(int=n, version=4)), str(n)
        if fmt in ("empty", "none"):
            return "", str(n)
        raise ValueError(f"id_format {fmt!r}")

    def receipt_id_for(self, message_id: str) -> str:
        """The message id as receipts carry it (``receipt_id_form``)."""
        form = self.receipt_id_form
        if callable(form):
            return form(message_id)
        if form == "same":
            return message_id
        if form == "dec":
            return str(int(message_id, 16))
        if form == "hex":
            return f"{int(message_id, 10):X}"
        if form == "strip_zeros":
            return message_id.lstrip("0") or "0"
        if form == "lower":
            return message_id.lower()
        if form == "upper":
            return message_id.upper()
        raise ValueError(f"receipt_id_form {form!r}")

    # accepted submits: response and receipts

    def _accepted(self, conn: SmscProtocol, command_id: int, sub: Submit) -> None:
        receipts = self._make_receipts(sub)
        if self.receipt_before_response and receipts:
            first, rest = receipts[0], receipts[1:]
            released: list[bool] = []

            def release(_: Any = None) -> Any:
                if not released:
                    released.append(True)
                    if call is not None and call.active():
                        call.cancel()
                    self._respond_later(conn, command_id, sub)
                return _

            call = self._later(self.deliver_timeout, release)
            self._queue_delivery(first)
            first.wait().addCallback(release)
            for i, receipt in enumerate(rest, 1):
                self._later(self.receipt_delay * i, self._queue_delivery, receipt)
            return
        self._respond_later(conn, command_id, sub)
        for i, receipt in enumerate(receipts, 1):
            self._later(self.submit_delay + self.receipt_delay * i, self._queue_delivery, receipt)

    def _respond_later(self, conn: SmscProtocol, command_id: int, sub: Submit) -> None:
        if self.submit_delay > 0:
            self._later(self.submit_delay, conn._answer, command_id, sub.sequence, ESME_ROK, sub)
        else:
            conn._answer(command_id, sub.sequence, ESME_ROK, sub)

    def _make_receipts(self, sub: Submit) -> list[Delivery]:
        wanted = sub.registered_delivery & 0x03
        if not self.receipts or wanted not in (1, 2):
            return []
        chosen = self.final_state(sub)
        single = len(chosen) == 2 and isinstance(chosen[0], str)
        states: list[Any] = [chosen] if single else list(chosen)
        message_id = sub.message_id or ""
        # without an id in the response, receipts carry the counter (nothing can match it)
        receipt_id = self.receipt_id_for(message_id) if message_id else str(sub.internal_id)
        made = []
        for stat, err in states:
            if wanted == 2 and stat == "DELIVRD":
                continue
            tlvs: dict[int, bytes] = {}
            if self.receipt_tlvs:
                tlvs[TAG_RECEIPTED_MESSAGE_ID] = cstring(receipt_id)
                tlvs[TAG_MESSAGE_STATE] = bytes([MESSAGE_STATES.get(stat, 7)])
                if err.isdigit() and int(err):
                    tlvs[TAG_NETWORK_ERROR_CODE] = struct.pack(">BH", NETWORK_TYPE_GSM, int(err))
            now = self.reactor.seconds()
            sm = SmFields(
                source_addr_ton=sub.dest_addr_ton,
                source_addr_npi=sub.dest_addr_npi,
                source_addr=sub.destination_addr,
                dest_addr_ton=sub.source_addr_ton,
                dest_addr_npi=sub.source_addr_npi,
                destination_addr=sub.source_addr,
                esm_class=ESM_RECEIPT,
                short_message=receipt_text(receipt_id, stat, err, sub.received_at, now, sub.text),
                tlvs=tlvs,
            )
            made.append(
                Delivery(
                    "receipt",
                    sub.system_id,
                    sm,
                    message_id=message_id,
                    receipt_id=receipt_id,
                    stat=stat,
                    err=err,
                    submit=sub,
                )
            )
        return made

    # deliveries (receipts and MO): queued until a receiving bind exists, re-sent if unanswered

    def _queue_delivery(self, delivery: Delivery) -> None:
        if delivery not in self.deliveries:
            self.deliveries.append(delivery)
        self._try_deliver(delivery)

    def _receiver(self, system_id: str) -> SmscProtocol | None:
        for session in self.bound(system_id, receiving=True):
            if session.connection is not None and session.connection.connected_now:
                return session.connection
        return None

    def _try_deliver(self, delivery: Delivery) -> None:
        if self.stopped or delivery.finished:
            return
        conn = self._receiver(delivery.system_id)
        if conn is None or conn.session is None:
            self._waiting.append(delivery)
            self._event("deliver_sm_waiting", kind=delivery.kind, system_id=delivery.system_id)
            return
        delivery.attempts += 1
        delivery.via.append(conn.session.mode)
        seq, d = conn.request(DELIVER_SM, encode_sm(delivery.sm), timeout=self.deliver_timeout)
        delivery.sequences.append(seq)
        self._event(
            "deliver_sm",
            kind=delivery.kind,
            system_id=delivery.system_id,
            seq=seq,
            attempt=delivery.attempts,
            id=delivery.receipt_id,
            stat=delivery.stat,
        )
        d.addCallback(self._delivery_answered, delivery)

    def _delivery_answered(self, resp: Pdu | None, delivery: Delivery) -> None:
        if resp is not None:
            delivery.statuses.append(resp.status)
            if delivery.status is None:
                delivery.status = resp.status
                delivery._finish()
            return
        if delivery.finished or self.stopped:
            return
        if delivery.attempts > self.max_redeliveries:
            delivery.given_up = True
            self._event("deliver_sm_given_up", kind=delivery.kind, attempts=delivery.attempts)
            delivery._finish()
            return
        self._try_deliver(delivery)

    def _flush_waiting(self, system_id: str) -> None:
        ready = [d for d in self._waiting if d.system_id == system_id]
        self._waiting = [d for d in self._waiting if d.system_id != system_id]
        for delivery in ready:
            self._try_deliver(delivery)

    # MO

    def deliver_mo(
        self,
        system_id: str,
        source: str,
        dest: str,
        message: str | bytes,
        data_coding: int = 0,
        udh: bytes | None = None,
        sar: tuple[int, int, int] | None = None,
        *,
        source_ton: int = 1,
        source_npi: int = 1,
        dest_ton: int = 1,
        dest_npi: int = 1,
        esm_class: int | None = None,
        payload: bool = False,
        tlvs: dict[int, bytes] | None = None,
    ) -> Deferred[int | None]:
        """Send an MO deliver_sm to the receiving bind of ``system_id`` (queued until one
        binds). Fires with the deliver_sm_resp status, or None if never answered.

        ``udh`` (with its length octet) sets UDHI; ``sar`` is (ref, total, seqnum);
        ``payload`` puts the message in message_payload instead of short_message.
        """
        octets = (udh or b"") + encode_text(message, data_coding)
        extra: dict[int, bytes] = {}
        if sar is not None:
            ref, total, seqnum = sar
            extra[TAG_SAR_MSG_REF_NUM] = struct.pack(">H", ref)
            extra[TAG_SAR_TOTAL_SEGMENTS] = bytes([total])
            extra[TAG_SAR_SEGMENT_SEQNUM] = bytes([seqnum])
        if payload:
            extra[TAG_MESSAGE_PAYLOAD] = octets
            octets = b""
        extra.update(tlvs or {})
        sm = SmFields(
            source_addr_ton=source_ton,
            source_addr_npi=source_npi,
            source_addr=source,
            dest_addr_ton=dest_ton,
            dest_addr_npi=dest_npi,
            destination_addr=dest,
            esm_class=esm_class if esm_class is not None else (ESM_UDHI if udh else 0),
            data_coding=data_coding,
            short_message=octets,
            tlvs=extra,
        )
        delivery = Delivery("mo", system_id, sm)
        self._queue_delivery(delivery)
        return delivery.wait()

    def deliver_long_mo(
        self,
        system_id: str,
        source: str,
        dest: str,
        message: str | bytes,
        data_coding: int = 0,
        *,
        parts: int = 3,
        method: str = "udh",
        ref: int = 0x42,
        order: Sequence[int] | None = None,
        missing: Iterable[int] = (),
        **kwargs: Any,
    ) -> Deferred[list[int | None]]:
        """Send a long MO as ``parts`` deliver_sm, with a concatenation UDH (``method``
        "udh"; 8-bit reference up to 255) or SAR TLVs ("sar"). ``order`` lists the 1-based
        part numbers in sending order; parts in ``missing`` are never sent. Fires with
        the statuses in sending order."""
        if method not in ("udh", "sar"):
            raise ValueError("method: udh or sar")
        pieces = split_message(message, data_coding, parts)
        skip = set(missing)
        sequence = [n for n in (order or range(1, parts + 1)) if n not in skip]
        ds = []
        for n in sequence:
            piece = pieces[n - 1]
            if method == "udh":
                d = self.deliver_mo(
                    system_id, source, dest, piece, data_coding, concat_udh(ref, parts, n), **kwargs
                )
            else:
                d = self.deliver_mo(
                    system_id, source, dest, piece, data_coding, sar=(ref, parts, n), **kwargs
                )
            ds.append(d)
        return defer.gatherResults(ds)

    # requests and garbage towards the client

    def _target(self, system_id: str | None) -> SmscProtocol:
        live = [c for c in self.connections if c.connected_now]
        if system_id is not None:
            live = [c for c in live if c.session is not None and c.session.system_id == system_id]
        bound = [c for c in live if c.session is not None and c.session.bound]
        chosen = bound or live
        if not chosen:
            raise LookupError(f"no connection for system_id {system_id!r}")
        return chosen[-1]

    def send_enquire_link(
        self, system_id: str | None = None, timeout: float = 5.0
    ) -> Deferred[Pdu | None]:
        """Fires with the client's enquire_link_resp (or nack), None if none came."""
        return self._target(system_id).request(ENQUIRE_LINK, b"", timeout)[1]

    def send_unbind(
        self, system_id: str | None = None, timeout: float = 5.0
    ) -> Deferred[Pdu | None]:
        """Send unbind; fires with the unbind_resp (or None), then closes the connection."""
        conn = self._target(system_id)

        def close(resp: Pdu | None) -> Pdu | None:
            if conn.session is not None:
                conn.session.bound = False
            if conn.connected_now:
                conn.close()
            return resp

        return conn.request(UNBIND, b"", timeout)[1].addCallback(close)

    def send_unknown_command(
        self, system_id: str | None = None, command_id: int = 0x00000099, timeout: float = 5.0
    ) -> Deferred[Pdu | None]:
        """A well-framed PDU with an unassigned command_id; the client should answer
        generic_nack ESME_RINVCMDID with the same sequence. Fires with the next
        generic_nack, or None (timeout, disconnection)."""
        conn = self._target(system_id)
        d = conn.next_nack(timeout)
        conn.send_raw(pack_pdu(command_id, ESME_ROK, conn.next_sequence()))
        self._event("garbage", kind="unknown_command", command_id=f"0x{command_id:08X}")
        return d

    def send_bad_length(
        self, system_id: str | None = None, length: int = 8, timeout: float = 5.0
    ) -> Deferred[Pdu | None]:
        """A 16-octet header whose command_length is ``length`` (default 8: shorter than a
        header; try 0x7FFFFFFF for absurdly long). The client should answer generic_nack
        ESME_RINVCMDLEN (and may then close). Fires with the next generic_nack or None."""
        conn = self._target(system_id)
        d = conn.next_nack(timeout)
        conn.send_raw(HEADER.pack(length, ENQUIRE_LINK, ESME_ROK, conn.next_sequence()))
        self._event("garbage", kind="bad_length", command_length=length)
        return d

    def send_noise(
        self,
        system_id: str | None = None,
        data: bytes | None = None,
        size: int = 64,
        seed: int = 1,
        timeout: float = 5.0,
    ) -> Deferred[Pdu | None]:
        """Random bytes (seeded, so reproducible) or ``data``. Fires with the next
        generic_nack, or None (timeout, disconnection)."""
        conn = self._target(system_id)
        noise = data if data is not None else random.Random(seed).randbytes(size)
        d = conn.next_nack(timeout)
        conn.send_raw(noise)
        self._event("garbage", kind="noise", size=len(noise))
        return d

    def drop_connections(self, system_id: str | None = None) -> Deferred[None]:
        """Close connections (of one system_id, or all) from the SMSC side."""
        conns = [
            c
            for c in self.connections
            if system_id is None or (c.session is not None and c.session.system_id == system_id)
        ]
        ds = [c.when_lost() for c in conns]
        for c in conns:
            c.close()
        return defer.gatherResults(ds).addCallback(lambda _: None)

    # waiting

    def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 10.0,
        interval: float = 0.01,
        what: str = "condition",
    ) -> Deferred[Any]:
        """Poll ``predicate`` on the reactor; fires with its first truthy value, or fails
        with AssertionError after ``timeout`` seconds."""
        return self._timers.wait_for(predicate, timeout, interval, what)


# --- Standalone ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.peers.smsc``: run the simulator, one line per event on stdout."""
    parser = argparse.ArgumentParser(prog="python -m tests.peers.smsc", description=__doc__)
    parser.add_argument("--port", type=int, default=2775, help="0: a free port")
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--receipts", action="store_true", help="send delivery receipts")
    parser.add_argument("--receipt-delay", type=float, default=1.0)
    parser.add_argument(
        "--id-format", default="hex", choices=["hex", "dec", "uuid", "empty", "none"]
    )
    parser.add_argument("--receipt-id-form", default="same")
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="SYSTEM_ID:PASSWORD",
        help="accept only these (default: anyone)",
    )
    parser.add_argument("--transceiver", default="accept", choices=["accept", "reject", "ignore"])
    parser.add_argument("--close-on-bind-failure", action="store_true")
    parser.add_argument("--throttle-rate", type=float, default=None)
    parser.add_argument("--submit-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    accounts = dict(a.split(":", 1) for a in args.account) if args.account else None

    def emit(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    factory = SmscFactory(
        accounts=accounts,
        on_bind_failure="close" if args.close_on_bind_failure else "keep",
        transceiver=args.transceiver,
        id_format=args.id_format,
        receipts=args.receipts,
        receipt_delay=args.receipt_delay,
        receipt_id_form=args.receipt_id_form,
        throttle_rate=args.throttle_rate,
        submit_delay=args.submit_delay,
        on_event=emit,
    )
    port = factory.listen(args.port, args.interface)
    emit(f"listening interface={args.interface} port={port}")
    global_reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
