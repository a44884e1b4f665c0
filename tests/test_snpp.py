"""SNPP paging, the way paging systems page: Perl's Net::SNPP, and raw sockets for the rest.

Each test runs a whole smsd in this process (``make_service``) with the loopback gateway
and ``[snpp] listen`` on a free port. Levels 1 and 2 (and what Net::SNPP knows of level
3) are driven by Net::SNPP (Debian ``libnet-snpp-perl``) in a subprocess; the error codes
and the rest of level 3 by a raw socket, line by line, as a terminal user would type them.
Assertions are on what the client reads and on what the loopback gateway sent.
"""

from __future__ import annotations

import datetime
import socket
import subprocess
import time
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import fail, succeed
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from protocols import snpp
from smsd.channels.snpp import PassCodes, SnppContext, SnppServer
from smsd.config import SnppSection
from smsd.core.submit import Accepted
from smsd.core.users import hash_password
from smsd.model import SenderPolicy, State, User
from smsd.service import Smsd
from tests.daemon import DaemonCase
from tests.fakes import wait_state
from tests.process import free_port, need

reactor: Any = global_reactor

ALICE = "+15551234567"
BOB = "+15557654321"
DEDICATED = "+15550009999"

CONFIG = """
[smsd]
traffic_log = ""
domain = "sms.example.org"
default_country = "US"
trusted_networks = ["127.0.0.1/32"]
[http]
listen = []
[snpp]
listen = ["tcp:{port}:interface=127.0.0.1"]
{extra}
[[gateway]]
id = "loopback"
type = "loopback"
latency = "1ms"
report_delay = "20ms"
[[gateway]]
id = "spare"
type = "loopback"
enabled = false
log = "spare.jsonl"
"""

# Net::SNPP in a subprocess: $s is connected to the server; the test's Perl follows.
PERL = """
use strict; use warnings; use Net::SNPP;
$| = 1;
my $s = Net::SNPP->new('127.0.0.1', Port => $ARGV[0], Timeout => 10)
    or die "no connection\\n";
sub said { print join(' ', $s->code, $s->message =~ s/\\s+$//r), "\\n"; }
"""


