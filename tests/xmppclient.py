"""A real XMPP client for the gateway tests: slixmpp (PyPI), which we did not write.

slixmpp runs on asyncio, Twisted's tests on the reactor: each client gets its own
thread with its own event loop, and every call returns a Deferred that fires in
the reactor thread. What the client receives is turned into plain dicts in its
own thread (slixmpp's stanza objects stay there), and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, succeed

reactor: Any = global_reactor

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
TIMEOUT = 15.0


def _deferred(future: concurrent.futures.Future[Any]) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()

    def settle(f: concurrent.futures.Future[Any]) -> None:
        error = f.exception()
        if error is not None:
            reactor.callFromThread(d.errback, error)
        else:
            reactor.callFromThread(d.callback, f.result())

    future.add_done_callback(settle)
    return d


def _error(xml: ET.Element) -> tuple[str | None, str | None, str | None]:
    """(condition, text, type) of a stanza's <error/>, or Nones."""
    for e in xml:
        if e.tag.endswith("}error") or e.tag == "error":
            condition = text = None
            for c in e:
                name = c.tag.rpartition("}")[2]
                if name == "text":
                    text = c.text
                elif c.tag.startswith("{" + NS_STANZAS):
                    condition = name
            return condition, text, e.get("type")
    return None, None, None


def summary(stanza: Any) -> dict[str, Any]:
    """What a test looks at in a stanza, as plain data."""
    xml = stanza.xml
    condition, text, kind = _error(xml)
    info: dict[str, Any] = {
        "name": xml.tag.rpartition("}")[2],
        "from": str(stanza["from"]),
        "to": str(stanza["to"]),
        "type": xml.get("type"),
        "id": xml.get("id"),
        "error": condition,
        "error_text": text,
        "error_type": kind,
        "xml": ET.tostring(xml, encoding="unicode"),
    }
    for child in xml:
        name = child.tag.rpartition("}")[2]
        if name == "body":
            info["body"] = child.text or ""
        elif name == "received":
            info["received"] = child.get("id")
        elif name == "delay":
            info["delay"] = child.get("stamp")
    return info


