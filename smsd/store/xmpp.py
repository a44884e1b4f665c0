"""The store's XMPP links: which bare JIDs are which smsd user's.

Kept in the store so that every node and every restart knows who a JID is;
``inbound`` says whether SMS for that user may be handed to that JID as chat.
"""

from __future__ import annotations

import sqlite3

import attrs

from smsd.store import NoSuchUser


@attrs.frozen
class Link:
    jid: str  # bare, as linked (compared without case)
    user: str
    inbound: bool = True
    created_at: float = 0.0


_COLUMNS = "jid, user, inbound, created_at"


def _link(row: tuple[str, str, int, float]) -> Link:
    return Link(row[0], row[1], bool(row[2]), row[3])


def link(conn: sqlite3.Connection, jid: str, user: str, inbound: bool, now: float) -> None:
    """Link (or re-link: the JID's owner proved who they are) a bare JID to a user."""
    if conn.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is None:
        raise NoSuchUser(f"no user {user!r}")
    conn.execute(
        "INSERT INTO xmpp_links (jid, user, inbound, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (jid) DO UPDATE SET user = excluded.user, inbound = excluded.inbound",
        (jid, user, int(inbound), now),
    )


def unlink(conn: sqlite3.Connection, jid: str) -> bool:
    return conn.execute("DELETE FROM xmpp_links WHERE jid = ?", (jid,)).rowcount > 0


def owner(conn: sqlite3.Connection, jid: str) -> str | None:
    row = conn.execute("SELECT user FROM xmpp_links WHERE jid = ?", (jid,)).fetchone()
    return None if row is None else row[0]


def links(conn: sqlite3.Connection, user: str | None) -> list[Link]:
    """One user's links (every link with ``user=None``), oldest first."""
    if user is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM xmpp_links ORDER BY user, rowid")
    else:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM xmpp_links WHERE user = ? ORDER BY rowid", (user,)
        )
    return [_link(r) for r in rows.fetchall()]
