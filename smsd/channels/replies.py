"""Answers from phones, mailed to the people they answer.

Every committed inbound SMS waits in the inbox (state ``new``) until it is
handed over: its owner is found (``smsd.core.owners``), the mail is written
so that pressing Reply in any mail client sends an SMS back
(``From: +15557654321@sms.example.org``, threaded under the mail that started
it with ``In-Reply-To``/``References``, shown by Outlook as a text message
with ``Content-class: MS-OMS-SMS`` and ``X-MS-Reply-To-Mobile``), and sent
through ``[smtp] relay`` or into the owner's Maildir. Only then is the SMS
marked delivered; a relay that does not take it is tried again with growing
waits until ``reply_expiry``. Because the inbox is the queue, a restart
loses nothing: what was not handed over is handed over after it.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any, Protocol

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred, gatherResults
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from smsd.core.owners import Conflict, Owner, OwnerSettings, find_owner, scheme_of
from smsd.mailout import MailOut
from smsd.model import Inbound, Submission, User

log = Logger()

CONCURRENCY = 8  # mails handed to the relay at once
RETRY_MIN = 30.0
RETRY_MAX = 3600.0


_UNSAFE_IN_ADDRESS = re.compile(r"[^A-Za-z0-9+._-]")


def reply_mail(inbound: Inbound, owner: Owner, domain: str) -> EmailMessage:
    """The mail a phone's answer becomes. What the network sent goes into the body only;
    the sender (an alphanumeric one is the network's text too) is reduced to what an
    address may hold, so nothing in an SMS can add a header."""
    phone = _UNSAFE_IN_ADDRESS.sub("", inbound.sender.replace(" ", "."))[:64]
    sender = f"{phone}@{domain}" if phone else f"smsd@{domain}"
    m = EmailMessage()
    m["From"] = sender
    m["To"] = owner.address
    m["Subject"] = f"SMS from {phone or 'an unknown sender'}"
    m["Date"] = email.utils.formatdate(inbound.received_at, localtime=True)
    m["Message-ID"] = f"<sms-{inbound.id}.{int(inbound.received_at)}@{domain}>"
    if owner.thread:
        m["In-Reply-To"] = owner.thread
        m["References"] = owner.thread
    if phone.startswith("+"):
        m["X-MS-Reply-To-Mobile"] = phone
    m["X-SMS-Gateway"] = _UNSAFE_IN_ADDRESS.sub("", inbound.gateway)
    m.set_content(sms_text(inbound, owner) + "\n")
    # Outlook shows it as a text message. (Set after set_content, which drops Content-*.)
    m["Content-class"] = "MS-OMS-SMS"
    return m


class Destination(Protocol):
    """A channel that hands inbound SMS to people where they are (XMPP chat, a SIP phone).

    Its addresses are ``scheme:...`` (``xmpp:alice@example.org``, ``sip:alice@example.org``):
    what the channel writes into ``Submission.reply_to``, so that reply tracking finds
    the way back, and what it lists for a user it can reach now.
    """

    scheme: str

    def addresses(self, user: User) -> Deferred[list[str]]:
        """Where this user can be reached on this channel now, best first ([]: nowhere)."""

    def deliver(self, inbound: Inbound, address: str, text: str) -> Deferred[bool]:
        """Hand the SMS over; True once taken, False when ``address`` cannot take it now."""


def sms_text(inbound: Inbound, owner: Owner) -> str:
    text = owner.text if owner.text is not None else inbound.text
    if text is None:
        data = inbound.data or b""
        text = f"(binary SMS, {len(data)} octets: {data.hex()})"
    return text


@attrs.frozen
class ReplySettings:
    domain: str
    owners: OwnerSettings
    expiry: float = 5 * 86400.0
    conflict_text: str = ""
    poll: float = 1.0


class Unreachable(Exception):
    """No destination of the owner took the SMS, and no mailbox is left to try."""


class InboxDelivery(Service):
    """Hands the inbox's new SMS to their owners, one at a time, in order."""

    name = "replies"

    def __init__(
        self,
        store: Any,
        reactor: Any,
        mail: MailOut,
        settings: ReplySettings,
        submit: Any = None,  # Submitter.submit, for the SMS that asks a phone to choose
    ) -> None:
        self.store = store
        self.reactor = reactor
        self.mail = mail
        self.settings = settings
        self.submit = submit
        self.delivered = 0
        self.destinations: dict[str, Destination] = {}  # by scheme: see add_destination
        self._busy = False
        self._again = False
        self._loop = LoopingCall(self.wake)
        self._loop.clock = reactor

    def add_destination(self, destination: Destination) -> None:
        """A channel that can take inbound SMS for its users (called as smsd is built)."""
        self.destinations[destination.scheme] = destination

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.settings.poll, now=True)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def wake(self, *_: Any) -> None:
        """Something may be due (a new SMS was committed, or the poll)."""
        if not self.running:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        d = ensureDeferred(self._run())

        def done(_: Any) -> None:
            self._busy = False
            if self._again:
                self._again = False
                self.wake()

        d.addErrback(lambda f: log.failure("handing inbound SMS to their owners failed", f))
        d.addBoth(done)

    async def _run(self) -> None:
        """Hand over what is due, ``CONCURRENCY`` mails at a time: each is a connection
        to the relay, and one after the other that is tens a second at best."""
        while self.running:
            due = await self.store.due_inbound(self.reactor.seconds(), 50)
            if not due:
                return
            lanes = DeferredSemaphore(CONCURRENCY)
            await gatherResults(
                [lanes.run(lambda i=i: ensureDeferred(self._hand_over(i))) for i in due],
                consumeErrors=True,
            )

    async def _hand_over(self, inbound: Inbound) -> None:
        now = self.reactor.seconds()
        assert inbound.id is not None
        owner = await find_owner(self.store, inbound, self.settings.owners, now)
        if owner is None:
            log.info(
                "inbound SMS {id} from {sender} is nobody's", id=inbound.id, sender=inbound.sender
            )
            await self.store.settle_inbound(
                inbound.id,
                "unowned",
                None,
                None,
                "no tag, dedicated number, recent writer or default mailbox",
            )
            return
        if isinstance(owner, Conflict):
            await self._ask(inbound, owner)
            return
        async for address in self._candidates(owner):
            scheme = scheme_of(address)
            if scheme:
                destination = self.destinations.get(scheme)
                if destination is None or not await self._deliver(
                    destination, inbound, owner, address
                ):
                    continue
            else:
                owner = attrs.evolve(owner, address=address)
                message = reply_mail(inbound, owner, self.settings.domain)
                try:
                    await self.mail.send(message, message["From"], address, owner.user or address)
                except Exception:
                    await self._later(inbound, owner, Failure(), now)
                    return
            self.delivered += 1
            log.info(
                "inbound SMS {id} from {sender} handed to {to} ({how})",
                id=inbound.id,
                sender=inbound.sender,
                to=address,
                how=owner.how,
            )
            await self.store.settle_inbound(inbound.id, "delivered", owner.user, address, None)
            await self._forward(inbound, owner)
            return
        why = f"{owner.address} cannot take it now and there is no mailbox to fall back on"
        await self._later(inbound, owner, Failure(Unreachable(why)), now)

    async def _candidates(self, owner: Owner) -> AsyncIterator[str]:
        """Where to try, in order, each once. The address someone wrote from comes first
        (a mail answered by mail, a chat by chat); otherwise where the user is reachable
        now on a channel (a registered SIP phone, a linked JID), then their mailbox. Asked
        one after the other: when the first takes it, no channel is asked."""
        tried: set[str] = set()
        if owner.how == "reply" or scheme_of(owner.address):
            tried.add(owner.address)
            yield owner.address
        user = await self.store.get_user(owner.user) if owner.user else None
        if user is not None:
            for destination in self.destinations.values():
                try:
                    addresses = await destination.addresses(user)
                except Exception:
                    log.failure(
                        "{scheme} addresses of {user}", scheme=destination.scheme, user=user.name
                    )
                    continue
                for address in addresses:
                    if address not in tried:
                        tried.add(address)
                        yield address
        for address in (owner.address, *(user.emails[:1] if user is not None else ())):
            if address not in tried:
                tried.add(address)
                yield address

    async def _deliver(
        self, destination: Destination, inbound: Inbound, owner: Owner, address: str
    ) -> bool:
        try:
            return await destination.deliver(inbound, address, sms_text(inbound, owner))
        except Exception:
            log.failure("inbound SMS {id} to {to}", id=inbound.id, to=address)
            return False

    async def _forward(self, inbound: Inbound, owner: Owner) -> None:
        """To the owner's mobile too, if their settings say so (never a mobile's own SMS)."""
        if owner.user is None or self.submit is None:
            return
        user = await self.store.get_user(owner.user)
        if user is None or not user.forward or not user.mobile or user.mobile == inbound.sender:
            return
        text = owner.text if owner.text is not None else inbound.text
        if text is None:
            return
        await self._sms(
            user.mobile,
            f"{inbound.sender}: {text}",
            f"inbound SMS {inbound.id} forwarded to {user.name}'s mobile",
        )

    async def _sms(self, phone: str, text: str, origin: str) -> None:
        """An SMS smsd sends of its own (a forward, a question); a refusal is logged."""
        assert self.submit is not None
        sub = Submission(recipients=(phone,), text=text, channel="smtp", origin=origin)
        try:
            await self.submit(sub, None)
        except Exception as e:
            log.warn("could not send {origin}: {why}", origin=origin, why=str(e))

    async def _later(self, inbound: Inbound, owner: Owner, f: Failure, now: float) -> None:
        assert inbound.id is not None
        why = f.getErrorMessage()
        if now - inbound.received_at > self.settings.expiry:
            log.error(
                "inbound SMS {id} not mailed to {to} in time, given up: {why}",
                id=inbound.id,
                to=owner.address,
                why=why,
            )
            await self.store.settle_inbound(inbound.id, "failed", owner.user, owner.address, why)
            return
        state = await self.store.inbox_state(inbound.id)
        attempts = state["attempts"] if state else 0
        wait = min(RETRY_MAX, RETRY_MIN * 2**attempts)
        log.warn(
            "inbound SMS {id} not mailed to {to} ({why}); again in {wait:.0f} s",
            id=inbound.id,
            to=owner.address,
            why=why,
            wait=wait,
        )
        await self.store.settle_inbound(
            inbound.id, "new", owner.user, owner.address, why, now + wait
        )

    async def _ask(self, inbound: Inbound, conflict: Conflict) -> None:
        """Several people wrote to this phone: ask it to start with #their@address#."""
        assert inbound.id is not None
        why = "several recent writers: " + ", ".join(conflict.addresses)
        if self.submit is not None and self.settings.conflict_text and inbound.sender:
            await self._sms(
                inbound.sender,
                self.settings.conflict_text,
                f"asking whose answer inbound SMS {inbound.id} is",
            )
        await self.store.settle_inbound(inbound.id, "conflict", None, None, why)
