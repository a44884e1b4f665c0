"""smsd-admin as scripts use it: the installed command in a subprocess, on a fresh data directory.

What the command wrote is read back in-process through the Store interface, so the
tests check what the daemon would see, not what the command says it did.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.trial import unittest

from smsd.core.users import verify_password
from smsd.store import Store, open_store
from tests.process import LOOPBACK, SmsdProcess

ADMIN = os.path.join(os.path.dirname(sys.executable), "smsd-admin")


class AdminCase(unittest.TestCase):
    """Runs smsd-admin against a temporary data directory."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="smsd-admin-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.data_dir = os.path.join(self.dir, "data")

    def admin(
        self, *args: str, stdin: str = "", cwd: str | None = None, data_dir: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [ADMIN, *(("--data-dir", self.data_dir) if data_dir else ()), *args]
        return subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            cwd=cwd or self.dir,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, stdin: str = "") -> str:
        """Stdout of a command that must succeed."""
        result = self.admin(*args, stdin=stdin)
        self.assertEqual(result.returncode, 0, f"{args}: {result.stderr}")
        self.assertEqual(result.stderr, "")
        return result.stdout

    def fails(self, code: int, *args: str, stdin: str = "") -> str:
        """The one-line complaint of a command that must fail with ``code``."""
        result = self.admin(*args, stdin=stdin)
        self.assertEqual(result.returncode, code, f"{args}: {result.stdout}{result.stderr}")
        self.assertNotIn("Traceback", result.stderr)
        if code == 1:
            lines = result.stderr.splitlines()
            self.assertEqual(len(lines), 1, result.stderr)
            self.assertTrue(lines[0].startswith("smsd-admin: "), lines[0])
        return result.stderr.strip()

    def add_user(self, name: str, *extra: str, password: str = "s3cret pass") -> None:
        self.ok(
            "user", "add", name, "--password", password, "--email", f"{name}@example.org", *extra
        )

    def show(self, name: str) -> dict[str, Any]:
        return json.loads(self.ok("user", "show", name, "--json"))

    async def in_store(self, work: Callable[[Store], Awaitable[Any]]) -> Any:
        """Read what the command committed, through the Store API the daemon uses."""
        store = open_store("", self.data_dir)
        try:
            return await work(store)
        finally:
            await store.close()