def perl(port: int, body: str) -> subprocess.CompletedProcess[str]:
    """Run Net::SNPP code against the server (blocking: tests run it in a thread)."""
    command = [need("perl"), "-e", PERL + body, str(port)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if "Can't locate Net/SNPP.pm" in result.stderr:
        raise AssertionError("Net::SNPP is not installed: run tests/install-peers")
    return result


class Session:
    """A raw SNPP connection: send a line, read the reply lines."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), 10, (source, 0))
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> str:
        """One reply; a multi-line one (214 lines) up to its final line, joined by newlines."""
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            if not line:
                raise EOFError("connection closed")
            lines.append(line)
            if not line.startswith("214"):
                return "\n".join(lines)

    def ask(self, line: str | bytes) -> str:
        raw = line if isinstance(line, bytes) else line.encode()
        self.sock.sendall(raw + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        self.sock.settimeout(5)
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class SnppCase(DaemonCase):
    async def start(self, extra: str = "") -> Smsd:
        self.port = free_port()
        root = self.run_smsd(CONFIG.format(port=self.port, extra=extra))
        await self.gateways_started()
        return root

    async def add_user(self, name: str = "alice", password: str = "s3cret", **kw: Any) -> User:
        assert self.root is not None
        user = User(name=name, password_hash=hash_password(password), **kw)
        await self.root.store.add_user(user)
        return user

    def perl(self, body: str) -> defer.Deferred[subprocess.CompletedProcess[str]]:
        return threads.deferToThread(perl, self.port, body)

    def session(self, source: str = "127.0.0.1") -> defer.Deferred[Session]:
        def connect() -> Session:
            s = Session(self.port, source)
            self.addCleanup(s.close)
            return s

        return threads.deferToThread(connect)

    def ask(self, s: Session, *lines: str | bytes) -> defer.Deferred[list[str]]:
        """Each line's reply, in order (the socket is used in a thread)."""
        return threads.deferToThread(lambda: [s.ask(line) for line in lines])


def codes(replies: list[str]) -> list[int]:
    return [int(r[:3]) for r in replies]


class NetSnppTests(SnppCase):
    """Levels 1 and 2 through a client we did not write."""

    async def test_a_page_becomes_an_sms(self) -> None:
        await self.start()
        result = await self.perl(
            f"$s->send(Pager => '{ALICE}', Message => 'Server room temperature high')"
            " or die 'send: ' . $s->message; said(); $s->quit;"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith("250 "), result.stdout)
        [part] = await self.loopback_parts(1)
        self.assertEqual((part["number"], part["text"]), (ALICE, "Server room temperature high"))
        [m] = await self.stored_messages()
        self.assertEqual((m["channel"], m["user"]), ("snpp", None))
        assert self.root is not None
        await wait_state(self.root.store, m["id"], State.DELIVERED)

    async def test_logged_in_pages_from_the_dedicated_number(self) -> None:
        await self.start()
        await self.add_user(sender_policy=SenderPolicy.DEDICATED, dedicated=(DEDICATED,))
        result = await self.perl(
            "$s->login('alice', 's3cret') or die 'login: ' . $s->message;"
            f" $s->send(Pager => ['{ALICE}', '(555) 765-4321'], Message => 'Two phones')"
            " or die 'send: ' . $s->message; $s->quit;"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        parts = await self.loopback_parts(2)
        self.assertEqual(sorted(p["number"] for p in parts), sorted([ALICE, BOB]))
        self.assertEqual({p["sender"] for p in parts}, {DEDICATED})
        self.assertEqual({p["text"] for p in parts}, {"Two phones"})
        self.assertEqual({m["user"] for m in await self.stored_messages()}, {"alice"})

    async def test_data_with_dot_stuffing(self) -> None:
        await self.start()
        result = await self.perl(
            f"$s->pager_id('{ALICE}') or die; $s->data(\"line one\\n.dot line\\nlast\\n\")"
            " or die 'data: ' . $s->message; $s->_SEND() or die 'send: ' . $s->message;"
            " $s->quit;"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        [part] = await self.loopback_parts(1)
        self.assertEqual(part["text"], "line one\n.dot line\nlast")

    async def test_hold_delays_delivery_to_the_given_time(self) -> None:
        await self.start()
        hold = int(time.time()) + 3
        result = await self.perl(
            f"$s->send(Pager => '{ALICE}', Message => 'later', Hold => {hold})"
            " or die 'send: ' . $s->message; $s->quit;"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        [m] = await self.stored_messages()
        self.assertEqual(m["due_at"], hold)
        self.assertEqual(m["state"], "queued")
        assert self.root is not None
        sent = await wait_state(self.root.store, m["id"], State.DELIVERED, timeout=10)
        self.assertGreaterEqual(min(p["sent_at"] for p in sent["parts"]), hold)

    async def test_level_service_alert_coverage(self) -> None:
        await self.start('alert_flash = true\ngroups = { oncall = ["+15551234567", "5557654321"] }')
        result = await self.perl(
            "$s->send(Pager => 'OnCall', Message => 'disk full', ServiceLevel => 0,"
            " Alert => 1, Coverage => 'loopback') or die 'send: ' . $s->message; $s->quit;"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        messages = await self.stored_messages()
        self.assertEqual(sorted(m["recipient"] for m in messages), sorted([ALICE, BOB]))
        for m in messages:
            self.assertEqual(m["pin_gateway"], "loopback")
            self.assertLess(m["due_at"], m["created_at"] - 3600)  # ahead of the queue
            self.assertEqual(m["dcs"] & 0x13, 0x10)  # message class 0: flash

    async def test_caller_id_and_subject_go_into_the_text(self) -> None:
        await self.start()
        result = await self.perl(
            f"$s->pager_id('{ALICE}') or die; $s->caller_id('Nurse station 4') or die;"
            " $s->subject('Room 12') or die; $s->content('call button') or die;"
            " $s->_SEND() or die 'send: ' . $s->message; $s->quit;"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        [part] = await self.loopback_parts(1)
        self.assertEqual(part["text"], "From Nurse station 4: Room 12: call button")

    async def test_caller_id_as_the_sender(self) -> None:
        await self.start('caller = "sender"')
        await self.add_user(sender_policy=SenderPolicy.ANY)
        result = await self.perl(
            "$s->login('alice', 's3cret') or die; "
            f"$s->pager_id('{ALICE}') or die; $s->caller_id('Alarms') or die;"
            " $s->content('smoke') or die; $s->_SEND() or die 'send: ' . $s->message; $s->quit;"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        [part] = await self.loopback_parts(1)
        self.assertEqual((part["sender"], part["text"]), ("Alarms", "smoke"))

    async def test_address_book_name(self) -> None:
        await self.start()
        await self.add_user(contacts=(("Bob", BOB),))
        result = await self.perl(
            "$s->login('alice', 's3cret') or die;"
            " $s->send(Pager => 'bob', Message => 'by name') or die 'send: ' . $s->message;"
            " $s->quit;"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        [part] = await self.loopback_parts(1)
        self.assertEqual(part["number"], BOB)

    async def test_two_way_status_follows_the_delivery_report(self) -> None:
        await self.start()
        result = await self.perl(
            f"$s->two_way() or die '2way'; $s->pager_id('{ALICE}') or die 'page';"
            " $s->content('ack me') or die 'mess';"
            ' my @r = $s->send_two_way(); print "tag $r[0] $r[1] $r[3]\\n";'
            " for (1..100) { my @m = $s->message_status($r[0], $r[1]);"
            '   print "status $m[4] $m[3]\\n"; last if $m[4] == 880;'
            " select(undef, undef, undef, 0.05) }"
            " my @bad = $s->message_status($r[0], '12345678'); print \"bad $bad[4]\\n\";"
            " $s->quit;"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        _, tag, passcode, code = lines[0].split()
        self.assertEqual(code, "9")  # Net::SNPP's CMD_2WAYQUEUED: a 9xx answer
        self.assertEqual(len(passcode), 8)
        [m] = await self.stored_messages()
        self.assertEqual(int(tag), m["id"])
        statuses = [line.split(" ", 2)[1:] for line in lines if line.startswith("status")]
        self.assertEqual(statuses[-1], ["880", "Delivered"])
        self.assertTrue(set(s[0] for s in statuses) <= {"960", "860", "880"}, statuses)
        self.assertEqual(lines[-1], "bad 550")


class Level3Tests(SnppCase):
    """Level 3 and every error code, typed line by line."""

    async def test_msta_answers_queued_then_ktag_cancels(self) -> None:
        await self.start()
        s = await self.session()
        hold = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)).strftime(
            "%y%m%d%H%M%S"
        )
        replies = await self.ask(s, "2WAY", f"PAGE {ALICE}", "MESS later", f"HOLD {hold} +0000")
        self.assertEqual(codes(replies), [250, 250, 250, 250])
        [sent] = await self.ask(s, "SEND")
        code, tag, passcode, *_ = sent.split()
        self.assertEqual(code, "960")
        [status] = await self.ask(s, f"MSTA {tag} {passcode}")
        self.assertRegex(status, rf"^960 {tag} \d{{12}}\+0000 Queued until ")
        replies = await self.ask(
            s, f"KTAG {tag} 00000000", f"KTAG {tag} {passcode}", f"KTAG {tag} {passcode}"
        )
        self.assertEqual(codes(replies), [550, 250, 550])
        self.assertIn("too late", replies[2].lower())
        [status] = await self.ask(s, f"MSTA {tag} {passcode}")
        self.assertRegex(status, rf"^750 {tag} \d{{12}}\+0000 Failed: cancelled by the sender")
        [m] = await self.stored_messages()
        self.assertEqual((m["state"], m["error"]), ("failed", "cancelled by the sender"))

    async def test_a_cancelled_page_gives_its_quota_back(self) -> None:
        await self.start()
        await self.add_user(monthly_limit=1)
        s = await self.session()
        hold = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)).strftime(
            "%y%m%d%H%M%S"
        )
        replies = await self.ask(
            s, "LOGI alice s3cret", "2WAY", f"PAGE {ALICE}", "MESS later", f"HOLD {hold} +0000"
        )
        self.assertEqual(codes(replies), [250] * 5)
        [sent] = await self.ask(s, "SEND")
        _, tag, passcode, *_ = sent.split()
        replies = await self.ask(s, f"PAGE {ALICE}", "MESS over", "SEND")
        self.assertEqual(codes(replies), [250, 250, 554])  # the month's one SMS is taken
        replies = await self.ask(s, f"KTAG {tag} {passcode}", "SEND")
        self.assertEqual(codes(replies), [250, 250])  # cancelled: the same page now fits

    async def test_two_way_pages_one_number(self) -> None:
        await self.start('groups = { pair = ["+15551234567", "+15557654321"] }')
        s = await self.session()
        replies = await self.ask(s, "2WAY", "PAGE pair", f"PAGE {ALICE}", f"PAGE {BOB}")
        self.assertEqual(codes(replies), [250, 503, 250, 503])
        replies = await self.ask(s, "RESE", f"PAGE {ALICE}", "2WAY")
        self.assertEqual(codes(replies), [250, 250, 550])

    async def test_ping_expt_and_what_sms_cannot_do(self) -> None:
        await self.start()
        s = await self.session()
        replies = await self.ask(
            s,
            f"PING {ALICE}",
            "PING 12",
            "EXPT 2",
            "EXPT 0",
            "NOQU",
            "ACKR 1",
            "ACKR 0",
            "RTYP TEXT",
            "MCRE 01 Yes",
        )
        self.assertEqual(codes(replies), [250, 550, 250, 550, 550, 550, 250, 550, 550])
        self.assertIn("Not supported", replies[4])
        replies = await self.ask(s, f"PAGE {ALICE}", "MESS expiring", "SEND")
        self.assertEqual(codes(replies), [250, 250, 250])
        [m] = await self.stored_messages()
        self.assertAlmostEqual(m["expires_at"] - m["created_at"], 7200, delta=1)

    async def test_help_and_command_words(self) -> None:
        await self.start()
        s = await self.session()
        self.assertTrue(s.greeting.startswith("220 sms.example.org"), s.greeting)
        [help_] = await self.ask(s, "HELP")
        lines = help_.splitlines()
        self.assertTrue(all(line.startswith("214 ") for line in lines[:-1]))
        self.assertTrue(lines[-1].startswith("250 "))
        self.assertTrue(any("MSTAtus" in line for line in lines))
        replies = await self.ask(s, f"pager {ALICE}", "Message lower case works", "send")
        self.assertEqual(codes(replies), [250, 250, 250])
        [part] = await self.loopback_parts(1)
        self.assertEqual(part["text"], "lower case works")

    async def test_error_codes_and_nothing_half_built_is_queued(self) -> None:
        await self.start("max_recipients = 2")
        s = await self.session()
        replies = await self.ask(
            s,
            "FROB",  # unknown
            "",  # empty
            "SEND",  # no pager
            "PAGE not-a-number",
            "PAGE",
            f"PAGE {ALICE} 1234 extra",
            "HOLD 991399999999",
            "HOLD 200101000000",
            "LEVE 12",
            "ALER 2",
            "COVE nowhere",
            f"PAGE {ALICE} 1234",  # with a PIN: fine
            "SEND",  # no text
            "MESS one",
            "MESS two",
            "DATA",
            f"PAGE {BOB}",
            "PAGE +15550001111",
            "QUIT",
        )
        expected = [500, 500, 503, 550, 550, 550, 550, 550, 550, 550, 550, 250, 503, 250, 503]
        self.assertEqual(codes(replies), [*expected, 503, 250, 552, 221])
        self.assertIn("FROB", replies[0])
        self.assertTrue(await threads.deferToThread(s.closed))
        self.assertEqual(await self.stored_messages(), [])

    async def test_long_line_and_long_data(self) -> None:
        await self.start("max_text = 200")
        s = await self.session()
        replies = await self.ask(s, "MESS " + "x" * 400, f"PAGE {ALICE}", "DATA")
        self.assertEqual(codes(replies), [550, 250, 354])
        s.sock.sendall(b"".join([b"y" * 60 + b"\r\n"] * 5))
        replies = await self.ask(s, ".")
        self.assertEqual(codes(replies), [550])
        replies = await self.ask(s, "MESS " + "z" * 150, "SEND")
        self.assertEqual(codes(replies), [250, 250])
        [m] = await self.stored_messages()
        self.assertEqual(m["text"], "z" * 150)

    async def test_gateway_down_is_554_and_nothing_queued(self) -> None:
        await self.start()
        s = await self.session()
        replies = await self.ask(s, "COVE spare", f"PAGE {ALICE}", "MESS x", "SEND")
        self.assertEqual(codes(replies), [250, 250, 250, 554])
        self.assertIn("No gateway is up", replies[3])
        self.assertEqual(await self.stored_messages(), [])

    async def test_queue_when_down_if_configured(self) -> None:
        await self.start('when_down = "queue"')
        s = await self.session()
        replies = await self.ask(s, "COVE spare", f"PAGE {ALICE}", "MESS x", "SEND")
        self.assertEqual(codes(replies), [250, 250, 250, 250])
        [m] = await self.stored_messages()
        self.assertEqual((m["state"], m["pin_gateway"]), ("queued", "spare"))

    async def test_over_quota_is_554(self) -> None:
        await self.start()
        await self.add_user(monthly_limit=1)
        s = await self.session()
        replies = await self.ask(s, "LOGI alice s3cret", f"PAGE {ALICE}", "MESS one", "SEND")
        self.assertEqual(codes(replies), [250, 250, 250, 250])
        replies = await self.ask(s, f"PAGE {ALICE}", "MESS two", "SEND")
        self.assertEqual(codes(replies), [250, 250, 554])
        self.assertEqual(len(await self.stored_messages()), 1)

    async def test_login_failures_end_in_421(self) -> None:
        await self.start()
        await self.add_user()
        s = await self.session()
        replies = await self.ask(s, "LOGI alice wrong", "LOGI nobody x", "LOGI alice s3cret")
        self.assertEqual(codes(replies), [550, 550, 250])
        s2 = await self.session()
        replies = await self.ask(s2, "LOGI alice a", "LOGI alice b", "LOGI alice c")
        self.assertEqual(codes(replies), [550, 550, 421])
        self.assertTrue(await threads.deferToThread(s2.closed))

    async def test_untrusted_clients_log_in_first(self) -> None:
        await self.start()
        await self.add_user()
        s = await self.session(source="127.0.0.2")
        replies = await self.ask(s, f"PAGE {ALICE}", "LOGI alice s3cret", f"PAGE {ALICE}")
        self.assertEqual(codes(replies), [550, 250, 250])
        self.assertIn("LOGIn", replies[0])

    async def test_anonymous_from_anywhere_if_configured(self) -> None:
        await self.start("anonymous = true")
        s = await self.session(source="127.0.0.2")
        replies = await self.ask(s, f"PAGE {ALICE}", "MESS hi", "SEND")
        self.assertEqual(codes(replies), [250, 250, 250])

    async def test_idle_timeout(self) -> None:
        await self.start('idle_timeout = "1s"')
        s = await self.session()
        line = await threads.deferToThread(s.reply)
        self.assertTrue(line.startswith("421 "), line)

    async def test_several_transactions_and_pipelined_lines(self) -> None:
        await self.start()
        s = await self.session()
        batch = "".join(f"PAGE {ALICE}\r\nMESS page {i}\r\nSEND\r\n" for i in range(3)).encode()
        s.sock.sendall(batch)
        replies = await threads.deferToThread(lambda: [s.reply() for _ in range(9)])
        self.assertEqual(codes(replies), [250] * 9)
        parts = await self.loopback_parts(3)
        self.assertEqual(sorted(p["text"] for p in parts), ["page 0", "page 1", "page 2"])


# -- the parser, alone --------------------------------------------------------------------


class ParserTests(unittest.TestCase):
    def test_first_four_letters_any_case(self) -> None:
        self.assertEqual(
            snpp.parse_command("pager +1555 1234"), snpp.Command("PAGE", "+1555 1234", True)
        )
        self.assertEqual(
            snpp.parse_command("MESSAGE  hello  world "), snpp.Command("MESS", "hello  world", True)
        )
        self.assertEqual(snpp.parse_command("2way"), snpp.Command("2WAY", "", True))
        self.assertFalse(snpp.parse_command("PAG x").known)
        self.assertEqual(snpp.parse_command("   ").verb, "")

    def test_lines_crlf_lf_and_too_long(self) -> None:
        lines = snpp.LineBuffer(10)
        self.assertEqual(list(lines.feed(b"PAGE 1\r\nMESS")), [b"PAGE 1"])
        self.assertEqual(list(lines.feed(b" hi\nQUIT\r\n")), [b"MESS hi", b"QUIT"])
        out = list(lines.feed(b"x" * 25))
        self.assertEqual(out, [])
        out = list(lines.feed(b"yy\r\nSEND\r\n"))
        self.assertEqual(out, [snpp.TooLong(28), b"SEND"])

    def test_data_reader(self) -> None:
        reader = snpp.DataReader(100)
        for raw in (b"one", b"..two", b".three"):
            self.assertFalse(reader.line(raw))
        self.assertTrue(reader.line(b"."))
        self.assertEqual(reader.text(), "one\n.two\nthree")

    def test_hold_forms(self) -> None:
        utc = datetime.UTC
        expected = datetime.datetime(2026, 12, 2, 13, 30, 15, tzinfo=utc).timestamp()
        self.assertEqual(snpp.parse_hold("261202133015", utc), expected)
        self.assertEqual(snpp.parse_hold("20261202133015", utc), expected)
        self.assertEqual(snpp.parse_hold("261202153015 +0200", utc), expected)
        self.assertEqual(snpp.parse_hold("261202083015 -05", utc), expected)
        self.assertEqual(snpp.parse_hold("2612021330", utc), expected - 15)
        zone = datetime.timezone(datetime.timedelta(hours=1))
        self.assertEqual(snpp.parse_hold("261202143015", zone), expected)
        for bad in ("", "26120213301", "261302133015", "261202133015 +2500", "tomorrow"):
            with self.assertRaises(snpp.HoldError, msg=bad):
                snpp.parse_hold(bad, utc)

    def test_reply_cannot_be_split(self) -> None:
        self.assertEqual(snpp.reply(550, "bad\r\n250 fake"), b"550 bad  250 fake\r\n")


@attrs.define
class _Submitter:
    reactor: Any = global_reactor
    count: int = 0

    def submit(self, sub: Any, user: Any, **kw: Any) -> Any:
        self.count += 1
        return succeed([Accepted(r, self.count, 1) for r in sub.recipients])


class _Nobody:
    def authenticate(self, name: str, password: str) -> Any:
        return fail(UnauthorizedLogin("no users here"))


def _fuzz_server() -> tuple[SnppServer, StringTransport]:
    context = SnppContext(
        submitter=_Submitter(),  # type: ignore[arg-type]
        directory=_Nobody(),  # type: ignore[arg-type]
        settings=SnppSection(max_text=300, groups={}),
        domain="sms.example.org",
        default_country="US",
        trusted_networks=[],
        gateway_ids=frozenset({"loopback"}),
        groups={"team": (ALICE, BOB)},
        message=lambda _id: succeed(None),
        cancel=lambda _id: succeed((None, [])),
        secret=lambda: succeed(b"k" * 32),
    )
    server = SnppServer(context, PassCodes(context.secret))
    server.trusted = True
    transport = StringTransport()
    server.makeConnection(transport)
    server.trusted = True
    return server, transport


WORDS = st.sampled_from(
    [*snpp.COMMANDS, "page", "2way", "XYZ", "", ".", "..", "\t", "\x00", "é", ALICE, "team"]
)
LINES = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(WORDS, st.text(max_size=20)), max_size=5).map(
        lambda ws: " ".join(ws).encode("utf-8", "surrogatepass")
    ),
)


class FuzzTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(LINES, max_size=30), st.integers(min_value=1, max_value=50))
    def test_random_lines_get_replies_never_a_crash(self, lines: list[bytes], chunk: int) -> None:
        server, transport = _fuzz_server()
        self.addCleanup(server.setTimeout, None)
        stream = b"".join(line.replace(b"\n", b" ") + b"\r\n" for line in lines)
        for i in range(0, len(stream), chunk):
            server.dataReceived(stream[i : i + chunk])
        out = transport.value().decode("utf-8", "replace").split("\r\n")
        self.assertEqual(out[-1], "")
        for line in out[:-1]:
            self.assertRegex(line, r"^[2-9]\d\d ", out)
            self.assertNotIn("Traceback", line)
        self.assertFalse(self.flushLoggedErrors())
