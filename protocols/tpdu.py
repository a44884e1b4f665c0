"""3GPP TS 23.040 TPDU codec for GSM modems in PDU mode (AT+CMGF=0), sans-IO.

Scope: what a modem driver needs and nothing more.

* :func:`encode_submit` builds the SMS-SUBMIT that ``AT+CMGS`` takes (with the SMSC-address
  prefix the modem expects in PDU mode, and the TPDU length for ``AT+CMGS=<length>``).
* :func:`decode_mt` reads what the network delivers to us: SMS-DELIVER and SMS-STATUS-REPORT
  (the PDUs of ``+CMT``, ``+CDS`` and ``+CMGR`` for received messages).
* :func:`decode_submit` reads an SMS-SUBMIT back (messages stored as sent/unsent on the SIM,
  and our own output in tests).
* :func:`split_udh` and :func:`alphabet` expose the two pieces of interpretation that the
  segmentation and reassembly code shares with this module.

Text handling belongs to :mod:`protocols.gsm0338` (alphabet tables, septet packing, UCS-2);
this module only lays out octets. SMS-COMMAND and SMS-SUBMIT-REPORT / DELIVER-REPORT are out
of scope: modems do not hand them to the TE in the flows we use.

Every malformed input raises :class:`TpduError` (a ``ValueError``) naming the field at fault:
PDUs come from modems with firmware bugs and from storage of unknown origin, and a driver must
be able to reject one message without a stray ``IndexError`` taking the link down.
"""

from __future__ import annotations

import binascii
import datetime

import attrs

from protocols import gsm0338

__all__ = [
    "Concat",
    "Deliver",
    "Encoded",
    "StatusReport",
    "Submit",
    "TpduError",
    "alphabet",
    "decode_mt",
    "decode_submit",
    "encode_submit",
    "message_class",
    "split_udh",
]

MAX_UD_OCTETS = 140
"""TP-UD capacity of one short message (23.040 §9.2.3.16)."""

MAX_ADDRESS_DIGITS = 20
"""TP-DA/TP-OA/TP-RA hold at most 10 octets of semi-octets (23.040 §9.1.2.5)."""

# TP-MTI (bits 1-0 of the first octet), by direction.
_MTI_DELIVER = 0b00  # SC -> MS
_MTI_SUBMIT = 0b01  # MS -> SC (and SUBMIT-REPORT SC -> MS)
_MTI_STATUS_REPORT = 0b10  # SC -> MS (and COMMAND MS -> SC)

# First-octet bits.
_RD_OR_MMS = 0x04  # SUBMIT: TP-RD; DELIVER / STATUS-REPORT: TP-MMS
_VPF_MASK = 0x18
_VPF_NONE, _VPF_ENHANCED, _VPF_RELATIVE, _VPF_ABSOLUTE = 0x00, 0x08, 0x10, 0x18
_SRR_SRI_SRQ = 0x20  # SUBMIT: TP-SRR; DELIVER: TP-SRI; STATUS-REPORT: TP-SRQ
_UDHI = 0x40

# Type of address: bit 7 always 1, type of number in bits 6-4, numbering plan in bits 3-0.
_TOA_INTERNATIONAL = 0x91
_TOA_UNKNOWN = 0x81
_TON_INTERNATIONAL = 0b001
_TON_ALPHANUMERIC = 0b101

# IEIs of the concatenation information elements (23.040 §9.2.3.24.1 and .8).
_IEI_CONCAT_8 = 0x00
_IEI_CONCAT_16 = 0x08

# Semi-octet digits (23.040 §9.1.2.3): our characters <-> the hex nibble they travel as.
# Lower case a b c are digits 0xC-0xE; upper case is accepted on input.
_DIGIT_TO_NIBBLE = str.maketrans("*#abcABC", "abcdecde")
_NIBBLE_TO_DIGIT = str.maketrans("abcde", "*#abc")
_DIGITS = frozenset("0123456789*#abcABC")


class TpduError(ValueError):
    """A PDU (or an argument for one) that 23.040 does not allow; the message says which field."""


