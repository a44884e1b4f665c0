"""A fake GSM modem for tests: AT commands in PDU mode on a pseudo-terminal, in-process on Twisted.

The modem side of TS 27.005 as smsd's modem gateway sees it through a serial device: a pty
pair whose slave is reached through a stable symlink (``<directory>/ttyFAKE0``, like a udev
name), read and written by the reactor through the master. It is deliberately an
*independent* implementation: SMS-SUBMIT PDUs are decoded here strictly with plain octet and
bit operations and the PyPI ``gsm0338`` codec, SMS-DELIVER and SMS-STATUS-REPORT PDUs are built
here by hand (swapped BCD or packed GSM-7 addresses, time stamps with time zone, UDH, GSM-7
packing, UCS-2). Nothing from ``smsd`` or ``protocols`` is imported, so that a bug in smsd's
codecs cannot hide behind the same bug in its test peer. (``smspdudecoder`` can read an
SMS-SUBMIT but not strictly: it ignores surplus or missing octets and slices GSM-7 text after
resolving escapes, so a UDH whose septets contain 0x1B shifts the text; the tests use it, and
``python-gsmmodem-new``, to check this module from the outside.)

Typical use in a trial test::

    modem = FakeModem(reactor, self.mktemp(), pin="1234", style="simcom")
    self.addCleanup(modem.close)
    port = SerialPort(protocol, modem.path, reactor)   # what the gateway does
    ...
    modem.deliver("+15551230001", "hello")              # +CMTI: "SM",1 (after AT+CNMI=2,1,...)
    yield modem.wait_for(lambda: modem.sent, what="an AT+CMGS")
    modem.status_report(modem.sent[0].mr, modem.sent[0].recipient)

Framing is that of real modems: every information block and final result is ``\\r\\n...\\r\\n``,
echo (ATE1, the default) repeats the characters received, the ``AT+CMGS`` prompt is
``\\r\\n> `` and the PDU typed after it is echoed too. Commands end with CR; a LF right after it
is ignored; lines not starting with ``AT`` are ignored without an answer; several commands may
share one line (``AT+CMEE=1;+CMGF=0``, ``ATE0V1``). ESC (0x1B) instead of Ctrl-Z aborts a send
and is answered ``OK`` (as Wavecom and SIMCom do). Text mode (``AT+CMGF=1``) is accepted, but
the SMS commands then answer ``+CMS ERROR: 303``: the gateway is meant to use PDU mode.

Behaviour worth knowing:

* ``AT+CNMI=<mode>,<mt>,<bm>,<ds>,<bfr>`` is off (all 0) after power-on: messages are stored
  silently until the gateway asks for indications (or sweeps with ``AT+CMGL=4``). mode 0
  buffers the indications (flushed by a later CNMI with mode 1/2 and bfr 0), mode 1 sends them
  at once, even between ``AT+CMGS`` and its answer, mode 2 holds them while a command is being
  answered or a PDU is being typed and sends them afterwards. mt 1 → ``+CMTI``, mt 2 → ``+CMT``
  (not stored; ``AT+CNMA`` acknowledges, and answers ``+CMS ERROR: 340`` when nothing is
  waiting), ds 1 → ``+CDS``, ds 2 → stored + ``+CDSI``.
* The SIM store (messages, ``AT+CSCA``, the last TP-MR, PIN/PUK state) survives resets and
  :meth:`reappear`; echo, CMEE, CMGF, CNMI, CREG=<n> and registration do not. ATZ restores only
  echo and CMEE.
* Output is dropped while no client has the device open (as a USB serial port drops it), while
  the modem is stalled and during a reset; Twisted's ``SerialPort`` also flushes its input when
  it opens the device, so boot URCs after :meth:`reappear` are sent when a client first opens
  the new device. Closing the port does not reset the modem: one left at the ``> `` prompt is
  still there for the next client (an ESC at start-up clears it, as with real modems).
* Registration (``+CREG``) is 0 while the SIM is locked or the radio is off (``AT+CFUN=0``),
  2 ("searching") for ``register_delay`` seconds after the SIM became ready, then 1 (5 with
  ``roaming``). ``AT+CMGS`` answers 311/316 while the SIM is locked and 331 until registered.
* ``style`` sets identities, boot URCs and vendor habits: ``huawei`` has periodic noise
  (``^RSSI:..``, ``^BOOT:..``; ``AT^CURC=0`` silences it), ``^SMMEMFULL`` when the store is full
  and a reset that re-enumerates the device (``AT+CFUN=1,1`` = vanish, then reappear);
  ``simcom`` boots with ``RDY``, ``+CFUN: 1``, ``+CPIN: READY``, ``Call Ready``, ``SMS Ready``
  and answers ``AT+CMGR`` of an empty slot with a bare ``OK``; ``wavecom`` boots with
  ``+WIND:`` lines; the others answer an empty slot with ``+CMS ERROR: 321``.

Faults are plain attributes or methods, switchable at any time: :meth:`stall` /
:meth:`unstall`, :meth:`vanish` / :meth:`reappear`, :meth:`reboot`, :meth:`fail_next_send`,
``urc_during_cmgs`` and :meth:`deliver_during_next_cmgs`, ``noise_interval`` /
:meth:`send_noise`, :meth:`slow_registration`, :meth:`garbage`, :meth:`network_lost` /
:meth:`network_back`, ``answer_delay`` / ``answer_delays`` / ``send_delay``, ``responses``
(canned answers per command), ``smsc`` (None: ``+CMS ERROR: 330`` for PDUs without an SMSC).
Everything is recorded: ``commands``, ``sent`` (decoded SUBMITs accepted), ``refused``,
``aborted``, ``delivered``, ``deleted``, ``acks``, ``urcs``, ``resets``, ``opened``,
``closed``, ``lost``, ``events``.

Standalone, for manual checks (e.g. with ``picocom /tmp/ttyFAKE0``)::

    python -m tests.peers.fakemodem --link /tmp/ttyFAKE0 --style simcom
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import os
import select
import sys
import time
import tty
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.peers.timers import Timers

GSM = "gsm03.38"
CTRL_Z = 0x1A
ESC = 0x1B
CR = 0x0D
LF = 0x0A

# +CMS ERROR codes (TS 27.005 §3.2.5) and +CME ERROR codes (TS 27.007 §9.2) used here
CMS_NOT_ALLOWED = 302
CMS_NOT_SUPPORTED = 303
CMS_INVALID_PDU = 304
CMS_SIM_PIN = 311
CMS_SIM_PUK = 316
CMS_INVALID_INDEX = 321
CMS_SMSC_UNKNOWN = 330
CMS_NO_NETWORK = 331
CMS_NO_CNMA = 340
CMS_UNKNOWN = 500

CME_NOT_ALLOWED = 3
CME_NOT_SUPPORTED = 4
CME_SIM_PIN = 11
CME_SIM_PUK = 12
CME_WRONG_PASSWORD = 16
CME_INVALID_INDEX = 21
CME_NO_NETWORK = 30
CME_UNKNOWN = 100

CME_TEXT = {
    CME_NOT_ALLOWED: "operation not allowed",
    CME_NOT_SUPPORTED: "operation not supported",
    10: "SIM not inserted",
    CME_SIM_PIN: "SIM PIN required",
    CME_SIM_PUK: "SIM PUK required",
    13: "SIM failure",
    CME_WRONG_PASSWORD: "incorrect password",
    CME_INVALID_INDEX: "invalid index",
    CME_NO_NETWORK: "no network service",
    CME_UNKNOWN: "unknown",
}

# CREG <stat>
NOT_REGISTERED = 0
HOME = 1
SEARCHING = 2
DENIED = 3
ROAMING = 5

# Storage <stat> in PDU mode
REC_UNREAD = 0
REC_READ = 1


# --- GSM 7-bit, addresses, time stamps ---------------------------------------------------------


class PduError(ValueError):
    """A PDU that cannot be decoded (the modem answers ``+CMS ERROR: 304``)."""


def gsm7_septets(text: str) -> bytes:
    """``text`` as GSM 7-bit septets, one per octet (extension characters as ESC + code).

    Raises ValueError for a character the default alphabet lacks."""
    try:
        return text.encode(GSM)
    except UnicodeEncodeError as e:
        raise ValueError(f"{text[e.start : e.end]!r} is not in the GSM 7-bit alphabet") from e


def gsm7_fits(text: str) -> bool:
    try:
        gsm7_septets(text)
    except ValueError:
        return False
    return True


def pack_septets(septets: bytes, start: int = 0) -> bytes:
    """Pack septets little-endian, the first at septet position ``start`` (positions before it
    are zero bits, for the UDH to be OR-ed in); ``ceil(7 * (start + n) / 8)`` octets."""
    total = start + len(septets)
    value = 0
    for i, s in enumerate(septets):
        if s > 0x7F:
            raise ValueError(f"septet {s:#x} out of range")
        value |= s << (7 * (start + i))
    return value.to_bytes((7 * total + 7) // 8, "little")


def unpack_septets(data: bytes, count: int, start: int = 0) -> bytes:
    """Septets ``start`` .. ``count - 1`` of a packed stream."""
    value = int.from_bytes(data, "little")
    return bytes((value >> (7 * i)) & 0x7F for i in range(start, count))


BCD_DIGITS = "0123456789*#abc"


def bcd(digits: str) -> bytes:
    """Semi-octet (swapped BCD) digits, F-padded."""
    nibbles = []
    for c in digits:
        i = BCD_DIGITS.find(c.lower() if c in "ABC" else c)
        if i < 0:
            raise ValueError(f"{c!r} is not an address digit")
        nibbles.append(i)
    if len(nibbles) % 2:
        nibbles.append(0xF)
    return bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))


def unbcd(data: bytes, count: int | None = None) -> str:
    """Decode swapped BCD; ``count`` digits (then only a trailing F filler is allowed)."""
    out = []
    for octet in data:
        for nibble in (octet & 0x0F, octet >> 4):
            out.append(nibble)
    if count is None:
        if out and out[-1] == 0xF:
            out.pop()
        count = len(out)
    if count > len(out) or any(n != 0xF for n in out[count:]):
        raise PduError(f"semi-octets {data.hex()}: bad filler for {count} digits")
    digits = out[:count]
    if any(n == 0xF for n in digits):
        raise PduError(f"semi-octets {data.hex()}: filler inside the digits")
    return "".join(BCD_DIGITS[n] for n in digits)


def encode_address(address: str, alphanumeric: bool = False) -> bytes:
    """TP-OA / TP-DA / TP-RA: digit count, type of address, digits. ``+`` → TOA 0x91
    (international), else 0x81 (unknown); alphanumeric → TOA 0xD0 and packed GSM-7."""
    if alphanumeric:
        septets = gsm7_septets(address)
        if len(septets) > 11:
            raise ValueError(f"alphanumeric address {address!r}: more than 11 septets")
        return bytes([(len(septets) * 7 + 3) // 4, 0xD0]) + pack_septets(septets)
    toa = 0x91 if address.startswith("+") else 0x81
    digits = address[1:] if address.startswith("+") else address
    if not digits or len(digits) > 20:
        raise ValueError(f"address {address!r}: 1 to 20 digits")
    return bytes([len(digits), toa]) + bcd(digits)


def encode_smsc(address: str | None) -> bytes:
    """The SMSC prefix of a PDU on the modem interface: octet count (TOA + digits), or 00."""
    if not address:
        return b"\x00"
    toa = 0x91 if address.startswith("+") else 0x81
    body = bytes([toa]) + bcd(address.lstrip("+"))
    return bytes([len(body)]) + body


def _bcd2(n: int) -> int:
    return (n % 10) << 4 | (n // 10)


def encode_timestamp(when: dt.datetime) -> bytes:
    """TP-SCTS / TP-DT: YY MM DD hh mm ss in swapped BCD, then the UTC offset in quarter hours
    (swapped BCD, sign in bit 3). ``when`` must be aware."""
    offset = when.utcoffset()
    if offset is None:
        raise ValueError("a time stamp needs a time zone")
    quarters = int(offset.total_seconds()) // 900
    tz = _bcd2(abs(quarters)) | (0x08 if quarters < 0 else 0)
    fields = (when.year % 100, when.month, when.day, when.hour, when.minute, when.second)
    return bytes(_bcd2(n) for n in fields) + bytes([tz])


def decode_timestamp(data: bytes) -> dt.datetime:
    if len(data) != 7:
        raise PduError("a time stamp has 7 octets")

    def num(octet: int) -> int:
        lo, hi = octet & 0x0F, octet >> 4
        if lo > 9 or hi > 9:
            raise PduError(f"time stamp octet {octet:02x} is not BCD")
        return lo * 10 + hi

    y, mo, d, h, mi, s = (num(o) for o in data[:6])
    tz = data[6]
    quarters = num(tz & 0xF7) * (-1 if tz & 0x08 else 1)
    try:
        return dt.datetime(
            2000 + y, mo, d, h, mi, s, tzinfo=dt.timezone(dt.timedelta(minutes=15 * quarters))
        )
    except ValueError as e:
        raise PduError(f"time stamp {data.hex()}: {e}") from e


def concat_ie(ref: int, total: int, seq: int) -> bytes:
    """A concatenation information element: IEI 00 (8-bit ref) or 08 (ref above 255)."""
    if not 1 <= seq <= total <= 255:
        raise ValueError(f"concatenation {seq}/{total}")
    if ref > 0xFF:
        return bytes([0x08, 4, ref >> 8 & 0xFF, ref & 0xFF, total, seq])
    return bytes([0x00, 3, ref, total, seq])


def parse_udh(udh: bytes) -> list[tuple[int, bytes]]:
    """The information elements of a UDH given without its UDHL octet."""
    ies = []
    i = 0
    while i < len(udh):
        if i + 2 > len(udh):
            raise PduError("UDH: information element header cut short")
        iei, length = udh[i], udh[i + 1]
        if i + 2 + length > len(udh):
            raise PduError(f"UDH: element {iei:#04x} longer than the header")
        ies.append((iei, udh[i + 2 : i + 2 + length]))
        i += 2 + length
    return ies


def _alphabet(dcs: int) -> str:
    """``gsm7``, ``8bit`` or ``ucs2`` for a TP-DCS (TS 23.038 §4); PduError for the rest."""
    group = dcs >> 4
    if group <= 0x7:  # general data coding / automatic deletion groups
        if dcs & 0x20:
            raise PduError(f"DCS {dcs:#04x}: compressed text is not supported")
        alphabet = (dcs >> 2) & 3
        if alphabet == 3:
            raise PduError(f"DCS {dcs:#04x}: reserved alphabet")
        return ("gsm7", "8bit", "ucs2")[alphabet]
    if group in (0xC, 0xD):
        return "gsm7"
    if group == 0xE:
        return "ucs2"
    if group == 0xF:
        return "8bit" if dcs & 0x04 else "gsm7"
    raise PduError(f"DCS {dcs:#04x}: reserved coding group")


def _message_class(dcs: int) -> int | None:
    if dcs >> 6 in (0, 1) and dcs & 0x10:
        return dcs & 3
    if dcs >> 4 == 0xF:
        return dcs & 3
    return None


@dataclass
class Submit:
    """An SMS-SUBMIT as the modem received it after ``AT+CMGS``."""

    pdu: str  # the hex as typed (SMSC prefix included)
    length: int  # the <length> of AT+CMGS
    tpdu_length: int  # the octets after the SMSC prefix
    smsc: str | None = None  # None: 00, use +CSCA
    first_octet: int = 0
    reject_duplicates: bool = False
    vpf: int = 0
    status_report_request: bool = False
    udhi: bool = False
    reply_path: bool = False
    tp_mr: int = 0  # the TP-MR in the PDU (the modem answers with its own)
    recipient: str = ""  # "+" for TOA 0x91
    recipient_toa: int = 0
    pid: int = 0
    dcs: int = 0
    alphabet: str = "gsm7"
    message_class: int | None = None
    validity: bytes = b""  # TP-VP as received (0, 1 or 7 octets)
    udl: int = 0
    udh: bytes | None = None  # without the UDHL octet
    ies: list[tuple[int, bytes]] = field(default_factory=list)
    concat: tuple[int, int, int] | None = None  # (ref, total, seq)
    concat_16bit: bool = False
    data: bytes = b""  # TP-UD after the UDH (septets for GSM-7, one per octet)
    text: str | None = None  # None for 8-bit data
    problems: list[str] = field(default_factory=list)  # content a phone would choke on
    # set by the modem
    mr: int | None = None  # the TP-MR the modem gave in +CMGS
    error: int | None = None  # the +CMS ERROR it answered instead
    at: float = 0.0  # reactor time of the Ctrl-Z
    before_prompt: bool = False  # PDU octets arrived before the "> " prompt was sent

    @property
    def relative_validity(self) -> dt.timedelta | None:
        """TP-VP as a duration when it is relative (VPF 10)."""
        if self.vpf != 2:
            return None
        n = self.validity[0]
        if n <= 143:
            return dt.timedelta(minutes=(n + 1) * 5)
        if n <= 167:
            return dt.timedelta(hours=12, minutes=(n - 143) * 30)
        if n <= 196:
            return dt.timedelta(days=n - 166)
        return dt.timedelta(weeks=n - 192)


def decode_submit(pdu_hex: str, length: int | None = None) -> Submit:
    """Strictly decode an SMS-SUBMIT as typed after the ``AT+CMGS`` prompt.

    Raises PduError for bad hex, a TPDU that is not ``length`` octets, a wrong TP-MTI, fields
    cut short or surplus octets, a TP-UDL that does not match the octets, a malformed UDH or an
    unsupported DCS. Content that decodes but is dubious (a lone surrogate, a trailing ESC, a
    concatenation element with bad numbers) goes to ``problems``."""
    try:
        raw = bytes.fromhex(pdu_hex)
    except ValueError as e:
        raise PduError(f"not hex: {pdu_hex[:40]!r}") from e
    if len(pdu_hex) % 2 or not raw:
        raise PduError("odd or empty hex")
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(raw):
            raise PduError(f"{what}: PDU ends early")
        chunk = raw[pos : pos + n]
        pos += n
        return chunk

    smsc_len = take(1, "SMSC length")[0]
    smsc = None
    if smsc_len:
        if smsc_len > 11:
            raise PduError(f"SMSC address of {smsc_len} octets")
        body = take(smsc_len, "SMSC address")
        smsc = ("+" if body[0] == 0x91 else "") + unbcd(body[1:])
    tpdu_length = len(raw) - pos
    if length is not None and tpdu_length != length:
        raise PduError(f"AT+CMGS={length} but the TPDU has {tpdu_length} octets")
    sub = Submit(pdu=pdu_hex, length=length or tpdu_length, tpdu_length=tpdu_length, smsc=smsc)
    fo = take(1, "first octet")[0]
    if fo & 0x03 != 0x01:
        raise PduError(f"first octet {fo:#04x}: TP-MTI is not SMS-SUBMIT")
    sub.first_octet = fo
    sub.reject_duplicates = bool(fo & 0x04)
    sub.vpf = (fo >> 3) & 3
    sub.status_report_request = bool(fo & 0x20)
    sub.udhi = bool(fo & 0x40)
    sub.reply_path = bool(fo & 0x80)
    sub.tp_mr = take(1, "TP-MR")[0]
    digits = take(1, "TP-DA length")[0]
    if digits > 20:
        raise PduError(f"TP-DA of {digits} digits")
    toa = take(1, "TP-DA type")[0]
    if not toa & 0x80:
        raise PduError(f"TP-DA type of address {toa:#04x} lacks bit 7")
    octets = take((digits + 1) // 2, "TP-DA")
    sub.recipient_toa = toa
    if toa & 0x70 == 0x50:  # alphanumeric
        septets = unpack_septets(octets, digits * 4 // 7)
        sub.recipient = septets.decode(GSM, errors="replace")
    else:
        sub.recipient = ("+" if toa & 0x70 == 0x10 else "") + unbcd(octets, digits)
    sub.pid = take(1, "TP-PID")[0]
    sub.dcs = take(1, "TP-DCS")[0]
    sub.alphabet = _alphabet(sub.dcs)
    sub.message_class = _message_class(sub.dcs)
    sub.validity = take({0: 0, 1: 7, 2: 1, 3: 7}[sub.vpf], "TP-VP")
    if sub.vpf == 3:
        decode_timestamp(sub.validity)
    sub.udl = take(1, "TP-UDL")[0]
    ud = raw[pos:]
    if sub.alphabet == "gsm7":
        if sub.udl > 160:
            raise PduError(f"TP-UDL {sub.udl} septets")
        expected = (sub.udl * 7 + 7) // 8
    else:
        if sub.udl > 140:
            raise PduError(f"TP-UDL {sub.udl} octets")
        expected = sub.udl
    if len(ud) != expected:
        raise PduError(f"TP-UDL {sub.udl} means {expected} octets of TP-UD, got {len(ud)}")
    header_octets = 0
    if sub.udhi:
        if not ud:
            raise PduError("TP-UDHI set but no user data")
        udhl = ud[0]
        header_octets = 1 + udhl
        if header_octets > len(ud):
            raise PduError(f"UDHL {udhl} is longer than the user data")
        sub.udh = ud[1:header_octets]
        sub.ies = parse_udh(sub.udh)
        for iei, data in sub.ies:
            if iei in (0x00, 0x08):
                want = 3 if iei == 0x00 else 4
                if len(data) != want:
                    raise PduError(f"concatenation element {iei:#04x} of {len(data)} octets")
                ref = data[0] if iei == 0 else data[0] << 8 | data[1]
                total, seq = data[-2], data[-1]
                sub.concat = (ref, total, seq)
                sub.concat_16bit = iei == 0x08
                if not 1 <= seq <= total:
                    sub.problems.append(f"concatenation part {seq} of {total}")
    if sub.alphabet == "gsm7":
        skip = (header_octets * 8 + 6) // 7
        if skip > sub.udl:
            raise PduError("the UDH is longer than TP-UDL")
        sub.data = unpack_septets(ud, sub.udl, skip)
        if sub.data.endswith(b"\x1b"):
            sub.problems.append("GSM-7 text ends with a lone ESC")
        try:
            sub.text = sub.data.decode(GSM)
        except UnicodeDecodeError as e:
            sub.problems.append(f"GSM-7: {e}")
            sub.text = sub.data.decode(GSM, errors="replace")
    else:
        sub.data = ud[header_octets:]
        if sub.alphabet == "ucs2":
            if len(sub.data) % 2:
                raise PduError("UCS-2 text of an odd number of octets")
            try:
                sub.text = sub.data.decode("utf-16-be")
            except UnicodeDecodeError as e:
                sub.problems.append(f"UCS-2: {e}")
                sub.text = sub.data.decode("utf-16-be", errors="surrogatepass")
    return sub


def build_user_data(
    text: str | None,
    *,
    data: bytes | None = None,
    ucs2: bool | None = None,
    udh: bytes = b"",
) -> tuple[int, int, bytes]:
    """(DCS alphabet bits, TP-UDL, TP-UD) for ``text`` (GSM-7 when it fits and ``ucs2`` is not
    True) or 8-bit ``data``; ``udh`` is the information elements (UDHL is added here)."""
    header = bytes([len(udh)]) + udh if udh else b""
    if data is not None:
        if len(header) + len(data) > 140:
            raise ValueError(f"{len(data)} octets do not fit one SMS")
        return 0x04, len(header) + len(data), header + data
    assert text is not None
    if ucs2 is None:
        ucs2 = not gsm7_fits(text)
    if ucs2:
        body = text.encode("utf-16-be")
        if len(header) + len(body) > 140:
            raise ValueError(f"{len(text)} UCS-2 characters do not fit one SMS")
        return 0x08, len(header) + len(body), header + body
    septets = gsm7_septets(text)
    skip = (len(header) * 8 + 6) // 7
    udl = skip + len(septets)
    if udl > 160:
        raise ValueError(f"{len(septets)} septets do not fit one SMS")
    packed = bytearray(pack_septets(septets, skip))
    packed[: len(header)] = bytes(a | b for a, b in zip(packed, header, strict=False))
    return 0x00, udl, bytes(packed)


def build_deliver(
    sender: str,
    text: str | None,
    *,
    scts: dt.datetime,
    smsc: str | None = None,
    data: bytes | None = None,
    ucs2: bool | None = None,
    alphanumeric: bool = False,
    concat: tuple[int, int, int] | None = None,
    udh: bytes = b"",
    pid: int = 0,
    message_class: int | None = None,
    status_report_indication: bool = False,
    more_messages: bool = False,
    reply_path: bool = False,
) -> tuple[str, int]:
    """An SMS-DELIVER (SMSC prefix + TPDU) as upper-case hex, and its TPDU length."""
    ies = (concat_ie(*concat) if concat else b"") + udh
    alphabet, udl, ud = build_user_data(text, data=data, ucs2=ucs2, udh=ies)
    dcs = alphabet | (0x10 | message_class if message_class is not None else 0)
    fo = 0x00  # TP-MTI 00
    if not more_messages:
        fo |= 0x04  # TP-MMS: no more messages waiting
    if status_report_indication:
        fo |= 0x20
    if ies:
        fo |= 0x40
    if reply_path:
        fo |= 0x80
    tpdu = (
        bytes([fo])
        + encode_address(sender, alphanumeric)
        + bytes([pid, dcs])
        + encode_timestamp(scts)
        + bytes([udl])
        + ud
    )
    return (encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu)


def build_status_report(
    mr: int,
    recipient: str,
    status: int,
    *,
    scts: dt.datetime,
    discharge: dt.datetime,
    smsc: str | None = None,
    more_messages: bool = False,
) -> tuple[str, int]:
    """An SMS-STATUS-REPORT (no TP-PI) as upper-case hex, and its TPDU length."""
    fo = 0x02 | (0 if more_messages else 0x04)  # TP-MTI 10, TP-MMS; TP-SRQ 0 (SUBMIT's report)
    tpdu = (
        bytes([fo, mr & 0xFF])
        + encode_address(recipient)
        + encode_timestamp(scts)
        + encode_timestamp(discharge)
        + bytes([status & 0xFF])
    )
    return (encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu)


def split_text(text: str, parts: int | None = None, ucs2: bool | None = None) -> list[str]:
    """Split ``text`` into concatenation parts: 153 GSM-7 septets (an escape never split from
    its character) or 67 UCS-2 units (a surrogate pair never split) each; with ``parts``, into
    that many nearly equal parts instead."""
    if ucs2 is None:
        ucs2 = not gsm7_fits(text)

    def cost(c: str) -> int:
        return len(c.encode("utf-16-be")) // 2 if ucs2 else len(gsm7_septets(c))

    if parts is not None:
        if not 1 <= parts <= len(text):
            raise ValueError(f"{len(text)} characters in {parts} parts")
        size, extra = divmod(len(text), parts)
        out, i = [], 0
        for n in range(parts):
            j = i + size + (1 if n < extra else 0)
            out.append(text[i:j])
            i = j
        return out
    room = 67 if ucs2 else 153
    out, current, used = [], "", 0
    for c in text:
        if used + cost(c) > room:
            out.append(current)
            current, used = "", 0
        current += c
        used += cost(c)
    out.append(current)
    return out


# --- Records -----------------------------------------------------------------------------------


@dataclass
class Delivery:
    """Something the modem received from the network: an SMS-DELIVER or a status report."""

    kind: str  # "deliver" or "status-report"
    pdu: str  # hex, SMSC prefix included
    tpdu_length: int
    route: str  # "stored" (+CMTI/+CDSI or silent), "direct" (+CMT/+CDS), "lost", "discarded"
    index: int | None = None  # the storage index when stored
    sender: str | None = None
    recipient: str | None = None  # the SIM's own number, as the test says (not in the PDU)
    text: str | None = None
    concat: tuple[int, int, int] | None = None
    mr: int | None = None  # status reports
    status: int | None = None
    at: float = 0.0


@dataclass
class Slot:
    index: int
    stat: int
    delivery: Delivery


@dataclass(frozen=True)
class Style:
    manufacturer: str
    model: str
    revision: str
    boot_urcs: tuple[str, ...] = ()
    noise: tuple[str, ...] = ()
    noise_interval: float | None = None
    empty_slot_ok: bool = False  # AT+CMGR of an empty slot: OK (else +CMS ERROR: 321)
    reset_reenumerates: bool = False  # AT+CFUN=1,1 makes the USB device go away and come back
    memfull_urc: str | None = None


STYLES = {
    "generic": Style("FAKE", "FakeModem 1", "1.0.0"),
    "huawei": Style(
        "huawei",
        "E173",
        "11.126.85.00.209",
        boot_urcs=("^SYSSTART",),
        noise=("^RSSI:14", "^BOOT:20952000,0,0,0,6", "^MODE:5,4", "^RSSI:15"),
        noise_interval=2.0,
        reset_reenumerates=True,
        memfull_urc='^SMMEMFULL: "SM"',
    ),
    "wavecom": Style(
        "WAVECOM MODEM",
        "MULTIBAND  900E  1800",
        "R7.47.1.201112071537.FXT009 2244268 120711 15:37",
        boot_urcs=("+WIND: 13", "+WIND: 1", "+WIND: 7", "+WIND: 4"),
    ),
    "simcom": Style(
        "SIMCOM_Ltd",
        "SIMCOM_SIM800",
        "Revision:1418B04SIM800L24",
        boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"),
        empty_slot_ok=True,
    ),
}


class AtError(Exception):
    """Ends a command line with this final result (``ERROR``, ``+CME ERROR: n``, ...)."""

    def __init__(self, result: str) -> None:
        super().__init__(result)
        self.result = result


class _Prompt:
    """A handler's answer meaning: send the ``> `` prompt and read a PDU."""

    def __init__(self, length: int) -> None:
        self.length = length


