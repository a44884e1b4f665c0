"""Chat to SMS: smsd as an XEP-0114 component of the site's XMPP server, an SMS gateway
in the sense of XEP-0100.

A chat message from ``alice@example.org`` to ``+15551234567@sms.example.org`` becomes
an SMS from Alice's account (quota, sender-ID policy and dedicated number apply); a
phone's answer comes back to her as a chat message from that contact. Who a JID is:
a link made by jabber:iq:register (the smsd password) or by ``smsd-admin xmpp link``,
or, for ``[xmpp] trusted_domains``, the user with the JID's local part.

Numbers are JID nodes in international form, with or without ``+``; what smsd sends
always has the ``+``. Delivery reports become XEP-0184 receipts where the client
asked for one (the stanza id is remembered in memory, at most ``[xmpp] receipts``;
after a restart a receipt for an older message is not sent), failures become error
stanzas (those need only the store). Refusals are error stanzas whose text says
why; an empty body (chat states, receipts) is ignored; nothing a stanza holds can
stop the component.
"""

from __future__ import annotations

import datetime
import re
import time
from collections import OrderedDict
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from protocols import xmpp
from protocols.xmpp import StanzaError
from smsd import numbers
from smsd.channels.xmpp_stream import ComponentStream
from smsd.config import XmppSection
from smsd.core.submit import Accepted, Refused, Submitter
from smsd.core.users import Directory, account_problem
from smsd.model import FINAL_STATES, Inbound, State, Submission, User
from smsd.store import Change

log = Logger()

_NODE = re.compile(r"\+?([0-9]{3,15})")
_UNSAFE_NODE = re.compile(r"[^A-Za-z0-9+._-]")
OWNER_TTL = 5.0  # seconds a JID's owner is remembered (links change rarely)
LATE = 60.0  # an SMS handed over later than this after it came carries its time (XEP-0203)
SHOWN_MAX = 10_000  # contacts whose presence we showed, told "unavailable" on shutdown


@attrs.frozen
class XmppContext:
    """What the XMPP channel needs from the rest of smsd (handed in by service.py)."""

    submitter: Submitter
    directory: Directory
    store: Any  # jid_owner, jid_links, link_jid, unlink_jid, get_message
    settings: XmppSection
    domain: str  # the component's
    default_country: str


@attrs.frozen
class Sent:
    """A chat message that became an SMS: whom to tell about its delivery."""

    stanza_id: str | None
    jid: str  # full JID of the writer
    contact: str  # the JID it was written to
    receipt: bool  # the client asked for a XEP-0184 receipt


