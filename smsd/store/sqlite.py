"""The embedded store: SQLite in WAL mode, one writer with group commit.

Writes go through one writer that commits whatever is queued in one
transaction: a process of its own (the daemon's default: it does not share
the reactor's GIL, see :mod:`smsd.workerproc`) or a thread. Reads go through
a thread with its own connection (WAL lets it read while the writer
writes). Both answer with Deferreds, so the reactor never waits for the disk.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from smsd.model import (
    FINAL_STATES,
    Inbound,
    InboundPart,
    Message,
    OutPart,
    Report,
    SenderPolicy,
    State,
    User,
    aggregate_state,
)
from smsd.store import (
    Added,
    Change,
    Charge,
    Claim,
    NewMessage,
    NoSuchUser,
    NumberTaken,
    Outcome,
    QuotaExceeded,
    UserExists,
    owners,
    sip,
    xmpp,
)
from smsd.store.schema import migrate

if TYPE_CHECKING:  # the writer process imports this module for its operations: no reactor
    from twisted.internet.defer import Deferred

    from smsd.worker import WorkerThread
    from smsd.workerproc import WorkerProcess

_FINAL = tuple(s.value for s in FINAL_STATES)
_CHANGE_COLUMNS = "id, state, status, user, channel, client_ref, callback_url, recipient"


def path_from_url(url: str, data_dir: str) -> str:
    """``sqlite:///name.db`` (relative: inside data_dir, like every relative path
    in the configuration), ``sqlite:////abs/path.db``; empty: data_dir/smsd.db."""
    if not url:
        return os.path.join(data_dir, "smsd.db")
    if not url.startswith("sqlite:///"):
        raise ValueError(f"expected sqlite:///path, got {url!r}")
    return os.path.join(data_dir, url[len("sqlite:///") :])


