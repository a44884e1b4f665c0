"""Answers from phones back to the mailbox, as the user's mail server (aiosmtpd) receives them.

A whole smsd runs in this process with the loopback gateway and the SMTP channel; mail goes
in with smtplib, SMS come in through the receiver as a gateway hands them over, and the
replies arrive at a real SMTP server standing in for the organisation's mail server (or in
the Maildir when no relay is set). Then Reply is pressed: the answer mail goes back through
smsd's SMTP channel and becomes an SMS to the phone.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import smtplib
import socket
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from twisted.internet import defer, threads
from twisted.internet import reactor as global_reactor

from smsd.channels import replies
from smsd.model import Inbound, SenderPolicy, Submission, User
from smsd.service import Smsd
from tests.daemon import DaemonCase
from tests.fakes import sleep, wait_for
from tests.process import swaks

reactor: Any = global_reactor

PHONE = "+15557654321"

CONFIG = """
[smsd]
traffic_log = ""
domain = "sms.example.org"
trusted_networks = ["127.0.0.1/32"]
[snpp]
listen = []
[sip]
listen = []
[http]
listen = []
[smtp]
listen = ["tcp:{port}:interface=127.0.0.1"]
relay = "{relay}"
{smtp}
[inbound]
{inbound}
[[gateway]]
id = "loopback"
type = "loopback"
report_delay = "10ms"
{gateway}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MailServer:
    """The organisation's mail server: aiosmtpd, keeping what it is given."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], EmailMessage]] = []
        self.senders: list[str] = []  # the envelope's MAIL FROM of each

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append((list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        self.senders.append(envelope.mail_from)
        return "250 OK"


class RepliesCase(DaemonCase):
    timeout = 30

    def setUp(self) -> None:
        super().setUp()
        self.data_dir = self.data
        self.server = MailServer()
        self.relay_port = free_port()

    def start_relay(self) -> None:
        controller = Controller(self.server, hostname="127.0.0.1", port=self.relay_port)
        controller.start()
        self.addCleanup(controller.stop)

    async def start(
        self, *, relay: bool = True, inbound: str = "", smtp: str = "", gateway: str = ""
    ) -> Smsd:
        if relay:
            self.start_relay()
        self.port = free_port()
        config = CONFIG.format(
            port=self.port,
            relay=f"127.0.0.1:{self.relay_port}" if relay else "",
            inbound=inbound,
            smtp=smtp if "anonymous" in smtp else f"anonymous = true\n{smtp}",
            gateway=gateway or 'latency = "1ms"',
        )
        return self.run_smsd(config)

    def mail(
        self, sender: str, to: str, body: str, message_id: str = "", envelope: str | None = None
    ) -> defer.Deferred[Any]:
        m = EmailMessage()
        m["From"] = sender
        m["To"] = to
        m["Subject"] = "from the office"
        if not sender:
            sender = "nobody@example.org"
            m.replace_header("From", sender)
        m["Message-ID"] = message_id or email.utils.make_msgid(domain="example.org")
        m.set_content(body)

        def run() -> Any:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                return s.send_message(m, from_addr=sender if envelope is None else envelope)

        return threads.deferToThread(run)

    def sms_from(self, phone: str, text: str, to: str = "+15550000000") -> defer.Deferred[int]:
        """An SMS arriving from the network, as a gateway hands it to the core."""
        assert self.root is not None and self.root.receiver is not None
        return self.root.receiver.receive(Inbound("loopback", phone, to, text))  # type: ignore[attr-defined]

    async def inbox(self, inbox_id: int) -> dict[str, Any]:
        assert self.root is not None
        state = await self.root.store.inbox_state(inbox_id)
        assert state is not None
        return state

    async def settled(self, inbox_id: int, *states: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            s = await self.inbox(inbox_id)
            return s if s["state"] in states else None

        return await wait_for(probe, what=f"inbox {inbox_id} {states}")

    async def sent_texts(self) -> list[tuple[str, str]]:
        assert self.root is not None
        out = []
        for i in range(1, 100):
            m = await self.root.store.get_message(i)
            if m is None:
                break
            out.append((m["recipient"], m["text"]))
        return out


class ReplyTests(RepliesCase):
    async def test_answer_comes_back_threaded_and_reply_sends_an_sms(self) -> None:
        await self.start()
        await self.mail(
            "alice@example.org",
            f"{PHONE}@sms.example.org",
            "Are you coming?",
            message_id="<question-1@example.org>",
        )
        inbox_id = await self.sms_from(PHONE, "Yes, at 5")
        await self.settled(inbox_id, "delivered")
        [(to, reply)] = self.server.mails
        self.assertEqual(to, ["alice@example.org"])
        self.assertEqual(reply["From"], f"{PHONE}@sms.example.org")
        self.assertEqual(reply["In-Reply-To"], "<question-1@example.org>")
        self.assertEqual(reply["References"], "<question-1@example.org>")
        self.assertEqual(reply["Content-class"], "MS-OMS-SMS")
        self.assertEqual(reply["X-MS-Reply-To-Mobile"], PHONE)
        self.assertEqual(reply.get_content().strip(), "Yes, at 5")
        # Reply, as a mail client does: to the From address, quoting the SMS.
        await self.mail("alice@example.org", str(reply["From"]), "Great, see you\n\n> Yes, at 5")
        await wait_for(lambda: defer.ensureDeferred(self._count(2)), what="the second SMS")
        self.assertEqual((await self.sent_texts())[1][0], PHONE)

    async def _count(self, n: int) -> bool:
        return len(await self.sent_texts()) >= n

    async def test_without_relay_into_the_owners_maildir(self) -> None:
        await self.start(relay=False)
        await self.mail("alice@example.org", f"{PHONE}@sms.example.org", "ping")
        inbox_id = await self.sms_from(PHONE, "pong")
        state = await self.settled(inbox_id, "delivered")
        self.assertEqual(state["delivered_to"], "alice@example.org")
        box = mailbox.Maildir(
            os.path.join(self.data_dir, "mail", "alice@example.org"), create=False
        )
        [m] = list(box)
        self.assertEqual(m["From"], f"{PHONE}@sms.example.org")

    async def test_relay_down_is_tried_again(self) -> None:
        self.patch(replies, "RETRY_MIN", 0.3)
        await self.start(relay=False)  # configured below with a relay nobody serves yet
        assert self.root is not None and self.root.replies is not None
        self.root.replies.mail.relay = f"127.0.0.1:{self.relay_port}"  # type: ignore[attr-defined]
        await self.mail("alice@example.org", f"{PHONE}@sms.example.org", "ping")
        inbox_id = await self.sms_from(PHONE, "pong")
        await wait_for(
            lambda: defer.ensureDeferred(self._attempted(inbox_id)), what="a failed first try"
        )
        self.assertEqual((await self.inbox(inbox_id))["state"], "new")
        self.start_relay()
        await self.settled(inbox_id, "delivered")
        self.assertEqual(len(self.server.mails), 1)

    async def _attempted(self, inbox_id: int) -> bool:
        return (await self.inbox(inbox_id))["attempts"] >= 1

    async def test_two_writers_the_phone_is_asked_then_a_tag_chooses(self) -> None:
        root = await self.start()
        await root.store.add_user(User("bob", emails=("bob@example.org",)))
        await self.mail("alice@example.org", f"{PHONE}@sms.example.org", "from Alice")
        await self.mail("bob@example.org", f"{PHONE}@sms.example.org", "from Bob")
        inbox_id = await self.sms_from(PHONE, "ok")
        state = await self.settled(inbox_id, "conflict")
        self.assertIn("alice@example.org", state["error"])
        texts = await self.sent_texts()
        self.assertEqual(texts[-1][0], PHONE)
        self.assertIn("#their@address#", texts[-1][1])
        self.assertEqual(self.server.mails, [])
        tagged = await self.sms_from(PHONE, "#bob@example.org# ok for you")
        await self.settled(tagged, "delivered")
        [(to, reply)] = self.server.mails
        self.assertEqual(to, ["bob@example.org"])
        self.assertEqual(reply.get_content().strip(), "ok for you")

    async def test_dedicated_number_is_its_users(self) -> None:
        root = await self.start()
        await root.store.add_user(
            User("carol", emails=("carol@example.org",), dedicated=("+15550009999",))
        )
        inbox_id = await self.sms_from(PHONE, "for Carol", to="+15550009999")
        state = await self.settled(inbox_id, "delivered")
        self.assertEqual((state["owner"], state["delivered_to"]), ("carol", "carol@example.org"))

    async def test_nobodys_sms_default_mailbox_or_kept(self) -> None:
        await self.start(inbound='default_mailbox = "sms@example.org"')
        inbox_id = await self.sms_from("+15551110000", "who is this?")
        await self.settled(inbox_id, "delivered")
        self.assertEqual(self.server.mails[0][0], ["sms@example.org"])

    async def test_nobodys_sms_without_default_stays_unowned(self) -> None:
        await self.start()
        inbox_id = await self.sms_from("+15551110000", "who is this?")
        await self.settled(inbox_id, "unowned")
        await sleep(0.3)
        self.assertEqual(self.server.mails, [])

    async def test_a_tag_for_a_stranger_sends_no_mail_to_them(self) -> None:
        await self.start()
        inbox_id = await self.sms_from("+15551110000", "#victim@example.net# spam")
        await self.settled(inbox_id, "unowned")
        self.assertEqual(self.server.mails, [])

    async def test_what_came_in_while_stopped_is_mailed_after_the_start(self) -> None:
        root = await self.start()
        await self.mail("alice@example.org", f"{PHONE}@sms.example.org", "ping")
        assert root.replies is not None
        root.replies.stopService()
        inbox_id = await self.sms_from(PHONE, "pong while stopped")
        await sleep(0.3)
        self.assertEqual((await self.inbox(inbox_id))["state"], "new")
        root.replies.startService()
        await self.settled(inbox_id, "delivered")


class SenderTests(RepliesCase):
    async def test_a_users_mail_goes_out_from_her_dedicated_number_and_comes_back(self) -> None:
        """alice@example.org is an smsd user with a dedicated number: her mail is sent from
        it, and the answer to that number is hers even with reply tracking off."""
        root = await self.start(inbound="reply_window = 0")
        await root.store.add_user(
            User(
                "alice",
                emails=("alice@example.org",),
                dedicated=("+15550001111",),
                sender_policy=SenderPolicy.DEDICATED,
            )
        )
        await self.mail("alice@example.org", f"{PHONE}@sms.example.org", "Lunch?")
        [sms] = [await root.store.get_message(1)]
        assert sms is not None
        self.assertEqual((sms["user"], sms["sender"]), ("alice", "+15550001111"))
        inbox_id = await self.sms_from(PHONE, "Sure", to="+15550001111")
        state = await self.settled(inbox_id, "delivered")
        self.assertEqual((state["owner"], state["delivered_to"]), ("alice", "alice@example.org"))

    async def test_an_expired_account_is_refused_at_mail_from(self) -> None:
        root = await self.start()
        await root.store.add_user(User("old", emails=("old@example.org",), expires="2020-01-01"))
        with self.assertRaises(smtplib.SMTPSenderRefused) as e:
            await self.mail("old@example.org", f"{PHONE}@sms.example.org", "hi")
        self.assertEqual(e.exception.smtp_code, 550)
        self.assertIn(b"account expired", e.exception.smtp_error)


def parts(report: EmailMessage) -> dict[str, Any]:
    """The three parts of an RFC 3464 report, by content type."""
    return {p.get_content_type(): p for p in report.iter_parts()}


class ReportTests(RepliesCase):
    """Delivery status notifications (RFC 3464) to whoever mailed the SMS."""

    async def test_failed_sms_is_reported_to_the_sender(self) -> None:
        await self.start(gateway='latency = "1ms"\nfailure_rate = 1.0')
        await self.mail(
            "alice@example.org",
            f"{PHONE}@sms.example.org",
            "Will fail",
            message_id="<doomed@example.org>",
        )
        await wait_for(lambda: self.server.mails, what="the report")
        [(to, report)] = self.server.mails
        self.assertEqual(to, ["alice@example.org"])
        self.assertEqual(self.server.senders, ["<>"], "reports go with the null sender")
        self.assertEqual(report.get_content_type(), "multipart/report")
        self.assertEqual(report.get_param("report-type"), "delivery-status")
        self.assertEqual(report["In-Reply-To"], "<doomed@example.org>")
        self.assertEqual(report["Auto-Submitted"], "auto-replied")
        p = parts(report)
        self.assertIn("Will fail", p["text/plain"].get_content())
        status = p["message/delivery-status"].as_string()
        self.assertIn(f"Final-Recipient: rfc822; {PHONE}@sms.example.org", status)
        self.assertIn("Action: failed", status)
        self.assertIn("Status: 5.0.0", status)
        self.assertIn("<doomed@example.org>", p["text/rfc822-headers"].as_string())

    async def test_no_report_to_a_null_sender(self) -> None:
        await self.start(gateway='latency = "1ms"\nfailure_rate = 1.0')
        await self.mail("", f"{PHONE}@sms.example.org", "from a daemon", envelope="")
        await wait_for(lambda: defer.ensureDeferred(self._failed(1)), what="the SMS failed")
        await sleep(0.5)
        self.assertEqual(self.server.mails, [])

    async def _failed(self, message_id: int) -> bool:
        assert self.root is not None
        m = await self.root.store.get_message(message_id)
        return m is not None and m["state"] == "failed"

    async def test_delay_warning_once_then_nothing_when_delivered(self) -> None:
        await self.start(smtp='delay_warning = "300ms"', gateway='latency = "1500ms"')
        await self.mail("alice@example.org", f"{PHONE}@sms.example.org", "slow one")
        await wait_for(lambda: self.server.mails, what="the delay warning")
        await wait_for(lambda: defer.ensureDeferred(self._delivered(1)), what="delivered")
        await sleep(0.5)
        [(_, warning)] = self.server.mails
        status = parts(warning)["message/delivery-status"].as_string()
        self.assertIn("Action: delayed", status)
        self.assertIn("Status: 4.4.1", status)

    async def _delivered(self, message_id: int) -> bool:
        assert self.root is not None
        m = await self.root.store.get_message(message_id)
        return m is not None and m["state"] == "delivered"


class LoopTests(RepliesCase):
    async def test_the_whole_loop_swaks_sms_reply_mail_reply_sms(self) -> None:
        """swaks mail -> SMS from the user's dedicated number -> the phone answers that
        number -> mail in the user's mailbox, threaded -> Reply -> SMS to the phone."""
        root = await self.start(smtp="anonymous = false")
        await root.store.add_user(
            User(
                "alice",
                emails=("alice@example.org",),
                dedicated=("+15550001111",),
                sender_policy=SenderPolicy.DEDICATED,
            )
        )
        done = await threads.deferToThread(
            swaks,
            self.port,
            "--from",
            "alice@example.org",
            f"--to={PHONE}@sms.example.org",
            "--header",
            "Message-Id: <loop-1@example.org>",
            "--header",
            "Subject: dinner",
            "--body=Dinner at 8?",
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        first = await root.store.get_message(1)
        assert first is not None
        self.assertEqual(
            (first["recipient"], first["sender"], first["user"], first["text"]),
            (PHONE, "+15550001111", "alice", "Dinner at 8?"),
        )
        inbox_id = await self.sms_from(PHONE, "Yes! See you", to="+15550001111")
        await self.settled(inbox_id, "delivered")
        [(to, reply)] = self.server.mails
        self.assertEqual(to, ["alice@example.org"])
        self.assertEqual(
            (reply["From"], reply["To"]), (f"{PHONE}@sms.example.org", "alice@example.org")
        )
        self.assertEqual(reply["In-Reply-To"], "<loop-1@example.org>")
        answer = EmailMessage()
        answer["From"] = "alice@example.org"
        answer["To"] = str(reply["From"])
        answer["Subject"] = "Re: " + str(reply["Subject"])
        answer["In-Reply-To"] = str(reply["Message-ID"])
        answer.set_content("Great\n\nOn Tue, Dec 1, 2026, +15557654321 wrote:\n> Yes! See you\n")

        def send() -> Any:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                return s.send_message(answer)

        self.assertEqual(await threads.deferToThread(send), {})
        second = await root.store.get_message(2)
        assert second is not None
        self.assertEqual(
            (second["recipient"], second["sender"], second["text"]),
            (PHONE, "+15550001111", "Great"),
        )

    async def test_nothing_in_an_sms_becomes_a_header(self) -> None:
        await self.start(inbound='default_mailbox = "sms@example.org"')
        inbox_id = await self.sms_from(
            "Evil\r\nBcc: victim@example.net", "hi\r\nBcc: x@example.net"
        )
        await self.settled(inbox_id, "delivered")
        [(to, m)] = self.server.mails
        self.assertEqual(to, ["sms@example.org"])
        self.assertIsNone(m["Bcc"])
        self.assertNotIn("\n", str(m["From"]))
        self.assertIn("Bcc: x@example.net", m.get_content())  # the text stays text


class SortWordTests(RepliesCase):
    async def test_first_word_names_the_user(self) -> None:
        root = await self.start()
        await root.store.add_user(
            User("dave", emails=("dave@example.org",), aliases=("4711", "dave"))
        )
        first = await self.sms_from("+15551110000", "4711 please call back")
        second = await self.sms_from("+15551110001", "Dave, the van is here")
        for inbox_id in (first, second):
            state = await self.settled(inbox_id, "delivered")
            self.assertEqual((state["owner"], state["delivered_to"]), ("dave", "dave@example.org"))

    async def test_forwarded_to_the_users_mobile_too(self) -> None:
        root = await self.start()
        await root.store.add_user(
            User(
                "erin",
                emails=("erin@example.org",),
                dedicated=("+15550002222",),
                mobile="+15553334444",
                forward=True,
            )
        )
        inbox_id = await self.sms_from(PHONE, "are you there?", to="+15550002222")
        await self.settled(inbox_id, "delivered")
        await wait_for(lambda: defer.ensureDeferred(self._count(1)), what="the forwarded SMS")
        self.assertEqual(await self.sent_texts(), [("+15553334444", f"{PHONE}: are you there?")])
        self.assertEqual(self.server.mails[0][0], ["erin@example.org"])

    async def _count(self, n: int) -> bool:
        return len(await self.sent_texts()) >= n


class Chat:
    """A channel destination as XMPP and SIP register one: records what it is handed."""

    scheme = "chat"

    def __init__(self, reachable: dict[str, list[str]], takes: bool = True) -> None:
        self.reachable = reachable  # user -> addresses
        self.takes = takes
        self.handed: list[tuple[str, str]] = []

    def addresses(self, user: User) -> defer.Deferred[list[str]]:
        return defer.succeed(self.reachable.get(user.name, []))

    def deliver(self, inbound: Inbound, address: str, text: str) -> defer.Deferred[bool]:
        if self.takes:
            self.handed.append((address, text))
        return defer.succeed(self.takes)


class DestinationTests(RepliesCase):
    """Inbound SMS to a channel (chat, SIP phone) before the mailbox, and back to mail."""

    async def start_with(self, chat: Chat) -> Smsd:
        root = await self.start()
        assert root.replies is not None
        root.replies.add_destination(chat)  # type: ignore[attr-defined]
        await root.store.add_user(
            User("carol", emails=("carol@example.org",), dedicated=("+15550009999",))
        )
        return root

    async def test_a_reachable_user_gets_it_on_the_channel(self) -> None:
        chat = Chat({"carol": ["chat:carol@example.org"]})
        await self.start_with(chat)
        inbox_id = await self.sms_from(PHONE, "for Carol", to="+15550009999")
        state = await self.settled(inbox_id, "delivered")
        self.assertEqual(state["delivered_to"], "chat:carol@example.org")
        self.assertEqual(chat.handed, [("chat:carol@example.org", "for Carol")])
        self.assertEqual(self.server.mails, [])

    async def test_a_channel_that_cannot_take_it_falls_back_to_mail(self) -> None:
        chat = Chat({"carol": ["chat:carol@example.org"]}, takes=False)
        await self.start_with(chat)
        inbox_id = await self.sms_from(PHONE, "for Carol", to="+15550009999")
        state = await self.settled(inbox_id, "delivered")
        self.assertEqual(state["delivered_to"], "carol@example.org")
        await wait_for(lambda: self.server.mails, what="the fallback mail")

    async def test_an_answer_goes_back_where_the_user_wrote_from(self) -> None:
        chat = Chat({})
        root = await self.start_with(chat)
        assert root.submitter is not None
        sub = Submission(
            recipients=(PHONE,), text="hi", channel="chat", reply_to="chat:carol@example.org/desk"
        )
        user = await root.store.get_user("carol")
        await root.submitter.submit(sub, user)
        inbox_id = await self.sms_from(PHONE, "hi back", to="+15550009999")
        state = await self.settled(inbox_id, "delivered")
        self.assertEqual(state["delivered_to"], "chat:carol@example.org/desk")
        self.assertEqual(chat.handed, [("chat:carol@example.org/desk", "hi back")])