class XmppGateway(Service):
    """The component: stanzas in, SMS out; inbound SMS as chat (a replies Destination)."""

    name = "xmpp"
    scheme = "xmpp"

    def __init__(self, context: XmppContext, reactor: Any, endpoint: Any) -> None:
        self.context = context
        self.settings = context.settings
        self.domain = context.domain
        self.reactor = reactor
        s = self.settings
        self.stream = ComponentStream(
            reactor,
            endpoint,
            self.domain,
            s.secret,
            on_stanza=self.received,
            on_up=self._up,
            reconnect_min=s.reconnect_min,
            reconnect_max=max(s.reconnect_min, s.reconnect_max),
            keepalive=s.keepalive,
            server=s.server,
        )
        self.sent: OrderedDict[int, Sent] = OrderedDict()  # message id -> its writer
        self.online: dict[str, set[str]] = {}  # bare JID -> resources seen available
        self._owners: dict[str, tuple[float, str | None]] = {}
        self._announced: set[str] = set()  # bare JIDs told the gateway is available
        self._shown: set[tuple[str, str]] = set()  # (contact, bare JID) shown available
        self.submitted = 0

    # Service ----------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.stream.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        goodbye = [xmpp.presence(self.domain, j, "unavailable") for j in sorted(self._announced)]
        goodbye += [xmpp.presence(c, j, "unavailable") for c, j in sorted(self._shown)]
        return self.stream.stop(goodbye)

    def _up(self) -> None:
        """Tell the registered users the gateway is there, and ask who of them is online."""

        def announce(links: list[Any]) -> None:
            for link in links:
                self._announced.add(link.jid)
                self.stream.send(xmpp.presence(self.domain, link.jid))
                self.stream.send(xmpp.presence(self.domain, link.jid, "probe"))

        d = self.context.store.jid_links(None)
        d.addCallback(announce)
        d.addErrback(lambda f: log.failure("XMPP: reading the linked JIDs", f))

    # Stanzas ----------------------------------------------------------------------

    def received(self, element: domish.Element) -> None:
        """One stanza from the server. Whatever it holds, the answer is a stanza at most."""
        handler = {"message": self._message, "presence": self._presence, "iq": self._iq}.get(
            element.name
        )
        if handler is None:
            return
        d = ensureDeferred(handler(element))
        d.addErrback(self._refused, element)

    def _refused(self, f: Failure, element: domish.Element) -> None:
        if element.getAttribute("type") in ("error", "result") or not element.getAttribute("from"):
            return  # never answer an error or a result (RFC 6120 8.3.1)
        if f.check(StanzaError):
            error = f.value
        else:
            log.failure(
                "XMPP {name} from {sender}",
                f,
                name=element.name,
                sender=element.getAttribute("from"),
            )
            error = StanzaError("internal-server-error", "failed (technical reason); try later")
        self.stream.send(xmpp.error_reply(element, error))

    # Messages -----------------------------------------------------------------------

    async def _message(self, m: domish.Element) -> None:
        kind = m.getAttribute("type", "normal")
        if kind == "error":
            log.info("XMPP error from {sender}", sender=m.getAttribute("from"))
            return
        body = _body(m)
        if not body.strip():
            return  # chat states, receipts, markers: nothing to send
        if kind == "groupchat":
            raise StanzaError("not-acceptable", "group chat messages are not sent as SMS")
        sender, to = _addresses(m)
        if to.user is None:
            raise StanzaError("bad-request", f"write to a phone number: +15551234567@{self.domain}")
        user = await self._user(sender)
        number = self._number(to.user, user)
        sub = Submission(
            recipients=(number,),
            text=body,
            channel="xmpp",
            reply_to=f"xmpp:{sender.userhost()}",
            origin=f"xmpp from {sender.full()}",
        )
        try:
            accepted: list[Accepted] = await self.context.submitter.submit(
                sub, user, maxmsgs=self.settings.maxmsgs, truncate=self.settings.truncate
            )
        except Refused as e:
            raise _stanza_error(e) from None
        self.submitted += 1
        receipt = xmpp.child(m, xmpp.NS_RECEIPTS, "request") is not None
        for a in accepted:
            self._remember(a.id, Sent(m.getAttribute("id"), sender.full(), to.full(), receipt))

    def _remember(self, message_id: int, sent: Sent) -> None:
        limit = self.settings.receipts
        if limit <= 0:
            return
        self.sent[message_id] = sent
        while len(self.sent) > limit:
            self.sent.popitem(last=False)

    async def _user(self, jid: JID) -> User:
        """The smsd user a JID is, or the error that says why it is nobody."""
        bare = jid.userhost()
        allowed = self.settings.allowed_domains
        if allowed and jid.host not in allowed:
            raise StanzaError("forbidden", f"{jid.host} is not allowed to use this gateway")
        name = await self._owner(bare)
        user = await self.context.directory.get(name) if name else None
        if user is None:
            raise StanzaError(
                "registration-required",
                f"{bare} is not linked to an smsd account: register with {self.domain}"
                " (your smsd user name and password) or ask the administrator",
            )
        problem = account_problem(user)
        if problem:
            raise StanzaError("forbidden", f"smsd account {user.name}: {problem}")
        return user

    async def _owner(self, bare: str) -> str | None:
        now = time.monotonic()
        hit = self._owners.get(bare.lower())
        if hit is not None and hit[0] > now:
            return hit[1]
        name = await self.context.store.jid_owner(bare)
        if name is None:
            local, _, host = bare.rpartition("@")
            if local and host in self.settings.trusted_domains:
                name = local
        if len(self._owners) > 10_000:
            self._owners.clear()
        self._owners[bare.lower()] = (now + OWNER_TTL, name)
        return name

    def _number(self, node: str, user: User | None) -> str:
        """The contact's node as a number: international, with or without '+'."""
        m = _NODE.fullmatch(node)
        if m is None:
            raise StanzaError(
                "jid-malformed",
                f"{node!r} is not a phone number in international form, like +15551234567",
            )
        try:
            return numbers.normalise("+" + m.group(1), self._country(user), short_codes=False)
        except numbers.NumberError as e:
            raise StanzaError("jid-malformed", f"{node}: {e}") from None

    def _country(self, user: User | None) -> str:
        return (user.default_country if user else None) or self.context.default_country

    def contact(self, number: str) -> str:
        """The JID a number (or an alphanumeric sender) chats from."""
        node = _UNSAFE_NODE.sub("", number.replace(" ", "."))[:64] or "unknown"
        return f"{node}@{self.domain}"

    # Presence -----------------------------------------------------------------------

    async def _presence(self, p: domish.Element) -> None:
        kind = p.getAttribute("type")
        sender, to = _addresses(p)
        bare, contact = sender.userhost(), to.userhost()
        if kind in (None, "available", "unavailable"):
            self._seen(sender, kind != "unavailable")
            return
        if kind == "subscribe":
            user = await self._user(sender)
            if to.user is not None:
                self._number(to.user, user)
            self.stream.send(xmpp.presence(contact, bare, "subscribed"))
            self._show(contact, bare)
        elif kind == "unsubscribe":
            self.stream.send(xmpp.presence(contact, bare, "unsubscribed"))
            self._shown.discard((contact, bare))
        elif kind == "probe":
            allowed = self.settings.allowed_domains
            if (not allowed or sender.host in allowed) and (
                to.user is None or _NODE.fullmatch(to.user)
            ):
                self._show(contact, bare)
        # subscribed, unsubscribed, error: nothing to answer

    def _show(self, contact: str, bare: str) -> None:
        """Phones have no presence: a contact the user may see is always available."""
        self.stream.send(xmpp.presence(contact, bare))
        if contact == self.domain:
            self._announced.add(bare)
        elif len(self._shown) < SHOWN_MAX:
            self._shown.add((contact, bare))

    def _seen(self, jid: JID, available: bool) -> None:
        bare = jid.userhost().lower()
        resources = self.online.setdefault(bare, set())
        if available:
            resources.add(jid.resource or "")
        else:
            resources.discard(jid.resource or "")
            if not jid.resource:
                resources.clear()
        if not resources:
            del self.online[bare]

    # Queries --------------------------------------------------------------------------

    async def _iq(self, iq: domish.Element) -> None:
        kind = iq.getAttribute("type")
        if kind not in ("get", "set"):
            return
        if not iq.getAttribute("id"):
            raise StanzaError("bad-request", "an iq needs an id")
        sender, to = _addresses(iq)
        q = xmpp.query(iq)
        if q is None:
            raise StanzaError("bad-request", "an iq get or set carries exactly one element")
        key = (q.uri, q.name, kind)
        if key == (xmpp.NS_PING, "ping", "get"):
            self.stream.send(xmpp.result(iq))
        elif key == (xmpp.NS_DISCO_INFO, "query", "get"):
            self.stream.send(self._disco_info(iq, q, to))
        elif key == (xmpp.NS_DISCO_ITEMS, "query", "get"):
            reply = xmpp.result(iq)
            reply.addElement((xmpp.NS_DISCO_ITEMS, "query"))
            self.stream.send(reply)
        elif q.uri == xmpp.NS_GATEWAY and q.name == "query" and to.user is None:
            self.stream.send(await self._gateway(iq, q, sender))
        elif q.uri == xmpp.NS_REGISTER and q.name == "query" and to.user is None:
            if not self.settings.registration:
                raise StanzaError("service-unavailable", "registration is off at this gateway")
            self.stream.send(await self._register(iq, q, sender))
        else:
            raise StanzaError("service-unavailable", f"{q.uri or q.name} is not served here")

    def _disco_info(self, iq: domish.Element, q: domish.Element, to: JID) -> domish.Element:
        if q.getAttribute("node"):
            raise StanzaError("item-not-found", "no such node")
        if to.user is None:
            info = xmpp.disco_info(
                [("gateway", "sms", self.settings.name)],
                [
                    xmpp.NS_DISCO_INFO,
                    xmpp.NS_DISCO_ITEMS,
                    xmpp.NS_GATEWAY,
                    xmpp.NS_REGISTER,
                    xmpp.NS_PING,
                ],
            )
        elif _NODE.fullmatch(to.user):
            info = xmpp.disco_info(
                [("client", "sms", f"SMS to {to.user}")], [xmpp.NS_DISCO_INFO, xmpp.NS_RECEIPTS]
            )
        else:
            raise StanzaError("item-not-found", f"{to.user!r} is not a phone number")
        reply = xmpp.result(iq)
        reply.addChild(info)
        return reply

    async def _gateway(self, iq: domish.Element, q: domish.Element, sender: JID) -> Any:
        """XEP-0100 jabber:iq:gateway: a typed number -> the contact's JID."""
        reply = xmpp.result(iq)
        answer = reply.addElement((xmpp.NS_GATEWAY, "query"))
        if iq["type"] == "get":
            answer.addElement(
                "desc", content="Enter the mobile number, best in international form (+1 555...)"
            )
            answer.addElement("prompt", content="Phone number")
            return reply
        typed = xmpp.text_of(xmpp.child(q, xmpp.NS_GATEWAY, "prompt")).strip()
        if not typed:
            raise StanzaError("bad-request", "the number goes into <prompt/>")
        try:
            user = await self._user(sender)
        except StanzaError:
            user = None  # anyone may translate; the site's country applies
        try:
            number = numbers.normalise(typed, self._country(user), short_codes=False)
        except numbers.NumberError as e:
            raise StanzaError("not-acceptable", f"{typed!r}: {e}") from None
        contact = self.contact(number)
        answer.addElement("jid", content=contact)
        answer.addElement("prompt", content=contact)  # what XEP-0100 before 1.0 returned
        return reply

    async def _register(self, iq: domish.Element, q: domish.Element, sender: JID) -> Any:
        """XEP-0077: link the sender's bare JID to an smsd account with its password."""
        bare = sender.userhost()
        allowed = self.settings.allowed_domains
        if allowed and sender.host not in allowed:
            raise StanzaError("forbidden", f"{sender.host} is not allowed to use this gateway")
        store = self.context.store
        reply = xmpp.result(iq)
        if iq["type"] == "get":
            answer = reply.addElement((xmpp.NS_REGISTER, "query"))
            answer.addElement(
                "instructions",
                content="Your smsd user name and password link this address to your account",
            )
            name = await store.jid_owner(bare)
            if name is not None:
                answer.addElement("registered")
            answer.addElement("username", content=name or "")
            answer.addElement("password")
            return reply
        if xmpp.child(q, xmpp.NS_REGISTER, "remove") is not None:
            if not await store.unlink_jid(bare):
                raise StanzaError("registration-required", f"{bare} is not registered")
            self._owners.pop(bare.lower(), None)
            log.info("XMPP: {jid} unregistered", jid=bare)
            self.reactor.callLater(0, self._farewell, bare)
            return reply
        name = xmpp.text_of(xmpp.child(q, xmpp.NS_REGISTER, "username")).strip()
        password = xmpp.text_of(xmpp.child(q, xmpp.NS_REGISTER, "password"))
        if not name or not password:
            raise StanzaError("not-acceptable", "both username and password are needed")
        try:
            user = await self.context.directory.authenticate(name, password)
        except UnauthorizedLogin:
            log.info("XMPP: registration of {jid} as {name!r} refused", jid=bare, name=name)
            raise StanzaError("not-authorized", "wrong user name or password") from None
        problem = account_problem(user)
        if problem:
            raise StanzaError("forbidden", f"smsd account {user.name}: {problem}")
        await store.link_jid(bare, user.name, True, self.reactor.seconds())
        self._owners.pop(bare.lower(), None)
        log.info("XMPP: {jid} registered as {name}", jid=bare, name=user.name)
        self.reactor.callLater(0, self._welcome, bare)
        return reply

    def _welcome(self, bare: str) -> None:
        """After the result: ask to see the user (XEP-0100 4.1.1) and show the gateway."""
        self.stream.send(xmpp.presence(self.domain, bare, "subscribe"))
        self._show(self.domain, bare)

    def _farewell(self, bare: str) -> None:
        for kind in ("unsubscribe", "unsubscribed", "unavailable"):
            self.stream.send(xmpp.presence(self.domain, bare, kind))
        self._announced.discard(bare)

    # Inbound SMS: the replies Destination ---------------------------------------------

    def addresses(self, user: User) -> Deferred[list[str]]:
        """The user's linked JIDs that take SMS (with ``offline = "mail"``: online ones)."""

        def usable(links: list[Any]) -> list[str]:
            return [f"xmpp:{link.jid}" for link in links if link.inbound and self._may(link.jid)]

        return self.context.store.jid_links(user.name).addCallback(usable)

    def _may(self, jid: str) -> bool:
        return self.settings.offline == "store" or JID(jid).userhost().lower() in self.online

    def deliver(self, inbound: Inbound, address: str, text: str) -> Deferred[bool]:
        """Send the SMS as chat; True once the server has read it."""
        to = xmpp.parse_jid(address.partition(":")[2])
        if to is None or not self.stream.connected or not self._may(to.full()):
            return succeed(False)
        m = xmpp.stanza(
            "message", self.contact(inbound.sender), to.full(), "chat", f"sms-{inbound.id}"
        )
        m.addElement("body", content=text)
        now = self.reactor.seconds()
        if inbound.received_at and now - inbound.received_at > LATE:
            delay = m.addElement((xmpp.NS_DELAY, "delay"))
            delay["from"] = self.domain
            delay["stamp"] = _stamp(inbound.received_at)
        self.stream.send(m)
        return self.stream.flushed()

    # Delivery reports -----------------------------------------------------------------

    def changes(self, changes: list[Change]) -> None:
        """A message from chat reached its end: a receipt, or the error that says why."""
        for c in changes:
            if c.channel != "xmpp" or c.state not in FINAL_STATES:
                continue
            sent = self.sent.pop(c.message_id, None)
            if c.state is State.DELIVERED:
                if sent is not None and sent.receipt and sent.stanza_id:
                    self.stream.send(xmpp.receipt(sent.contact, sent.jid, sent.stanza_id))
                continue
            d = succeed(sent) if sent is not None else self._writer(c)
            d.addCallback(self._failed, c)
            d.addErrback(lambda f: log.failure("XMPP: telling of a failed SMS", f))

    def _writer(self, c: Change) -> Deferred[Sent | None]:
        """Who wrote a message we hold no memory of (a restart since): from the store."""

        def found(message: dict[str, Any] | None) -> Sent | None:
            reply_to = (message or {}).get("reply_to") or ""
            if not reply_to.startswith("xmpp:"):
                return None
            return Sent(None, reply_to[5:], self.contact(c.recipient), False)

        return self.context.store.get_message(c.message_id).addCallback(found)

    def _failed(self, sent: Sent | None, c: Change) -> None:
        if sent is None:
            return
        why = c.status or c.state.value
        error = StanzaError(
            "recipient-unavailable", f"the SMS to {c.recipient} was not delivered: {why}", "cancel"
        )
        m = xmpp.stanza("message", sent.contact, sent.jid, "error", sent.stanza_id)
        m.addChild(xmpp.error_element(error))
        if not self.stream.send(m):
            log.info(
                "XMPP: not connected, {jid} is not told of failed SMS {id}",
                jid=sent.jid,
                id=c.message_id,
            )


def _addresses(stanza: domish.Element) -> tuple[JID, JID]:
    sender = xmpp.parse_jid(stanza.getAttribute("from"))
    to = xmpp.parse_jid(stanza.getAttribute("to"))
    if sender is None or to is None:
        raise StanzaError("jid-malformed", "from and to must be JIDs")
    return sender, to


def _body(m: domish.Element) -> str:
    for e in m.elements():
        if e.name == "body" and e.uri in (m.uri, None, xmpp.NS_CLIENT, "jabber:client"):
            return str(e)
    return ""


def _stanza_error(e: Refused) -> StanzaError:
    """What the core refused, in XMPP's words."""
    if e.kind == Refused.QUOTA:
        return StanzaError("policy-violation", e.reason)
    if e.kind == Refused.FORBIDDEN:
        return StanzaError("forbidden", e.reason)
    if e.kind == Refused.UNAVAILABLE:
        return StanzaError("resource-constraint", e.reason)
    if "maxmsgs" in e.reason:
        return StanzaError("not-acceptable", e.reason)
    if e.recipients:
        return StanzaError("jid-malformed", e.reason)
    return StanzaError("bad-request", e.reason)


def _stamp(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
