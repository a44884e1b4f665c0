"""``/sms/``: the IceWarp-style form (``number``, ``data``, ``user``, ``pass``,
``id``, ``sender``, ``maxmsgs``, ``binary``, ``udh``, ``pid``, ``dcs``,
``reply``) and the Omnigate-style one (``numbers=a,b&text=``), by GET or
POST; smsd adds ``flash``, ``truncate``, ``transliterate``, ``gateway`` and
``charset``.

Answers are plain text, one line per recipient: ``OK <id> <number> <parts>``;
refusals are ``ERROR: <reason>`` with a 4xx code (and ``ERROR <number>:
<reason>`` lines for the numbers that were wrong).
"""

from __future__ import annotations

import binascii
from typing import Any

from twisted.internet.defer import Deferred

from smsd.channels.http import AsyncResource, Caller, HttpError, then
from smsd.channels.httpserver import Request
from smsd.model import Submission


def _decode(raw: bytes, charset: str, name: str) -> str:
    try:
        return raw.decode(charset)
    except UnicodeDecodeError:
        raise HttpError(400, f"{name} is not valid {charset}; give charset=") from None


def _int(raw: bytes | None, name: str, lo: int, hi: int) -> int | None:
    if raw is None or raw == b"":
        return None
    try:
        value = int(raw.decode("ascii"), 0)
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, f"{name} must be a number, got {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise HttpError(400, f"{name} must be {lo}..{hi}, got {value}")
    return value


def _hex(raw: bytes, name: str) -> bytes:
    try:
        return binascii.unhexlify(raw.strip())
    except (binascii.Error, ValueError):
        raise HttpError(400, f"{name} is not hexadecimal: {raw[:40]!r}") from None


def _flag_or_none(raw: bytes | None) -> bool | None:
    return None if raw is None or raw == b"" else _flag(raw)


def _flag(raw: bytes | None) -> bool:
    return raw is not None and raw.strip().lower() in (b"1", b"true", b"yes", b"on")


class SmsForm(AsyncResource):
    json_errors = False

    def handle_GET(self, request: Request) -> Deferred[Any]:
        return self._handle(request)

    handle_POST = handle_GET

    def _handle(self, request: Request) -> Deferred[Any]:
        # The last value of each parameter, looked up by name from here on.
        args = {k: v[-1] for k, v in request.args.items() if v}
        charset = (args.get(b"charset") or b"utf-8").decode("ascii", "replace")
        if charset != "utf-8":
            try:
                "".encode(charset)
            except LookupError:
                raise HttpError(400, f"unknown charset {charset!r}") from None
        user = args.get(b"user")
        password = args.get(b"pass")
        caller = self.ctx.caller(
            request,
            None if user is None else _decode(user, charset, "user"),
            None if password is None else _decode(password, charset, "pass"),
        )
        return then(caller, self._submit, args, charset)

    def _submit(self, caller: Caller, args: dict[bytes, bytes], charset: str) -> Deferred[Any]:
        raw_numbers = args.get(b"number") or args.get(b"numbers") or b""
        numbers = tuple(
            n.strip() for n in _decode(raw_numbers, charset, "number").split(",") if n.strip()
        )
        binary = _flag(args.get(b"binary"))
        raw_text = args.get(b"data")
        if raw_text is None:
            raw_text = args.get(b"text")
        text, data, udh, dcs = None, None, b"", None
        if binary:
            data = _hex(raw_text or b"", "data")
            udh = _hex(args.get(b"udh") or b"", "udh")
            dcs = _int(args.get(b"dcs"), "dcs", 0, 255)
        elif raw_text is not None:
            text = _decode(raw_text, charset, "data")
        if not binary and not text:
            raise HttpError(400, "empty text (give data=)")
        sender = args.get(b"sender")
        client_ref = args.get(b"id")
        reply = args.get(b"reply")
        gateway = args.get(b"gateway")
        sub = Submission(
            recipients=numbers,
            text=text,
            data=data,
            udh=udh,
            sender=_decode(sender, charset, "sender") if sender else None,
            maxmsgs=_int(args.get(b"maxmsgs"), "maxmsgs", 1, 128),
            truncate=_flag_or_none(args.get(b"truncate")),
            transliterate=_flag_or_none(args.get(b"transliterate")),
            flash=_flag(args.get(b"flash")),
            dcs=dcs,
            pid=_int(args.get(b"pid"), "pid", 0, 255) or 0,
            gateway=gateway.decode("utf-8", "replace") if gateway else None,
            channel="http",
            client_ref=_decode(client_ref, charset, "id")[:128] if client_ref else None,
            reply_to=_decode(reply, charset, "reply")[:256] if reply else None,
            origin=caller.address,
        )
        settings = self.ctx.settings
        d = self.ctx.submitter.submit(
            sub, caller.user, maxmsgs=settings.maxmsgs, truncate=settings.truncate
        )
        d.addCallback(self._answer)
        return d

    def _answer(self, accepted: list[Any]) -> tuple[int, bytes, bytes]:
        body = "".join(f"OK {a.id} {a.recipient} {a.parts}\n" for a in accepted)
        return 200, b"text/plain; charset=utf-8", body.encode()
