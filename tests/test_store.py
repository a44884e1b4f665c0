"""The SQLite store, as the core, the dispatcher and the admin tool see it.

Every test opens a fresh ``SQLiteStore`` on a file in its own temporary
directory; the store's threads answer through the global reactor, which trial
runs. Times are fixed epoch seconds passed in explicitly: the store never
reads the clock itself.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from typing import Any

import attrs
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from smsd.model import (
    Inbound,
    InboundPart,
    Message,
    OutPart,
    PartResult,
    Report,
    SenderPolicy,
    State,
    User,
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
)
from smsd.store.schema import MIGRATIONS, VERSION, SchemaTooNew, migrate
from smsd.store.sqlite import SQLiteStore
from tests.fakes import out_parts

NOW = 1_800_000_000.0
DAY = 86_400.0
PERIOD = "2027-01"
ALICE = "+15551230001"
BOB = "+15551230002"
CAROL = "+15551230003"


def new_message(
    recipient: str = ALICE,
    *,
    parts: int = 1,
    user: str | None = None,
    client_ref: str | None = None,
    due_at: float = NOW,
    expires_at: float = NOW + DAY,
    created_at: float = NOW,
    text: str = "hello",
    pin_gateway: str | None = None,
    callback_url: str | None = None,
) -> NewMessage:
    return NewMessage(
        recipient=recipient,
        sender="smsd",
        text=text,
        encoding="gsm7",
        dcs=0,
        pid=0,
        parts=out_parts(parts, text),
        created_at=created_at,
        due_at=due_at,
        expires_at=expires_at,
        user=user,
        channel="http",
        client_ref=client_ref,
        pin_gateway=pin_gateway,
        callback_url=callback_url,
    )


def provider_id(message_id: int, seq: int) -> str:
    return f"p{message_id}-{seq}"


def sent_outcome(
    message: Message, *, gateway: str = "gw1", at: float = NOW + 1, status: str = "accepted"
) -> Outcome:
    """What the dispatcher records when the gateway accepted every part it was given."""
    results = tuple(
        PartResult(p.seq, True, provider_id(message.id, p.seq), status, gateway=gateway)
        for p in message.parts
    )
    return Outcome(message.id, gateway, results, State.SENT, at)


def change_for(message: NewMessage, message_id: int, state: State, status: str | None) -> Change:
    return Change(
        message_id,
        state,
        status,
        message.user,
        message.channel,
        message.client_ref,
        message.callback_url,
        message.recipient,
    )


class StoreTestCase(unittest.TestCase):
    """A fresh store per test, closed (and waited for) in cleanup."""

    timeout = 60

    def setUp(self) -> None:
        # Not self.mktemp(): under pytest that lands in the checkout, not in _trial_temp.
        self.directory = tempfile.mkdtemp(prefix="smsd-test-store-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.path = os.path.join(self.directory, "data", "smsd.db")
        self._closed: set[int] = set()
        self.store = self.open_store()

    writer = "thread"

    def open_store(self) -> SQLiteStore:
        store = SQLiteStore.open(self.path, writer=self.writer)
        self.addCleanup(self._cleanup_store, store)
        return store

    def _cleanup_store(self, store: SQLiteStore) -> defer.Deferred[None] | None:
        if id(store) in self._closed:
            return None
        return store.close()

    async def close_store(self, store: SQLiteStore) -> None:
        self._closed.add(id(store))
        await store.close()

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the file directly, as an operator with the sqlite3 shell would."""
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def count(self, table: str) -> int:
        return self.query(f"SELECT count(*) FROM {table}")[0][0]

    def lease(self, message_id: int) -> tuple[str | None, float | None]:
        owner, until = self.query(
            "SELECT lease_owner, lease_until FROM messages WHERE id = ?", (message_id,)
        )[0]
        return owner, until

    async def add(self, *messages: NewMessage, charge: Charge | None = None) -> list[int]:
        added = await self.store.add_messages(list(messages), charge)
        return [a.id for a in added]

    async def message(self, message_id: int) -> dict[str, Any]:
        found = await self.store.get_message(message_id)
        assert found is not None, f"message {message_id} is gone"
        return found

    async def part_states(self, message_id: int) -> list[str]:
        return [p["state"] for p in (await self.message(message_id))["parts"]]

    async def claim_one(self, owner: str = "node1", now: float = NOW, lease: float = 30) -> Message:
        claimed = await self.store.claim(owner, now, lease, 10)
        self.assertEqual(len(claimed), 1, claimed)
        return claimed[0]

    async def sent_message(self, message: NewMessage | None = None) -> tuple[int, Message]:
        """Add, claim and record as sent with provider ids ``p<id>-<seq>`` on gw1."""
        (message_id,) = await self.add(message or new_message())
        claimed = await self.claim_one()
        self.assertEqual(claimed.id, message_id)
        await self.store.record([sent_outcome(claimed)])
        return message_id, claimed


class MigrationTests(StoreTestCase):
    def test_new_file_gets_current_version(self) -> None:
        """A new file is created and migrated to ``VERSION`` on open."""
        self.assertTrue(os.path.exists(self.path))
        self.assertEqual(self.query("PRAGMA user_version"), [(VERSION,)])
        tables = {name for (name,) in self.query("SELECT name FROM sqlite_master")}
        self.assertLessEqual(
            {"messages", "parts", "reports", "inbox", "users", "dedicated_numbers", "usage"},
            tables,
        )
        self.assertEqual(self.query("PRAGMA journal_mode"), [("wal",)])

    async def test_reopen_is_a_noop(self) -> None:
        """Opening an up-to-date file again changes nothing and keeps the data."""
        (message_id,) = await self.add(new_message())
        await self.close_store(self.store)
        store = self.open_store()
        self.assertEqual(self.query("PRAGMA user_version"), [(VERSION,)])
        found = await store.get_message(message_id)
        assert found is not None
        self.assertEqual(found["recipient"], ALICE)
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            self.assertEqual(migrate(conn), VERSION)  # the version it had: nothing to do
        finally:
            conn.close()

    def test_newer_schema_refused(self) -> None:
        """A database written by a newer smsd is not touched."""
        path = os.path.join(self.directory, "newer.db")
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {VERSION + 1}")
        conn.close()
        error = self.assertRaises(SchemaTooNew, SQLiteStore.open, path)
        self.assertIn(str(VERSION + 1), str(error))
        conn = sqlite3.connect(path)
        try:
            self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], VERSION + 1)
            self.assertEqual(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0], 0)
        finally:
            conn.close()

    def test_failed_migration_keeps_previous_version(self) -> None:
        """A migration that breaks half way leaves the file at the version before."""
        from smsd.store import schema

        self.patch(schema, "MIGRATIONS", [*MIGRATIONS, ["CREATE TABLE extra (a)", "NONSENSE"]])
        self.patch(schema, "VERSION", VERSION + 1)
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            self.assertRaises(sqlite3.OperationalError, schema.migrate, conn)
            self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], VERSION)
            self.assertEqual(
                conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone(),
                (0,),
            )
        finally:
            conn.close()


