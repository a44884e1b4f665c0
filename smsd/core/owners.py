"""Whose is an inbound SMS? The steps, in order, each of which can be switched off.

1. ``#alice@example.org#`` in the text: the phone's user chose (a smsd user's
   address only, so that an SMS cannot send mail to anyone it likes); the tag
   is taken out of the text.
2. The dedicated number it was sent to: that number's user.
3. Reply tracking: who wrote to this phone within ``reply_window``. Exactly
   one mail address (or user): theirs, as an answer to their mail. Several:
   nobody's yet; the phone is asked to choose with a tag (``conflict_text``).
4. A sort word: the first word of the text is one of a user's (``smsd-admin
   user set alice --alias 4711 alice``): an extension, a name.
5. ``default_mailbox``, if one is set.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from smsd.model import Inbound

THREAD_MEMORY = 30 * 86400.0  # how far back a dedicated number's answer looks for its thread
_TAG = re.compile(r"#([^#\s@]+@[^#\s@]+\.[^#\s@]+)#")
_MAIL_ID = re.compile(r"^mail (<[^<>\s]+>) from ")


@attrs.frozen
class Owner:
    address: str  # where the mail goes
    user: str | None  # the smsd user, when one is known
    how: str  # "tag", "dedicated", "reply", "sort word", "default": for the log
    thread: str | None = None  # Message-ID of the mail it answers (In-Reply-To)
    text: str | None = None  # the text without the tag, when a tag chose


@attrs.frozen
class Conflict:
    """Several people wrote to the phone: it must say whose answer this is."""

    addresses: tuple[str, ...]


@attrs.frozen
class OwnerSettings:
    by_tag: bool = True
    by_dedicated: bool = True
    reply_window: float = 7 * 86400.0  # 0: no reply tracking
    by_sort_word: bool = True
    default_mailbox: str = ""


def mail_thread(origin: str | None) -> str | None:
    """The Message-ID the SMTP channel wrote into a message's origin, if any."""
    m = _MAIL_ID.match(origin or "")
    return m.group(1) if m else None


def scheme_of(address: str | None) -> str:
    """ "xmpp" for "xmpp:alice@example.org" (what the chat and SIP channels write as
    reply_to, and deliver to), "" for a mail address."""
    head, sep, _ = (address or "").partition(":")
    return head.lower() if sep and head and "@" not in head else ""


async def _mailbox(store: Any, user: str, known: dict[str, str | None]) -> str | None:
    """A user's first mail address (None: no user, or none given), each user read once."""
    if user not in known:
        record = await store.get_user(user)
        known[user] = record.emails[0] if record is not None and record.emails else None
    return known[user]


async def find_owner(
    store: Any, inbound: Inbound, settings: OwnerSettings, now: float
) -> Owner | Conflict | None:
    text = inbound.text or ""
    known: dict[str, str | None] = {}  # user -> mailbox, for this SMS
    if settings.by_tag and (m := _TAG.search(text)):
        user = await store.user_by_email(m.group(1))
        if user is not None:
            rest = (text[: m.start()] + text[m.end() :]).strip()
            return Owner(m.group(1), user, "tag", text=rest)
    if settings.by_dedicated and inbound.recipient:
        user = await store.dedicated_owner(inbound.recipient)
        if user is not None and (address := await _mailbox(store, user, known)):
            # In the thread of the user's last mail to this phone, if there was one.
            since = now - (settings.reply_window or THREAD_MEMORY)
            writers = await store.recent_writers(inbound.sender, since)
            latest = next(((r, origin) for u, r, origin, _ in writers if u == user), None)
            if latest is not None and scheme_of(latest[0]):
                # The user last wrote to this phone by chat or from a SIP phone: back there.
                return Owner(latest[0], user, "dedicated")
            thread = next((mail_thread(origin) for u, _, origin, _ in writers if u == user), None)
            return Owner(address, user, "dedicated", thread=thread)
    if settings.reply_window > 0:
        writers = await store.recent_writers(inbound.sender, now - settings.reply_window)
        # lower-cased address -> (the address as written, user, the mail it answers)
        found: dict[str, tuple[str, str | None, str | None]] = {}
        for user, reply_to, origin, _ in writers:  # newest first: the latest mail wins
            address = reply_to
            if not address and user is not None:
                address = await _mailbox(store, user, known)
            if address and address.lower() not in found:
                found[address.lower()] = (address, user, mail_thread(origin))
        if len(found) == 1:
            ((address, user, thread),) = found.values()
            return Owner(address, user, "reply", thread=thread)
        if len(found) > 1:
            return Conflict(tuple(address for address, _, _ in found.values()))
    if settings.by_sort_word and (words := text.split(maxsplit=1)):
        user = await store.alias_owner(words[0].strip(".,:;!?").lower())
        if user is not None and (address := await _mailbox(store, user, known)):
            return Owner(address, user, "sort word")
    if settings.default_mailbox:
        return Owner(settings.default_mailbox, None, "default")
    return None