def _connect(path: str, synchronous: str, *, read_only: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


class SQLiteStore:
    """The Store interface on one SQLite file."""

    def __init__(
        self, path: str, writer: WorkerThread | WorkerProcess, reader: WorkerThread
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader

    @classmethod
    def open(
        cls,
        path: str,
        *,
        synchronous: str = "full",
        batch: int = 512,
        writer: str = "thread",
        reactor: Any = None,
    ) -> SQLiteStore:
        """Create the file if needed, migrate it and start the writer (``"thread"``
        or ``"process"``) and the reader thread (blocking)."""
        # Imported here, not at the top: the writer process imports this module
        # for its operations and loads none of Twisted's reactor modules.
        from smsd.worker import WorkerThread
        from smsd.workerproc import WorkerProcess

        if reactor is None:
            from twisted.internet import reactor
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        conn = _connect(path, synchronous)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch {path} to WAL mode (got {mode})")
            migrate(conn)
        finally:
            conn.close()
        connect = functools.partial(_connect, path, synchronous)
        if writer == "process":
            writes: WorkerThread | WorkerProcess = WorkerProcess(
                "smsd-store-writer", connect, reactor, batch=batch
            )
        else:
            writes = WorkerThread(
                "smsd-store-writer", connect, reactor, transactional=True, batch=batch
            )
        reader = WorkerThread(
            "smsd-store-reader",
            lambda: _connect(path, synchronous, read_only=True),
            reactor,
            transactional=False,
            batch=batch,
        )
        return cls(path, writes, reader)

    def close(self) -> Deferred[None]:
        d1, d2 = self._writer.close(), self._reader.close()
        return d1.addCallback(lambda _: d2)

    def close_now(self, timeout: float = 5.0) -> None:
        self.close()
        self._writer.join(timeout)
        self._reader.join(timeout)

    # Outbox ----------------------------------------------------------------

    def add_messages(
        self, messages: list[NewMessage], charge: Charge | None
    ) -> Deferred[list[Added]]:
        return self._writer.run(_add_messages, messages, charge)

    def add_batch(
        self, batch: list[tuple[list[NewMessage], Charge | None]], claim: Claim | None = None
    ) -> Deferred[tuple[list[list[Added] | QuotaExceeded], list[Message]]]:
        """Several submissions in one operation; a refused one gets its error in
        place. With ``claim``, messages that can go now are leased at once and
        come back, ready to send, as the second item."""
        d = self._writer.run(_add_batch, batch, claim)
        return d.addCallback(_with_claimed, batch)

    def claim(
        self,
        owner: str,
        now: float,
        lease: float,
        limit: int,
        routes: dict[str | None, int] | None = None,
    ) -> Deferred[list[Message]]:
        return self._writer.run(_claim, owner, now, lease, limit, routes)

    def renew(self, owner: str, ids: list[int], until: float) -> Deferred[int]:
        """Extend this owner's leases on messages it is still working on."""
        return self._writer.run(_renew, owner, ids, until)

    def reroute(self, routes: list[str]) -> Deferred[int]:
        """Queued messages whose route the configuration no longer has become unrouted."""
        return self._writer.run(_reroute, routes)

    def record(self, outcomes: list[Outcome], owner: str | None = None) -> Deferred[list[Change]]:
        """With ``owner``, results for messages that are no longer this owner's are dropped."""
        return self._writer.run(_record, outcomes, owner)

    def apply_reports(self, reports: list[Report]) -> Deferred[list[Change]]:
        return self._writer.run(_apply_reports, reports)

    def release_leases(self, owner: str, now: float, own: bool) -> Deferred[int]:
        """Requeue messages whose lease ran out; with ``own`` also this owner's (at start)."""
        return self._writer.run(_release_leases, owner, now, own)

    def expire(self, now: float) -> Deferred[list[Change]]:
        return self._writer.run(_expire, now)

    def purge(self, before: float) -> Deferred[int]:
        return self._writer.run(_purge, before)

    def cancel(self, message_id: int, now: float) -> Deferred[tuple[str | None, list[Change]]]:
        """Fail a message that is still queued (nothing sent); see :func:`_cancel`."""
        return self._writer.run(_cancel, message_id, now)

    def secret(self, name: str) -> Deferred[bytes]:
        """The site's secret of this name, made on first use (the same for every node)."""
        return self._writer.run(_secret, name)

    def next_due(self) -> Deferred[float | None]:
        return self._reader.run(_next_due)

    def get_message(self, message_id: int) -> Deferred[dict[str, Any] | None]:
        return self._reader.run(_get_message, message_id)

    def queue_stats(self, now: float, full: bool = False) -> Deferred[dict[str, Any]]:
        return self._reader.run(_queue_stats, now, full)

    # Inbox -----------------------------------------------------------------

    def add_inbound(self, messages: list[Inbound]) -> Deferred[list[int]]:
        return self._writer.run(_add_inbound, messages)

    def add_inbound_part(self, part: InboundPart) -> Deferred[Inbound | None]:
        """Commit one part; the whole message (stored, with its id) once it is complete."""
        return self._writer.run(_add_inbound_part, part)

    def flush_inbound_parts(self, before: float) -> Deferred[list[Inbound]]:
        """Store as single SMS the parts of messages that stayed incomplete since ``before``."""
        return self._writer.run(_flush_inbound_parts, before)

    def list_inbound(
        self, after: int, limit: int, recipients: list[str] | None = None
    ) -> Deferred[list[Inbound]]:
        """Inbound SMS with id > ``after``; only to ``recipients`` when given."""
        return self._reader.run(_list_inbound, after, limit, recipients)

    # Inbound SMS to their owners ------------------------------------------------

    def due_inbound(self, now: float, limit: int) -> Deferred[list[Inbound]]:
        return self._reader.run(owners.due_inbound, now, limit)

    def settle_inbound(
        self,
        inbox_id: int,
        state: str,
        owner: str | None,
        delivered_to: str | None,
        error: str | None,
        next_try: float = 0.0,
    ) -> Deferred[None]:
        return self._writer.run(
            owners.settle_inbound, inbox_id, state, owner, delivered_to, error, next_try
        )

    def recent_writers(
        self, phone: str, since: float
    ) -> Deferred[list[tuple[str | None, str | None, str | None, float]]]:
        return self._reader.run(owners.recent_writers, phone, since)

    def dedicated_owner(self, number: str) -> Deferred[str | None]:
        return self._reader.run(owners.dedicated_owner, number)

    def user_by_email(self, address: str) -> Deferred[str | None]:
        return self._reader.run(owners.user_by_email, address)

    def alias_owner(self, word: str) -> Deferred[str | None]:
        return self._reader.run(owners.alias_owner, word)

    def inbox_state(self, inbox_id: int) -> Deferred[dict[str, Any] | None]:
        return self._reader.run(owners.inbox_state, inbox_id)

    def report_target(self, message_id: int) -> Deferred[dict[str, Any] | None]:
        return self._reader.run(owners.report_target, message_id)

    def delayed_mail(self, before: float, limit: int) -> Deferred[list[dict[str, Any]]]:
        return self._reader.run(owners.delayed_mail, before, limit)

    def mark_warned(self, ids: list[int]) -> Deferred[None]:
        return self._writer.run(owners.mark_warned, ids)

    # SIP registrations ------------------------------------------------------------

    def sip_bindings(self, user: str, now: float) -> Deferred[list[sip.Binding]]:
        return self._reader.run(sip.bindings, user, now)

    def sip_register(
        self, user: str, changes: list[sip.Binding], remove_all: bool, now: float
    ) -> Deferred[list[sip.Binding]]:
        return self._writer.run(sip.register, user, changes, remove_all, now)

    # XMPP links -------------------------------------------------------------------

    def link_jid(self, jid: str, user: str, inbound: bool, now: float) -> Deferred[None]:
        return self._writer.run(xmpp.link, jid, user, inbound, now)

    def unlink_jid(self, jid: str) -> Deferred[bool]:
        return self._writer.run(xmpp.unlink, jid)

    def jid_owner(self, jid: str) -> Deferred[str | None]:
        return self._reader.run(xmpp.owner, jid)

    def jid_links(self, user: str | None = None) -> Deferred[list[xmpp.Link]]:
        return self._reader.run(xmpp.links, user)

    # Users -----------------------------------------------------------------

    def add_user(self, user: User) -> Deferred[None]:
        return self._writer.run(_add_user, user)

    def update_user(self, user: User) -> Deferred[None]:
        return self._writer.run(_update_user, user)

    def delete_user(self, name: str) -> Deferred[None]:
        return self._writer.run(_delete_user, name)

    def get_user(self, name: str) -> Deferred[User | None]:
        return self._reader.run(_get_user, name)

    def list_users(self) -> Deferred[list[User]]:
        return self._reader.run(_list_users)

    def usage(self, user: str, period: str) -> Deferred[int]:
        return self._reader.run(_usage, user, period)


# Operations: each runs in a database thread with its connection. ---------------


def _with_claimed(
    added: tuple[list[list[Added] | QuotaExceeded], list[tuple[int, int]]],
    batch: list[tuple[list[NewMessage], Charge | None]],
) -> tuple[list[list[Added] | QuotaExceeded], list[Message]]:
    """The messages a commit leased, made here from what was sent to be committed.

    The writer answers with their places only: pickling each Message back to the
    process that has its fields already cost more than making it again here."""
    results, places = added
    claimed = []
    for i, j in places:
        a = results[i]
        assert not isinstance(a, QuotaExceeded)
        m = batch[i][0][j]
        claimed.append(
            Message(
                a[j].id,
                m.recipient,
                m.sender,
                m.encoding,
                m.dcs,
                m.pid,
                m.parts,
                len(m.parts),
                m.user,
                m.pin_gateway,
                0,
                m.expires_at,
                m.created_at,
                route=m.route,
            )
        )
    return results, claimed


def _add_batch(
    conn: sqlite3.Connection,
    batch: list[tuple[list[NewMessage], Charge | None]],
    claim: Claim | None = None,
) -> tuple[list[list[Added] | QuotaExceeded], list[tuple[int, int]]]:
    """Insert the messages of many submissions with three statements in all.

    Ids are given here rather than by SQLite: the write transaction holds the
    database's only write lock (other processes wait), so max(id) + 1 onwards
    is ours, and the rows can go in with executemany instead of one INSERT
    each. Quotas are checked before anything of a submission is written, so a
    refused submission needs no rollback. Messages taken into the claim are
    written as leased (they never pass through the queue's indexes); they are
    given back as (submission, message) places in ``batch`` (see _with_claimed).
    """
    limits = dict(claim.limits) if claim is not None else {}
    claimed: list[tuple[int, int]] = []
    next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM messages").fetchone()[0]
    message_rows: list[tuple[Any, ...]] = []
    part_rows: list[tuple[Any, ...]] = []
    usage: dict[tuple[str, str], list[int]] = {}  # (user, period) -> [used before, added]
    seen: dict[tuple[str, str, str], Added] = {}  # client refs taken in this batch
    results: list[list[Added] | QuotaExceeded] = []
    for place, (messages, charge) in enumerate(batch):
        added: list[Added | int | None] = []  # int: a repeat of that earlier position
        fresh: list[NewMessage] = []
        mine: dict[tuple[str, str, str], int] = {}  # client refs new in this submission
        for i, m in enumerate(messages):
            dup: Added | int | None = None
            if m.client_ref is not None:
                key = (m.user or "", m.client_ref, m.recipient)
                dup = seen.get(key) or mine.get(key)
                if dup is None:
                    row = conn.execute(
                        "SELECT id, total FROM messages WHERE coalesce(user, '') = ?"
                        " AND client_ref = ? AND recipient = ?",
                        key,
                    ).fetchone()
                    dup = Added(row[0], row[1], duplicate=True) if row else None
                if dup is None:
                    mine[key] = i
            added.append(dup)
            if dup is None:
                fresh.append(m)
        wanted = sum(len(m.parts) for m in fresh)
        if charge is not None and wanted:
            key2 = (charge.user, charge.period)
            if key2 not in usage:
                row = conn.execute(
                    "SELECT parts FROM usage WHERE user = ? AND period = ?", key2
                ).fetchone()
                usage[key2] = [row[0] if row else 0, 0]
            used = sum(usage[key2])
            if charge.limit and used + wanted > charge.limit:
                results.append(QuotaExceeded(used, charge.limit, wanted))
                continue
            usage[key2][1] += wanted
        fresh_iter = iter(fresh)
        for i, dup in enumerate(added):
            if isinstance(dup, int):
                first = added[dup]
                assert isinstance(first, Added)
                added[i] = Added(first.id, first.parts, duplicate=True)
                continue
            if dup is not None:
                continue
            m = next(fresh_iter)
            message_id = next_id
            next_id += 1
            state, owner, lease_until = "queued", None, None
            if claim is not None and limits.get(m.route, 0) > 0 and m.due_at <= m.created_at:
                limits[m.route] -= 1
                state, owner, lease_until = "sending", claim.owner, claim.lease_until
                claimed.append((place, i))
            message_rows.append(
                (
                    message_id,
                    m.created_at,
                    m.created_at,
                    m.user,
                    m.channel,
                    m.client_ref,
                    m.recipient,
                    m.sender,
                    m.text,
                    m.encoding,
                    m.dcs,
                    m.pid,
                    len(m.parts),
                    int(m.truncated),
                    state,
                    m.pin_gateway,
                    m.due_at,
                    m.expires_at,
                    m.callback_url,
                    m.reply_to,
                    m.origin,
                    m.route,
                    owner,
                    lease_until,
                )
            )
            part_rows.extend((message_id, p.seq, p.udh, p.text, p.data) for p in m.parts)
            added[i] = Added(message_id, len(m.parts))
            if m.client_ref is not None:
                seen[(m.user or "", m.client_ref, m.recipient)] = Added(
                    message_id, len(m.parts), duplicate=True
                )
        results.append(added)  # type: ignore[arg-type]  # no None is left
    conn.executemany(
        "INSERT INTO messages (id, created_at, updated_at, user, channel, client_ref, recipient,"
        " sender, text, encoding, dcs, pid, total, truncated, state, pin_gateway, due_at,"
        " expires_at, callback_url, reply_to, origin, route, lease_owner, lease_until)"
        f" VALUES ({','.join('?' * 24)})",
        message_rows,
    )
    conn.executemany(
        "INSERT INTO parts (message_id, seq, udh, body, data, state)"
        " VALUES (?, ?, ?, ?, ?, 'queued')",
        part_rows,
    )
    conn.executemany(
        "INSERT INTO usage (user, period, parts) VALUES (?, ?, ?)"
        " ON CONFLICT (user, period) DO UPDATE SET parts = parts + excluded.parts",
        [(user, period, n) for (user, period), (_, n) in usage.items() if n],
    )
    return results, claimed


def _add_messages(
    conn: sqlite3.Connection, messages: list[NewMessage], charge: Charge | None
) -> list[Added]:
    (result,), _ = _add_batch(conn, [(messages, charge)])
    if isinstance(result, QuotaExceeded):
        raise result
    return result


def _in_chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _claim(
    conn: sqlite3.Connection,
    owner: str,
    now: float,
    lease: float,
    limit: int,
    routes: dict[str | None, int] | None,
) -> list[Message]:
    """Lease up to ``limit`` due messages, oldest first; with ``routes`` only from
    those routes, at most so many from each (None: messages without a route)."""
    if routes is None:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM messages WHERE state = 'queued' AND due_at <= ?"
                " ORDER BY due_at LIMIT ?",
                (now, limit),
            )
        ]
    else:
        due: list[tuple[float, int]] = []
        for route, most in routes.items():
            if most > 0:
                due += conn.execute(
                    "SELECT due_at, id FROM messages WHERE state = 'queued' AND route IS ?"
                    " AND due_at <= ? ORDER BY due_at LIMIT ?",
                    (route, now, min(most, limit)),
                ).fetchall()
        ids = [i for _, i in sorted(due)[:limit]]
    if not ids:
        return []
    rows = _select_in(
        conn,
        "UPDATE messages SET state = 'sending', lease_owner = ?, lease_until = ?, updated_at = ?"
        " RETURNING id, recipient, sender, encoding, dcs, pid, total, user, pin_gateway,"
        " attempts, expires_at, created_at, due_at, route",
        ids,
        (owner, now + lease, now),
    )
    rows.sort(key=lambda r: (r[12], r[0]))  # RETURNING gives rowid order, not due order
    parts: dict[int, list[OutPart]] = {row[0]: [] for row in rows}
    for chunk in _in_chunks(list(parts)):
        marks = ",".join("?" * len(chunk))
        for mid, seq, udh, body, data in conn.execute(
            f"SELECT message_id, seq, udh, body, data FROM parts WHERE message_id IN ({marks})"
            " AND state = 'queued' ORDER BY message_id, seq",
            chunk,
        ):
            parts[mid].append(OutPart(seq, udh, body, data))
    return [
        Message(
            id=r[0],
            recipient=r[1],
            sender=r[2],
            encoding=r[3],
            dcs=r[4],
            pid=r[5],
            total=r[6],
            user=r[7],
            gateway=r[8],
            attempts=r[9],
            expires_at=r[10],
            created_at=r[11],
            route=r[13],
            parts=tuple(parts[r[0]]),
        )
        for r in rows
    ]


