"""``/api/v1/``: the JSON API.

* ``POST /api/v1/messages`` -> 202 ``{"messages": [{"id", "to", "parts", "state"}]}``
* ``GET /api/v1/messages/<id>`` -> the message with its parts and states
* ``GET /api/v1/inbound?after=<id>&limit=<n>`` -> SMS received
* ``POST /api/v1/inbound`` -> inject an inbound SMS (trusted networks only)
* ``GET /api/v1/health`` -> gateways and queue; 503 when no gateway is up

Refusals are ``{"error": "<one line>"}`` with a 4xx code.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from twisted.internet.defer import Deferred

from smsd.channels.http import AsyncResource, Caller, HttpError, json_answer, then
from smsd.channels.httpserver import Request
from smsd.configschema import parse_duration
from smsd.model import Inbound, Submission


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        datetime.datetime.fromtimestamp(ts, datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_time(value: Any, name: str) -> float | None:
    """ISO 8601 (with zone, or UTC when none is given) or epoch seconds."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=datetime.UTC)
            return dt.timestamp()
    raise HttpError(400, f"{name}: expected ISO 8601 time or epoch seconds, got {value!r}")


def _body(request: Request) -> dict[str, Any]:
    raw = request.content.read() if request.content is not None else b""
    try:
        value = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise HttpError(400, f"malformed JSON: {e}") from None
    if not isinstance(value, dict):
        raise HttpError(400, "expected a JSON object")
    return value


def _get(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None
) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = {str: "a string", int: "an integer", bool: "true or false"}
        want = (
            names.get(kind, "a value of another type")
            if isinstance(kind, type)
            else "a value of another type"
        )
        raise HttpError(400, f"{name}: expected {want}, got {value!r}")
    return value


def _hex(value: str | None, name: str) -> bytes | None:
    if value is None:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise HttpError(400, f"{name}: not hexadecimal") from None


KNOWN_FIELDS = {
    "to",
    "text",
    "from",
    "gateway",
    "maxmsgs",
    "truncate",
    "flash",
    "transliterate",
    "not_before",
    "validity",
    "callback_url",
    "client_ref",
    "data",
    "udh",
    "dcs",
    "pid",
}


