"""SNPP paging (RFC 1861 levels 1-3): a paging system pages a phone as it would a pager.

A pager ID is a phone number, a name from the logged-in user's address book, or
a group of ``[snpp] groups``. SEND answers 250 (or, after 2WAY, ``960 <tag>
<pass code>``) only once the SMS are committed. MSTAtus answers from the
message's state (queued 960, sent 860, delivered 880, failed 750), KTAG cancels
one still queued. Level-3 features SMS has no counterpart for (multiple-choice
responses, read acknowledgements, reply types, NOQUeueing) are answered 550
"not supported" rather than pretended.

Pass codes are an HMAC of the message id under a secret kept in the store, so
they need no column and work on every node.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from protocols import snpp
from smsd import numbers
from smsd.channels.trust import Network, is_trusted
from smsd.config import SnppSection
from smsd.core.submit import Accepted, Refused, Submitter
from smsd.core.users import Directory, account_problem
from smsd.model import State, Submission, User
from smsd.store import Change

log = Logger()

MAX_LEVEL = 11


@attrs.frozen
class SnppContext:
    """What the SNPP channel needs from the rest of smsd (handed in by service.py)."""

    submitter: Submitter
    directory: Directory
    settings: SnppSection
    domain: str
    default_country: str
    trusted_networks: Sequence[Network]
    gateway_ids: frozenset[str]
    groups: dict[str, tuple[str, ...]]  # lower-case name -> normalised numbers
    message: Callable[[int], Deferred[dict[str, Any] | None]]  # the store's view of one
    cancel: Callable[[int], Deferred[tuple[str | None, list[Change]]]]
    secret: Callable[[], Deferred[bytes]]  # the pass-code key
    # Is a gateway up for (number, user, pinned gateway)? None: do not ask.
    reachable: Callable[[str, str | None, str | None], bool] | None = None
    local_zone: datetime.tzinfo = attrs.field(
        factory=lambda: datetime.datetime.now().astimezone().tzinfo
    )


class PassCodes:
    """The pass code of a message tag: 8 digits (Net::SNPP reads them as a number)."""

    def __init__(self, secret: Callable[[], Deferred[bytes]]) -> None:
        self._secret = secret
        self._key: bytes | None = None

    def code(self, tag: int) -> Deferred[str]:
        if self._key is not None:
            return succeed(self._code(self._key, tag))

        def keep(key: bytes) -> str:
            self._key = key
            return self._code(key, tag)

        return self._secret().addCallback(keep)

    @staticmethod
    def _code(key: bytes, tag: int) -> str:
        digest = hmac.new(key, b"snpp-tag:%d" % tag, hashlib.sha256).digest()
        return f"{int.from_bytes(digest[:8], 'big') % 10**8:08d}"

    def check(self, tag: int, given: str) -> Deferred[bool]:
        return self.code(tag).addCallback(lambda code: hmac.compare_digest(code, given))


@attrs.define
class Page:
    """One transaction: what the client said since the last SEND or RESEt."""

    recipients: list[str] = attrs.Factory(list)
    text: str | None = None
    subject: str | None = None
    level: int = 1
    alert: bool = False
    coverage: str | None = None  # a gateway id
    hold: float | None = None
    caller: str | None = None
    two_way: bool = False
    expire_hours: int | None = None


class Reply(Exception):
    """An answer that ends a command early (raised by the checks)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class SnppServer(Protocol, TimeoutMixin):
    """One SNPP session. Commands are taken one at a time: a command that waits for
    the store (LOGIn, SEND, MSTAtus, KTAG) holds back the lines after it."""

    def __init__(self, context: SnppContext, passcodes: PassCodes) -> None:
        self.context = context
        self.settings = context.settings
        self.passcodes = passcodes
        self.lines = snpp.LineBuffer(self.settings.max_text + 64)
        self.pending: deque[bytes | snpp.TooLong] = deque()
        self.busy = False
        self.closing = False
        self.data: snpp.DataReader | None = None  # reading DATA's lines
        self.page = Page()
        self.user: User | None = None
        self.failed_logins = 0
        self.peer = "?"
        self.trusted = False

    # Connection -------------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = getattr(peer, "host", str(peer))
        self.trusted = is_trusted(self.peer, self.context.trusted_networks)
        self.setTimeout(self.settings.idle_timeout)
        self._write(220, f"{self.context.domain} SNPP (RFC 1861) gateway to SMS ready")

    def timeoutConnection(self) -> None:
        self._write(421, "Idle timeout; closing the connection")
        self._close()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.setTimeout(None)
        self.closing = True
        self.pending.clear()

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self.resetTimeout()
        self.pending.extend(self.lines.feed(data))
        self._next()

    def _next(self) -> None:
        while self.pending and not self.busy and not self.closing:
            item = self.pending.popleft()
            if self.data is not None:
                self._data_line(item)
                continue
            if isinstance(item, snpp.TooLong):
                self._write(550, f"Line too long (at most {self.lines.limit} bytes); use DATA")
                continue
            answer = self._answer(item)
            if isinstance(answer, Deferred):
                self.busy = True
                answer.addCallback(self._answered)
                return
            self._send(answer)

    def _answer(self, line: bytes) -> bytes | Deferred[bytes]:
        try:
            return self._command(snpp.parse_command(line.decode("utf-8", "replace")))
        except Reply as r:
            return snpp.reply(r.code, r.text)
        except Exception:
            log.failure("SNPP command from {peer} failed", peer=self.peer)
            return snpp.reply(554, "Failed (technical reason); the session goes on")

    def _answered(self, answer: bytes) -> None:
        self.busy = False
        if not self.closing:
            self._send(answer)
            self._next()

    def _send(self, answer: bytes) -> None:
        self.transport.write(answer)
        if answer.startswith((b"221 ", b"421 ")):
            self._close()

    def _write(self, code: int, text: str) -> None:
        self.transport.write(snpp.reply(code, text))

    def _close(self) -> None:
        self.closing = True
        self.pending.clear()
        self.transport.loseConnection()

    # Commands ---------------------------------------------------------------------

    def _command(self, cmd: snpp.Command) -> bytes | Deferred[bytes]:
        if not cmd.verb:
            raise Reply(500, "Empty command; HELP lists the commands")
        if not cmd.known:
            raise Reply(500, f"Command not implemented: {cmd.verb}")
        handler = getattr(self, f"do_{cmd.verb}" if cmd.verb[0].isalpha() else "do_TWOWAY")
        result = handler(cmd.argument)
        if isinstance(result, Deferred):
            return result.addErrback(_reply_of, self.peer)
        return result

    def do_PAGE(self, argument: str) -> bytes:
        words = argument.split()
        if not words:
            raise Reply(550, "PAGEr needs a pager ID")
        self._check_may_page()
        numbers_, what = self._spaced_number(argument) if len(words) > 1 else ([], "")
        if not numbers_:
            if len(words) > 2:
                raise Reply(550, "PAGEr takes a pager ID and an optional PIN")
            # A PIN after the ID means nothing for SMS; with one, a short code is not taken.
            numbers_, what = self._resolve(words[0], short_codes=len(words) == 1)
        if self.page.two_way and (self.page.recipients or len(numbers_) > 1):
            raise Reply(503, "Already selected a pager: a two-way page goes to one number")
        new = [n for n in numbers_ if n not in self.page.recipients]
        if len(self.page.recipients) + len(new) > self.settings.max_recipients:
            raise Reply(552, f"Maximum entries exceeded: at most {self.settings.max_recipients}")
        self.page.recipients += new
        return snpp.reply(250, f"Pager ID accepted: {what}")

    def do_MESS(self, argument: str) -> bytes:
        if not argument:
            raise Reply(550, "MESSage needs the text")
        self._set_text(argument)
        return snpp.reply(250, "Message OK")

    def do_DATA(self, argument: str) -> bytes:
        if self.page.text is not None:
            raise Reply(503, "Message already entered")
        self.data = snpp.DataReader(self.settings.max_text)
        return snpp.reply(354, "Begin message input; end with <CRLF>'.'<CRLF>")

    def _data_line(self, item: bytes | snpp.TooLong) -> None:
        reader = self.data
        assert reader is not None
        if isinstance(item, snpp.TooLong):
            reader.too_big = True
            return
        if not reader.line(item):
            return
        self.data = None
        if reader.too_big:
            self._write(550, f"Message too long: at most {self.settings.max_text} bytes")
            return
        text = reader.text().strip()
        if not text:
            self._write(550, "Empty message")
            return
        self.page.text = text
        self._write(250, "Message OK")

    def _set_text(self, text: str) -> None:
        if self.page.text is not None:
            raise Reply(503, "Message already entered")
        if len(text.encode()) > self.settings.max_text:
            raise Reply(550, f"Message too long: at most {self.settings.max_text} bytes")
        self.page.text = text

    def do_SUBJ(self, argument: str) -> bytes:
        if not argument:
            raise Reply(550, "SUBJect needs text")
        if self.page.subject is not None:
            raise Reply(503, "Subject already entered")
        self.page.subject = argument
        return snpp.reply(250, "Subject OK")

    def do_RESE(self, argument: str) -> bytes:
        self.page = Page()
        return snpp.reply(250, "Reset OK")

    def do_QUIT(self, argument: str) -> bytes:
        return snpp.reply(221, "Goodbye")

    def do_HELP(self, argument: str) -> bytes:
        lines = [f"Level {level}: {text}" for level, text in snpp.COMMANDS.values()]
        return snpp.reply_lines(214, lines, (250, "End of help"))

    def do_LOGI(self, argument: str) -> Deferred[bytes]:
        words = argument.split()
        if not 1 <= len(words) <= 2:
            raise Reply(550, "LOGIn takes a user name and a password")
        name, password = words[0], words[1] if len(words) == 2 else ""
        d = self.context.directory.authenticate(name, password)
        return d.addCallbacks(self._logged_in, self._login_failed, errbackArgs=(name,))

    def _logged_in(self, user: User) -> bytes:
        problem = account_problem(user)
        if problem is not None:
            return snpp.reply(550, f"{user.name}: {problem}")
        self.user = user
        return snpp.reply(250, f"Login accepted: {user.name}")

    def _login_failed(self, failure: Failure, name: str) -> bytes:
        failure.trap(UnauthorizedLogin)
        self.failed_logins += 1
        log.info("SNPP login as {name!r} from {peer} refused", name=name, peer=self.peer)
        if self.failed_logins >= self.settings.login_failures:
            return snpp.reply(421, "Too many failed logins; closing the connection")
        return snpp.reply(550, "Login incorrect")

    def do_LEVE(self, argument: str) -> bytes:
        level = _integer(argument, 0, MAX_LEVEL, "LEVEl takes a service level from 0 to 11")
        self.page.level = level
        return snpp.reply(250, "Level 0: ahead of the queue" if level == 0 else f"Level {level}")

    def do_ALER(self, argument: str) -> bytes:
        self.page.alert = _integer(argument, 0, 1, "ALERt takes 0 or 1") == 1
        if not self.page.alert:
            return snpp.reply(250, "Alert off")
        if self.settings.alert_flash:
            return snpp.reply(250, "Alert on: a flash SMS")
        return snpp.reply(250, "Alert noted; this site sends it as a normal SMS")

    def do_COVE(self, argument: str) -> bytes:
        if argument not in self.context.gateway_ids:
            raise Reply(550, f"Unknown coverage area {argument!r}")
        self.page.coverage = argument
        return snpp.reply(250, f"Coverage: gateway {argument}")

    def do_HOLD(self, argument: str) -> bytes:
        try:
            when = snpp.parse_hold(argument, self.context.local_zone)
        except snpp.HoldError as e:
            raise Reply(550, f"Invalid delivery date/time: {e}") from None
        if when <= self.context.submitter.reactor.seconds():
            raise Reply(550, "Invalid delivery date/time: it is in the past")
        self.page.hold = when
        return snpp.reply(250, f"Message will be sent at {_utc(when)} UTC")

    def do_CALL(self, argument: str) -> bytes:
        if not argument:
            raise Reply(550, "CALLerid needs a caller ID")
        if self.settings.caller == "sender":
            try:
                numbers.parse_sender(argument, self._country())
            except numbers.NumberError as e:
                raise Reply(550, f"Invalid caller ID: {e}") from None
        self.page.caller = argument
        return snpp.reply(250, "Caller ID OK")

    def do_TWOWAY(self, argument: str) -> bytes:
        if self.page.recipients:
            raise Reply(550, "2WAY must come before PAGEr")
        self.page.two_way = True
        return snpp.reply(250, "Two-way on: SEND answers with a message tag and pass code")

    def do_PING(self, argument: str) -> bytes:
        if not argument or len(argument.split()) != 1:
            raise Reply(550, "PING takes a pager ID")
        _, what = self._resolve(argument)
        return snpp.reply(250, f"Valid pager ID: {what}")

    def do_EXPT(self, argument: str) -> bytes:
        hours = _integer(argument, 1, 24 * 365, "EXPTag takes hours from 1 to 8760")
        self.page.expire_hours = hours
        return snpp.reply(250, f"Message expires after {hours} hours")

    def do_NOQU(self, argument: str) -> bytes:
        raise Reply(550, "Not supported: SMS is store and forward, every page is queued")

    def do_ACKR(self, argument: str) -> bytes:
        if _integer(argument, 0, 1, "ACKRead takes 0 or 1") == 0:
            return snpp.reply(250, "No read acknowledgement")
        raise Reply(550, "Not supported: SMS has no read receipts (MSTAtus tells delivery)")

    def do_RTYP(self, argument: str) -> bytes:
        raise Reply(550, "Not supported: replies to an SMS go to the user's mailbox")

    def do_MCRE(self, argument: str) -> bytes:
        raise Reply(550, "Not supported: SMS has no multiple-choice responses")

    def do_SEND(self, argument: str) -> Deferred[bytes]:
        page = self.page
        if not page.recipients:
            raise Reply(503, "Error, pager ID needed")
        if page.text is None:
            raise Reply(503, "Error, message needed")
        self._check_may_page()
        reachable = self.context.reachable
        if reachable is not None and self.settings.when_down == "refuse":
            name = self.user.name if self.user else None
            down = [n for n in page.recipients if not reachable(n, name, page.coverage)]
            if down:
                raise Reply(554, f"No gateway is up for {', '.join(down)}; nothing queued")
        d = self.context.submitter.submit(
            self._submission(page),
            self.user,
            maxmsgs=self.settings.maxmsgs,
            truncate=self.settings.truncate,
        )
        return d.addCallback(self._queued, page)

    def _submission(self, page: Page) -> Submission:
        text = page.text or ""
        if page.subject:
            text = f"{page.subject}: {text}"
        sender = None
        if page.caller is not None:
            if self.settings.caller == "sender":
                sender = page.caller
            else:
                text = f"From {page.caller}: {text}"
        who = f" as {self.user.name}" if self.user else ""
        return Submission(
            recipients=tuple(page.recipients),
            text=text,
            sender=sender,
            flash=page.alert and self.settings.alert_flash,
            not_before=page.hold,
            priority=page.level == 0,
            gateway=page.coverage,
            validity=page.expire_hours * 3600.0 if page.expire_hours else None,
            channel="snpp",
            origin=f"snpp from {self.peer}{who}",
        )

    def _queued(self, accepted: list[Accepted], page: Page) -> Deferred[bytes] | bytes:
        if self.page is page:
            self.page = Page()
        ids = ", ".join(str(a.id) for a in accepted)  # the traffic log has each SMS
        if not page.two_way:
            return snpp.reply(250, f"Message queued for delivery (id {ids})")
        tag = accepted[0].id
        return self.passcodes.code(tag).addCallback(
            lambda code: snpp.reply(960, f"{tag} {code} OK, Message QUEUED for Delivery")
        )

    def do_MSTA(self, argument: str) -> Deferred[bytes]:
        tag, code = self._tag(argument, "MSTAtus")
        d = self._checked(tag, code).addCallback(lambda _: self.context.message(tag))
        return d.addCallback(self._status, tag)

    def _status(self, message: dict[str, Any] | None, tag: int) -> bytes:
        if message is None:  # purged since
            raise Reply(550, "Invalid message tag or pass code")
        state = State(message["state"])
        when = f"{_stamp(message['updated_at'])}+0000"
        if state in (State.QUEUED, State.SENDING):
            due = message.get("due_at") or 0.0
            words = f"Queued until {_utc(due)} UTC" if due > message["updated_at"] else "Queued"
            return snpp.reply(960, f"{tag} {when} {words}")
        if state is State.SENT:
            return snpp.reply(860, f"{tag} {when} Sent to the network, no delivery report yet")
        if state is State.DELIVERED:
            return snpp.reply(880, f"{tag} {when} Delivered")
        why = message.get("error") or message.get("status") or state.value
        return snpp.reply(750, f"{tag} {when} {state.value.capitalize()}: {why}")

    def do_KTAG(self, argument: str) -> Deferred[bytes]:
        tag, code = self._tag(argument, "KTAG")
        d = self._checked(tag, code).addCallback(lambda _: self.context.cancel(tag))
        return d.addCallback(self._cancelled)

    def _cancelled(self, outcome: tuple[str | None, list[Change]]) -> bytes:
        before, _ = outcome
        if before is None:
            raise Reply(550, "Invalid message tag or pass code")
        if before != State.QUEUED.value:
            raise Reply(550, f"Too late to cancel: the message is {before}")
        return snpp.reply(250, "Message cancelled")

    # Checks -----------------------------------------------------------------------

    def _check_may_page(self) -> None:
        if self.user is None and not (self.trusted or self.settings.anonymous):
            raise Reply(550, "Log in first: LOGIn <user> <password>")

    def _country(self) -> str:
        return (self.user.default_country if self.user else None) or self.context.default_country

    def _resolve(self, pager: str, short_codes: bool = True) -> tuple[list[str], str]:
        """The numbers a pager ID stands for, and how to say so."""
        key = pager.casefold()
        if self.user is not None:
            for name, number in self.user.contacts:
                if name.casefold() == key:
                    return [number], f"{name} ({number})"
        group = self.context.groups.get(key)
        if group is not None:
            return list(group), f"group {pager} ({len(group)} numbers)"
        try:
            number = numbers.normalise(pager, self._country(), short_codes=short_codes)
        except numbers.NumberError as e:
            raise Reply(550, f"Invalid pager ID {pager!r}: {e}") from None
        return [number], number

    def _spaced_number(self, argument: str) -> tuple[list[str], str]:
        """ "(555) 765-4321" is one number, not a pager ID and a PIN; a short code is
        never read from words this way ("555 1234": pager 555, PIN 1234, and 550)."""
        try:
            number = numbers.normalise(argument, self._country(), short_codes=False)
        except numbers.NumberError:
            return [], ""
        return [number], number

    def _tag(self, argument: str, command: str) -> tuple[int, str]:
        words = argument.split()
        if len(words) != 2 or not words[0].isdigit() or len(words[0]) > 18:
            raise Reply(550, f"{command} takes a message tag and a pass code")
        return int(words[0]), words[1]

    def _checked(self, tag: int, code: str) -> Deferred[None]:
        def check(ok: bool) -> None:
            if not ok:
                raise Reply(550, "Invalid message tag or pass code")

        return self.passcodes.check(tag, code).addCallback(check)


def _reply_of(failure: Failure, peer: str) -> bytes:
    """The SNPP answer for what went wrong while waiting for the store."""
    if failure.check(Reply):
        return snpp.reply(failure.value.code, failure.value.text)
    if failure.check(Refused):
        e: Refused = failure.value
        code = 554 if e.kind in (Refused.QUOTA, Refused.UNAVAILABLE) else 550
        return snpp.reply(code, e.reason)
    log.failure("SNPP command from {peer} failed", failure, peer=peer)
    return snpp.reply(554, "Failed (technical reason); try again later")


def _integer(argument: str, lo: int, hi: int, usage: str) -> int:
    if not argument.isdigit() or not lo <= int(argument) <= hi:
        raise Reply(550, usage)
    return int(argument)


def _utc(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _stamp(when: float) -> str:
    """RFC 1861's YYMMDDHHMMSS, in GMT."""
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%y%m%d%H%M%S")


class SnppFactory(Factory):
    def __init__(self, context: SnppContext) -> None:
        self.context = context
        self.passcodes = PassCodes(context.secret)

    def buildProtocol(self, addr: Any) -> SnppServer:
        protocol = SnppServer(self.context, self.passcodes)
        protocol.factory = self
        return protocol