def _renew(conn: sqlite3.Connection, owner: str, ids: list[int], until: float) -> int:
    renewed = 0
    for chunk in _in_chunks(ids):
        renewed += conn.execute(
            "UPDATE messages SET lease_until = ? WHERE state = 'sending' AND lease_owner = ?"
            f" AND id IN ({','.join('?' * len(chunk))})",
            (until, owner, *chunk),
        ).rowcount
    return renewed


def _reroute(conn: sqlite3.Connection, routes: list[str]) -> int:
    marks = ",".join("?" * len(routes))
    return conn.execute(
        "UPDATE messages SET route = NULL WHERE state = 'queued' AND route IS NOT NULL"
        f" AND route NOT IN ({marks})",
        routes,
    ).rowcount


def _record(
    conn: sqlite3.Connection, outcomes: list[Outcome], owner: str | None = None
) -> list[Change]:
    """Write what gateways said; apply reports that arrived before the send result.

    Set-wise: one statement per kind of change for the whole batch. With an
    owner, a result for a message whose lease went to someone else (a slow
    send outlived the lease) is not written over theirs.
    """
    ids = [o.message_id for o in outcomes]
    before = {
        r[0]: r
        for r in _select_in(conn, f"SELECT {_CHANGE_COLUMNS}, lease_owner FROM messages", ids)
    }
    if owner is not None:
        outcomes = [
            o
            for o in outcomes
            if (row := before.get(o.message_id)) is not None
            and row[1] == State.SENDING.value
            and row[8] == owner
        ]
    sent, failed, ended, moves = [], [], [], []
    for o in outcomes:
        status = None
        for r in o.results:
            gateway = r.gateway or o.gateway
            if r.ok:
                sent.append((gateway, r.provider_id, r.status, o.at, o.message_id, r.seq))
            elif not r.temporary:
                failed.append((gateway, r.status, o.at, o.message_id, r.seq))
            status = r.status or status
        if o.state in (State.EXPIRED, State.FAILED):  # parts never sent end with the message
            ended.append((o.state.value, o.at, o.message_id))
        # A message sent (or failed) now shows the words of this attempt, not an earlier one's.
        fresh = o.state in (State.SENT, State.FAILED) and bool(o.results)
        moves.append(
            (o.state.value, o.gateway, int(o.count_attempt), o.due_at, status, int(fresh), o.error,
             o.at, o.route, o.message_id)
        )  # fmt: skip
    conn.executemany(
        "UPDATE parts SET state = 'sent', gateway = ?, provider_id = ?, status = ?, sent_at = ?"
        " WHERE message_id = ? AND seq = ?",
        sent,
    )
    conn.executemany(
        "UPDATE parts SET state = 'failed', gateway = ?, status = ?, done_at = ?"
        " WHERE message_id = ? AND seq = ?",
        failed,
    )
    conn.executemany(
        "UPDATE parts SET state = ?, done_at = ? WHERE message_id = ? AND state = 'queued'", ended
    )
    conn.executemany(
        "UPDATE messages SET state = ?, gateway = coalesce(?, gateway),"
        " attempts = attempts + ?, due_at = coalesce(?, due_at), lease_owner = NULL,"
        " lease_until = NULL, status = CASE WHEN ?5 IS NOT NULL OR ?6 THEN ?5 ELSE status END,"
        " error = ?, updated_at = ?, route = coalesce(?, route) WHERE id = ? AND state = 'sending'",
        moves,
    )
    changes = []
    for o, move in zip(outcomes, moves, strict=True):
        row = before.get(o.message_id)
        if row is None or row[1] != State.SENDING.value or o.state == State.QUEUED:
            continue  # not ours any more (a report ended it), or back in the queue
        user, channel, client_ref, callback, recipient = row[3:8]
        status = move[4] if move[4] is not None or move[5] else row[2]
        changes.append(
            Change(o.message_id, o.state, status, user, channel, client_ref, callback, recipient)
        )
    if sent and conn.execute("SELECT EXISTS (SELECT 1 FROM reports)").fetchone()[0]:
        # Asked of the database, not cached: another process may have kept a report.
        early = []
        for gateway, provider_id, *_ in sent:
            for state, status, at in conn.execute(
                "DELETE FROM reports WHERE gateway = ? AND provider_id = ?"
                " RETURNING state, status, received_at",
                (gateway, provider_id),
            ).fetchall():
                early.append(Report(gateway, provider_id, State(state), status or "", at))
        early.sort(key=lambda report: report.at)
        changes.extend(_apply_reports(conn, early, keep=False))
    return changes


