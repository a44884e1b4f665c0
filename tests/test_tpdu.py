"""Tests for protocols.tpdu: 3GPP TS 23.040 SMS-SUBMIT / SMS-DELIVER / SMS-STATUS-REPORT.

Expected values come from PDUs laid out by hand field by field (each vector is annotated), from
published examples, and from two independent implementations on PyPI:

* ``smspdudecoder`` decodes SMS-DELIVER and SMS-SUBMIT;
* ``python-gsmmodem-new`` (``gsmmodem.pdu``) decodes all three types and encodes SMS-SUBMIT,
  splitting long texts into concatenated parts.

Known quirks of the references are worked around where they are used, and say so.
"""

from __future__ import annotations

import datetime
from io import StringIO

import pytest
from gsmmodem.pdu import _encodeRelativeValidityPeriod, decodeSmsPdu, encodeSmsSubmitPdu
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from smspdudecoder.easy import read_incoming_sms, read_outgoing_sms
from smspdudecoder.fields import SMSDeliver, SMSSubmit

from protocols import gsm0338, tpdu
from protocols.tpdu import (
    Concat,
    Deliver,
    StatusReport,
    Submit,
    TpduError,
    alphabet,
    decode_mt,
    decode_submit,
    encode_submit,
    message_class,
    split_udh,
)

relaxed = settings(deadline=None)  # property tests check behaviour, never timing


def tz(minutes: int) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(minutes=minutes))


def at(*fields: int, offset: int = 0) -> datetime.datetime:
    return datetime.datetime(*fields, tzinfo=tz(offset))


# --- hand-made and published vectors ----------------------------------------------------------

# The classic "hellohello" SMS-DELIVER:
#   07 91 9730071111F1   SMSC +79037011111 (7 octets incl. TOA, F filler)
#   00                   MTI deliver, TP-MMS=0 (more messages), no UDHI/SRI
#   0B 91 9746121611F1   TP-OA: 11 digits, international, +79642161111
#   00 00                PID, DCS (GSM 7-bit)
#   21117002459140       SCTS 12-11-07 20:54:19, zone 0x40 -> "04" = +4 quarters = +01:00
#   0A E8329BFD4697D9EC37  UDL 10 septets, "hellohello"
HELLO = "07919730071111F1000B919746121611F10000211170024591400AE8329BFD4697D9EC37"

ORIG = "0B915155214365F7"  # TP-OA +15551234567
SCTS_UTC = "12102131040000"  # 21-01-12 13:40:00 +00:00
SCTS_MINUS7 = "3130523210658A"  # 13-03-25 23:01:56, zone 0x8A -> sign, 28 quarters = -07:00

# UCS-2 "Привет": first 04 (TP-MMS=1: no more), DCS 08, UDL 12 octets.
UCS2_PRIVET = "0004" + ORIG + "0008" + SCTS_MINUS7 + "0C" + "041F04400438043204350442"
# UCS-2 "H😀" (U+1F600 as the surrogate pair D83D DE00) plus an odd trailing octet 21.
UCS2_EMOJI_ODD = "0004" + ORIG + "0008" + SCTS_UTC + "07" + "0048D83DDE00" + "21"
# Alphanumeric originators (TOA D0): 11 semi-octets = 6 characters, 20 = 11 characters.
ALNUM_MMONEY = "0004" + "0BD0CDE6DB5DCE03" + "0000" + SCTS_UTC + "02" + "E834"  # "hi"
ALNUM_DESIGN = "0004" + "14D0C4F23C7D760390EF7619" + "0000" + SCTS_UTC + "02" + "E834"
# GSM-7 part 1/2 of ref 0xCC: first 44 (UDHI, no more), UDH 05 00 03 CC 02 01 (6 octets = 48 bits
# + 1 fill bit = 7 septets), then "hi" from bit 49: 'h' 0x68 << 1 = D0, 'i' 0x69 -> UDL 9.
CONCAT8_GSM = "0044" + ORIG + "0000" + SCTS_UTC + "09" + "050003CC0201" + "D069"
# UCS-2 part 2/3 of 16-bit ref 0x1234: UDH 06 08 04 12 34 03 02, "Hi" -> UDL 7 + 4 = 0B.
CONCAT16_UCS2 = "0040" + ORIG + "0008" + SCTS_UTC + "0B" + "06080412340302" + "00480069"
# 8-bit data with 16-bit port addressing (WAP push 0B84 from 23F0): UDH 7 + data 4 = 0B.
PORTS_8BIT = "0044" + ORIG + "0004" + SCTS_UTC + "0B" + "060504" + "0B8423F0" + "DEADBEEF"
# Flash class 1 (DCS F1), TP-SRI set and TP-MMS set (first 24), "hi".
SRI_CLASS1 = "0024" + ORIG + "00F1" + SCTS_UTC + "02" + "E834"

# SMS-STATUS-REPORT: first 06 (MTI 10, TP-MMS), MR D6, TP-RA +31628870634,
# SCTS 11-01-11 17:59:15 +01:00, TP-DT 17:59:17 +01:00, then TP-ST.
SR_HEAD = "0006D6" + "0B911326880736F4" + "11101171955140" + "11101171957140"
SR_DELIVERED = SR_HEAD + "00"
SR_PENDING = "0006D6" + "0B911326880736F4" + "11101171955140" + SCTS_MINUS7 + "21"
SR_FAILED = "07919730071111F1" + "0606" + "05812143F5" + SCTS_MINUS7 + SCTS_UTC + "45"

# A published SMS-SUBMIT: no SMSC, first 11 (MTI 01, VPF relative), MR 00, TP-DA +46708251358,
# PID 00, DCS 00, VP AA (4 days), UDL 0A "hellohello".
SUBMIT_HELLO = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"

DELIVERS = [
    HELLO,
    UCS2_PRIVET,
    UCS2_EMOJI_ODD,
    ALNUM_MMONEY,
    ALNUM_DESIGN,
    CONCAT8_GSM,
    CONCAT16_UCS2,
    PORTS_8BIT,
    SRI_CLASS1,
]
REPORTS = [SR_DELIVERED, SR_PENDING, SR_FAILED]
VECTORS = [*DELIVERS, *REPORTS, SUBMIT_HELLO]


def deliver(pdu: str | bytes) -> Deliver:
    result = decode_mt(pdu)
    assert isinstance(result, Deliver)
    return result


def report(pdu: str | bytes) -> StatusReport:
    result = decode_mt(pdu)
    assert isinstance(result, StatusReport)
    return result