class AddMessagesTests(StoreTestCase):
    async def test_ids_in_order_and_parts_stored(self) -> None:
        """Ids come back in the order given; get_message shows every part."""
        binary = NewMessage(
            recipient=CAROL,
            sender=None,
            text=None,
            encoding="binary",
            dcs=4,
            pid=0,
            parts=(OutPart(1, b"\x06\x05\x04\x0b\x84\x23\xf0", None, b"\x01\x02\xff"),),
            created_at=NOW,
            due_at=NOW,
            expires_at=NOW + DAY,
        )
        added = await self.store.add_messages(
            [new_message(ALICE), new_message(BOB, parts=2, text="long"), binary], None
        )
        self.assertEqual([a.parts for a in added], [1, 2, 1])
        self.assertEqual([a.duplicate for a in added], [False, False, False])
        ids = [a.id for a in added]
        self.assertEqual(ids, sorted(set(ids)))

        first = await self.message(ids[0])
        self.assertEqual(
            (first["recipient"], first["sender"], first["text"], first["state"], first["total"]),
            (ALICE, "smsd", "hello", "queued", 1),
        )
        self.assertEqual(
            [(p["seq"], p["text"], p["udh"], p["data"], p["state"]) for p in first["parts"]],
            [(1, "hello", None, None, "queued")],
        )
        second = await self.message(ids[1])
        self.assertEqual(second["total"], 2)
        self.assertEqual(
            [(p["seq"], p["text"], p["udh"], p["state"]) for p in second["parts"]],
            [(1, "long 1", "0500032a0201", "queued"), (2, "long 2", "0500032a0202", "queued")],
        )
        third = await self.message(ids[2])
        self.assertEqual((third["encoding"], third["dcs"], third["text"]), ("binary", 4, None))
        self.assertEqual(
            [(p["udh"], p["data"], p["text"]) for p in third["parts"]],
            [("0605040b8423f0", "0102ff", None)],
        )

    async def test_client_ref_duplicate_returns_first_id(self) -> None:
        """The same user, client_ref and recipient again: nothing new is queued."""
        first = await self.store.add_messages(
            [new_message(user="alice", client_ref="r1", parts=2)], None
        )
        again = await self.store.add_messages(
            [new_message(user="alice", client_ref="r1", text="other text")], None
        )
        self.assertEqual(again, [Added(first[0].id, 2, duplicate=True)])
        self.assertEqual(self.count("messages"), 1)
        self.assertEqual(self.count("parts"), 2)
        self.assertEqual((await self.message(first[0].id))["text"], "hello")

    async def test_anonymous_client_ref_duplicate(self) -> None:
        """Without a user the client_ref still de-duplicates."""
        (first,) = await self.add(new_message(client_ref="anon"))
        again = await self.store.add_messages([new_message(client_ref="anon")], None)
        self.assertEqual(again, [Added(first, 1, duplicate=True)])
        self.assertEqual(self.count("messages"), 1)

    async def test_duplicate_within_one_call(self) -> None:
        """Two equal references in one submission: the second is the first's duplicate."""
        added = await self.store.add_messages(
            [new_message(user="alice", client_ref="r"), new_message(user="alice", client_ref="r")],
            None,
        )
        self.assertEqual(added[1], Added(added[0].id, 1, duplicate=True))
        self.assertFalse(added[0].duplicate)
        self.assertEqual(self.count("messages"), 1)

    async def test_same_client_ref_other_recipient_or_user_is_new(self) -> None:
        """The reference is per user and per recipient."""
        added = await self.store.add_messages(
            [
                new_message(ALICE, user="alice", client_ref="r"),
                new_message(BOB, user="alice", client_ref="r"),
                new_message(ALICE, user="bob", client_ref="r"),
                new_message(ALICE, client_ref="r"),
                new_message(ALICE, user="alice"),
                new_message(ALICE, user="alice"),
            ],
            None,
        )
        self.assertEqual([a.duplicate for a in added], [False] * 6)
        self.assertEqual(len({a.id for a in added}), 6)
        self.assertEqual(self.count("messages"), 6)


class QuotaTests(StoreTestCase):
    async def test_up_to_the_limit_then_refused(self) -> None:
        """Parts are counted; the insert that would pass the limit fails and leaves nothing."""
        await self.add(new_message(user="alice", parts=2), charge=Charge("alice", PERIOD, 2, 3))
        self.assertEqual(await self.store.usage("alice", PERIOD), 2)
        await self.add(new_message(user="alice"), charge=Charge("alice", PERIOD, 1, 3))
        self.assertEqual(await self.store.usage("alice", PERIOD), 3)

        error = await self.assertFailure(
            self.store.add_messages(
                [new_message(BOB, user="alice")], Charge("alice", PERIOD, 1, 3)
            ),
            QuotaExceeded,
        )
        self.assertEqual((error.used, error.limit, error.wanted), (3, 3, 1))
        self.assertIn("3 of 3", str(error))
        self.assertEqual(self.count("messages"), 2)
        self.assertEqual(self.count("parts"), 3)
        self.assertEqual(await self.store.usage("alice", PERIOD), 3)
        self.assertEqual(await self.store.usage("alice", "2027-02"), 0)
        self.assertEqual(await self.store.usage("bob", PERIOD), 0)

    async def test_refused_submission_inserts_none_of_its_messages(self) -> None:
        """Several recipients in one call: all or nothing."""
        await self.assertFailure(
            self.store.add_messages(
                [new_message(ALICE, user="alice"), new_message(BOB, user="alice", parts=2)],
                Charge("alice", PERIOD, 3, 2),
            ),
            QuotaExceeded,
        )
        self.assertEqual((self.count("messages"), self.count("parts")), (0, 0))
        self.assertEqual(await self.store.usage("alice", PERIOD), 0)

    async def test_duplicates_are_not_charged(self) -> None:
        """A repeated client_ref costs nothing, even when the limit is reached."""
        charge = Charge("alice", PERIOD, 2, 2)
        (first,) = await self.add(new_message(user="alice", client_ref="r", parts=2), charge=charge)
        again = await self.store.add_messages(
            [new_message(user="alice", client_ref="r", parts=2)], charge
        )
        self.assertEqual(again, [Added(first, 2, duplicate=True)])
        self.assertEqual(await self.store.usage("alice", PERIOD), 2)

    async def test_zero_limit_counts_but_never_refuses(self) -> None:
        for _ in range(3):
            await self.add(new_message(user="alice", parts=2), charge=Charge("alice", PERIOD, 2, 0))
        self.assertEqual(await self.store.usage("alice", PERIOD), 6)

    async def test_refusal_in_a_batch_does_not_stop_the_others(self) -> None:
        """Concurrent submissions share a group commit; the one over quota fails alone."""
        lock = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(lock.close)
        lock.execute("BEGIN IMMEDIATE")  # hold the writer so that the operations pile up
        ds = [
            self.store.add_messages(
                [new_message(ALICE, user="alice")], Charge("alice", PERIOD, 1, 3)
            ),
            self.store.add_messages(
                [new_message(BOB, user="alice", parts=3)], Charge("alice", PERIOD, 3, 3)
            ),
            self.store.add_messages(
                [new_message(CAROL, user="alice", parts=2)], Charge("alice", PERIOD, 2, 3)
            ),
            self.store.add_messages([new_message(CAROL, user="bob")], None),
        ]
        await deferLater(reactor, 0.05, lock.execute, "COMMIT")
        results = await defer.DeferredList(ds, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, False, True, True])
        results[1][1].trap(QuotaExceeded)
        self.assertEqual((results[1][1].value.used, results[1][1].value.wanted), (1, 3))
        self.assertEqual(self.count("messages"), 3)
        self.assertEqual(self.count("parts"), 4)
        self.assertEqual(
            sorted(r for (r,) in self.query("SELECT recipient FROM messages")),
            sorted([ALICE, CAROL, CAROL]),
        )
        self.assertEqual(await self.store.usage("alice", PERIOD), 3)