class UserTests(AdminCase):
    def test_add_list_show_round_trip(self) -> None:
        self.add_user(
            "alice",
            "--email",
            "alice@example.net",
            "--mobile",
            "030 1234567",
            "--dedicated",
            "030 7654321",
            "+15551230000",
            "--sender-policy",
            "fixed",
            "--sender",
            "ACME",
            "--sender",
            "+4930999999",
            "--monthly-limit",
            "100",
            "--expires",
            "2099-12-31",
            "--country",
            "de",
        )
        record = self.show("alice")
        self.assertEqual(record["name"], "alice")
        self.assertEqual(record["emails"], ["alice@example.org", "alice@example.net"])
        self.assertEqual(record["mobile"], "+49301234567")
        self.assertEqual(record["dedicated"], ["+49307654321", "+15551230000"])
        self.assertEqual(record["sender_policy"], "fixed")
        self.assertEqual(record["senders"], ["ACME", "+4930999999"])
        self.assertEqual(record["monthly_limit"], 100)
        self.assertEqual(record["expires"], "2099-12-31")
        self.assertEqual(record["default_country"], "DE")
        self.assertIs(record["active"], True)
        self.assertEqual((record["status"], record["used_this_month"]), ("active", 0))
        self.assertNotIn("password_hash", record)

        self.add_user("bob")
        listed = json.loads(self.ok("user", "list", "--json"))
        self.assertEqual([u["name"] for u in listed], ["alice", "bob"])
        self.assertEqual(listed[0], record)
        self.assertEqual(listed[1]["sender_policy"], "device")

        lines = self.ok("user", "list").splitlines()
        self.assertEqual(lines[0].split()[:3], ["NAME", "POLICY", "LIMIT"])
        self.assertEqual(lines[1].split()[:5], ["alice", "fixed", "100", "0", "active"])
        self.assertEqual(lines[2].split()[:5], ["bob", "device", "none", "0", "active"])
        human = self.ok("user", "show", "alice")
        for word in ("alice@example.net", "+49307654321", "ACME", "2099-12-31", "DE"):
            self.assertIn(word, human)

    async def test_password_is_stored_hashed(self) -> None:
        self.add_user("alice", password="correct horse")
        for output in (self.show("alice"), self.ok("user", "show", "alice")):
            self.assertNotIn("scrypt", json.dumps(output))
            self.assertNotIn("correct horse", json.dumps(output))
        user = await self.in_store(lambda s: s.get_user("alice"))
        self.assertTrue(user.password_hash.startswith("scrypt$"), user.password_hash)
        self.assertNotIn("correct horse", user.password_hash)
        self.assertTrue(verify_password("correct horse", user.password_hash))
        self.assertFalse(verify_password("correct horse!", user.password_hash))

    async def test_the_sip_digest_secret_follows_the_password(self) -> None:
        """HA1 = md5(user:realm:password) for SIP phones, kept instead of the password,
        never shown; the realm is [smsd] domain unless [sip] realm says otherwise."""
        self.add_user("alice", password="correct horse")
        user = await self.in_store(lambda s: s.get_user("alice"))
        realm = "sms.example.org"  # the embedded default's domain
        ha1 = hashlib.md5(f"alice:{realm}:correct horse".encode()).hexdigest()
        self.assertEqual(user.sip_ha1, ha1)
        self.assertNotIn(ha1, json.dumps(self.show("alice")))
        self.ok("user", "passwd", "alice", "--password", "new one")
        user = await self.in_store(lambda s: s.get_user("alice"))
        self.assertNotEqual(user.sip_ha1, ha1)

    async def test_passwd(self) -> None:
        self.add_user("alice", "--monthly-limit", "7", password="old one")
        self.ok("user", "passwd", "alice", stdin="from a pipe\n")
        user = await self.in_store(lambda s: s.get_user("alice"))
        self.assertTrue(verify_password("from a pipe", user.password_hash))
        self.assertFalse(verify_password("old one", user.password_hash))
        self.assertEqual(user.monthly_limit, 7)  # the other fields stay

        self.ok("user", "passwd", "alice", "--password", "from argv")
        user = await self.in_store(lambda s: s.get_user("alice"))
        self.assertTrue(verify_password("from argv", user.password_hash))

        self.assertIn("empty password", self.fails(1, "user", "passwd", "alice", stdin=""))
        user = await self.in_store(lambda s: s.get_user("alice"))
        self.assertTrue(verify_password("from argv", user.password_hash))

    async def test_add_reads_password_from_stdin(self) -> None:
        self.ok("user", "add", "carol", "--email", "carol@example.org", stdin="piped\n")
        user = await self.in_store(lambda s: s.get_user("carol"))
        self.assertTrue(verify_password("piped", user.password_hash))

    async def test_set_replaces_only_named_fields(self) -> None:
        self.add_user(
            "alice",
            "--mobile",
            "+15551234567",
            "--expires",
            "2099-01-01",
            "--monthly-limit",
            "50",
            password="keep me",
        )
        self.ok(
            "user",
            "set",
            "alice",
            "--email",
            "new@example.org",
            "--no-mobile",
            "--no-expires",
            "--monthly-limit",
            "0",
            "--inactive",
            "--dedicated",
            "(555) 123-0001",
        )
        record = self.show("alice")
        self.assertEqual(record["emails"], ["new@example.org"])
        self.assertIsNone(record["mobile"])
        self.assertIsNone(record["expires"])
        self.assertEqual(record["monthly_limit"], 0)
        self.assertEqual(record["dedicated"], ["+15551230001"])
        self.assertEqual((record["active"], record["status"]), (False, "inactive"))
        user = await self.in_store(lambda s: s.get_user("alice"))
        self.assertTrue(verify_password("keep me", user.password_hash))

        self.ok("user", "set", "alice", "--active", "--expires", "2001-01-01")
        self.assertEqual(self.show("alice")["status"], "expired")
        self.ok("user", "set", "alice", "--no-expires", "--sender-policy", "dedicated")
        record = self.show("alice")
        self.assertEqual((record["status"], record["sender_policy"]), ("active", "dedicated"))
        self.assertIn("nothing to change", self.fails(1, "user", "set", "alice"))

    def test_delete(self) -> None:
        self.add_user("alice", "--dedicated", "+15551230002")
        self.assertIn("alice", self.ok("user", "del", "alice"))
        self.assertIn("no user 'alice'", self.fails(1, "user", "show", "alice"))
        self.assertEqual(json.loads(self.ok("user", "list", "--json")), [])
        # Its dedicated number is free again.
        self.add_user("bob", "--dedicated", "+15551230002")

    def test_duplicate_user(self) -> None:
        self.add_user("alice")
        message = self.fails(
            1, "user", "add", "alice", "--password", "x", "--email", "other@example.org"
        )
        self.assertIn("'alice' exists already", message)
        self.assertEqual(self.show("alice")["emails"], ["alice@example.org"])

    def test_unknown_user(self) -> None:
        for args in (
            ("user", "show", "ghost"),
            ("user", "show", "ghost", "--json"),
            ("user", "set", "ghost", "--monthly-limit", "3"),
            ("user", "passwd", "ghost", "--password", "x"),
            ("user", "del", "ghost"),
            ("send", "--user", "ghost", "--to", "+15551234567", "hi"),
        ):
            self.assertIn("no user 'ghost'", self.fails(1, *args))

    def test_dedicated_number_taken(self) -> None:
        self.add_user("alice", "--dedicated", "+15551234567")
        message = self.fails(
            1,
            *("user", "add", "bob", "--password", "x", "--email", "bob@example.org"),
            *("--dedicated", "555-123-4567"),
        )
        self.assertIn("+15551234567", message)
        self.assertIn("'alice'", message)
        self.fails(1, "user", "show", "bob")  # nothing half-made
        self.add_user("bob")
        self.assertIn("'alice'", self.fails(1, "user", "set", "bob", "--dedicated", "5551234567"))
        self.assertEqual(self.show("bob")["dedicated"], [])
        self.assertEqual(self.show("alice")["dedicated"], ["+15551234567"])

    def test_sort_words_and_forwarding(self) -> None:
        self.add_user("alice", "--alias", "4711", "Alice")
        self.assertEqual(self.show("alice")["aliases"], ["4711", "alice"])
        self.assertIn(
            "'alice'",
            self.fails(
                1,
                "user",
                "add",
                "bob",
                "--password",
                "x",
                "--email",
                "bob@example.org",
                "--alias",
                "4711",
            ),
        )
        self.assertIn("needs --mobile", self.fails(2, "user", "set", "alice", "--forward"))
        self.ok("user", "set", "alice", "--mobile", "+15553334444", "--forward")
        self.assertEqual(self.show("alice")["forward"], True)
        self.assertIn("one word", self.fails(2, "user", "set", "alice", "--alias", "two words"))
        self.ok("user", "set", "alice", "--no-aliases", "--no-forward")
        self.assertEqual(
            (self.show("alice")["aliases"], self.show("alice")["forward"]), ([], False)
        )

    def test_address_book(self) -> None:
        self.add_user("alice", "--contact", "Bob=(555) 765-4321", "Ops=+46701234567")
        self.assertEqual(
            self.show("alice")["contacts"], {"Bob": "+15557654321", "Ops": "+46701234567"}
        )
        self.assertIn("NAME=NUMBER", self.fails(2, "user", "set", "alice", "--contact", "Bob"))
        self.assertIn("number of Bob", self.fails(1, "user", "set", "alice", "--contact", "Bob=1"))
        self.ok("user", "set", "alice", "--contact", "bob=+15551112222", "BOB=+15553334444")
        self.assertEqual(self.show("alice")["contacts"], {"BOB": "+15553334444"})
        self.ok("user", "set", "alice", "--no-contacts")
        self.assertEqual(self.show("alice")["contacts"], {})

    def test_bad_values_name_the_problem(self) -> None:
        base = ("user", "add", "dave", "--password", "x", "--email", "dave@example.org")
        cases = [
            (("--mobile", "12"), "mobile number"),
            (("--mobile", "+1 555 CALL NOW"), "mobile number"),
            (("--dedicated", "+15551234567", "nonsense"), "dedicated number"),
            (("--email", "two@@example.org"), "e-mail address 'two@@example.org'"),
            (("--email", "Dave <dave@example.org>"), "e-mail address"),
            (("--email", "no at sign"), "e-mail address"),
            (("--expires", "2026-02-30"), "date '2026-02-30'"),
            (("--expires", "next week"), "date"),
            (("--country", "XX"), "country 'XX'"),
            (("--sender", "Far too long a name"), "sender ID"),
            (("--sender-policy", "mobile"), "needs --mobile"),
        ]
        for extra, words in cases:
            self.assertIn(words, self.fails(1, *base, *extra), extra)
        self.assertIn("user name", self.fails(1, "user", "add", "da ve", *base[3:]))
        self.assertEqual(json.loads(self.ok("user", "list", "--json")), [])

    def test_usage_errors_exit_2(self) -> None:
        self.fails(2, "user", "add", "erin", "--password", "x")  # --email is required
        self.fails(2, "user", "add", "erin", "--email", "e@x.org", "--sender-policy", "some")
        self.fails(2, "user", "set", "erin", "--mobile", "+15551234567", "--no-mobile")
        self.fails(2, "user", "add", "erin", "--email", "e@x.org", "--monthly-limit", "-1")
        self.fails(2, "frobnicate")
        self.fails(2)
        self.assertIn("user add", self.ok("user", "add", "--help"))