def _select_in(
    conn: sqlite3.Connection, statement: str, ids: list[int], args: tuple[Any, ...] = ()
) -> list[tuple[Any, ...]]:
    """``statement ... WHERE id IN (ids)``, in chunks under SQLite's variable limit."""
    rows: list[tuple[Any, ...]] = []
    for chunk in _in_chunks(ids):
        marks = ",".join("?" * len(chunk))
        if " RETURNING " in statement:
            head, _, tail = statement.partition(" RETURNING ")
            sql = f"{head} WHERE id IN ({marks}) RETURNING {tail}"
        else:
            sql = f"{statement} WHERE id IN ({marks})"
        rows.extend(conn.execute(sql, (*args, *chunk)))
    return rows


def _parts_by_provider(
    conn: sqlite3.Connection, reports: list[Report]
) -> dict[tuple[str, str], list[list[Any]]]:
    """``(gateway, provider_id) -> [[message_id, seq, state], ...]`` for these reports.

    Every part with that id: a link that sends a long text as one
    message_payload gets one id for all its parts. Drivers whose ids repeat (a
    modem's TP-MR wraps at 256) make them unique before they hand them over.
    """
    wanted: dict[str, set[str]] = {}
    for rep in reports:
        wanted.setdefault(rep.gateway, set()).add(rep.provider_id)
    found: dict[tuple[str, str], list[list[Any]]] = {}
    for gateway, ids in wanted.items():
        ordered = sorted(ids)
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            for provider_id, message_id, seq, state in conn.execute(
                "SELECT provider_id, message_id, seq, state FROM parts WHERE gateway = ?"
                f" AND provider_id IN ({','.join('?' * len(chunk))})",
                (gateway, *chunk),
            ):
                found.setdefault((gateway, provider_id), []).append([message_id, seq, state])
    return found