class TestDeliverVectors:
    def test_hellohello(self) -> None:
        d = deliver(HELLO)
        assert d == Deliver(
            smsc="+79037011111",
            originator="+79642161111",
            pid=0,
            dcs=0,
            scts=at(2012, 11, 7, 20, 54, 19, offset=60),
            udh=b"",
            concat=None,
            text="hellohello",
            data=None,
            encoding="gsm7",
            message_class=None,
            more_messages=True,
            status_report_indication=False,
        )
        assert d.scts.utcoffset() == datetime.timedelta(hours=1)

    def test_input_forms(self) -> None:
        expected = deliver(HELLO)
        assert deliver(HELLO.lower()) == expected
        assert deliver(" " + HELLO[:20] + "\r\n" + HELLO[20:] + "\n") == expected
        assert deliver(bytes.fromhex(HELLO)) == expected
        assert deliver(bytearray.fromhex(HELLO)) == expected

    def test_ucs2_negative_timezone(self) -> None:
        d = deliver(UCS2_PRIVET)
        assert (d.text, d.data, d.encoding) == ("Привет", None, "ucs2")
        assert d.smsc is None
        assert d.originator == "+15551234567"
        assert d.more_messages is False
        assert d.scts == at(2013, 3, 25, 23, 1, 56, offset=-7 * 60)
        assert d.scts.utcoffset() == datetime.timedelta(hours=-7)

    def test_ucs2_surrogate_pair_and_odd_octet(self) -> None:
        d = deliver(UCS2_EMOJI_ODD)
        assert d.text == "H\U0001f600"
        assert d.scts == at(2021, 1, 12, 13, 40, 0)

    def test_alphanumeric_originators(self) -> None:
        assert deliver(ALNUM_MMONEY).originator == "MMoney"
        assert deliver(ALNUM_DESIGN).originator == "Design@Home"
        assert deliver(ALNUM_DESIGN).text == "hi"

    def test_concat_8bit_reference_gsm7(self) -> None:
        d = deliver(CONCAT8_GSM)
        assert d.udh == bytes.fromhex("050003CC0201")
        assert d.concat == Concat(ref=0xCC, total=2, seq=1)
        assert d.text == "hi"
        assert d.encoding == "gsm7"

    def test_concat_16bit_reference_ucs2(self) -> None:
        d = deliver(CONCAT16_UCS2)
        assert d.udh == bytes.fromhex("06080412340302")
        assert d.concat == Concat(ref=0x1234, total=3, seq=2)
        assert d.text == "Hi"
        assert d.more_messages is True

    def test_8bit_with_ports(self) -> None:
        d = deliver(PORTS_8BIT)
        assert (d.text, d.data, d.encoding) == (None, bytes.fromhex("DEADBEEF"), "8bit")
        assert d.concat is None
        assert split_udh(d.udh) == (None, [(0x05, bytes.fromhex("0B8423F0"))])

    def test_flags_and_class(self) -> None:
        d = deliver(SRI_CLASS1)
        assert d.status_report_indication is True
        assert d.more_messages is False
        assert d.message_class == 1
        assert d.dcs == 0xF1
        assert d.text == "hi"

    def test_flash_message_class_0(self) -> None:
        d = deliver("0004" + ORIG + "0010" + SCTS_UTC + "02E834")
        assert (d.message_class, d.encoding, d.text) == (0, "gsm7", "hi")

    def test_pid_and_empty_message(self) -> None:
        d = deliver("0004" + ORIG + "4000" + SCTS_UTC + "00")
        assert (d.pid, d.text) == (0x40, "")

    def test_unknown_toa_digits_as_is(self) -> None:
        # TOA 81 (unknown) and A1 (national): no "+"; 0xA-0xC nibbles are * # a
        d = deliver("0004" + "0581" + "2143F5" + "0000" + SCTS_UTC + "00")
        assert d.originator == "12345"
        d = deliver("0004" + "06A1" + "A1B2C3" + "0000" + SCTS_UTC + "00")
        assert d.originator == "1*2#3a"  # low nibble first: A1 -> "1", "*"

    def test_smsc_odd_and_even_digits(self) -> None:
        # SMSC length counts octets incl. TOA: 06 91 + 5 octets = 10 digits, no filler.
        d = deliver("06919471103254" + "04" + ORIG + "0000" + SCTS_UTC + "00")
        assert d.smsc == "+4917012345"
        d = deliver("0481214365" + "04" + ORIG + "0000" + SCTS_UTC + "00")
        assert d.smsc == "123456"

    def test_smsc_bare_toa_is_none(self) -> None:
        assert deliver("0191" + "04" + ORIG + "0000" + SCTS_UTC + "00").smsc is None

    def test_years_before_2000(self) -> None:
        d = deliver("0004" + ORIG + "0000" + "99211332959500" + "00")
        assert d.scts == at(1999, 12, 31, 23, 59, 59)
        d = deliver("0004" + ORIG + "0000" + "98102131040000" + "00")
        assert d.scts.year == 2089

    def test_positive_timezone_with_tens(self) -> None:
        # zone 0x23: low nibble 3 = tens, high nibble 2 = units -> 32 quarters = +08:00.
        # zone 0x59: low nibble 9 = sign bit (8) + tens 1, units 5 -> -15 quarters = -03:45.
        d = deliver("0004" + ORIG + "0000" + "70402132522423" + "00")
        assert d.scts == at(2007, 4, 12, 23, 25, 42, offset=8 * 60)
        d = deliver("0004" + ORIG + "0000" + "70402132522459" + "00")
        assert d.scts.utcoffset() == datetime.timedelta(hours=-3, minutes=-45)


class TestStatusReportVectors:
    def test_delivered(self) -> None:
        r = report(SR_DELIVERED)
        assert r == StatusReport(
            smsc=None,
            reference=0xD6,
            recipient="+31628870634",
            scts=at(2011, 1, 11, 17, 59, 15, offset=60),
            discharge=at(2011, 1, 11, 17, 59, 17, offset=60),
            status=0,
        )
        assert (r.final, r.delivered, r.outcome) == (True, True, "delivered")

    def test_pending_negative_timezone(self) -> None:
        r = report(SR_PENDING)
        assert r.status == 0x21
        assert r.discharge == at(2013, 3, 25, 23, 1, 56, offset=-7 * 60)
        assert (r.final, r.delivered, r.outcome) == (False, False, "pending")

    def test_failed_with_smsc(self) -> None:
        r = report(SR_FAILED)
        assert r.smsc == "+79037011111"
        assert r.reference == 6
        assert r.recipient == "12345"
        assert r.scts.utcoffset() == datetime.timedelta(hours=-7)
        assert r.discharge == at(2021, 1, 12, 13, 40)
        assert (r.final, r.delivered, r.outcome) == (True, False, "failed")

    @pytest.mark.parametrize(
        ("status", "final", "delivered", "outcome"),
        [
            (0x00, True, True, "delivered"),
            (0x01, True, True, "delivered"),
            (0x02, True, True, "delivered"),
            (0x03, True, False, "failed"),
            (0x1F, True, False, "failed"),
            (0x20, False, False, "pending"),
            (0x2F, False, False, "pending"),
            (0x3F, False, False, "pending"),
            (0x40, True, False, "failed"),
            (0x4F, True, False, "failed"),
            (0x62, True, False, "failed"),
            (0x7F, True, False, "failed"),
            (0x80, True, False, "failed"),
            (0xFF, True, False, "failed"),
        ],
    )
    def test_status_classes(self, status: int, final: bool, delivered: bool, outcome: str) -> None:
        r = report(SR_HEAD + f"{status:02X}")
        assert (r.status, r.final, r.delivered, r.outcome) == (status, final, delivered, outcome)

    @pytest.mark.parametrize(
        "trailer",
        [
            "00",  # TP-PI: nothing follows
            "03",  # TP-PI announces PID and DCS, both missing
            "0300",  # ... PID present, DCS missing
            "07000005",  # PID, DCS, UDL 5 but no UD
            "0700000548656C6C6F",  # complete optional part (8-bit "Hello")
            "FF",  # padding seen from some SCs
            "FFFFFFFF",
        ],
    )
    def test_optional_part_is_lenient(self, trailer: str) -> None:
        assert report(SR_DELIVERED + trailer) == report(SR_DELIVERED)

    def test_srq_bit_does_not_matter(self) -> None:
        assert report("0026" + SR_DELIVERED[4:]) == report(SR_DELIVERED)