class SendInjectQueueTests(AdminCase):
    def sent(self, *args: str) -> list[tuple[int, str, int]]:
        out = self.ok("send", *args)
        rows = []
        for line in out.splitlines():
            word, message_id, number, parts = line.split()
            self.assertEqual(word, "OK")
            rows.append((int(message_id), number, int(parts)))
        return rows

    async def test_send_queues_normalised_messages(self) -> None:
        rows = self.sent("--to", "(555) 123-4567", "--to", "+44 20 7946 0018", "Hello there")
        self.assertEqual([r[1:] for r in rows], [("+15551234567", 1), ("+442079460018", 1)])
        [(long_id, _, parts)] = self.sent("--to", "+15551234567", "--from", "ACME", "x" * 200)
        self.assertEqual(parts, 2)

        async def read(store: Store) -> list[Any]:
            return [await store.get_message(i) for i in (rows[0][0], rows[1][0], long_id)]

        first, second, long = await self.in_store(read)
        self.assertEqual((first["state"], first["recipient"]), ("queued", "+15551234567"))
        self.assertEqual(
            (first["text"], first["channel"], first["user"]), ("Hello there", "admin", None)
        )
        self.assertEqual(second["recipient"], "+442079460018")
        self.assertEqual(len(long["parts"]), 2)
        self.assertEqual(long["sender"], "ACME")

    def test_send_refusals(self) -> None:
        self.assertIn("invalid number", self.fails(1, "send", "--to", "12ab", "hi"))
        self.assertIn(
            "maxmsgs", self.fails(1, "send", "--to", "+15551234567", "--maxmsgs", "1", "y" * 200)
        )
        self.assertIn(
            "sender", self.fails(1, "send", "--to", "+15551234567", "--from", "A\nB", "hi")
        )
        self.fails(2, "send", "hi")  # --to is required
        queue = json.loads(self.ok("queue", "--json"))
        self.assertEqual(queue["states"], {})

    async def test_send_as_user_applies_policy_and_quota(self) -> None:
        self.add_user(
            "alice", "--sender-policy", "fixed", "--sender", "ACME", "--monthly-limit", "3"
        )
        [(message_id, _, parts)] = self.sent("--user", "alice", "--to", "+15551234567", "z" * 200)
        self.assertEqual(parts, 2)
        message = await self.in_store(lambda s: s.get_message(message_id))
        self.assertEqual((message["user"], message["sender"]), ("alice", "ACME"))
        self.assertEqual(self.show("alice")["used_this_month"], 2)

        refused = self.fails(1, "send", "--user", "alice", "--to", "+15551234567", "z" * 200)
        self.assertIn("monthly limit", refused)
        self.assertEqual(self.show("alice")["used_this_month"], 2)
        refused = self.fails(
            1, "send", "--user", "alice", "--from", "Other", "--to", "+15551234567", "hi"
        )
        self.assertIn("not allowed", refused)
        self.sent("--user", "alice", "--to", "+15551234567", "last one")
        self.assertEqual(self.show("alice")["used_this_month"], 3)

        self.ok("user", "set", "alice", "--inactive")
        self.assertIn(
            "disabled", self.fails(1, "send", "--user", "alice", "--to", "+15551234567", "x")
        )

    async def test_inject(self) -> None:
        out = self.ok(
            "inject", "--from", "+1 (555) 987-6543", "--to", "555 123 4567", "Yes, thanks"
        )
        inbox_id = int(out)
        self.ok("inject", "--from", "ACME", "--to", "12345", "--gateway", "loopback", "Ünïcode ☺")
        inbound = await self.in_store(lambda s: s.list_inbound(0, 10))
        self.assertEqual(len(inbound), 2)
        first, second = inbound
        self.assertEqual(first.id, inbox_id)
        self.assertEqual(
            (first.gateway, first.sender, first.recipient),
            ("loopback", "+15559876543", "+15551234567"),
        )
        self.assertEqual((first.text, first.encoding), ("Yes, thanks", "gsm7"))
        self.assertEqual(
            (second.sender, second.recipient, second.encoding), ("ACME", "12345", "ucs2")
        )

        self.assertIn(
            "unknown gateway 'modem9'",
            self.fails(
                1,
                "inject",
                "--from",
                "+15559876543",
                "--to",
                "+15551234567",
                "--gateway",
                "modem9",
                "x",
            ),
        )
        self.assertIn(
            "recipient", self.fails(1, "inject", "--from", "+15559876543", "--to", "nobody", "x")
        )
        self.assertEqual(len(await self.in_store(lambda s: s.list_inbound(0, 10))), 2)

    def test_queue(self) -> None:
        empty = json.loads(self.ok("queue", "--json"))
        self.assertEqual((empty["states"], empty["due"], empty["inbound"]), ({}, 0, 0))
        self.assertIsNone(empty["oldest_queued"])
        self.sent("--to", "+15551234567", "--to", "+15551234568", "one")
        self.sent("--to", "+15551234569", "x" * 200)
        self.ok("inject", "--from", "+15559876543", "--to", "+15551234567", "hi")
        stats = json.loads(self.ok("queue", "--json"))
        self.assertEqual(stats["states"], {"queued": 3})
        self.assertEqual((stats["due"], stats["inbound"], stats["pending_reports"]), (3, 1, 0))
        self.assertEqual(stats["gateways"], {"": {"queued": 3}})
        self.assertGreaterEqual(stats["oldest_queued_age"], 0)
        human = self.ok("queue")
        self.assertIn("queued:", human)
        self.assertEqual(human.split("queued:")[1].split()[0], "3")
        self.assertIn("due now:", human)