@implementer(IReadWriteDescriptor)
class _Master:
    """The pty master on the reactor: bytes read go to the modem, writes are buffered."""

    def __init__(self, modem: FakeModem, fd: int) -> None:
        self.modem = modem
        self.fd = fd
        self.out = bytearray()
        self.reading = False
        self.writing = False

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "FakeModem"

    def doRead(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                return None
            self.modem._client_gone()  # EIO: no slave open any more
            return None
        if data:
            self.modem._data_received(data)
        return None

    def doWrite(self) -> None:
        self.flush()
        return None

    def write(self, data: bytes) -> None:
        self.out += data
        self.flush()

    def flush(self) -> None:
        while self.out:
            try:
                n = os.write(self.fd, self.out)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EINTR):
                    break
                self.out.clear()
                self.modem._client_gone()
                return
            del self.out[:n]
        reactor = self.modem.reactor
        if self.out and not self.writing:
            self.writing = True
            reactor.addWriter(self)
        elif not self.out and self.writing:
            self.writing = False
            reactor.removeWriter(self)

    def start(self) -> None:
        if not self.reading:
            self.reading = True
            self.modem.reactor.addReader(self)

    def stop(self) -> None:
        if self.reading:
            self.reading = False
            self.modem.reactor.removeReader(self)
        if self.writing:
            self.writing = False
            self.modem.reactor.removeWriter(self)
        self.out.clear()

    def connectionLost(self, reason: Failure) -> None:
        # the reactor saw POLLHUP: the last client closed the slave
        self.reading = self.writing = False
        self.modem._client_gone()


