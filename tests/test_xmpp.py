"""The XMPP gateway against a real server and a real client.

Each test starts Prosody (Debian ``prosody``, tests/peers/prosody.py) on loopback with a
Component entry for sms.example.org, runs a whole smsd in this process
(``make_service``) whose ``[xmpp] server`` is that component port, and logs in
slixmpp (PyPI) as a user of example.org. Assertions are on what the client receives
and on what the loopback gateway sent. Stanza handling without a server is tested at
the end with a fake stream.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import succeed
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.words.xish import domish

from protocols import xmpp
from smsd.channels import replies
from smsd.channels.xmpp import XmppContext, XmppGateway, _stanza_error
from smsd.config import ConfigError, XmppSection, load
from smsd.configschema import build
from smsd.core.submit import Accepted, Refused
from smsd.core.users import hash_password
from smsd.model import Inbound, SenderPolicy, State, User
from smsd.service import Smsd, make_service
from smsd.store import Change
from tests.daemon import DaemonCase
from tests.fakes import wait_for
from tests.peers.prosody import Prosody
from tests.xmppclient import Client

reactor: Any = global_reactor

PHONE = "+15551234567"
DEDICATED = "+15550001111"
DOMAIN = "sms.example.org"
CONTACT = f"{PHONE}@{DOMAIN}"
PASSWORD = "chat-pass"

CONFIG = """
[smsd]
traffic_log = ""
domain = "sms.example.org"
default_country = "US"
[http]
listen = []
[snpp]
listen = []
[sip]
listen = []
[xmpp]
server = "tcp:127.0.0.1:{port}"
secret = "component-secret"
reconnect_min = "50ms"
reconnect_max = "500ms"
{extra}
[[gateway]]
id = "loopback"
type = "loopback"
latency = "1ms"
report_delay = "20ms"
[[gateway]]
id = "failing"
type = "loopback"
latency = "1ms"
report_delay = "20ms"
failure_rate = 1.0
log = "failing.jsonl"
[[route]]
match = '^\\+4420'
gateways = ["failing"]
[[route]]
match = '.'
gateways = ["loopback"]
"""


class XmppCase(DaemonCase):
    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.prosody = Prosody(component_domain=DOMAIN)
        self.addCleanup(self.prosody.close)
        for name in ("alice", "bob", "carol"):
            self.prosody.add_user(name, PASSWORD)
        self.prosody.start()

    async def start(self, extra: str = 'trusted_domains = ["example.org"]') -> Smsd:
        root = self.build_smsd(CONFIG.format(port=self.prosody.component_port, extra=extra))
        await root.store.add_user(
            User(
                "alice",
                password_hash=hash_password("s3cret"),
                emails=("alice@example.org",),
                dedicated=(DEDICATED,),
                sender_policy=SenderPolicy.DEDICATED,
            )
        )
        await root.store.add_user(User("bob", password_hash=hash_password("b0b")))
        await root.store.add_user(User("carol", monthly_limit=1))
        root.startService()
        await wait_for(lambda: self.gateway.stream.connected, what="the component stream")
        return root

    @property
    def gateway(self) -> XmppGateway:
        assert self.root is not None
        return next(c for c in self.root.channels if isinstance(c, XmppGateway))

    async def client(self, name: str = "alice") -> Client:
        c = Client(f"{name}@example.org", PASSWORD, self.prosody.c2s_port)
        self.addCleanup(c.disconnect)
        await c.connect()
        return c

    async def sms_from(self, phone: str, text: str, to: str = DEDICATED) -> int:
        assert self.root is not None and self.root.receiver is not None
        return await self.root.receiver.receive(Inbound("loopback", phone, to, text))

    async def settled(self, inbox_id: int) -> dict[str, Any]:
        assert self.root is not None
        store = self.root.store

        async def done() -> dict[str, Any] | None:
            state = await store.inbox_state(inbox_id)
            return state if state and state["state"] == "delivered" else None

        return await wait_for(done, what=f"inbound SMS {inbox_id} to be handed over")

    async def error_for(self, c: Client, id_: str) -> dict[str, Any]:
        return await c.wait(
            lambda s: s["name"] == "message" and s["type"] == "error" and s["id"] == id_,
            f"an error for message {id_}",
        )


def chat_from(sender: str, body: str | None = None) -> Any:
    def match(s: dict[str, Any]) -> bool:
        return (
            s["name"] == "message"
            and s["type"] == "chat"
            and s["from"] == sender
            and (body is None or s.get("body") == body)
        )

    return match


class LoopTests(XmppCase):
    """Client -> SMS at the loopback gateway -> a phone's answer -> chat at the client."""

    async def test_chat_becomes_sms_and_the_answer_comes_back_as_chat(self) -> None:
        await self.start()
        alice = await self.client()
        await alice.message(CONTACT, "Hello from chat")
        (part,) = await self.loopback_parts(1)
        self.assertEqual(part["number"], PHONE)
        self.assertEqual(part["sender"], DEDICATED)  # her dedicated number, by her policy
        self.assertEqual(part["text"], "Hello from chat")
        inbox_id = await self.sms_from(PHONE, "Hello back")
        got = await alice.wait(chat_from(CONTACT, "Hello back"), "the answer as chat")
        self.assertEqual(got["to"].partition("/")[0], "alice@example.org")
        state = await self.settled(inbox_id)
        self.assertEqual(state["delivered_to"], "xmpp:alice@example.org")

    async def test_a_node_without_plus_is_the_same_number(self) -> None:
        await self.start()
        alice = await self.client()
        await alice.message(f"{PHONE[1:]}@{DOMAIN}", "no plus")
        (part,) = await self.loopback_parts(1)
        self.assertEqual(part["number"], PHONE)
        await self.sms_from(PHONE, "answer")
        await alice.wait(chat_from(CONTACT, "answer"), "the answer from the canonical JID")

    async def test_an_offline_user_gets_it_from_the_server_later(self) -> None:
        await self.start()
        alice = await self.client()
        await alice.message(CONTACT, "I will be away")
        await self.loopback_parts(1)
        await alice.disconnect()
        inbox_id = await self.sms_from(PHONE, "while you were out")
        state = await self.settled(inbox_id)
        self.assertEqual(state["delivered_to"], "xmpp:alice@example.org")
        again = await self.client()
        got = await again.wait(chat_from(CONTACT, "while you were out"), "the stored message")
        self.assertIn("delay", got)  # Prosody's offline store stamps it

    async def test_offline_mail_mode_mails_a_user_not_online(self) -> None:
        await self.start('trusted_domains = ["example.org"]\noffline = "mail"')
        alice = await self.client()
        await alice.message(CONTACT, "I will be away")
        await self.loopback_parts(1)
        await alice.disconnect()
        await wait_for(lambda: not self.gateway.online, what="alice seen offline")
        inbox_id = await self.sms_from(PHONE, "for your mailbox")
        state = await self.settled(inbox_id)
        self.assertEqual(state["delivered_to"], "alice@example.org")

    async def test_a_linked_jid_gets_sms_for_its_user(self) -> None:
        await self.start()
        assert self.root is not None
        await self.root.store.link_jid("alice@example.org", "alice", True, 0.0)
        alice = await self.client()
        await self.sms_from("+15559990000", "first contact")  # nobody wrote to this phone
        await alice.wait(chat_from(f"+15559990000@{DOMAIN}", "first contact"), "the SMS")

    async def test_the_component_reconnects_and_loses_no_inbound_sms(self) -> None:
        self.patch(replies, "RETRY_MIN", 0.2)
        await self.start()
        alice = await self.client()
        await alice.message(CONTACT, "before")
        await self.loopback_parts(1)
        await alice.disconnect()
        self.prosody.stop()
        await wait_for(lambda: not self.gateway.stream.connected, what="the stream lost")
        # Alice's answer comes while the server is down: kept in the inbox, not mailed.
        assert self.root is not None
        self.patch(self.root.replies.mail, "send", _no_mail)  # type: ignore[union-attr]
        inbox_id = await self.sms_from(PHONE, "during the outage")
        await deferLater(reactor, 0.3, lambda: None)
        self.prosody.start()
        await wait_for(
            lambda: self.gateway.stream.connections >= 2, timeout=10, what="a new stream"
        )
        again = await self.client()
        await again.wait(chat_from(CONTACT, "during the outage"), "the kept SMS", timeout=20)
        state = await self.settled(inbox_id)
        self.assertEqual(state["delivered_to"], "xmpp:alice@example.org")
        await again.message(CONTACT, "after")
        parts = await self.loopback_parts(2)
        self.assertEqual(parts[1]["text"], "after")

    async def test_shutdown_says_unavailable(self) -> None:
        await self.start()
        assert self.root is not None
        await self.root.store.link_jid("alice@example.org", "alice", True, 0.0)
        alice = await self.client()
        await alice.presence(DOMAIN, "subscribe")
        await alice.wait(
            lambda s: s["name"] == "presence" and s["from"] == DOMAIN and s["type"] is None,
            "the gateway available",
        )
        await self.root.stopService()
        await alice.wait(
            lambda s: (
                s["name"] == "presence" and s["from"] == DOMAIN and s["type"] == "unavailable"
            ),
            "the gateway unavailable",
        )