class TestSubmitVectors:
    def test_decode_published_submit(self) -> None:
        s = decode_submit(SUBMIT_HELLO)
        assert s == Submit(
            smsc=None,
            reference=0,
            recipient="+46708251358",
            pid=0,
            dcs=0,
            validity=0xAA,
            udh=b"",
            concat=None,
            text="hellohello",
            data=None,
            encoding="gsm7",
            status_report=False,
            reject_duplicates=False,
        )

    def test_encode_matches_published_submit(self) -> None:
        e = encode_submit("+46708251358", text="hellohello", validity=0xAA, status_report=False)
        assert e.hex == SUBMIT_HELLO
        assert e.length == len(SUBMIT_HELLO) // 2 - 1

    def test_encode_layout_by_hand(self) -> None:
        e = encode_submit(
            "12345", data=b"\x01\x02", dcs=0x04, reference=0x42, pid=0x7F, smsc="+4917012345"
        )
        # SMSC 06 91 9471103254 | first 21 (SUBMIT, SRR) | MR 42 | DA 05 81 2143F5 | PID 7F |
        # DCS 04 | UDL 02 | 0102
        assert e.hex == "0691947110325421420581" + "2143F57F04020102"
        assert e.length == 12

    def test_absolute_and_enhanced_validity(self) -> None:
        body = "000B916407281553F80000" + "11101171955140" + "0AE8329BFD4697D9EC37"
        s = decode_submit("0019" + body)  # VPF 11 absolute
        assert s.validity == bytes.fromhex("11101171955140")
        assert s.text == "hellohello"
        s = decode_submit("000D" + body)  # VPF 01 enhanced, and TP-RD
        assert s.validity == bytes.fromhex("11101171955140")
        assert s.reject_duplicates is True
        assert s.text == "hellohello"


# --- DCS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dcs", "expected", "cls"),
    [
        (0x00, "gsm7", None),
        (0x04, "8bit", None),
        (0x08, "ucs2", None),
        (0x0C, "gsm7", None),  # reserved alphabet value: GSM default
        (0x10, "gsm7", 0),
        (0x11, "gsm7", 1),
        (0x15, "8bit", 1),
        (0x16, "8bit", 2),
        (0x1A, "ucs2", 2),
        (0x1B, "ucs2", 3),
        (0x1F, "gsm7", 3),  # reserved alphabet value with class
        (0x20, "8bit", None),  # compressed GSM text: cannot be decompressed -> octets
        (0x38, "8bit", 0),  # compressed UCS-2 with class
        (0x40, "gsm7", None),  # automatic deletion group
        (0x44, "8bit", None),
        (0x48, "ucs2", None),
        (0x52, "gsm7", 2),
        (0x80, "gsm7", None),  # reserved groups
        (0xBF, "gsm7", None),
        (0xC0, "gsm7", None),  # message waiting, discard
        (0xCB, "gsm7", None),
        (0xD0, "gsm7", None),  # message waiting, store
        (0xDF, "gsm7", None),
        (0xE0, "ucs2", None),  # message waiting, store, UCS-2
        (0xEF, "ucs2", None),
        (0xF0, "gsm7", 0),
        (0xF1, "gsm7", 1),
        (0xF4, "8bit", 0),
        (0xF7, "8bit", 3),
        (0xF8, "gsm7", 0),  # bit 3 reserved
        (0xFF, "8bit", 3),
    ],
)
def test_alphabet_and_class(dcs: int, expected: str, cls: int | None) -> None:
    assert alphabet(dcs) == expected
    assert message_class(dcs) == cls


@pytest.mark.parametrize("dcs", [-1, 256, 0x1FF])
def test_alphabet_rejects_non_octets(dcs: int) -> None:
    with pytest.raises(TpduError, match="TP-DCS"):
        alphabet(dcs)


# --- UDH ---------------------------------------------------------------------------------------


class TestSplitUdh:
    def test_empty(self) -> None:
        assert split_udh(b"") == (None, [])

    def test_concat_8(self) -> None:
        assert split_udh(bytes.fromhex("050003AB0302")) == (
            Concat(0xAB, 3, 2),
            [(0x00, bytes.fromhex("AB0302"))],
        )

    def test_concat_16_among_other_ies(self) -> None:
        udh = bytes.fromhex("0F" + "0504" + "0B8423F0" + "0804" + "BEEF" + "0201" + "2401" + "01")
        concat, ies = split_udh(udh)
        assert concat == Concat(0xBEEF, 2, 1)
        assert ies == [
            (0x05, bytes.fromhex("0B8423F0")),
            (0x08, bytes.fromhex("BEEF0201")),
            (0x24, b"\x01"),
        ]

    @pytest.mark.parametrize(
        "udh",
        [
            "050003AB0000",  # total 0
            "050003AB0300",  # seq 0
            "050003AB0304",  # seq > total
            "0400020102",  # IEDL 2: not a concatenation IE we understand
            "060804AB000000",
        ],
    )
    def test_invalid_concat_is_ignored(self, udh: str) -> None:
        concat, ies = split_udh(bytes.fromhex(udh))
        assert concat is None
        assert len(ies) == 1

    def test_last_concat_wins(self) -> None:
        concat, _ = split_udh(bytes.fromhex("0A" + "000301" + "0201" + "000302" + "0303"))
        assert concat == Concat(2, 3, 3)

    def test_empty_ie(self) -> None:
        assert split_udh(bytes.fromhex("020A00")) == (None, [(0x0A, b"")])

    @pytest.mark.parametrize(
        ("udh", "match"),
        [
            ("06000301", "UDHL says 6"),
            ("0300030101", "UDHL says 3"),
            ("0400030101", "says 3 data octets but only 2"),
            ("0400010005", "cut off after its IEI"),
            ("0105", "cut off"),
        ],
    )
    def test_malformed(self, udh: str, match: str) -> None:
        with pytest.raises(TpduError, match=match):
            split_udh(bytes.fromhex(udh))


