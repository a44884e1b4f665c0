"""Mail through the organisation's relay with STARTTLS and AUTH, as aiosmtpd requires them."""

from __future__ import annotations

import shutil
import socket
import ssl
import tempfile
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from twisted.internet import defer
from twisted.internet import reactor as global_reactor
from twisted.mail.smtp import SMTPClientError, SMTPConnectError
from twisted.trial import unittest

from smsd.mailout import MailOut
from smsd.tls import load_trust_root
from tests.certs import self_signed

reactor: Any = global_reactor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def accounts(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> AuthResult:
    ok = isinstance(auth, LoginPassword) and (auth.login, auth.password) == (b"smsd", b"relay pw")
    return AuthResult(success=ok)


class RelayTests(unittest.TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="smsd-test-relay-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.cert, key = self_signed(self.directory, "mail.example.org", ip="127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.inbox = Inbox()
        self.port = free_port()
        controller = Controller(
            self.inbox,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=accounts,
        )
        controller.start()
        self.addCleanup(controller.stop)

    def mailout(self, password: str = "relay pw") -> MailOut:
        return MailOut(
            reactor,
            relay=f"127.0.0.1:{self.port}",
            maildirs="",
            user="smsd",
            password=password,
            require_tls=True,
            trust_root=load_trust_root(self.cert),
            timeout=5,
        )

    def message(self) -> EmailMessage:
        m = EmailMessage()
        m["From"] = "+15557654321@sms.example.org"
        m["To"] = "alice@example.org"
        m["Subject"] = "SMS from +15557654321"
        m.set_content("hello")
        return m

    async def test_starttls_and_auth(self) -> None:
        await self.mailout().send(
            self.message(), "+15557654321@sms.example.org", "alice@example.org", "alice"
        )
        self.assertEqual(
            self.inbox.mails, [("+15557654321@sms.example.org", ["alice@example.org"])]
        )

    async def test_wrong_password_fails_and_delivers_nothing(self) -> None:
        # Refused (535), or, as aiosmtpd leaves the client waiting, given up after the
        # timeout: either way a failure the caller retries, and nothing was delivered.
        with self.assertRaises((SMTPClientError, defer.TimeoutError)):
            await self.mailout("guess").send(self.message(), "", "alice@example.org", "alice")
        self.assertEqual(self.inbox.mails, [])

    async def test_an_untrusted_certificate_is_refused(self) -> None:
        out = self.mailout()
        out.trust_root = None  # the system's CAs: they never signed this one
        with self.assertRaises(SMTPConnectError) as e:
            await out.send(self.message(), "", "alice@example.org", "alice")
        self.assertIn("certificate verify failed", str(e.exception))
        self.assertEqual(self.inbox.mails, [])
