"""Phone number and sender ID normalisation.

Everything the gateway stores or hands to an SMSC is in one of three forms:

* ``"+15551234567"`` -- E.164 with a leading ``+`` (``Kind.INTERNATIONAL``);
* ``"12345"`` -- a short code, ASCII digits only (``Kind.SHORT``);
* ``"MyShop"`` -- an alphanumeric sender ID (``Kind.ALPHANUMERIC``, senders only).

Accepted input: '+' or an international prefix ('00' anywhere, or the default country's
own IDD such as the US '011'), national numbers in the default country's plan, a "tel:"
scheme without parameters, visual separators, and decimal digits of any script.

Validity is ``phonenumbers.is_possible_number`` (a length check per country), not
``is_valid_number``: range metadata lags what operators actually hand out, and fictional
test numbers such as +1 555 123 4567 must go through. Vanity letters are refused rather
than converted, because a mistyped "1-800-FLOWERS" should bounce, not reach a stranger.

Short codes versus national numbers: a bare run of 3 to 8 digits without '+' or a
leading 0 is taken as a short code. A national number dialled in full carries the trunk
prefix in most numbering plans (0 in Europe) or is longer than 8 digits (NANP), so it
cannot be confused with one. The exception is a plan without a trunk prefix (DK, NO,
HK, SG, ...), where a full national number may be 8 digits or fewer: there the digits
are a national number if phonenumbers considers them a *valid* number of the default
country (is_valid_number, because every short length is "possible" there), and a short
code otherwise. Local numbers without an area code (US "555 1234") thus become short
codes when ``short_codes`` is on and are refused as incomplete when it is off.
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata

import attrs
import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, ValidationResult

from protocols.gsm0338 import septet_count

__all__ = [
    "Address",
    "Kind",
    "NumberError",
    "country_ok",
    "e164_digits",
    "normalise",
    "parse_recipient",
    "parse_sender",
]


class NumberError(ValueError):
    """A number or sender ID the gateway refuses; ``str()`` is a one-line reason for the client."""


class Kind(enum.StrEnum):
    INTERNATIONAL = "international"
    SHORT = "short"
    ALPHANUMERIC = "alphanumeric"


@attrs.frozen
class Address:
    """A normalised originator or destination address."""

    value: str
    kind: Kind


# E.164 caps a number at 15 digits including the country calling code.
_E164_MAX_DIGITS = 15
# Longest digit run worth parsing: 15 digits plus an IDD or trunk/carrier prefix.
_MAX_DIALLED_DIGITS = 20
# Longer input is refused before any work is done or anything is cached.
_MAX_INPUT_CHARS = 64
_SHORT_CODE_DIGITS = range(3, 9)
_CACHE_SIZE = 4096
_MAX_SENDER_SEPTETS = 11  # TP-OA: 10 octets of packed 7-bit text

_CALLING_CODES = frozenset(str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
# Calling codes are prefix-free (ITU-T E.164), so the first three digits of a number
# determine its calling code: one dict lookup on the hot path instead of three.
_CALLING_CODE_BY_PREFIX = {
    prefix: cc
    for prefix in (f"{n:03d}" for n in range(1000))
    for cc in (prefix[:1], prefix[:2], prefix)
    if cc in _CALLING_CODES
}

# Visual separators people type or paste: ASCII ones, every Unicode space (Zs),
# dashes, and the fullwidth forms East Asian input methods produce.
_SEPARATORS = (
    " -./()"
    "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u202f\u205f\u3000"
    "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
    "\uff0d\uff0e\uff08\uff09\uff0f"
)
_CLEAN_TABLE = str.maketrans({**dict.fromkeys(_SEPARATORS), "\uff0b": "+"})


def _quote(raw: object, limit: int = 40) -> str:
    """Client-safe one-line rendering of bad input (repr escapes line breaks)."""
    if isinstance(raw, str) and len(raw) > limit:
        return repr(raw[:limit]) + "..."
    return repr(raw)


# -- fast path -----------------------------------------------------------------------------


@attrs.frozen
class _Plan:
    """What the fast path needs to know about one country calling code's numbering plan."""

    lengths: frozenset[int]  # possible NSN lengths (general description, main region)
    # The plan's national_prefix_for_parsing: a plain digit string such as "0" is checked
    # with startswith; anything fancier (AR, BR, JP carrier codes) with the regex.
    trunk_digits: str | None
    trunk: re.Pattern[str] | None
    transform: bool  # the plan rewrites the NSN when the trunk prefix matches


_PLANS: dict[str, _Plan] = {}


