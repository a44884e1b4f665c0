"""Mail to SMS, sent the way mail clients and servers send it: Python's smtplib and swaks.

Each test runs a whole smsd in this process (``make_service``) with the loopback gateway
and ``[smtp] listen`` on a free port, sends a mail with a client we did not write (smtplib
in a thread, swaks in a subprocess) and checks what the sender's mail server hears (the
SMTP answers) and what a user would see in the JSON API (the queued messages).
"""

from __future__ import annotations

import base64
import email
import os
import smtplib
import socket
import ssl
import subprocess
from email.message import EmailMessage
from typing import Any

from twisted.internet import defer, threads
from twisted.internet import reactor as global_reactor
from twisted.trial import unittest

from smsd.channels.smtp import AddressError, clean, parse_batch, parse_recipient, text_of
from smsd.core.submit import Refused
from smsd.core.users import hash_password
from smsd.model import User
from smsd.service import Smsd
from tests.certs import self_signed
from tests.daemon import DaemonCase
from tests.fakes import wait_for
from tests.process import swaks

reactor: Any = global_reactor

ALICE = "+15551234567"

CONFIG = """
[smsd]
traffic_log = ""
domain = "sms.example.org"
default_country = "US"
trusted_networks = ["127.0.0.1/32"]
[snpp]
listen = []
[sip]
listen = []
[http]
listen = []
[smtp]
listen = ["tcp:{port}:interface=127.0.0.1"]
max_size = 20000
{extra}
[[gateway]]
id = "loopback"
type = "loopback"
latency = "1ms"
report_delay = "10ms"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mail(
    to: list[str], body: str = "Hello from mail", subject: str = "", **headers: str
) -> EmailMessage:
    m = EmailMessage()
    m["From"] = "alice@example.org"
    m["To"] = ", ".join(to)
    if subject:
        m["Subject"] = subject
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body)
    return m


class SmtpCase(DaemonCase):
    timeout = 30

    async def start(self, extra: str = "anonymous = true") -> Smsd:
        """smsd; ``extra``: [smtp] keys (most tests here send as an anonymous trusted
        sender; the default refusal of those has its own test)."""
        self.port = free_port()
        return self.run_smsd(CONFIG.format(port=self.port, extra=extra))

    def send(
        self, message: EmailMessage, *, to: list[str] | None = None, source: str = "127.0.0.1"
    ) -> defer.Deferred[Any]:
        """smtplib in a thread: fires with what the server said to each recipient."""

        def run() -> Any:
            with smtplib.SMTP("127.0.0.1", self.port, source_address=(source, 0), timeout=10) as s:
                s.ehlo("client.example.org")
                return s.send_message(message, from_addr="alice@example.org", to_addrs=to)

        return threads.deferToThread(run)

    async def message(self, message_id: int) -> dict[str, Any]:
        assert self.root is not None
        m = await self.root.store.get_message(message_id)
        assert m is not None
        return m

    async def last_messages(self, count: int) -> list[dict[str, Any]]:
        out = await self.stored_messages()
        self.assertEqual(len(out), count, out)
        return out


class SendTests(SmtpCase):
    async def test_mail_becomes_an_sms(self) -> None:
        await self.start()
        refused = await self.send(mail([f"{ALICE}@sms.example.org"], "Server room too hot\n"))
        self.assertEqual(refused, {})
        [m] = await self.last_messages(1)
        self.assertEqual(
            (m["recipient"], m["text"], m["channel"]), (ALICE, "Server room too hot", "smtp")
        )
        self.assertEqual(m["reply_to"], "alice@example.org")
        await wait_for(
            lambda: defer.ensureDeferred(self._delivered(m["id"])), what="delivered by loopback"
        )

    async def _delivered(self, message_id: int) -> bool:
        return (await self.message(message_id))["state"] == "delivered"

    async def test_250_names_the_queued_sms(self) -> None:
        await self.start()

        def run() -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                s.ehlo()
                s.mail("alice@example.org")
                s.rcpt(f"{ALICE}@sms.example.org")
                return s.data(b"Subject: hi\r\n\r\nHello\r\n")

        code, words = await threads.deferToThread(run)
        self.assertEqual(code, 250)
        self.assertEqual(words, b"2.0.0 Queued as SMS 1")

    async def test_several_recipients_national_and_outlook_forms(self) -> None:
        await self.start()
        to = [
            f"{ALICE}@sms.example.org",
            "(555) 765-4321@sms.example.org",  # not a valid address for smtplib; below
        ]
        message = mail(to[:1], "To three phones")
        refused = await self.send(
            message,
            to=[
                f"{ALICE}@SMS.Example.Org",
                "5557654321@sms.example.org",
                '"sms:+15550001111?maxmsgs=3"@example.org',
            ],
        )
        self.assertEqual(refused, {})
        messages = await self.last_messages(3)
        self.assertEqual(
            sorted(m["recipient"] for m in messages), ["+15550001111", ALICE, "+15557654321"]
        )
        self.assertEqual({m["text"] for m in messages}, {"To three phones"})

    async def test_same_number_twice_is_one_sms(self) -> None:
        await self.start()
        await self.send(
            mail([f"{ALICE}@sms.example.org"], "once"),
            to=[f"{ALICE}@sms.example.org", "5551234567@sms.example.org"],
        )
        await self.last_messages(1)

    async def test_html_only_signature_and_subject(self) -> None:
        await self.start()
        html = EmailMessage()
        html["Subject"] = "ignored"
        html.set_content(
            "<html><head><style>p {color: red}</style></head><body><p>Call me &amp; "
            "Bob</p></body></html>",
            subtype="html",
        )
        self.assertEqual(text_of(html), "Call me & Bob")
        signed = mail([], "Back at 5\n\n-- \nAlice Example\nACME Ltd\n")
        self.assertEqual(text_of(signed), "Back at 5")
        subject_only = mail([], "", subject="Generator 2 failed")
        self.assertEqual(text_of(subject_only), "Generator 2 failed")
        with self.assertRaises(smtplib.SMTPDataError) as e:  # nothing left to send
            await self.send(mail([f"{ALICE}@sms.example.org"], "-- \nonly a signature"))
        self.assertEqual(e.exception.smtp_code, 554)
        self.assertIn(b"5.6.0 No text", e.exception.smtp_error)

    async def test_maxmsgs_from_the_outlook_form(self) -> None:
        await self.start()
        await self.send(mail([], "x" * 600), to=['"sms:+15551234567?maxmsgs=2"@example.org'])
        [m] = await self.last_messages(1)
        self.assertEqual(len(m["parts"]), 2)
        self.assertTrue(m["truncated"])


class RefusalTests(SmtpCase):
    async def test_not_an_sms_address(self) -> None:
        await self.start()
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as e:
            await self.send(mail(["bob@example.org"]))
        code, words = e.exception.recipients["bob@example.org"]
        self.assertEqual(code, 550)
        self.assertIn(b"5.7.1 relaying denied", words)

    async def test_bad_number_refused_good_one_sent(self) -> None:
        await self.start()
        refused = await self.send(
            mail([], "partly"), to=[f"{ALICE}@sms.example.org", "12ab@sms.example.org"]
        )
        self.assertEqual(list(refused), ["12ab@sms.example.org"])
        self.assertEqual(refused["12ab@sms.example.org"][0], 553)
        await self.last_messages(1)

    async def test_untrusted_client_must_log_in(self) -> None:
        await self.start()
        with self.assertRaises(smtplib.SMTPSenderRefused) as e:
            await self.send(mail([f"{ALICE}@sms.example.org"]), source="127.0.0.2")
        self.assertEqual(e.exception.smtp_code, 530)

    async def test_too_big(self) -> None:
        await self.start()
        with self.assertRaises(smtplib.SMTPDataError) as e:
            await self.send(mail([f"{ALICE}@sms.example.org"], "x" * 30000))
        self.assertEqual(e.exception.smtp_code, 552)
        await self.last_messages(0)

    async def test_store_trouble_is_451_so_the_mail_server_tries_again(self) -> None:
        root = await self.start()
        assert root.submitter is not None
        self.patch(
            root.submitter,
            "submit",
            lambda *a, **k: defer.fail(Refused(Refused.UNAVAILABLE, "the store is full")),
        )
        with self.assertRaises(smtplib.SMTPDataError) as e:
            await self.send(mail([f"{ALICE}@sms.example.org"]))
        self.assertEqual(e.exception.smtp_code, 451)
        self.assertIn(b"try again later", e.exception.smtp_error)

    async def test_too_long_without_truncation(self) -> None:
        await self.start("anonymous = true\ntruncate = false\nmaxmsgs = 1")
        with self.assertRaises(smtplib.SMTPDataError) as e:
            await self.send(mail([f"{ALICE}@sms.example.org"], "y" * 400))
        self.assertEqual(e.exception.smtp_code, 550)
        await self.last_messages(0)


class SenderTests(SmtpCase):
    async def test_from_trusted_networks_the_sender_must_be_a_user(self) -> None:
        root = await self.start("")
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as e:
            await self.send(mail([f"{ALICE}@sms.example.org"]))
        [(code, words)] = e.exception.recipients.values()
        self.assertEqual(code, 550)
        self.assertIn(b"no smsd user", words)
        await root.store.add_user(User("alice", emails=("Alice@Example.org",)))
        self.assertEqual(await self.send(mail([f"{ALICE}@sms.example.org"], "now")), {})
        [m] = await self.last_messages(1)
        self.assertEqual(m["user"], "alice")

    async def test_quoted_mail_and_folded_white_space(self) -> None:
        body = (
            "Running   late,\tstart without me\n\nOn Mon, 1 Dec 2026, Bob wrote:\n"
            "> When are you here?\n> Bob\n"
        )
        self.assertEqual(clean(body), "Running late, start without me")
        outlook = "Yes\r\n\r\n-----Original Message-----\r\nFrom: Bob\r\nSent: today"
        self.assertEqual(clean(outlook), "Yes")
        m = mail([], "Disk full", subject="db1")
        self.assertEqual(text_of(m, "subject"), "db1")
        self.assertEqual(text_of(m, "both"), "db1: Disk full")
        latin = EmailMessage()
        latin["Subject"] = "x"
        latin.set_content("Grüße aus Köln", charset="iso-8859-1", cte="quoted-printable")
        self.assertEqual(text_of(latin), "Grüße aus Köln")
        raw = b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n"
        self.assertEqual(text_of(email.message_from_bytes(raw)), "Grüße")  # RFC 2047

    async def test_auth_is_not_offered_before_starttls(self) -> None:
        cert, key = self_signed(self.directory)
        await self.start(f'tls_cert = "{cert}"\ntls_key = "{key}"')

        def run() -> tuple[bool, bool, bool]:
            with smtplib.SMTP(
                "127.0.0.1", self.port, source_address=("127.0.0.2", 0), timeout=10
            ) as s:
                s.ehlo()
                before = s.has_extn("auth")
                starttls = s.has_extn("starttls")
                s.starttls(context=ssl._create_unverified_context())
                s.ehlo()
                return before, starttls, s.has_extn("auth")

        before, starttls, after = await threads.deferToThread(run)
        self.assertEqual((before, starttls, after), (False, True, True))


class BatchTests(SmtpCase):
    """The 2sms body, mailed to [smtp] batch_address."""

    BODY = (
        "id: bob\npassword: s3cret\nmessage: Fire drill at 10:00,\nplease leave by the"
        " stairs\n+15551234567\n(555) 765-4321\nend\n-- \nFacilities"
    )

    async def start_batch(self) -> Smsd:
        root = await self.start('batch_address = "SMS@sms.example.org"')
        await root.store.add_user(User("bob", password_hash=hash_password("s3cret")))
        return root

    async def test_batch_body_to_two_numbers_as_the_user(self) -> None:
        root = await self.start_batch()
        refused = await self.send(mail([], self.BODY), to=["sms@sms.example.org"])
        self.assertEqual(refused, {})
        messages = await self.last_messages(2)
        self.assertEqual(sorted(m["recipient"] for m in messages), [ALICE, "+15557654321"])
        self.assertEqual(
            {m["text"] for m in messages}, {"Fire drill at 10:00,\nplease leave by the stairs"}
        )
        self.assertEqual({m["user"] for m in messages}, {"bob"})
        del root

    async def test_batch_wrong_password_and_bad_lines(self) -> None:
        await self.start_batch()
        for body, code, words in [
            (self.BODY.replace("s3cret", "guess"), 550, b"5.7.8 wrong id or password"),
            (self.BODY.replace("\nend", ""), 554, b"no end line"),
            (self.BODY.replace("(555) 765-4321", "Mr Smith"), 554, b"is no phone number"),
            ("message: hi\n+15551234567\nend", 554, b"missing id:, password:"),
        ]:
            with self.assertRaises(smtplib.SMTPDataError) as e:
                await self.send(mail([], body), to=["sms@sms.example.org"])
            self.assertEqual(e.exception.smtp_code, code, body)
            self.assertIn(words, e.exception.smtp_error)
        await self.last_messages(0)

    def test_parse_batch(self) -> None:
        b = parse_batch("id: a\npassword: b\nmessage:\nline one\nline two\n\n12345\nend")
        self.assertEqual(
            (b.user, b.password, b.text, b.numbers), ("a", "b", "line one\nline two", ("12345",))
        )


class SwaksTests(SmtpCase):
    """swaks, the SMTP test tool administrators use, as a second client we did not write.

    (Perl's option parser takes a leading "+" for an option unless POSIXLY_CORRECT.)"""

    def swaks(self, *args: str) -> defer.Deferred[subprocess.CompletedProcess[str]]:
        return threads.deferToThread(
            swaks, self.port, "--from", "ops@example.org", "--helo", "monitor.example.org", *args
        )

    async def test_swaks_pages_a_phone(self) -> None:
        await self.start()
        done = await self.swaks(
            f"--to={ALICE}@sms.example.org", "--body=Disk full on db1", "--h-Subject=alert"
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("250 2.0.0 Queued as SMS 1", done.stdout)
        [m] = await self.last_messages(1)
        self.assertEqual(m["text"], "Disk full on db1")

    async def test_swaks_hears_why_a_number_is_refused(self) -> None:
        await self.start()
        done = await self.swaks("--to=+1555@sms.example.org", "--body=hi")
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("553 5.1.3 '+1555' is no phone number", done.stdout)
        await self.last_messages(0)


class ParseTests(unittest.SynchronousTestCase):
    def test_forms(self) -> None:
        def p(local: str, domain: str = "sms.example.org") -> Any:
            r = parse_recipient(local, domain, "sms.example.org", "US")
            return (r.number, r.maxmsgs)

        self.assertEqual(p("+15551234567"), (ALICE, None))
        self.assertEqual(p("15551234567"), (ALICE, None))
        self.assertEqual(p("555-123-4567"), (ALICE, None))
        self.assertEqual(p('"sms:+15551234567?maxmsgs=3"', "example.org"), (ALICE, 3))
        self.assertEqual(p("SMS:+15551234567", "anything.example"), (ALICE, None))
        for bad, domain in [
            ("+15551234567", "example.org"),
            ("hello", "sms.example.org"),
            ("sms:+15551234567?maxmsgs=0", "x"),
            ("sms:+15551234567?colour=red", "x"),
        ]:
            with self.assertRaises(AddressError):
                p(bad, domain)


class AuthTests(SmtpCase):
    """Clients outside the trusted networks: STARTTLS, then AUTH as an smsd user."""

    async def start_with_tls(self) -> Smsd:
        cert, key = self_signed(self.directory)
        root = await self.start(f'tls_cert = "{cert}"\ntls_key = "{key}"')
        self.cert = cert
        await root.store.add_user(User("bob", password_hash=hash_password("s3cret")))
        return root

    def session(self, steps: Any) -> defer.Deferred[Any]:
        def run() -> Any:
            with smtplib.SMTP(
                "127.0.0.1", self.port, source_address=("127.0.0.2", 0), timeout=10
            ) as s:
                s.ehlo("far.example.net")
                return steps(s)

        return threads.deferToThread(run)

    async def test_starttls_then_auth_sends_as_the_user(self) -> None:
        root = await self.start_with_tls()

        def steps(s: smtplib.SMTP) -> Any:
            self.assertTrue(s.has_extn("starttls"))
            trust = ssl.create_default_context(cafile=os.path.join(self.directory, "cert.pem"))
            trust.check_hostname = False  # the certificate names sms.example.org, not 127.0.0.1
            s.starttls(context=trust)
            s.ehlo("far.example.net")
            s.login("bob", "s3cret")
            return s.send_message(mail([f"{ALICE}@sms.example.org"], "from far away"))

        self.assertEqual(await self.session(steps), {})
        m = await root.store.get_message(1)
        assert m is not None
        self.assertEqual((m["user"], m["text"]), ("bob", "from far away"))

    async def test_auth_in_the_clear_is_refused(self) -> None:
        await self.start_with_tls()

        def steps(s: smtplib.SMTP) -> Any:
            return s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob\0s3cret").decode())

        code, words = await self.session(steps)
        self.assertEqual(code, 538)
        self.assertIn(b"STARTTLS first", words)

    async def test_three_wrong_passwords_end_the_connection(self) -> None:
        await self.start_with_tls()

        def steps(s: smtplib.SMTP) -> Any:
            s.starttls(context=ssl._create_unverified_context())
            s.ehlo("far.example.net")
            answers = []
            for _ in range(3):
                answers.append(
                    s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob\0guess").decode())[0]
                )
            try:
                answers.append(s.noop()[0])
            except smtplib.SMTPServerDisconnected:
                answers.append("closed")
            return answers

        answers = await self.session(steps)
        self.assertEqual(answers[:2], [535, 535])
        self.assertIn(answers[-1], ("closed", 421))

    async def test_swaks_with_tls_and_auth(self) -> None:
        root = await self.start_with_tls()
        done = await threads.deferToThread(
            swaks,
            self.port,
            "--local-interface",
            "127.0.0.2",
            "--from",
            "bob@far.example.net",
            f"--to={ALICE}@sms.example.org",
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "bob",
            "--auth-password",
            "s3cret",
            "--body=via swaks",
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        m = await root.store.get_message(1)
        assert m is not None
        self.assertEqual((m["user"], m["text"]), ("bob", "via swaks"))
