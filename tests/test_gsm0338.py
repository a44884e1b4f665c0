"""Tests for protocols.gsm0338, cross-checked against two independent implementations.

``gsm0338`` (PyPI) is a codecs-module codec producing unpacked septets; ``smspdudecoder`` decodes
packed 7-bit and UCS-2 user data inside whole SMS-DELIVER PDUs. Neither is used by smsd itself.
"""

from __future__ import annotations

import gsm0338 as reference_codec  # registers the "gsm03.38" codec
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from smspdudecoder.codecs import GSM as ReferenceGSM
from smspdudecoder.easy import read_incoming_sms
from twisted.trial.unittest import SynchronousTestCase

from protocols import gsm0338

assert reference_codec  # imported for its side effect

GSM_CHARS = [c for c in gsm0338.BASIC if c != "\x1b"] + list(gsm0338.EXTENSION.values())
gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=400)
septet_bytes = st.binary(max_size=300).map(lambda b: bytes(x & 0x7F for x in b))
relaxed = settings(deadline=None)  # property tests check behaviour, never timing


def deliver_pdu(dcs: int, ud: bytes, udl: int, udhi: bool) -> str:
    """Hex SMS-DELIVER around ``ud`` so smspdudecoder can read it like a modem's PDU."""
    first = 0x04 | (0x40 if udhi else 0)  # MTI deliver, more-messages-to-send, UDHI
    return (
        "00"  # no SMSC address
        + f"{first:02X}"
        + "0B915155214365F7"  # originator +15551234567
        + "00"  # TP-PID
        + f"{dcs:02X}"
        + "12102131040000"  # TP-SCTS
        + f"{udl:02X}"
        + ud.hex()
    )


