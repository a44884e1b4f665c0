"""XMPP stanzas an SMS gateway component answers with (RFC 6120, XEP-0030/0077/0100/0184).

Builders over twisted.words' ``domish`` elements, with no I/O and no knowledge of
smsd: errors with their RFC 6120 types, disco#info, the jabber:iq:gateway and
jabber:iq:register queries, receipts. wokkel would offer some of this, but its
modules no longer import on current Twisted, and these are a few stanzas.
"""

from __future__ import annotations

from twisted.words.protocols.jabber import jid as jidlib
from twisted.words.xish import domish

NS_CLIENT = "jabber:component:accept"  # stanzas on a component stream
NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_GATEWAY = "jabber:iq:gateway"
NS_REGISTER = "jabber:iq:register"
NS_PING = "urn:xmpp:ping"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_DELAY = "urn:xmpp:delay"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"

# RFC 6120 section 8.3.3: each condition with the error type it usually has.
ERROR_TYPES = {
    "bad-request": "modify",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "internal-server-error": "wait",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "cancel",
    "recipient-unavailable": "wait",
    "registration-required": "auth",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "undefined-condition": "cancel",
}


class StanzaError(Exception):
    """What the sender of a stanza did wrong (or what we cannot do), in XMPP's terms."""

    def __init__(self, condition: str, text: str, type_: str | None = None) -> None:
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text
        self.type = type_ or ERROR_TYPES.get(condition, "cancel")


def parse_jid(value: str | None) -> jidlib.JID | None:
    """The JID, or None when it is absent or malformed (stringprep refuses it)."""
    if not value:
        return None
    try:
        return jidlib.internJID(value)
    except (jidlib.InvalidFormat, UnicodeError, ValueError):
        return None


def stanza(name: str, sender: str, to: str, type_: str | None = None, id_: str | None = None):
    """A top-level stanza in the component namespace (``domish.Element``)."""
    e = domish.Element((NS_CLIENT, name))
    e["from"] = sender
    e["to"] = to
    if type_:
        e["type"] = type_
    if id_:
        e["id"] = id_
    return e


def error_reply(original: domish.Element, error: StanzaError) -> domish.Element:
    """The error answer to a stanza (``from`` and ``to`` swapped, same id), RFC 6120 8.3."""
    reply = stanza(
        original.name,
        original.getAttribute("to", ""),
        original.getAttribute("from", ""),
        "error",
        original.getAttribute("id"),
    )
    reply.addChild(error_element(error))
    return reply


def error_element(error: StanzaError) -> domish.Element:
    e = domish.Element((None, "error"))
    e["type"] = error.type
    e.addElement((NS_STANZAS, error.condition))
    text = e.addElement((NS_STANZAS, "text"), content=error.text)
    text[(NS_XML, "lang")] = "en"
    return e


def result(iq: domish.Element) -> domish.Element:
    """The empty ``result`` to an iq; the caller adds a query if it has one."""
    return stanza("iq", iq.getAttribute("to", ""), iq.getAttribute("from", ""), "result", iq["id"])


def query(iq: domish.Element) -> domish.Element | None:
    """An iq's one child element (its payload), or None."""
    children = [c for c in iq.elements()]
    return children[0] if len(children) == 1 else None


def disco_info(
    identities: list[tuple[str, str, str]], features: list[str], node: str | None = None
) -> domish.Element:
    q = domish.Element((NS_DISCO_INFO, "query"))
    if node:
        q["node"] = node
    for category, kind, name in identities:
        i = q.addElement("identity")
        i["category"] = category
        i["type"] = kind
        if name:
            i["name"] = name
    for feature in features:
        q.addElement("feature")["var"] = feature
    return q


def child(element: domish.Element, ns: str, name: str) -> domish.Element | None:
    for c in element.elements(ns, name):
        return c
    return None


def text_of(element: domish.Element | None) -> str:
    return str(element) if element is not None else ""


def receipt(sender: str, to: str, stanza_id: str) -> domish.Element:
    """XEP-0184 ``received`` for the message whose id the client gave."""
    m = stanza("message", sender, to)
    m.addElement((NS_RECEIPTS, "received"))["id"] = stanza_id
    return m


def presence(sender: str, to: str, type_: str | None = None) -> domish.Element:
    return stanza("presence", sender, to, type_)