class ClaimTests(StoreTestCase):
    async def test_claims_only_due_messages(self) -> None:
        """A message with a future not_before waits until it is due."""
        now_id, later_id = await self.add(new_message(ALICE), new_message(BOB, due_at=NOW + 60))
        claimed = await self.store.claim("node1", NOW, 30, 10)
        self.assertEqual([m.id for m in claimed], [now_id])
        self.assertEqual(await self.store.claim("node1", NOW + 59, 30, 10), [])
        claimed = await self.store.claim("node1", NOW + 60, 30, 10)
        self.assertEqual([m.id for m in claimed], [later_id])

    async def test_claim_sets_sending_and_lease(self) -> None:
        (message_id,) = await self.add(new_message())
        await self.claim_one("node1", NOW, 30)
        self.assertEqual((await self.message(message_id))["state"], "sending")
        self.assertEqual(self.lease(message_id), ("node1", NOW + 30))

    async def test_claimed_message_carries_what_the_gateway_needs(self) -> None:
        (message_id,) = await self.add(
            new_message(BOB, parts=2, user="alice", pin_gateway="modem1", expires_at=NOW + 99)
        )
        m = await self.claim_one()
        self.assertEqual(
            (m.id, m.recipient, m.sender, m.encoding, m.dcs, m.pid, m.total, m.user, m.gateway),
            (message_id, BOB, "smsd", "gsm7", 0, 0, 2, "alice", "modem1"),
        )
        self.assertEqual((m.attempts, m.expires_at, m.created_at), (0, NOW + 99, NOW))
        self.assertEqual(m.parts, out_parts(2))

    async def test_at_most_limit_earliest_due_first(self) -> None:
        """``limit`` bounds the claim; the earliest due messages go first."""
        ids = await self.add(
            new_message(ALICE, due_at=NOW - 10),
            new_message(BOB, due_at=NOW - 30),
            new_message(CAROL, due_at=NOW - 20),
        )
        claimed = await self.store.claim("node1", NOW, 30, 2)
        self.assertEqual(sorted(m.id for m in claimed), sorted([ids[1], ids[2]]))
        claimed = await self.store.claim("node1", NOW, 30, 2)
        self.assertEqual([m.id for m in claimed], [ids[0]])

    async def test_claim_returns_messages_in_due_order(self) -> None:
        """The batch comes back ordered by due_at, as the dispatcher hands it out."""
        ids = await self.add(
            new_message(ALICE, due_at=NOW - 10),
            new_message(BOB, due_at=NOW - 30),
            new_message(CAROL, due_at=NOW - 20),
        )
        claimed = await self.store.claim("node1", NOW, 30, 10)
        self.assertEqual([m.id for m in claimed], [ids[1], ids[2], ids[0]])

    async def test_second_claim_does_not_return_the_same_messages(self) -> None:
        await self.add(*(new_message(f"+1555123{i:04d}") for i in range(5)))
        first = await self.store.claim("node1", NOW, 30, 10)
        self.assertEqual(len(first), 5)
        self.assertEqual(await self.store.claim("node1", NOW, 30, 10), [])
        self.assertEqual(await self.store.claim("node2", NOW + 1, 30, 10), [])

    async def test_concurrent_claims_split_the_queue(self) -> None:
        """Two claims issued together never hand out one message twice."""
        await self.add(*(new_message(f"+1555123{i:04d}") for i in range(20)))
        first, second = await defer.gatherResults(
            [self.store.claim("node1", NOW, 30, 12), self.store.claim("node2", NOW, 30, 12)]
        )
        ids = [m.id for m in first] + [m.id for m in second]
        self.assertEqual((len(first), len(second)), (12, 8))
        self.assertEqual(len(set(ids)), 20)

    async def test_reclaim_returns_only_parts_still_queued(self) -> None:
        """After a partial send only the parts never acknowledged go out again."""
        (message_id,) = await self.add(new_message(parts=3))
        m = await self.claim_one()
        await self.store.record(
            [
                Outcome(
                    message_id,
                    "gw1",
                    (
                        PartResult(1, True, "p1", gateway="gw1"),
                        PartResult(2, False, status="throttled", temporary=True, gateway="gw1"),
                        PartResult(3, True, "p3", gateway="gw1"),
                    ),
                    State.QUEUED,
                    NOW + 1,
                    due_at=NOW + 10,
                )
            ]
        )
        self.assertEqual(m.attempts, 0)
        self.assertEqual(await self.store.claim("node1", NOW + 9, 30, 10), [])
        again = await self.claim_one(now=NOW + 10)
        self.assertEqual([p.seq for p in again.parts], [2])
        self.assertEqual((again.total, again.attempts), (3, 1))


class ClaimAtCommitTests(StoreTestCase):
    """add_batch with a Claim: what can go now is leased in the same commit."""

    async def test_route_limits_and_due_messages(self) -> None:
        batch = [
            (
                [
                    attrs.evolve(new_message(ALICE), route="r1"),
                    attrs.evolve(new_message(BOB), route="r1"),
                ],
                None,
            ),
            ([attrs.evolve(new_message(CAROL), route="r2")], None),
            ([attrs.evolve(new_message(ALICE, due_at=NOW + 60), route="r1")], None),
        ]
        claim = Claim("node1", NOW + 30, {"r1": 1, "r2": 5})
        results, taken = await self.store.add_batch(batch, claim)
        ids = [a.id for r in results for a in r]
        self.assertEqual([m.id for m in taken], [ids[0], ids[2]])  # one of r1, and r2
        states = [(await self.message(i))["state"] for i in ids]
        self.assertEqual(states, ["sending", "queued", "sending", "queued"])
        self.assertEqual(self.lease(ids[0]), ("node1", NOW + 30))
        self.assertEqual(self.lease(ids[1]), (None, None))
        m = taken[0]
        self.assertEqual(
            (m.recipient, m.route, m.attempts, m.parts), (ALICE, "r1", 0, out_parts(1))
        )
        # What was not taken is claimed the usual way; what was taken is not claimed again.
        claimed = await self.store.claim("node1", NOW, 30, 10)
        self.assertEqual([c.id for c in claimed], [ids[1]])

    async def test_a_leased_message_records_like_a_claimed_one(self) -> None:
        claim = Claim("node1", NOW + 30, {None: 1})
        (result,), (m,) = await self.store.add_batch([([new_message()], None)], claim)
        await self.store.record([sent_outcome(m)], "node1")
        self.assertEqual((await self.message(result[0].id))["state"], "sent")