async def _no_mail(*args: Any) -> None:
    raise ConnectionRefusedError("no mail in this test")


class DiscoveryTests(XmppCase):
    """disco#info, the jabber:iq:gateway prompt, subscriptions."""

    async def test_disco_info_of_the_gateway(self) -> None:
        await self.start()
        alice = await self.client()
        answer = await alice.iq(DOMAIN, "get", f"<query xmlns='{xmpp.NS_DISCO_INFO}'/>")
        self.assertEqual(answer["type"], "result")
        q = answer["payload"]
        identities = [(i.get("category"), i.get("type")) for i in q if i.tag.endswith("identity")]
        features = {f.get("var") for f in q if f.tag.endswith("feature")}
        self.assertEqual(identities, [("gateway", "sms")])
        self.assertLessEqual({xmpp.NS_GATEWAY, xmpp.NS_REGISTER, xmpp.NS_DISCO_INFO}, features)

    async def test_disco_info_of_a_contact(self) -> None:
        await self.start()
        alice = await self.client()
        answer = await alice.iq(CONTACT, "get", f"<query xmlns='{xmpp.NS_DISCO_INFO}'/>")
        features = {f.get("var") for f in answer["payload"] if f.tag.endswith("feature")}
        self.assertIn(xmpp.NS_RECEIPTS, features)
        answer = await alice.iq(f"bob@{DOMAIN}", "get", f"<query xmlns='{xmpp.NS_DISCO_INFO}'/>")
        self.assertEqual(answer["error"], "item-not-found")

    async def test_gateway_prompt_turns_a_number_into_a_jid(self) -> None:
        await self.start()
        alice = await self.client()
        answer = await alice.iq(DOMAIN, "get", f"<query xmlns='{xmpp.NS_GATEWAY}'/>")
        names = [c.tag.rpartition("}")[2] for c in answer["payload"]]
        self.assertEqual(names, ["desc", "prompt"])
        answer = await alice.iq(
            DOMAIN,
            "set",
            f"<query xmlns='{xmpp.NS_GATEWAY}'><prompt>(555) 123-4567</prompt></query>",
        )
        jid = answer["payload"].find(f"{{{xmpp.NS_GATEWAY}}}jid")
        self.assertEqual(jid.text, CONTACT)
        answer = await alice.iq(
            DOMAIN, "set", f"<query xmlns='{xmpp.NS_GATEWAY}'><prompt>pizza</prompt></query>"
        )
        self.assertEqual(answer["error"], "not-acceptable")
        self.assertIn("pizza", answer["error_text"])

    async def test_subscribing_to_a_number_is_approved(self) -> None:
        await self.start()
        alice = await self.client()
        await alice.presence(CONTACT, "subscribe")
        await alice.subscription(CONTACT, "to")  # approved: Alice sees the contact
        await alice.wait(
            lambda s: s["name"] == "presence" and s["from"] == CONTACT and s["type"] is None,
            "the contact available",
        )

    async def test_subscribing_to_no_number_is_an_error(self) -> None:
        await self.start()
        alice = await self.client()
        await alice.presence(f"pizza@{DOMAIN}", "subscribe")
        got = await alice.wait(
            lambda s: s["name"] == "presence" and s["type"] == "error", "a presence error"
        )
        self.assertEqual(got["error"], "jid-malformed")


