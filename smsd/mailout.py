"""Mail smsd writes (replies from phones, alerts): through the relay, or into a Maildir.

One transport for every mail smsd sends, so that a site configures it once
(``[smtp] relay``) and a site without a mail server still keeps the mail, in
Maildirs under the data directory that any mail client can open.
"""

from __future__ import annotations

import mailbox
import os
import re
from email.message import Message
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.mail.smtp import sendmail

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


class MailOut:
    def __init__(self, reactor: Any, *, relay: str, maildirs: str) -> None:
        self.reactor = reactor
        self.relay = relay
        self.maildirs = maildirs

    @property
    def via(self) -> str:
        return f"relay {self.relay}" if self.relay else f"Maildir under {self.maildirs}"

    def send(self, message: Message, sender: str, to: str, mailbox_name: str) -> Deferred[Any]:
        """One try: fires when the relay took the mail (or the Maildir has it)."""
        if self.relay:
            host, _, port = self.relay.rpartition(":")
            return sendmail(host, sender, [to], message.as_bytes(), port=int(port))
        path = self.maildir(mailbox_name)

        def write() -> str:
            os.makedirs(self.maildirs, exist_ok=True)
            return str(mailbox.Maildir(path, create=True).add(message))

        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), write)

    def maildir(self, name: str) -> str:
        """data_dir/mail/<name>: a name made safe for a file name."""
        return os.path.join(self.maildirs, _UNSAFE.sub("_", name) or "_")