class RecordTests(StoreTestCase):
    async def test_sent(self) -> None:
        """SENT: message and parts sent, provider ids kept, lease gone, a Change to tell."""
        msg = new_message(parts=2, user="alice", client_ref="r9", callback_url="http://cb/x")
        (message_id,) = await self.add(msg)
        m = await self.claim_one()
        changes = await self.store.record([sent_outcome(m, at=NOW + 2)])
        self.assertEqual(changes, [change_for(msg, message_id, State.SENT, "accepted")])
        found = await self.message(message_id)
        self.assertEqual(
            (found["state"], found["gateway"], found["attempts"], found["status"]),
            ("sent", "gw1", 1, "accepted"),
        )
        self.assertEqual(
            [(p["state"], p["gateway"], p["provider_id"], p["sent_at"]) for p in found["parts"]],
            [
                ("sent", "gw1", provider_id(message_id, 1), NOW + 2),
                ("sent", "gw1", provider_id(message_id, 2), NOW + 2),
            ],
        )
        self.assertEqual(self.lease(message_id), (None, None))
        self.assertEqual(await self.store.claim("node1", NOW + 100, 30, 10), [])

    async def test_requeue_counts_the_attempt(self) -> None:
        (message_id,) = await self.add(new_message())
        m = await self.claim_one()
        changes = await self.store.record(
            [
                Outcome(
                    m.id,
                    "gw1",
                    (PartResult(1, False, status="busy", temporary=True, gateway="gw1"),),
                    State.QUEUED,
                    NOW + 1,
                    due_at=NOW + 30,
                    error="busy",
                )
            ]
        )
        self.assertEqual(changes, [])
        found = await self.message(message_id)
        self.assertEqual(
            (found["state"], found["attempts"], found["due_at"], found["error"]),
            ("queued", 1, NOW + 30, "busy"),
        )
        self.assertEqual(await self.part_states(message_id), ["queued"])
        self.assertEqual(self.lease(message_id), (None, None))
        self.assertEqual(await self.store.next_due(), NOW + 30)
        self.assertEqual((await self.claim_one(now=NOW + 30)).attempts, 1)

    async def test_requeue_without_counting(self) -> None:
        """Released unsent (no gateway free): the attempt is not counted."""
        (message_id,) = await self.add(new_message())
        m = await self.claim_one()
        await self.store.record(
            [Outcome(m.id, None, (), State.QUEUED, NOW + 1, NOW + 5, count_attempt=False)]
        )
        found = await self.message(message_id)
        self.assertEqual((found["state"], found["attempts"]), ("queued", 0))
        self.assertEqual((await self.claim_one(now=NOW + 5)).attempts, 0)

    async def test_failed(self) -> None:
        msg = new_message()
        (message_id,) = await self.add(msg)
        m = await self.claim_one()
        changes = await self.store.record(
            [
                Outcome(
                    m.id,
                    "gw1",
                    (PartResult(1, False, status="invalid number", temporary=False),),
                    State.FAILED,
                    NOW + 1,
                    error="invalid number",
                )
            ]
        )
        self.assertEqual(changes, [change_for(msg, message_id, State.FAILED, "invalid number")])
        found = await self.message(message_id)
        self.assertEqual((found["state"], found["error"]), ("failed", "invalid number"))
        self.assertEqual(
            [(p["state"], p["gateway"], p["status"]) for p in found["parts"]],
            [("failed", "gw1", "invalid number")],
        )
        self.assertEqual(self.lease(message_id), (None, None))

    async def test_expired_marks_remaining_parts_expired(self) -> None:
        """EXPIRED: the parts still to send expire; an acknowledged part stays sent."""
        msg = new_message(parts=2)
        (message_id,) = await self.add(msg)
        m = await self.claim_one()
        await self.store.record(
            [
                Outcome(
                    m.id,
                    "gw1",
                    (PartResult(1, True, "p1", gateway="gw1"), PartResult(2, False)),
                    State.QUEUED,
                    NOW + 1,
                    due_at=NOW + 2,
                )
            ]
        )
        m = await self.claim_one(now=NOW + 2)
        changes = await self.store.record(
            [Outcome(m.id, None, (), State.EXPIRED, NOW + 3, error="validity period ended")]
        )
        self.assertEqual(changes, [change_for(msg, message_id, State.EXPIRED, None)])
        found = await self.message(message_id)
        self.assertEqual((found["state"], found["error"]), ("expired", "validity period ended"))
        self.assertEqual(await self.part_states(message_id), ["sent", "expired"])

    async def test_record_batch_of_outcomes(self) -> None:
        """One record() call carries the outcomes of many messages."""
        ids = await self.add(*(new_message(f"+1555123{i:04d}") for i in range(4)))
        claimed = await self.store.claim("node1", NOW, 30, 10)
        outcomes = [sent_outcome(m) for m in claimed[:2]] + [
            Outcome(m.id, None, (), State.QUEUED, NOW + 1, NOW + 9, False) for m in claimed[2:]
        ]
        changes = await self.store.record(outcomes)
        self.assertEqual(sorted(c.message_id for c in changes), sorted(ids[:2]))
        states = [(await self.message(i))["state"] for i in ids]
        self.assertEqual(states, ["sent", "sent", "queued", "queued"])

    async def test_record_for_a_message_not_leased_changes_no_state(self) -> None:
        """A result for a message that is not ``sending`` does not move it."""
        (message_id,) = await self.add(new_message())
        changes = await self.store.record(
            [Outcome(message_id, "gw1", (), State.FAILED, NOW + 1, error="late")]
        )
        self.assertEqual(changes, [])
        self.assertEqual((await self.message(message_id))["state"], "queued")

    async def test_gave_up_message_leaves_no_part_queued(self) -> None:
        """FAILED after temporary errors (max attempts): no part of it stays queued."""
        (message_id,) = await self.add(new_message(parts=2))
        m = await self.claim_one()
        await self.store.record([self._gave_up(m)])
        self.assertEqual((await self.message(message_id))["state"], "failed")
        self.assertEqual(await self.part_states(message_id), ["sent", "failed"])

    @staticmethod
    def _gave_up(m: Message) -> Outcome:
        """Part 1 accepted, part 2 refused for now, and the dispatcher gives up."""
        return Outcome(
            m.id,
            "gw1",
            (
                PartResult(1, True, provider_id(m.id, 1), "accepted", gateway="gw1"),
                PartResult(2, False, status="throttled", temporary=True, gateway="gw1"),
            ),
            State.FAILED,
            NOW + 1,
            error="gave up after 5 attempts: throttled",
        )


class LeaseTests(StoreTestCase):
    async def _two_leases(self) -> tuple[int, int]:
        """node1 leases the first message, node2 the second, both until NOW + 30."""
        ids = await self.add(new_message(ALICE), new_message(BOB, due_at=NOW + 1))
        self.assertEqual((await self.claim_one("node1", NOW, 30)).id, ids[0])
        self.assertEqual((await self.claim_one("node2", NOW + 1, 29)).id, ids[1])
        return ids[0], ids[1]

    async def test_own_releases_mine_and_anyones_expired(self) -> None:
        """At start: this owner's leases go back at once, others' only when expired."""
        mine, theirs = await self._two_leases()
        self.assertEqual(await self.store.release_leases("node1", NOW + 10, True), 1)
        self.assertEqual((await self.message(mine))["state"], "queued")
        self.assertEqual(self.lease(mine), (None, None))
        self.assertEqual((await self.message(theirs))["state"], "sending")
        self.assertEqual(self.lease(theirs), ("node2", NOW + 30))

        self.assertEqual(await self.store.release_leases("node1", NOW + 31, True), 1)
        self.assertEqual((await self.message(theirs))["state"], "queued")
        claimed = await self.store.claim("node1", NOW + 31, 30, 10)
        self.assertEqual(sorted(m.id for m in claimed), sorted([mine, theirs]))
        self.assertEqual([m.attempts for m in claimed], [0, 0])

    async def test_not_own_releases_only_others_expired(self) -> None:
        """Housekeeping never takes this owner's own leases, even when expired."""
        mine, theirs = await self._two_leases()
        self.assertEqual(await self.store.release_leases("node1", NOW + 10, False), 0)
        self.assertEqual(await self.store.release_leases("node1", NOW + 31, False), 1)
        self.assertEqual((await self.message(theirs))["state"], "queued")
        self.assertEqual(self.lease(theirs), (None, None))
        self.assertEqual((await self.message(mine))["state"], "sending")
        self.assertEqual(self.lease(mine), ("node1", NOW + 30))

    async def test_release_leaves_final_messages_alone(self) -> None:
        message_id, _ = await self.sent_message()
        self.assertEqual(await self.store.release_leases("node1", NOW + 100, True), 0)
        self.assertEqual((await self.message(message_id))["state"], "sent")