@attrs.frozen
class Concat:
    """Concatenation information from IEI 0x00 (8-bit ref) or 0x08 (16-bit ref)."""

    ref: int
    total: int
    seq: int  # 1-based


@attrs.frozen
class Encoded:
    """A PDU ready for ``AT+CMGS=<length>`` followed by ``hex`` and Ctrl-Z."""

    hex: str  # uppercase, SMSC-address prefix included
    length: int  # TPDU octets: the prefix excluded, as 27.005 wants for <length>


@attrs.frozen
class Deliver:
    """SMS-DELIVER (SC -> MS)."""

    smsc: str | None
    originator: str
    pid: int
    dcs: int
    scts: datetime.datetime
    udh: bytes
    concat: Concat | None
    text: str | None
    data: bytes | None
    encoding: str
    message_class: int | None
    more_messages: bool  # the inverse of TP-MMS, whose 1 means "no more messages"
    status_report_indication: bool


@attrs.frozen
class StatusReport:
    """SMS-STATUS-REPORT (SC -> MS) for a message we submitted with TP-SRR."""

    smsc: str | None
    reference: int  # TP-MR: the <mr> of +CMGS
    recipient: str
    scts: datetime.datetime
    discharge: datetime.datetime
    status: int  # TP-ST

    @property
    def final(self) -> bool:
        """True unless the SC is still trying (0x20-0x3F): no further report will come."""
        return not 0x20 <= self.status <= 0x3F

    @property
    def delivered(self) -> bool:
        """Received by the SME, forwarded unconfirmed, or replaced (0x00-0x02)."""
        return self.status <= 0x02

    @property
    def outcome(self) -> str:
        """The message's fate: "delivered", "pending" (SC still trying) or "failed".

        Everything else that is final counts as failed: 0x40-0x7F, the values >= 0x80 that
        23.040 leaves undefined, and the reserved / SC-specific "completed" values 0x03-0x1F,
        whose meaning we cannot know (so that ``outcome`` always agrees with ``delivered``).
        """
        if self.delivered:
            return "delivered"
        return "failed" if self.final else "pending"


@attrs.frozen
class Submit:
    """SMS-SUBMIT (MS -> SC), as stored on a SIM or as we sent it."""

    smsc: str | None
    reference: int
    recipient: str
    pid: int
    dcs: int
    validity: int | bytes | None  # relative octet, or the 7 raw octets of absolute/enhanced
    udh: bytes
    concat: Concat | None
    text: str | None
    data: bytes | None
    encoding: str
    status_report: bool
    reject_duplicates: bool


# --- data coding scheme (23.038 §4) ---------------------------------------------------------


def _check_octet(value: int, name: str) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise TpduError(f"{name} must be an octet value 0..255, not {value!r}")


def alphabet(dcs: int) -> str:
    """The alphabet a TP-DCS value selects: "gsm7", "8bit" or "ucs2".

    Compressed text (general groups, bit 5) is returned as "8bit": we cannot decompress it, and
    octets are the only honest rendering. Reserved groups and the reserved alphabet value fall
    back to the GSM default alphabet, as 23.038 tells receivers to do.
    """
    _check_octet(dcs, "TP-DCS")
    group = dcs >> 4
    if group <= 0x7:  # general data coding (00xx) and automatic deletion (01xx)
        if dcs & 0x20:
            return "8bit"
        return ("gsm7", "8bit", "ucs2", "gsm7")[(dcs >> 2) & 0b11]
    if group == 0xE:  # message waiting indication, store, UCS-2
        return "ucs2"
    if group == 0xF:  # data coding / message class
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"  # 0x80-0xBF reserved, 0xC0-0xDF message waiting (GSM default alphabet)


def message_class(dcs: int) -> int | None:
    """Message class 0-3 from TP-DCS, or None when the DCS carries no class."""
    _check_octet(dcs, "TP-DCS")
    if dcs < 0x80:
        return dcs & 0b11 if dcs & 0x10 else None
    if dcs >= 0xF0:
        return dcs & 0b11
    return None


# --- user data header -----------------------------------------------------------------------


