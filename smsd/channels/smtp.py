"""The SMTP channel: mail to ``+15551234567@sms.example.org`` becomes an SMS.

Staff write an SMS as an e-mail: each recipient whose domain is ``[smsd]
domain`` is a phone number (international, or national under the default
country, with or without separators), and so is Outlook's quoted form
``"sms:+15551234567?maxmsgs=3"@anything``. The text is the mail's plain-text
body (its HTML turned to text when there is none), without the signature; an
empty body sends the subject.

The server is Twisted's ESMTP. A mail is answered 250 only once its messages
are committed, so a sending mail server that hears 250 can forget the mail;
a store that cannot commit answers 451 and the server tries again later.
What the Submitter refuses is refused in SMTP's own words: a bad number 550
5.1.1 at RCPT, a text too long for maxmsgs or a sender ID not allowed 550
5.7.1 / 5.6.0 at the end of DATA, a month's quota 552 5.2.2.

Clients from ``[smsd] trusted_networks`` (the organisation's own mail server)
may send without logging in, as the smsd user whose address the envelope
sender is (charged, with their sender IDs); a sender who is no user is
refused unless ``[smtp] anonymous``. Everyone else logs in with AUTH
PLAIN or LOGIN as an smsd user, after STARTTLS (``[smtp] tls_cert``): a
password sent in the clear is refused with 538 5.7.11 unless
``auth_without_tls``. Without AUTH they are told 530 5.7.0.
"""

from __future__ import annotations

import email.policy
import html.parser
import re
from collections.abc import Callable, Sequence
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from typing import Any

import attrs
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, ensureDeferred, fail
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.mail.imap4 import LOGINCredentials, PLAINCredentials
from twisted.python.failure import Failure
from zope.interface import implementer

from smsd import numbers
from smsd.channels.trust import Network, is_trusted
from smsd.core.submit import Accepted, Refused, Submitter
from smsd.core.users import Directory, UserChecker, account_problem
from smsd.model import Submission, User

log = Logger()

_SEPARATORS = re.compile(r"[\s\-./()]")
_MAXMSGS = re.compile(r"(?:^|&)maxmsgs=(\d{1,3})(?:&|$)", re.IGNORECASE)


class AddressError(ValueError):
    """A recipient that is no SMS address (``relay``: not ours at all, 550; else a
    malformed one, 553); the words go into the answer."""

    def __init__(self, words: str, *, relay: bool = False) -> None:
        super().__init__(words)
        self.relay = relay


@attrs.frozen
class Recipient:
    number: str  # normalised: +E.164 or a short code
    maxmsgs: int | None  # from the sms: form, None: the channel's default


def parse_recipient(local: str, domain: str, our_domain: str, default_country: str) -> Recipient:
    """The phone number (and maxmsgs) an address names, or AddressError."""
    local = local.strip()
    if len(local) > 1 and local[0] == local[-1] == '"':
        local = local[1:-1]
    maxmsgs = None
    if local[:4].lower() == "sms:":  # Outlook's form, at any domain
        local, _, query = local[4:].partition("?")
        if query:
            m = _MAXMSGS.search(query)
            if m is None:
                raise AddressError(f"unknown option in {query!r} (maxmsgs=N is known)")
            maxmsgs = int(m.group(1))
            if not 1 <= maxmsgs <= 128:
                raise AddressError(f"maxmsgs={maxmsgs}: must be 1 to 128")
    elif domain.lower() != our_domain.lower():
        raise AddressError(
            f"relaying denied: only +number@{our_domain} is an SMS address", relay=True
        )
    raw = _SEPARATORS.sub("", local)
    try:
        number = numbers.normalise(raw, default_country)
    except numbers.NumberError as e:
        raise AddressError(f"{local!r} is no phone number: {e}") from None
    return Recipient(number, maxmsgs)