class ReportTests(StoreTestCase):
    async def test_delivered(self) -> None:
        """A report matched by (gateway, provider id) delivers part and message."""
        msg = new_message(user="alice", client_ref="c1", callback_url="https://app/cb")
        message_id, _ = await self.sent_message(msg)
        changes = await self.store.apply_reports(
            [Report("gw1", provider_id(message_id, 1), State.DELIVERED, "stat:DELIVRD", NOW + 5)]
        )
        self.assertEqual(changes, [change_for(msg, message_id, State.DELIVERED, "stat:DELIVRD")])
        found = await self.message(message_id)
        self.assertEqual((found["state"], found["status"]), ("delivered", "stat:DELIVRD"))
        self.assertEqual(
            [(p["state"], p["status"], p["done_at"]) for p in found["parts"]],
            [("delivered", "stat:DELIVRD", NOW + 5)],
        )

    async def test_undeliverable(self) -> None:
        msg = new_message()
        message_id, _ = await self.sent_message(msg)
        changes = await self.store.apply_reports(
            [Report("gw1", provider_id(message_id, 1), State.FAILED, "stat:UNDELIV", NOW + 5)]
        )
        self.assertEqual(changes, [change_for(msg, message_id, State.FAILED, "stat:UNDELIV")])
        self.assertEqual(await self.part_states(message_id), ["failed"])

    async def test_other_gateway_does_not_match(self) -> None:
        """Provider ids are only unique per gateway."""
        message_id, _ = await self.sent_message()
        changes = await self.store.apply_reports(
            [Report("gw2", provider_id(message_id, 1), State.DELIVERED, "x", NOW + 5)]
        )
        self.assertEqual(changes, [])
        self.assertEqual((await self.message(message_id))["state"], "sent")
        self.assertEqual((await self.store.queue_stats(NOW))["pending_reports"], 1)

    async def test_repeated_report_changes_nothing(self) -> None:
        message_id, _ = await self.sent_message()
        pid = provider_id(message_id, 1)
        first = await self.store.apply_reports([Report("gw1", pid, State.DELIVERED, "ok", NOW + 5)])
        self.assertEqual(len(first), 1)
        again = await self.store.apply_reports(
            [
                Report("gw1", pid, State.DELIVERED, "ok again", NOW + 6),
                Report("gw1", pid, State.FAILED, "late failure", NOW + 7),
            ]
        )
        self.assertEqual(again, [])
        found = await self.message(message_id)
        self.assertEqual((found["state"], found["status"]), ("delivered", "ok"))
        self.assertEqual([p["status"] for p in found["parts"]], ["ok"])

    async def test_intermediate_report_keeps_words_not_state(self) -> None:
        """An ENROUTE/ACCEPTD report is noted on the part; the state stays sent."""
        message_id, _ = await self.sent_message()
        pid = provider_id(message_id, 1)
        changes = await self.store.apply_reports(
            [Report("gw1", pid, State.SENT, "stat:ENROUTE", NOW + 5)]
        )
        self.assertEqual(changes, [])
        found = await self.message(message_id)
        self.assertEqual(found["state"], "sent")
        self.assertEqual(
            [(p["state"], p["status"]) for p in found["parts"]], [("sent", "stat:ENROUTE")]
        )
        changes = await self.store.apply_reports(
            [Report("gw1", pid, State.DELIVERED, "stat:DELIVRD", NOW + 6)]
        )
        self.assertEqual([c.state for c in changes], [State.DELIVERED])

    async def test_one_batch_applies_its_reports_in_order(self) -> None:
        """ENROUTE, DELIVRD, a repeat and a late failure in one batch, among others'
        reports: the part ends as the first final report said."""
        mine, _ = await self.sent_message()
        other, _ = await self.sent_message(new_message(BOB))
        pid = provider_id(mine, 1)
        changes = await self.store.apply_reports(
            [
                Report("gw1", pid, State.SENT, "stat:ENROUTE", NOW + 5),
                Report("gw1", provider_id(other, 1), State.FAILED, "stat:UNDELIV", NOW + 5),
                Report("gw1", pid, State.DELIVERED, "stat:DELIVRD", NOW + 6),
                Report("gw1", pid, State.DELIVERED, "stat:DELIVRD again", NOW + 7),
                Report("gw1", pid, State.FAILED, "late failure", NOW + 8),
                Report("gw1", "no-such-id", State.DELIVERED, "stat:DELIVRD", NOW + 9),
            ]
        )
        self.assertEqual(
            sorted((c.message_id, c.state, c.status) for c in changes),
            [(mine, State.DELIVERED, "stat:DELIVRD"), (other, State.FAILED, "stat:UNDELIV")],
        )
        found = await self.message(mine)
        self.assertEqual(
            [(p["state"], p["status"], p["done_at"]) for p in found["parts"]],
            [("delivered", "stat:DELIVRD", NOW + 6)],
        )
        self.assertEqual((await self.store.queue_stats(NOW))["pending_reports"], 1)

    async def _report_overtakes_record(self) -> None:
        msg = new_message(user="alice", callback_url="https://app/cb")
        (message_id,) = await self.add(msg)
        m = await self.claim_one()
        pid = provider_id(message_id, 1)
        early = await self.store.apply_reports(
            [Report("gw1", pid, State.DELIVERED, "stat:DELIVRD", NOW + 1)]
        )
        self.assertEqual(early, [])
        self.assertEqual((await self.store.queue_stats(NOW))["pending_reports"], 1)
        changes = await self.store.record([sent_outcome(m, at=NOW + 2)])
        self.assertEqual(
            changes,
            [
                change_for(msg, message_id, State.SENT, "accepted"),
                change_for(msg, message_id, State.DELIVERED, "stat:DELIVRD"),
            ],
        )
        found = await self.message(message_id)
        self.assertEqual((found["state"], found["status"]), ("delivered", "stat:DELIVRD"))
        self.assertEqual(await self.part_states(message_id), ["delivered"])
        self.assertEqual((await self.store.queue_stats(NOW))["pending_reports"], 0)

    async def test_report_before_record(self) -> None:
        """The receipt overtakes the submit response: kept, applied when the id is stored."""
        await self._report_overtakes_record()

    async def test_report_before_record_after_other_records(self) -> None:
        """The same race once the writer has counted the (empty) pending reports."""
        await self.sent_message(new_message(BOB))
        await self._report_overtakes_record()
        await self._report_overtakes_record()

    async def test_report_before_record_in_one_batch(self) -> None:
        """Report and result issued together, as two reactor callbacks would."""
        (message_id,) = await self.add(new_message(parts=2))
        m = await self.claim_one()
        reports = [
            Report("gw1", provider_id(message_id, seq), State.DELIVERED, "DELIVRD", NOW + 1)
            for seq in (1, 2)
        ]
        await defer.gatherResults(
            [self.store.apply_reports(reports), self.store.record([sent_outcome(m, at=NOW + 2)])]
        )
        self.assertEqual((await self.message(message_id))["state"], "delivered")
        self.assertEqual(await self.part_states(message_id), ["delivered", "delivered"])

    async def test_report_before_record_from_another_process(self) -> None:
        """A report stored by another node still reaches the result recorded here."""
        await self.sent_message(new_message(BOB))  # this writer has counted pending reports
        (message_id,) = await self.add(new_message())
        m = await self.claim_one()
        other = self.open_store()
        await other.apply_reports(
            [Report("gw1", provider_id(message_id, 1), State.DELIVERED, "DELIVRD", NOW + 1)]
        )
        await self.store.record([sent_outcome(m, at=NOW + 2)])
        self.assertEqual((await self.message(message_id))["state"], "delivered")

    async def test_multipart_delivered_only_when_every_part_is(self) -> None:
        msg = new_message(parts=3)
        message_id, _ = await self.sent_message(msg)
        for seq in (1, 3):
            changes = await self.store.apply_reports(
                [Report("gw1", provider_id(message_id, seq), State.DELIVERED, "D", NOW + 5)]
            )
            self.assertEqual(changes, [])
            self.assertEqual((await self.message(message_id))["state"], "sent")
        changes = await self.store.apply_reports(
            [Report("gw1", provider_id(message_id, 2), State.DELIVERED, "D", NOW + 6)]
        )
        self.assertEqual(changes, [change_for(msg, message_id, State.DELIVERED, "D")])
        self.assertEqual(await self.part_states(message_id), ["delivered"] * 3)

    async def test_multipart_one_failed_part_fails_the_message(self) -> None:
        msg = new_message(parts=2)
        message_id, _ = await self.sent_message(msg)
        changes = await self.store.apply_reports(
            [
                Report("gw1", provider_id(message_id, 2), State.FAILED, "UNDELIV", NOW + 5),
                Report("gw1", provider_id(message_id, 1), State.DELIVERED, "DELIVRD", NOW + 6),
            ]
        )
        self.assertEqual(changes, [change_for(msg, message_id, State.FAILED, "UNDELIV")])
        found = await self.message(message_id)
        self.assertEqual(found["state"], "failed")
        self.assertEqual(await self.part_states(message_id), ["delivered", "failed"])

    async def _part_one_sent_part_two_queued(self) -> int:
        (message_id,) = await self.add(new_message(parts=2))
        m = await self.claim_one()
        await self.store.record(
            [
                Outcome(
                    m.id,
                    "gw1",
                    (
                        PartResult(1, True, provider_id(m.id, 1), gateway="gw1"),
                        PartResult(2, False, status="throttled", temporary=True, gateway="gw1"),
                    ),
                    State.QUEUED,
                    NOW + 1,
                    due_at=NOW + 60,
                )
            ]
        )
        return message_id

    async def test_report_for_one_part_leaves_queued_message_queued(self) -> None:
        """Part 1 delivered while part 2 waits for a retry: the message stays queued."""
        message_id = await self._part_one_sent_part_two_queued()
        changes = await self.store.apply_reports(
            [Report("gw1", provider_id(message_id, 1), State.DELIVERED, "D", NOW + 5)]
        )
        self.assertEqual(changes, [])
        self.assertEqual((await self.message(message_id))["state"], "queued")
        self.assertEqual(await self.part_states(message_id), ["delivered", "queued"])
        m = await self.claim_one(now=NOW + 60)
        self.assertEqual([p.seq for p in m.parts], [2])

    async def test_report_for_one_part_leaves_leased_message_leased(self) -> None:
        """The same while part 2 is being sent: state and lease are the dispatcher's."""
        msg_id = await self._part_one_sent_part_two_queued()
        m = await self.claim_one(now=NOW + 60)
        changes = await self.store.apply_reports(
            [Report("gw1", provider_id(msg_id, 1), State.DELIVERED, "D", NOW + 61)]
        )
        self.assertEqual(changes, [])
        self.assertEqual((await self.message(msg_id))["state"], "sending")
        self.assertEqual(self.lease(msg_id), ("node1", NOW + 90))
        changes = await self.store.record([sent_outcome(m, at=NOW + 62)])
        self.assertEqual([c.state for c in changes], [State.SENT])
        changes = await self.store.apply_reports(
            [Report("gw1", provider_id(msg_id, 2), State.DELIVERED, "D", NOW + 63)]
        )
        self.assertEqual([c.state for c in changes], [State.DELIVERED])

    async def test_failed_part_fails_a_queued_message(self) -> None:
        """A final failure for part 1 ends the message; part 2 is not sent any more."""
        message_id = await self._part_one_sent_part_two_queued()
        changes = await self.store.apply_reports(
            [Report("gw1", provider_id(message_id, 1), State.FAILED, "UNDELIV", NOW + 5)]
        )
        self.assertEqual([(c.message_id, c.state) for c in changes], [(message_id, State.FAILED)])
        self.assertEqual((await self.message(message_id))["state"], "failed")
        self.assertEqual(await self.store.claim("node1", NOW + 60, 30, 10), [])

    async def test_late_report_does_not_revive_a_failed_message(self) -> None:
        """The dispatcher gave up on part 2; part 1's receipt must not requeue the message."""
        (message_id,) = await self.add(new_message(parts=2))
        m = await self.claim_one()
        await self.store.record([RecordTests._gave_up(m)])
        changes = await self.store.apply_reports(
            [Report("gw1", provider_id(message_id, 1), State.DELIVERED, "DELIVRD", NOW + 5)]
        )
        self.assertNotIn(State.QUEUED, [c.state for c in changes])
        self.assertEqual((await self.message(message_id))["state"], "failed")
        self.assertEqual(await self.store.claim("node1", NOW + 100, 30, 10), [])