def _load_plan(cc: str) -> _Plan:
    # Mirrors what phonenumbers.parse and is_possible_number consult for a '+' number:
    # the metadata of the calling code's main region. Loaded on first use, as
    # phonenumbers itself does, to keep import time down.
    code = int(cc)
    meta = PhoneMetadata.metadata_for_region_or_calling_code(
        code, phonenumbers.region_code_for_country_code(code)
    )
    general = meta.general_desc
    npfp = meta.national_prefix_for_parsing or None
    transform = bool(meta.national_prefix_transform_rule)
    literal = npfp is not None and npfp.isdigit() and not transform
    plan = _Plan(
        lengths=frozenset(general.possible_length) - frozenset(general.possible_length_local_only),
        trunk_digits=npfp if literal else None,
        trunk=re.compile(npfp) if npfp and not literal else None,
        transform=transform,
    )
    _PLANS[cc] = plan
    return plan


def _is_canonical(number: str) -> bool:
    """True if *number* is '+E164' that the slow path would return unchanged.

    That is: ASCII digits, a known calling code, an NSN length possible for it, and no
    leading digits that phonenumbers would strip as a trunk prefix ("+44 (0)20 ...").
    Numbers that fail go through the slow path, which corrects or refuses them.
    """
    if not (3 <= len(number) <= _E164_MAX_DIGITS + 1 and number[0] == "+"):
        return False
    digits = number[1:]
    if not (digits.isascii() and digits.isdigit()):
        return False
    cc = _CALLING_CODE_BY_PREFIX.get(digits[:3])
    if cc is None:
        return False
    plan = _PLANS.get(cc) or _load_plan(cc)
    nsn = digits[len(cc) :]
    if len(nsn) not in plan.lengths:
        return False
    if plan.trunk_digits is not None:
        return not nsn.startswith(plan.trunk_digits)
    if plan.trunk is None:
        return True
    m = plan.trunk.match(nsn)
    if m is None:
        return True
    # An empty match strips nothing, unless a transform rule rewrites the number (the
    # rule applies when the pattern's last group took part in the match).
    return m.end() == 0 and not (plan.transform and m.groups()[-1:] != (None,))


# -- slow path -----------------------------------------------------------------------------

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country calling code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "number too short",
    NumberParseException.TOO_SHORT_NSN: "number too short",
    NumberParseException.TOO_LONG: "number too long",
}

_LENGTH_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country calling code",
    ValidationResult.TOO_SHORT: "number too short",
    ValidationResult.TOO_LONG: "number too long",
    ValidationResult.INVALID_LENGTH: "wrong number length for its country",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "number incomplete (area code missing?)",
}


def _ascii_digits(text: str) -> str:
    """Map decimal digits of any script (fullwidth, Arabic-Indic, ...) to ASCII."""
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)


def _clean(raw: str) -> str:
    """Strip a tel: scheme and separators; return '+'-optional ASCII digits or raise."""
    text = raw.strip()
    if text[:4].lower() == "tel:":  # RFC 3966 global or local number, without parameters
        text = text[4:]
    if not text:
        raise NumberError("empty number")
    text = text.translate(_CLEAN_TABLE)
    if not text.isascii():
        text = _ascii_digits(text)
    body = text[1:] if text[:1] == "+" else text
    if body.isascii() and body.isdigit():
        if len(body) > _MAX_DIALLED_DIGITS:
            raise NumberError(f"number too long: {_quote(raw)}")
        return text
    has_digit = any(c.isdigit() for c in body)
    if has_digit and "+" in body:
        raise NumberError(f"'+' only allowed at the start of a number: {_quote(raw)}")
    if has_digit and any(c.isalpha() for c in body):
        raise NumberError(f"letters not allowed in a phone number: {_quote(raw)}")
    raise NumberError(f"not a phone number: {_quote(raw)}")


def _is_short_code(digits: str, region: str) -> bool:
    """Apply the short-code rule from the module docstring to bare national digits."""
    if len(digits) not in _SHORT_CODE_DIGITS or digits[0] == "0":
        return False
    if PhoneMetadata.metadata_for_region(region).national_prefix is not None:
        return True
    try:
        number = phonenumbers.parse(digits, region)
    except NumberParseException:
        return True
    return not phonenumbers.is_valid_number_for_region(number, region)


def _to_e164(digits: str, region: str, raw: str) -> str:
    try:
        number = phonenumbers.parse(digits, region)
    except NumberParseException as e:
        reason = _PARSE_REASONS.get(e.error_type, "not a phone number")
        raise NumberError(f"{reason}: {_quote(raw)}") from None
    result = phonenumbers.is_possible_number_with_reason(number)
    if result != ValidationResult.IS_POSSIBLE:
        reason = _LENGTH_REASONS.get(result, "not a phone number")
        raise NumberError(f"{reason}: {_quote(raw)}")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if len(e164) > _E164_MAX_DIGITS + 1:
        raise NumberError(f"number too long: {_quote(raw)}")
    return e164


