"""The records that flow between channels, the core, the store and gateways.

They are small immutable attrs classes so that they can cross thread
boundaries without copying or locking, and process boundaries (the store's
writer process, HTTP workers) as pickles of their field values.
"""

from __future__ import annotations

import copyreg
import enum
import operator
from typing import Any, TypeVar

import attrs

T = TypeVar("T")


def pickled_by_fields(cls: type[T]) -> type[T]:
    """Pickle an attrs class as ``cls(*field values)``.

    attrs gives a slotted class a ``__getstate__``/``__setstate__`` pair in
    Python, which costs several times a C ``attrgetter`` and one ``__init__``
    call: 19 -> 7 µs for a NewMessage there and back, on every message that
    crosses a pipe to the store's writer process. Only for classes whose
    ``__init__`` takes every field, positionally, without conversion.
    """
    names = [f.name for f in attrs.fields(cls)]  # type: ignore[arg-type]
    getter = operator.attrgetter(*names)  # a tuple for two names or more

    def reduce(obj: Any) -> tuple[type[T], tuple[Any, ...]]:
        return cls, getter(obj)

    def reduce_one(obj: Any) -> tuple[type[T], tuple[Any, ...]]:
        return cls, (getter(obj),)

    copyreg.pickle(cls, reduce if len(names) > 1 else reduce_one)
    return cls


class State(enum.StrEnum):
    """Life of an outbound message (and of each of its parts)."""

    QUEUED = "queued"  # committed, waiting to be sent (maybe not before a time)
    SENDING = "sending"  # claimed by a dispatcher, handed to a gateway
    SENT = "sent"  # the gateway (SMSC, modem) accepted it
    DELIVERED = "delivered"  # a delivery report said so
    FAILED = "failed"  # permanent error, or a report said undeliverable
    EXPIRED = "expired"  # validity ran out before it could be delivered


FINAL_STATES = frozenset({State.DELIVERED, State.FAILED, State.EXPIRED})


class SenderPolicy(enum.StrEnum):
    """Which sender IDs a user may put on an SMS."""

    DEVICE = "device"  # the gateway's own number or default sender
    FIXED = "fixed"  # one of the user's allowed senders (first is default)
    MOBILE = "mobile"  # the user's own mobile number
    DEDICATED = "dedicated"  # the user's dedicated number(s), so replies come back
    ANY = "any"  # whatever the client asks for (trusted applications)


@attrs.frozen
class Submission:
    """What a channel asks the core to send, before any checks.

    ``recipients`` are raw strings as the client typed them; the core
    normalises them and refuses the whole submission if one is bad.
    """

    recipients: tuple[str, ...]
    text: str | None = None
    data: bytes | None = None  # binary payload (8-bit) instead of text
    udh: bytes = b""  # user data header supplied by the client (binary only)
    sender: str | None = None
    maxmsgs: int | None = None  # None: the channel's default
    truncate: bool | None = None  # None: the channel's default
    flash: bool = False
    transliterate: bool | None = None  # None: the user's or site default
    dcs: int | None = None
    pid: int = 0
    not_before: float | None = None  # epoch seconds
    priority: bool = False  # ahead of the queue (SNPP LEVEl 0)
    validity: float | None = None  # seconds from now; None: the site default
    gateway: str | None = None  # pin to one gateway id
    channel: str = "api"
    client_ref: str | None = None  # the client's own id: a repeat is not queued twice
    callback_url: str | None = None
    reply_to: str | None = None  # where replies to this SMS should go (later issues)
    origin: str | None = None  # free text for the log: client address, mail id


@pickled_by_fields
@attrs.frozen
class OutPart:
    """One SMS of a (possibly concatenated) message, as the gateway sends it."""

    seq: int
    udh: bytes
    text: str | None
    data: bytes | None
    state: State = State.QUEUED
    provider_id: str | None = None