class RegisterTests(XmppCase):
    """jabber:iq:register links a JID to an smsd account after checking its password."""

    async def test_register_then_send_then_unregister(self) -> None:
        await self.start("")
        bob = await self.client("bob")
        mid = await bob.message(CONTACT, "before registering")
        error = await self.error_for(bob, mid)
        self.assertEqual(error["error"], "registration-required")
        self.assertIn("register", error["error_text"])

        form = await bob.iq(DOMAIN, "get", f"<query xmlns='{xmpp.NS_REGISTER}'/>")
        names = [c.tag.rpartition("}")[2] for c in form["payload"]]
        self.assertEqual(names, ["instructions", "username", "password"])

        wrong = await bob.iq(
            DOMAIN,
            "set",
            f"<query xmlns='{xmpp.NS_REGISTER}'><username>bob</username>"
            "<password>nope</password></query>",
        )
        self.assertEqual(wrong["error"], "not-authorized")

        ok = await bob.iq(
            DOMAIN,
            "set",
            f"<query xmlns='{xmpp.NS_REGISTER}'><username>bob</username>"
            "<password>b0b</password></query>",
        )
        self.assertEqual(ok["type"], "result")
        await bob.wait(
            lambda s: s["name"] == "presence" and s["from"] == DOMAIN and s["type"] == "subscribe",
            "the gateway asking to subscribe",
        )
        assert self.root is not None
        self.assertEqual(await self.root.store.jid_owner("bob@example.org"), "bob")
        form = await bob.iq(DOMAIN, "get", f"<query xmlns='{xmpp.NS_REGISTER}'/>")
        self.assertIsNotNone(form["payload"].find(f"{{{xmpp.NS_REGISTER}}}registered"))

        await bob.message(CONTACT, "registered now")
        (part,) = await self.loopback_parts(1)
        self.assertEqual(part["text"], "registered now")

        gone = await bob.iq(DOMAIN, "set", f"<query xmlns='{xmpp.NS_REGISTER}'><remove/></query>")
        self.assertEqual(gone["type"], "result")
        self.assertIsNone(await self.root.store.jid_owner("bob@example.org"))