def _normalise_slow(raw: str, region: str, short_codes: bool) -> str:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown default country: {region!r}")
    digits = _clean(raw)
    if digits[0] != "+":
        if short_codes and _is_short_code(digits, region):
            return digits
        # '00' is the ITU-recommended international prefix. The region's own IDD wins
        # where it also starts with 00 (Australia's 0011, Korea's carrier codes), and
        # phonenumbers strips that one, and e.g. the US 011, by itself.
        idd = PhoneMetadata.metadata_for_region(region).international_prefix
        if digits.startswith("00") and not (idd and re.match(idd, digits)):
            digits = "+" + digits[2:]
    number = _to_e164(digits, region, raw)
    # phonenumbers strips one trunk prefix per parse ("+49 00 ..." loses one 0 at a
    # time); re-parse until stable so every result is a fixed point of normalise().
    # Each round that changes it is one digit shorter, so this ends ("+49000000...").
    for _ in range(len(number)):
        if _is_canonical(number):
            break
        again = _to_e164(number, region, raw)
        if again == number:
            break
        number = again
    return number


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _normalise_cached(raw: str, region: str, short_codes: bool) -> tuple[bool, str]:
    """Slow path behind a bounded cache; refusals are cached too, as (False, reason)."""
    try:
        return True, _normalise_slow(raw, region, short_codes)
    except NumberError as e:
        return False, str(e)


# -- public API ----------------------------------------------------------------------------


def normalise(raw: str, default_country: str = "US", *, short_codes: bool = True) -> str:
    """Recipient number -> "+E164" or a short code. Raises NumberError.

    Runs for every submission: canonical '+E164' input returns without calling
    phonenumbers.parse, everything else goes through a bounded cache.
    """
    if not isinstance(raw, str):
        raise NumberError(f"not a phone number: {_quote(raw)}")
    if _is_canonical(raw):
        return raw
    if len(raw) > _MAX_INPUT_CHARS:
        raise NumberError(f"number too long: {_quote(raw)}")
    ok, text = _normalise_cached(raw, default_country.upper(), short_codes)
    if not ok:
        raise NumberError(text)
    return text


def parse_recipient(raw: str, default_country: str = "US", *, short_codes: bool = True) -> Address:
    """Recipient number -> Address of kind INTERNATIONAL or SHORT. Raises NumberError."""
    value = normalise(raw, default_country, short_codes=short_codes)
    return Address(value, Kind.INTERNATIONAL if value[0] == "+" else Kind.SHORT)


def parse_sender(raw: str, default_country: str = "US") -> Address:
    """Sender ID: a number (as above) or alphanumeric text. Raises NumberError.

    Text made only of digits, separators and a '+' (optionally after "tel:") is a
    number, so "12345" is a short code and never an alphanumeric ID. Anything else is
    alphanumeric: at most 11 septets of the GSM 7-bit alphabet, since TP-OA carries no
    more and SMSCs reject or truncate longer or non-GSM IDs. Surrounding spaces are
    dropped; line breaks and other control characters are refused.
    """
    if not isinstance(raw, str):
        raise NumberError(f"not a sender ID: {_quote(raw)}")
    text = raw.strip()
    if not text:
        raise NumberError("empty sender ID")
    if len(text) > _MAX_INPUT_CHARS:
        raise NumberError(f"sender ID too long: {_quote(raw)}")
    body = text[4:] if text[:4].lower() == "tel:" else text
    digits = body.translate(_CLEAN_TABLE).lstrip("+")
    if digits.isdecimal():
        return parse_recipient(text, default_country)
    bad = next((c for c in text if c in _SENDER_FORBIDDEN or septet_count(c) is None), None)
    if bad is not None:
        raise NumberError(f"character {bad!r} not allowed in an alphanumeric sender ID")
    septets = septet_count(text)
    assert septets is not None  # every character was checked above
    if septets > _MAX_SENDER_SEPTETS:
        raise NumberError(
            f"alphanumeric sender ID too long ({septets} GSM septets, at most "
            f"{_MAX_SENDER_SEPTETS}): {_quote(text)}"
        )
    return Address(text, Kind.ALPHANUMERIC)


def e164_digits(number: str) -> str:
    """Drop the '+' ("+15551234567" -> "15551234567") for protocols that send a TON instead."""
    digits = number[1:] if isinstance(number, str) and number[:1] == "+" else ""
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _E164_MAX_DIGITS:
        raise NumberError(f"not an E.164 number: {_quote(number)}")
    return digits


def country_ok(code: str) -> bool:
    """True if *code* is a region phonenumbers has metadata for (config validation).

    Case-insensitive, like ``normalise``'s ``default_country``.
    """
    return isinstance(code, str) and code.upper() in phonenumbers.SUPPORTED_REGIONS


_SENDER_FORBIDDEN = frozenset("\n\r\f")
