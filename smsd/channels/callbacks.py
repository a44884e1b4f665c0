"""HTTP status callbacks: POST a JSON line to a message's ``callback_url``
when its state changes (sent, delivered, failed, expired).

A callback that fails (no answer, a non-2xx code) is tried again with
doubling delays, up to ``callback_attempts`` times. Callbacks still waiting
at shutdown are not kept: the message state itself is durable and can be
read from ``GET /api/v1/messages/<id>``.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from smsd.channels.http_api import iso
from smsd.store import Change

log = Logger()


def _shown(url: str) -> str:
    """The URL as it may be logged: no user:password@, no query (tokens live there)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


class Callbacks:
    def __init__(self, reactor: Any, *, timeout: float, attempts: int) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.attempts = attempts
        self.agent = Agent(reactor, connectTimeout=timeout)
        self.delivered = 0
        self.given_up = 0

    def notify(self, changes: list[Change]) -> None:
        now = self.reactor.seconds()
        for c in changes:
            if c.callback_url:
                body = {
                    "id": c.message_id,
                    "to": c.recipient,
                    "state": c.state.value,
                    "status": c.status,
                    "client_ref": c.client_ref,
                    "at": iso(now),
                }
                self._post(c.callback_url, json.dumps(body).encode(), 1)

    def _post(self, url: str, body: bytes, attempt: int) -> Deferred[Any]:
        d = self.agent.request(
            b"POST",
            url.encode(),
            Headers({b"content-type": [b"application/json"], b"user-agent": [b"smsd"]}),
            FileBodyProducer(io.BytesIO(body)),
        )
        d.addTimeout(self.timeout, self.reactor)
        d.addCallback(self._answered)
        d.addCallbacks(lambda _: self._done(), self._retry, errbackArgs=(url, body, attempt))
        return d

    def _answered(self, response: Any) -> Deferred[Any]:
        code = response.code
        d = readBody(response)

        def check(_: bytes) -> None:
            if not 200 <= code < 300:
                raise ValueError(f"answered {code}")

        return d.addCallback(check)

    def _done(self) -> None:
        self.delivered += 1

    def _retry(self, failure: Failure, url: str, body: bytes, attempt: int) -> None:
        if attempt >= self.attempts:
            self.given_up += 1
            log.warn(
                "status callback to {url} given up after {n} tries: {why}",
                url=_shown(url),
                n=attempt,
                why=failure.getErrorMessage(),
            )
            return
        self.reactor.callLater(2.0**attempt, self._post, url, body, attempt + 1)