# --- encoder details --------------------------------------------------------------------------


class TestEncode:
    def test_first_octet_flags(self) -> None:
        cases = [
            ({}, 0x21),
            ({"status_report": False}, 0x01),
            ({"validity": 0}, 0x31),
            ({"udh": bytes.fromhex("050003010101")}, 0x61),
            ({"udh": bytes.fromhex("050003010101"), "validity": 255, "status_report": False}, 0x51),
        ]
        for kwargs, first in cases:
            e = encode_submit("+1", text="x", **kwargs)  # type: ignore[arg-type]
            assert int(e.hex[2:4], 16) == first, kwargs

    def test_toa(self) -> None:
        assert encode_submit("+4917012345", text="").hex[6:10] == "0A91"
        assert encode_submit("4917012345", text="").hex[6:10] == "0A81"

    def test_special_digits(self) -> None:
        e = encode_submit("*1#2a3B", text="")
        assert e.hex[6:18] == "07811A2B3CFD"  # first digit in the low nibble
        assert decode_submit(e.hex).recipient == "*1#2a3b"

    def test_smsc_prefix(self) -> None:
        assert encode_submit("1", text="").hex.startswith("0021")
        e = encode_submit("1", text="", smsc="+79037011111")
        assert e.hex.startswith("07919730071111F121")
        assert decode_submit(e.hex).smsc == "+79037011111"
        e = encode_submit("1", text="", smsc="123456")
        assert e.hex.startswith("0481214365" + "21")

    def test_length_excludes_smsc(self) -> None:
        a = encode_submit("+4917012345", text="hello")
        b = encode_submit("+4917012345", text="hello", smsc="+79037011111")
        assert a.length == b.length == len(a.hex) // 2 - 1
        assert b.hex.endswith(a.hex[2:])

    def test_gsm7_udh_fill_and_udl(self) -> None:
        # 6-octet UDH: 48 bits + 1 fill bit = 7 septets, + 2 text septets -> UDL 9; hand-made.
        e = encode_submit("+15551234567", text="hi", udh=bytes.fromhex("050003CC0201"))
        assert e.hex.endswith("09" + "050003CC0201" + "D069")
        # 7-octet UDH: 56 bits, no fill: 8 septets + 1 -> UDL 9, "h" right after.
        e = encode_submit("+1", text="h", udh=bytes.fromhex("06080412340302"))
        assert e.hex.endswith("09" + "06080412340302" + "68")

    def test_udh_only(self) -> None:
        s = decode_submit(encode_submit("+1", text="", udh=bytes.fromhex("050003010101")).hex)
        assert (s.text, s.concat) == ("", Concat(1, 1, 1))

    @pytest.mark.parametrize(
        ("kwargs", "fits"),
        [
            ({"text": "a" * 160}, True),
            ({"text": "a" * 161}, False),
            ({"text": "€" * 80}, True),  # extension characters cost 2 septets
            ({"text": "€" * 80 + "a"}, False),
            ({"text": "a" * 153, "udh": bytes.fromhex("050003010201")}, True),
            ({"text": "a" * 154, "udh": bytes.fromhex("050003010201")}, False),
            ({"text": "a" * 152, "udh": bytes.fromhex("06080401000201")}, True),
            ({"text": "a" * 153, "udh": bytes.fromhex("06080401000201")}, False),
            ({"text": "ж" * 70, "dcs": 0x08}, True),
            ({"text": "ж" * 71, "dcs": 0x08}, False),
            ({"text": "\U0001f600" * 35, "dcs": 0x08}, True),  # 35 pairs = 140 octets
            ({"text": "\U0001f600" * 35 + "a", "dcs": 0x08}, False),
            ({"text": "ж" * 67, "dcs": 0x08, "udh": bytes.fromhex("050003010201")}, True),
            ({"text": "ж" * 68, "dcs": 0x08, "udh": bytes.fromhex("050003010201")}, False),
            ({"data": bytes(140), "dcs": 0x04}, True),
            ({"data": bytes(141), "dcs": 0x04}, False),
            ({"data": bytes(134), "dcs": 0xF4, "udh": bytes.fromhex("050003010201")}, True),
            ({"data": bytes(133), "dcs": 0x04, "udh": bytes.fromhex("06080401000201")}, True),
            ({"data": bytes(134), "dcs": 0x04, "udh": bytes.fromhex("06080401000201")}, False),
        ],
    )
    def test_140_octet_limit(self, kwargs: dict[str, object], fits: bool) -> None:
        if not fits:
            with pytest.raises(TpduError, match="at most 140"):
                encode_submit("+4917012345", **kwargs)  # type: ignore[arg-type]
            return
        e = encode_submit("+4917012345", **kwargs)  # type: ignore[arg-type]
        raw = bytes.fromhex(e.hex)
        # SMSC 00, first, MR, DA (2 + 5), PID, DCS, UDL: 13 octets before the user data
        assert len(raw) - 13 == 140
        s = decode_submit(e.hex)
        assert (s.text, s.data) == (kwargs.get("text"), kwargs.get("data"))
        # and an independent decoder reads the same at the limit
        theirs = decodeSmsPdu(e.hex)
        assert theirs["tpdu_length"] == e.length
        if "text" in kwargs and gsmmodem_reads_gsm7_after(kwargs.get("udh", b"")):
            assert same_utf16(theirs["text"], str(kwargs["text"]))


# --- errors ------------------------------------------------------------------------------------


