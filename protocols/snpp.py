"""SNPP (RFC 1861) for the server side, sans-IO: line framing, commands, times and replies.

Why our own: no maintained Python SNPP library exists (Twisted has none; the PyPI
packages are clients). The protocol is small: lines of ASCII, a command named by
its first four letters, a three-digit reply. What a command *means* for SMS is the
channel's business (``smsd/channels/snpp.py``); this module only knows the wire.

Nothing here does I/O, reads a clock or imports Twisted.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Iterator

import attrs

__all__ = [
    "COMMANDS",
    "Command",
    "DataReader",
    "HoldError",
    "LineBuffer",
    "TooLong",
    "parse_command",
    "parse_hold",
    "reply",
    "reply_lines",
]


class Level(enum.IntEnum):
    """The protocol level that introduced a command (RFC 1861 section 4)."""

    ONE = 1
    TWO = 2
    THREE = 3


# Command -> (level, syntax for HELP). Commands are recognised by their first
# four letters, case-insensitive, so "PAGEr" and "page" are both PAGE.
COMMANDS: dict[str, tuple[Level, str]] = {
    "PAGE": (Level.ONE, "PAGEr <pager ID> [PIN]: a number, an address-book name or a group"),
    "MESS": (Level.ONE, "MESSage <text>: the one-line text"),
    "RESE": (Level.ONE, "RESEt: forget this transaction"),
    "SEND": (Level.ONE, "SEND: queue the SMS"),
    "QUIT": (Level.ONE, "QUIT: end the session"),
    "HELP": (Level.ONE, "HELP: this list"),
    "DATA": (Level.TWO, "DATA: multi-line text, ended by a line with a single dot"),
    "LOGI": (Level.TWO, "LOGIn <user> [password]: page as an smsd user"),
    "LEVE": (Level.TWO, "LEVEl <0-11>: 0 goes ahead of the queue, others are normal"),
    "ALER": (Level.TWO, "ALERt <0|1>: 1 asks for a flash SMS (if the site allows it)"),
    "COVE": (Level.TWO, "COVErage <gateway>: send through this gateway only"),
    "HOLD": (Level.TWO, "HOLDuntil <YYMMDDHHMMSS> [+/-GMT offset]: send at that time"),
    "CALL": (Level.TWO, "CALLerid <caller ID>: into the text, or the sender if allowed"),
    "SUBJ": (Level.TWO, "SUBJect <text>: put before the text"),
    "2WAY": (Level.THREE, "2WAY: SEND answers with a message tag and pass code for MSTA"),
    "PING": (Level.THREE, "PING <pager ID>: is this a pager ID we can send to?"),
    "EXPT": (Level.THREE, "EXPTag <hours>: give up after this many hours"),
    "MSTA": (Level.THREE, "MSTAtus <tag> <pass code>: queued, sent, delivered or failed"),
    "KTAG": (Level.THREE, "KTAG <tag> <pass code>: cancel a message still queued"),
    "NOQU": (Level.THREE, "NOQUeueing: not supported (SMS is store and forward)"),
    "ACKR": (Level.THREE, "ACKRead <0|1>: 1 not supported (SMS has no read receipts)"),
    "RTYP": (Level.THREE, "RTYPe <type>: not supported (replies go to the user's mailbox)"),
    "MCRE": (Level.THREE, "MCREsponse <code> <text>: not supported by SMS"),
}


@attrs.frozen
class Command:
    verb: str  # the first four letters, upper case ("" for an empty line)
    argument: str  # the rest of the line after one space, white space at the ends removed
    known: bool

    def words(self) -> list[str]:
        return self.argument.split()


def parse_command(line: str) -> Command:
    """``"PAGEr +1555 1234"`` -> Command("PAGE", "+1555 1234", known=True)."""
    head, *rest = line.split(None, 1) or [""]
    verb = head[:4].upper()
    return Command(verb, rest[0].strip() if rest else "", verb in COMMANDS)


@attrs.frozen
class TooLong:
    """A line longer than the limit: it was dropped up to its end."""

    length: int


class LineBuffer:
    """Cuts a byte stream into lines (CRLF or bare LF), at most ``limit`` bytes each.

    Twisted's LineReceiver closes the connection on an overlong line; SNPP wants
    an error reply and the session to go on, so the rest of such a line is
    skipped here and reported once as :class:`TooLong`.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._skipping = 0  # bytes of an overlong line dropped so far (0: not skipping)

    def feed(self, data: bytes) -> Iterator[bytes | TooLong]:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.limit:
                    self._skipping += len(self._buffer)
                    self._buffer.clear()
                return
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._skipping:
                length, self._skipping = self._skipping + len(line), 0
                yield TooLong(length)
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.limit:
                yield TooLong(len(line))
                continue
            yield line


class DataReader:
    """The lines after DATA's 354, up to the line with a single dot (dot-stuffing undone).

    It counts what it holds against ``max_bytes`` and keeps reading to the end
    when that is exceeded, so that the text's lines are never taken for commands.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.lines: list[str] = []
        self.size = 0
        self.too_big = False

    def line(self, raw: bytes) -> bool:
        """Take one line; True when it was the end."""
        if raw == b".":
            return True
        if raw.startswith(b"."):
            raw = raw[1:]
        self.size += len(raw) + 1
        if self.size > self.max_bytes:
            self.too_big = True
            self.lines.clear()
        if not self.too_big:
            self.lines.append(raw.decode("utf-8", "replace"))
        return False

    def text(self) -> str:
        return "\n".join(self.lines)


class HoldError(ValueError):
    """A HOLD time that is not one."""


_HOLD = re.compile(r"(\d{10}|\d{12}|\d{14})(?:\s+([+-])(\d{1,4}))?")


def parse_hold(argument: str, local: datetime.tzinfo) -> float:
    """HOLD's time as epoch seconds.

    ``YYMMDDHHMMSS`` (RFC 1861), also ``YYYYMMDDHHMMSS`` and ``YYMMDDHHMM`` (as HylaFAX
    takes them); a two-digit year is 20YY. With ``+/-HHMM`` (or ``+/-HH``) the time is
    that far from GMT; without it, the server's local time ``local``.
    """
    m = _HOLD.fullmatch(argument.strip())
    if m is None:
        raise HoldError("expected YYMMDDHHMMSS [+/-GMT offset]")
    digits, sign, offset = m.groups()
    if len(digits) == 14:
        year, rest = int(digits[:4]), digits[4:]
    else:
        year, rest = 2000 + int(digits[:2]), digits[2:]
    if len(rest) == 8:
        rest += "00"
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    zone: datetime.tzinfo = local
    if sign is not None:
        hours, minutes = (int(offset), 0) if len(offset) <= 2 else divmod(int(offset), 100)
        if minutes >= 60 or hours > 14:
            raise HoldError(f"GMT offset {sign}{offset} is not one")
        delta = datetime.timedelta(hours=hours, minutes=minutes)
        zone = datetime.timezone(delta if sign == "+" else -delta)
    try:
        when = datetime.datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError as e:
        raise HoldError(f"no such time: {e}") from None
    return when.timestamp()


def reply(code: int, text: str) -> bytes:
    """One reply line; CR and LF in ``text`` (from a client or an SMS) become spaces."""
    clean = text.replace("\r", " ").replace("\n", " ")
    return f"{code} {clean}\r\n".encode("utf-8", "replace")


def reply_lines(code: int, lines: list[str], last: tuple[int, str]) -> bytes:
    """A multi-line answer such as HELP's: each line with ``code``, then the final reply."""
    return b"".join(reply(code, line) for line in lines) + reply(*last)
