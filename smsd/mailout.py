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
from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.threads import deferToThreadPool
from twisted.mail.smtp import ESMTPSenderFactory

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


class MailOut:
    def __init__(
        self,
        reactor: Any,
        *,
        relay: str,
        maildirs: str,
        user: str = "",
        password: str = "",
        require_tls: bool = False,
        trust_root: Any = None,
        timeout: float = 120.0,
    ) -> None:
        self.reactor = reactor
        self.relay = relay
        self.maildirs = maildirs
        self.user = user
        self.password = password  # never logged
        self.require_tls = require_tls
        self.trust_root = trust_root  # the relay's CA for STARTTLS; None: the system's
        self.timeout = timeout  # a relay that stops answering must not hold the queue

    @property
    def via(self) -> str:
        return f"relay {self.relay}" if self.relay else f"Maildir under {self.maildirs}"

    def send(self, message: Message, sender: str, to: str, mailbox_name: str) -> Deferred[Any]:
        """One try: fires when the relay took the mail (or the Maildir has it)."""
        if self.relay:
            return self._relay(message, sender, to)
        path = self.maildir(mailbox_name)

        def write() -> str:
            os.makedirs(self.maildirs, exist_ok=True)
            return str(mailbox.Maildir(path, create=True).add(message))

        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), write)

    def _relay(self, message: Message, sender: str, to: str) -> Deferred[Any]:
        """Twisted's ESMTP client: STARTTLS when offered (required with
        ``require_tls``, the certificate checked against ``trust_root``), AUTH
        with the relay's account when one is configured."""
        host, _, port = self.relay.rpartition(":")
        d: Deferred[Any] = Deferred()
        factory = ESMTPSenderFactory(
            self.user.encode() if self.user else None,
            self.password.encode() if self.password else None,
            sender,
            [to],
            BytesIO(message.as_bytes()),
            d,
            heloFallback=not self.require_tls and not self.user,
            requireAuthentication=bool(self.user),
            requireTransportSecurity=self.require_tls,
            contextFactory=optionsForClientTLS(host, trustRoot=self.trust_root),
            hostname=host,
        )
        factory.retries = 0  # the callers retry, with their own waits
        connector = self.reactor.connectTCP(host, int(port), factory)

        def give_up(f: Any) -> Any:
            factory.sendFinished = True  # no retry after this
            if factory.currentProtocol is not None:
                factory.currentProtocol.transport.abortConnection()
            else:
                connector.disconnect()
            return f

        return d.addTimeout(self.timeout, self.reactor).addErrback(give_up)

    def maildir(self, name: str) -> str:
        """data_dir/mail/<name>: a name made safe for a file name."""
        return os.path.join(self.maildirs, _UNSAFE.sub("_", name) or "_")