class TestDecodeErrors:
    @pytest.mark.parametrize("pdu", [*DELIVERS, SR_DELIVERED, SR_PENDING, SR_FAILED])
    def test_every_truncation_of_mt(self, pdu: str) -> None:
        for cut in range(0, len(pdu), 2):
            with pytest.raises(TpduError, match=r"truncated|overruns|UDHI"):
                decode_mt(pdu[:cut])

    def test_every_truncation_of_submit(self) -> None:
        pdus = [
            SUBMIT_HELLO,
            encode_submit("+1", text="hi", udh=bytes.fromhex("050003010101"), smsc="+12").hex,
            encode_submit("+1", data=b"ab", dcs=4).hex,
        ]
        for pdu in pdus:
            for cut in range(0, len(pdu), 2):
                with pytest.raises(TpduError, match=r"truncated|overruns|UDHI"):
                    decode_submit(pdu[:cut])

    @pytest.mark.parametrize("pdu", ["0G", "000", "00 4", "zz", "0004é0"])
    def test_bad_hex(self, pdu: str) -> None:
        with pytest.raises(TpduError, match="bad hex"):
            decode_mt(pdu)
        with pytest.raises(TpduError, match="bad hex"):
            decode_submit(pdu)

    def test_empty(self) -> None:
        with pytest.raises(TpduError, match="SMSC address length"):
            decode_mt("")
        with pytest.raises(TpduError, match="truncated"):
            decode_submit(b"")

    @pytest.mark.parametrize(
        ("pdu", "match"),
        [
            ("FF91" + "9730071111F1" + HELLO[16:], "SMSC address needs 254"),
            ("0004" + "FE91" + "5155214365F7" + "0000" + SCTS_UTC + "00", "TP-OA needs 127"),
            ("0004" + ORIG + "0000" + SCTS_UTC + "0AE8329BFD", "TP-UD .10 septets. needs 9"),
            ("0004" + ORIG + "0008" + SCTS_UTC + "040048", "TP-UD needs 4"),
            (SR_HEAD[:-14] + "111011", "TP-DT needs 7"),
        ],
    )
    def test_length_fields_that_overrun(self, pdu: str, match: str) -> None:
        with pytest.raises(TpduError, match=match):
            decode_mt(pdu)

    @pytest.mark.parametrize(
        ("pdu", "match"),
        [
            ("0004" + "0B91" + "51F5214365F7" + "0000" + SCTS_UTC + "00", "TP-OA: filler"),
            ("0481" + "21F365" + "04" + ORIG + "0000" + SCTS_UTC + "00", "SMSC address: filler"),
            ("0004" + ORIG + "0000" + "1F102131040000" + "00", "TP-SCTS: .* is not BCD"),
            ("0004" + ORIG + "0000" + "12102131040A00" + "00", "TP-SCTS: .* is not BCD"),
            ("0004" + ORIG + "0000" + "121021310400A0" + "00", "TP-SCTS: .* is not BCD"),
            ("0004" + ORIG + "0000" + "12314131040000" + "00", "not a valid time"),  # month 13
            ("0004" + ORIG + "0000" + "12102172040000" + "00", "not a valid time"),  # hour 27
            ("0004" + ORIG + "0000" + "12102331040000" + "00", "not a valid time"),  # day 32
            ("0004" + ORIG + "0000" + "12200331040000" + "00", "not a valid time"),  # 30 Feb
            ("0004" + ORIG + "0000" + "12102131060000" + "00", "not a valid time"),  # minute 60
            (SR_HEAD[:-14] + "11101171F57140" + "00", "TP-DT: .* is not BCD"),
        ],
    )
    def test_bad_bcd(self, pdu: str, match: str) -> None:
        with pytest.raises(TpduError, match=match):
            decode_mt(pdu)

    @pytest.mark.parametrize(
        ("pdu", "match"),
        [
            # UDHL 0x10 in 9 octets of UCS-2 user data
            ("0044" + ORIG + "0008" + SCTS_UTC + "09" + "10" + "00" * 8, "UDH length overruns"),
            # GSM-7: UDL 7 septets = 7 octets hold the 7-octet header but not its 8 septets
            ("0044" + ORIG + "0000" + SCTS_UTC + "07" + "06080412340302", "UDH length overruns"),
            ("0044" + ORIG + "0000" + SCTS_UTC + "00", "UDHI is set but the user data is empty"),
            ("0044" + ORIG + "0004" + SCTS_UTC + "04" + "03000301", "says 3 data octets"),
        ],
    )
    def test_udh_overruns(self, pdu: str, match: str) -> None:
        with pytest.raises(TpduError, match=match):
            decode_mt(pdu)

    def test_mti_for_direction(self) -> None:
        with pytest.raises(TpduError, match="SUBMIT-REPORT"):
            decode_mt(SUBMIT_HELLO)
        with pytest.raises(TpduError, match="MTI 11 is reserved"):
            decode_mt("0003" + HELLO[18:])
        for pdu in (HELLO, SR_DELIVERED, "0003" + HELLO[18:]):
            with pytest.raises(TpduError, match="not SMS-SUBMIT"):
                decode_submit(pdu)

    def test_trailing_octets_ignored(self) -> None:
        assert deliver(HELLO + "0000") == deliver(HELLO)


class TestEncodeErrors:
    @pytest.mark.parametrize(
        ("recipient", "match"),
        [
            ("", "no digits"),
            ("+", "no digits"),
            ("+49 170", "' ' is not a digit"),
            ("+49-170", "'-' is not a digit"),
            ("49d", "'d' is not a digit"),
            ("++49", "'\\+' is not a digit"),
            ("1" * 21, "21 digits, at most 20"),
        ],
    )
    def test_bad_recipient(self, recipient: str, match: str) -> None:
        with pytest.raises(TpduError, match=match):
            encode_submit(recipient, text="x")

    def test_bad_smsc(self) -> None:
        with pytest.raises(TpduError, match="SMSC"):
            encode_submit("1", text="x", smsc="+")
        with pytest.raises(TpduError, match="SMSC"):
            encode_submit("1", text="x", smsc="+49 1")

    def test_20_digits_is_fine(self) -> None:
        assert (
            decode_submit(encode_submit("+" + "9" * 20, text="x").hex).recipient == "+" + "9" * 20
        )

    @pytest.mark.parametrize("text", ["`", "Ā", "ж", "\x1b", "日本", "a\U0001f600"])
    def test_gsm7_unencodable(self, text: str) -> None:
        with pytest.raises(TpduError, match="GSM 7-bit"):
            encode_submit("1", text=text)
        with pytest.raises(TpduError, match="GSM 7-bit"):
            encode_submit("1", text=text, dcs=0xF0)

    def test_lone_surrogate(self) -> None:
        with pytest.raises(TpduError, match="UCS-2"):
            encode_submit("1", text="a\ud800", dcs=0x08)

    def test_payload_kind_must_match_dcs(self) -> None:
        with pytest.raises(TpduError, match="takes data="):
            encode_submit("1", text="x", dcs=0x04)
        with pytest.raises(TpduError, match="takes text="):
            encode_submit("1", data=b"x")
        with pytest.raises(TpduError, match="takes text="):
            encode_submit("1", data=b"x", dcs=0x08)

    @pytest.mark.parametrize("field", ["dcs", "pid", "reference", "validity"])
    @pytest.mark.parametrize("value", [-1, 256])
    def test_octet_ranges(self, field: str, value: int) -> None:
        with pytest.raises(TpduError, match=r"0\.\.255"):
            encode_submit("1", text="x", **{field: value})  # type: ignore[arg-type]

    @pytest.mark.parametrize("udh", ["06000301", "050003010101FF", "0400030101", "01"])
    def test_bad_udh(self, udh: str) -> None:
        with pytest.raises(TpduError, match="UDH"):
            encode_submit("1", text="x", udh=bytes.fromhex(udh))


def test_error_is_value_error() -> None:
    assert issubclass(TpduError, ValueError)
    assert tpdu.MAX_UD_OCTETS == 140


# --- cross-checks against independent decoders ------------------------------------------------


