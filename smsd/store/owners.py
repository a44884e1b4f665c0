"""The store's queries for handing inbound SMS to their owners (the SQLite side).

Kept apart from ``sqlite.py``'s outbox: these run for the mail channel's
inbox delivery only, on the reader (lookups) and the writer (settling).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from smsd.model import Inbound

INBOX_COLUMNS = "id, received_at, gateway, sender, recipient, text, data, encoding, parts"


def inbound_of(r: tuple[Any, ...]) -> Inbound:
    """An inbox row (``INBOX_COLUMNS``) as the record gateways and channels use."""
    return Inbound(
        id=r[0],
        received_at=r[1],
        gateway=r[2],
        sender=r[3],
        recipient=r[4],
        text=r[5],
        data=r[6],
        encoding=r[7],
        parts=r[8],
    )


def due_inbound(conn: sqlite3.Connection, now: float, limit: int) -> list[Inbound]:
    """Inbound SMS not yet handed to anyone whose next try is due, oldest first."""
    return [
        inbound_of(r)
        for r in conn.execute(
            f"SELECT {INBOX_COLUMNS} FROM inbox WHERE state = 'new' AND next_try <= ?"
            " ORDER BY id LIMIT ?",
            (now, limit),
        )
    ]


def settle_inbound(
    conn: sqlite3.Connection,
    inbox_id: int,
    state: str,
    owner: str | None,
    delivered_to: str | None,
    error: str | None,
    next_try: float,
) -> None:
    """Record one try: ``state`` 'new' (try again at ``next_try``), 'delivered',
    'unowned' (nobody's) or 'failed' (given up)."""
    conn.execute(
        "UPDATE inbox SET state = ?, owner = ?, delivered_to = ?, error = ?, next_try = ?,"
        " attempts = attempts + 1 WHERE id = ?",
        (state, owner, delivered_to, error, next_try, inbox_id),
    )


def recent_writers(
    conn: sqlite3.Connection, phone: str, since: float
) -> list[tuple[str | None, str | None, str | None, float]]:
    """(user, reply_to, origin, created_at) of the messages sent to ``phone`` since
    ``since``, newest first: who may be waiting for this phone's answer."""
    return conn.execute(
        "SELECT user, reply_to, origin, created_at FROM messages"
        " WHERE recipient = ? AND created_at >= ? ORDER BY created_at DESC LIMIT 100",
        (phone, since),
    ).fetchall()


def dedicated_owner(conn: sqlite3.Connection, number: str) -> str | None:
    row = conn.execute("SELECT user FROM dedicated_numbers WHERE number = ?", (number,)).fetchone()
    return None if row is None else row[0]


def alias_owner(conn: sqlite3.Connection, word: str) -> str | None:
    row = conn.execute("SELECT user FROM aliases WHERE word = ?", (word,)).fetchone()
    return None if row is None else row[0]


def user_by_email(conn: sqlite3.Connection, address: str) -> str | None:
    row = conn.execute(
        "SELECT users.name FROM users, json_each(users.emails)"
        " WHERE lower(json_each.value) = lower(?) AND users.active LIMIT 1",
        (address,),
    ).fetchone()
    return None if row is None else row[0]


def inbox_state(conn: sqlite3.Connection, inbox_id: int) -> dict[str, Any] | None:
    cur = conn.execute(
        "SELECT id, state, owner, delivered_to, error, attempts, next_try FROM inbox WHERE id = ?",
        (inbox_id,),
    )
    row = cur.fetchone()
    return None if row is None else dict(zip([c[0] for c in cur.description], row, strict=True))


_REPORTED = "id, recipient, text, status, error, reply_to, origin, created_at, state"


def report_target(conn: sqlite3.Connection, message_id: int) -> dict[str, Any] | None:
    """What a delivery report mail needs of a message: to whom, about what."""
    cur = conn.execute(f"SELECT {_REPORTED} FROM messages WHERE id = ?", (message_id,))
    row = cur.fetchone()
    return None if row is None else dict(zip([c[0] for c in cur.description], row, strict=True))


def delayed_mail(conn: sqlite3.Connection, before: float, limit: int) -> list[dict[str, Any]]:
    """Mail-submitted messages still on their way since ``before`` whose sender was not
    told yet."""
    cur = conn.execute(
        f"SELECT {_REPORTED} FROM messages WHERE state IN ('queued', 'sending')"
        " AND channel = 'smtp' AND warned = 0 AND reply_to IS NOT NULL AND created_at <= ?"
        " ORDER BY id LIMIT ?",
        (before, limit),
    )
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def mark_warned(conn: sqlite3.Connection, ids: list[int]) -> None:
    conn.executemany("UPDATE messages SET warned = 1 WHERE id = ?", [(i,) for i in ids])
