"""Submission -> checked, normalised, segmented messages committed to the outbox.

Every channel calls ``Submitter.submit`` and answers its client only when the
returned Deferred fires: by then the messages are committed. A submission is
all or nothing: one bad number refuses the whole request (and says which
numbers), so a client never has to work out what was queued.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from smsd import numbers, text
from smsd.core.routing import Router
from smsd.core.users import account_problem
from smsd.model import Message, OutPart, SenderPolicy, Submission, User
from smsd.store import Added, Charge, Claim, NewMessage, QuotaExceeded

if TYPE_CHECKING:
    from smsd.config import Config

log = Logger()

MAX_MAXMSGS = 128
PRIORITY_LEAD = 86400.0


class Refused(Exception):
    """A submission refused; ``kind`` says which class of error, for the channel's code."""

    BAD_REQUEST = "bad_request"  # HTTP 400, SMTP 550, SNPP 550, SIP 400/484
    FORBIDDEN = "forbidden"  # 403: rights, sender ID, expired account
    QUOTA = "quota"  # 403: monthly limit
    UNAVAILABLE = "unavailable"  # 503: store trouble

    def __init__(self, kind: str, reason: str, recipients: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.recipients = recipients or {}  # raw number -> why it was refused

    def __reduce__(self) -> tuple[Any, ...]:  # it crosses to HTTP worker processes
        return (Refused, (self.kind, self.reason, self.recipients))


@attrs.frozen
class Accepted:
    recipient: str  # normalised
    id: int
    parts: int
    duplicate: bool = False  # the client's id was seen before; nothing new was queued


class Taker(Protocol):
    """The local dispatcher, seen from the Submitter: messages that can go at once
    are leased in the same commit that stores them, and handed over directly."""

    def offer(self) -> Claim | None: ...

    def take(self, messages: list[Message], claim: Claim) -> None: ...


@attrs.frozen
class SubmitSettings:
    default_country: str = "US"
    validity: float = 5 * 86400
    transliterate: bool = False
    ref16: bool = False
    gateway_ids: Collection[str] = ()
    max_recipients: int = 1000

    @classmethod
    def from_config(cls, config: Config) -> SubmitSettings:
        """What every Submitter (the daemon's, an HTTP worker's, smsd-admin's) takes."""
        return cls(
            default_country=config.smsd.default_country,
            validity=config.dispatch.validity,
            transliterate=config.text.transliterate,
            ref16=config.text.ref16,
            gateway_ids=frozenset(config.gateway_ids()),
            max_recipients=config.http.max_recipients,
        )


Remote = Callable[
    [list[tuple[list[NewMessage], Charge | None]]], Deferred[list[list[Accepted] | Refused]]
]


class Submitter:
    def __init__(
        self,
        store: Any,
        settings: SubmitSettings,
        reactor: Any,
        committed: Callable[[], None] = lambda: None,
        router: Router | None = None,
        taker: Taker | None = None,
        remote: Remote | None = None,
    ) -> None:
        self.store = store
        # In an HTTP worker process: batches go to the main process, which commits them.
        self.remote = remote
        self.router = router  # gives each message its route key
        self.taker = taker  # the local dispatcher, which may take messages as they commit
        self.settings = settings
        self.reactor = reactor
        self.committed = committed  # wakes the dispatcher
        self._ref = random.randrange(0x10000)
        self._pending: list[tuple[list[NewMessage], Charge | None, Deferred[list[Accepted]]]] = []
        self._flush_call: Any = None
        self._in_commit = 0  # batches sent to the store (or the main process), not yet answered

    def submit(
        self,
        sub: Submission,
        user: User | None,
        *,
        maxmsgs: int = 10,
        truncate: bool = True,
    ) -> Deferred[list[Accepted]]:
        """Check and queue: one Accepted per distinct recipient, or a Refused failure.

        Submissions made during one reactor turn go to the store as one
        operation: under load that is tens of requests a commit.
        """
        try:
            messages, charge = self.prepare(sub, user, maxmsgs=maxmsgs, truncate=truncate)
        except Refused as e:
            return fail(e)
        return self.queue_prepared(messages, charge)

    def busy(self) -> bool:
        """Submissions waiting for their batch to be committed."""
        return bool(self._pending) or self._in_commit > 0

    def queue_prepared(
        self, messages: list[NewMessage], charge: Charge | None
    ) -> Deferred[list[Accepted]]:
        """Queue what ``prepare`` made (here or in an HTTP worker process)."""
        d: Deferred[list[Accepted]] = Deferred()
        self._pending.append((messages, charge, d))
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._flush)
        return d

    def _flush(self) -> None:
        self._flush_call = None
        batch, self._pending = self._pending, []
        self._in_commit += 1
        if self.remote is not None:
            d = self.remote([(messages, charge) for messages, charge, _ in batch])
            d.addCallbacks(
                self._answered, self._failed, callbackArgs=(batch,), errbackArgs=(batch, None)
            )
            return
        claim = self.taker.offer() if self.taker is not None else None
        d = self.store.add_batch([(messages, charge) for messages, charge, _ in batch], claim)
        d.addCallbacks(
            self._added, self._failed, callbackArgs=(batch, claim), errbackArgs=(batch, claim)
        )

    def _added(
        self,
        added: tuple[list[list[Added] | QuotaExceeded], list[Message]],
        batch: list[Any],
        claim: Claim | None,
    ) -> None:
        self._in_commit -= 1
        results, taken = added
        if claim is not None and self.taker is not None:
            self.taker.take(taken, claim)
        queued = -len(taken)  # new messages left in the queue, not taken at once
        for (messages, _, d), result in zip(batch, results, strict=True):
            if isinstance(result, QuotaExceeded):
                d.errback(Refused(Refused.QUOTA, str(result)))
                continue
            queued += sum(not a.duplicate for a in result)
            d.callback(
                [
                    Accepted(m.recipient, a.id, a.parts, a.duplicate)
                    for m, a in zip(messages, result, strict=True)
                ]
            )
        if queued > 0:
            self.committed()  # the dispatcher should look for them

    def _answered(self, results: list[list[Accepted] | Refused], batch: list[Any]) -> None:
        """The main process's answers to a batch sent by ``remote``."""
        self._in_commit -= 1
        for (_, _, d), result in zip(batch, results, strict=True):
            if isinstance(result, Refused):
                d.errback(result)
            else:
                d.callback(result)

    def _failed(self, failure: Failure, batch: list[Any], claim: Claim | None) -> None:
        self._in_commit -= 1
        if claim is not None and self.taker is not None:
            self.taker.take([], claim)
        log.failure("the store refused {count} submissions", failure, count=len(batch))
        for _, _, d in batch:
            d.errback(Refused(Refused.UNAVAILABLE, "the queue cannot take messages now"))

    def prepare(
        self, sub: Submission, user: User | None, *, maxmsgs: int, truncate: bool
    ) -> tuple[list[NewMessage], Charge | None]:
        """Everything that can be checked without the store; raises Refused."""
        if user is not None:
            problem = account_problem(user)
            if problem:
                raise Refused(Refused.FORBIDDEN, problem)
        country = (user.default_country if user else None) or self.settings.default_country
        recipients = self._recipients(sub.recipients, country)
        sender = self._sender(sub.sender, user, country)
        if sub.gateway is not None and sub.gateway not in self.settings.gateway_ids:
            raise Refused(Refused.BAD_REQUEST, f"unknown gateway {sub.gateway!r}")
        limit = sub.maxmsgs if sub.maxmsgs is not None else maxmsgs
        if not 1 <= limit <= MAX_MAXMSGS:
            raise Refused(Refused.BAD_REQUEST, f"maxmsgs must be 1..{MAX_MAXMSGS}, got {limit}")
        cut = sub.truncate if sub.truncate is not None else truncate
        now = self.reactor.seconds()
        start = max(now, sub.not_before or now)
        # The dispatcher takes what is due oldest first: a priority message counts as
        # due since a day, ahead of the backlog; one held for later keeps its time.
        due = now - PRIORITY_LEAD if sub.priority and start == now else start
        validity = sub.validity if sub.validity is not None else self.settings.validity
        messages = []
        for number in recipients:
            plan = self._plan(sub, user, limit, cut)
            messages.append(
                NewMessage(
                    recipient=number,
                    sender=sender,
                    text=plan.text,
                    encoding=plan.encoding.value,
                    dcs=plan.dcs,
                    pid=sub.pid,
                    parts=tuple(OutPart(p.seq, p.udh, p.text, p.data) for p in plan.parts),
                    created_at=now,
                    due_at=due,
                    expires_at=start + validity,
                    user=user.name if user else None,
                    channel=sub.channel,
                    client_ref=sub.client_ref,
                    pin_gateway=sub.gateway,
                    route=self.router.key_for(number, user.name if user else None, sub.gateway)
                    if self.router is not None
                    else None,
                    callback_url=sub.callback_url,
                    reply_to=sub.reply_to,
                    truncated=plan.truncated,
                    origin=sub.origin,
                )
            )
        charge = None
        if user is not None:
            period = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m")
            charge = Charge(
                user.name, period, sum(len(m.parts) for m in messages), user.monthly_limit
            )
        return messages, charge

    def _recipients(self, raw: tuple[str, ...], country: str) -> list[str]:
        if not raw:
            raise Refused(Refused.BAD_REQUEST, "no recipient number")
        if len(raw) > self.settings.max_recipients:
            raise Refused(
                Refused.BAD_REQUEST,
                f"too many recipients: {len(raw)} (at most {self.settings.max_recipients})",
            )
        out: dict[str, None] = {}  # ordered, without repeats
        bad: dict[str, str] = {}
        for r in raw:
            try:
                out[numbers.normalise(r, country)] = None
            except numbers.NumberError as e:
                bad[r] = str(e)
        if bad:
            listed = ", ".join(f"{k!r}" for k in bad)
            raise Refused(Refused.BAD_REQUEST, f"invalid number: {listed}", bad)
        return list(out)

    def _sender(self, wanted: str | None, user: User | None, country: str) -> str | None:
        """The sender ID this user's policy gives (None: the gateway's own)."""
        requested = None
        if wanted:
            try:
                requested = numbers.parse_sender(wanted, country).value
            except numbers.NumberError as e:
                raise Refused(Refused.BAD_REQUEST, f"invalid sender: {e}") from None
        if user is None or user.sender_policy == SenderPolicy.ANY:
            return requested
        policy = user.sender_policy
        if policy == SenderPolicy.DEVICE:
            allowed: tuple[str, ...] = ()
        elif policy == SenderPolicy.FIXED:
            allowed = user.senders
        elif policy == SenderPolicy.MOBILE:
            allowed = (user.mobile,) if user.mobile else ()
        else:
            allowed = user.dedicated
        if requested is None:
            if policy != SenderPolicy.DEVICE and not allowed:
                raise Refused(
                    Refused.FORBIDDEN, f"sender policy {policy.value!r} but no sender set"
                )
            return allowed[0] if allowed else None
        if requested in allowed:
            return requested
        raise Refused(Refused.FORBIDDEN, f"sender ID {wanted!r} is not allowed for this user")

    def _plan(self, sub: Submission, user: User | None, maxmsgs: int, truncate: bool) -> text.Plan:
        self._ref = (self._ref + 1) & 0xFFFF
        try:
            if sub.data is not None:
                return text.plan_binary(
                    sub.data,
                    udh=sub.udh,
                    maxmsgs=maxmsgs,
                    truncate=truncate,
                    concat_ref=self._ref,
                    ref16=self.settings.ref16,
                    dcs=sub.dcs,
                    flash=sub.flash,
                )
            if sub.text is None:
                raise Refused(Refused.BAD_REQUEST, "empty text")
            translit = sub.transliterate
            if translit is None and user is not None:
                translit = user.transliterate
            if translit is None:
                translit = self.settings.transliterate
            return text.plan_text(
                sub.text,
                maxmsgs=maxmsgs,
                truncate=truncate,
                transliterate=translit,
                flash=sub.flash,
                concat_ref=self._ref,
                ref16=self.settings.ref16,
                dcs=sub.dcs,
            )
        except text.TooLong as e:
            raise Refused(
                Refused.BAD_REQUEST,
                f"text needs {e.needed} SMS, more than maxmsgs={e.allowed}",
            ) from None
        except text.TextError as e:
            raise Refused(Refused.BAD_REQUEST, str(e)) from None