@pickled_by_fields
@attrs.frozen
class Message:
    """An outbound message to one recipient, as claimed for sending."""

    id: int
    recipient: str
    sender: str | None
    encoding: str
    dcs: int
    pid: int
    parts: tuple[OutPart, ...]
    total: int  # parts of the whole message; ``parts`` holds only those still to send
    user: str | None = None
    gateway: str | None = None  # pinned gateway, if the submission named one
    attempts: int = 0
    expires_at: float = 0.0
    created_at: float = 0.0
    registered_delivery: bool = True
    route: str | None = None  # the routing rule's key given at submit (None: route it now)


@pickled_by_fields
@attrs.frozen
class PartResult:
    """What a gateway says about one part it tried to send."""

    seq: int
    ok: bool
    provider_id: str | None = None
    status: str | None = None  # the gateway's own status words, kept as they are
    temporary: bool = True  # for failures: retry later (True) or fail for good
    gateway: str | None = None  # filled in by the dispatcher (a failover may use two)
    throttled: bool = False  # the network said "too fast": retry soon, count no attempt


@pickled_by_fields
@attrs.frozen
class Report:
    """A delivery report from the network, matched later by (gateway, provider_id)."""

    gateway: str
    provider_id: str
    state: State  # DELIVERED, FAILED, EXPIRED, or SENT for intermediate reports
    status: str = ""  # raw status, e.g. "stat:DELIVRD err:000"
    at: float = 0.0


def aggregate_state(part_states: list[State] | tuple[State, ...]) -> State:
    """The state of a whole message from the states of its parts.

    One failed or expired part fails the message (the phone cannot show half
    a concatenated SMS as the whole); it is delivered only when every part is.
    """
    states = set(part_states)
    if len(states) == 1:
        return next(iter(states))
    for worst in (State.FAILED, State.EXPIRED, State.QUEUED, State.SENDING):
        if worst in states:
            return worst
    return State.SENT  # a mixture of sent and delivered


@pickled_by_fields
@attrs.frozen
class User:
    """An smsd account; the store keeps it, channels authenticate against it."""

    name: str
    password_hash: str = ""
    emails: tuple[str, ...] = ()
    mobile: str | None = None
    dedicated: tuple[str, ...] = ()  # dedicated numbers: replies to them come back to this user
    sender_policy: SenderPolicy = SenderPolicy.DEVICE
    senders: tuple[str, ...] = ()  # allowed sender IDs for the "fixed" policy
    monthly_limit: int = 0  # SMS parts a calendar month (UTC); 0 = no limit
    expires: str | None = None  # ISO date; the account stops working after that day
    active: bool = True
    default_country: str | None = None  # for national numbers; None: the site default
    created_at: float = 0.0
    transliterate: bool | None = None  # one cheap 7-bit SMS over UCS-2; None: the site's choice
    aliases: tuple[str, ...] = ()  # sort words: an SMS whose first word is one is this user's
    forward: bool = False  # SMS that come in for this user go to their mobile too
    contacts: tuple[tuple[str, str], ...] = ()  # address book: (name, number), names unique
    sip_ha1: str | None = None  # md5(name:realm:password) for SIP digest; None: no SIP login


@pickled_by_fields
@attrs.frozen
class Inbound:
    """An SMS received from the network (multipart already joined)."""

    gateway: str
    sender: str
    recipient: str
    text: str | None
    data: bytes | None = None
    encoding: str = "gsm7"
    received_at: float = 0.0
    parts: int = 1
    id: int | None = None


@pickled_by_fields
@attrs.frozen
class InboundPart:
    """One part of a concatenated SMS from the network, kept until its siblings arrive.

    Each part is committed before the network gets its acknowledgement, so a
    crash between parts loses nothing; the whole message is joined in the
    store when the last part is there.
    """

    gateway: str
    sender: str
    recipient: str
    ref: int  # the concatenation reference (8- or 16-bit), or SAR's msg_ref_num
    total: int
    seq: int
    text: str | None
    data: bytes | None = None
    encoding: str = "gsm7"
    received_at: float = 0.0