class ExpireTests(StoreTestCase):
    async def test_expire_queued_past_validity(self) -> None:
        msg = new_message(ALICE, expires_at=NOW + 10, callback_url="https://app/cb")
        old, leased, young = await self.add(
            msg, new_message(BOB, expires_at=NOW + 10), new_message(CAROL, expires_at=NOW + 100)
        )
        claimed = await self.store.claim("node1", NOW, 30, 10)
        await self.store.record(
            [
                Outcome(m.id, None, (), State.QUEUED, NOW, NOW, False)
                for m in claimed
                if m.id != leased
            ]
        )
        self.assertEqual(await self.store.expire(NOW + 9), [])
        changes = await self.store.expire(NOW + 10)
        self.assertEqual(changes, [change_for(msg, old, State.EXPIRED, None)])
        found = await self.message(old)
        self.assertEqual((found["state"], found["error"]), ("expired", "validity period ended"))
        self.assertEqual(await self.part_states(old), ["expired"])
        self.assertEqual((await self.message(leased))["state"], "sending")
        self.assertEqual((await self.message(young))["state"], "queued")
        self.assertEqual(await self.store.expire(NOW + 10), [])

    async def test_expire_keeps_acknowledged_parts(self) -> None:
        (message_id,) = await self.add(new_message(parts=2, expires_at=NOW + 10))
        m = await self.claim_one()
        await self.store.record(
            [
                Outcome(
                    m.id,
                    "gw1",
                    (PartResult(1, True, "p1", gateway="gw1"), PartResult(2, False)),
                    State.QUEUED,
                    NOW + 1,
                    due_at=NOW + 20,
                )
            ]
        )
        changes = await self.store.expire(NOW + 11)
        self.assertEqual([c.message_id for c in changes], [message_id])
        self.assertEqual(await self.part_states(message_id), ["sent", "expired"])