def gsmmodem_reads_gsm7_after(udh: bytes) -> bool:
    """gsmmodem loses the first septet after a UDH that needs no fill bits (7, 14... octets).

    smspdudecoder and the hand-made vectors agree with our layout there, so the text check
    against gsmmodem is skipped for those headers only.
    """
    return not udh or gsm0338.fill_bits(len(udh)) != 0


def smspdudecoder_reads_gsm7_after(udh: bytes) -> bool:
    """smspdudecoder unpacks the header as if it were text and then skips its septets by
    character count, so a header whose septets contain ESC (0x1B) shifts the text by one.
    """
    if not udh:
        return True
    header_septets = (len(udh) * 8 + gsm0338.fill_bits(len(udh))) // 7
    return gsm0338.ESC not in gsm0338.unpack(udh + b"\0", header_septets)


def same_utf16(theirs: str, ours: str) -> bool:
    """gsmmodem decodes UCS-2 unit by unit, so a surrogate pair comes back as two halves."""
    return theirs.encode("utf-16-be", "surrogatepass") == ours.encode("utf-16-be")


# smspdudecoder raises on the odd trailing octet of UCS2_EMOJI_ODD: leave that one out.
@pytest.mark.parametrize("pdu", [p for p in DELIVERS if p != UCS2_EMOJI_ODD])
def test_deliver_vectors_match_smspdudecoder(pdu: str) -> None:
    ours = deliver(pdu)
    theirs = read_incoming_sms(pdu)
    raw = SMSDeliver.decode(StringIO(pdu))
    assert theirs["sender"] == ours.originator
    assert theirs["date"] == ours.scts  # theirs is in UTC, aware datetimes compare as instants
    assert raw["pid"] == ours.pid
    assert raw["header"]["udhi"] == bool(ours.udh)
    assert raw["header"]["sri"] == ours.status_report_indication
    assert raw["header"]["mms"] == (not ours.more_messages)
    if ours.encoding == "8bit":
        assert theirs["content"] == ours.data
    else:
        assert theirs["content"] == ours.text
    if ours.concat:
        assert theirs["partial"]["reference"] == f"{ours.concat.ref}-{ours.concat.total}"
        assert theirs["partial"]["parts_count"] == ours.concat.total
        assert theirs["partial"]["part_number"] == ours.concat.seq
    else:
        assert theirs["partial"] is False
    if ours.smsc:
        assert "+" + raw["smsc"]["number"] == ours.smsc


@pytest.mark.parametrize("pdu", [*DELIVERS, *REPORTS, SUBMIT_HELLO])
def test_vectors_match_gsmmodem(pdu: str) -> None:
    theirs = decodeSmsPdu(pdu)
    ours = decode_submit(pdu) if pdu == SUBMIT_HELLO else decode_mt(pdu)
    assert theirs["smsc"] == ours.smsc
    assert theirs["tpdu_length"] == len(pdu) // 2 - (1 + int(pdu[:2], 16))
    if isinstance(ours, StatusReport):
        assert theirs["type"] == "SMS-STATUS-REPORT"
        assert theirs["reference"] == ours.reference
        assert theirs["number"] == ours.recipient
        assert theirs["time"] == ours.scts
        assert theirs["discharge"] == ours.discharge
        assert theirs["status"] == ours.status
        return
    if isinstance(ours, Deliver):
        assert theirs["type"] == "SMS-DELIVER"
        assert theirs["number"] == ours.originator
        assert theirs["time"] == ours.scts
    else:
        assert theirs["type"] == "SMS-SUBMIT"
        assert theirs["number"] == ours.recipient
        assert theirs["reference"] == ours.reference
    assert theirs["protocol_id"] == ours.pid
    if ours.encoding == "8bit":
        assert ours.data is not None
        assert theirs["text"] == ours.data.decode("latin-1")  # theirs: one char per octet
    elif ours.dcs < 0x80:  # gsmmodem reads only the general DCS groups
        assert same_utf16(theirs["text"], ours.text or "")
    if ours.udh:
        _, ies = split_udh(ours.udh)
        assert [(ie.id, bytes(ie.data)) for ie in theirs["udh"]] == ies
    if ours.concat:
        (ie,) = (ie for ie in theirs["udh"] if ie.id in (0, 8))
        assert (ie.reference, ie.parts, ie.number) == (
            ours.concat.ref,
            ours.concat.total,
            ours.concat.seq,
        )


# gsmmodem's GSM table has ` where 23.038 has §, and it cannot decode ESC + form feed: keep those
# characters out of what it is asked to read.
GSM_CHARS = [c for c in gsm0338.BASIC if c != "\x1b"] + list(gsm0338.EXTENSION.values())
GSMMODEM_CHARS = [c for c in GSM_CHARS if c not in "§\f"]

PLAIN = {"status_report": True, "validity": None, "reference": 0, "pid": 0, "dcs": 0}
CONCAT_UDH = bytes.fromhex("050003010101")
numbers = st.from_regex(r"\+?[0-9]{1,20}", fullmatch=True)
bcd_numbers = st.from_regex(r"\+?[0-9*#abc]{1,20}", fullmatch=True)


@st.composite
def concat_udh(draw: st.DrawFn) -> tuple[bytes, Concat]:
    total = draw(st.integers(1, 255))
    seq = draw(st.integers(1, total))
    if draw(st.booleans()):
        ref = draw(st.integers(0, 255))
        ie = bytes((0x00, 3, ref, total, seq))
    else:
        ref = draw(st.integers(0, 0xFFFF))
        ie = bytes((0x08, 4, ref >> 8, ref & 0xFF, total, seq))
    extra = draw(st.sampled_from([b"", bytes.fromhex("05040B8423F0"), bytes.fromhex("240101")]))
    body = extra + ie if draw(st.booleans()) else ie + extra
    return bytes((len(body),)) + body, Concat(ref, total, seq)


udhs = st.one_of(st.just((b"", None)), concat_udh())


def fit_gsm(text: str, udh: bytes) -> str:
    """Cut ``text`` to what fits in one PDU behind ``udh``."""
    room = (140 * 8 - len(udh) * 8 - gsm0338.fill_bits(len(udh))) // 7
    while (gsm0338.septet_count(text) or 0) > room:
        text = text[: room if len(text) > room else -1]
    return text


def fit_ucs2(text: str, udh: bytes) -> str:
    while len(text.encode("utf-16-be")) > 140 - len(udh):
        text = text[:-1]
    return text


