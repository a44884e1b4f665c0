"""SQLite schema and its migrations.

The schema version lives in ``PRAGMA user_version``; each migration is a
list of statements applied in one transaction, so an interrupted upgrade
leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[list[str]] = [
    # 1: outbox, parts, unmatched reports, inbox, users, usage counters
    [
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            user TEXT,
            channel TEXT NOT NULL,
            client_ref TEXT,
            recipient TEXT NOT NULL,
            sender TEXT,
            text TEXT,
            encoding TEXT NOT NULL,
            dcs INTEGER NOT NULL,
            pid INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL,
            truncated INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL,
            pin_gateway TEXT,
            gateway TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            due_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            lease_owner TEXT,
            lease_until REAL,
            status TEXT,
            error TEXT,
            callback_url TEXT,
            reply_to TEXT,
            origin TEXT
        )""",
        "CREATE INDEX messages_state_due ON messages (state, due_at)",
        """CREATE UNIQUE INDEX messages_client_ref
           ON messages (coalesce(user, ''), client_ref, recipient) WHERE client_ref IS NOT NULL""",
        """CREATE TABLE parts (
            message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            udh BLOB NOT NULL,
            body TEXT,
            data BLOB,
            state TEXT NOT NULL,
            gateway TEXT,
            provider_id TEXT,
            status TEXT,
            sent_at REAL,
            done_at REAL,
            PRIMARY KEY (message_id, seq)
        ) WITHOUT ROWID""",
        """CREATE INDEX parts_provider ON parts (gateway, provider_id)
           WHERE provider_id IS NOT NULL""",
        """CREATE TABLE reports (
            id INTEGER PRIMARY KEY,
            received_at REAL NOT NULL,
            gateway TEXT NOT NULL,
            provider_id TEXT NOT NULL,
            state TEXT NOT NULL,
            status TEXT
        )""",
        "CREATE INDEX reports_provider ON reports (gateway, provider_id)",
        """CREATE TABLE inbox (
            id INTEGER PRIMARY KEY,
            received_at REAL NOT NULL,
            gateway TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipient TEXT NOT NULL,
            text TEXT,
            data BLOB,
            encoding TEXT NOT NULL,
            parts INTEGER NOT NULL DEFAULT 1,
            state TEXT NOT NULL DEFAULT 'new',
            owner TEXT
        )""",
        """CREATE TABLE users (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            emails TEXT NOT NULL DEFAULT '[]',
            mobile TEXT,
            sender_policy TEXT NOT NULL,
            senders TEXT NOT NULL DEFAULT '[]',
            monthly_limit INTEGER NOT NULL DEFAULT 0,
            expires TEXT,
            active INTEGER NOT NULL DEFAULT 1,
            default_country TEXT,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE dedicated_numbers (
            number TEXT PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE
        )""",
        """CREATE TABLE usage (
            user TEXT NOT NULL,
            period TEXT NOT NULL,
            parts INTEGER NOT NULL,
            PRIMARY KEY (user, period)
        ) WITHOUT ROWID""",
    ],
    # 2: a user's own choice between transliteration and UCS-2 (NULL: the site's)
    ["ALTER TABLE users ADD COLUMN transliterate INTEGER"],
    # 3: the route a message takes, so that a claim takes only what can go now;
    # partial indexes, so that only waiting and leased messages are indexed by
    # state (a message's later life, sent -> delivered, then touches no index)
    [
        "ALTER TABLE messages ADD COLUMN route TEXT",
        "DROP INDEX messages_state_due",
        "CREATE INDEX messages_queued_due ON messages (due_at) WHERE state = 'queued'",
        "CREATE INDEX messages_queued_route ON messages (route, due_at) WHERE state = 'queued'",
        "CREATE INDEX messages_sending ON messages (lease_until) WHERE state = 'sending'",
    ],
    # 4: parts of concatenated inbound SMS, kept until the message is whole
    [
        """CREATE TABLE inbound_parts (
            gateway TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipient TEXT NOT NULL,
            ref INTEGER NOT NULL,
            total INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            text TEXT,
            data BLOB,
            encoding TEXT NOT NULL,
            received_at REAL NOT NULL,
            PRIMARY KEY (gateway, sender, recipient, ref, total, seq)
        ) WITHOUT ROWID""",
        "CREATE INDEX inbound_parts_age ON inbound_parts (received_at)",
    ],
    # 5: inbound SMS handed to their owners (mail), retried until delivered; who
    # last wrote to a phone (reply tracking) found by recipient and time
    [
        "ALTER TABLE inbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE inbox ADD COLUMN next_try REAL NOT NULL DEFAULT 0",
        "ALTER TABLE inbox ADD COLUMN delivered_to TEXT",
        "ALTER TABLE inbox ADD COLUMN error TEXT",
        "CREATE INDEX inbox_new ON inbox (next_try) WHERE state = 'new'",
        "CREATE INDEX messages_recipient ON messages (recipient, created_at)",
    ],
    # 6: mail-submitted messages whose sender was told of a delay
    ["ALTER TABLE messages ADD COLUMN warned INTEGER NOT NULL DEFAULT 0"],
    # 7: sort words (an SMS whose first word is one belongs to its user) and
    # forwarding of a user's inbound SMS to their mobile
    [
        """CREATE TABLE aliases (
            word TEXT PRIMARY KEY COLLATE NOCASE,
            user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE
        )""",
        "ALTER TABLE users ADD COLUMN forward INTEGER NOT NULL DEFAULT 0",
    ],
    # 8: each user's address book (names a pager or phone may be paged by), and the
    # site's secrets (the key that makes SNPP pass codes), shared by every node
    [
        """CREATE TABLE contacts (
            user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
            name TEXT NOT NULL COLLATE NOCASE,
            number TEXT NOT NULL,
            PRIMARY KEY (user, name)
        )""",
        """CREATE TABLE secrets (
            name TEXT PRIMARY KEY,
            value BLOB NOT NULL
        )""",
    ],
    # 9: chat and SIP phones. A JID linked to a user (jabber:iq:register or
    # smsd-admin), with whether that user's inbound SMS go there as chat; a SIP
    # phone's registration (REGISTER) of a user; the user's SIP digest secret
    # (HA1 = md5(user:realm:password), made when the password is set, never the
    # password itself).
    [
        """CREATE TABLE xmpp_links (
            jid TEXT PRIMARY KEY COLLATE NOCASE,
            user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
            inbound INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX xmpp_links_user ON xmpp_links (user)",
        """CREATE TABLE sip_bindings (
            user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
            contact TEXT NOT NULL,
            expires_at REAL NOT NULL,
            transport TEXT NOT NULL,
            source TEXT NOT NULL,
            call_id TEXT NOT NULL DEFAULT '',
            cseq INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user, contact)
        )""",
        "ALTER TABLE users ADD COLUMN sip_ha1 TEXT",
    ],
]

VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    pass


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to ``VERSION``; returns the version it had."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > VERSION:
        raise SchemaTooNew(
            f"database schema version {current} is newer than this smsd knows ({VERSION})"
        )
    for version in range(current + 1, VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return current