class AlphabetTests(SynchronousTestCase):
    def test_tables(self) -> None:
        self.assertEqual(len(gsm0338.BASIC), 128)
        self.assertEqual(gsm0338.BASIC[0x00], "@")
        self.assertEqual(gsm0338.BASIC[0x1B], "\x1b")
        self.assertEqual(gsm0338.BASIC[0x7F], "à")
        self.assertEqual(
            gsm0338.EXTENSION,
            {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
             0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"},
        )  # fmt: skip

    def test_whole_alphabet_matches_reference(self) -> None:
        for ch in GSM_CHARS:
            expected = ch.encode("gsm03.38")
            self.assertEqual(gsm0338.encode(ch), expected, ch)
            self.assertEqual(gsm0338.decode(expected), ch)
            self.assertEqual(gsm0338.septet_count(ch), len(expected))
        for code in range(128):
            if code != gsm0338.ESC:
                self.assertEqual(gsm0338.decode(bytes([code])), bytes([code]).decode("gsm03.38"))

    def test_ascii_positions_that_differ(self) -> None:
        self.assertEqual(gsm0338.encode("@$_"), b"\x00\x02\x11")
        self.assertEqual(gsm0338.encode("€[]"), b"\x1b\x65\x1b\x3c\x1b\x3e")
        self.assertEqual(gsm0338.septet_count("{x}"), 5)

    def test_unencodable(self) -> None:
        for text in ("`", "\t", "\x1b", "ç", "中", "😀", "\x7f"):
            self.assertIsNone(gsm0338.septet_count(text), repr(text))
            self.assertIsNone(gsm0338.try_encode(text), repr(text))
            self.assertFalse(gsm0338.is_gsm(text))
        with self.assertRaises(ValueError) as caught:
            gsm0338.encode("abc€dé中x")
        self.assertIn("'中'", str(caught.exception))
        self.assertIn("index 6", str(caught.exception))
        with self.assertRaises(ValueError) as caught:
            gsm0338.encode("ok`")
        self.assertIn("index 2", str(caught.exception))

    @relaxed
    @given(gsm_text)
    def test_random_gsm_text_matches_reference(self, text: str) -> None:
        septets = gsm0338.encode(text)
        self.assertEqual(septets, text.encode("gsm03.38"))
        self.assertEqual(gsm0338.decode(septets), text)
        self.assertEqual(gsm0338.septet_count(text), len(septets))
        self.assertTrue(gsm0338.is_gsm(text))

    @relaxed
    @given(st.text(max_size=60))
    def test_random_unicode_encodability_matches_reference(self, text: str) -> None:
        assume("\x1b" not in text)  # the reference accepts U+001B as a character; we do not
        try:
            expected: bytes | None = text.encode("gsm03.38")
        except UnicodeEncodeError:
            expected = None
        self.assertEqual(gsm0338.try_encode(text), expected)
        self.assertEqual(gsm0338.septet_count(text), None if expected is None else len(expected))


class DecodeTests(SynchronousTestCase):
    def test_unknown_escape_gives_basic_character(self) -> None:
        self.assertEqual(gsm0338.decode(b"\x1b\x41"), "A")
        self.assertEqual(gsm0338.decode(b"\x1b\x28\x1b\x29\x1b\x00"), "{}@")

    def test_escape_escape_is_space(self) -> None:
        self.assertEqual(gsm0338.decode(b"a\x1b\x1bb"), "a b")

    def test_trailing_escape_is_dropped(self) -> None:
        self.assertEqual(gsm0338.decode(b"ab\x1b"), "ab")
        self.assertEqual(gsm0338.decode(b"\x1b"), "")

    def test_out_of_range_septet(self) -> None:
        with self.assertRaises(ValueError):
            gsm0338.decode(b"a\x80")

    @relaxed
    @given(septet_bytes)
    def test_any_septets_decode(self, septets: bytes) -> None:
        text = gsm0338.decode(septets)
        self.assertTrue(gsm0338.is_gsm(text))  # whatever arrives, the result re-encodes


class PackingTests(SynchronousTestCase):
    def test_known_vector(self) -> None:
        self.assertEqual(gsm0338.pack(gsm0338.encode("hellohello")).hex(), "e8329bfd4697d9ec37")
        self.assertEqual(gsm0338.unpack(bytes.fromhex("e8329bfd4697d9ec37"), 10), b"hellohello")

    def test_eight_septets_fill_seven_octets(self) -> None:
        self.assertEqual(len(gsm0338.pack(b"\x7f" * 8)), 7)
        self.assertEqual(gsm0338.pack(b"\x7f" * 8), b"\xff" * 7)
        self.assertEqual(len(gsm0338.pack(b"a" * 160)), 140)
        self.assertEqual(gsm0338.pack(b""), b"")
        self.assertEqual(gsm0338.pack(b"", 3), b"")

    def test_fill_bits(self) -> None:
        self.assertEqual(gsm0338.fill_bits(6), 1)  # 8-bit reference concatenation UDH
        self.assertEqual(gsm0338.fill_bits(7), 0)  # 16-bit reference
        self.assertEqual(gsm0338.fill_bits(0), 0)
        self.assertEqual(gsm0338.pack(b"\x01", 1), b"\x02")
        self.assertEqual(gsm0338.unpack(b"\x02", 1, 1), b"\x01")

    def test_bad_arguments(self) -> None:
        with self.assertRaises(ValueError):
            gsm0338.pack(b"\x80")
        with self.assertRaises(ValueError):
            gsm0338.pack(b"a", 7)
        with self.assertRaises(ValueError):
            gsm0338.unpack(b"\x00", 2)
        with self.assertRaises(ValueError):
            gsm0338.unpack(b"\x00", -1)
        with self.assertRaises(ValueError):
            gsm0338.unpack(b"\x00\x00", 1, 7)

    @relaxed
    @given(septet_bytes, st.integers(0, 6))
    def test_round_trip(self, septets: bytes, fill: int) -> None:
        packed = gsm0338.pack(septets, fill)
        self.assertEqual(len(packed), (len(septets) * 7 + fill + 7) // 8 if septets else 0)
        self.assertEqual(gsm0338.unpack(packed, len(septets), fill), septets)
        if packed:
            self.assertEqual(packed[0] & ((1 << fill) - 1), 0)  # fill bits are zero

    @relaxed
    @given(gsm_text)
    def test_packing_matches_reference(self, text: str) -> None:
        septets = gsm0338.encode(text)
        packed = gsm0338.pack(septets)
        self.assertEqual(packed.hex().upper(), ReferenceGSM.encode(text))
        # The reference decodes every whole septet in the octets: compare the prefix we sent.
        self.assertEqual(ReferenceGSM.decode(packed.hex())[: len(text)], text)

    @relaxed
    @given(gsm_text.filter(bool), st.integers(0, 255), st.booleans())
    def test_packed_after_udh_reads_back_in_a_pdu(self, text: str, ref: int, ref16: bool) -> None:
        concat_ie = bytes((0x08, 4, ref, 255 - ref, 3, 2)) if ref16 else bytes((0x00, 3, ref, 3, 2))
        udh = bytes((len(concat_ie),)) + concat_ie
        # The reference decodes the UDH octets as septets too, so an ESC among them would
        # swallow a character; that is its limitation, not the packing under test.
        header_septets = -(-len(udh) * 8 // 7)
        assume(gsm0338.ESC not in gsm0338.unpack(udh + b"\x00", header_septets))
        septets = gsm0338.encode(text)
        fill = gsm0338.fill_bits(len(udh))
        ud = udh + gsm0338.pack(septets, fill)
        udl = header_septets + len(septets)
        self.assertLessEqual(len(ud), (udl * 7 + 7) // 8)
        sms = read_incoming_sms(deliver_pdu(0x00, ud, udl, udhi=True))
        self.assertEqual(sms["content"][: len(text)], text)
        self.assertEqual(sms["partial"]["parts_count"], 3)
        self.assertEqual(sms["partial"]["part_number"], 2)


class Ucs2Tests(SynchronousTestCase):
    def test_encode(self) -> None:
        self.assertEqual(gsm0338.ucs2_encode("A€"), b"\x00A\x20\xac")
        self.assertEqual(gsm0338.ucs2_encode("😀"), b"\xd8\x3d\xde\x00")
        with self.assertRaises(ValueError):
            gsm0338.ucs2_encode("a\ud800")

    def test_decode_tolerates_damage(self) -> None:
        self.assertEqual(gsm0338.ucs2_decode(b"\x00A\x00"), "A")
        self.assertEqual(gsm0338.ucs2_decode(b"\xd8\x3d\xde\x00"), "😀")
        self.assertEqual(gsm0338.ucs2_decode(b"\xd8\x3d\x00A"), "\ufffdA")
        self.assertEqual(gsm0338.ucs2_decode(b"\x00A\xdc\x00"), "A\ufffd")
        self.assertEqual(gsm0338.ucs2_decode(b""), "")

    @relaxed
    @given(st.text(max_size=35))  # 35 astral characters are 140 octets
    def test_round_trip_and_reference(self, text: str) -> None:
        data = gsm0338.ucs2_encode(text)
        self.assertEqual(gsm0338.ucs2_decode(data), text)
        sms = read_incoming_sms(deliver_pdu(0x08, data, len(data), udhi=False))
        self.assertEqual(sms["content"], text)

    @relaxed
    @given(st.binary(max_size=80))
    def test_decode_any_octets(self, data: bytes) -> None:
        text = gsm0338.ucs2_decode(data)
        text.encode("utf-8")  # always clean text, whatever arrived