class Client:
    """One account logged in over c2s on loopback (no TLS: the test server has none)."""

    def __init__(self, jid: str, password: str, port: int, resource: str = "test") -> None:
        self.jid = f"{jid}/{resource}"
        self.password = password
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=jid)
        self.thread.start()
        self.stanzas: list[dict[str, Any]] = []  # every message and presence, in order
        self._changed: asyncio.Event | None = None
        self.xmpp: slixmpp.ClientXMPP | None = None

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Deferred[Any]:
        return _deferred(asyncio.run_coroutine_threadsafe(coro, self.loop))

    # Session --------------------------------------------------------------------

    def connect(self) -> Deferred[None]:
        return self._run(self._connect())

    async def _connect(self) -> None:
        self._changed = asyncio.Event()
        # The test server has no TLS: let SASL PLAIN go over loopback in the clear.
        x = slixmpp.ClientXMPP(
            self.jid,
            self.password,
            plugin_config={"feature_mechanisms": {"unencrypted_plain": True}},
        )
        x.enable_direct_tls = False
        x.enable_starttls = False
        x.enable_plaintext = True
        for plugin in ("xep_0030", "xep_0199"):
            x.register_plugin(plugin)
        x.register_plugin("xep_0184", {"auto_request": False, "auto_ack": False})
        started: asyncio.Future[None] = self.loop.create_future()

        def session_start(_: Any) -> None:
            x.send_presence()
            if not started.done():
                started.set_result(None)

        def failed(_: Any) -> None:
            if not started.done():
                started.set_exception(AssertionError(f"{self.jid}: login failed"))

        x.add_event_handler("session_start", session_start)
        x.add_event_handler("failed_auth", failed)
        # Every message and presence, whatever its type (slixmpp's events split them up).
        for name in ("message", "presence"):
            x.register_handler(
                Callback(f"test {name}", MatchXPath(f"{{jabber:client}}{name}"), self._keep)
            )
        self.xmpp = x
        x.connect("127.0.0.1", self.port)
        await asyncio.wait_for(started, TIMEOUT)
        await x.get_roster(timeout=TIMEOUT)  # an interested resource gets roster pushes

    def _keep(self, stanza: Any) -> None:
        self.stanzas.append(summary(stanza))
        assert self._changed is not None
        self._changed.set()

    def disconnect(self) -> Deferred[None]:
        """Log out and end the client's thread (again: nothing)."""
        if not self.thread.is_alive():
            return succeed(None)

        async def close() -> None:
            x, self.xmpp = self.xmpp, None
            if x is None:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(x.disconnect(wait=1.0), TIMEOUT)
            # Its tasks end here, in its loop, not when the loop is gone.
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            del x
            gc.collect()

        d = self._run(close())

        def stop(result: Any) -> Any:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            return result

        return d.addBoth(stop)

    # Sending ---------------------------------------------------------------------

    def message(
        self,
        to: str,
        body: str | None,
        *,
        receipt: bool = False,
        id: str | None = None,
        extra: str = "",
    ) -> Deferred[str]:
        """Send a chat message (``body`` None: none, e.g. a chat state); its id."""

        async def send() -> str:
            assert self.xmpp is not None
            m = self.xmpp.make_message(mto=to, mbody=body, mtype="chat")
            m["id"] = id or m["id"] or self.xmpp.new_id()
            if receipt:
                m["request_receipt"] = True
            if extra:
                m.append(ET.fromstring(extra))
            m.send()
            return m["id"]

        return self._run(send())

    def presence(self, to: str, kind: str) -> Deferred[None]:
        async def send() -> None:
            assert self.xmpp is not None
            self.xmpp.send_presence(pto=to, ptype=kind)

        return self._run(send())

    def iq(self, to: str, kind: str, payload: str) -> Deferred[dict[str, Any]]:
        """An iq with an XML payload; the answer (a result or an error) as a summary
        with the payload element under "payload"."""

        async def ask() -> dict[str, Any]:
            assert self.xmpp is not None
            iq = self.xmpp.make_iq(ito=to, itype=kind)
            iq.append(ET.fromstring(payload))
            try:
                answer = await iq.send(timeout=TIMEOUT)
            except IqError as e:
                answer = e.iq
            except IqTimeout:
                raise AssertionError(f"no answer to an iq to {to}") from None
            info = summary(answer)
            children = [c for c in answer.xml if not c.tag.endswith("}error")]
            info["payload"] = children[0] if children else None
            return info

        return self._run(ask())

    # Receiving -------------------------------------------------------------------

    def wait(
        self, match: Callable[[dict[str, Any]], bool], what: str, timeout: float = TIMEOUT
    ) -> Deferred[dict[str, Any]]:
        """The first stanza received (before or after this call) that ``match``es."""

        async def look() -> dict[str, Any]:
            assert self._changed is not None
            deadline = self.loop.time() + timeout
            while True:
                for s in list(self.stanzas):
                    if match(s):
                        return s
                left = deadline - self.loop.time()
                if left <= 0:
                    seen = "\n".join(s["xml"] for s in self.stanzas[-10:])
                    raise AssertionError(f"{self.jid}: no {what} within {timeout} s; saw:\n{seen}")
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)

        return self._run(look())

    def subscription(self, jid: str, wanted: str, timeout: float = TIMEOUT) -> Deferred[str]:
        """The roster's subscription state of ``jid`` once it is ``wanted`` (the server
        turns a contact's "subscribed" into a roster push, RFC 6121 3.1.6)."""

        async def look() -> str:
            assert self.xmpp is not None
            deadline = self.loop.time() + timeout
            while True:
                state = self.xmpp.client_roster[jid]["subscription"]
                if state == wanted:
                    return state
                if self.loop.time() > deadline:
                    raise AssertionError(f"{jid} is {state!r} in the roster, not {wanted!r}")
                await asyncio.sleep(0.02)

        return self._run(look())

    def forget(self) -> None:
        """Drop what was received so far (between steps of one test)."""
        self.loop.call_soon_threadsafe(self.stanzas.clear)