class ErrorTests(XmppCase):
    """Each refusal is an error stanza with its condition and a text that says why."""

    async def test_malformed_number(self) -> None:
        await self.start()
        alice = await self.client()
        mid = await alice.message(f"pizza@{DOMAIN}", "hi")
        error = await self.error_for(alice, mid)
        self.assertEqual(error["error"], "jid-malformed")
        self.assertIn("international", error["error_text"])

    async def test_too_long_for_maxmsgs(self) -> None:
        await self.start('trusted_domains = ["example.org"]\nmaxmsgs = 1')
        alice = await self.client()
        mid = await alice.message(CONTACT, "x" * 200)
        error = await self.error_for(alice, mid)
        self.assertEqual(error["error"], "not-acceptable")
        self.assertIn("maxmsgs=1", error["error_text"])

    async def test_over_quota(self) -> None:
        await self.start()
        carol = await self.client("carol")
        await carol.message(CONTACT, "one")
        await self.loopback_parts(1)
        mid = await carol.message(CONTACT, "two")
        error = await self.error_for(carol, mid)
        self.assertEqual(error["error"], "policy-violation")
        self.assertIn("limit", error["error_text"])

    async def test_not_an_allowed_domain(self) -> None:
        await self.start('trusted_domains = ["example.org"]\nallowed_domains = ["example.net"]')
        alice = await self.client()
        mid = await alice.message(CONTACT, "hi")
        error = await self.error_for(alice, mid)
        self.assertEqual(error["error"], "forbidden")

    async def test_an_empty_body_is_ignored(self) -> None:
        await self.start()
        alice = await self.client()
        first = await alice.message(
            CONTACT, None, extra=f"<composing xmlns='{xmpp.NS_CHATSTATES}'/>"
        )
        await alice.message(CONTACT, "   ")
        await alice.message(CONTACT, "the real one")
        (part,) = await self.loopback_parts(1)
        self.assertEqual(part["text"], "the real one")
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len(await self.loopback_parts(1)), 1)
        errors = [s for s in alice.stanzas if s["type"] == "error"]
        self.assertEqual(errors, [], first)


