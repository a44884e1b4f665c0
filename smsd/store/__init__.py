"""The durable state of smsd and the interface every store backend offers.

Every method returns a Deferred and never blocks the reactor. The interface
is shaped for several nodes sharing one database later (PostgreSQL): the
dispatcher *claims* due messages with a lease instead of keeping a private
queue, and counters are updated atomically inside the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import attrs

from smsd.model import (
    Inbound,
    InboundPart,
    Message,
    OutPart,
    PartResult,
    Report,
    State,
    User,
    pickled_by_fields,
)

if TYPE_CHECKING:  # the writer process imports this module, and needs no reactor
    from twisted.internet.defer import Deferred


class StoreError(Exception):
    """Something the store refused; ``str()`` is fit for a client."""


class QuotaExceeded(StoreError):
    def __init__(self, used: int, limit: int, wanted: int) -> None:
        super().__init__(f"monthly limit reached: {used} of {limit} SMS used, this needs {wanted}")
        self.used, self.limit, self.wanted = used, limit, wanted

    def __reduce__(self) -> tuple[Any, tuple[int, int, int]]:
        return (QuotaExceeded, (self.used, self.limit, self.wanted))  # from the writer process


class UserExists(StoreError):
    pass


class NoSuchUser(StoreError):
    pass


class NumberTaken(StoreError):
    """A dedicated number, or a sort word, that belongs to another user already."""


@pickled_by_fields
@attrs.frozen
class NewMessage:
    """A message ready to be committed to the outbox."""

    recipient: str
    sender: str | None
    text: str | None
    encoding: str
    dcs: int
    pid: int
    parts: tuple[OutPart, ...]
    created_at: float
    due_at: float
    expires_at: float
    user: str | None = None
    channel: str = "api"
    client_ref: str | None = None
    pin_gateway: str | None = None
    route: str | None = None  # Router.key_for: lets claims skip routes with no room
    callback_url: str | None = None
    reply_to: str | None = None
    truncated: bool = False
    origin: str | None = None


@pickled_by_fields
@attrs.frozen
class Charge:
    """Parts to count against a user's monthly limit, atomically with the insert."""

    user: str
    period: str  # "2026-11"
    parts: int
    limit: int  # 0 = count but never refuse


@pickled_by_fields
@attrs.frozen
class Claim:
    """Take new messages straight into a lease as they are committed.

    A node whose gateways have room now need not commit messages as queued
    and claim them a moment later: ``limits`` says how many of each route
    (as Router.key_for names them) it can start; messages due later are not
    taken.
    """

    owner: str
    lease_until: float
    limits: dict[str | None, int]


@pickled_by_fields
@attrs.frozen
class Added:
    id: int
    parts: int
    duplicate: bool = False  # the client_ref was seen before: nothing new was queued


@pickled_by_fields
@attrs.frozen
class Outcome:
    """What happened when a claimed message was handed to a gateway."""

    message_id: int
    gateway: str | None
    results: tuple[PartResult, ...]
    state: State  # the message's new state: SENT, QUEUED (retry), FAILED, EXPIRED
    at: float
    due_at: float | None = None  # for QUEUED: when to try again
    count_attempt: bool = True  # False when released unsent (no gateway free)
    error: str | None = None
    route: str | None = None  # the route key found at dispatch, kept for later claims


@pickled_by_fields
@attrs.frozen
class Change:
    """A message whose state changed, for whoever must be told (callbacks, mail)."""

    message_id: int
    state: State
    status: str | None
    user: str | None
    channel: str
    client_ref: str | None
    callback_url: str | None
    recipient: str


class Store(Protocol):
    """What the core and channels need from durable storage."""

    # Outbox
    def add_batch(
        self, batch: list[tuple[list[NewMessage], Charge | None]], claim: Claim | None = None
    ) -> Deferred[tuple[list[list[Added] | QuotaExceeded], list[Message]]]: ...
    def add_messages(
        self, messages: list[NewMessage], charge: Charge | None
    ) -> Deferred[list[Added]]: ...
    def claim(
        self, owner: str, now: float, lease: float, limit: int
    ) -> Deferred[list[Message]]: ...
    def record(self, outcomes: list[Outcome]) -> Deferred[list[Change]]: ...
    def apply_reports(self, reports: list[Report]) -> Deferred[list[Change]]: ...
    def release_leases(self, owner: str, now: float, own: bool) -> Deferred[int]: ...
    def expire(self, now: float) -> Deferred[list[Change]]: ...
    def next_due(self) -> Deferred[float | None]: ...
    def get_message(self, message_id: int) -> Deferred[dict[str, Any] | None]: ...
    def queue_stats(self, now: float, full: bool = False) -> Deferred[dict[str, Any]]: ...
    def purge(self, before: float) -> Deferred[int]: ...
    def cancel(self, message_id: int, now: float) -> Deferred[tuple[str | None, list[Change]]]: ...
    def secret(self, name: str) -> Deferred[bytes]: ...
    # Inbox
    def add_inbound(self, messages: list[Inbound]) -> Deferred[list[int]]: ...
    def add_inbound_part(self, part: InboundPart) -> Deferred[Inbound | None]: ...
    def flush_inbound_parts(self, before: float) -> Deferred[list[Inbound]]: ...
    def list_inbound(
        self, after: int, limit: int, recipients: list[str] | None = None
    ) -> Deferred[list[Inbound]]: ...
    # Users
    def add_user(self, user: User) -> Deferred[None]: ...
    def update_user(self, user: User) -> Deferred[None]: ...
    def delete_user(self, name: str) -> Deferred[None]: ...
    def get_user(self, name: str) -> Deferred[User | None]: ...
    def list_users(self) -> Deferred[list[User]]: ...
    def usage(self, user: str, period: str) -> Deferred[int]: ...
    # Where users are: SIP registrations, linked JIDs
    def sip_bindings(self, user: str, now: float) -> Deferred[list[Any]]: ...
    def sip_register(
        self, user: str, changes: list[Any], remove_all: bool, now: float
    ) -> Deferred[list[Any]]: ...
    def link_jid(self, jid: str, user: str, inbound: bool, now: float) -> Deferred[None]: ...
    def unlink_jid(self, jid: str) -> Deferred[bool]: ...
    def jid_owner(self, jid: str) -> Deferred[str | None]: ...
    def jid_links(self, user: str | None = None) -> Deferred[list[Any]]: ...
    # Life
    def close(self) -> Deferred[None]: ...
    def close_now(self, timeout: float = 5.0) -> None:
        """Close before the reactor runs (a start that failed): returns once closed."""


def open_store(
    url: str, data_dir: str, *, synchronous: str = "full", batch: int = 512, writer: str = "thread"
) -> Store:
    """Open (and migrate) the store named by ``url``.

    Runs before the reactor starts, so blocking work here is fine.
    """
    if not url or url.startswith("sqlite:"):
        from smsd.store.sqlite import SQLiteStore, path_from_url

        return SQLiteStore.open(
            path_from_url(url, data_dir), synchronous=synchronous, batch=batch, writer=writer
        )
    raise StoreError(f"unsupported store url {url!r} (supported: sqlite:///path)")