class PurgeTests(StoreTestCase):
    async def test_purge_deletes_only_old_final_messages(self) -> None:
        delivered, _ = await self.sent_message(new_message(ALICE))
        await self.store.apply_reports(
            [Report("gw1", provider_id(delivered, 1), State.DELIVERED, "D", NOW + 5)]
        )
        (expired,) = await self.add(new_message(BOB, expires_at=NOW + 1))
        await self.store.expire(NOW + 6)
        (queued,) = await self.add(new_message(CAROL, due_at=NOW + 1000))
        (leased,) = await self.add(new_message(CAROL, due_at=NOW + 500))
        await self.claim_one(now=NOW + 500)
        (late,) = await self.add(new_message("+15551230004"))
        late_m = await self.claim_one()
        await self.store.record([sent_outcome(late_m)])
        await self.store.apply_reports(
            [Report("gw1", provider_id(late, 1), State.FAILED, "UNDELIV", NOW + 200)]
        )
        await self.store.apply_reports([Report("gw1", "stale", State.DELIVERED, "", NOW + 7)])
        parts_before = self.count("parts")

        self.assertEqual(await self.store.purge(NOW + 100), 2)
        self.assertIsNone(await self.store.get_message(delivered))
        self.assertIsNone(await self.store.get_message(expired))
        self.assertEqual(self.count("parts"), parts_before - 2)
        self.assertEqual(
            self.query(
                "SELECT count(*) FROM parts WHERE message_id IN (?, ?)", (delivered, expired)
            ),
            [(0,)],
        )
        self.assertEqual((await self.message(queued))["state"], "queued")
        self.assertEqual((await self.message(leased))["state"], "sending")
        self.assertEqual((await self.message(late))["state"], "failed")
        self.assertEqual((await self.store.queue_stats(NOW))["pending_reports"], 0)
        self.assertEqual(await self.store.purge(NOW + 100), 0)

    async def test_early_reports_still_work_after_purge(self) -> None:
        """Purge resets the writer's count of kept reports without losing new ones."""
        await self.store.apply_reports([Report("gw1", "stale", State.DELIVERED, "", NOW)])
        await self.store.purge(NOW + 1)
        (message_id,) = await self.add(new_message())
        m = await self.claim_one()
        await self.store.apply_reports(
            [Report("gw1", provider_id(message_id, 1), State.DELIVERED, "D", NOW + 2)]
        )
        await self.store.record([sent_outcome(m, at=NOW + 3)])
        self.assertEqual((await self.message(message_id))["state"], "delivered")


class QueryTests(StoreTestCase):
    async def test_get_unknown_message(self) -> None:
        self.assertIsNone(await self.store.get_message(12345))

    async def test_next_due(self) -> None:
        self.assertIsNone(await self.store.next_due())
        ids = await self.add(new_message(ALICE, due_at=NOW + 5), new_message(BOB, due_at=NOW + 1))
        self.assertEqual(await self.store.next_due(), NOW + 1)
        await self.claim_one(now=NOW + 1)
        self.assertEqual(await self.store.next_due(), NOW + 5)
        await self.claim_one(now=NOW + 5)
        self.assertIsNone(await self.store.next_due())
        self.assertEqual(len(ids), 2)

    async def _mixed_queue(self) -> None:
        await self.sent_message(new_message(ALICE, created_at=NOW - 50))
        await self.add(new_message(BOB, created_at=NOW - 20, due_at=NOW + 100))
        await self.add(new_message(CAROL, created_at=NOW - 10, due_at=NOW + 1))
        await self.claim_one(now=NOW + 1)
        await self.add(new_message("+15551230004", created_at=NOW - 5, due_at=NOW + 2))
        await self.store.add_inbound([Inbound("gw1", BOB, ALICE, "hi", received_at=NOW)])
        await self.store.apply_reports([Report("gw1", "nobody", State.DELIVERED, "", NOW)])

    async def test_queue_stats(self) -> None:
        """The cheap form: active states only."""
        await self._mixed_queue()
        stats = await self.store.queue_stats(NOW + 2)
        self.assertEqual(
            stats,
            {
                "states": {"queued": 2, "sending": 1},
                "oldest_queued": NOW - 20,
                "due": 1,
                "pending_reports": 1,
            },
        )

    async def test_queue_stats_full(self) -> None:
        await self._mixed_queue()
        stats = await self.store.queue_stats(NOW + 200, full=True)
        self.assertEqual(stats["states"], {"queued": 2, "sending": 1, "sent": 1})
        self.assertEqual(stats["due"], 2)
        self.assertEqual(stats["gateways"], {"gw1": {"sent": 1}, "": {"queued": 2, "sending": 1}})
        self.assertEqual(stats["inbound"], 1)
        self.assertEqual(stats["pending_reports"], 1)


class InboundPartTests(StoreTestCase):
    """Concatenated SMS from the network: each part committed, the whole joined in the store."""

    def part(
        self, seq: int, text: str, *, total: int = 3, ref: int = 7, at: float = NOW
    ) -> InboundPart:
        return InboundPart("gw1", BOB, ALICE, ref, total, seq, text, received_at=at)

    async def test_parts_out_of_order_make_one_message(self) -> None:
        self.assertIsNone(await self.store.add_inbound_part(self.part(3, "C")))
        self.assertIsNone(await self.store.add_inbound_part(self.part(1, "A")))
        self.assertIsNone(await self.store.add_inbound_part(self.part(1, "A")))  # sent again
        whole = await self.store.add_inbound_part(self.part(2, "B"))
        assert whole is not None
        self.assertEqual((whole.text, whole.parts, whole.sender), ("ABC", 3, BOB))
        self.assertEqual(await self.store.list_inbound(0, 10), [whole])
        self.assertEqual(self.count("inbound_parts"), 0)

    async def test_same_reference_from_another_sender_is_another_message(self) -> None:
        await self.store.add_inbound_part(self.part(1, "A", total=2))
        other = InboundPart("gw1", CAROL, ALICE, 7, 2, 2, "z", received_at=NOW)
        self.assertIsNone(await self.store.add_inbound_part(other))
        self.assertEqual(self.count("inbound_parts"), 2)

    async def test_incomplete_parts_are_stored_one_by_one_after_the_timeout(self) -> None:
        await self.store.add_inbound_part(self.part(1, "A", at=NOW))
        await self.store.add_inbound_part(self.part(3, "C", at=NOW + 1))
        self.assertEqual(await self.store.flush_inbound_parts(NOW), [])  # not old enough
        flushed = await self.store.flush_inbound_parts(NOW + 2)
        self.assertEqual([(m.text, m.parts) for m in flushed], [("A", 1), ("C", 1)])
        self.assertEqual(self.count("inbound_parts"), 0)
        self.assertEqual(len(await self.store.list_inbound(0, 10)), 2)


class InboxTests(StoreTestCase):
    async def test_add_and_page(self) -> None:
        inbound = [
            Inbound("gw1", BOB, ALICE, "one", received_at=NOW),
            Inbound("gw1", CAROL, BOB, None, b"\x00\x01", "binary", NOW + 1, 2),
            Inbound("gw2", BOB, ALICE, "three", received_at=NOW + 2),
        ]
        ids = await self.store.add_inbound(inbound)
        self.assertEqual(ids, sorted(set(ids)))
        first = await self.store.list_inbound(0, 2)
        self.assertEqual(
            first, [attrs_with_id(m, i) for m, i in zip(inbound[:2], ids[:2], strict=True)]
        )
        rest = await self.store.list_inbound(first[-1].id or 0, 2)
        self.assertEqual(rest, [attrs_with_id(inbound[2], ids[2])])
        self.assertEqual(await self.store.list_inbound(ids[2], 10), [])

    async def test_recipient_filter(self) -> None:
        ids = await self.store.add_inbound(
            [
                Inbound("gw1", BOB, ALICE, "a1", received_at=NOW),
                Inbound("gw1", ALICE, BOB, "b1", received_at=NOW),
                Inbound("gw1", BOB, ALICE, "a2", received_at=NOW),
                Inbound("gw1", BOB, CAROL, "c1", received_at=NOW),
            ]
        )
        for_alice = await self.store.list_inbound(0, 10, [ALICE])
        self.assertEqual([m.text for m in for_alice], ["a1", "a2"])
        self.assertEqual([m.id for m in for_alice], [ids[0], ids[2]])
        both = await self.store.list_inbound(ids[0], 10, [ALICE, CAROL])
        self.assertEqual([m.text for m in both], ["a2", "c1"])
        self.assertEqual(await self.store.list_inbound(0, 10, []), [])