@st.composite
def submits(draw: st.DrawFn, chars: list[str] | None = None, ucs2_astral: bool = True) -> dict:
    """Keyword arguments for encode_submit, always encodable, covering all three alphabets."""
    udh, _ = draw(udhs)
    kind = draw(st.sampled_from(["gsm7", "ucs2", "8bit"]))
    kwargs: dict = {
        "udh": udh,
        "status_report": draw(st.booleans()),
        "validity": draw(st.none() | st.integers(0, 255)),
        "reference": draw(st.integers(0, 255)),
        "pid": draw(st.integers(0, 255)),
    }
    if kind == "gsm7":
        alphabet_chars = st.sampled_from(chars or GSM_CHARS)
        text = draw(st.text(alphabet_chars, max_size=170))
        kwargs["text"] = fit_gsm(text, udh)
        kwargs["dcs"] = draw(st.sampled_from([0x00, 0x10, 0x11, 0x12, 0x13]))
    elif kind == "ucs2":
        blocked = ("Cs",) if ucs2_astral else ("Cs", "Co")
        cs = st.characters(
            blacklist_categories=blocked, max_codepoint=None if ucs2_astral else 0xFFFF
        )
        kwargs["text"] = fit_ucs2(draw(st.text(cs, max_size=80)), udh)
        kwargs["dcs"] = draw(st.sampled_from([0x08, 0x18, 0x19]))
    else:
        kwargs["data"] = draw(st.binary(max_size=140 - len(udh)))
        kwargs["dcs"] = draw(st.sampled_from([0x04, 0x14, 0x16]))
    return kwargs


@relaxed
@given(recipient=numbers, kwargs=submits(GSMMODEM_CHARS, ucs2_astral=False))
@example(recipient="+4917012345", kwargs={**PLAIN, "text": "@" * 7})
@example(recipient="1", kwargs={**PLAIN, "text": "€[]^{}\\~|" * 3, "udh": CONCAT_UDH})
def test_our_submit_read_by_gsmmodem(recipient: str, kwargs: dict) -> None:
    udh = kwargs.get("udh", b"")
    gsm7 = alphabet(kwargs["dcs"]) == "gsm7"
    # an empty text after such a header leaves gsmmodem's reader without an octet to prime
    assume(not (gsm7 and not kwargs["text"] and not gsmmodem_reads_gsm7_after(udh)))
    e = encode_submit(recipient, **kwargs)
    theirs = decodeSmsPdu(e.hex)
    assert theirs["type"] == "SMS-SUBMIT"
    assert theirs["number"] == recipient
    assert theirs["tpdu_length"] == e.length
    assert theirs["reference"] == kwargs["reference"]
    assert theirs["protocol_id"] == kwargs["pid"]
    if "data" in kwargs:
        assert theirs["text"] == kwargs["data"].decode("latin-1")
    elif not gsm7 or gsmmodem_reads_gsm7_after(udh):
        assert theirs["text"] == kwargs["text"]
    if udh:
        assert [(ie.id, bytes(ie.data)) for ie in theirs["udh"]] == split_udh(udh)[1]
    else:
        assert "udh" not in theirs
    if kwargs.get("validity") is not None:
        minutes = theirs["validity"].total_seconds() / 60
        vp = kwargs["validity"]
        assert minutes == (
            (vp + 1) * 5
            if vp <= 143
            else 720 + (vp - 143) * 30
            if vp <= 167
            else (vp - 166) * 1440
            if vp <= 196
            else (vp - 192) * 10080
        )


@relaxed
@given(recipient=numbers, kwargs=submits())
def test_our_submit_read_by_smspdudecoder(recipient: str, kwargs: dict) -> None:
    e = encode_submit(recipient, **kwargs)
    raw = SMSSubmit.decode(StringIO(e.hex))
    assert read_outgoing_sms(e.hex)["recipient"] == recipient
    header = raw["header"]
    assert header["mti"] == "submit"
    assert header["srr"] == kwargs["status_report"]
    assert header["udhi"] == bool(kwargs.get("udh"))
    assert header["vpf"] == (0 if kwargs.get("validity") is None else 2)
    assert raw["message-ref"] == kwargs["reference"]
    assert raw["pid"] == kwargs["pid"]
    if kwargs.get("validity") is not None:
        assert raw["vp"] == kwargs["validity"]
    user_data = raw["user_data"]
    if "data" in kwargs:
        assert user_data["data"] == kwargs["data"]
    else:
        text = kwargs["text"]
        content = user_data["data"]
        if alphabet(kwargs["dcs"]) != "gsm7":
            assert content == text
        elif not smspdudecoder_reads_gsm7_after(kwargs.get("udh", b"")):
            pass
        elif gsm0338.septet_count(text) != len(text):
            # smspdudecoder slices septets by character count, so with extension characters
            # the zero padding septets show up as trailing "@".
            assert content.startswith(text)
            assert set(content[len(text) :]) <= {"@"}
        else:
            assert content == text
    udh = kwargs.get("udh", b"")
    if udh:
        concat, ies = split_udh(udh)
        elements = user_data["header"]["elements"]
        assert [e["iei"] for e in elements] == [iei for iei, _ in ies]
        for element, (iei, data) in zip(elements, ies, strict=True):
            if iei in (0x00, 0x08):
                assert concat is not None
                assert element["data"] == {
                    "reference": concat.ref,
                    "parts_count": concat.total,
                    "part_number": concat.seq,
                }
            else:
                assert element["data"].lower() == data.hex()


@relaxed
@given(
    recipient=numbers,
    text=st.text(st.sampled_from(GSMMODEM_CHARS), max_size=500),
    reference=st.integers(0, 255),
    status_report=st.booleans(),
    validity=st.none() | st.integers(1, 400),
)
def test_gsmmodem_gsm7_submits_read_by_us(
    recipient: str, text: str, reference: int, status_report: bool, validity: int | None
) -> None:
    delta = None if validity is None else datetime.timedelta(hours=validity)
    pdus = encodeSmsSubmitPdu(
        recipient, text, reference=reference, validity=delta, requestStatusReport=status_report
    )
    assume(pdus)  # gsmmodem produces no PDU at all for ""
    parts = [decode_submit(str(p)) for p in pdus]
    assert "".join(s.text or "" for s in parts) == text
    for i, (p, s) in enumerate(zip(pdus, parts, strict=True), 1):
        assert s.encoding == "gsm7"
        assert s.reference == reference
        assert s.status_report == status_report
        # gsmmodem writes "national" TOA (A1) for plain digits: shown as-is
        assert s.recipient == recipient
        assert p.tpduLength == len(str(p)) // 2 - 1
        if delta is None:
            assert s.validity is None
        else:
            assert s.validity == _encodeRelativeValidityPeriod(delta)
        if len(pdus) == 1:
            assert (s.udh, s.concat) == (b"", None)
        else:
            assert s.concat == Concat(reference, len(pdus), i)