def split_udh(udh: bytes) -> tuple[Concat | None, list[tuple[int, bytes]]]:
    """Concatenation info and every IE ``(iei, data)`` of a UDH given with its UDHL octet.

    A concatenation IE with a zero total, a zero sequence or a sequence beyond the total is
    listed but yields no :class:`Concat`: 23.040 tells receivers to ignore such an IE. When a
    concatenation IE repeats, the last one wins (23.040 §9.2.3.24).
    """
    if not udh:
        return None, []
    udhl = udh[0]
    if udhl + 1 != len(udh):
        raise TpduError(f"UDHL says {udhl} octets but the header has {len(udh) - 1}")
    concat: Concat | None = None
    elements: list[tuple[int, bytes]] = []
    pos, end = 1, len(udh)
    while pos < end:
        if pos + 2 > end:
            raise TpduError(f"UDH: information element at offset {pos} is cut off after its IEI")
        iei, iedl = udh[pos], udh[pos + 1]
        start = pos + 2
        pos = start + iedl
        if pos > end:
            raise TpduError(
                f"UDH: IE 0x{iei:02X} says {iedl} data octets but only {end - start} remain"
            )
        data = bytes(udh[start:pos])
        elements.append((iei, data))
        if iei == _IEI_CONCAT_8 and iedl == 3:
            concat = _concat(data[0], data[1], data[2]) or concat
        elif iei == _IEI_CONCAT_16 and iedl == 4:
            concat = _concat(data[0] << 8 | data[1], data[2], data[3]) or concat
    return concat, elements


def _concat(ref: int, total: int, seq: int) -> Concat | None:
    if total == 0 or not 1 <= seq <= total:
        return None
    return Concat(ref=ref, total=total, seq=seq)


# --- addresses (23.040 §9.1.2.5) and semi-octets ----------------------------------------------


def _swap_nibbles(hex_digits: str) -> str:
    """'1234' <-> '2143': semi-octets travel low nibble first."""
    swapped = bytearray(hex_digits, "ascii")
    swapped[0::2], swapped[1::2] = swapped[1::2], swapped[0::2]
    return swapped.decode("ascii")


def _encode_digits(digits: str, what: str) -> bytes:
    if not digits:
        raise TpduError(f"{what}: no digits")
    if len(digits) > MAX_ADDRESS_DIGITS:
        raise TpduError(f"{what}: {len(digits)} digits, at most {MAX_ADDRESS_DIGITS} allowed")
    if not _DIGITS.issuperset(digits):
        bad = next(c for c in digits if c not in _DIGITS)
        raise TpduError(f"{what}: {bad!r} is not a digit, '*', '#' or a/b/c")
    nibbles = digits.translate(_DIGIT_TO_NIBBLE)
    if len(nibbles) % 2:
        nibbles += "f"
    return bytes.fromhex(_swap_nibbles(nibbles))


def _split_number(number: str) -> tuple[int, str]:
    """(TOA, digits) for "+<digits>" (international) or "<digits>" (unknown type)."""
    if number.startswith("+"):
        return _TOA_INTERNATIONAL, number[1:]
    return _TOA_UNKNOWN, number


def _encode_address(number: str) -> bytes:
    """TP-DA: length in digits, TOA, swapped semi-octets."""
    toa, digits = _split_number(number)
    return bytes((len(digits), toa)) + _encode_digits(digits, f"recipient {number!r}")


def _encode_smsc(number: str | None) -> bytes:
    """The SMSC prefix of a PDU-mode PDU: length in octets (TOA included) or 00 for +CSCA."""
    if number is None:
        return b"\x00"
    toa, digits = _split_number(number)
    octets = _encode_digits(digits, f"SMSC {number!r}")
    return bytes((len(octets) + 1, toa)) + octets


def _decode_digits(octets: bytes, count: int, what: str) -> str:
    """``count`` semi-octet digits; a filler in the unused last nibble is ignored."""
    digits = _swap_nibbles(octets.hex())[:count]
    if "f" in digits:
        raise TpduError(f"{what}: filler 0xF inside the digits ({octets.hex().upper()})")
    return digits.translate(_NIBBLE_TO_DIGIT)


