"""Message text policy: encoding choice, segmentation, maxmsgs truncation, transliteration.

Everything a message needs before a link encodes it: which alphabet (GSM 7-bit when the text
allows it, since UCS-2 costs more than twice as many parts), the TP-DCS byte, and the parts with
their concatenation UDH (3GPP TS 23.040 §9.2.3.24.1/.8). Parts carry *text*, split on character
boundaries: an escape pair or a UTF-16 surrogate pair is never cut, so each part encodes on its
own, whatever the link does with it (packed or unpacked GSM, UCS-2, Latin-1).

Segmentation works on a byte string with one byte per unit (septet for GSM, UTF-16 code unit
for UCS-2) where one value marks the first unit of a pair: part boundaries and character counts
then come from C-level indexing and ``bytes.count``, never a Python loop per character.
"""

from __future__ import annotations

import enum
import re
import unicodedata

import attrs
from anyascii import anyascii

from protocols import gsm0338

__all__ = [
    "MAX_PARTS",
    "Encoding",
    "Part",
    "Plan",
    "TextError",
    "TooLong",
    "count",
    "plan_binary",
    "plan_text",
    "transliterate",
]

MAX_PARTS = 255
"""The concatenation IE counts parts in one octet."""

UD_OCTETS = 140
"""TP-UD capacity of one SMS."""