@relaxed
@given(
    recipient=numbers,
    text=st.text(
        # `, ÿ and ESC: gsmmodem's GSM table takes (or chokes on) them where 23.038 has none
        st.characters(
            blacklist_categories=("Cs",), max_codepoint=0xFFFF, blacklist_characters="`ÿ\x1b"
        ),
        max_size=200,
    ),
    reference=st.integers(0, 255),
)
def test_gsmmodem_ucs2_submits_read_by_us(recipient: str, text: str, reference: int) -> None:
    assume(text and gsm0338.try_encode(text) is None)  # gsmmodem picks UCS-2 only if it must
    pdus = encodeSmsSubmitPdu(recipient, text, reference=reference)
    parts = [decode_submit(str(p)) for p in pdus]
    assert "".join(s.text or "" for s in parts) == text
    for i, s in enumerate(parts, 1):
        assert s.encoding == "ucs2"
        assert s.dcs == 0x08
        if len(parts) > 1:
            assert s.concat == Concat(reference, len(parts), i)


@relaxed
@given(
    text=st.text(st.sampled_from(GSM_CHARS), max_size=160),
    originator=numbers,
    udh=udhs,
    dcs=st.sampled_from([0x00, 0x10, 0x12]),
)
def test_smspdudecoder_agrees_on_gsm7_delivers(
    text: str, originator: str, udh: tuple[bytes, Concat | None], dcs: int
) -> None:
    """A DELIVER laid out here (not by our encoder), read by both decoders."""
    header, concat = udh
    text = fit_gsm(text, header)
    fill = gsm0338.fill_bits(len(header))
    septets = gsm0338.encode(text)
    udl = (len(header) * 8 + fill) // 7 + len(septets)
    digits = originator.lstrip("+")
    oa = bytes((len(digits), 0x91 if originator.startswith("+") else 0x81))
    oa += bytes.fromhex(
        "".join(b + a for a, b in zip(digits[0::2], (digits + "F")[1::2], strict=False))
    )
    pdu = (
        "00"
        + ("44" if header else "04")
        + oa.hex()
        + f"00{dcs:02X}"
        + SCTS_MINUS7
        + f"{udl:02X}"
        + (header + gsm0338.pack(septets, fill)).ljust((udl * 7 + 7) // 8, b"\0").hex()
    )
    ours = deliver(pdu)
    theirs = read_incoming_sms(pdu)
    assert ours.originator == theirs["sender"] == originator
    assert ours.concat == concat
    assert ours.udh == header
    assert ours.text == text
    # see the smspdudecoder quirks above
    if gsm0338.septet_count(text) == len(text) and smspdudecoder_reads_gsm7_after(header):
        assert theirs["content"] == text
    if concat:
        assert theirs["partial"]["part_number"] == concat.seq
        assert theirs["partial"]["parts_count"] == concat.total


# --- round trips -------------------------------------------------------------------------------


@relaxed
@given(
    recipient=bcd_numbers,
    kwargs=submits(),
    smsc=st.none() | numbers,
)
def test_round_trip(recipient: str, kwargs: dict, smsc: str | None) -> None:
    e = encode_submit(recipient, smsc=smsc, **kwargs)
    assert e.hex == e.hex.upper()
    raw = bytes.fromhex(e.hex)
    assert e.length == len(raw) - 1 - raw[0]
    s = decode_submit(e.hex)
    udh = kwargs.get("udh", b"")
    assert s == Submit(
        smsc=smsc,
        reference=kwargs["reference"],
        recipient=recipient,
        pid=kwargs["pid"],
        dcs=kwargs["dcs"],
        validity=kwargs["validity"],
        udh=udh,
        concat=split_udh(udh)[0],
        text=kwargs.get("text"),
        data=kwargs.get("data"),
        encoding=alphabet(kwargs["dcs"]),
        status_report=kwargs["status_report"],
        reject_duplicates=False,
    )
    assert decode_submit(raw) == s


@relaxed
@given(
    text=st.text(st.sampled_from(GSM_CHARS), min_size=1, max_size=200),
    header=concat_udh(),
    dcs=st.sampled_from([0x00, 0x11, 0xF0, 0xF3, 0xC8, 0xD0, 0x0C, 0x90]),
)
def test_round_trip_gsm7_dcs_groups_at_the_limit(
    text: str, header: tuple[bytes, Concat], dcs: int
) -> None:
    udh, concat = header
    room = (140 * 8 - len(udh) * 8 - gsm0338.fill_bits(len(udh))) // 7
    # pad with plain characters up to exactly the capacity, so both limits are exercised
    text = fit_gsm(text, udh)
    text += "x" * (room - (gsm0338.septet_count(text) or 0))
    e = encode_submit("+1", text=text, udh=udh, dcs=dcs)
    s = decode_submit(e.hex)
    assert (s.text, s.concat, s.encoding) == (text, concat, "gsm7")
    with pytest.raises(TpduError, match="at most 140"):
        encode_submit("+1", text=text + "x", udh=udh, dcs=dcs)


@relaxed
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=70))
def test_round_trip_ucs2_groups(text: str) -> None:
    text = fit_ucs2(text, b"")
    for dcs in (0x08, 0x48, 0xE0, 0xEB):
        assert decode_submit(encode_submit("1", text=text, dcs=dcs).hex).text == text


@relaxed
@given(data=st.binary(max_size=140), dcs=st.sampled_from([0x04, 0x24, 0x44, 0xF4, 0xF7]))
def test_round_trip_8bit_groups(data: bytes, dcs: int) -> None:
    s = decode_submit(encode_submit("1", data=data, dcs=dcs).hex)
    assert (s.data, s.text, s.encoding) == (data, None, "8bit")


# --- robustness --------------------------------------------------------------------------------


def only_tpdu_errors(pdu: str | bytes) -> None:
    for decode in (decode_mt, decode_submit):
        try:
            decode(pdu)
        except TpduError as e:
            assert str(e)


@relaxed
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_tpdu_error(pdu: bytes) -> None:
    only_tpdu_errors(pdu)


@relaxed
@given(st.binary(max_size=200))
def test_random_bytes_behind_an_empty_smsc(pdu: bytes) -> None:
    only_tpdu_errors(b"\x00" + pdu)


@relaxed
@given(st.text(st.sampled_from("0123456789abcdefABCDEF \r\n\tGx+"), max_size=300))
def test_random_hex_raise_only_tpdu_error(pdu: str) -> None:
    only_tpdu_errors(pdu)


@relaxed
@given(
    pdu=st.sampled_from(VECTORS),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.none() | st.integers(0, 200),
)
def test_mutated_vectors_raise_only_tpdu_error(
    pdu: str, edits: list[tuple[int, int]], cut: int | None
) -> None:
    raw = bytearray.fromhex(pdu)
    for index, value in edits:
        raw[index % len(raw)] = value
    only_tpdu_errors(bytes(raw[:cut]))


@relaxed
@given(udh=st.binary(max_size=40))
def test_random_udh_raise_only_tpdu_error(udh: bytes) -> None:
    try:
        concat, ies = split_udh(udh)
    except TpduError:
        return
    assert (sum(2 + len(data) for _, data in ies) == len(udh) - 1) if udh else (ies == [])
    if concat:
        assert 1 <= concat.seq <= concat.total