class ConfigTests(AdminCase):
    def write(self, text: str) -> str:
        path = os.path.join(self.dir, "smsd.toml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_config_error_exits_2_naming_file_and_key(self) -> None:
        path = self.write(
            '[smsd]\ndefault_country = "XX"\n[[gateway]]\nid = "lb"\ntype = "loopback"\n'
        )
        message = self.fails(2, "--config", path, "user", "list")
        self.assertEqual(len(message.splitlines()), 1)
        self.assertIn(path, message)
        self.assertIn("smsd.default_country", message)
        self.assertFalse(os.path.exists(self.data_dir))  # nothing opened or created

    def test_missing_config_file(self) -> None:
        missing = os.path.join(self.dir, "nope.toml")
        self.assertIn(missing, self.fails(2, "--config", missing, "queue"))

    def test_bad_store_url_names_the_key(self) -> None:
        path = self.write(
            '[store]\nurl = "sqlite:/x.db"\n[[gateway]]\nid = "lb"\ntype = "loopback"\n'
        )
        message = self.fails(2, "--config", path, "queue")
        self.assertIn(f"{path}: store.url", message)

    def test_config_and_data_dir_after_the_command(self) -> None:
        path = self.write(
            '[smsd]\ndefault_country = "DE"\n[[gateway]]\nid = "lb"\ntype = "loopback"\n'
        )
        result = self.admin(
            "send",
            "--config",
            path,
            "--data-dir",
            self.data_dir,
            "--to",
            "030 1234567",
            "hi",
            data_dir=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.split()[2], "+49301234567")
        self.assertIn("inject", self.ok("inject", "--help"))


class WithDaemonTests(AdminCase):
    """The daemon keeps running while smsd-admin writes to the same database."""

    def setUp(self) -> None:
        super().setUp()
        self.smsd = SmsdProcess(LOOPBACK).start()
        self.addCleanup(self.smsd.cleanup)

    def run_admin(self, *args: str) -> str:
        assert self.smsd.config_path is not None
        result = self.admin(
            "--config", self.smsd.config_path, *args, cwd=self.smsd.dir, data_dir=False
        )
        self.assertEqual(result.returncode, 0, result.stderr + self.smsd.log())
        return result.stdout

    def test_send_while_daemon_runs(self) -> None:
        self.run_admin(
            "user",
            "add",
            "alice",
            "--password",
            "pw",
            "--email",
            "a@example.org",
            "--monthly-limit",
            "5",
        )
        out = self.run_admin("send", "--user", "alice", "--to", "(555) 123-4567", "From the shell")
        word, message_id, number, parts = out.split()
        self.assertEqual((word, number, parts), ("OK", "+15551234567", "1"))

        def delivered() -> dict[str, Any] | None:
            status, message = self.smsd.get(f"/api/v1/messages/{message_id}")
            return message if status == 200 and message["state"] == "delivered" else None

        message = self.smsd.wait_for(delivered, what="the admin's message delivered")
        self.assertEqual((message["to"], message["text"]), ("+15551234567", "From the shell"))
        lines = self.smsd.loopback_lines()
        self.assertEqual([line["id"] for line in lines], [int(message_id)])
        stats = json.loads(self.run_admin("queue", "--json"))
        self.assertEqual(stats["states"].get("delivered"), 1)
        user = json.loads(self.run_admin("user", "show", "alice", "--json"))
        self.assertEqual(user["used_this_month"], 1)


class XmppLinkTests(AdminCase):
    """smsd-admin xmpp link/unlink/list: which JIDs are which user's, for the XMPP gateway."""

    async def test_link_list_unlink(self) -> None:
        self.add_user("alice")
        self.assertIn("linked", self.ok("xmpp", "link", "alice", "Alice@Example.org"))
        self.ok("xmpp", "link", "alice", "desk@example.org", "--no-inbound")
        links = json.loads(self.ok("xmpp", "list", "--json"))
        self.assertEqual(
            links,
            [
                {"jid": "alice@example.org", "user": "alice", "inbound": True},
                {"jid": "desk@example.org", "user": "alice", "inbound": False},
            ],
        )
        owner = await self.in_store(lambda s: s.jid_owner("ALICE@example.org"))  # type: ignore[attr-defined]
        self.assertEqual(owner, "alice")
        self.assertIn("desk@example.org", self.ok("xmpp", "list", "--user", "alice"))
        self.ok("xmpp", "unlink", "desk@example.org")
        self.assertIn("not linked", self.fails(1, "xmpp", "unlink", "desk@example.org"))
        self.assertEqual(len(json.loads(self.ok("xmpp", "list", "--json"))), 1)

    def test_bad_jid_and_unknown_user(self) -> None:
        self.assertIn("bare JID", self.fails(2, "xmpp", "link", "alice", "alice@example.org/desk"))
        self.assertIn("no user 'ghost'", self.fails(1, "xmpp", "link", "ghost", "g@example.org"))

    async def test_deleting_the_user_drops_the_links(self) -> None:
        self.add_user("alice")
        self.ok("xmpp", "link", "alice", "alice@example.org")
        self.ok("user", "del", "alice")
        self.assertEqual(json.loads(self.ok("xmpp", "list", "--json")), [])