class ReceiptTests(XmppCase):
    """Delivery reports as XEP-0184 receipts, failures as error stanzas."""

    async def test_a_delivered_sms_is_a_receipt(self) -> None:
        await self.start()
        alice = await self.client()
        mid = await alice.message(CONTACT, "tell me", receipt=True, id="r-1")
        self.assertEqual(mid, "r-1")
        got = await alice.wait(lambda s: s.get("received") == "r-1", "the receipt")
        self.assertEqual(got["from"], CONTACT)

    async def test_no_receipt_unless_asked(self) -> None:
        await self.start()
        alice = await self.client()
        await alice.message(CONTACT, "quiet")
        assert self.root is not None
        await wait_for(lambda: not self.gateway.sent, what="the report")
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual([s for s in alice.stanzas if "received" in s], [])

    async def test_a_failed_sms_is_an_error(self) -> None:
        await self.start()
        alice = await self.client()
        mid = await alice.message("+442071234567@sms.example.org", "no luck", receipt=True)
        error = await self.error_for(alice, mid)
        self.assertEqual(error["error"], "recipient-unavailable")
        self.assertIn("not delivered", error["error_text"])


# Without a server: stanzas into the gateway, what it writes back. ------------------------


class FakeStream:
    def __init__(self) -> None:
        self.out: list[domish.Element] = []
        self.connected = True

    def send(self, element: domish.Element) -> bool:
        self.out.append(element)
        return True

    def flushed(self) -> Any:
        return succeed(True)


@attrs.define
class FakeStore:
    links: dict[str, str] = attrs.Factory(dict)

    def jid_owner(self, jid: str) -> Any:
        return succeed(self.links.get(jid))

    def jid_links(self, user: str | None = None) -> Any:
        return succeed([])

    def link_jid(self, jid: str, user: str, inbound: bool, now: float) -> Any:
        self.links[jid] = user
        return succeed(None)

    def unlink_jid(self, jid: str) -> Any:
        return succeed(self.links.pop(jid, None) is not None)

    def get_message(self, message_id: int) -> Any:
        return succeed({"reply_to": "xmpp:alice@example.org"})


class FakeDirectory:
    def get(self, name: str) -> Any:
        return succeed(User(name) if name in ("alice", "bob") else None)


class FakeSubmitter:
    def __init__(self) -> None:
        self.subs: list[Any] = []

    def submit(self, sub: Any, user: Any, **kw: Any) -> Any:
        self.subs.append((sub, user, kw))
        return succeed([Accepted(sub.recipients[0], len(self.subs), 1)])


def gateway(**settings: Any) -> tuple[XmppGateway, FakeStream, FakeSubmitter]:
    submitter = FakeSubmitter()
    context = XmppContext(
        submitter=submitter,  # type: ignore[arg-type]
        directory=FakeDirectory(),  # type: ignore[arg-type]
        store=FakeStore(),
        settings=XmppSection(secret="s", trusted_domains=["example.org"], **settings),
        domain=DOMAIN,
        default_country="US",
    )
    g = XmppGateway(context, reactor, endpoint=None)
    stream = FakeStream()
    g.stream = stream  # type: ignore[assignment]
    return g, stream, submitter