def attrs_with_id(m: Inbound, message_id: int) -> Inbound:
    return attrs.evolve(m, id=message_id)


FULL_USER = User(
    name="alice",
    password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    emails=("alice@example.org", "a@example.net"),
    mobile="+15559870001",
    dedicated=("+15550000001", "+15550000002"),
    sender_policy=SenderPolicy.FIXED,
    senders=("ACME", "+15550000001"),
    monthly_limit=500,
    expires="2027-12-31",
    active=False,
    default_country="DE",
    created_at=NOW,
)


class UserTests(StoreTestCase):
    async def test_round_trip(self) -> None:
        await self.store.add_user(FULL_USER)
        await self.store.add_user(User("bob", created_at=NOW + 1))
        self.assertEqual(await self.store.get_user("alice"), FULL_USER)
        self.assertEqual(await self.store.get_user("bob"), User("bob", created_at=NOW + 1))
        self.assertEqual([u.name for u in await self.store.list_users()], ["alice", "bob"])
        self.assertIsNone(await self.store.get_user("carol"))

    async def test_update_every_field(self) -> None:
        await self.store.add_user(FULL_USER)
        changed = User(
            name="alice",
            password_hash="new",
            emails=("new@example.org",),
            mobile=None,
            dedicated=("+15550000002", "+15550000003"),
            sender_policy=SenderPolicy.DEDICATED,
            senders=(),
            monthly_limit=0,
            expires=None,
            active=True,
            default_country=None,
            created_at=NOW,
        )
        await self.store.update_user(changed)
        self.assertEqual(await self.store.get_user("alice"), changed)
        # The number alice gave up is free for someone else.
        await self.store.add_user(User("bob", dedicated=("+15550000001",)))
        self.assertEqual((await self.store.get_user("bob")).dedicated, ("+15550000001",))

    async def test_user_exists(self) -> None:
        await self.store.add_user(FULL_USER)
        await self.assertFailure(self.store.add_user(User("alice")), UserExists)
        self.assertEqual(await self.store.get_user("alice"), FULL_USER)

    async def test_no_such_user(self) -> None:
        await self.assertFailure(self.store.update_user(User("ghost")), NoSuchUser)
        await self.assertFailure(self.store.delete_user("ghost"), NoSuchUser)
        self.assertIsNone(await self.store.get_user("ghost"))

    async def test_number_taken_on_add(self) -> None:
        """A dedicated number of another user refuses the new user entirely."""
        await self.store.add_user(FULL_USER)
        error = await self.assertFailure(
            self.store.add_user(User("bob", dedicated=("+15559999999", "+15550000002"))),
            NumberTaken,
        )
        self.assertIn("alice", str(error))
        self.assertIsNone(await self.store.get_user("bob"))
        self.assertEqual(await self.store.get_user("alice"), FULL_USER)
        self.assertEqual(self.query("SELECT number FROM dedicated_numbers WHERE user = 'bob'"), [])

    async def test_number_taken_on_update(self) -> None:
        """A refused update leaves the user as it was, numbers included."""
        await self.store.add_user(FULL_USER)
        bob = User("bob", dedicated=("+15550000009",), monthly_limit=7)
        await self.store.add_user(bob)
        await self.assertFailure(
            self.store.update_user(User("bob", dedicated=("+15550000001",), monthly_limit=99)),
            NumberTaken,
        )
        self.assertEqual(await self.store.get_user("bob"), bob)
        self.assertEqual(await self.store.get_user("alice"), FULL_USER)

    async def test_delete_frees_dedicated_numbers(self) -> None:
        await self.store.add_user(FULL_USER)
        await self.store.delete_user("alice")
        self.assertIsNone(await self.store.get_user("alice"))
        self.assertEqual(self.count("dedicated_numbers"), 0)
        bob = User("bob", dedicated=FULL_USER.dedicated)
        await self.store.add_user(bob)
        self.assertEqual(await self.store.get_user("bob"), bob)


class GroupCommitTests(StoreTestCase):
    async def test_many_concurrent_submissions(self) -> None:
        """200 submissions at once all commit, each with its own id."""
        ds = [self.store.add_messages([new_message(f"+1555200{i:04d}")], None) for i in range(200)]
        results = await defer.gatherResults(ds)
        ids = [added.id for (added,) in results]
        self.assertEqual(len(set(ids)), 200)
        self.assertEqual(self.count("messages"), 200)
        found = await self.message(ids[137])
        self.assertEqual(found["recipient"], "+15552000137")

    async def test_failures_inside_batches_do_not_stop_the_rest(self) -> None:
        """Every tenth submission is over quota; the 180 others commit."""
        ds = []
        for i in range(200):
            # bob may send one part: his first submission fits, the others do not
            bob = i % 10 == 9
            charge = Charge("bob", PERIOD, 1, 1) if bob else Charge("alice", PERIOD, 1, 0)
            ds.append(
                self.store.add_messages([new_message(f"+1555200{i:04d}", user=charge.user)], charge)
            )
        results = await defer.DeferredList(ds, consumeErrors=True)
        failed = [i for i, (ok, _) in enumerate(results) if not ok]
        self.assertEqual(failed, list(range(19, 200, 10)))
        for i in failed:
            results[i][1].trap(QuotaExceeded)
        self.assertEqual(self.count("messages"), 181)
        self.assertEqual(await self.store.usage("alice", PERIOD), 180)
        self.assertEqual(await self.store.usage("bob", PERIOD), 1)


class SecondProcessTests(StoreTestCase):
    async def test_admin_adds_a_user_while_running(self) -> None:
        """smsd-admin opens the same file while smsd runs; smsd sees its changes."""
        self.assertIsNone(await self.store.get_user("alice"))
        admin = self.open_store()
        await admin.add_user(FULL_USER)
        await self.close_store(admin)
        self.assertEqual(await self.store.get_user("alice"), FULL_USER)
        await self.store.add_user(User("bob"))
        self.assertEqual(self.count("users"), 2)

    async def test_both_write_at_once(self) -> None:
        """Two writers on one file wait for each other instead of failing."""
        other = self.open_store()
        ds = [
            (self.store if i % 2 else other).add_messages([new_message(f"+1555300{i:04d}")], None)
            for i in range(40)
        ]
        results = await defer.gatherResults(ds)
        self.assertEqual(len({added.id for (added,) in results}), 40)
        claimed = await self.store.claim("node1", NOW, 30, 100)
        self.assertEqual(len(claimed), 40)
        self.assertEqual(await other.claim("node2", NOW, 30, 100), [])


# The same writes through the daemon's default writer, a process of its own:
# every argument and answer crosses a pipe, errors included.
for _case in (
    AddMessagesTests,
    QuotaTests,
    ClaimAtCommitTests,
    RecordTests,
    ReportTests,
    UserTests,
    GroupCommitTests,
    SecondProcessTests,
):
    _name = f"{_case.__name__}InWriterProcess"
    globals()[_name] = type(_name, (_case,), {"writer": "process", "__module__": __name__})