def _apply_reports(
    conn: sqlite3.Connection, reports: list[Report], *, keep: bool = True
) -> list[Change]:
    """Move parts to the reported state, then their messages; keep unmatched reports.

    Set-wise: one query finds the parts of every report, one statement moves
    them in the reports' order (a part already final stays as it is).
    """
    found = _parts_by_provider(conn, reports)
    touched: dict[int, list[tuple[State, str | None, float]]] = {}
    moves: list[tuple[Any, ...]] = []
    unmatched: list[tuple[Any, ...]] = []
    for rep in reports:
        parts = found.get((rep.gateway, rep.provider_id))
        if not parts:
            # The report came before the send result was recorded (or is for
            # something we never sent): keep it until the result arrives.
            unmatched.append((rep.at, rep.gateway, rep.provider_id, rep.state.value, rep.status))
            continue
        for part in parts:
            message_id, seq, state = part
            if rep.state == State.SENT:  # intermediate report: keep the words, not a new state
                moves.append((None, rep.status, None, message_id, seq))
            elif state not in _FINAL:
                part[2] = rep.state.value
                moves.append((rep.state.value, rep.status, rep.at, message_id, seq))
                touched.setdefault(message_id, []).append((rep.state, rep.status, rep.at))
    conn.executemany(
        "UPDATE parts SET state = coalesce(?, state), status = ?, done_at = coalesce(?, done_at)"
        " WHERE message_id = ? AND seq = ?",
        moves,
    )
    if keep:
        conn.executemany(
            "INSERT INTO reports (received_at, gateway, provider_id, state, status)"
            " VALUES (?, ?, ?, ?, ?)",
            unmatched,
        )
    return _settle(conn, touched) if touched else []