class _Text(html.parser.HTMLParser):
    """The text of an HTML body: what a mail client that shows no HTML would show."""

    _BREAKS = frozenset({"br", "p", "div", "li", "tr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("style", "script", "head"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


_QUOTE_HEAD = re.compile(r"^(On .{3,200} wrote:|Am .{3,200} schrieb .{1,100}:)$")
_ORIGINAL = re.compile(r"^-{2,}\s*(Original Message|Ursprüngliche Nachricht)\s*-{2,}$", re.I)


def body_text(mail: Message) -> str:
    """The plain body (the HTML one turned to text if there is no plain part), any
    charset and transfer encoding; attachments are not the text."""
    plain = html = None
    for part in mail.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and plain is None:
            plain = part
        elif kind == "text/html" and html is None:
            html = part
    body = plain or html
    if body is None:
        return ""
    payload = body.get_payload(decode=True)
    raw = payload if isinstance(payload, bytes) else b""
    try:
        content = raw.decode(body.get_content_charset() or "us-ascii", "replace")
    except LookupError:  # a charset Python does not know
        content = raw.decode("utf-8", "replace")
    if body is html:
        parser = _Text()
        parser.feed(content)
        content = "".join(parser.parts)
    return content


def header_text(mail: Message, name: str) -> str:
    """A header's words, RFC 2047 encoded-words decoded."""
    value = mail.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (LookupError, ValueError, UnicodeError):
        return str(value)


def clean(text: str) -> str:
    """What of a mail body belongs in an SMS: no signature, no quoted mail, no runs of
    white space. (An SMS is short: what the sender quoted is not what they wrote.)"""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        stripped = line.strip()
        if line == "-- " or _ORIGINAL.match(stripped):
            break  # the signature, or the mail this one answers, and all after it
        if stripped.startswith(">"):
            continue
        kept.append(" ".join(stripped.split()))
    while kept and not kept[-1]:
        kept.pop()
    while kept and _QUOTE_HEAD.match(kept[-1]):
        kept.pop()  # "On Monday, Bob wrote:" above a quote just dropped
        while kept and not kept[-1]:
            kept.pop()
    text = "\n".join(kept).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


def text_of(mail: Message, text_from: str = "body") -> str:
    """The SMS text a mail carries: ``body`` (its subject if the body is empty),
    ``subject``, or ``both`` ("subject: body")."""
    subject = " ".join(header_text(mail, "Subject").split())
    if text_from == "subject":
        return subject
    body = clean(body_text(mail))
    if text_from == "both" and subject and body:
        return f"{subject}: {body}"
    return body or subject


@attrs.frozen
class Batch:
    """The 2sms body: who sends (``id``, ``password``), what, and to which numbers."""

    user: str
    password: str
    text: str
    numbers: tuple[str, ...]


def parse_batch(body: str) -> Batch:
    """``id:`` / ``password:`` / ``message:`` (the text, on as many lines as it takes),
    then one number a line, then ``end``; AddressError (the words of a 554) if not."""
    fields: dict[str, str] = {}
    text: list[str] = []
    numbers: list[str] = []
    part = "head"
    for n, raw in enumerate(body.replace("\r\n", "\n").split("\n"), 1):
        line = raw.strip()
        key, sep, value = line.partition(":")
        if part == "head":
            if not line:
                continue
            if not sep or key.lower() not in ("id", "password", "message"):
                raise AddressError(f"line {n}: expected id:, password: or message:")
            fields[key.lower()] = value.strip()
            if key.lower() == "message":
                part = "text"
                if value.strip():
                    text.append(value.strip())
        elif line.lower() == "end":
            part = "end"
            break
        elif part == "text" and not _looks_like_number(line):
            text.append(line)
        elif line:
            if not _looks_like_number(line):
                raise AddressError(f"line {n}: {line[:40]!r} is no phone number")
            part = "numbers"
            numbers.append(line)
    missing = [k for k in ("id", "password", "message") if k not in fields]
    if missing:
        raise AddressError(f"missing {', '.join(m + ':' for m in missing)}")
    if part != "end":
        raise AddressError("no end line after the numbers")
    if not numbers:
        raise AddressError("no numbers between the message and end")
    message = "\n".join(text).strip()
    if not message:
        raise AddressError("the message is empty")
    return Batch(fields["id"], fields["password"], message, tuple(numbers))


def _looks_like_number(line: str) -> bool:
    return bool(re.fullmatch(r"\+?[\d\s\-./()]{3,30}", line)) and any(c.isdigit() for c in line)


@attrs.frozen
class SmtpContext:
    """What the SMTP channel needs from the rest of smsd (handed in by service.py)."""

    submitter: Submitter
    directory: Directory  # the users: by address, by name, AUTH and the 2sms id/password
    domain: str
    default_country: str
    trusted_networks: Sequence[Network]
    maxmsgs: int = 10
    truncate: bool = True
    max_recipients: int = 100
    max_size: int = 1024 * 1024
    tls: Any = None  # an OpenSSL context factory for STARTTLS; None: no STARTTLS
    auth_without_tls: bool = False
    anonymous: bool = False  # trusted networks: a sender who is no user may send (uncharged)
    batch_address: str = ""  # mail to it carries the 2sms body; "": off
    text_from: str = "body"  # "body" (the subject if it is empty), "subject" or "both"


class _Transaction:
    """One mail: its sender, its numbers, its lines, and the one submission for all."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.user: User | None = None  # who sends, when the sender address is a user's
        self.batch = False  # sent to the batch address: the body says who and to whom
        self.stranger = False  # the sender is no user's address (and anonymous is off)
        self.recipients: list[Recipient] = []
        self.lines: list[bytes] = []
        self.size = 0
        self.too_big = False
        self.waiting: list[Deferred[Any]] = []  # one per recipient, all told the same
        self.outcome: Any = None  # the accepted list or the failure, once known

    def settle(self, outcome: Any) -> None:
        self.outcome = outcome
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            _settle(d, outcome)


def _settle(d: Deferred[Any], outcome: Any) -> None:
    if isinstance(outcome, Failure):
        d.errback(outcome)
    else:
        d.callback(outcome)


@implementer(smtp.IMessage)
class _Message:
    """What Twisted makes per recipient; only the first keeps the lines, all share the answer."""

    def __init__(self, delivery: MailToSms, transaction: _Transaction, first: bool) -> None:
        self.delivery = delivery
        self.transaction = transaction
        self.first = first

    def lineReceived(self, line: bytes) -> None:
        t = self.transaction
        if not self.first or t.too_big:
            return
        t.size += len(line) + 2
        if t.size > self.delivery.context.max_size:
            t.too_big = True
            t.lines = []
            return
        t.lines.append(line)

    def eomReceived(self) -> Deferred[Any]:
        """The one submission of the mail, started by the first recipient's message."""
        t = self.transaction
        d: Deferred[Any] = Deferred()
        if t.outcome is not None:
            _settle(d, t.outcome)
            return d
        t.waiting.append(d)
        if len(t.waiting) == 1:
            self.delivery.submit(t).addBoth(t.settle)
        return d

    def connectionLost(self) -> None:
        self.transaction.lines = []


@implementer(smtp.IMessageDelivery)
class MailToSms:
    """The mail of one SMTP connection, turned into submissions."""

    def __init__(self, context: SmtpContext, peer: str, user: User | None = None) -> None:
        self.context = context
        self.peer = peer
        self.trusted = is_trusted(peer, context.trusted_networks)
        self.user = user  # logged in with AUTH: every mail of the connection is theirs
        self.transaction: _Transaction | None = None

    def receivedHeader(
        self, helo: tuple[bytes, bytes], origin: smtp.Address, recipients: Any
    ) -> bytes:
        return b"Received: from " + helo[0] + b" by smsd"

    def validateFrom(self, helo: tuple[bytes, bytes], origin: smtp.Address) -> Any:
        """From a trusted network, a sender address that is an smsd user's sends as that
        user (their quota, sender IDs, dedicated number); any other sends anonymously."""
        address = str(origin)
        if self.user is not None:
            self.transaction = _Transaction(address)
            self.transaction.user = self.user
            return origin
        if not self.trusted:
            raise smtp.SMTPServerError(530, "5.7.0 Authentication required")
        self.transaction = _Transaction(address)
        transaction = self.transaction
        if not address:
            transaction.stranger = not self.context.anonymous
            return origin

        def found(user: User | None) -> smtp.Address:
            # A stranger may still mail the batch address (its body names the user),
            # so the refusal waits for the recipients.
            transaction.stranger = user is None and not self.context.anonymous
            if user is not None:
                problem = account_problem(user)
                if problem is not None:
                    raise smtp.SMTPBadSender(origin, 550, f"5.7.1 {user.name}: {problem}")
                transaction.user = user
            return origin

        return self.context.directory.by_email(address).addCallback(found)

    def validateTo(self, user: smtp.User) -> Any:
        t = self.transaction
        if t is None:
            raise smtp.SMTPBadRcpt(user, 503, "5.5.1 MAIL FROM first")
        if len(t.recipients) >= self.context.max_recipients:
            raise smtp.SMTPBadRcpt(user, 452, "4.5.3 Too many recipients")
        address = user.dest
        if self.context.batch_address and str(address).lower() == self.context.batch_address:
            first = not t.recipients and not t.batch
            t.batch = True
            return lambda: _Message(self, t, first)
        if t.stranger:
            who = t.origin or "the null sender"
            raise smtp.SMTPBadRcpt(
                user, 550, f"5.7.1 {who} is no smsd user's address: who would pay?"
            )
        try:
            recipient = parse_recipient(
                address.local.decode("utf-8", "replace"),
                address.domain.decode("utf-8", "replace"),
                self.context.domain,
                self.context.default_country,
            )
        except AddressError as e:
            if e.relay:
                raise smtp.SMTPBadRcpt(user, 550, f"5.7.1 {e}") from None
            raise smtp.SMTPBadRcpt(user, 553, f"5.1.3 {e}") from None
        first = not t.recipients and not t.batch
        t.recipients.append(recipient)
        return lambda: _Message(self, t, first)

    def submit(self, t: _Transaction) -> Deferred[list[Accepted]]:
        """Queue the mail's SMS: fires once committed, fails with SmtpRefusal."""
        if t.too_big:
            return fail(SmtpRefusal(552, "5.3.4 Message too big for SMS"))
        try:
            # compat32: the modern policy parses every header into objects, which
            # costs 1.4 ms a mail against 0.1 (measured); the few headers used are
            # decoded by hand (header_text).
            mail = BytesParser(policy=email.policy.compat32).parsebytes(b"\r\n".join(t.lines))
            if t.batch:
                return ensureDeferred(self._batch(t, mail))
            text = text_of(mail, self.context.text_from)
        except Exception:
            log.failure("a mail from {origin} could not be read", origin=t.origin)
            return fail(SmtpRefusal(554, "5.6.0 The mail could not be read"))
        if not text:
            return fail(SmtpRefusal(554, "5.6.0 No text: the body and the subject are empty"))
        numbers_ = [r.number for r in t.recipients]
        asked = [r.maxmsgs for r in t.recipients if r.maxmsgs is not None]
        maxmsgs = min(asked) if asked else self.context.maxmsgs
        d = self.context.submitter.submit(
            self._submission(t, mail, numbers_, text),
            t.user,
            maxmsgs=maxmsgs,
            truncate=self.context.truncate,
        )
        return d.addErrback(_refusal)

    def _submission(
        self, t: _Transaction, mail: Message, recipients: Sequence[str], text: str
    ) -> Submission:
        """What a mail asks for; its origin names the mail, so that replies and reports
        can be threaded under it (``owners.mail_thread`` reads it back)."""
        message_id = str(mail.get("Message-ID", "")).strip() or "(no Message-ID)"
        return Submission(
            recipients=tuple(dict.fromkeys(recipients)),
            text=text,
            channel="smtp",
            reply_to=t.origin or None,
            origin=f"mail {message_id} from <{t.origin}> via {self.peer}",
        )

    async def _batch(self, t: _Transaction, mail: Message) -> list[Accepted]:
        """The 2sms form: the body names the account (checked like AUTH) and the numbers."""
        try:
            batch = parse_batch(clean(body_text(mail)))
            numbers_ = [
                parse_recipient(
                    n, self.context.domain, self.context.domain, self.context.default_country
                ).number
                for n in batch.numbers
            ]
        except AddressError as e:
            raise SmtpRefusal(554, f"5.6.0 {e}") from None
        numbers_ += [r.number for r in t.recipients]
        try:
            user = await self.context.directory.authenticate(batch.user, batch.password)
        except UnauthorizedLogin:
            raise SmtpRefusal(550, "5.7.8 wrong id or password") from None
        problem = account_problem(user)
        if problem is not None:
            raise SmtpRefusal(550, f"5.7.1 {user.name}: {problem}")
        try:
            return await self.context.submitter.submit(
                self._submission(t, mail, numbers_, batch.text),
                user,
                maxmsgs=self.context.maxmsgs,
                truncate=self.context.truncate,
            )
        except Exception:
            raise _refusal(Failure()).value from None


class SmtpRefusal(Exception):
    """The answer to a mail that is not queued, with its SMTP code."""

    def __init__(self, code: int, words: str) -> None:
        super().__init__(words)
        self.code = code
        self.words = words


def _refusal(f: Failure) -> Failure:
    if f.check(Refused):
        e: Refused = f.value
        if e.kind == Refused.QUOTA:
            return Failure(SmtpRefusal(552, f"5.2.2 {e.reason}"))
        if e.kind == Refused.FORBIDDEN:
            return Failure(SmtpRefusal(550, f"5.7.1 {e.reason}"))
        if e.kind == Refused.UNAVAILABLE:
            return Failure(SmtpRefusal(451, f"4.3.0 {e.reason}; try again later"))
        return Failure(SmtpRefusal(550, f"5.6.0 {e.reason}"))
    if f.check(SmtpRefusal):
        return f
    log.failure("a mail could not be queued", f)
    return Failure(SmtpRefusal(451, "4.3.0 The queue cannot take messages now; try again later"))


class SmsSmtp(smtp.ESMTP):
    """Twisted's ESMTP with answers in SMTP's words for what the Submitter decides."""

    def __init__(self, context: SmtpContext) -> None:
        super().__init__(chal={b"PLAIN": PLAINCredentials, b"LOGIN": LOGINCredentials})
        self.context = context
        self.host = context.domain.encode("idna")
        self.ctx = context.tls

    def connectionMade(self) -> None:
        peer = self.transport.getPeer().host
        self.delivery = MailToSms(self.context, peer)
        self.portal = Portal(_Realm(self.context, peer), [UserChecker(self.context.directory)])
        super().connectionMade()

    auth_failures = 0

    def _ebAuthenticated(self, reason: Failure) -> None:
        """Three wrong passwords on one connection end it: no guessing at line speed."""
        super()._ebAuthenticated(reason)
        self.auth_failures += 1
        if self.auth_failures >= 3:
            self.sendCode(421, b"4.7.0 Too many failed logins")
            self.transport.loseConnection()

    def _auth_allowed(self) -> bool:
        return bool(self.startedTLS or self.delivery.trusted or self.context.auth_without_tls)

    def extensions(self) -> dict[bytes, Any]:
        """AUTH is offered only where it will be accepted (after STARTTLS, as a rule)."""
        ext = super().extensions()
        if not self._auth_allowed():
            ext.pop(b"AUTH", None)
        return ext

    def ext_AUTH(self, rest: bytes) -> None:
        """AUTH only where the password cannot be read on the way (RFC 4954 4: 538)."""
        if not self._auth_allowed():
            self.sendCode(538, b"5.7.11 Encryption required: STARTTLS first")
            return
        super().ext_AUTH(rest)

    def greeting(self) -> bytes:
        return self.host + b" smsd ESMTP: mail to +number@" + self.host + b" becomes an SMS"

    def _messageHandled(self, resultList: list[tuple[bool, Any]]) -> None:
        """After DATA: 250 once committed, else the first refusal's own code and words.

        (Twisted answers every failure with a bare 550 and logs a traceback; this
        replaces its private method, which has kept its name and shape since 2003.)"""
        for ok, result in resultList:
            if not ok:
                refusal = result.value if isinstance(result.value, SmtpRefusal) else None
                if refusal is None:
                    log.failure("a mail could not be handled", result)
                    self.sendCode(451, b"4.3.0 Temporary failure; try again later")
                else:
                    self.sendCode(refusal.code, refusal.words.encode("utf-8", "replace"))
                return
        accepted = resultList[0][1] if resultList else []
        ids = ", ".join(str(a.id) for a in accepted)
        self.sendCode(250, f"2.0.0 Queued as SMS {ids}".encode())


@implementer(IRealm)
class _Realm:
    """An authenticated user's connection: MailToSms bound to that user."""

    def __init__(self, context: SmtpContext, peer: str) -> None:
        self.context = context
        self.peer = peer

    def requestAvatar(self, avatar_id: bytes, mind: Any, *interfaces: Any) -> Deferred[Any]:
        if smtp.IMessageDelivery not in interfaces:
            raise NotImplementedError("only IMessageDelivery")
        name = avatar_id.decode()

        def found(user: User | None) -> tuple[Any, MailToSms, Callable[[], None]]:
            if user is None:
                raise UnauthorizedLogin(f"no user {name!r}")
            delivery = MailToSms(self.context, self.peer, user)
            return smtp.IMessageDelivery, delivery, lambda: None

        return self.context.directory.get(name).addCallback(found)


class SmtpFactory(Factory):
    def __init__(self, context: SmtpContext) -> None:
        self.context = context

    def buildProtocol(self, addr: Any) -> SmsSmtp:
        protocol = SmsSmtp(self.context)
        protocol.factory = self
        return protocol
