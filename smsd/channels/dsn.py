"""Delivery status notifications for mail-submitted SMS (RFC 3464), so senders know.

Someone who mailed an SMS hears back the way mail tells of trouble: a
warning when it has waited ``delay_warning`` and is still not sent (the
phone's network, a modem down), and a non-delivery report when it failed for
good or expired, with the operator's words and the original text. Both are
``multipart/report; report-type=delivery-status``, sent with the null sender
(``MAIL FROM:<>``) so that nothing answers them, and never to a null sender,
to an address at smsd's own domain, or to a mailer daemon: no loops.
"""

from __future__ import annotations

import email.utils
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from smsd.core.owners import mail_thread
from smsd.mailout import MailOut
from smsd.model import State
from smsd.store import Change

log = Logger()

_DAEMONS = ("mailer-daemon", "postmaster", "noreply", "no-reply")


def reportable(address: str | None, domain: str) -> bool:
    """May a report go to this sender? Not to nobody, not to ourselves, not to a daemon."""
    if not address or "@" not in address:
        return False
    local, _, host = address.rpartition("@")
    return host.lower() != domain.lower() and local.lower() not in _DAEMONS


def report_mail(message: dict[str, Any], domain: str, *, final: bool, now: float) -> Message:
    """The RFC 3464 report about one SMS: failed (``final``) or delayed."""
    recipient = f"{message['recipient']}@{domain}"
    words = message.get("status") or message.get("error") or ""
    expired = message.get("state") == State.EXPIRED.value
    if final:
        action, status = "failed", "4.4.7" if expired else "5.0.0"
        subject = f"SMS to {message['recipient']} could not be delivered"
        human = (
            f"Your SMS to {message['recipient']} could not be delivered"
            f"{' in time: it expired' if expired else ''}.\n"
        )
    else:
        action, status = "delayed", "4.4.1"
        subject = f"SMS to {message['recipient']} is delayed"
        human = (
            f"Your SMS to {message['recipient']} has not been sent yet. smsd keeps trying;"
            " you will hear again only if it fails.\n"
        )
    if words:
        human += f"The network said: {words}\n"
    human += f"\nYour text was:\n\n{message.get('text') or ''}\n"

    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"MAILER-DAEMON@{domain}"
    report["To"] = message["reply_to"]
    report["Subject"] = subject
    report["Date"] = email.utils.formatdate(now, localtime=True)
    report["Message-ID"] = email.utils.make_msgid("dsn", domain=domain)
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834: nothing answers it
    thread = mail_thread(message.get("origin"))
    if thread:
        report["In-Reply-To"] = thread
        report["References"] = thread
    report.attach(MIMEText(human, "plain", "utf-8"))
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {domain}"
    per_recipient = Message()
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    if words:
        per_recipient["Diagnostic-Code"] = f"smtp; {words}"
    status_part = MIMEBase("message", "delivery-status")
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    headers = MIMEBase("text", "rfc822-headers")
    headers.set_payload(f"To: {recipient}\n" + (f"Message-ID: {thread}\n" if thread else ""))
    report.attach(headers)
    return report


class MailReports(Service):
    """Tells mail senders of delays and failures; hand ``changes`` to the core's notify."""

    name = "dsn"

    def __init__(
        self, store: Any, reactor: Any, mail: MailOut, domain: str, delay_warning: float
    ) -> None:
        self.store = store
        self.reactor = reactor
        self.mail = mail
        self.domain = domain
        self.delay_warning = delay_warning
        self.sent = 0
        self._loop = LoopingCall(self._scan)
        self._loop.clock = reactor

    def startService(self) -> None:
        super().startService()
        if self.delay_warning > 0:
            self._loop.start(min(60.0, max(0.2, self.delay_warning / 4)), now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def changes(self, changes: list[Change]) -> None:
        for c in changes:
            if c.channel == "smtp" and c.state in (State.FAILED, State.EXPIRED):
                ensureDeferred(self._final(c.message_id)).addErrback(
                    lambda f: log.failure("a non-delivery report failed", f)
                )

    async def _final(self, message_id: int) -> None:
        message = await self.store.report_target(message_id)
        if message is None or not reportable(message["reply_to"], self.domain):
            return
        report = report_mail(message, self.domain, final=True, now=self.reactor.seconds())
        await self._send(report, message["reply_to"])

    async def _send(self, report: Message, to: str) -> None:
        try:
            await self.mail.send(report, "", to, to)
        except Exception as e:  # the report is a courtesy: logged, not retried for ever
            log.warn(
                "report {subject!r} to {to} not sent: {why}",
                subject=report["Subject"],
                to=to,
                why=str(e),
            )
            return
        self.sent += 1

    def _scan(self) -> Any:
        return ensureDeferred(self._warn()).addErrback(
            lambda f: log.failure("delay warnings failed", f)
        )

    async def _warn(self) -> None:
        now = self.reactor.seconds()
        delayed = await self.store.delayed_mail(now - self.delay_warning, 100)
        if not delayed:
            return
        await self.store.mark_warned([m["id"] for m in delayed])  # once, even if a send fails
        for message in delayed:
            if reportable(message["reply_to"], self.domain):
                report = report_mail(message, self.domain, final=False, now=now)
                await self._send(report, message["reply_to"])