def _settle(
    conn: sqlite3.Connection, touched: dict[int, list[tuple[State, str | None, float]]]
) -> list[Change]:
    """Give messages whose parts were reported the state their parts now add up to."""
    changes: list[Change] = []
    moves: list[tuple[Any, ...]] = []
    rows = _select_in(conn, f"SELECT {_CHANGE_COLUMNS}, total FROM messages", list(touched))
    for message_id, current_s, _, user, channel, client_ref, callback, recipient, total in rows:
        reported = touched[message_id]
        state, status, at = reported[-1]
        current = State(current_s)
        if current in FINAL_STATES:
            continue  # the message's fate is told already (a part failed, it expired)
        if total > 1:
            state = aggregate_state(
                [
                    State(s)
                    for (s,) in conn.execute(
                        "SELECT state FROM parts WHERE message_id = ?", (message_id,)
                    )
                ]
            )
        if current in (State.QUEUED, State.SENDING) and state not in FINAL_STATES:
            continue  # other parts are still on their way; the dispatcher owns the message
        # The words of the report that decided the state (the failed part's, say).
        status = next((w for s, w, _ in reversed(reported) if s == state), status)
        moves.append((state.value, status, at, message_id))
        if state != current:
            changes.append(
                Change(message_id, state, status, user, channel, client_ref, callback, recipient)
            )
    conn.executemany(
        "UPDATE messages SET state = ?, status = ?, updated_at = ?, lease_owner = NULL,"
        " lease_until = NULL WHERE id = ?",
        moves,
    )
    return changes


def _release_leases(conn: sqlite3.Connection, owner: str, now: float, own: bool) -> int:
    if own:
        where, args = "(lease_owner = ? OR lease_until < ?)", (owner, now)
    else:
        where, args = "lease_owner != ? AND lease_until < ?", (owner, now)
    cur = conn.execute(
        "UPDATE messages SET state = 'queued', lease_owner = NULL, lease_until = NULL"
        f" WHERE state = 'sending' AND {where}",
        args,
    )
    return cur.rowcount


def _expire(conn: sqlite3.Connection, now: float) -> list[Change]:
    rows = conn.execute(
        "UPDATE messages SET state = 'expired', error = 'validity period ended', updated_at = ?"
        f" WHERE state = 'queued' AND expires_at <= ? RETURNING {_CHANGE_COLUMNS}",
        (now, now),
    ).fetchall()
    for chunk in _in_chunks([r[0] for r in rows]):
        conn.execute(
            f"UPDATE parts SET state = 'expired', done_at = ? WHERE state = 'queued'"
            f" AND message_id IN ({','.join('?' * len(chunk))})",
            (now, *chunk),
        )
    return [Change(r[0], State(r[1]), *r[2:]) for r in rows]


def _cancel(
    conn: sqlite3.Connection, message_id: int, now: float
) -> tuple[str | None, list[Change]]:
    """(state before, changes): only a queued message is cancelled, so nothing of it was
    sent or is being sent; its parts fail with it. State None: there is no such message."""
    rows = conn.execute(
        "UPDATE messages SET state = 'failed', error = 'cancelled by the sender', updated_at = ?"
        f" WHERE id = ? AND state = 'queued' RETURNING {_CHANGE_COLUMNS}",
        (now, message_id),
    ).fetchall()
    if not rows:
        row = conn.execute("SELECT state FROM messages WHERE id = ?", (message_id,)).fetchone()
        return (None if row is None else row[0]), []
    conn.execute(
        "UPDATE parts SET state = 'failed', done_at = ? WHERE message_id = ? AND state = 'queued'",
        (now, message_id),
    )
    # Nothing of it was sent: the user gets back the parts it was charged.
    user, total, created = conn.execute(
        "SELECT user, total, created_at FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    if user is not None:
        period = datetime.datetime.fromtimestamp(created, datetime.UTC).strftime("%Y-%m")
        conn.execute(
            "UPDATE usage SET parts = max(parts - ?, 0) WHERE user = ? AND period = ?",
            (total, user, period),
        )
    return "queued", [Change(r[0], State(r[1]), *r[2:]) for r in rows]


def _secret(conn: sqlite3.Connection, name: str) -> bytes:
    conn.execute(
        "INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)", (name, os.urandom(32))
    )
    return bytes(conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0])


def _purge(conn: sqlite3.Connection, before: float) -> int:
    """Delete final messages last changed before ``before``, and stale reports."""
    cur = conn.execute(
        f"DELETE FROM messages WHERE state IN ({','.join('?' * len(_FINAL))}) AND updated_at < ?",
        (*_FINAL, before),
    )
    conn.execute("DELETE FROM reports WHERE received_at < ?", (before,))
    return cur.rowcount


def _next_due(conn: sqlite3.Connection) -> float | None:
    return conn.execute("SELECT min(due_at) FROM messages WHERE state = 'queued'").fetchone()[0]


_MESSAGE_COLUMNS = (
    "id, created_at, updated_at, user, channel, client_ref, recipient, sender, text, encoding,"
    " dcs, pid, total, truncated, state, pin_gateway, gateway, attempts, due_at, expires_at,"
    " status, error, callback_url, reply_to"
)


def _get_message(conn: sqlite3.Connection, message_id: int) -> dict[str, Any] | None:
    cur = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
    row = cur.fetchone()
    if row is None:
        return None
    message = dict(zip([c[0] for c in cur.description], row, strict=True))
    message["truncated"] = bool(message["truncated"])
    message["parts"] = [
        {
            "seq": seq,
            "state": state,
            "gateway": gateway,
            "provider_id": provider_id,
            "status": status,
            "sent_at": sent_at,
            "done_at": done_at,
            "udh": udh.hex() if udh else None,
            "data": data.hex() if data is not None else None,
            "text": body,
        }
        for seq, state, gateway, provider_id, status, sent_at, done_at, udh, data, body in conn.execute(  # noqa: E501
            "SELECT seq, state, gateway, provider_id, status, sent_at, done_at, udh, data, body"
            " FROM parts WHERE message_id = ? ORDER BY seq",
            (message_id,),
        )
    ]
    return message