class Encoding(enum.StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"
    BINARY = "8bit"


@attrs.frozen
class Part:
    """One SMS of a message: what a link needs to build its PDU."""

    seq: int  # 1-based
    udh: bytes  # b"" when the part has no user data header
    text: str | None  # this part's text for GSM7/UCS2 (exact slice of the final text)
    data: bytes | None  # payload octets (without UDH) for BINARY
    units: int  # septets (GSM7), UTF-16 code units (UCS2) or octets (BINARY) of the payload


@attrs.frozen
class Plan:
    """How a message goes out: one alphabet and DCS for all its parts."""

    encoding: Encoding
    dcs: int  # TP-DCS / SMPP data_coding byte
    parts: tuple[Part, ...]
    text: str | None  # the final text (after transliteration and truncation); None for binary
    truncated: bool

    @property
    def total(self) -> int:
        return len(self.parts)


class TextError(ValueError):
    """The message cannot be planned; ``str(exc)`` is a one-line reason fit for a client."""


class TooLong(TextError):
    """The message needs more parts than allowed and truncation is off."""

    def __init__(self, needed: int, allowed: int, what: str = "text") -> None:
        super().__init__(f"{what} needs {needed} parts, at most {allowed} allowed")
        self.needed = needed
        self.allowed = allowed


# --- capacities and headers --------------------------------------------------------------------

_SINGLE = {Encoding.GSM7: 160, Encoding.UCS2: 70, Encoding.BINARY: UD_OCTETS}
_DCS = {Encoding.GSM7: 0x00, Encoding.BINARY: 0x04, Encoding.UCS2: 0x08}
_FLASH = 0x10  # TP-DCS bit 4 "class present" with class 0 (bits 1-0 = 00)


def _concat_udh_len(ref16: bool) -> int:
    """Octets of a UDH holding only the concatenation IE, UDHL included."""
    return 7 if ref16 else 6


def _capacity(encoding: Encoding, udh_octets: int) -> int:
    """Payload units one SMS holds after a UDH of ``udh_octets`` (fill bits for GSM)."""
    if encoding is Encoding.GSM7:
        return (UD_OCTETS * 8 - udh_octets * 8 - gsm0338.fill_bits(udh_octets)) // 7
    if encoding is Encoding.UCS2:
        return (UD_OCTETS - udh_octets) // 2
    return UD_OCTETS - udh_octets


def _concat_ie(ref: int, total: int, seq: int, ref16: bool) -> bytes:
    if ref16:
        return bytes((0x08, 4, (ref >> 8) & 0xFF, ref & 0xFF, total, seq))
    return bytes((0x00, 3, ref & 0xFF, total, seq))


def _concat_udh(ref: int, total: int, seq: int, ref16: bool) -> bytes:
    ie = _concat_ie(ref, total, seq, ref16)
    return bytes((len(ie),)) + ie


# --- parameter checks --------------------------------------------------------------------------


def _check_maxmsgs(maxmsgs: int) -> None:
    if not isinstance(maxmsgs, int) or not 1 <= maxmsgs <= MAX_PARTS:
        raise TextError(f"maxmsgs must be 1..{MAX_PARTS}, not {maxmsgs!r}")


def _dcs_alphabet(dcs: int) -> Encoding | None:
    """The alphabet a TP-DCS names (23.038 §4), None when it names none we can produce.

    In the general group with no class, bits 1-0 must be 0: values 1-3, 5-7... are SMPP
    data_coding codes (IA5, Latin-1, JIS...) rather than TP-DCS, so they are labels only.
    """
    if not isinstance(dcs, int) or not 0 <= dcs <= 0xFF:
        raise TextError(f"dcs must be 0..255, not {dcs!r}")
    if dcs < 0x80:  # general data coding, with or without automatic deletion
        if dcs & 0x20 or (not dcs & 0x10 and dcs & 0x03):
            return None
        return (Encoding.GSM7, Encoding.BINARY, Encoding.UCS2, None)[(dcs >> 2) & 3]
    if dcs < 0xC0:
        return None  # reserved groups
    if dcs < 0xE0:
        return Encoding.GSM7  # message waiting indication, discard/store
    if dcs < 0xF0:
        return Encoding.UCS2  # message waiting indication, store, UCS-2
    return Encoding.BINARY if dcs & 0x04 else Encoding.GSM7  # data coding/message class


def _resolve_encoding(encoding: Encoding | str | None, dcs: int | None) -> Encoding | None:
    if encoding is not None:
        try:
            encoding = Encoding(encoding)
        except ValueError:
            raise TextError(f"unknown encoding {encoding!r}") from None
    if dcs is None:
        return encoding
    implied = _dcs_alphabet(dcs)
    if encoding is not None and implied is not None and implied is not encoding:
        raise TextError(f"dcs 0x{dcs:02X} means {implied}, not {encoding}")
    return encoding or implied


def _default_dcs(encoding: Encoding, flash: bool, dcs: int | None) -> int:
    if dcs is not None:
        return dcs
    return _DCS[encoding] | (_FLASH if flash else 0)


# --- transliteration ---------------------------------------------------------------------------

# Typographic characters whose anyascii rendering is not what a reader of an SMS expects.
_PUNCTUATION = {
    # single quotes, primes, angle quotes, grave and acute accents
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2039\u203a`\u00b4", "'"),
    # double quotes, double prime, guillemets
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
    # hyphens, dashes, minus sign, hyphen bullet
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043", "-"),
    # bullets
    **dict.fromkeys("\u2022\u2023\u25e6\u2219", "*"),
    "\u00b7": ".",  # middle dot
    "\u2026": "...",  # ellipsis
    # tab, no-break and typographic spaces
    **dict.fromkeys("\t\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009", " "),
    **dict.fromkeys("\u200a\u202f\u205f\u3000", " "),
    "\u2028": "\n",  # line separator
    "\u2029": "\n",  # paragraph separator
}
_INVISIBLE = frozenset(("Mn", "Me", "Cf"))  # combining marks, format characters: drop
_TRANSLIT_CACHE_MAX = 8192


def _translit_char(ch: str) -> str:
    if gsm0338.is_gsm(ch):
        return ch
    ascii_form = anyascii(ch)
    if not ascii_form:
        return "" if unicodedata.category(ch) in _INVISIBLE else "?"
    return ascii_form if gsm0338.is_gsm(ascii_form) else "?"


class _TranslitTable(dict[int, str]):
    """str.translate table that fills itself: C-speed lookups for characters seen before."""

    def __missing__(self, codepoint: int) -> str:
        replacement = _translit_char(chr(codepoint))
        if len(self) < _TRANSLIT_CACHE_MAX:
            self[codepoint] = replacement
        return replacement


_TRANSLIT = _TranslitTable({ord(k): v for k, v in _PUNCTUATION.items()})


def transliterate(text: str) -> str:
    """Replace the characters GSM 7-bit cannot carry; GSM characters (é, Ä, €...) stay.

    Lossy, so only on request: typographic punctuation first (curly quotes, dashes, ellipsis,
    odd spaces), then anyascii per character; a character with no GSM rendering becomes '?',
    an invisible one (combining mark, format character) is dropped. Text that is not already
    GSM is NFC-normalised first, so a decomposed 'é' stays 'é'.
    """
    if gsm0338.is_gsm(text):
        return text
    return unicodedata.normalize("NFC", text).translate(_TRANSLIT)


_translit = transliterate  # plan_text's keyword argument shadows the name


# --- segmentation ------------------------------------------------------------------------------

_HIGH_SURROGATE = bytes(1 if 0xD8 <= b <= 0xDB else 0 for b in range(256))
_EXTENSION_ASCII = {ord(c) for c in gsm0338.EXTENSION.values() if c.isascii()}
_ESCAPE_LEAD = bytes(gsm0338.ESC if b in _EXTENSION_ASCII else 0 for b in range(256))


def _escape_marks(text: str) -> bytes:
    """One byte per septet of GSM ``text``, ESC where an escape pair starts.

    Same layout as the encoded septets, built without encoding: ``str.translate`` is slow on
    non-ASCII text, while these are four C-level passes. € is the only non-ASCII extension
    character; other non-ASCII GSM characters are one septet, like the '?' that stands in.
    """
    ascii_view = text.replace("€", "|").encode("ascii", "replace")
    return ascii_view.translate(_ESCAPE_LEAD).replace(b"\x1b", b"\x1b\x00")


_NEEDS_PAIRS = re.compile("[\ud800-\udfff\U00010000-\U0010ffff]")  # astral or surrogate


class _Units:
    """A text seen as a run of encoding units, some of which start a two-unit pair.

    ``marks`` holds one byte per unit and ``lead`` is the value that starts a pair (ESC for
    GSM, 1 for a UTF-16 high surrogate); ``marks`` is None when the text has no pairs, which
    makes every unit one character.
    """

    __slots__ = ("lead", "marks", "size")

    def __init__(self, size: int, marks: bytes | None = None, lead: int = 0) -> None:
        self.size = size
        self.marks = marks
        self.lead = lead

    @classmethod
    def of(cls, text: str, encoding: Encoding, septets: int | None) -> _Units:
        if encoding is Encoding.GSM7:
            assert septets is not None
            if septets == len(text):
                return cls(septets)
            return cls(septets, _escape_marks(text), gsm0338.ESC)
        if not _NEEDS_PAIRS.search(text):
            return cls(len(text))
        try:
            raw = text.encode("utf-16-be")
        except UnicodeEncodeError as exc:
            raise TextError(f"unpaired surrogate at index {exc.start}") from None
        return cls(len(raw) // 2, raw[0::2].translate(_HIGH_SURROGATE), 1)

    def bounds(self, cap: int, limit: int | None = None) -> list[tuple[int, int]]:
        """Greedy [start, end) unit ranges of at most ``cap``, never ending on a pair's lead.

        Greedy splitting is prefix-stable, so the first k ranges are the same whatever follows:
        truncating to k parts is just taking them. Stops after ``limit`` ranges when given.
        """
        size, marks, lead = self.size, self.marks, self.lead
        if limit is None:
            limit = size
        out: list[tuple[int, int]] = []
        start = 0
        while start < size and len(out) < limit:
            end = start + cap
            if end >= size:
                end = size
            elif marks is not None and marks[end - 1] == lead:
                end -= 1
            out.append((start, end))
            start = end
        return out

    def chars(self, start: int, end: int) -> int:
        """Characters in the unit range (a range never splits a pair)."""
        if self.marks is None:
            return end - start
        return end - start - self.marks.count(self.lead, start, end)


def _choose(
    text: str, encoding: Encoding | None, want_translit: bool
) -> tuple[Encoding, str, int | None]:
    """(encoding, final text before truncation, septet count when GSM7)."""
    if encoding is Encoding.BINARY:
        raise TextError("8-bit data is planned with plan_binary, not plan_text")
    if encoding is Encoding.UCS2:
        return encoding, text, None
    septets = gsm0338.septet_count(text)
    if septets is None and want_translit:
        text = _translit(text)
        if not text:
            raise TextError("text is empty after transliteration")
        septets = gsm0338.septet_count(text)
    if septets is not None:
        return Encoding.GSM7, text, septets
    if encoding is Encoding.GSM7:
        try:
            gsm0338.encode(text)
        except ValueError as exc:
            raise TextError(str(exc)) from None
    return Encoding.UCS2, text, None


def plan_text(
    text: str,
    *,
    maxmsgs: int = 10,
    truncate: bool = True,
    transliterate: bool = False,
    encoding: Encoding | None = None,
    flash: bool = False,
    concat_ref: int = 0,
    ref16: bool = False,
    dcs: int | None = None,
) -> Plan:
    """Choose the encoding of ``text`` and cut it into SMS parts.

    ``dcs`` wins over the computed TP-DCS (``flash`` is then ignored); when it names an
    alphabet (0x00, 0x08, 0xF0...) it also fixes the encoding, so the parts always match the
    DCS they travel with. ``concat_ref`` is masked to 8 or 16 bits.
    """
    _check_maxmsgs(maxmsgs)
    if not isinstance(text, str) or not text:
        raise TextError("empty text")
    chosen, text, septets = _choose(text, _resolve_encoding(encoding, dcs), transliterate)
    plan_dcs = _default_dcs(chosen, flash, dcs)
    single = _SINGLE[chosen]
    if septets is not None and septets <= single:  # the common case: one GSM SMS
        return Plan(chosen, plan_dcs, (Part(1, b"", text, None, septets),), text, False)

    units = _Units.of(text, chosen, septets)
    if units.size <= single:
        return Plan(chosen, plan_dcs, (Part(1, b"", text, None, units.size),), text, False)

    cap = _capacity(chosen, _concat_udh_len(ref16))
    bounds = units.bounds(cap, maxmsgs + 1 if truncate else None)
    if len(bounds) <= maxmsgs:
        return _concat_plan(chosen, plan_dcs, text, units, bounds, concat_ref, ref16, False)
    if not truncate:
        raise TooLong(len(bounds), maxmsgs)
    if maxmsgs == 1:
        ((_, end),) = units.bounds(single, 1)
        cut = text[: units.chars(0, end)]
        return Plan(chosen, plan_dcs, (Part(1, b"", cut, None, end),), cut, True)
    return _concat_plan(chosen, plan_dcs, text, units, bounds[:maxmsgs], concat_ref, ref16, True)


def _concat_plan(
    encoding: Encoding,
    dcs: int,
    text: str,
    units: _Units,
    bounds: list[tuple[int, int]],
    ref: int,
    ref16: bool,
    truncated: bool,
) -> Plan:
    """Concatenated parts for ``bounds``; their texts are consecutive slices of ``text``."""
    total = len(bounds)
    udh_head = _concat_udh(ref, total, 0, ref16)[:-1]  # everything but the sequence number
    parts = []
    pos = 0
    for seq, (start, end) in enumerate(bounds, 1):
        nchars = units.chars(start, end)
        parts.append(
            Part(seq, udh_head + bytes((seq,)), text[pos : pos + nchars], None, end - start)
        )
        pos += nchars
    return Plan(encoding, dcs, tuple(parts), text[:pos] if truncated else text, truncated)


def count(
    text: str, *, transliterate: bool = False, ref16: bool = False
) -> tuple[Encoding, int, int]:
    """(encoding, parts, units) that ``text`` would need, without limits: for UIs and quotas.

    Units are septets (escapes count 2) or UTF-16 code units. Empty text is (GSM7, 0, 0).
    Never raises on text: a lone surrogate counts as one UCS-2 unit.
    """
    septets = gsm0338.septet_count(text)
    if septets is None and transliterate:
        text = _translit(text)
        septets = gsm0338.septet_count(text)
    if not text:
        return Encoding.GSM7, 0, 0
    if septets is not None:
        encoding = Encoding.GSM7
        units = _Units.of(text, encoding, septets)
    else:
        encoding = Encoding.UCS2
        raw = text.encode("utf-16-be", "surrogatepass")
        units = _Units(len(raw) // 2, raw[0::2].translate(_HIGH_SURROGATE), 1)
    if units.size <= _SINGLE[encoding]:
        return encoding, 1, units.size
    cap = _capacity(encoding, _concat_udh_len(ref16))
    return encoding, len(units.bounds(cap)), units.size


# --- binary ------------------------------------------------------------------------------------


def _parse_udh(udh: bytes) -> bool:
    """Validate a user UDH (UDHL first); True when it already has a concatenation IE."""
    if not udh:
        return False
    if udh[0] != len(udh) - 1:
        raise TextError(f"UDHL says {udh[0]} octets but the UDH has {len(udh) - 1}")
    has_concat = False
    pos = 1
    while pos < len(udh):
        if pos + 1 >= len(udh):
            raise TextError(f"UDH information element at octet {pos} has no length")
        iei, length = udh[pos], udh[pos + 1]
        pos += 2 + length
        if pos > len(udh):
            raise TextError(f"UDH information element 0x{iei:02X} overruns the header")
        has_concat = has_concat or iei in (0x00, 0x08)
    return has_concat


def plan_binary(
    data: bytes,
    *,
    udh: bytes = b"",
    maxmsgs: int = 10,
    truncate: bool = False,
    concat_ref: int = 0,
    ref16: bool = False,
    dcs: int | None = None,
    flash: bool = False,
) -> Plan:
    """Cut 8-bit ``data`` (plus an optional user ``udh``, UDHL included) into SMS parts.

    Every part of a split message repeats the user's IEs (port addressing must be in each
    segment) followed by the concatenation IE. A UDH that already has a concatenation IE means
    the caller segments itself: it is never split, and TextError if it does not fit.
    """
    _check_maxmsgs(maxmsgs)
    data, udh = bytes(data), bytes(udh)
    has_concat = _parse_udh(udh)
    if not data and not udh:
        raise TextError("empty message")
    if len(udh) > UD_OCTETS:
        raise TextError(f"UDH of {len(udh)} octets does not fit in {UD_OCTETS}")
    if dcs is not None:
        _dcs_alphabet(dcs)  # range check only: binary payloads are passed through as given
    plan_dcs = _default_dcs(Encoding.BINARY, flash, dcs)
    if len(udh) + len(data) <= UD_OCTETS:
        return Plan(Encoding.BINARY, plan_dcs, (Part(1, udh, None, data, len(data)),), None, False)
    if has_concat:
        raise TextError(
            f"UDH ({len(udh)}) + data ({len(data)}) exceed {UD_OCTETS} octets "
            "and the UDH already carries a concatenation IE"
        )
    ies = udh[1:]
    udh_len = len(ies) + _concat_udh_len(ref16)  # user IEs + concatenation IE + UDHL
    cap = _capacity(Encoding.BINARY, udh_len)
    if cap <= 0:
        raise TextError(f"UDH of {len(udh)} octets leaves no room for data")
    needed = -(-len(data) // cap)
    truncated = needed > maxmsgs
    if truncated and not truncate:
        raise TooLong(needed, maxmsgs, "data")
    if truncated and maxmsgs == 1:
        chunk = data[: UD_OCTETS - len(udh)]
        return Plan(Encoding.BINARY, plan_dcs, (Part(1, udh, None, chunk, len(chunk)),), None, True)
    total = min(needed, maxmsgs)
    parts = []
    for seq in range(1, total + 1):
        chunk = data[(seq - 1) * cap : seq * cap]
        part_udh = bytes((udh_len - 1,)) + ies + _concat_ie(concat_ref, total, seq, ref16)
        parts.append(Part(seq, part_udh, None, chunk, len(chunk)))
    return Plan(Encoding.BINARY, plan_dcs, tuple(parts), None, truncated)