def _unquote(arg: str) -> str:
    arg = arg.strip()
    if len(arg) >= 2 and arg[0] == arg[-1] == '"':
        return arg[1:-1]
    return arg


def _split_args(text: str) -> list[str]:
    args, current, quoted = [], "", False
    for c in text:
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            args.append(current.strip())
            current = ""
        else:
            current += c
    args.append(current.strip())
    return args


def _int(arg: str, lo: int = 0, hi: int = 1 << 30) -> int:
    arg = arg.strip()
    if not arg.isdigit() or not lo <= int(arg) <= hi:
        raise AtError("ERROR")
    return int(arg)


# --- The modem ---------------------------------------------------------------------------------


class FakeModem:
    """A GSM modem at the far end of ``self.path`` (see the module docstring)."""

    def __init__(
        self,
        reactor: Any = None,
        directory: str | None = None,
        *,
        name: str = "ttyFAKE0",
        echo: bool = True,
        pin: str | None = None,
        puk: str = "12345678",
        puk_required: bool = False,
        pin_attempts: int = 3,
        style: str = "generic",
        register_delay: float = 0.0,
        roaming: bool = False,
        slots: int = 30,
        first_index: int = 1,
        first_mr: int = 0,
        smsc: str | None = "+4917200000",
        rssi: int = 20,
        cnmi: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0),
        text_mode: bool = False,
        imei: str = "356938035643809",
        imsi: str = "262019876543210",
        timezone: dt.tzinfo = dt.timezone(dt.timedelta(hours=2)),
        answer_delay: float = 0.0,
        send_delay: float = 0.0,
        reset_time: float = 0.3,
        reset_reenumerates: bool | None = None,
        noise_interval: float | None = None,
        noise: Sequence[str] | None = None,
        auto_status_reports: int | None = None,
        report_delay: float = 0.2,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if style not in STYLES:
            raise ValueError(f"style {style!r}: one of {', '.join(STYLES)}")
        self.reactor = reactor if reactor is not None else global_reactor
        self.directory = directory if directory is not None else "."
        os.makedirs(self.directory, exist_ok=True)
        self.name = name
        self.path = os.path.abspath(os.path.join(self.directory, name))
        self.style_name = style
        self.style = STYLES[style]
        # configuration (attributes: change them at any time)
        self.default_echo = echo
        self.pin = pin
        self.puk = puk
        self.pin_attempts = pin_attempts
        self.register_delay = register_delay
        self.roaming = roaming
        self.slots = slots
        self.first_index = first_index
        self.smsc = smsc  # the SIM's +CSCA (survives resets)
        self.rssi = rssi
        self.ber = 99
        self.default_cnmi = cnmi
        self.default_text_mode = text_mode
        self.imei = imei
        self.imsi = imsi
        self.timezone = timezone
        self.answer_delay = answer_delay
        self.answer_delays: dict[str, float] = {}  # per command, e.g. {"+CMGL": 1.0}
        self.send_delay = send_delay  # between Ctrl-Z and the +CMGS answer
        self.reset_time = reset_time
        self.reset_reenumerates = (
            self.style.reset_reenumerates if reset_reenumerates is None else reset_reenumerates
        )
        self.noise_lines = list(noise if noise is not None else self.style.noise)
        self.auto_status_reports = auto_status_reports  # TP-ST to report for SRR submits
        self.report_delay = report_delay
        self.responses: dict[str, Any] = {}  # "+CSQ": ["+CSQ: 2,99", "OK"] or f(form, args)
        self.urc_during_cmgs: list[str] = []  # lines sent between AT+CMGS=<n> and the prompt
        self.on_event = on_event
        # faults
        self.stalled = False
        self.network_down: int | None = None  # a CREG stat while the network is lost
        self.fail_queue: list[int] = []
        self._cmgs_deliveries: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        # records
        self.commands: list[str] = []
        self.ignored: list[bytes] = []  # lines that did not start with AT
        self.sent: list[Submit] = []
        self.refused: list[Submit] = []
        self.aborted = 0
        self.delivered: list[Delivery] = []
        self.deleted: list[int] = []
        self.acks = 0
        self.urcs: list[str] = []
        self.resets: list[float] = []
        self.opened = 0
        self.closed = 0
        self.lost: list[Delivery] = []
        self.events: list[str] = []
        self.dropped = 0  # octets written while nobody had the device open (or stalled)
        # state kept across resets (the SIM)
        self.store: dict[int, Slot] = {}
        self.next_mr = first_mr & 0xFF
        self.sim_state = "PUK" if puk_required else ("PIN" if pin else "READY")
        self.puk_attempts = 10
        # plumbing
        self._timers = Timers(self.reactor, "modem closed")
        self._master: _Master | None = None
        self.device: str | None = None
        self.client_open = False
        self.gone = False
        self.is_closed = False
        self._boot_on_open = False
        self._silent = False
        self._noise_call: Any = None
        self._noise_i = 0
        self._force_urcs = False
        self._generation = 0
        self._creg_call: Any = None
        self._power_on()
        self._open_pty()
        self.noise_interval = (
            noise_interval if noise_interval is not None else self.style.noise_interval
        )

    # --- pty, symlink, client presence -------------------------------------------------------

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no CR/LF translation by the line discipline
            self.device = os.ttyname(slave)
        finally:
            os.close(slave)  # the client opens it by path; HUP on the master tells it left
        os.set_blocking(master, False)
        self._master = _Master(self, master)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.device, tmp)
        os.replace(tmp, self.path)
        self.client_open = False
        self.gone = False
        self._event("appeared", device=self.device, link=self.path)
        self._watch()

    def _hup(self) -> bool:
        """True while no client has the slave open."""
        assert self._master is not None
        p = select.poll()
        p.register(self._master.fd, select.POLLIN)
        return any(ev & select.POLLHUP for _, ev in p.poll(0))

    def _watch(self) -> None:
        """Poll for a client opening the slave (the master shows POLLHUP until then)."""
        if self._master is None or self.client_open or self.is_closed:
            return
        if self._hup():
            self._later(0.01, self._watch)
            return
        self._client_came()

    def _client_came(self) -> None:
        assert self._master is not None
        self.client_open = True
        self.opened += 1
        self._event("opened", device=self.device)
        self._master.start()
        if self._boot_on_open:
            self._boot_on_open = False
            self._send_boot_urcs()

    def _client_gone(self) -> None:
        if not self.client_open or self._master is None:
            return
        self._master.stop()
        self.client_open = False
        self.closed += 1
        self._event("client_closed", device=self.device)
        self._later(0.01, self._watch)

    def _present(self) -> bool:
        """Someone has the device open (checked now, not at the next poll)."""
        if self._master is None:
            return False
        if not self.client_open and not self._hup():
            self._client_came()
        return self.client_open

    def _write(self, data: bytes) -> None:
        if self.stalled or self._silent or not self._present():
            self.dropped += len(data)
            return
        assert self._master is not None
        self._master.write(data)

    # --- timers and events -------------------------------------------------------------------

    def _later(self, delay: float, f: Callable[..., Any], *args: Any) -> Any:
        return self._timers.later(delay, f, *args)

    def _cancel(self, call: Any) -> None:
        self._timers.cancel(call)

    def _event(self, event: str, /, **fields: Any) -> None:
        line = " ".join([event] + [f"{k}={v}" for k, v in fields.items() if v is not None])
        self.events.append(line)
        if self.on_event is not None:
            self.on_event(line)

    def now(self) -> float:
        return float(self.reactor.seconds())

    def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 5.0,
        interval: float = 0.01,
        what: str = "condition",
    ) -> Deferred[Any]:
        """Poll ``predicate``; fires with its first truthy value, AssertionError after
        ``timeout`` seconds."""
        return self._timers.wait_for(predicate, timeout, interval, what)

    def close(self) -> None:
        """Stop everything: timers, the reactor's reader, the master fd and the symlink."""
        if self.is_closed:
            return
        self._drop_pty()
        self.is_closed = True
        self._timers.stop()
        self._noise_call = None

    def _drop_pty(self) -> None:
        if self._master is not None:
            self._master.stop()
            os.close(self._master.fd)
            self._master = None
        if os.path.islink(self.path) and os.readlink(self.path) == self.device:
            os.unlink(self.path)
        if self.client_open:
            self.client_open = False
            self.closed += 1

    # --- power-on state ----------------------------------------------------------------------

    def _power_on(self) -> None:
        self.echo = self.default_echo
        self.cmee = 0
        self.text_mode = self.default_text_mode
        self.cnmi = self.default_cnmi
        self.creg_n = 0
        self.cfun = 1
        self.csms = 0
        self.curc = 1
        self.cpms = ["SM", "SM", "SM"]
        self.unacked = 0
        if self.sim_state == "READY" and self.pin:
            self.sim_state = "PIN"
        self._ready_at = self.now()
        self._last_creg = self.creg_stat()
        self._schedule_registration()
        self._line = bytearray()
        self._pending_echo = bytearray()
        self._mode = "command"  # or "prompt"
        self._pdu = bytearray()
        self._cmgs_length = 0
        self._prompt_sent = True
        self._early = False
        self._answers: list[tuple[float, bytes, Callable[[], None] | None]] = []
        self._generation = getattr(self, "_generation", 0) + 1  # stale answers are dropped
        self._held_urcs: list[str] = []  # CNMI mode 0 buffer / mode 2 while busy

    # --- registration ------------------------------------------------------------------------

    def creg_stat(self) -> int:
        if self.cfun != 1 or self.sim_state != "READY":
            return NOT_REGISTERED
        if self.network_down is not None:
            return self.network_down
        if self.now() < self._ready_at + self.register_delay:
            return SEARCHING
        return ROAMING if self.roaming else HOME

    def registered(self) -> bool:
        return self.creg_stat() in (HOME, ROAMING)

    def _schedule_registration(self) -> None:
        self._cancel(self._creg_call)
        left = self._ready_at + self.register_delay - self.now()
        self._creg_call = self._later(left, self._creg_check) if left > 0 else None
        self._creg_check()

    def _creg_check(self) -> None:
        stat = self.creg_stat()
        if stat == self._last_creg:
            return
        self._last_creg = stat
        self._event("creg", stat=stat)
        if self.creg_n == 1:
            self._urc(f"+CREG: {stat}")
        elif self.creg_n == 2:
            self._urc(f"+CREG: {stat}" + (',"1A2B","00C3"' if stat in (1, 5) else ""))

    def _sim_ready(self) -> None:
        self._ready_at = self.now()
        self._schedule_registration()

    # --- faults ------------------------------------------------------------------------------

    def stall(self) -> None:
        """Answer nothing: input is swallowed (no echo), output and URCs are dropped."""
        self.stalled = True
        self._event("stalled")

    def unstall(self) -> None:
        self.stalled = False
        self._event("unstalled")

    def vanish(self) -> None:
        """The device goes away (USB unplugged): the master is closed, so the client's reads
        see the end of the file / EIO and a hang-up; the symlink is removed."""
        if self.gone or self.is_closed:
            return
        self._drop_pty()
        self.gone = True
        self._event("vanished")

    def reappear(self, boot_urcs: bool = True) -> str:
        """A new pty behind the same symlink, in power-on state (the SIM store is kept); the
        style's boot URCs are sent when a client first opens it. The new /dev/pts path."""
        if self.is_closed:
            raise RuntimeError("closed")
        if not self.gone:
            self.vanish()
        self._silent = False
        self._power_on()
        self._boot_on_open = boot_urcs
        self._open_pty()
        return self.device or ""

    def reboot(self, reset_time: float | None = None, boot_urcs: bool = True) -> None:
        """A reset the modem does by itself (as after AT+CFUN=1,1, without the OK)."""
        self._reset(self.reset_time if reset_time is None else reset_time, boot_urcs)

    def fail_next_send(self, code: int | Iterable[int] = CMS_UNKNOWN, count: int = 1) -> None:
        """Answer the next ``count`` well-formed AT+CMGS with ``+CMS ERROR: code`` (or with
        each code of a list in turn)."""
        if isinstance(code, int):
            self.fail_queue.extend([code] * count)
        else:
            self.fail_queue.extend(code)

    def deliver_during_next_cmgs(self, *args: Any, **kwargs: Any) -> None:
        """Call :meth:`deliver` with these arguments right after the next ``AT+CMGS=<n>`` is
        read, so that its URC (sent at once, whatever CNMI mode 2 would do) comes before the
        prompt."""
        self._cmgs_deliveries.append((args, kwargs))

    def network_lost(self, stat: int = NOT_REGISTERED) -> None:
        """Registration drops to ``stat`` (0 not registered, 2 searching, 3 denied);
        AT+CMGS answers ``+CMS ERROR: 331``."""
        self.network_down = stat
        self._creg_check()

    def network_back(self) -> None:
        self.network_down = None
        self._creg_check()

    def slow_registration(self, seconds: float) -> None:
        """Search for the network (CREG stat 2) for ``seconds`` from now on, then register;
        also after later resets."""
        self.register_delay = seconds
        self._ready_at = self.now()
        self._schedule_registration()

    def garbage(self, data: bytes) -> None:
        """Write raw bytes to the client."""
        self._write(data)

    def send_noise(self, line: str) -> None:
        """An unsolicited vendor line (``^RSSI:14``), framed as a URC."""
        self._urc(line, record=False)

    @property
    def noise_interval(self) -> float | None:
        return self._noise_interval

    @noise_interval.setter
    def noise_interval(self, value: float | None) -> None:
        self._noise_interval = value
        self._cancel(self._noise_call)
        self._noise_call = None
        if value:
            self._noise_call = self._later(value, self._noise_tick)

    def _noise_tick(self) -> None:
        self._noise_call = None
        if self.noise_lines and self.curc:
            line = self.noise_lines[self._noise_i % len(self.noise_lines)]
            self._noise_i += 1
            self.send_noise(line)
        if self._noise_interval:
            self._noise_call = self._later(self._noise_interval, self._noise_tick)

    # --- the network side: incoming messages and reports -------------------------------------

    def _scts(self, when: dt.datetime | float | None) -> dt.datetime:
        if isinstance(when, dt.datetime):
            return when
        t = self.now() if when is None else when
        return dt.datetime.fromtimestamp(int(t), self.timezone)

    def deliver(
        self,
        sender: str,
        text: str | None = None,
        *,
        data: bytes | None = None,
        recipient: str | None = None,
        ucs2: bool | None = None,
        concat: tuple[int, int, int] | None = None,
        udh: bytes = b"",
        alphanumeric: bool = False,
        store: bool | None = None,
        scts: dt.datetime | float | None = None,
        message_class: int | None = None,
        pid: int = 0,
        smsc: str | None = None,
    ) -> Delivery:
        """An SMS-DELIVER from ``sender`` arrives. ``ucs2`` None: GSM-7 if the text fits,
        else UCS-2; ``data``: 8-bit instead of text; ``concat`` = (ref, total, seq), ref > 255
        for a 16-bit reference; ``udh``: more information elements. ``store`` None: as
        AT+CNMI says (mt 2 → ``+CMT``, else stored, ``+CMTI`` for mt 1); True: stored;
        False: ``+CMT`` whatever CNMI says. ``recipient`` is only recorded (the SIM's own
        number). A full store loses the message (``lost``)."""
        pdu, length = build_deliver(
            sender,
            text,
            scts=self._scts(scts),
            smsc=smsc if smsc is not None else self.smsc,
            data=data,
            ucs2=ucs2,
            alphanumeric=alphanumeric,
            concat=concat,
            udh=udh,
            pid=pid,
            message_class=message_class,
        )
        rec = Delivery(
            "deliver",
            pdu,
            length,
            "",
            sender=sender,
            recipient=recipient,
            text=text,
            concat=concat,
            at=self.now(),
        )
        mode, mt = self.cnmi[0], self.cnmi[1]
        direct = store is False or (store is None and (mt == 2 or (mt == 3 and message_class == 3)))
        if direct:
            rec.route = "direct"
            self.unacked += 1
            self._cnmi_urc(f"+CMT: ,{length}\r\n{pdu}", mode)
        else:
            self._store(rec)
            if rec.index is not None and mt in (1, 2, 3):
                self._cnmi_urc(f'+CMTI: "{self.cpms[2]}",{rec.index}', mode)
        self.delivered.append(rec)
        self._event("deliver", sender=sender, route=rec.route, index=rec.index)
        return rec

    def deliver_long(
        self,
        sender: str,
        text: str,
        *,
        parts: int | None = None,
        ref: int = 0x42,
        ucs2: bool | None = None,
        order: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> list[Delivery]:
        """A concatenated message: split (``split_text``) and delivered part by part, in
        ``order`` (1-based sequence numbers) when given."""
        if ucs2 is None:
            ucs2 = not gsm7_fits(text)
        chunks = split_text(text, parts, ucs2)
        total = len(chunks)
        seqs = list(order) if order is not None else list(range(1, total + 1))
        return [
            self.deliver(sender, chunks[seq - 1], ucs2=ucs2, concat=(ref, total, seq), **kwargs)
            for seq in seqs
        ]

    def status_report(
        self,
        mr: int,
        recipient: str,
        status: int = 0x00,
        *,
        store: bool | None = None,
        scts: dt.datetime | float | None = None,
        discharge: dt.datetime | float | None = None,
        smsc: str | None = None,
    ) -> Delivery:
        """An SMS-STATUS-REPORT for TP-MR ``mr`` arrives. ``store`` None: as AT+CNMI ds says
        (1 → ``+CDS``, 2 → stored + ``+CDSI``, 0 → discarded); True: stored (``+CDSI`` when
        ds is 2); False: ``+CDS``."""
        pdu, length = build_status_report(
            mr,
            recipient,
            status,
            scts=self._scts(scts),
            discharge=self._scts(discharge),
            smsc=smsc if smsc is not None else self.smsc,
        )
        rec = Delivery("status-report", pdu, length, "", mr=mr, status=status, at=self.now())
        mode, ds = self.cnmi[0], self.cnmi[3]
        if store is False or (store is None and ds == 1):
            rec.route = "direct"
            self.unacked += 1
            self._cnmi_urc(f"+CDS: {length}\r\n{pdu}", mode)
        elif store is True or ds == 2:
            self._store(rec)
            if rec.index is not None and ds == 2:
                self._cnmi_urc(f'+CDSI: "{self.cpms[2]}",{rec.index}', mode)
        else:
            rec.route = "discarded"
        self.delivered.append(rec)
        self._event("status_report", mr=mr, status=status, route=rec.route, index=rec.index)
        return rec

    def _store(self, rec: Delivery) -> None:
        for index in range(self.first_index, self.first_index + self.slots):
            if index not in self.store:
                self.store[index] = Slot(index, REC_UNREAD, rec)
                rec.route = "stored"
                rec.index = index
                return
        rec.route = "lost"
        self.lost.append(rec)
        if self.style.memfull_urc:
            self._urc(self.style.memfull_urc, record=True)

    def messages(self) -> list[Slot]:
        return [self.store[i] for i in sorted(self.store)]

    # --- output ------------------------------------------------------------------------------

    def _urc(self, line: str, record: bool = True) -> None:
        if record:
            self.urcs.append(line)
        self._write(f"\r\n{line}\r\n".encode("latin-1"))

    def _busy(self) -> bool:
        return self._mode == "prompt" or bool(self._answers)

    def _cnmi_urc(self, line: str, mode: int) -> None:
        if self._force_urcs or mode == 1 or (mode == 2 and not self._busy()):
            self._urc(line)
        else:
            self._held_urcs.append(line)

    def _flush_held(self) -> None:
        if self.cnmi[0] == 2 and not self._busy() and self._held_urcs:
            held, self._held_urcs = self._held_urcs, []
            for line in held:
                self._urc(line)

    def _final(self, info: list[str], result: str) -> bytes:
        out = ""
        if info:
            out += "\r\n" + "\r\n".join(info) + "\r\n"
        return (out + f"\r\n{result}\r\n").encode("latin-1")

    def _answer(self, data: bytes, delay: float, then: Callable[[], None] | None = None) -> None:
        """Send an answer ``delay`` seconds from now, but never before an earlier answer."""
        self._flush_echo()
        now = self.now()
        if delay <= 0 and not self._answers:
            self._write(data)
            if then is not None:
                then()
            self._flush_held()
            return
        at = max([now + delay] + [a for a, _, _ in self._answers])
        self._answers.append((at, data, then))
        if len(self._answers) == 1:
            self._answer_call = self._later(at - now, self._next_answer, self._generation)

    def _next_answer(self, generation: int) -> None:
        if generation != self._generation or not self._answers:
            return  # the modem was reset since
        _, data, then = self._answers.pop(0)
        self._write(data)
        if then is not None:
            then()
        if self._answers:
            at = self._answers[0][0]
            self._answer_call = self._later(at - self.now(), self._next_answer, generation)
        self._flush_held()

    def _flush_echo(self) -> None:
        if self._pending_echo:
            data = bytes(self._pending_echo)
            self._pending_echo.clear()
            self._write(data)

    # --- input -------------------------------------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        if self.stalled or self._silent:
            return
        for b in data:
            if self.stalled or self._silent:
                break
            if self._mode == "prompt":
                self._prompt_byte(b)
                continue
            if self.echo:
                self._pending_echo.append(b)
            if b == CR:
                line, self._line = bytes(self._line), bytearray()
                self._command_line(line)
            elif b == LF and not self._line:
                continue
            elif b in (0x08, 0x7F):
                del self._line[-1:]
            elif len(self._line) < 2048:
                self._line.append(b)
        self._flush_echo()

    def _prompt_byte(self, b: int) -> None:
        if b == CTRL_Z:
            pdu, self._pdu = bytes(self._pdu), bytearray()
            self._mode = "command"
            self._pdu_done(pdu)
        elif b == ESC:
            self._pdu.clear()
            self._mode = "command"
            self.aborted += 1
            self._event("cmgs_aborted")
            self._answer(self._final([], "OK"), self.answer_delay)
        else:
            if not self._prompt_sent:
                self._early = True
            if self.echo:
                self._pending_echo.append(b)
            self._pdu.append(b)

    def _command_line(self, raw: bytes) -> None:
        if raw[:2].upper() != b"AT":
            if raw.strip():
                self.ignored.append(raw)
            return
        line = raw.decode("latin-1")
        self.commands.append(line)
        self._event("command", line=repr(line))
        try:
            commands = self._split(line[2:])
        except AtError as e:
            self._answer(self._final([], e.result), self.answer_delay)
            return
        info: list[str] = []
        result = "OK"
        delay = self.answer_delay
        after: Callable[[], None] | None = None
        for i, (name, form, args) in enumerate(commands):
            delay = max(delay, self.answer_delays.get(name, 0.0))
            try:
                answer = self._execute(name, form, args)
            except AtError as e:
                result = e.result
                break
            if isinstance(answer, _Prompt):
                if i != len(commands) - 1:
                    result = "ERROR"
                    break
                self._start_prompt(answer.length, info, delay)
                return
            if callable(answer):
                after = answer
                continue
            if answer and answer[-1].startswith(("OK", "ERROR", "+CME ERROR", "+CMS ERROR")):
                # a canned response with its own final result
                info += answer[:-1]
                result = answer[-1]
                if result != "OK":
                    break
                continue
            info += answer
        self._answer(self._final(info, result), delay, after)

    def _split(self, body: str) -> list[tuple[str, str, list[str]]]:
        """[(name, form, args)]: form is exec, query, test or set."""
        out: list[tuple[str, str, list[str]]] = []
        i = 0
        while i < len(body):
            c = body[i]
            if c in " ;":
                i += 1
            elif c in "+^$%*#":
                j, quoted = i, False
                while j < len(body) and (quoted or body[j] != ";"):
                    if body[j] == '"':
                        quoted = not quoted
                    j += 1
                out.append(self._extended(body[i:j]))
                i = j + 1
            elif c == "&" or c.isalpha():
                name = body[i : i + 2].upper() if c == "&" else c.upper()
                i += len(name)
                if name == "S":
                    j = i
                    while j < len(body) and body[j].isdigit():
                        j += 1
                    reg, i = body[i:j], j
                    if body[i : i + 1] == "?":
                        out.append(("S" + reg, "query", []))
                        i += 1
                    elif body[i : i + 1] == "=":
                        j = i + 1
                        while j < len(body) and body[j].isdigit():
                            j += 1
                        out.append(("S" + reg, "set", [body[i + 1 : j]]))
                        i = j
                    else:
                        raise AtError("ERROR")
                    continue
                j = i
                while j < len(body) and body[j].isdigit():
                    j += 1
                out.append((name, "exec", [body[i:j]] if j > i else []))
                i = j
            else:
                raise AtError("ERROR")
        return out

    def _extended(self, text: str) -> tuple[str, str, list[str]]:
        k = 0
        while k < len(text) and text[k] not in "=?":
            k += 1
        name, rest = text[:k].upper().strip(), text[k:]
        if rest == "":
            return name, "exec", []
        if rest == "?":
            return name, "query", []
        if rest == "=?":
            return name, "test", []
        if rest.startswith("="):
            return name, "set", _split_args(rest[1:])
        raise AtError("ERROR")

    # --- errors ------------------------------------------------------------------------------

    def cme(self, code: int) -> AtError:
        if self.cmee == 1:
            return AtError(f"+CME ERROR: {code}")
        if self.cmee == 2:
            return AtError(f"+CME ERROR: {CME_TEXT.get(code, 'unknown')}")
        return AtError("ERROR")

    @staticmethod
    def cms(code: int) -> AtError:
        return AtError(f"+CMS ERROR: {code}")

    def _need_sim_cme(self) -> None:
        if self.sim_state == "PIN":
            raise self.cme(CME_SIM_PIN)
        if self.sim_state == "PUK":
            raise self.cme(CME_SIM_PUK)

    def _need_sms(self, pdu_mode: bool = False) -> None:
        """SMS commands need the SIM (311/316); reading and sending need PDU mode (303)."""
        if self.sim_state == "PIN":
            raise self.cms(CMS_SIM_PIN)
        if self.sim_state == "PUK":
            raise self.cms(CMS_SIM_PUK)
        if pdu_mode and self.text_mode:
            raise self.cms(CMS_NOT_SUPPORTED)

    # --- commands ----------------------------------------------------------------------------

    def _execute(self, name: str, form: str, args: list[str]) -> Any:
        canned = self.responses.get(name)
        if canned is not None:
            answer = canned(form, args) if callable(canned) else list(canned)
            if answer is not None:
                return answer
        if name[:1] == "S" and name[1:].isdigit():
            return self._s_register(int(name[1:]), form)
        key = name.lstrip("+^$").replace("&", "and_")
        handler = getattr(self, "at_" + key, None) if key.replace("_", "").isalnum() else None
        if handler is None:
            raise self.cme(CME_NOT_SUPPORTED)
        return handler(form, args)

    def _s_register(self, reg: int, form: str) -> list[str]:
        values = {0: 0, 3: 13, 4: 10, 5: 8, 7: 60}
        if reg not in values:
            raise AtError("ERROR")
        return [f"{values[reg]:03d}"] if form == "query" else []

    def _identity(self, form: str, value: str) -> list[str]:
        if form == "test":
            return []
        if form != "exec":
            raise AtError("ERROR")
        return [value]

    # basic commands

    def at_E(self, form: str, args: list[str]) -> list[str]:
        value = args[0] if args else "0"
        if value not in ("0", "1"):
            raise AtError("ERROR")
        self.echo = value == "1"
        return []

    def at_Z(self, form: str, args: list[str]) -> list[str]:
        self.echo = self.default_echo
        self.cmee = 0
        return []

    at_and_F = at_Z

    def at_V(self, form: str, args: list[str]) -> list[str]:
        if args and args[0] != "1":
            raise AtError("ERROR")  # numeric result codes are not simulated
        return []

    def at_Q(self, form: str, args: list[str]) -> list[str]:
        if args and args[0] != "0":
            raise AtError("ERROR")
        return []

    def _ok(self, form: str, args: list[str]) -> list[str]:
        return []

    at_and_D = at_and_C = at_and_K = at_and_W = _ok  # AT&D2, AT&C1, AT&K0, AT&W

    def at_I(self, form: str, args: list[str]) -> list[str]:
        s = self.style
        return [f"Manufacturer: {s.manufacturer}", f"Model: {s.model}", f"Revision: {s.revision}"]

    def at_CGMI(self, form: str, args: list[str]) -> list[str]:
        return self._identity(form, self.style.manufacturer)

    def at_CGMM(self, form: str, args: list[str]) -> list[str]:
        return self._identity(form, self.style.model)

    def at_CGMR(self, form: str, args: list[str]) -> list[str]:
        return self._identity(form, self.style.revision)

    def at_CGSN(self, form: str, args: list[str]) -> list[str]:
        return self._identity(form, self.imei)

    def at_CIMI(self, form: str, args: list[str]) -> list[str]:
        self._need_sim_cme()
        return self._identity(form, self.imsi)

    def at_CMEE(self, form: str, args: list[str]) -> list[str]:
        if form == "query":
            return [f"+CMEE: {self.cmee}"]
        if form == "test":
            return ["+CMEE: (0-2)"]
        self.cmee = _int(args[0], 0, 2) if form == "set" else 0
        return []

    def at_CPIN(self, form: str, args: list[str]) -> list[str]:
        if form == "query":
            word = {"READY": "READY", "PIN": "SIM PIN", "PUK": "SIM PUK"}[self.sim_state]
            return [f"+CPIN: {word}"]
        if form == "test":
            return []
        if form != "set" or not args or not args[0]:
            raise AtError("ERROR")
        given = [_unquote(a) for a in args]
        if self.sim_state == "READY":
            raise self.cme(CME_NOT_ALLOWED)
        if self.sim_state == "PIN":
            if given[0] == self.pin:
                self.sim_state = "READY"
                self.pin_attempts = 3
                self._event("pin_ok")
                self._sim_ready()
                return []
            self.pin_attempts -= 1
            self._event("pin_wrong", left=self.pin_attempts)
            if self.pin_attempts <= 0:
                self.sim_state = "PUK"
            raise self.cme(CME_WRONG_PASSWORD)
        # PUK: AT+CPIN="<puk>","<new pin>"
        if len(given) != 2 or not given[1]:
            raise self.cme(CME_SIM_PUK)
        if given[0] != self.puk:
            self.puk_attempts -= 1
            raise self.cme(CME_WRONG_PASSWORD)
        self.pin = given[1]
        self.sim_state = "READY"
        self.pin_attempts = 3
        self._event("puk_ok")
        self._sim_ready()
        return []

    def at_CMGF(self, form: str, args: list[str]) -> list[str]:
        if form == "query":
            return [f"+CMGF: {int(self.text_mode)}"]
        if form == "test":
            return ["+CMGF: (0,1)"]
        if form != "set":
            raise AtError("ERROR")
        self.text_mode = _int(args[0], 0, 1) == 1
        return []

    def at_CSMS(self, form: str, args: list[str]) -> list[str]:
        if form == "query":
            return [f"+CSMS: {self.csms},1,1,1"]
        if form == "test":
            return ["+CSMS: (0,1)"]
        if form != "set":
            raise AtError("ERROR")
        self.csms = _int(args[0], 0, 1)
        return ["+CSMS: 1,1,1"]

    def at_CSCA(self, form: str, args: list[str]) -> list[str]:
        self._need_sms()
        if form == "query":
            if not self.smsc:
                return ['+CSCA: "",129']
            return [f'+CSCA: "{self.smsc}",{145 if self.smsc.startswith("+") else 129}']
        if form == "test":
            return []
        if form != "set" or not args:
            raise AtError("ERROR")
        number = _unquote(args[0])
        toa = _int(args[1], 0, 255) if len(args) > 1 and args[1] else None
        if toa == 145 and not number.startswith("+"):
            number = "+" + number
        if number and not number.lstrip("+").isdigit():
            raise self.cms(CMS_NOT_ALLOWED)
        self.smsc = number or None
        return []

    def at_CNMI(self, form: str, args: list[str]) -> list[str]:
        if form == "query":
            return ["+CNMI: " + ",".join(map(str, self.cnmi))]
        if form == "test":
            return ["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)"]
        if form != "set":
            raise AtError("ERROR")
        limits = (2, 3, 3, 2, 1)
        values = list(self.cnmi)
        for i, a in enumerate(args[:5]):
            if a:
                values[i] = _int(a, 0, limits[i])
        if len(args) > 5:
            raise self.cms(CMS_NOT_SUPPORTED)
        self.cnmi = (values[0], values[1], values[2], values[3], values[4])
        if self.cnmi[0] in (1, 2):
            held, self._held_urcs = self._held_urcs, []
            if self.cnmi[4] == 0 and held:

                def flush() -> None:  # after the OK
                    for line in held:
                        self._urc(line)

                return flush
        return []

    def at_CNMA(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return []
        self._need_sms()
        if not self.unacked:
            raise self.cms(CMS_NO_CNMA)
        self.unacked -= 1
        self.acks += 1
        return []

    def _cpms_line(self, with_names: bool) -> str:
        used, total = len(self.store), self.slots
        if with_names:
            return "+CPMS: " + ",".join(f'"{m}",{used},{total}' for m in self.cpms)
        return "+CPMS: " + ",".join(f"{used},{total}" for _ in self.cpms)

    def at_CPMS(self, form: str, args: list[str]) -> list[str]:
        self._need_sms()
        if form == "query":
            return [self._cpms_line(True)]
        if form == "test":
            return ['+CPMS: ("SM","ME","MT"),("SM","ME","MT"),("SM","ME","MT")']
        if form != "set" or not args or len(args) > 3:
            raise AtError("ERROR")
        names = [_unquote(a).upper() for a in args]
        if any(n not in ("SM", "ME", "MT") for n in names):
            raise self.cms(CMS_NOT_SUPPORTED)
        self.cpms[: len(names)] = names
        return [self._cpms_line(False)]

    def at_CREG(self, form: str, args: list[str]) -> list[str]:
        if form == "query":
            stat = self.creg_stat()
            extra = ',"1A2B","00C3"' if self.creg_n == 2 and stat in (1, 5) else ""
            return [f"+CREG: {self.creg_n},{stat}{extra}"]
        if form == "test":
            return ["+CREG: (0-2)"]
        if form != "set":
            raise AtError("ERROR")
        self.creg_n = _int(args[0], 0, 2)
        self._last_creg = self.creg_stat()
        return []

    def at_COPS(self, form: str, args: list[str]) -> list[str]:
        if form == "query":
            if self.registered():
                return ['+COPS: 0,0,"FAKE NET",0']
            return ["+COPS: 0"]
        if form == "test":
            return ['+COPS: (2,"FAKE NET","FAKE","26299"),,(0-4),(0-2)']
        return []

    def at_CSQ(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        if form != "exec":
            raise AtError("ERROR")
        return [f"+CSQ: {self.rssi},{self.ber}"]

    def at_CSCS(self, form: str, args: list[str]) -> list[str]:
        if form == "query":
            return ['+CSCS: "GSM"']
        return []

    def at_CFUN(self, form: str, args: list[str]) -> Any:
        if form == "query":
            return [f"+CFUN: {self.cfun}"]
        if form == "test":
            return ["+CFUN: (0,1,4),(0,1)"]
        if form != "set" or not args:
            raise AtError("ERROR")
        fun = _int(args[0], 0, 4)
        if fun not in (0, 1, 4):
            raise self.cme(CME_NOT_SUPPORTED)
        rst = _int(args[1], 0, 1) if len(args) > 1 and args[1] else 0
        if rst:
            return lambda: self._reset(self.reset_time, True)
        was = self.cfun
        self.cfun = fun
        if fun == 1 and was != 1:
            self._sim_ready()
        else:
            self._creg_check()
        return []

    def at_CURC(self, form: str, args: list[str]) -> list[str]:
        if self.style_name != "huawei":
            raise self.cme(CME_NOT_SUPPORTED)
        if form == "query":
            return [f"^CURC: {self.curc}"]
        if form == "set":
            self.curc = _int(args[0], 0, 1)
        return []

    def at_CMGR(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return []
        self._need_sms(pdu_mode=True)
        if form != "set" or len(args) != 1:
            raise AtError("ERROR")
        index = _int(args[0])
        if not self.first_index <= index < self.first_index + self.slots:
            raise self.cms(CMS_INVALID_INDEX)
        slot = self.store.get(index)
        if slot is None:
            if self.style.empty_slot_ok:
                return []
            raise self.cms(CMS_INVALID_INDEX)
        lines = [f"+CMGR: {slot.stat},,{slot.delivery.tpdu_length}", slot.delivery.pdu]
        slot.stat = REC_READ
        return lines

    def at_CMGL(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            return ["+CMGL: (0-4)"]
        self._need_sms(pdu_mode=True)
        if form == "exec":
            wanted = REC_UNREAD
        elif form == "set" and len(args) == 1:
            if not args[0].strip().isdigit():
                raise self.cms(CMS_INVALID_PDU)  # "ALL" & co. are text-mode parameters
            wanted = _int(args[0], 0, 4)
        else:
            raise AtError("ERROR")
        lines = []
        for slot in self.messages():
            if wanted == 4 or slot.stat == wanted:
                lines.append(f"+CMGL: {slot.index},{slot.stat},,{slot.delivery.tpdu_length}")
                lines.append(slot.delivery.pdu)
                slot.stat = REC_READ
        return lines

    def at_CMGD(self, form: str, args: list[str]) -> list[str]:
        if form == "test":
            lo, hi = self.first_index, self.first_index + self.slots - 1
            return [f"+CMGD: ({lo}-{hi}),(0-4)"]
        self._need_sms()
        if form != "set" or not 1 <= len(args) <= 2:
            raise AtError("ERROR")
        flag = _int(args[1], 0, 4) if len(args) == 2 and args[1] else 0
        if flag == 0:
            index = _int(args[0])
            if not self.first_index <= index < self.first_index + self.slots:
                raise self.cms(CMS_INVALID_INDEX)
            victims = [index] if index in self.store else []
        else:
            # 1: read; 2: read + sent; 3: read + sent + unsent; 4: all (nothing is "sent" here)
            victims = [i for i, s in self.store.items() if flag == 4 or s.stat == REC_READ]
        for index in sorted(victims):
            del self.store[index]
            self.deleted.append(index)
        self._event("deleted", indexes=",".join(map(str, sorted(victims))) or "-")
        return []

    def at_CMGS(self, form: str, args: list[str]) -> Any:
        if form == "test":
            return []
        self._need_sms(pdu_mode=True)
        if form != "set" or len(args) != 1:
            raise AtError("ERROR")
        length = args[0].strip()
        if not length.isdigit():
            raise self.cms(CMS_INVALID_PDU)
        if not 7 <= int(length) <= 164:
            raise self.cms(CMS_INVALID_PDU)
        return _Prompt(int(length))

    # --- AT+CMGS -----------------------------------------------------------------------------

    def _start_prompt(self, length: int, info: list[str], delay: float) -> None:
        self._mode = "prompt"
        self._pdu.clear()
        self._cmgs_length = length
        self._early = False
        self._prompt_sent = False
        self._flush_echo()
        for line in self.urc_during_cmgs:
            self._urc(line)
        deliveries, self._cmgs_deliveries = self._cmgs_deliveries, []
        self._force_urcs = True
        try:
            for args, kwargs in deliveries:
                self.deliver(*args, **kwargs)
        finally:
            self._force_urcs = False
        prefix = ("\r\n" + "\r\n".join(info) + "\r\n") if info else ""

        def sent() -> None:
            self._prompt_sent = True

        self._answer(f"{prefix}\r\n> ".encode("latin-1"), delay, sent)

    def _pdu_done(self, typed: bytes) -> None:
        now = self.now()
        text = typed.decode("latin-1")
        try:
            sub = decode_submit(text, self._cmgs_length)
        except PduError as e:
            sub = Submit(pdu=text, length=self._cmgs_length, tpdu_length=-1)
            sub.problems.append(str(e))
            error: int | None = CMS_INVALID_PDU
        else:
            error = None
            if sub.smsc is None and not self.smsc:
                error = CMS_SMSC_UNKNOWN
            elif not self.registered():
                error = CMS_NO_NETWORK
            elif self.fail_queue:
                error = self.fail_queue.pop(0)
        sub.at = now
        sub.before_prompt = self._early
        if error is not None:
            sub.error = error
            self.refused.append(sub)
            self._event("cmgs_refused", error=error, problem=(sub.problems or [None])[0])
            self._answer(self._final([], f"+CMS ERROR: {error}"), self.send_delay)
            return
        sub.mr = self.next_mr
        self.next_mr = (self.next_mr + 1) & 0xFF
        self.sent.append(sub)
        self._event("cmgs", mr=sub.mr, recipient=sub.recipient, concat=sub.concat)
        self._answer(self._final([f"+CMGS: {sub.mr}"], "OK"), self.send_delay)
        if self.auto_status_reports is not None and sub.status_report_request:
            self._later(
                self.send_delay + self.report_delay,
                self.status_report,
                sub.mr,
                sub.recipient,
                self.auto_status_reports,
            )

    # --- resets ------------------------------------------------------------------------------

    def _reset(self, reset_time: float, boot_urcs: bool) -> None:
        self.resets.append(self.now())
        self._event("reset", reenumerates=self.reset_reenumerates)
        if self.reset_reenumerates:
            self._silent = True
            gap = min(0.05, reset_time)  # the OK reaches the client before the USB device goes
            self._later(gap, self.vanish)
            self._later(reset_time, self.reappear, boot_urcs)
            return
        self._silent = True
        self._later(reset_time, self._boot, boot_urcs)

    def _boot(self, boot_urcs: bool) -> None:
        self._silent = False
        self._power_on()
        if boot_urcs:
            self._send_boot_urcs()

    def _send_boot_urcs(self) -> None:
        generation = self._generation

        def send(line: str) -> None:
            if generation == self._generation:
                self._urc(line)

        for i, line in enumerate(self.style.boot_urcs):
            if line == "+CPIN: READY" and self.sim_state != "READY":
                line = "+CPIN: SIM PIN" if self.sim_state == "PIN" else "+CPIN: SIM PUK"
            self._later(0.02 * i, send, line)


# --- Standalone ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.peers.fakemodem``: a modem behind ``--link``, events on stdout."""
    parser = argparse.ArgumentParser(prog="python -m tests.peers.fakemodem", description=__doc__)
    parser.add_argument("--link", default="/tmp/ttyFAKE0", help="the symlink to create")
    parser.add_argument("--style", default="generic", choices=sorted(STYLES))
    parser.add_argument("--pin", default=None)
    parser.add_argument("--no-echo", action="store_true")
    parser.add_argument("--register-delay", type=float, default=0.0)
    parser.add_argument("--first-mr", type=int, default=0)
    parser.add_argument(
        "--reports",
        type=lambda s: int(s, 0),
        default=None,
        metavar="TP-ST",
        help="send a status report with this status for every submit asking for one",
    )
    parser.add_argument(
        "--deliver",
        action="append",
        default=[],
        metavar="SENDER:TEXT",
        help="an incoming message once a client opened the device",
    )
    args = parser.parse_args(argv)
    link = os.path.abspath(args.link)

    def emit(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    modem = FakeModem(
        global_reactor,
        os.path.dirname(link),
        name=os.path.basename(link),
        echo=not args.no_echo,
        pin=args.pin,
        style=args.style,
        register_delay=args.register_delay,
        first_mr=args.first_mr,
        auto_status_reports=args.reports,
        on_event=emit,
    )
    pending = [tuple(d.split(":", 1)) for d in args.deliver]

    def deliver_when_open() -> None:
        if modem.opened:
            for sender, text in pending:
                modem.deliver(sender, text)
        else:
            global_reactor.callLater(0.1, deliver_when_open)  # type: ignore[attr-defined]

    if pending:
        deliver_when_open()
    print(f"device={modem.device} link={modem.path}", flush=True)
    global_reactor.addSystemEventTrigger("before", "shutdown", modem.close)  # type: ignore[attr-defined]
    global_reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