def _decode_number(toa: int, octets: bytes, count: int, what: str) -> str:
    ton = (toa >> 4) & 0b111
    if ton == _TON_ALPHANUMERIC:
        # Alphanumeric: GSM-7 packed, the length still counts semi-octets of the packed form.
        chars = count * 4 // 7
        return gsm0338.decode(gsm0338.unpack(octets, chars))
    digits = _decode_digits(octets, count, what)
    return "+" + digits if ton == _TON_INTERNATIONAL else digits


# --- timestamps (23.040 §9.2.3.11) ----------------------------------------------------------


def _decode_timestamp(octets: bytes, what: str) -> datetime.datetime:
    """7 octets of swapped BCD YY MM DD hh mm ss plus the zone in signed quarter hours."""
    digits = _swap_nibbles(octets.hex())
    # The zone's first semi-octet (the low nibble of the last octet) carries the sign in its
    # top bit and the tens digit below it; the units digit sits in the high nibble.
    tz = octets[6]
    if not digits[:12].isdigit() or tz >> 4 > 9:
        raise TpduError(f"{what}: {octets.hex().upper()} is not BCD")
    quarters = (tz & 0x07) * 10 + (tz >> 4)
    if tz & 0x08:
        quarters = -quarters
    year = int(digits[0:2])
    try:
        return datetime.datetime(
            year + (2000 if year < 90 else 1900),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            tzinfo=datetime.timezone(datetime.timedelta(minutes=15 * quarters)),
        )
    except ValueError as e:
        raise TpduError(f"{what}: {octets.hex().upper()} is not a valid time ({e})") from None


# --- reading --------------------------------------------------------------------------------


