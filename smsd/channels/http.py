"""The HTTP channel: the site, who the client is, and how answers are written.

Resources under it: ``/sms/`` (IceWarp- and Omnigate-style forms, in
``http_sms``) and ``/api/v1/`` (the JSON API, in ``http_api``). Clients from
trusted networks may submit without credentials; everyone else
authenticates with HTTP Basic or ``user``/``pass`` parameters. HTTPS is an
``ssl:`` endpoint in ``[http] listen``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from smsd.channels.httpserver import HttpSite, Request
from smsd.channels.trust import Network, is_trusted, networks
from smsd.config import Config, HttpSection
from smsd.core.submit import Refused, Submitter
from smsd.core.users import IAccount
from smsd.model import User

log = Logger()


class Unauthorized(Exception):
    """No or wrong credentials from an untrusted client: 401."""


class HttpError(Exception):
    def __init__(self, code: int, reason: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.extra = code, reason, extra or {}

    def __reduce__(self) -> tuple[Any, ...]:  # it crosses from the main process to workers
        return (HttpError, (self.code, self.reason, self.extra))


REFUSED_CODES = {
    Refused.BAD_REQUEST: 400,
    Refused.FORBIDDEN: 403,
    Refused.QUOTA: 403,
    Refused.UNAVAILABLE: 503,
}


@attrs.define
class Caller:
    """Who sent the request: a user, or an anonymous client from a trusted network."""

    user: User | None
    trusted: bool
    address: str


@attrs.define
class HttpContext:
    """What the HTTP resources need from the rest of smsd (handed in by service.py)."""

    settings: HttpSection
    submitter: Submitter
    portal: Portal
    store: Any
    trusted_networks: Sequence[Network]
    reactor: Any
    health: Callable[[], Deferred[dict[str, Any]]]
    inject: Callable[..., Deferred[int]]
    _trust_cache: dict[str, bool] = attrs.field(factory=dict)

    @classmethod
    def from_config(cls, config: Config, **parts: Any) -> HttpContext:
        """The context from ``[http]`` and ``[smsd] trusted_networks``, and ``parts``
        (submitter, portal, store, reactor, health, inject) from whoever serves HTTP."""
        return cls(
            settings=config.http, trusted_networks=networks(config.smsd.trusted_networks), **parts
        )

    def is_trusted(self, host: str) -> bool:
        hit = self._trust_cache.get(host)
        if hit is None:
            hit = is_trusted(host, self.trusted_networks)
            if len(self._trust_cache) > 4096:
                self._trust_cache.clear()
            self._trust_cache[host] = hit
        return hit

    def caller(
        self, request: Request, user: str | None, password: str | None
    ) -> Caller | Deferred[Caller]:
        """Authenticate; credentials, when given, are checked even from trusted networks.

        A trusted client without credentials is answered at once (no Deferred).
        """
        host = getattr(request.getClientAddress(), "host", "") or ""
        trusted = self.is_trusted(host)
        if user is None:
            basic = _basic_credentials(request)
            if basic is not None:
                user, password = basic
        if user is None:
            if trusted:
                return Caller(None, True, host)
            raise Unauthorized("credentials required")

        def bad(failure: Failure) -> None:
            failure.trap(UnauthorizedLogin)
            raise Unauthorized("wrong user name or password")

        credentials = UsernamePassword(user.encode(), (password or "").encode())
        d = self.portal.login(credentials, None, IAccount)
        d.addCallbacks(lambda login: Caller(login[1], trusted, host), bad)
        return d


def then(value: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(value, *args)`` now, or when ``value`` (a Deferred) fires."""
    if isinstance(value, Deferred):
        return value.addCallback(fn, *args)
    return fn(value, *args)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.getHeader(b"authorization")
    if not header or header[:6].lower() != b"basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


Answer = tuple[Any, ...]  # (code, content type, body[, headers])


