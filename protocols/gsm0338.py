"""GSM 03.38 / 3GPP TS 23.038 codec: 7-bit default alphabet, septet packing, UCS-2.

Sans-IO and dependency-free. It runs on every submission, so everything is table-driven and
built at import, and no function loops over characters in Python: encoding is one
``str.translate`` plus an ASCII check, counting is two ``bytes.translate`` calls (a regex scan
first for non-ASCII text), and septet packing moves all septets at once with big-integer
mask/shift steps.

Septets are handled "unpacked" (one septet per byte, values 0..0x7F) unless a function says
``pack``; an extension-table character is the two septets ``0x1B, code``.
"""

from __future__ import annotations

import functools
import re

__all__ = [
    "BASIC",
    "ESC",
    "EXTENSION",
    "decode",
    "encode",
    "fill_bits",
    "is_gsm",
    "pack",
    "septet_count",
    "try_encode",
    "ucs2_decode",
    "ucs2_encode",
    "unpack",
]

ESC = 0x1B
"""Escape to the extension table (23.038 §6.2.1.1)."""

# The default alphabet, code point = index, 16 per row. 0x1B is ESC, not a character.
BASIC: str = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(BASIC) == 128

# The extension table (23.038 §6.2.1.1): code after ESC -> character.
EXTENSION: dict[int, str] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

_BAD = "\x80"  # non-ASCII marker: after translate, .isascii() is False iff something is unencodable


def _build_encode_map() -> dict[int, int | str]:
    table: dict[int, int | str] = {cp: _BAD for cp in range(128)}  # ASCII not in GSM stays bad
    for code, ch in enumerate(BASIC):
        if code != ESC:
            table[ord(ch)] = code
    for code, ch in EXTENSION.items():
        table[ord(ch)] = "\x1b" + chr(code)
    return table


_ENCODE_MAP = _build_encode_map()
_ENCODABLE = frozenset(cp for cp, v in _ENCODE_MAP.items() if v != _BAD)
# First character outside the alphabet: an early exit for CJK, Cyrillic, emoji... text that a
# translate pass would walk to the end before failing.
_NON_GSM = re.compile("[^" + "".join(re.escape(chr(cp)) for cp in sorted(_ENCODABLE)) + "]")

# Pure-ASCII fast path: bytes that cost one septet, and bytes that cost two (extension).
_ASCII_ONE = bytes(cp for cp in range(128) if isinstance(_ENCODE_MAP[cp], int))
_ASCII_EXT = bytes(cp for cp in range(128) if str(_ENCODE_MAP[cp]).startswith("\x1b"))
_ASCII_NOT_EXT = bytes(cp for cp in range(256) if cp not in _ASCII_EXT)

# Decoding: septet (as a latin-1 char) -> basic character; ESC survives for the escape pass.
_DECODE_MAP = {code: ch for code, ch in enumerate(BASIC)}
# After the basic pass, ESC is followed by the *basic* rendering of the extension code.
_ESC_FOLLOWER = {BASIC[code]: ch for code, ch in EXTENSION.items()}
_ESC_FOLLOWER["\x1b"] = " "  # ESC ESC: reserved for a further table; 23.038 says show a space
_ESC_FOLLOWER[""] = ""  # trailing ESC: dropped
_ESC_RE = re.compile("\x1b(.?)", re.DOTALL)


def _esc_sub(m: re.Match[str]) -> str:
    follower = m.group(1)
    # Unknown extension code: 23.038 says display the basic-table character instead.
    return _ESC_FOLLOWER.get(follower, follower)


def try_encode(text: str) -> bytes | None:
    """Unpacked septets for ``text``, or None when a character is not in the alphabet.

    The non-raising form is what segmentation wants: "does it fit GSM?" is a normal question.
    """
    if not text.isascii() and _NON_GSM.search(text):
        return None
    septets = text.translate(_ENCODE_MAP)
    if not septets.isascii():  # ASCII characters outside the alphabet: ` and controls
        return None
    return septets.encode("ascii")


def encode(text: str) -> bytes:
    """Unpacked septets for ``text`` (extension characters become ``0x1B, code``).

    Raises ValueError naming the first character outside the alphabet and its index. U+001B
    is not accepted: 0x1B is the escape code, not a character.
    """
    septets = try_encode(text)
    if septets is not None:
        return septets
    match = _NON_GSM.search(text)
    assert match is not None
    index, ch = match.start(), match.group()
    raise ValueError(
        f"character {ch!r} (U+{ord(ch):04X}) at index {index} is not in the GSM 03.38 alphabet"
    )


def decode(septets: bytes) -> str:
    """Text for unpacked septets.

    Per 23.038 §6.2.1.1: ESC + a code missing from the extension table decodes as the basic
    character of that code; ESC ESC (reserved for another extension table) decodes as a space;
    a lone ESC at the very end is dropped (it is what a sender that split an escape pair
    across segments leaves behind, and a space there would be an invented character).
    Raises ValueError on a byte above 0x7F.
    """
    if not septets.isascii():
        index = next(i for i, b in enumerate(septets) if b > 0x7F)
        raise ValueError(f"septet 0x{septets[index]:02X} at index {index} is out of range")
    text = septets.decode("ascii").translate(_DECODE_MAP)
    if "\x1b" in text:
        text = _ESC_RE.sub(_esc_sub, text)
    return text