def _queue_stats(conn: sqlite3.Connection, now: float, full: bool) -> dict[str, Any]:
    """Counts per state; without ``full`` only the active states (cheap: index range)."""
    stats: dict[str, Any] = {"states": {}, "oldest_queued": None, "due": 0, "pending_reports": 0}
    if full:
        rows = conn.execute("SELECT state, count(*) FROM messages GROUP BY state").fetchall()
    else:  # one partial index each: cheap however many finished messages there are
        rows = [
            (
                state,
                conn.execute(f"SELECT count(*) FROM messages WHERE state = '{state}'").fetchone()[
                    0
                ],
            )
            for state in ("queued", "sending")
        ]
    stats["states"] = {state: count for state, count in rows if count}
    oldest = [
        conn.execute(f"SELECT min(created_at) FROM messages WHERE state = '{state}'").fetchone()[0]
        for state in ("queued", "sending")
    ]
    stats["oldest_queued"] = min((t for t in oldest if t is not None), default=None)
    stats["due"] = conn.execute(
        "SELECT count(*) FROM messages WHERE state = 'queued' AND due_at <= ?", (now,)
    ).fetchone()[0]
    stats["pending_reports"] = conn.execute("SELECT count(*) FROM reports").fetchone()[0]
    if full:
        stats["gateways"] = {
            gateway or "": dict(
                conn.execute(
                    "SELECT state, count(*) FROM messages WHERE gateway IS ? GROUP BY state",
                    (gateway,),
                ).fetchall()
            )
            for (gateway,) in conn.execute("SELECT DISTINCT gateway FROM messages").fetchall()
        }
        stats["inbound"] = conn.execute("SELECT count(*) FROM inbox").fetchone()[0]
    return stats


def _add_inbound(conn: sqlite3.Connection, messages: list[Inbound]) -> list[int]:
    ids = []
    for m in messages:
        cur = conn.execute(
            "INSERT INTO inbox (received_at, gateway, sender, recipient, text, data, encoding,"
            " parts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (m.received_at, m.gateway, m.sender, m.recipient, m.text, m.data, m.encoding, m.parts),
        )
        ids.append(cur.lastrowid)
    return ids


def _add_inbound_part(conn: sqlite3.Connection, part: InboundPart) -> Inbound | None:
    """Keep a part; when it completes its message, store the whole and return it.

    A part the network sends twice (its acknowledgement got lost) is kept once.
    """
    key = (part.gateway, part.sender, part.recipient, part.ref, part.total)
    conn.execute(
        "INSERT OR IGNORE INTO inbound_parts (gateway, sender, recipient, ref, total, seq, text,"
        " data, encoding, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*key, part.seq, part.text, part.data, part.encoding, part.received_at),
    )
    rows = conn.execute(
        "SELECT seq, text, data, encoding, received_at FROM inbound_parts WHERE gateway = ?"
        " AND sender = ? AND recipient = ? AND ref = ? AND total = ? ORDER BY seq",
        key,
    ).fetchall()
    if len(rows) < part.total:
        return None
    conn.execute(
        "DELETE FROM inbound_parts WHERE gateway = ? AND sender = ? AND recipient = ?"
        " AND ref = ? AND total = ?",
        key,
    )
    whole = _joined(part.gateway, part.sender, part.recipient, rows)
    (message_id,) = _add_inbound(conn, [whole])
    return attrs.evolve(whole, id=message_id)


def _joined(gateway: str, sender: str, recipient: str, rows: list[tuple[Any, ...]]) -> Inbound:
    """One inbound message of parts (seq, text, data, encoding, received_at), in order."""
    texts = [r[1] for r in rows]
    if all(t is not None for t in texts):
        text, data = "".join(texts), None
    else:
        text, data = None, b"".join(r[2] or b"" for r in rows)
    encodings = {r[3] for r in rows}
    encoding = encodings.pop() if len(encodings) == 1 else "mixed"
    return Inbound(gateway, sender, recipient, text, data, encoding, rows[0][4], len(rows))


def _flush_inbound_parts(conn: sqlite3.Connection, before: float) -> list[Inbound]:
    """Messages whose missing parts never came: store what came, each part on its own."""
    rows = conn.execute(
        "SELECT gateway, sender, recipient, ref, total, seq, text, data, encoding, received_at"
        " FROM inbound_parts WHERE (gateway, sender, recipient, ref, total) IN"
        " (SELECT gateway, sender, recipient, ref, total FROM inbound_parts"
        "  GROUP BY gateway, sender, recipient, ref, total HAVING max(received_at) < ?)"
        " ORDER BY gateway, sender, recipient, ref, total, seq",
        (before,),
    ).fetchall()
    stored = []
    for g, s, r, ref, total, seq, text, data, encoding, at in rows:
        whole = _joined(g, s, r, [(seq, text, data, encoding, at)])
        (message_id,) = _add_inbound(conn, [whole])
        stored.append(attrs.evolve(whole, id=message_id))
        conn.execute(
            "DELETE FROM inbound_parts WHERE gateway = ? AND sender = ? AND recipient = ?"
            " AND ref = ? AND total = ? AND seq = ?",
            (g, s, r, ref, total, seq),
        )
    return stored