class ApiV1(AsyncResource):
    def handle_GET(self, request: Request) -> Deferred[Any]:
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        caller = self.ctx.caller(request, None, None)
        if path == ["health"]:
            return then(caller, self._health)
        if len(path) == 2 and path[0] == "messages":
            return then(caller, self._message, path[1])
        if path == ["inbound"]:
            return then(caller, self._inbound_list, request)
        return then(caller, self._not_found)

    def handle_POST(self, request: Request) -> Deferred[Any]:
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        caller = self.ctx.caller(request, None, None)
        if path == ["messages"]:
            return then(caller, self._submit, request)
        if path == ["inbound"]:
            return then(caller, self._inject, request)
        return then(caller, self._not_found)

    def _not_found(self, caller: Caller) -> None:
        raise HttpError(404, "no such resource")

    # POST /messages ----------------------------------------------------------

    def _submit(self, caller: Caller, request: Request) -> Deferred[Any]:
        body = _body(request)
        unknown = sorted(set(body) - KNOWN_FIELDS)
        if unknown:
            raise HttpError(400, f"unknown field {unknown[0]!r}")
        to = body.get("to")
        if isinstance(to, str):
            recipients: tuple[str, ...] = (to,)
        elif isinstance(to, list) and all(isinstance(t, str) for t in to):
            recipients = tuple(to)
        else:
            raise HttpError(400, "to: expected a number or a list of numbers")
        data = _hex(_get(body, "data", str), "data")
        text = _get(body, "text", str)
        if data is None and not text:
            raise HttpError(400, "empty text")
        validity = body.get("validity")
        if validity is not None:
            try:
                validity = float(parse_duration(validity))
            except ValueError as e:
                raise HttpError(400, f"validity: {e}") from None
        dcs = _get(body, "dcs", int)
        pid = _get(body, "pid", int, 0)
        for name, value in (("dcs", dcs), ("pid", pid)):
            if value is not None and not 0 <= value <= 255:
                raise HttpError(400, f"{name}: must be 0..255")
        callback = _get(body, "callback_url", str)
        if callback is not None and not callback.startswith(("http://", "https://")):
            raise HttpError(400, "callback_url: must be an http:// or https:// URL")
        sub = Submission(
            recipients=recipients,
            text=None if data is not None else text,
            data=data,
            udh=_hex(_get(body, "udh", str), "udh") or b"",
            sender=_get(body, "from", str),
            maxmsgs=_get(body, "maxmsgs", int),
            truncate=_get(body, "truncate", bool),
            flash=_get(body, "flash", bool, False),
            transliterate=_get(body, "transliterate", bool),
            dcs=dcs,
            pid=pid,
            not_before=parse_time(body.get("not_before"), "not_before"),
            validity=validity,
            gateway=_get(body, "gateway", str),
            channel="api",
            client_ref=_get(body, "client_ref", str),
            callback_url=callback,
            origin=caller.address,
        )
        settings = self.ctx.settings
        d = self.ctx.submitter.submit(
            sub, caller.user, maxmsgs=settings.maxmsgs, truncate=settings.truncate
        )
        return d.addCallback(self._accepted)

    def _accepted(self, accepted: list[Any]) -> tuple[int, bytes, bytes]:
        return json_answer(
            202,
            {
                "messages": [
                    {
                        "id": a.id,
                        "to": a.recipient,
                        "parts": a.parts,
                        "state": "queued",
                        **({"duplicate": True} if a.duplicate else {}),
                    }
                    for a in accepted
                ]
            },
        )

    # GET /messages/<id> --------------------------------------------------------

    def _message(self, caller: Caller, raw_id: str) -> Deferred[Any]:
        try:
            message_id = int(raw_id)
        except ValueError:
            raise HttpError(404, f"no message {raw_id!r}") from None
        return self.ctx.store.get_message(message_id).addCallback(self._show, caller, message_id)

    def _show(self, message: dict[str, Any] | None, caller: Caller, message_id: int) -> Any:
        if message is None or (caller.user is not None and message["user"] != caller.user.name):
            raise HttpError(404, f"no message {message_id}")
        return json_answer(200, message_view(message))

    # Inbound -----------------------------------------------------------------

    def _inbound_list(self, caller: Caller, request: Request) -> Deferred[Any]:
        def number(name: str, default: int, hi: int) -> int:
            raw = request.args.get(name.encode(), [b""])[-1]
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise HttpError(400, f"{name}: expected a number") from None
            return max(0, min(value, hi))

        after, limit = number("after", 0, 2**62), number("limit", 100, 1000)
        recipients = None
        if caller.user is not None:  # a user sees what came to their own numbers
            recipients = [
                *caller.user.dedicated,
                *([caller.user.mobile] if caller.user.mobile else []),
            ]
        d = self.ctx.store.list_inbound(after, limit, recipients)
        return d.addCallback(
            lambda rows: json_answer(200, {"inbound": [inbound_view(m) for m in rows]})
        )

    def _inject(self, caller: Caller, request: Request) -> Deferred[Any]:
        if not caller.trusted:
            raise HttpError(403, "injecting inbound SMS is allowed from trusted networks only")
        body = _body(request)
        sender, recipient, text = (_get(body, k, str) for k in ("from", "to", "text"))
        if not sender or not recipient or text is None:
            raise HttpError(400, "needs from, to and text")
        gateway = _get(body, "gateway", str, "loopback")
        d = self.ctx.inject(gateway, sender, recipient, text)
        return d.addCallback(lambda inbox_id: json_answer(201, {"id": inbox_id}))

    # Health --------------------------------------------------------------------

    def _health(self, caller: Caller) -> Deferred[Any]:
        def answer(health: dict[str, Any]) -> tuple[int, bytes, bytes]:
            return json_answer(200 if health.get("ok") else 503, health)

        return self.ctx.health().addCallback(answer)


def message_view(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": m["id"],
        "to": m["recipient"],
        "from": m["sender"],
        "state": m["state"],
        "parts": m["total"],
        "encoding": m["encoding"],
        "text": m["text"],
        "truncated": m["truncated"],
        "gateway": m["gateway"],
        "attempts": m["attempts"],
        "status": m["status"],
        "error": m["error"],
        "user": m["user"],
        "channel": m["channel"],
        "client_ref": m["client_ref"],
        "created": iso(m["created_at"]),
        "updated": iso(m["updated_at"]),
        "not_before": iso(m["due_at"]) if m["state"] == "queued" else None,
        "expires": iso(m["expires_at"]),
        "part_states": [
            {
                "part": p["seq"],
                "state": p["state"],
                "gateway": p["gateway"],
                "provider_id": p["provider_id"],
                "status": p["status"],
                "sent": iso(p["sent_at"]),
                "done": iso(p["done_at"]),
            }
            for p in m["parts"]
        ],
    }


def inbound_view(m: Inbound) -> dict[str, Any]:
    return {
        "id": m.id,
        "from": m.sender,
        "to": m.recipient,
        "text": m.text,
        "data": m.data.hex() if m.data is not None else None,
        "encoding": m.encoding,
        "parts": m.parts,
        "gateway": m.gateway,
        "received": iso(m.received_at),
    }