def septet_count(text: str) -> int | None:
    """Septets ``text`` needs (extension characters count 2), or None if not encodable."""
    if text.isascii():
        raw = text.encode("ascii")
        rest = raw.translate(None, _ASCII_ONE)
        if not rest:
            return len(raw)
        if rest.translate(None, _ASCII_EXT):
            return None
        return len(raw) + len(rest)
    if _NON_GSM.search(text):
        return None
    # str.translate is slow on non-ASCII text; the only non-ASCII extension character is €,
    # so count it directly and let the ASCII ones show through an ASCII view of the text.
    ascii_view = text.encode("ascii", "replace")
    return len(ascii_view) + text.count("€") + len(ascii_view.translate(None, _ASCII_NOT_EXT))


def is_gsm(text: str) -> bool:
    """True when every character of ``text`` is in the default alphabet or extension table."""
    return septet_count(text) is not None


def fill_bits(udh_octets: int) -> int:
    """Fill bits after a UDH of ``udh_octets`` (UDHL included) so text starts on a septet."""
    return -(udh_octets * 8) % 7


# --- septet packing (23.038 §6.1.2.1) -------------------------------------------------------
#
# Septet i lives at bit 8*i of the unpacked integer and at bit 7*i of the packed one, so packing
# moves septet i down by i bits. Decomposing i into powers of two, that is log2(n) steps, each a
# masked shift of the whole message as one Python int. Going from the smallest step up keeps the
# moving groups from colliding when compressing; expanding replays the steps in reverse.


@functools.lru_cache(maxsize=16)
def _shift_masks(levels: int) -> tuple[tuple[int, int], ...]:
    """(shift, mask) steps that pack up to 2**levels septets, mask at the pre-shift positions."""
    count = 1 << levels
    pos = [8 * i for i in range(count)]
    steps = []
    shift = 1
    while shift < count:
        mask = 0
        for i in range(count):
            if i & shift:
                mask |= 0x7F << pos[i]
                pos[i] -= shift
        steps.append((shift, mask))
        shift <<= 1
    return tuple(steps)


def _levels(count: int) -> int:
    return max(count - 1, 0).bit_length()


def pack(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets little-endian, 8 septets in 7 octets, after ``fill_bits`` zero bits (0..6).

    The fill bits occupy the low bits of the first octet: use them when the packed text follows
    a UDH (see ``fill_bits()``), so that the first character starts on a septet boundary.
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError(f"fill_bits must be 0..6, not {fill_bits}")
    if not septets.isascii():
        index = next(i for i, b in enumerate(septets) if b > 0x7F)
        raise ValueError(f"septet 0x{septets[index]:02X} at index {index} is out of range")
    count = len(septets)
    if not count:
        return b""
    value = int.from_bytes(septets, "little")
    for shift, mask in _shift_masks(_levels(count)):
        moving = value & mask
        value = (value ^ moving) | (moving >> shift)
    size = (count * 7 + fill_bits + 7) // 8
    return (value << fill_bits).to_bytes(size, "little")


def unpack(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """Unpack ``count`` septets from ``data`` whose first ``fill_bits`` bits (0..6) are fill.

    Trailing bits beyond ``count`` septets are ignored (the septet count comes from TP-UDL).
    Raises ValueError when ``data`` is too short to hold them.
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError(f"fill_bits must be 0..6, not {fill_bits}")
    if count < 0:
        raise ValueError(f"negative septet count {count}")
    if not count:
        return b""
    needed = (count * 7 + fill_bits + 7) // 8
    if len(data) < needed:
        raise ValueError(f"{count} septets need {needed} octets, got {len(data)}")
    value = (int.from_bytes(data[:needed], "little") >> fill_bits) & ((1 << (7 * count)) - 1)
    for shift, mask in reversed(_shift_masks(_levels(count))):
        moving = value & (mask >> shift)
        value = (value ^ moving) | (moving << shift)
    return value.to_bytes(count, "little")


# --- UCS-2 -----------------------------------------------------------------------------------

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def ucs2_encode(text: str) -> bytes:
    """UTF-16BE without BOM: what SMS calls UCS-2 in practice (astral characters as pairs).

    A lone surrogate in ``text`` raises UnicodeEncodeError (a ValueError): it has no honest
    encoding and would show as garbage on the handset.
    """
    return text.encode("utf-16-be")


def ucs2_decode(data: bytes) -> str:
    """Text from UTF-16BE octets, tolerant of what real senders produce.

    An odd trailing octet (a truncated unit) is dropped; a lone surrogate unit becomes U+FFFD,
    so the result always encodes to UTF-8.
    """
    if len(data) % 2:
        data = data[:-1]
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError:
        text = data.decode("utf-16-be", "surrogatepass")
        return _LONE_SURROGATE.sub("\ufffd", text)