def _list_inbound(
    conn: sqlite3.Connection, after: int, limit: int, recipients: list[str] | None
) -> list[Inbound]:
    where, args = "id > ?", [after]
    if recipients is not None:
        where += f" AND recipient IN ({','.join('?' * len(recipients))})"
        args += recipients
    return [
        owners.inbound_of(r)
        for r in conn.execute(
            f"SELECT {owners.INBOX_COLUMNS} FROM inbox WHERE {where} ORDER BY id LIMIT ?",
            (*args, limit),
        )
    ]


_USER_COLUMNS = (
    "name, password_hash, emails, mobile, sender_policy, senders, monthly_limit, expires,"
    " active, default_country, created_at, transliterate, forward, sip_ha1"
)


def _user_row(u: User) -> tuple[Any, ...]:
    return (
        u.name,
        u.password_hash,
        json.dumps(list(u.emails)),
        u.mobile,
        u.sender_policy.value,
        json.dumps(list(u.senders)),
        u.monthly_limit,
        u.expires,
        int(u.active),
        u.default_country,
        u.created_at,
        None if u.transliterate is None else int(u.transliterate),
        int(u.forward),
        u.sip_ha1,
    )


def _set_dedicated(conn: sqlite3.Connection, u: User) -> None:
    conn.execute("DELETE FROM dedicated_numbers WHERE user = ?", (u.name,))
    for number in dict.fromkeys(u.dedicated):  # a number listed twice is still one
        owner = conn.execute(
            "SELECT user FROM dedicated_numbers WHERE number = ?", (number,)
        ).fetchone()
        if owner is not None:
            raise NumberTaken(f"dedicated number {number} belongs to user {owner[0]!r}")
        conn.execute("INSERT INTO dedicated_numbers (number, user) VALUES (?, ?)", (number, u.name))


def _set_aliases(conn: sqlite3.Connection, u: User) -> None:
    conn.execute("DELETE FROM aliases WHERE user = ?", (u.name,))
    for word in dict.fromkeys(w.lower() for w in u.aliases):
        owner = conn.execute("SELECT user FROM aliases WHERE word = ?", (word,)).fetchone()
        if owner is not None:
            raise NumberTaken(f"sort word {word!r} belongs to user {owner[0]!r}")
        conn.execute("INSERT INTO aliases (word, user) VALUES (?, ?)", (word, u.name))


def _set_contacts(conn: sqlite3.Connection, u: User) -> None:
    conn.execute("DELETE FROM contacts WHERE user = ?", (u.name,))
    conn.executemany(
        "INSERT OR REPLACE INTO contacts (user, name, number) VALUES (?, ?, ?)",
        [(u.name, name, number) for name, number in u.contacts],
    )


def _add_user(conn: sqlite3.Connection, u: User) -> None:
    try:
        conn.execute(
            f"INSERT INTO users ({_USER_COLUMNS}) VALUES ({','.join('?' * 14)})", _user_row(u)
        )
    except sqlite3.IntegrityError:
        raise UserExists(f"user {u.name!r} exists already") from None
    _set_dedicated(conn, u)
    _set_aliases(conn, u)
    _set_contacts(conn, u)


def _update_user(conn: sqlite3.Connection, u: User) -> None:
    row = _user_row(u)
    cur = conn.execute(
        "UPDATE users SET password_hash = ?, emails = ?, mobile = ?, sender_policy = ?,"
        " senders = ?, monthly_limit = ?, expires = ?, active = ?, default_country = ?,"
        " transliterate = ?, forward = ?, sip_ha1 = ? WHERE name = ?",
        (*row[1:10], row[11], row[12], row[13], u.name),
    )
    if cur.rowcount == 0:
        raise NoSuchUser(f"no user {u.name!r}")
    _set_dedicated(conn, u)
    _set_aliases(conn, u)
    _set_contacts(conn, u)


def _delete_user(conn: sqlite3.Connection, name: str) -> None:
    if conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
        raise NoSuchUser(f"no user {name!r}")
    conn.execute("DELETE FROM usage WHERE user = ?", (name,))  # a new user of that name starts at 0


def _make_user(conn: sqlite3.Connection, r: tuple[Any, ...]) -> User:
    dedicated = tuple(
        n
        for (n,) in conn.execute(
            "SELECT number FROM dedicated_numbers WHERE user = ? ORDER BY rowid", (r[0],)
        )
    )
    return User(
        name=r[0],
        password_hash=r[1],
        emails=tuple(json.loads(r[2])),
        mobile=r[3],
        sender_policy=SenderPolicy(r[4]),
        senders=tuple(json.loads(r[5])),
        monthly_limit=r[6],
        expires=r[7],
        active=bool(r[8]),
        default_country=r[9],
        created_at=r[10],
        transliterate=None if r[11] is None else bool(r[11]),
        forward=bool(r[12]),
        sip_ha1=r[13],
        dedicated=dedicated,
        aliases=tuple(
            w
            for (w,) in conn.execute(
                "SELECT word FROM aliases WHERE user = ? ORDER BY rowid", (r[0],)
            )
        ),
        contacts=tuple(
            conn.execute("SELECT name, number FROM contacts WHERE user = ? ORDER BY name", (r[0],))
        ),
    )


def _get_user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None else _make_user(conn, row)


def _list_users(conn: sqlite3.Connection) -> list[User]:
    rows = conn.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name").fetchall()
    return [_make_user(conn, r) for r in rows]


def _usage(conn: sqlite3.Connection, user: str, period: str) -> int:
    row = conn.execute(
        "SELECT parts FROM usage WHERE user = ? AND period = ?", (user, period)
    ).fetchone()
    return row[0] if row else 0