class _Reader:
    """A cursor over the PDU octets whose every read says what it was reading when short."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def octet(self, what: str) -> int:
        if self.pos >= len(self.buf):
            raise TpduError(f"truncated PDU: {what} missing at offset {self.pos}")
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def take(self, count: int, what: str) -> bytes:
        end = self.pos + count
        if end > len(self.buf):
            raise TpduError(
                f"truncated PDU: {what} needs {count} octets at offset {self.pos}, "
                f"only {len(self.buf) - self.pos} left"
            )
        value = self.buf[self.pos : end]
        self.pos = end
        return value


def _octets(pdu: str | bytes) -> bytes:
    if isinstance(pdu, str):
        text = "".join(pdu.split())
        try:
            return binascii.unhexlify(text)
        except (binascii.Error, ValueError) as e:
            raise TpduError(f"bad hex in PDU: {e}") from None
    return bytes(pdu)


def _read_smsc(r: _Reader) -> str | None:
    """The prefix of every PDU-mode PDU; None when it is empty (length 0, or a bare TOA)."""
    length = r.octet("SMSC address length")
    if not length:
        return None
    toa = r.octet("SMSC type of address")
    octets = r.take(length - 1, "SMSC address")
    if not octets:
        return None
    count = 2 * len(octets)
    if (toa >> 4) & 0b111 != _TON_ALPHANUMERIC and octets[-1] >> 4 == 0xF:
        count -= 1  # odd digit count: the length is in octets, so the filler is ours to drop
    return _decode_number(toa, octets, count, "SMSC address")


def _read_address(r: _Reader, what: str) -> str:
    count = r.octet(f"{what} length")
    toa = r.octet(f"{what} type of address")
    octets = r.take((count + 1) // 2, what)
    return _decode_number(toa, octets, count, what)


def _read_user_data(
    r: _Reader, dcs: int, udhi: bool
) -> tuple[bytes, Concat | None, str | None, bytes | None, str]:
    """(udh, concat, text, data, encoding) from TP-UDL and TP-UD.

    Octets after the user data are ignored: some modems pad stored PDUs.
    """
    encoding = alphabet(dcs)
    udl = r.octet("TP-UDL")
    if encoding == "gsm7":
        ud_octets = (udl * 7 + 7) // 8
        ud = r.take(ud_octets, f"TP-UD ({udl} septets)")
    else:
        ud_octets = udl
        ud = r.take(udl, "TP-UD")
    udh = b""
    concat: Concat | None = None
    header_octets = 0
    if udhi:
        if not ud:
            raise TpduError("TP-UDHI is set but the user data is empty")
        header_octets = ud[0] + 1
        if header_octets > ud_octets:
            raise TpduError(
                f"UDH length overruns the user data: UDHL {ud[0]} in {ud_octets} octets of TP-UD"
            )
        udh = ud[:header_octets]
        concat, _ = split_udh(udh)
    if encoding == "gsm7":
        fill = gsm0338.fill_bits(header_octets)
        header_septets = (header_octets * 8 + fill) // 7
        if header_septets > udl:
            raise TpduError(
                f"UDH length overruns the user data: {header_septets} septets of header, "
                f"TP-UDL {udl}"
            )
        septets = gsm0338.unpack(ud[header_octets:], udl - header_septets, fill)
        return udh, concat, gsm0338.decode(septets), None, encoding
    payload = ud[header_octets:]
    if encoding == "ucs2":
        return udh, concat, gsm0338.ucs2_decode(payload), None, encoding
    return udh, concat, None, payload, encoding


def decode_mt(pdu: str | bytes) -> Deliver | StatusReport:
    """Decode an SC -> MS PDU with its SMSC prefix, as ``+CMT``, ``+CDS`` and ``+CMGR`` give it.

    ``pdu`` is hex (either case, whitespace ignored) or the raw octets.
    """
    r = _Reader(_octets(pdu))
    smsc = _read_smsc(r)
    first = r.octet("first octet")
    mti = first & 0b11
    if mti == _MTI_DELIVER:
        return _read_deliver(r, smsc, first)
    if mti == _MTI_STATUS_REPORT:
        return _read_status_report(r, smsc)
    if mti == _MTI_SUBMIT:
        raise TpduError(
            "TP-MTI 01 from the SC is an SMS-SUBMIT-REPORT, which is not decoded here "
            "(a stored SMS-SUBMIT is read with decode_submit)"
        )
    raise TpduError("TP-MTI 11 is reserved")


def _read_deliver(r: _Reader, smsc: str | None, first: int) -> Deliver:
    originator = _read_address(r, "TP-OA")
    pid = r.octet("TP-PID")
    dcs = r.octet("TP-DCS")
    scts = _decode_timestamp(r.take(7, "TP-SCTS"), "TP-SCTS")
    udh, concat, text, data, encoding = _read_user_data(r, dcs, bool(first & _UDHI))
    return Deliver(
        smsc=smsc,
        originator=originator,
        pid=pid,
        dcs=dcs,
        scts=scts,
        udh=udh,
        concat=concat,
        text=text,
        data=data,
        encoding=encoding,
        message_class=message_class(dcs),
        more_messages=not first & _RD_OR_MMS,
        status_report_indication=bool(first & _SRR_SRI_SRQ),
    )


def _read_status_report(r: _Reader, smsc: str | None) -> StatusReport:
    reference = r.octet("TP-MR")
    recipient = _read_address(r, "TP-RA")
    scts = _decode_timestamp(r.take(7, "TP-SCTS"), "TP-SCTS")
    discharge = _decode_timestamp(r.take(7, "TP-DT"), "TP-DT")
    status = r.octet("TP-ST")
    # TP-PI and the PID / DCS / UD it announces may follow. Nothing in them matters for
    # matching or for the outcome, and SCs are known to truncate or pad that part with 0xFF,
    # so it is not read at all: a report must never be lost over an optional trailer.
    return StatusReport(
        smsc=smsc,
        reference=reference,
        recipient=recipient,
        scts=scts,
        discharge=discharge,
        status=status,
    )


def decode_submit(pdu: str | bytes) -> Submit:
    """Decode an SMS-SUBMIT with its SMSC prefix (``+CMGR`` of a stored stat 2/3 message)."""
    r = _Reader(_octets(pdu))
    smsc = _read_smsc(r)
    first = r.octet("first octet")
    if first & 0b11 != _MTI_SUBMIT:
        raise TpduError(f"TP-MTI {first & 0b11:02b} is not SMS-SUBMIT (01)")
    reference = r.octet("TP-MR")
    recipient = _read_address(r, "TP-DA")
    pid = r.octet("TP-PID")
    dcs = r.octet("TP-DCS")
    vpf = first & _VPF_MASK
    validity: int | bytes | None = None
    if vpf == _VPF_RELATIVE:
        validity = r.octet("TP-VP")
    elif vpf != _VPF_NONE:
        validity = r.take(7, "TP-VP")
    udh, concat, text, data, encoding = _read_user_data(r, dcs, bool(first & _UDHI))
    return Submit(
        smsc=smsc,
        reference=reference,
        recipient=recipient,
        pid=pid,
        dcs=dcs,
        validity=validity,
        udh=udh,
        concat=concat,
        text=text,
        data=data,
        encoding=encoding,
        status_report=bool(first & _SRR_SRI_SRQ),
        reject_duplicates=bool(first & _RD_OR_MMS),
    )


# --- encoding -------------------------------------------------------------------------------


def _user_data(
    encoding: str, text: str | None, data: bytes | None, udh: bytes
) -> tuple[int, bytes]:
    """(TP-UDL, TP-UD) for the payload in ``encoding`` behind ``udh``."""
    if encoding == "8bit":
        if text is not None:
            raise TpduError("an 8-bit DCS takes data=, not text=")
        payload = bytes(data or b"")
        ud = udh + payload
        return len(ud), ud
    if data is not None:
        raise TpduError(f"a {encoding} DCS takes text=, not data=")
    text = text or ""
    if encoding == "ucs2":
        try:
            ud = udh + gsm0338.ucs2_encode(text)
        except UnicodeEncodeError as e:
            raise TpduError(f"text cannot be sent as UCS-2: {e}") from None
        return len(ud), ud
    try:
        septets = gsm0338.encode(text)
    except ValueError as e:
        raise TpduError(f"text cannot be sent with a GSM 7-bit DCS: {e}") from None
    fill = gsm0338.fill_bits(len(udh))
    udl = (len(udh) * 8 + fill) // 7 + len(septets)
    # TP-UD spans ceil(UDL * 7 / 8) octets: with a header and no text, the fill bits still
    # take an octet of their own.
    return udl, (udh + gsm0338.pack(septets, fill)).ljust((udl * 7 + 7) // 8, b"\0")


def encode_submit(
    recipient: str,
    *,
    text: str | None = None,
    data: bytes | None = None,
    udh: bytes = b"",
    dcs: int = 0x00,
    pid: int = 0,
    status_report: bool = True,
    validity: int | None = None,
    reference: int = 0,
    smsc: str | None = None,
) -> Encoded:
    """One SMS-SUBMIT for ``AT+CMGS``; segmentation is the caller's job.

    The DCS decides the alphabet (:func:`alphabet`): ``text`` for GSM 7-bit and UCS-2, ``data``
    for 8-bit. ``udh`` is the complete header, UDHL included; with 7-bit text the septets start
    after the fill bits and TP-UDL counts header, fill and text in septets. ``validity`` is a
    relative TP-VP octet. Raises :class:`TpduError` for anything the PDU cannot carry, including
    user data over 140 octets.
    """
    _check_octet(dcs, "TP-DCS")
    _check_octet(pid, "TP-PID")
    _check_octet(reference, "TP-MR")
    if validity is not None:
        _check_octet(validity, "TP-VP")
    udh = bytes(udh)
    if udh:
        split_udh(udh)  # validates UDHL and the IE layout
    udl, ud = _user_data(alphabet(dcs), text, data, udh)
    if len(ud) > MAX_UD_OCTETS:
        raise TpduError(f"user data is {len(ud)} octets, at most {MAX_UD_OCTETS} fit")
    first = _MTI_SUBMIT
    if validity is not None:
        first |= _VPF_RELATIVE
    if status_report:
        first |= _SRR_SRI_SRQ
    if udh:
        first |= _UDHI
    tpdu = bytearray((first, reference))
    tpdu += _encode_address(recipient)
    tpdu += bytes((pid, dcs))
    if validity is not None:
        tpdu.append(validity)
    tpdu.append(udl)
    tpdu += ud
    return Encoded(hex=(_encode_smsc(smsc) + tpdu).hex().upper(), length=len(tpdu))
