"""The store's SIP registrations (RFC 3261 section 10): which phones a user registered.

Kept in the store, not in memory, so that a restart or another node still knows
where a user's phone is until its registration runs out.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import attrs


@attrs.frozen
class Binding:
    contact: str  # the Contact URI the phone gave ("sip:alice@192.0.2.7:5062")
    expires_at: float
    transport: str  # "udp" or "tcp": how it registered
    source: str  # "host:port" the REGISTER came from (behind a NAT: not the contact)
    call_id: str = ""
    cseq: int = 0


_COLUMNS = "contact, expires_at, transport, source, call_id, cseq"


def bindings(conn: sqlite3.Connection, user: str, now: float) -> list[Binding]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM sip_bindings WHERE user = ? AND expires_at > ?"
        " ORDER BY expires_at DESC",
        (user, now),
    ).fetchall()
    return [Binding(*r) for r in rows]


def register(
    conn: sqlite3.Connection,
    user: str,
    changes: list[Binding],
    remove_all: bool,
    now: float,
) -> list[Binding]:
    """Apply one REGISTER: bindings with ``expires_at <= now`` are removed, the others
    added or refreshed; ``remove_all`` (``Contact: *``) removes every one first. A
    REGISTER older than the one that made a binding (same Call-ID, lower CSeq) leaves
    it alone. Returns the user's bindings after it."""
    conn.execute("DELETE FROM sip_bindings WHERE expires_at <= ?", (now,))
    if remove_all:
        conn.execute("DELETE FROM sip_bindings WHERE user = ?", (user,))
    for b in changes:
        row: Any = conn.execute(
            "SELECT call_id, cseq FROM sip_bindings WHERE user = ? AND contact = ?",
            (user, b.contact),
        ).fetchone()
        if row is not None and row[0] == b.call_id and row[1] > b.cseq:
            continue  # a reordered, older REGISTER
        if b.expires_at <= now:
            conn.execute(
                "DELETE FROM sip_bindings WHERE user = ? AND contact = ?", (user, b.contact)
            )
            continue
        conn.execute(
            f"INSERT OR REPLACE INTO sip_bindings (user, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user, b.contact, b.expires_at, b.transport, b.source, b.call_id, b.cseq),
        )
    return bindings(conn, user, now)