class AsyncResource:
    """A resource whose handlers return an Answer or a Deferred of one.

    Handlers that can answer at once (a refusal, a trusted client's submit
    before the store's Deferred) skip Deferred machinery on the hot path.
    """

    json_errors = True

    def __init__(self, ctx: HttpContext) -> None:
        self.ctx = ctx
        self._handlers = {  # b"GET" -> handle_GET, looked up once
            name[7:].encode(): getattr(self, name)
            for name in dir(self)
            if name.startswith("handle_")
        }

    def render(self, request: Request) -> None:
        handler = self._handlers.get(request.method)
        if handler is None:
            allowed = sorted(m.decode() for m in self._handlers)
            request.setHeader(b"allow", ", ".join(allowed).encode())
            self._write(
                request,
                *self.error(405, f"method {request.method.decode(errors='replace')} not allowed"),
            )
            return
        try:
            answer = handler(request)
        except Exception:
            answer = self._failure(Failure(), request)
        if isinstance(answer, Deferred):
            answer.addCallbacks(
                self._deliver,
                self._deliver_failure,
                callbackArgs=(request,),
                errbackArgs=(request,),
            )
        else:
            self._write(request, *answer)

    def _deliver(self, answer: Answer, request: Request) -> None:
        if request.disconnected:  # the client went away while we waited
            return
        try:
            self._write(request, *answer)
        except Exception:
            log.failure("writing an HTTP answer failed")

    def _deliver_failure(self, failure: Failure, request: Request) -> None:
        self._deliver(self._failure(failure, request), request)

    def _write(
        self,
        request: Request,
        code: int,
        ctype: bytes,
        body: bytes,
        headers: dict[bytes, bytes] | None = None,
    ) -> None:
        request.setResponseCode(code)
        request.setHeader(b"content-type", ctype)
        for k, v in (headers or {}).items():
            request.setHeader(k, v)
        request.write(body)
        request.finish()

    def _failure(self, failure: Failure, request: Request) -> tuple[Any, ...]:
        if failure.check(Unauthorized):
            code, ctype, body = self.error(401, str(failure.value))
            realm = self.ctx.settings.realm.replace('"', "")
            return code, ctype, body, {b"www-authenticate": f'Basic realm="{realm}"'.encode()}
        if failure.check(Refused):
            e = failure.value
            extra = {"recipients": e.recipients} if e.recipients else None
            return self.error(REFUSED_CODES[e.kind], e.reason, extra)
        if failure.check(HttpError):
            e = failure.value
            return self.error(e.code, e.reason, e.extra)
        # The path only: a query string may carry a password (pass=...).
        log.failure("HTTP request {path} failed", failure, path=request.path)
        return self.error(500, "internal error (logged)")

    def error(
        self, code: int, reason: str, extra: dict[str, Any] | None = None
    ) -> tuple[int, bytes, bytes]:
        if self.json_errors:
            return json_answer(code, {"error": reason, **(extra or {})})
        lines = [f"ERROR: {reason}"]
        for number, why in (extra or {}).get("recipients", {}).items():
            lines.append(f"ERROR {number}: {why}")
        return code, b"text/plain; charset=utf-8", ("\n".join(lines) + "\n").encode()


def json_answer(code: int, value: Any) -> tuple[int, bytes, bytes]:
    return code, b"application/json", json.dumps(value, ensure_ascii=False).encode() + b"\n"


class _NotFound(AsyncResource):
    def render(self, request: Request) -> None:
        self._write(request, *self.error(404, "no such resource"))


def make_site(ctx: HttpContext) -> HttpSite:
    from smsd.channels.http_api import ApiV1
    from smsd.channels.http_sms import SmsForm

    routes = {(b"sms",): SmsForm(ctx), (b"api", b"v1"): ApiV1(ctx)}
    return HttpSite(
        routes,
        max_body=ctx.settings.max_body,
        idle_timeout=ctx.settings.idle_timeout,
        reactor=ctx.reactor,
        not_found=_NotFound(ctx).render,
    )
