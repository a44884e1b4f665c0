"""Tests for smsd.text: encoding choice, segmentation, truncation, transliteration, binary."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from smspdudecoder.easy import read_incoming_sms
from twisted.trial.unittest import SynchronousTestCase

from protocols import gsm0338
from smsd.text import (
    Encoding,
    Part,
    Plan,
    TextError,
    TooLong,
    count,
    plan_binary,
    plan_text,
    transliterate,
)

relaxed = settings(deadline=None)  # property tests check behaviour, never timing

CHINESE = "中文短信测试一二三四五六七八九十"  # 16 distinct CJK characters

# Text mixing everything that makes segmentation hard: extension characters (2 septets),
# GSM Latin-1, characters only UCS-2 has, astral characters (surrogate pairs).
mixed_chars = st.one_of(
    st.sampled_from("abc xyz019"),
    st.sampled_from("€[]{}|^~\\\f"),
    st.sampled_from("éüÄ£§ΔΩ@$_"),
    st.sampled_from("ŁżЖ中ß\u2019"),
    st.sampled_from("😀🇩🇪𝄞\U00010000\U0010fffd"),
    st.characters(exclude_categories=("Cs",)),
)
mixed_text = st.text(alphabet=mixed_chars, min_size=1, max_size=700)
gsm_heavy_text = st.text(
    alphabet=st.one_of(st.sampled_from("abc éΔ£"), st.sampled_from("€[]{}|\f")),
    min_size=1,
    max_size=700,
)


def units_of(part: Part, encoding: Encoding) -> int:
    """Units of a part computed independently of the planner."""
    assert part.text is not None
    if encoding is Encoding.GSM7:
        return len(gsm0338.encode(part.text))
    return len(part.text.encode("utf-16-be")) // 2


def capacity(plan: Plan, ref16: bool = False) -> int:
    single = {Encoding.GSM7: 160, Encoding.UCS2: 70, Encoding.BINARY: 140}
    multi = {Encoding.GSM7: 153, Encoding.UCS2: 67, Encoding.BINARY: 134}
    if plan.total == 1:
        return single[plan.encoding]
    return multi[plan.encoding] - (1 if ref16 else 0)


def deliver(part: Part, encoding: Encoding) -> dict:
    """Read a planned part back with smspdudecoder, as a handset would receive it."""
    assert part.text is not None
    if encoding is Encoding.GSM7:
        septets = gsm0338.encode(part.text)
        fill = gsm0338.fill_bits(len(part.udh))
        ud = part.udh + gsm0338.pack(septets, fill)
        udl = (len(part.udh) * 8 + fill) // 7 + len(septets)
        dcs = 0x00
    else:
        ud = part.udh + gsm0338.ucs2_encode(part.text)
        udl = len(ud)
        dcs = 0x08
    first = 0x04 | (0x40 if part.udh else 0)
    pdu = f"00{first:02X}0B915155214365F700{dcs:02X}12102131040000{udl:02X}{ud.hex()}"
    return read_incoming_sms(pdu)


class AcceptanceTests(SynchronousTestCase):
    def test_short_ascii_is_one_gsm_part(self) -> None:
        plan = plan_text("Hello world")
        self.assertEqual(plan.encoding, Encoding.GSM7)
        self.assertEqual(plan.dcs, 0x00)
        self.assertEqual(plan.total, 1)
        self.assertEqual(plan.parts[0], Part(1, b"", "Hello world", None, 11))
        self.assertFalse(plan.truncated)

    def test_200_ascii_characters(self) -> None:
        text = "".join(chr(0x41 + i % 26) for i in range(200))
        plan = plan_text(text, concat_ref=0x42)
        self.assertEqual(plan.total, 2)
        self.assertEqual(plan.parts[0].udh, bytes.fromhex("050003420201"))
        self.assertEqual(plan.parts[1].udh, bytes.fromhex("050003420202"))
        self.assertEqual([p.units for p in plan.parts], [153, 47])
        self.assertEqual(plan.parts[0].text, text[:153])
        self.assertEqual(plan.parts[1].text, text[153:])

    def test_euro_counts_two_septets(self) -> None:
        self.assertEqual(plan_text("a" * 158 + "€").total, 1)
        self.assertEqual(plan_text("a" * 158 + "€").parts[0].units, 160)
        plan = plan_text("a" * 159 + "€")
        self.assertEqual(plan.encoding, Encoding.GSM7)
        self.assertEqual([p.units for p in plan.parts], [153, 8])
        self.assertEqual(count("a" * 159 + "€"), (Encoding.GSM7, 2, 161))

    def test_chinese_is_ucs2_67_a_part(self) -> None:
        text = (CHINESE * 7)[:100]
        plan = plan_text(text)
        self.assertEqual(plan.encoding, Encoding.UCS2)
        self.assertEqual(plan.dcs, 0x08)
        self.assertEqual([p.units for p in plan.parts], [67, 33])
        self.assertEqual([len(p.text or "") for p in plan.parts], [67, 33])

    def test_flash(self) -> None:
        self.assertEqual(plan_text("hi", flash=True).dcs, 0x10)
        self.assertEqual(plan_text("中", flash=True).dcs, 0x18)
        self.assertEqual(plan_binary(b"\x01", flash=True).dcs, 0x14)

    def test_transliteration(self) -> None:
        self.assertEqual(transliterate("café €5"), "café €5")
        self.assertEqual(transliterate("\u201cx\u201d"), '"x"')
        lodz = transliterate("Łódź")
        self.assertTrue(gsm0338.is_gsm(lodz))
        self.assertEqual(lodz, "Lodz")
        plan = plan_text("\u201cé\u201d \u2014 Łódź…", transliterate=True)
        self.assertEqual(plan.encoding, Encoding.GSM7)
        self.assertEqual(plan.text, '"é" - Lodz...')
        self.assertEqual(plan_text("\u201cx\u201d").encoding, Encoding.UCS2)  # only on request


class BoundaryTests(SynchronousTestCase):
    def assertUnits(self, plan: Plan, units: list[int]) -> None:
        self.assertEqual([p.units for p in plan.parts], units)

    def test_gsm(self) -> None:
        self.assertUnits(plan_text("a" * 160), [160])
        self.assertUnits(plan_text("a" * 161), [153, 8])
        self.assertUnits(plan_text("a" * 306), [153, 153])
        self.assertUnits(plan_text("a" * 307), [153, 153, 1])

    def test_ucs2(self) -> None:
        self.assertUnits(plan_text("中" * 70), [70])
        self.assertUnits(plan_text("中" * 71), [67, 4])
        self.assertUnits(plan_text("中" * 134), [67, 67])
        self.assertUnits(plan_text("中" * 135), [67, 67, 1])

    def test_binary(self) -> None:
        self.assertUnits(plan_binary(bytes(140)), [140])
        self.assertUnits(plan_binary(bytes(141)), [134, 7])
        self.assertUnits(plan_binary(bytes(268)), [134, 134])

    def test_ref16(self) -> None:
        plan = plan_text("a" * 161, ref16=True, concat_ref=0x1234)
        self.assertUnits(plan, [152, 9])
        self.assertEqual(plan.parts[0].udh, bytes.fromhex("06080412340201"))
        self.assertUnits(plan_text("中" * 71, ref16=True), [66, 5])
        binary = plan_binary(bytes(141), ref16=True, concat_ref=0xABCD)
        self.assertUnits(binary, [133, 8])
        self.assertEqual(binary.parts[1].udh, bytes.fromhex("0608 04ABCD 0202"))
        self.assertEqual(count("a" * 305, ref16=True), (Encoding.GSM7, 3, 305))

    def test_escape_pair_is_never_split(self) -> None:
        plan = plan_text("a" * 152 + "€" + "b" * 10)
        self.assertUnits(plan, [152, 12])
        self.assertEqual(plan.parts[1].text, "€" + "b" * 10)

    def test_surrogate_pair_is_never_split(self) -> None:
        plan = plan_text("中" * 66 + "😀" + "中" * 10)
        self.assertUnits(plan, [66, 12])
        self.assertEqual(plan.parts[1].text, "😀" + "中" * 10)
        self.assertEqual(plan_text("😀" * 35).total, 1)
        self.assertUnits(plan_text("😀" * 36), [66, 6])

    def test_concat_ref_is_masked(self) -> None:
        self.assertEqual(plan_text("a" * 200, concat_ref=0x1FF).parts[0].udh[3], 0xFF)
        udh = plan_text("a" * 200, concat_ref=0x12345, ref16=True).parts[0].udh
        self.assertEqual(udh[3:5], b"\x23\x45")

    def test_255_parts_at_most(self) -> None:
        plan = plan_text("a" * (153 * 255), maxmsgs=255, truncate=False)
        self.assertEqual(plan.total, 255)
        self.assertEqual(plan.parts[-1].udh[-2:], b"\xff\xff")
        with self.assertRaises(TooLong) as caught:
            plan_text("a" * (153 * 255 + 1), maxmsgs=255, truncate=False)
        self.assertEqual((caught.exception.needed, caught.exception.allowed), (256, 255))


class MaxmsgsTests(SynchronousTestCase):
    def test_truncate_to_maxmsgs(self) -> None:
        text = "x" * 1000
        plan = plan_text(text, maxmsgs=2)
        self.assertTrue(plan.truncated)
        self.assertEqual(plan.text, "x" * 306)
        self.assertEqual([p.udh[-2:] for p in plan.parts], [b"\x02\x01", b"\x02\x02"])

    def test_truncate_to_one_part_has_no_udh(self) -> None:
        plan = plan_text("€" * 100, maxmsgs=1)
        self.assertEqual(plan.parts, (Part(1, b"", "€" * 80, None, 160),))
        self.assertEqual(plan.text, "€" * 80)
        self.assertTrue(plan.truncated)
        plan = plan_text("中" * 100 + "😀", maxmsgs=1)
        self.assertEqual(plan.text, "中" * 70)

    def test_truncation_keeps_pairs_whole(self) -> None:
        plan = plan_text("a" * 152 + "€" * 100, maxmsgs=1)
        self.assertEqual(plan.text, "a" * 152 + "€" * 4)
        self.assertEqual(plan.parts[0].units, 160)
        plan = plan_text("中" * 69 + "😀" * 5, maxmsgs=1)
        self.assertEqual(plan.text, "中" * 69)

    def test_too_long(self) -> None:
        with self.assertRaises(TooLong) as caught:
            plan_text("a" * 1000, maxmsgs=3, truncate=False)
        self.assertEqual(caught.exception.needed, 7)
        self.assertEqual(caught.exception.allowed, 3)
        self.assertIsInstance(caught.exception, TextError)
        self.assertEqual(str(caught.exception), "text needs 7 parts, at most 3 allowed")
        self.assertEqual(plan_text("a" * 459, maxmsgs=3, truncate=False).total, 3)

    def test_maxmsgs_range(self) -> None:
        for bad in (0, -1, 256):
            with self.assertRaises(TextError):
                plan_text("a", maxmsgs=bad)
            with self.assertRaises(TextError):
                plan_binary(b"a", maxmsgs=bad)
        self.assertEqual(plan_text("a", maxmsgs=255).total, 1)


class EncodingChoiceTests(SynchronousTestCase):
    def test_empty(self) -> None:
        with self.assertRaises(TextError) as caught:
            plan_text("")
        self.assertEqual(str(caught.exception), "empty text")
        self.assertEqual(count(""), (Encoding.GSM7, 0, 0))

    def test_gsm_latin_stays_gsm(self) -> None:
        self.assertEqual(plan_text("Grüße aus Köln, ça va? Å£¥").encoding, Encoding.UCS2)
        self.assertEqual(plan_text("Grüße aus Köln, Å£¥ ΔΩ").encoding, Encoding.GSM7)

    def test_forced_encoding(self) -> None:
        self.assertEqual(plan_text("hello", encoding=Encoding.UCS2).encoding, Encoding.UCS2)
        self.assertEqual(plan_text("hello", encoding="ucs2").parts[0].units, 5)
        with self.assertRaises(TextError) as caught:
            plan_text("hi 中", encoding=Encoding.GSM7)
        self.assertIn("index 3", str(caught.exception))
        plan = plan_text("hi 中", encoding=Encoding.GSM7, transliterate=True)
        self.assertEqual(plan.text, "hi Zhong")
        with self.assertRaises(TextError):
            plan_text("hello", encoding=Encoding.BINARY)
        with self.assertRaises(TextError):
            plan_text("hello", encoding="latin9")  # type: ignore[arg-type]

    def test_caller_dcs_wins(self) -> None:
        self.assertEqual(plan_text("hi", dcs=0xF0, flash=False).dcs, 0xF0)
        self.assertEqual(plan_text("hi", dcs=0x00, flash=True).dcs, 0x00)
        plan = plan_text("hi", dcs=0x18)
        self.assertEqual((plan.encoding, plan.dcs), (Encoding.UCS2, 0x18))
        self.assertEqual(plan_text("hi", dcs=0xE0).encoding, Encoding.UCS2)
        with self.assertRaises(TextError):
            plan_text("中", dcs=0x00)  # 0x00 names GSM 7-bit
        with self.assertRaises(TextError):
            plan_text("hi", dcs=0x08, encoding=Encoding.GSM7)
        with self.assertRaises(TextError):
            plan_text("hi", dcs=0x04)  # 8-bit data belongs to plan_binary
        with self.assertRaises(TextError):
            plan_text("hi", dcs=0x100)

    def test_smpp_only_data_coding_is_a_label(self) -> None:
        plan = plan_text("中", dcs=0x03)  # SMPP Latin-1: no TP-DCS alphabet, label only
        self.assertEqual((plan.encoding, plan.dcs), (Encoding.UCS2, 0x03))
        plan = plan_text("hi", dcs=0x80)  # reserved coding group: label only
        self.assertEqual((plan.encoding, plan.dcs), (Encoding.GSM7, 0x80))

    def test_dcs_groups(self) -> None:
        self.assertEqual(plan_text("hi", dcs=0x11).encoding, Encoding.GSM7)  # class 1
        self.assertEqual(plan_text("hi", dcs=0x48).encoding, Encoding.UCS2)  # auto-deletion
        self.assertEqual(plan_text("hi", dcs=0xC8).encoding, Encoding.GSM7)  # MWI discard
        self.assertEqual(plan_text("hi", dcs=0xE8).encoding, Encoding.UCS2)  # MWI UCS-2
        self.assertEqual(plan_text("hi", dcs=0xF1).encoding, Encoding.GSM7)
        with self.assertRaises(TextError):
            plan_text("hi", dcs=0xF4)  # 8-bit class 0
        self.assertEqual(plan_text("中", dcs=0x20).encoding, Encoding.UCS2)  # compressed: label

    def test_lone_surrogate(self) -> None:
        with self.assertRaises(TextError) as caught:
            plan_text("ab\ud800c")
        self.assertIn("index 2", str(caught.exception))
        self.assertEqual(count("ab\ud800c"), (Encoding.UCS2, 1, 4))
        self.assertEqual(plan_text("ab\ud800c", transliterate=True).text, "ab?c")

    def test_transliteration_details(self) -> None:
        self.assertEqual(transliterate("e\u0301"), "é")  # NFC first, then it is GSM
        self.assertEqual(transliterate("a\u200bb\ufeff"), "ab")  # invisible: dropped
        self.assertEqual(transliterate("x\ue000y"), "x?y")  # no rendering: '?'
        self.assertEqual(transliterate("a\tb`c"), "a b'c")
        self.assertEqual(transliterate("Привет"), "Privet")
        with self.assertRaises(TextError):
            plan_text("\u200b", transliterate=True)

    def test_count(self) -> None:
        self.assertEqual(count("hello"), (Encoding.GSM7, 1, 5))
        self.assertEqual(count("中" * 71), (Encoding.UCS2, 2, 71))
        self.assertEqual(count("😀"), (Encoding.UCS2, 1, 2))
        self.assertEqual(count("Łódź", transliterate=True), (Encoding.GSM7, 1, 4))
        self.assertEqual(count("\u200b", transliterate=True), (Encoding.GSM7, 0, 0))
        self.assertEqual(count("a" * 10000)[1], 66)  # no maxmsgs cap: the true need


class BinaryTests(SynchronousTestCase):
    def test_single_with_user_udh(self) -> None:
        udh = bytes.fromhex("0605040B8423F0")  # WAP push ports
        plan = plan_binary(b"\x01" * 133, udh=udh)
        self.assertEqual(plan.parts, (Part(1, udh, None, b"\x01" * 133, 133),))
        self.assertEqual((plan.encoding, plan.dcs, plan.text), (Encoding.BINARY, 0x04, None))

    def test_split_repeats_user_ies(self) -> None:
        udh = bytes.fromhex("0605040B8423F0")
        data = bytes(range(256)) + bytes(44)
        plan = plan_binary(data, udh=udh, concat_ref=7)
        self.assertEqual([p.units for p in plan.parts], [128, 128, 44])
        self.assertEqual(plan.parts[0].udh, bytes.fromhex("0B 05040B8423F0 00030703 01"))
        self.assertEqual(plan.parts[2].udh, bytes.fromhex("0B 05040B8423F0 00030703 03"))
        self.assertEqual(b"".join(p.data or b"" for p in plan.parts), data)
        for part in plan.parts:
            self.assertLessEqual(len(part.udh) + part.units, 140)

    def test_user_concatenation_is_never_split(self) -> None:
        udh = bytes.fromhex("050003010201")
        self.assertEqual(plan_binary(bytes(134), udh=udh).parts[0].udh, udh)
        with self.assertRaises(TextError):
            plan_binary(bytes(135), udh=udh)
        with self.assertRaises(TextError):
            plan_binary(bytes(134), udh=bytes.fromhex("0708040001020201"))

    def test_bad_udh(self) -> None:
        for bad in ("05000301", "0400030102", "03000501", "0200"):
            with self.assertRaises(TextError, msg=bad):
                plan_binary(b"x", udh=bytes.fromhex(bad))
        with self.assertRaises(TextError):
            plan_binary(bytes(10), udh=bytes([135, 0x70, 133]) + bytes(133))
        with self.assertRaises(TextError):
            plan_binary(b"", udh=bytes([141, 0x70, 139]) + bytes(139), maxmsgs=1, truncate=True)

    def test_limits(self) -> None:
        with self.assertRaises(TextError):
            plan_binary(b"")
        self.assertEqual(plan_binary(b"", udh=bytes.fromhex("0401020000")).parts[0].units, 0)
        with self.assertRaises(TooLong) as caught:
            plan_binary(bytes(1000), maxmsgs=2)
        self.assertEqual((caught.exception.needed, caught.exception.allowed), (8, 2))
        plan = plan_binary(bytes(1000), maxmsgs=2, truncate=True)
        self.assertEqual([p.units for p in plan.parts], [134, 134])
        self.assertTrue(plan.truncated)
        plan = plan_binary(bytes(1000), maxmsgs=1, truncate=True)
        self.assertEqual(plan.parts, (Part(1, b"", None, bytes(140), 140),))
        self.assertEqual(plan_binary(b"x", dcs=0xF5, flash=True).dcs, 0xF5)


class PropertyTests(SynchronousTestCase):
    def check_plan(self, plan: Plan, ref16: bool) -> None:
        assert plan.text is not None
        self.assertEqual("".join(p.text or "" for p in plan.parts), plan.text)
        self.assertEqual([p.seq for p in plan.parts], list(range(1, plan.total + 1)))
        cap = capacity(plan, ref16)
        for part in plan.parts:
            assert part.text is not None
            self.assertTrue(part.text)
            self.assertEqual(part.units, units_of(part, plan.encoding))
            self.assertLessEqual(part.units, cap)
            if plan.total > 1:
                self.assertEqual(part.udh[-2:], bytes((plan.total, part.seq)))
                self.assertEqual(len(part.udh), 7 if ref16 else 6)
            else:
                self.assertEqual(part.udh, b"")
            if plan.encoding is Encoding.UCS2:
                raw = part.text.encode("utf-16-be")
                self.assertFalse(0xDC <= raw[0] <= 0xDF, "part starts with a low surrogate")
                self.assertFalse(0xD8 <= raw[-2] <= 0xDB, "part ends with a high surrogate")
            else:
                self.assertTrue(gsm0338.is_gsm(part.text))  # hence no lone ESC either end
        for part in plan.parts[:-1]:
            self.assertGreaterEqual(part.units, cap - 1)  # greedy: only a pair may spill

    @relaxed
    @given(mixed_text, st.booleans(), st.booleans())
    def test_parts_reassemble_within_capacity(self, text: str, ref16: bool, trl: bool) -> None:
        if trl and not transliterate(text):
            self.assertRaises(TextError, plan_text, text, transliterate=True)
            return
        plan = plan_text(text, maxmsgs=255, truncate=False, ref16=ref16, transliterate=trl)
        self.assertFalse(plan.truncated)
        self.assertEqual(plan.text, transliterate(text) if trl else text)
        self.check_plan(plan, ref16)
        self.assertEqual(
            count(text, transliterate=trl, ref16=ref16)[:2], (plan.encoding, plan.total)
        )

    @relaxed
    @given(gsm_heavy_text, st.booleans())
    def test_gsm_escapes_at_every_offset(self, text: str, ref16: bool) -> None:
        plan = plan_text(text, maxmsgs=255, ref16=ref16)
        self.assertEqual(plan.encoding, Encoding.GSM7)
        self.check_plan(plan, ref16)
        septets = b"".join(gsm0338.encode(p.text or "") for p in plan.parts)
        self.assertEqual(septets, gsm0338.encode(text))

    @relaxed
    @given(mixed_text, st.integers(1, 4), st.booleans())
    def test_truncation_is_a_prefix(self, text: str, maxmsgs: int, ref16: bool) -> None:
        plan = plan_text(text, maxmsgs=maxmsgs, ref16=ref16)
        assert plan.text is not None
        self.assertLessEqual(plan.total, maxmsgs)
        self.assertTrue(text.startswith(plan.text))
        self.assertEqual(plan.truncated, plan.text != text)
        self.check_plan(plan, ref16)
        needed = count(text, ref16=ref16)[1]
        self.assertEqual(plan.truncated, needed > maxmsgs)
        if plan.truncated:
            self.assertEqual(plan.total, maxmsgs)

    @relaxed
    @given(st.binary(min_size=1, max_size=2000), st.booleans(), st.integers(0, 0xFFFF))
    def test_binary_reassembles(self, data: bytes, ref16: bool, ref: int) -> None:
        plan = plan_binary(data, maxmsgs=255, ref16=ref16, concat_ref=ref)
        self.assertEqual(b"".join(p.data or b"" for p in plan.parts), data)
        for part in plan.parts:
            self.assertEqual(part.units, len(part.data or b""))
            self.assertLessEqual(len(part.udh) + part.units, 140)


class HandsetReadBackTests(SynchronousTestCase):
    """Every planned part, encoded as a modem would, read back by smspdudecoder."""

    def check(self, plan: Plan) -> None:
        texts = []
        for part in plan.parts:
            sms = deliver(part, plan.encoding)
            texts.append(sms["content"][: len(part.text or "")])
            if plan.total > 1:
                self.assertEqual(sms["partial"]["parts_count"], plan.total)
                self.assertEqual(sms["partial"]["part_number"], part.seq)
            else:
                self.assertFalse(sms["partial"])
        self.assertEqual("".join(texts), plan.text)

    def test_gsm_multipart(self) -> None:
        self.check(plan_text("The quick brown fox jumps over the lazy dog. " * 8, concat_ref=9))

    def test_gsm_with_extension_characters(self) -> None:
        self.check(plan_text("Price: 5€ [net] {x} " * 12, concat_ref=9))

    def test_ucs2_multipart(self) -> None:
        self.check(plan_text(CHINESE * 9 + "😀", concat_ref=9))

    def test_single(self) -> None:
        self.check(plan_text("Hello"))
        self.check(plan_text("Привет"))
