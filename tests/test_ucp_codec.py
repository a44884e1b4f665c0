"""Tests for protocols.ucp: frame codec, stream framing, field helpers and the ESME session.

Byte vectors are written out by hand from the frame layout (specs §5, Kannel ``emimsg.c``) and
the 7-bit alphanumeric example of the EMI specification; the encoder is cross-checked against a
decoder we did not write: Kannel's ``decode_emimsg`` (Debian ``kannel``), which validates LEN
and the checksum and prints every field. A missing ``decode_emimsg`` fails the tests: run
``tests/install-peers``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from protocols import gsm0338, ucp
from protocols.ucp import OT, Error, Operation, Result
from tests.kannel_emi import Kannel, kannel_label

relaxed = settings(deadline=None)  # property tests check behaviour, never timing


def frame(body: str) -> bytes:
    """STX body CK ETX, the checksum computed here independently of the module."""
    data = body.encode("latin-1")
    return b"\x02" + data + b"%02X" % (sum(data) % 256) + b"\x03"


def framed(body: str) -> bytes:
    """As :func:`frame`, with LEN (characters 3-7 of ``body``) made right."""
    return frame(body[:3] + f"{len(body) + 2:05d}" + body[8:])


def op5x(**values: str) -> list[str]:
    return [values.get(name, "") for name in ucp.FIELDS[OT.SUBMIT]]


def body5x(trn: int, ot: int, **values: str) -> str:
    data = "".join(v + "/" for v in op5x(**values))
    return f"{trn:02d}/{len(data) + 16:05d}/O/{ot:02d}/{data}"


# --- frames -------------------------------------------------------------------------------------


class FrameTests(SynchronousTestCase):
    def test_alert_vector(self) -> None:
        wire = b"\x0201/00035/O/31/0234765439845/0539/A3\x03"
        self.assertEqual(
            ucp.encode(Operation(1, 31, {"AdC": "0234765439845", "PID": "0539"})), wire
        )
        self.assertEqual(
            ucp.decode(wire), Operation(1, OT.ALERT, {"AdC": "0234765439845", "PID": "0539"})
        )

    def test_results_vectors(self) -> None:
        cases = [
            (Result(1, 31), "01/00019/R/31/A//"),
            (Result(1, 60, None, "ok"), "01/00021/R/60/A/ok/"),
            (Result(1, 51, None, "0031612345678:011225123059"), None),
            (Result(2, 51, 4, "throttled"), "02/00031/R/51/N/04/throttled/"),
            (Result(3, 52, None, "x", "0101251200"), "03/00033/R/52/A/0101251200/x/"),
        ]
        for result, body in cases:
            wire = ucp.encode(result)
            if body is not None:
                self.assertEqual(wire, framed(body))
            self.assertEqual(ucp.decode(wire), result)
        self.assertEqual(
            ucp.encode(cases[2][0]), frame("01/00046/R/51/A//0031612345678:011225123059/")
        )

    def test_len_counts_everything_between_stx_and_etx(self) -> None:
        wire = ucp.encode(Operation(7, 51, {"AdC": "123", "MT": "3", "Msg": "41"}))
        self.assertEqual(int(wire[4:9]), len(wire) - 2)

    def test_checksum(self) -> None:
        self.assertEqual(ucp.checksum(b"01/00035/O/31/0234765439845/0539/"), "A3")
        self.assertEqual(ucp.checksum(b"\xff\x02"), "01")

    def test_lower_case_checksum_is_accepted(self) -> None:
        wire = ucp.encode(Result(1, 31, None, "\xe9"))
        ck = wire[-3:-1]
        self.assertEqual(ucp.decode(wire[:-3] + ck.lower() + b"\x03"), Result(1, 31, None, "é"))

    def test_operation_of_51_with_every_field(self) -> None:
        values = {name: f"v{i}" for i, name in enumerate(ucp.FIELDS[OT.SUBMIT])}
        wire = ucp.encode(Operation(42, 51, values))
        self.assertIn(b"/O/51/v0/v1/v2/", wire)
        self.assertTrue(wire.endswith(b"/v31/v32/" + wire[-3:]))
        self.assertEqual(ucp.decode(wire).fields, values)  # type: ignore[union-attr]

    def test_extra_fields_are_kept(self) -> None:
        body = body5x(5, 52, AdC="1", MT="3", Msg="41")[:-1] + "/extra1//extra3/"
        body = body[:3] + f"{len(body) + 2:05d}" + body[8:]
        op = ucp.decode(frame(body))
        assert isinstance(op, Operation)
        self.assertEqual(op.extra, ("extra1", "", "extra3"))
        self.assertEqual(ucp.encode(op), frame(body))

    def test_missing_trailing_fields_read_as_empty(self) -> None:
        body = "09/00034/O/52/0612/1234/x/1/"
        op = ucp.decode(framed(body))
        self.assertEqual(
            op, Operation(9, 52, {"AdC": "0612", "OAdC": "1234", "AC": "x", "NRq": "1"})
        )

    def test_unknown_ot_keeps_every_field(self) -> None:
        op = ucp.decode(framed("03/00024/O/99/a/b//c/"))
        self.assertEqual(op, Operation(3, 99, {}, ("a", "b", "", "c")))
        self.assertFalse(op.known)  # type: ignore[union-attr]
        self.assertEqual(ucp.encode(op), framed("03/00024/O/99/a/b//c/"))

    def test_results_with_fewer_or_more_fields(self) -> None:
        self.assertEqual(ucp.decode(framed("01/00017/R/51/A/")), Result(1, 51))
        self.assertEqual(
            ucp.decode(framed("01/00024/R/31/A/sm/x/y/")), Result(1, 31, None, "sm", "", ("x", "y"))
        )
        self.assertEqual(ucp.decode(framed("01/00020/R/60/N/07/")), Result(1, 60, 7))

    def errors(self, wire: bytes) -> ucp.FrameError:
        try:
            ucp.decode(wire)
        except ucp.FrameError as e:
            return e
        raise AssertionError("no FrameError")

    def test_decode_errors(self) -> None:
        good = ucp.encode(Operation(12, 31, {"AdC": "1", "PID": "0539"}))
        e = self.errors(good[:-3] + b"00\x03")
        self.assertEqual((e.error, e.trn, e.kind, e.ot), (Error.CHECKSUM_ERROR, 12, "O", 31))
        cases = {
            frame("12/00099/O/31/1/0539/"): "LEN 00099",
            framed("1x/00021/O/31/1/0539/"): "TRN",
            frame("12/0021/O/31/1/0539/"): "LEN",
            framed("12/00021/X/31/1/0539/"): "O/R",
            framed("12/00021/O/3a/1/0539/"): "OT",
            framed("12/00020/R/31/N/7/"): "error code",
            framed("12/00019/R/31/Q//"): "flag",
            frame("12/00009/"): "separators",
            b"\x0212/00021/O/31/1/0539/ZZ\x03": "checksum 'ZZ'",
            b"no stx": "STX",
        }
        for wire, words in cases.items():
            e = self.errors(wire)
            self.assertEqual(e.error, Error.SYNTAX_ERROR, wire)
            self.assertIn(words, e.reason, wire)

    def test_encode_refuses_bad_values(self) -> None:
        bad: list[ucp.Frame] = [
            Operation(100, 31, {}),
            Operation(1, 100, {}),
            Operation(1, 31, {"Msg": "41"}),
            Operation(1, 31, {"AdC": "a/b"}),
            Operation(1, 31, {"AdC": "a\x03"}),
            Operation(1, 31, {"AdC": "€"}),
            Operation(1, 99, {}, ("x/",)),
            Result(1, 31, None, "", "mvp"),
            Result(1, 51, 3, "", "mvp"),
            Result(1, 51, 100),
            Operation(1, 99, {}, ("x" * 99990,)),
        ]
        for f in bad:
            with self.assertRaises(ucp.FieldError, msg=repr(f)[:80]):
                ucp.encode(f)

    def test_empty_fields_are_not_stored(self) -> None:
        self.assertEqual(Operation(1, 31, {"AdC": "", "PID": "1"}).fields, {"PID": "1"})
        self.assertEqual(Operation(1, 31, {"PID": "1"}).get("AdC"), "")


# --- stream framing -----------------------------------------------------------------------------


class ParserTests(SynchronousTestCase):
    a = ucp.encode(Operation(1, 31, {"AdC": "1", "PID": "0539"}))
    b = ucp.encode(Result(2, 51, None, "1:010125120000"))

    def test_byte_by_byte(self) -> None:
        parser = ucp.Parser()
        out: list[Any] = []
        for i in range(len(self.a + self.b)):
            out += parser.feed((self.a + self.b)[i : i + 1])
        self.assertEqual(out, [ucp.decode(self.a), ucp.decode(self.b)])
        self.assertEqual(parser.buffered, 0)

    def test_partial_frame_is_buffered(self) -> None:
        parser = ucp.Parser()
        self.assertEqual(parser.feed(self.a[:10]), [])
        self.assertEqual(parser.buffered, 10)
        self.assertEqual(parser.feed(self.a[10:]), [ucp.decode(self.a)])

    def test_garbage_between_frames_is_skipped_and_reported(self) -> None:
        out = ucp.Parser().feed(b"junk" + self.a + b"\r\n" + self.b + b"tail")
        self.assertEqual(
            [type(x).__name__ for x in out], ["Noise", "Operation", "Noise", "Result", "Noise"]
        )
        self.assertEqual((out[0].size, out[0].sample), (4, b"junk"))  # type: ignore[union-attr]
        self.assertEqual(out[4].size, 4)  # type: ignore[union-attr]

    def test_frame_cut_short_by_a_new_stx(self) -> None:
        out = ucp.Parser().feed(self.a[:12] + self.b)
        self.assertEqual(len(out), 2)
        self.assertIsInstance(out[0], ucp.Noise)
        self.assertIn("new STX", out[0].reason)  # type: ignore[union-attr]
        self.assertEqual(out[1], ucp.decode(self.b))

    def test_garbled_frame(self) -> None:
        bad = self.a[:-3] + b"00\x03"
        [g] = ucp.Parser().feed(bad)
        assert isinstance(g, ucp.Garbled)
        self.assertEqual((g.error, g.trn, g.kind, g.ot, g.raw), (1, 1, "O", 31, bad))

    def test_oversize_frame_is_skipped_then_resync(self) -> None:
        parser = ucp.Parser(max_length=100)
        out = parser.feed(b"\x02" + b"x" * 150)
        self.assertEqual(out, [])
        self.assertEqual(parser.buffered, 0)
        self.assertEqual(parser.feed(b"z" * 30), [])
        out = parser.feed(b"y" * 50 + b"\x03" + self.a)
        self.assertEqual(len(out), 2)
        self.assertEqual((out[0].size, "limit" in out[0].reason), (232, True))  # type: ignore[union-attr]
        self.assertEqual(out[1], ucp.decode(self.a))

    def test_complete_frame_over_the_limit(self) -> None:
        big = ucp.encode(Operation(1, 99, {}, ("x" * 200,)))
        out = ucp.Parser(max_length=100).feed(big + self.a)
        self.assertIsInstance(out[0], ucp.Noise)
        self.assertEqual(out[1], ucp.decode(self.a))

    def test_minimum_limit(self) -> None:
        with self.assertRaises(ValueError):
            ucp.Parser(max_length=10)

    @relaxed
    @given(st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=10))
    def test_random_bytes_only_give_items(self, data: bytes, cuts: list[int]) -> None:
        parser = ucp.Parser(max_length=120)
        pos = 0
        for cut in [*cuts, len(data)]:
            for item in parser.feed(data[pos : pos + cut]):
                self.assertIsInstance(item, Operation | Result | ucp.Garbled | ucp.Noise)
            pos += cut

    @relaxed
    @given(
        st.lists(st.sampled_from([b"", b"\x02", b"\x03", b"/", b"01/00020/R/31/A//93", b"z"])),
    )
    def test_frame_like_bytes_never_raise(self, pieces: list[bytes]) -> None:
        ucp.Parser().feed(b"".join(pieces))
        session = ucp.EsmeSession()
        for event in session.receive(b"".join(pieces), 0.0):
            self.assertIsNotNone(event)

    @relaxed
    @given(st.lists(st.integers(0, 400), max_size=6))
    def test_chunking_does_not_matter(self, cuts: list[int]) -> None:
        stream = b"xx" + self.a + self.b + b"\x02bad\x03" + self.a
        whole = ucp.Parser().feed(stream)
        parser = ucp.Parser()
        pieces: list[Any] = []
        pos = 0
        for cut in [*sorted(cuts), len(stream)]:
            pieces += parser.feed(stream[pos:cut])
            pos = max(pos, cut)
        self.assertEqual(
            [x for x in pieces if not isinstance(x, ucp.Noise)],
            [x for x in whole if not isinstance(x, ucp.Noise)],
        )


# --- round trips ----------------------------------------------------------------------------------

values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="/\x7f"), max_size=12
)


@st.composite
def operations(draw: Any) -> Operation:
    ot = draw(st.sampled_from([1, 31, 51, 52, 53, 60, 2, 99]))
    names = ucp.FIELDS.get(ot, ())
    fields = draw(st.dictionaries(st.sampled_from(names), values)) if names else {}
    extra = tuple(draw(st.lists(values, max_size=3)))
    return Operation(draw(st.integers(0, 99)), ot, fields, extra)


@st.composite
def results(draw: Any) -> Result:
    ot = draw(st.sampled_from([1, 31, 51, 52, 53, 60, 99]))
    error = draw(st.none() | st.integers(0, 99))
    mvp = draw(values) if error is None and 50 <= ot <= 59 else ""
    extra = tuple(draw(st.lists(values.filter(bool), max_size=2)))
    return Result(draw(st.integers(0, 99)), ot, error, draw(values), mvp, extra)


class RoundTripTests(SynchronousTestCase):
    @relaxed
    @given(operations())
    def test_operations(self, op: Operation) -> None:
        wire = ucp.encode(op)
        decoded = ucp.decode(wire)
        self.assertEqual(decoded, op)
        self.assertEqual(ucp.encode(decoded), wire)
        self.assertEqual(ucp.Parser().feed(wire), [decoded])

    @relaxed
    @given(results())
    def test_results(self, result: Result) -> None:
        wire = ucp.encode(result)
        decoded = ucp.decode(wire)
        self.assertEqual(decoded, result)
        self.assertEqual(ucp.encode(decoded), wire)

    @relaxed
    @given(st.text(st.sampled_from(gsm_chars := "@£$¥èé_ΔΦ ABCxyz0129{}[]~€^\\|?!"), max_size=40))
    def test_ira(self, text: str) -> None:
        self.assertEqual(ucp.decode_ira(ucp.encode_ira(text)), text)

    @relaxed
    @given(st.text(st.sampled_from(gsm_chars), min_size=1, max_size=11))
    def test_alphanumeric(self, text: str) -> None:
        assume((gsm0338.septet_count(text) or 0) <= 11)
        self.assertEqual(ucp.decode_alphanumeric(ucp.encode_alphanumeric(text)), text)

    @relaxed
    @given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=20)), max_size=5))
    def test_xser(self, items: list[tuple[int, bytes]]) -> None:
        self.assertEqual(ucp.decode_xser(ucp.encode_xser(items)), items)

    @relaxed
    @given(st.datetimes(datetime(2000, 1, 1), datetime(2068, 12, 31)))
    def test_times(self, when: datetime) -> None:
        self.assertEqual(ucp.parse_scts(ucp.format_scts(when)), when.replace(microsecond=0))
        self.assertEqual(ucp.parse_vp(ucp.format_vp(when)), when.replace(second=0, microsecond=0))


# --- helpers ------------------------------------------------------------------------------------


class HelperTests(SynchronousTestCase):
    def test_ira_text(self) -> None:
        self.assertEqual(ucp.encode_ira("Hello"), "48656C6C6F")
        self.assertEqual(ucp.encode_ira("@$_"), "000211")  # GSM codes, not ASCII
        self.assertEqual(ucp.encode_ira("€"), "1B65")
        self.assertEqual(ucp.decode_ira("48656c6c6f"), "Hello")
        for bad in ("4", "GG", "80", "41 42"):
            with self.assertRaises(ucp.FieldError, msg=bad):
                ucp.decode_ira(bad)
        with self.assertRaises(ucp.FieldError):
            ucp.encode_ira("`")

    def test_hex_text_for_passwords(self) -> None:
        self.assertEqual(ucp.encode_hex_text("secret"), "736563726574")
        self.assertEqual(ucp.encode_hex_text("p@$"), "704024")  # ASCII, as Kannel
        self.assertEqual(ucp.decode_hex_text("704024"), "p@$")
        with self.assertRaises(ucp.FieldError):
            ucp.encode_hex_text("€")

    def test_alphanumeric_example_of_the_emi_specification(self) -> None:
        self.assertEqual(ucp.encode_alphanumeric("ALPHA@NUM"), "10412614190438AB4D")
        self.assertEqual(ucp.decode_alphanumeric("10412614190438AB4D"), "ALPHA@NUM")

    def test_alphanumeric_limits(self) -> None:
        self.assertEqual(ucp.decode_alphanumeric(ucp.encode_alphanumeric("A" * 11)), "A" * 11)
        for bad in ("A" * 12, "", "`", "€" * 6):
            with self.assertRaises(ucp.FieldError, msg=bad):
                ucp.encode_alphanumeric(bad)
        for bad in ("", "1", "0A41"):
            with self.assertRaises(ucp.FieldError, msg=bad):
                ucp.decode_alphanumeric(bad)

    def test_xser(self) -> None:
        udh = bytes.fromhex("050003AB0201")
        encoded = ucp.encode_xser([(1, udh), (2, b"\x08"), (0x0C, b"bill")])
        self.assertEqual(encoded, "0106050003AB02010201080C0462696C6C")
        self.assertEqual(ucp.decode_xser(encoded), [(1, udh), (2, b"\x08"), (12, b"bill")])
        for bad in ("01", "0105AABB", "0"):
            with self.assertRaises(ucp.FieldError, msg=bad):
                ucp.decode_xser(bad)
        with self.assertRaises(ucp.FieldError):
            ucp.encode_xser([(256, b"")])

    def test_times(self) -> None:
        when = datetime(2025, 12, 1, 13, 4, 5)
        self.assertEqual(ucp.format_scts(when), "011225130405")
        self.assertEqual(ucp.format_vp(when), "0112251304")
        self.assertEqual(ucp.parse_scts("011225130405"), when)
        self.assertEqual(ucp.parse_vp("0112251304"), when.replace(second=0))
        for bad in ("01122513040", "32122513040x", "321225130405"):
            with self.assertRaises(ucp.FieldError, msg=bad):
                ucp.parse_scts(bad)

    def test_message_ids(self) -> None:
        self.assertEqual(ucp.message_id("0031612", "011225130405"), "0031612:011225130405")
        self.assertEqual(ucp.split_message_id("0031612:011225130405"), ("0031612", "011225130405"))
        self.assertEqual(ucp.split_message_id("a:b:011225130405"), ("a:b", "011225130405"))
        for bad in ("", "0031612", "0031612:0112251304", "x:01122513040a"):
            self.assertIsNone(ucp.split_message_id(bad), bad)

    def test_make_submit_text(self) -> None:
        fields = ucp.make_submit(
            "+31612345678",
            "+4915112345",
            "Hi @ you",
            notify=7,
            validity=datetime(2025, 1, 2, 3, 4),
            deferred=datetime(2025, 1, 2, 1, 0),
            pid=539,
        )
        self.assertEqual(
            fields,
            {
                "AdC": "0031612345678",
                "OAdC": "4915112345",
                "OTOA": "1139",
                "NRq": "1",
                "NT": "7",
                "VP": "0201250304",
                "DD": "1",
                "DDT": "0201250100",
                "RPID": "0539",
                "MT": "3",
                "Msg": "4869200020796F75",
            },
        )

    def test_make_submit_binary_alphanumeric(self) -> None:
        fields = ucp.make_submit(
            "0612", "Shop", data=b"\x00\xd8", udh=bytes.fromhex("050003010201"), dcs=8, PR="1"
        )
        self.assertEqual(fields["OAdC"], ucp.encode_alphanumeric("Shop"))
        self.assertEqual(
            {k: v for k, v in fields.items() if k != "OAdC"},
            {
                "AdC": "0612",
                "OTOA": "5039",
                "MT": "4",
                "NB": "0016",
                "Msg": "00D8",
                "MCLs": "1",
                "XSer": "01060500030102010201" + "08",
                "PR": "1",
            },
        )
        msg = ucp.read_message(Operation(0, 52, fields))
        self.assertEqual(
            (msg.sender, msg.alphanumeric_sender, msg.data, msg.udh, msg.dcs, msg.text),
            ("Shop", True, b"\x00\xd8", bytes.fromhex("050003010201"), 8, None),
        )

    def test_make_submit_refusals(self) -> None:
        for kwargs in (
            {"adc": "12a", "oadc": "1", "text": "x"},
            {"adc": "1" * 17, "oadc": "1", "text": "x"},
            {"adc": "1", "oadc": "1"},
            {"adc": "1", "oadc": "1", "text": "x", "data": b""},
            {"adc": "1", "oadc": "1", "text": "x", "notify": 8},
            {"adc": "1", "oadc": "1", "text": "`"},
        ):
            with self.assertRaises(ucp.FieldError, msg=str(kwargs)):
                ucp.make_submit(**kwargs)  # type: ignore[arg-type]

    def test_read_message(self) -> None:
        msg = ucp.read_message(
            Operation(0, 52, {"AdC": "1234", "OAdC": "0612", "MT": "3", "Msg": "481F"})
        )
        self.assertEqual((msg.sender, msg.recipient, msg.text), ("0612", "1234", "HÉ"))
        self.assertEqual(ucp.read_message(Operation(0, 1, {"MT": "2", "Msg": "123"})).text, "123")
        nb = ucp.read_message(Operation(0, 52, {"MT": "4", "NB": "8", "Msg": "AABB"}))
        self.assertEqual(nb.data, b"\xaa")
        unknown = ucp.read_message(Operation(0, 52, {"MT": "3", "XSer": "0C01FF0201F5"}))
        self.assertEqual(
            (unknown.xser, unknown.dcs, unknown.text), (((12, b"\xff"), (2, b"\xf5")), 0xF5, "")
        )
        for fields in (
            {"MT": "2", "Msg": "12a"},
            {"MT": "4", "Msg": "ABC"},
            {"MT": "4", "NB": "x", "Msg": "AB"},
            {"MT": "5"},
            {"MT": "3", "Msg": "FF"},
            {"MT": "3", "XSer": "01FF"},
            {"MT": "3", "OTOA": "5039", "OAdC": "zz"},
        ):
            with self.assertRaises(ucp.FieldError, msg=str(fields)):
                ucp.read_message(Operation(0, 52, fields))

    def test_parse_notification(self) -> None:
        op = Operation(
            3,
            53,
            {
                "AdC": "0031612345678",
                "OAdC": "1234",
                "SCTS": "011225123059",
                "Dst": "2",
                "Rsn": "108",
                "DSCTS": "011225123500",
                "MT": "3",
                "Msg": ucp.encode_ira("not delivered"),
            },
        )
        n = ucp.parse_notification(op)
        self.assertEqual(n.id, "0031612345678:011225123059")
        self.assertEqual(
            (n.status, n.reason, n.final), (ucp.DeliveryStatus.NOT_DELIVERED, 108, True)
        )
        self.assertEqual((n.delivered_at, n.text), (datetime(2025, 12, 1, 12, 35), "not delivered"))
        buffered = ucp.parse_notification(
            Operation(1, 53, {"AdC": "1", "SCTS": "011225123059", "Dst": "1"})
        )
        self.assertEqual(
            (buffered.final, buffered.reason, buffered.delivered_at), (False, None, None)
        )
        self.assertEqual(
            ucp.parse_notification(Operation(1, 53, {"SCTS": "011225123059", "Dst": "7"})).status,
            7,
        )
        for fields in (
            {"Dst": "0"},
            {"SCTS": "011225123059"},
            {"SCTS": "011225123059", "Dst": "0", "Rsn": "x"},
        ):
            with self.assertRaises(ucp.FieldError):
                ucp.parse_notification(Operation(1, 53, fields))

    def test_error_table(self) -> None:
        self.assertEqual(ucp.error_name(4), "OPERATION_NOT_ALLOWED (04)")
        self.assertEqual(ucp.error_name(99), "EC 99")
        self.assertEqual(ucp.error_text(24), "Message too long")
        self.assertEqual(ucp.error_text(28), "!UNRECOGNIZED ERROR CODE!")
        self.assertEqual(Error.AUTHENTICATION_FAILURE, 7)
        self.assertEqual(Error.MESSAGE_TYPE_NOT_VALID, 26)

    def test_temporary_or_permanent(self) -> None:
        for code in (1, 4, 5, 37, 99, 150):
            self.assertTrue(ucp.is_temporary(code), code)
        for code in (2, 3, 6, 7, 8, 23, 24, 26):
            self.assertFalse(ucp.is_temporary(code), code)

    def test_validate(self) -> None:
        self.assertIsNone(ucp.validate(Operation(1, 31, {})))
        self.assertEqual(ucp.validate(Operation(1, 51, {}))[0], 3)  # type: ignore[index]
        self.assertEqual(ucp.validate(Operation(1, 77, {}))[0], 3)  # type: ignore[index]
        self.assertEqual(ucp.validate(Operation(1, 52, {"MT": "3", "Msg": "4"}))[0], 2)  # type: ignore[index]
        self.assertEqual(ucp.validate(Operation(1, 52, {"SCTS": "99"}))[0], 2)  # type: ignore[index]
        self.assertEqual(ucp.validate(Operation(1, 53, {"Dst": "0"}))[0], 2)  # type: ignore[index]


# --- the session --------------------------------------------------------------------------------


def sent(session: ucp.EsmeSession) -> list[Any]:
    """What the session wrote, decoded."""
    return ucp.Parser().feed(session.data_to_send())


SUBMIT = {"AdC": "0031612345678", "OAdC": "1234", "MT": "3", "Msg": "4869"}
SCTS = "011225123059"


def logged_in(**kwargs: Any) -> ucp.EsmeSession:
    session = ucp.EsmeSession(**kwargs)
    trn = session.login("acct", "secret", now=0.0)
    session.data_to_send()
    assert session.receive(ucp.encode(Result(trn, 60)), 0.0) == [ucp.LoggedIn(trn)]
    return session


class SessionTests(SynchronousTestCase):
    def test_login(self) -> None:
        session = ucp.EsmeSession()
        trn = session.login("acct", "secret", now=1.0)
        self.assertIs(session.state, ucp.State.LOGGING_IN)
        [op] = sent(session)
        self.assertEqual(
            op,
            Operation(
                trn,
                60,
                {
                    "OAdC": "acct",
                    "OTON": "6",
                    "ONPI": "5",
                    "STYP": "1",
                    "PWD": "736563726574",
                    "VERS": "0100",
                },
            ),
        )
        with self.assertRaises(ucp.SessionError):
            session.submit(SUBMIT, now=1.0)
        self.assertEqual(session.receive(ucp.encode(Result(trn, 60)), 2.0), [ucp.LoggedIn(trn)])
        self.assertIs(session.state, ucp.State.LOGGED_IN)
        with self.assertRaises(ucp.SessionError):
            session.login("acct", "secret", now=1.0)

    def test_login_refused(self) -> None:
        session = ucp.EsmeSession()
        trn = session.login("acct", "wrong", now=1.0)
        events = session.receive(ucp.encode(Result(trn, 60, 7, "bad password")), 2.0)
        self.assertEqual(events, [ucp.LoginRefused(trn, 7, "bad password")])
        self.assertIs(session.state, ucp.State.OPEN)

    def test_submit_without_login_and_ack(self) -> None:
        session = ucp.EsmeSession()
        trn = session.submit(SUBMIT, now=1.0, ref="m1")
        [op] = sent(session)
        self.assertEqual(op, Operation(trn, 51, SUBMIT))
        self.assertEqual(session.outstanding, {trn: ucp.Pending(trn, 51, "m1", 1.0, SUBMIT["AdC"])})
        sm = f"{SUBMIT['AdC']}:{SCTS}"
        [event] = session.receive(ucp.encode(Result(trn, 51, None, sm)), 2.0)
        self.assertEqual(event, ucp.Acked(trn, 51, "m1", sm, sm))
        self.assertEqual(event.scts, SCTS)  # type: ignore[union-attr]
        self.assertEqual(session.outstanding, {})

    def test_ack_without_usable_id(self) -> None:
        session = ucp.EsmeSession()
        trn = session.submit(SUBMIT, now=1.0)
        [event] = session.receive(ucp.encode(Result(trn, 51, None, "OK", "0101250000")), 2.0)
        self.assertEqual(event, ucp.Acked(trn, 51, None, None, "OK", "0101250000"))
        self.assertIsNone(event.scts)  # type: ignore[union-attr]

    def test_nack(self) -> None:
        session = logged_in()
        trn = session.submit(SUBMIT, now=1.0, ref="m")
        trn2 = session.submit(SUBMIT, now=1.0, ref="n")
        events = session.receive(
            ucp.encode(Result(trn, 51, 4, "throttling")) + ucp.encode(Result(trn2, 51, 24)), 2.0
        )
        self.assertEqual(
            events, [ucp.Nacked(trn, 51, "m", 4, "throttling"), ucp.Nacked(trn2, 51, "n", 24, "")]
        )
        self.assertEqual([e.temporary for e in events], [True, False])  # type: ignore[union-attr]

    def test_trn_allocation_window_and_wrap(self) -> None:
        session = ucp.EsmeSession(window=3, first_trn=98)
        trns = [session.submit(SUBMIT, now=0.0) for _ in range(3)]
        self.assertEqual(trns, [98, 99, 0])
        self.assertFalse(session.can_send)
        with self.assertRaises(ucp.WindowFull):
            session.submit(SUBMIT, now=0.0)
        session.receive(ucp.encode(Result(99, 51, None, "")), 1.0)
        self.assertTrue(session.can_send)
        self.assertEqual(session.submit(SUBMIT, now=1.0), 1)
        session.receive(ucp.encode(Result(0, 51, None, "")), 1.0)
        self.assertEqual(session.submit(SUBMIT, now=1.0), 2)  # 98 and 1 are busy: next in turn

    def test_window_bounds(self) -> None:
        for bad in (0, 101):
            with self.assertRaises(ValueError):
                ucp.EsmeSession(window=bad)
        with self.assertRaises(ValueError):
            ucp.EsmeSession(first_trn=100)
        self.assertEqual(ucp.EsmeSession().window, ucp.DEFAULT_WINDOW)

    def test_bad_fields_leave_no_trace(self) -> None:
        session = ucp.EsmeSession()
        with self.assertRaises(ucp.FieldError):
            session.submit({"AdC": "a/b"}, now=0.0)
        self.assertEqual((session.outstanding, session.data_to_send()), ({}, b""))

    def test_keepalive(self) -> None:
        session = ucp.EsmeSession(window=1)
        self.assertFalse(session.needs_keepalive(100.0, 10.0))
        session.submit(SUBMIT, now=0.0)
        trn = session.keepalive(now=5.0, adc="acct")  # not counted against the window
        [_, op] = sent(session)
        self.assertEqual(op, Operation(trn, 31, {"AdC": "acct", "PID": "0539"}))
        self.assertFalse(session.needs_keepalive(100.0, 10.0))  # one is outstanding
        self.assertEqual(session.receive(ucp.encode(Result(trn, 31)), 6.0), [])
        self.assertFalse(session.needs_keepalive(10.0, 10.0))
        self.assertTrue(session.needs_keepalive(16.0, 10.0))
        events = session.receive(ucp.encode(Result(session.keepalive(now=20.0), 31, 3)), 21.0)
        self.assertEqual([type(e) for e in events], [ucp.Nacked])

    def test_incoming_mo_is_acked_only_when_the_caller_says(self) -> None:
        session = logged_in()
        mo = Operation(
            17, 52, {"AdC": "1234", "OAdC": "0612", "SCTS": SCTS, "MT": "3", "Msg": "41"}
        )
        self.assertEqual(session.receive(ucp.encode(mo), 1.0), [ucp.MoReceived(17, mo)])
        self.assertEqual(session.data_to_send(), b"")
        self.assertTrue(session.ack(17, now=2.0))
        self.assertEqual(sent(session), [Result(17, 52)])
        self.assertEqual(session.idle_since, 2.0)
        with self.assertRaises(ucp.SessionError):
            session.ack(17)

    def test_incoming_notification_and_alert(self) -> None:
        session = ucp.EsmeSession()
        dn = Operation(
            3, 53, {"AdC": "0031612345678", "SCTS": SCTS, "Dst": "0", "Rsn": "000", "MT": "3"}
        )
        alert = Operation(4, 31, {"AdC": "0612", "PID": "0539"})
        events = session.receive(ucp.encode(dn) + ucp.encode(alert), 1.0)
        self.assertEqual(
            events,
            [
                ucp.NotificationReceived(3, dn, ucp.parse_notification(dn)),
                ucp.Alert(4, alert),
            ],
        )
        self.assertEqual(events[0].notification.id, f"0031612345678:{SCTS}")  # type: ignore[union-attr]
        session.nack(3, Error.SYNTAX_ERROR, message="later")
        session.ack(4)
        self.assertEqual(sent(session), [Result(3, 53, 2, "later"), Result(4, 31)])

    def test_same_trn_twice_from_the_peer(self) -> None:
        session = ucp.EsmeSession()
        alert = ucp.encode(Operation(4, 31, {}))
        self.assertEqual(len(session.receive(alert + alert, 1.0)), 2)
        self.assertTrue(session.ack(4))
        self.assertTrue(session.ack(4))
        with self.assertRaises(ucp.SessionError):
            session.ack(4)

    def test_malformed_operations_are_nacked(self) -> None:
        session = ucp.EsmeSession()
        good = ucp.encode(Operation(21, 52, {"MT": "3", "Msg": "41"}))
        cases = [
            (good[:-3] + b"00\x03", Result(21, 52, 1, "Checksum error")),
            (frame("22/00099/O/52/x/"), Result(22, 52, 2, "Syntax error")),
            (
                ucp.encode(Operation(23, 52, {"MT": "3", "Msg": "4"})),
                Result(23, 52, 2, "Syntax error"),
            ),
            (ucp.encode(Operation(24, 53, {"Dst": "x"})), Result(24, 53, 2, "Syntax error")),
            (
                ucp.encode(Operation(25, 77, {}, ("a",))),
                Result(25, 77, 3, "Operation not supported by system"),
            ),
            (
                ucp.encode(Operation(26, 51, SUBMIT)),
                Result(26, 51, 3, "Operation not supported by system"),
            ),
        ]
        for wire, answer in cases:
            events = session.receive(wire, 1.0)
            self.assertEqual([type(e) for e in events], [ucp.PeerError], wire)
            self.assertEqual(sent(session), [answer], wire)

    def test_unanswerable_garbage(self) -> None:
        session = ucp.EsmeSession()
        trn = session.submit(SUBMIT, now=0.0)
        session.data_to_send()
        bad_result = ucp.encode(Result(trn, 51, None, "x"))[:-3] + b"00\x03"
        events = session.receive(b"noise" + bad_result + frame("xx/00020/O/52/"), 1.0)
        self.assertEqual([type(e) for e in events], [ucp.PeerError] * 3)
        self.assertEqual(session.data_to_send(), b"")  # results and unreadable TRNs: no NACK
        self.assertIn(trn, session.outstanding)  # a garbled result settles nothing

    def test_stray_results(self) -> None:
        session = ucp.EsmeSession()
        trn = session.submit(SUBMIT, now=0.0)
        events = session.receive(
            ucp.encode(Result(50, 51, None, "")) + ucp.encode(Result(trn, 31)), 1.0
        )
        self.assertEqual(events, [ucp.Stray(Result(50, 51, None, "")), ucp.Stray(Result(trn, 31))])
        self.assertIn(trn, session.outstanding)

    def test_expired_trns_are_not_reused_and_late_results_reconcile(self) -> None:
        session = ucp.EsmeSession(window=2)
        a = session.submit(SUBMIT, now=0.0, ref="a")
        b = session.submit(SUBMIT, now=5.0, ref="b")
        self.assertEqual(session.expired(10.0, 8.0), [ucp.Pending(a, 51, "a", 0.0, SUBMIT["AdC"])])
        self.assertEqual(list(session.outstanding), [b])
        c = session.submit(SUBMIT, now=10.0, ref="c")
        self.assertNotIn(c, (a, b))
        sm = f"{SUBMIT['AdC']}:{SCTS}"
        [late] = session.receive(ucp.encode(Result(a, 51, None, sm)), 11.0)
        self.assertEqual(
            late, ucp.Late(ucp.Pending(a, 51, "a", 0.0, SUBMIT["AdC"]), Result(a, 51, None, sm))
        )
        self.assertEqual(
            [p.ref for p in session.expired(math.inf, 0)], ["b", "c"]
        )  # connection lost: everything

    def test_all_trns_blocked(self) -> None:
        session = ucp.EsmeSession(window=100)
        for _ in range(100):
            session.submit(SUBMIT, now=0.0)
        session.expired(math.inf, 0)
        self.assertFalse(session.can_send)
        with self.assertRaises(ucp.WindowFull):
            session.submit(SUBMIT, now=1.0)

    def test_login_expiry_reopens(self) -> None:
        session = ucp.EsmeSession()
        session.login("a", "b", now=0.0)
        [pending] = session.expired(30.0, 30.0)
        self.assertEqual(pending.ot, 60)
        self.assertIs(session.state, ucp.State.OPEN)

    def test_closed_session(self) -> None:
        session = ucp.EsmeSession()
        session.receive(ucp.encode(Operation(5, 31, {})), 0.0)
        session.close()
        self.assertFalse(session.ack(5))
        self.assertEqual(session.data_to_send(), b"")
        for call in (
            lambda: session.submit(SUBMIT, now=0.0),
            lambda: session.keepalive(now=0.0),
            lambda: session.login("a", "b", now=0.0),
        ):
            with self.assertRaises(ucp.SessionError):
                call()
        self.assertFalse(session.needs_keepalive(100.0, 1.0))
        session.receive(ucp.encode(Operation(6, 52, {})), 1.0)
        self.assertEqual(session.data_to_send(), b"")  # no NACKs either


# --- Kannel's decode_emimsg ---------------------------------------------------------------------


ascii_values = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/"), max_size=10
)


class KannelTests(SynchronousTestCase):
    """Frames we encode, read by Kannel's ``decode_emimsg``."""

    def check(self, op: Operation) -> Kannel:
        k = Kannel(ucp.encode(op))
        self.assertTrue(k.valid, k.stderr)
        self.assertEqual(k.fields["TRN"], str(op.trn))
        self.assertEqual(k.fields["TYPE"], "O (Operation)")
        self.assertTrue(k.fields["OPERATION"].startswith(f"{op.ot} "), k.fields["OPERATION"])
        return k

    def test_submit_with_ira_text(self) -> None:
        fields = ucp.make_submit(
            "+31612345678", "1234", "Hello Kannel", notify=3, validity=datetime(2025, 12, 1, 12, 30)
        )
        k = self.check(Operation(5, 51, fields))
        self.assertEqual(k.fields["OPERATION"], "51 (Submit Short Message operation)")
        expected = {kannel_label(51, n): fields.get(n, "") for n in ucp.FIELDS[OT.SUBMIT]}
        self.assertEqual({label: k.fields[label] for label in expected}, expected)
        self.assertEqual(k.fields["E50_AMSG"], "Hello Kannel")
        self.assertEqual(
            (k.fields["E50_ADC"], k.fields["E50_NRQ"], k.fields["E50_NT"], k.fields["E50_VP"]),
            ("0031612345678", "1", "3", "0112251230"),
        )

    def test_submit_binary_with_udh_in_xser(self) -> None:
        udh = bytes.fromhex("050003CC0201")
        fields = ucp.make_submit("0612345678", "1234", data=b"\xde\xad\xbe\xef", udh=udh, dcs=0xF5)
        k = self.check(Operation(6, 51, fields))
        self.assertEqual(
            (k.fields["E50_MT"], k.fields["E50_NB"], k.fields["E50_NMSG"], k.fields["E50_MCLS"]),
            ("4", "0032", "DEADBEEF", "1"),
        )
        self.assertEqual(k.fields["E50_TMSG"].encode("latin-1"), b"\xde\xad\xbe\xef")
        self.assertEqual(k.fields["E50_XSER"], "0106050003CC02010201F5")

    def test_submit_with_alphanumeric_originator(self) -> None:
        fields = ucp.make_submit("0612345678", "ALPHA@NUM", "x")
        k = self.check(Operation(7, 51, fields))
        self.assertEqual(
            (k.fields["E50_OADC"], k.fields["E50_OTOA"]), ("10412614190438AB4D", "5039")
        )

    def test_login(self) -> None:
        session = ucp.EsmeSession(first_trn=0)
        session.login("account1", "s3cr3t!", now=0.0)
        k = Kannel(session.data_to_send())
        self.assertTrue(k.valid, k.stderr)
        self.assertEqual(k.fields["OPERATION"], "60 (Session management operation)")
        self.assertEqual(
            {n: k.fields[f"E60_{n}"] for n in ("OADC", "OTON", "ONPI", "STYP", "PWD", "VERS")},
            {
                "OADC": "account1",
                "OTON": "6",
                "ONPI": "5",
                "STYP": "1",
                "PWD": "s3cr3t!",  # Kannel un-hexes it
                "VERS": "0100",
            },
        )

    def test_keepalive(self) -> None:
        session = ucp.EsmeSession(first_trn=42)
        session.keepalive(now=0.0, adc="account1")
        k = Kannel(session.data_to_send())
        self.assertTrue(k.valid, k.stderr)
        self.assertEqual(k.fields["TRN"], "42")
        self.assertEqual(k.fields["OPERATION"], "31 (Alert Operation)")
        self.assertEqual((k.fields["E50_ADC"], k.fields["E50_PID"]), ("account1", "0539"))

    def test_acks(self) -> None:
        for result in (
            Result(3, 52),
            Result(4, 53, None, "x"),
            Result(5, 31),
            Result(6, 60, None, "ok"),
        ):
            k = Kannel(ucp.encode(result))
            self.assertTrue(k.valid, (result, k.stderr))
            self.assertEqual(k.fields["TYPE"], "R (Result)")
            self.assertEqual(k.fields[f"E{result.ot}_ACK"], "A")
            self.assertNotIn("negative ack", k.stderr)

    def test_nacks_and_the_error_table(self) -> None:
        for code in (*sorted(ucp._ERROR_TEXT), 28, 99):
            k = Kannel(ucp.encode(Result(9, 52, code, "sys msg")))
            self.assertTrue(k.valid, k.stderr)
            self.assertEqual(k.fields["E52_ACK"], "N")
            match = re.search(
                r"Got negative ack\. op:52, trn:9, error:(\d+) \((.*)\), message:(.*)", k.stderr
            )
            assert match is not None, k.stderr
            self.assertEqual(
                (int(match[1]), match[2], match[3]), (code, ucp.error_text(code), "sys msg")
            )

    def test_kannel_rejects_what_we_reject(self) -> None:
        good = ucp.encode(Operation(1, 31, {"AdC": "1", "PID": "0539"}))
        for bad in (good[:-3] + b"00\x03", good[:4] + b"9" + good[5:]):
            self.assertFalse(Kannel(bad).valid)
            with self.assertRaises(ucp.FrameError):
                ucp.decode(bad)

    @settings(deadline=None, max_examples=25)
    @given(
        st.sampled_from([51, 52, 53]),
        st.integers(0, 99),
        st.dictionaries(st.sampled_from(ucp.FIELDS[OT.SUBMIT]), ascii_values),
    )
    def test_random_5x_operations(self, ot: int, trn: int, fields: dict[str, str]) -> None:
        # decode_emimsg dereferences AdC and MT without checking them, and prints no AdC
        # that is not a number
        adc = fields.get("AdC", "")
        fields = {**fields, "AdC": adc if adc.isdigit() else "0612", "MT": "3", "Msg": "414243"}
        k = self.check(Operation(trn, ot, fields))
        for name in ucp.FIELDS[OT.SUBMIT]:
            self.assertEqual(k.fields[kannel_label(ot, name)], fields.get(name, ""), name)