def parse(xml: str) -> domish.Element:
    """One stanza as the server would deliver it on the component stream."""
    elements: list[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = elements.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(
        f"<stream:stream xmlns='{xmpp.NS_CLIENT}' "
        "xmlns:stream='http://etherx.jabber.org/streams'>".encode()
    )
    stream.parse(xml.encode())
    return elements[0]


def conditions(stream: FakeStream) -> list[str]:
    out = []
    for e in stream.out:
        for err in e.elements(None, "error"):
            out += [c.name for c in err.elements(xmpp.NS_STANZAS) if c.name != "text"]
    return out


class StanzaTests(unittest.TestCase):
    def test_message_becomes_a_submission(self) -> None:
        g, stream, submitter = gateway()
        g.received(
            parse(
                "<message from='alice@example.org/desk' to='15551234567@sms.example.org'"
                " type='chat' id='m1'><body>hi</body></message>"
            )
        )
        ((sub, user, kw),) = submitter.subs
        self.assertEqual(sub.recipients, (PHONE,))
        self.assertEqual(sub.reply_to, "xmpp:alice@example.org")
        self.assertEqual(sub.channel, "xmpp")
        self.assertEqual(user.name, "alice")
        self.assertEqual(kw, {"maxmsgs": 10, "truncate": False})
        self.assertEqual(stream.out, [])

    def test_unregistered_and_malformed(self) -> None:
        g, stream, _ = gateway()
        g.received(
            parse(
                "<message from='eve@example.com/x' to='+15551234567@sms.example.org' id='1'>"
                "<body>hi</body></message>"
            )
        )
        g.received(
            parse(
                "<message from='alice@example.org/x' to='+1555@sms.example.org' id='2'>"
                "<body>hi</body></message>"
            )
        )
        self.assertEqual(conditions(stream), ["registration-required", "jid-malformed"])
        self.assertEqual(stream.out[0]["to"], "eve@example.com/x")
        self.assertEqual(stream.out[0]["from"], CONTACT)
        self.assertEqual(stream.out[0]["id"], "1")

    def test_iq_unknown_namespace_and_ping(self) -> None:
        g, stream, _ = gateway()
        g.received(
            parse(
                "<iq from='alice@example.org/x' to='sms.example.org' type='get' id='a'>"
                "<query xmlns='jabber:iq:version'/></iq>"
            )
        )
        g.received(
            parse(
                "<iq from='alice@example.org/x' to='sms.example.org' type='get' id='b'>"
                "<ping xmlns='urn:xmpp:ping'/></iq>"
            )
        )
        g.received(
            parse("<iq from='alice@example.org/x' to='sms.example.org' type='result' id='c'/>")
        )
        self.assertEqual(conditions(stream), ["service-unavailable"])
        self.assertEqual([e["type"] for e in stream.out], ["error", "result"])

    def test_errors_are_never_answered(self) -> None:
        g, stream, _ = gateway()
        g.received(
            parse(
                "<message from='eve@example.com' to='x@sms.example.org' type='error' id='1'>"
                "<body>hi</body></message>"
            )
        )
        g.received(parse("<presence from='eve@example.com' to='sms.example.org' type='error'/>"))
        self.assertEqual(stream.out, [])

    def test_receipt_then_forgotten(self) -> None:
        g, stream, _ = gateway()
        g.received(
            parse(
                "<message from='alice@example.org/x' to='+15551234567@sms.example.org' id='r'>"
                "<body>hi</body><request xmlns='urn:xmpp:receipts'/></message>"
            )
        )
        change = Change(1, State.DELIVERED, "DELIVRD", "alice", "xmpp", None, None, PHONE)
        g.changes([change])
        g.changes([change])
        (receipt,) = stream.out
        self.assertEqual(receipt["to"], "alice@example.org/x")
        self.assertEqual(next(receipt.elements(xmpp.NS_RECEIPTS, "received"))["id"], "r")

    def test_a_failure_after_a_restart_goes_to_the_bare_jid(self) -> None:
        g, stream, _ = gateway()
        g.changes([Change(7, State.FAILED, "UNDELIV", "alice", "xmpp", None, None, PHONE)])
        (error,) = stream.out
        self.assertEqual(error["to"], "alice@example.org")
        self.assertEqual(error["from"], CONTACT)
        self.assertEqual(conditions(stream), ["recipient-unavailable"])

    def test_refusals_map_to_conditions(self) -> None:
        cases = {
            Refused(Refused.QUOTA, "monthly limit"): "policy-violation",
            Refused(Refused.FORBIDDEN, "sender"): "forbidden",
            Refused(Refused.UNAVAILABLE, "store"): "resource-constraint",
            Refused(Refused.BAD_REQUEST, "text needs 3 SMS, more than maxmsgs=1"): "not-acceptable",
            Refused(Refused.BAD_REQUEST, "invalid number", {"x": "bad"}): "jid-malformed",
            Refused(Refused.BAD_REQUEST, "empty text"): "bad-request",
        }
        for refused, condition in cases.items():
            self.assertEqual(_stanza_error(refused).condition, condition)

    def test_deliver_needs_a_stream(self) -> None:
        g, stream, _ = gateway()
        inbound = Inbound("loopback", PHONE, DEDICATED, "hi", id=3, received_at=0.0)
        stream.connected = False
        self.assertFalse(self.successResultOf(g.deliver(inbound, "xmpp:alice@example.org", "hi")))
        stream.connected = True
        self.assertTrue(self.successResultOf(g.deliver(inbound, "xmpp:alice@example.org", "hi")))
        (m,) = stream.out
        self.assertEqual((m["from"], m["to"], m["type"]), (CONTACT, "alice@example.org", "chat"))

    def test_offline_mail_mode_delivers_only_to_the_online(self) -> None:
        g, _, _ = gateway(offline="mail")
        inbound = Inbound("loopback", PHONE, DEDICATED, "hi", id=3)
        self.assertFalse(self.successResultOf(g.deliver(inbound, "xmpp:alice@example.org", "hi")))
        g.received(parse("<presence from='alice@example.org/desk' to='sms.example.org'/>"))
        self.assertTrue(self.successResultOf(g.deliver(inbound, "xmpp:alice@example.org", "hi")))
        g.received(
            parse(
                "<presence from='alice@example.org/desk' to='sms.example.org' type='unavailable'/>"
            )
        )
        self.assertFalse(self.successResultOf(g.deliver(inbound, "xmpp:alice@example.org", "hi")))


NAMES = st.sampled_from(["message", "presence", "iq", "foo"])
TYPES = st.sampled_from([None, "chat", "get", "set", "result", "error", "subscribe", "probe", "x"])
JIDS = st.sampled_from(
    [
        None,
        "",
        "alice@example.org/x",
        "eve@evil.example",
        "sms.example.org",
        "+1@sms.example.org",
        "15551234567@sms.example.org",
        "@@",
        "a@b@c",
        "x" * 1100 + "@sms.example.org",
    ]
)
CHILDREN = st.lists(
    st.sampled_from(
        [
            "<body>hi</body>",
            "<body/>",
            f"<query xmlns='{xmpp.NS_DISCO_INFO}' node='n'/>",
            f"<query xmlns='{xmpp.NS_GATEWAY}'><prompt>+1 555 123 4567</prompt></query>",
            f"<query xmlns='{xmpp.NS_GATEWAY}'><prompt/></query>",
            f"<query xmlns='{xmpp.NS_REGISTER}'><username/><password>p</password></query>",
            f"<query xmlns='{xmpp.NS_REGISTER}'><remove/></query>",
            "<ping xmlns='urn:xmpp:ping'/>",
            "<request xmlns='urn:xmpp:receipts'/>",
            "<x>\u2603</x>",
        ]
    ),
    max_size=3,
)


class FuzzTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(NAMES, TYPES, JIDS, JIDS, CHILDREN)
    def test_no_stanza_crashes_the_component(
        self, name: str, kind: str | None, sender: str | None, to: str | None, children: list[str]
    ) -> None:
        g, stream, _ = gateway()
        attributes = " ".join(
            f"{k}='{v}'"
            for k, v in (("type", kind), ("from", sender), ("to", to), ("id", "i"))
            if v is not None
        )
        element = parse(f"<{name} {attributes}>{''.join(children)}</{name}>")
        errors: list[Any] = []
        self.patch(
            __import__("smsd.channels.xmpp", fromlist=["log"]).log,
            "failure",
            lambda *a, **k: errors.append(a),
        )
        g.received(element)
        self.assertEqual(errors, [])  # refused in XMPP's terms, never an internal error
        for e in stream.out:
            self.assertNotIn("Traceback", e.toXml())


class ConfigTests(unittest.TestCase):
    def test_a_server_needs_a_secret(self) -> None:
        directory = tempfile.mkdtemp(prefix="smsd-test-xmpp-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "smsd.toml")
        with open(path, "w") as f:
            f.write(CONFIG.format(port=5347, extra="").replace('secret = "component-secret"', ""))
        with self.assertRaisesRegex(ConfigError, "xmpp.secret: needed with xmpp.server"):
            make_service(load(path, os.path.join(directory, "data")))

    def test_bad_server_and_domain_name_the_key(self) -> None:
        for table, key in (
            ({"server": "tcp:nowhere"}, "xmpp.server"),
            ({"component": "not a domain"}, "xmpp.component"),
            ({"offline": "drop"}, "xmpp.offline"),
        ):
            with self.assertRaisesRegex(ConfigError, key):
                build(XmppSection, table, "xmpp")
