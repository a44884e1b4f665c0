"""Alerts to the administrator, as a real SMTP server (aiosmtpd) or the Maildir gets them."""

from __future__ import annotations

import email
import email.policy
import mailbox
import socket
import tempfile
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from twisted.internet import reactor as global_reactor
from twisted.trial import unittest

from smsd import alerts
from smsd.alerts import Alerts
from smsd.gateways.base import Gateway, Health
from smsd.mailout import MailOut
from tests.fakes import sleep, wait_for

reactor: Any = global_reactor


class Inbox:
    """aiosmtpd handler: keeps what it was given, as a user's mailbox would."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Modem(Gateway):
    type = "modem"


def body(message: Any) -> str:
    return message.get_body(("plain",)).get_content()


class RelayTests(unittest.TestCase):
    def start_server(self, port: int = 0) -> Inbox:
        inbox = Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=port or free_port())
        controller.start()
        self.addCleanup(controller.stop)
        self.port = controller.port
        return inbox

    async def test_down_and_back_up_are_two_mails(self) -> None:
        inbox = self.start_server()
        a = Alerts(
            reactor,
            to="ops@example.org",
            domain="sms.example.org",
            mail=MailOut(reactor, relay=f"127.0.0.1:{self.port}", maildirs=""),
        )
        modem = Modem("modem1", None)  # type: ignore[arg-type]
        a.health_changed(modem, Health.DOWN, "the modem stopped answering")
        a.health_changed(modem, Health.DOWN, "cannot open /dev/ttyUSB0: No such file")
        a.health_changed(modem, Health.UP, "")
        await wait_for(lambda: len(inbox.envelopes) >= 2, what="two alerts")
        await sleep(0.2)
        self.assertEqual(len(inbox.envelopes), 2, "one mail per change, not per reason")
        (sender, to, down), (_, _, up) = inbox.envelopes
        self.assertEqual(sender, "smsd@sms.example.org")
        self.assertEqual(to, ["ops@example.org"])
        self.assertEqual(down["Subject"], "smsd: gateway modem1 is down")
        self.assertIn("the modem stopped answering", body(down))
        self.assertEqual(down["Auto-Submitted"], "auto-generated")
        self.assertEqual(up["Subject"], "smsd: gateway modem1 is back up")
        self.assertIn("it was down: the modem stopped answering", body(up))
        self.assertEqual(a.sent, 2)

    async def test_up_without_down_and_shutdown_say_nothing(self) -> None:
        inbox = self.start_server()
        a = Alerts(
            reactor,
            to="ops@example.org",
            domain="sms.example.org",
            mail=MailOut(reactor, relay=f"127.0.0.1:{self.port}", maildirs=""),
        )
        modem = Modem("modem1", None)  # type: ignore[arg-type]
        a.health_changed(modem, Health.UP, "")
        a.health_changed(modem, Health.DOWN, "stopped")
        await sleep(0.5)
        self.assertEqual(inbox.envelopes, [])

    async def test_relay_down_is_retried(self) -> None:
        self.patch(alerts, "RETRY_MIN", 0.2)
        port = free_port()
        a = Alerts(
            reactor,
            to="ops@example.org",
            domain="sms.example.org",
            mail=MailOut(reactor, relay=f"127.0.0.1:{port}", maildirs=""),
        )
        a.health_changed(Modem("smpp1", None), Health.DOWN, "bind refused")  # type: ignore[arg-type]
        await sleep(0.5)  # the first try finds nobody listening
        self.assertEqual(a.sent, 0)
        inbox = self.start_server(port)
        await wait_for(lambda: inbox.envelopes, timeout=10, what="the alert, tried again")
        self.assertEqual(inbox.envelopes[0][2]["Subject"], "smsd: gateway smpp1 is down")


class MaildirTests(unittest.TestCase):
    async def test_without_relay_alerts_land_in_a_maildir(self) -> None:
        maildirs = tempfile.mkdtemp() + "/mail"
        path = maildirs + "/alerts"
        mail = MailOut(reactor, relay="", maildirs=maildirs)
        a = Alerts(reactor, to="ops@example.org", domain="sms.example.org", mail=mail)
        modem = Modem("modem1", None)  # type: ignore[arg-type]
        a.health_changed(modem, Health.DOWN, "SIM asks for its PUK")
        a.health_changed(modem, Health.UP, "")
        await wait_for(lambda: a.sent == 2, what="two alerts written")
        subjects = sorted(m["Subject"] for m in mailbox.Maildir(path, create=False))
        self.assertEqual(
            subjects, ["smsd: gateway modem1 is back up", "smsd: gateway modem1 is down"]
        )
