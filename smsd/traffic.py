"""The traffic log: one line per SMS part, for accounting and for grep.

``date;time;OUT|IN;gateway;sender;number;chars;parts`` in UTC, e.g.
``2026-11-22;14:03:59;OUT;loopback;;+15551234567;153;2``. ``chars`` are the
characters (or octets, for binary) of that part; ``parts`` is how many parts
the whole message has. Fields never contain ';' (numbers and gateway ids
cannot; a sender that does has it replaced).
"""

from __future__ import annotations

import time
from typing import Any

from smsd.appender import Appender
from smsd.model import Message, OutPart


def _clean(value: str | None) -> str:
    if not value:
        return ""
    return value.replace(";", ",").replace("\n", " ") if ";" in value or "\n" in value else value


def _chars(part: OutPart) -> int:
    return len(part.text) if part.text is not None else len(part.data or b"")


class TrafficLog:
    def __init__(self, appender: Appender) -> None:
        self._appender = appender
        self._second = -1
        self._stamp_text = ""

    def _stamp(self, at: float) -> str:
        second = int(at)
        if second != self._second:  # thousands of lines share one second
            self._second = second
            self._stamp_text = time.strftime("%Y-%m-%d;%H:%M:%S", time.gmtime(second))
        return self._stamp_text

    def outbound(self, message: Message, gateway: str, seqs: list[int], at: float) -> None:
        head = f"{self._stamp(at)};OUT;{gateway};{_clean(message.sender)};{message.recipient};"
        wanted = set(seqs)
        self._appender.add(
            f"{head}{_chars(part)};{message.total}" for part in message.parts if part.seq in wanted
        )

    def inbound(
        self, gateway: str, sender: str, recipient: str, chars: int, parts: int, at: float
    ) -> None:
        self._appender.add(
            [f"{self._stamp(at)};IN;{gateway};{_clean(sender)};{_clean(recipient)};{chars};{parts}"]
        )

    def close(self) -> Any:
        return self._appender.close()

    def close_now(self, timeout: float = 5.0) -> None:
        self._appender.close_now(timeout)
