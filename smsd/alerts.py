"""Alerts to the administrator: a gateway went down, a gateway is back.

A modem that hangs or an SMSC link that drops at night must not go unnoticed
until users complain, so every such change of a gateway's health becomes a
mail to ``[smsd] admin_email`` (and a log line, which the core writes anyway).
A gateway that never came up after the start counts as down. Mail goes
through ``[smtp] relay`` when one is configured, one alert after the other so
that "down" never arrives after "back up", retried with growing waits;
without a relay it is written to a Maildir in the data directory, so that an
installation without a mail server still keeps them.
"""

from __future__ import annotations

import collections
import email.utils
import socket
from email.message import EmailMessage
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from smsd.gateways.base import Gateway, Health
from smsd.mailout import MailOut

log = Logger()

RETRY_MIN = 10.0
RETRY_MAX = 600.0
GIVE_UP = 86400.0  # an alert older than a day is of no use any more


class Alerts:
    """Turns gateway health changes into mails; hand ``health_changed`` to the core."""

    def __init__(self, reactor: Any, *, to: str, domain: str, mail: MailOut) -> None:
        self.reactor = reactor
        self.to = to
        self.sender = f"smsd@{domain}"
        self.mail = mail
        self.down: dict[str, str] = {}  # gateway id -> why, for those we told are down
        self.queue: collections.deque[tuple[EmailMessage, float]] = collections.deque()
        self.sent = 0
        self.failed = 0

    def health_changed(self, gateway: Gateway, health: Health, reason: str) -> None:
        if health == Health.DOWN and gateway.id not in self.down:
            if reason == "stopped":
                return  # smsd is shutting down: nothing for anyone to do
            self.down[gateway.id] = reason
            self.alert(
                f"smsd: gateway {gateway.id} is down",
                f"The {gateway.type} gateway {gateway.id} is down: {reason or 'no reason given'}.\n"
                "smsd keeps trying to bring it back and sends its messages through other"
                " gateways meanwhile (if the routes have any).\n",
            )
        elif health == Health.UP and gateway.id in self.down:
            why = self.down.pop(gateway.id)
            self.alert(
                f"smsd: gateway {gateway.id} is back up",
                f"The {gateway.type} gateway {gateway.id} is up again (it was down: {why}).\n",
            )

    def alert(self, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = self.to
        message["Subject"] = subject
        message["Date"] = email.utils.formatdate(self.reactor.seconds(), localtime=True)
        message["Message-ID"] = email.utils.make_msgid("alert", domain=socket.getfqdn())
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: nobody answers it automatically
        message.set_content(f"{body}\nHost: {socket.gethostname()}\n")
        self.queue.append((message, self.reactor.seconds()))
        if len(self.queue) == 1:
            self._send(RETRY_MIN)

    def _send(self, wait: float) -> None:
        """Send the oldest alert; the next only after it, so that they arrive in order."""
        message, first = self.queue[0]
        d = self.mail.send(message, self.sender, self.to, "alerts")

        def next_one() -> None:
            self.queue.popleft()
            if self.queue:
                self._send(RETRY_MIN)

        def sent(_: Any) -> None:
            self.sent += 1
            next_one()

        def failed(f: Failure) -> None:
            if self.reactor.seconds() - first > GIVE_UP:
                self.failed += 1
                log.error(
                    "alert {subject!r} not sent for a day, dropped: {why}",
                    subject=message["Subject"],
                    why=f.getErrorMessage(),
                )
                next_one()
                return
            log.warn(
                "alert {subject!r} not sent ({why}); trying again in {wait:.0f} s",
                subject=message["Subject"],
                why=f.getErrorMessage(),
                wait=wait,
            )
            self.reactor.callLater(wait, self._send, min(wait * 2, RETRY_MAX))

        d.addCallbacks(sent, failed)
