"""The modem gateway against our fake modem on a pty, seen the way a user sees it.

Each test runs a whole smsd in this process (``make_service`` on a config file) with
``type = "modem"`` gateways whose ``device`` is a fake modem's pty (``tests/peers/fakemodem.py``,
which decodes what we send with its own strict SMS-SUBMIT decoder and builds what it delivers
by hand), submits through the Submitter as the HTTP form does, and checks what a user or an
administrator can see: message states and status words in the store, what the modem decoded,
the inbox, the gateway's health and alerts in the Maildir.
"""

from __future__ import annotations

import itertools
import mailbox
import os
import shutil
import tempfile
import threading
from typing import Any

from twisted.internet import defer
from twisted.internet import reactor as global_reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from smsd.config import load
from smsd.configschema import ConfigError
from smsd.gateways.base import Health
from smsd.gateways.modem import _shown
from smsd.model import Inbound, Submission
from smsd.service import Smsd, make_service
from tests.daemon import wait_state
from tests.fakes import sleep, wait_for
from tests.peers.fakemodem import FakeModem

reactor: Any = global_reactor

ALICE = "+15551234567"
BOB = "+15557654321"
SIM_NUMBER = "+15550001111"

CONFIG = """
[smsd]
traffic_log = ""
admin_email = "ops@example.org"
[dispatch]
retry_min = "200ms"
retry_max = "500ms"
poll = "200ms"
[inbound]
reassembly_timeout = "2s"
[snpp]
listen = []
[sip]
listen = []
{gateways}
"""

GATEWAY = """
[[gateway]]
id = "{id}"
type = "modem"
device = "{device}"
number = "{number}"
max_failures = 100
command_timeout = "1s"
cmgs_timeout = "2s"
check_interval = "500ms"
reopen_min = "200ms"
reopen_max = "500ms"
sweep_interval = "1s"
{extra}
"""


class ModemCase(unittest.TestCase):
    """One smsd with modem gateways on fresh fake modems, in a temporary directory."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="smsd-test-modem-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.root: Smsd | None = None
        self.modems: list[FakeModem] = []

    def modem(self, **options: Any) -> FakeModem:
        options.setdefault("name", f"ttyFAKE{len(self.modems)}")
        modem = FakeModem(reactor, os.path.join(self.directory, "dev"), **options)
        self.addCleanup(modem.close)
        self.modems.append(modem)
        return modem

    async def start(self, *extras: str, modems: list[FakeModem] | None = None) -> Smsd:
        """smsd with one gateway per modem (``modem1``, ``modem2``...); ``extras[i]``
        adds keys to the i-th [[gateway]]."""
        if modems is None:
            modems = self.modems or [self.modem()]
        tables = [
            GATEWAY.format(
                id=f"modem{i + 1}",
                device=m.path,
                number=SIM_NUMBER if i == 0 else f"+1555000222{i}",
                extra=extras[i] if i < len(extras) else "",
            )
            for i, m in enumerate(modems)
        ]
        path = os.path.join(self.directory, "smsd.toml")
        with open(path, "w") as f:
            f.write(CONFIG.format(gateways="".join(tables)))
        self.data_dir = os.path.join(self.directory, "data")
        root = make_service(load(path, self.data_dir))
        root.startService()
        self.root = root
        self.addCleanup(self.stop)
        return root

    def stop(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        root = self.root
        if root is not None and root.running:
            await root.stopService()

    @property
    def store(self) -> Any:
        assert self.root is not None
        return self.root.store

    def gateway(self, i: int = 0) -> Any:
        assert self.root is not None
        return self.root.gateways[i]

    async def up(self, i: int = 0, timeout: float = 10) -> None:
        await wait_for(
            lambda: self.gateway(i).health == Health.UP,
            timeout=timeout,
            what=f"modem{i + 1} up (is {self.gateway(i).health}: {self.gateway(i).health_reason})",
        )

    async def submit(self, text: str | None = "Hello", **fields: Any) -> int:
        assert self.root is not None and self.root.submitter is not None
        fields.setdefault("recipients", (ALICE,))
        accepted = await self.root.submitter.submit(Submission(text=text, **fields), None)
        return accepted[0].id

    async def message(self, message_id: int) -> dict[str, Any]:
        m = await self.store.get_message(message_id)
        assert m is not None
        return m

    async def wait_state(self, message_id: int, *states: str, timeout: float = 10) -> Any:
        return await wait_state(self.message, message_id, *states, timeout=timeout)

    async def inbox(self) -> list[Inbound]:
        return list(await self.store.list_inbound(0, 100))

    def subjects(self) -> list[str]:
        """The subjects of the alerts in the Maildir, sorted."""
        path = os.path.join(self.data_dir, "mail", "alerts")
        if not os.path.isdir(path):
            return []
        return sorted(m["Subject"] for m in mailbox.Maildir(path, create=False))


class StartTests(ModemCase):
    async def test_start_up_dialogue(self) -> None:
        """The modem is initialised in PDU mode with indications on, identified, then up."""
        modem = self.modem(style="huawei", echo=True)
        await self.start()
        await self.up()
        commands = [c.upper() for c in modem.commands]
        for expected in ("ATZ", "ATE0", "AT+CMEE=1", "AT+CMGF=0", "AT+CNMI=2,1,0,2,0"):
            self.assertIn(expected, commands)
        self.assertLess(commands.index("AT+CMGF=0"), commands.index("AT+CNMI=2,1,0,2,0"))
        status = self.gateway().status()
        self.assertEqual(status["registration"], "home network")
        self.assertEqual(status["identity"]["imei"], modem.imei)
        self.assertIsInstance(status["signal"], int)

    async def test_pin_entered_once_and_never_logged(self) -> None:
        lines: list[str] = []

        def observer(event: dict[str, Any]) -> None:
            lines.append(formatEvent(event) + repr(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        modem = self.modem(pin="1234", echo=True)
        await self.start('pin = "1234"')
        await self.up()
        self.assertFalse([line for line in lines if "1234" in line])
        self.assertEqual(_shown('AT+CPIN="1234"'), "AT+CPIN=...")
        self.assertEqual(
            [c for c in modem.commands if c.upper().startswith('AT+CPIN="')], ['AT+CPIN="1234"']
        )

    async def test_wrong_pin_is_never_tried_again(self) -> None:
        """A refused PIN: down with the reason and one alert; no second try that could
        lock the SIM."""
        modem = self.modem(pin="1234")
        await self.start('pin = "9999"')
        await wait_for(lambda: "refused the PIN" in self.gateway().health_reason, what="down")
        await sleep(1.5)
        self.assertEqual(len([c for c in modem.commands if c.upper().startswith('AT+CPIN="')]), 1)
        self.assertEqual(self.gateway().health, Health.DOWN)
        await wait_for(lambda: self.subjects(), what="an alert")
        self.assertEqual(self.subjects(), ["smsd: gateway modem1 is down"])

    async def test_puk_is_down_without_retries(self) -> None:
        modem = self.modem(pin="1234", puk_required=True)
        await self.start('pin = "1234"')
        await wait_for(lambda: "PUK" in self.gateway().health_reason, what="down for the PUK")
        opened = modem.opened
        await sleep(1.5)
        self.assertEqual(modem.opened, opened, "no reopen storm for a SIM that needs its PUK")
        self.assertFalse([c for c in modem.commands if c.upper().startswith('AT+CPIN="')])

    async def test_missing_device_at_start_then_it_appears(self) -> None:
        """smsd starts without the device, keeps looking, and sends once it is there."""
        modem = self.modem()
        path = modem.path
        modem.vanish()
        await self.start(modems=[modem])
        await wait_for(
            lambda: "cannot open" in self.gateway().health_reason, what="down, no device"
        )
        message_id = await self.submit("waiting for the modem")
        await sleep(0.5)
        self.assertEqual((await self.message(message_id))["state"], "queued")
        modem.reappear()
        self.assertEqual(modem.path, path)
        await self.up()
        await self.wait_state(message_id, "sent", "delivered")
        self.assertEqual(modem.sent[0].text, "waiting for the modem")

    async def test_slow_registration(self) -> None:
        self.modem(register_delay=1.0)
        await self.start()
        await wait_for(
            lambda: "searching" in self.gateway().health_reason, what="down while searching"
        )
        await self.up()


class StyleTests(ModemCase):
    """Send and receive through modems that talk like real ones do."""

    async def round_trip(self, **modem_options: Any) -> FakeModem:
        modem = self.modem(**modem_options)
        await self.start()
        await self.up()
        message_id = await self.submit("Hello €uro [1]")
        await self.wait_state(message_id, "sent")
        self.assertEqual(modem.sent[0].text, "Hello €uro [1]")
        modem.deliver(BOB, "Answer ~ ^ {ok}")
        await wait_for(lambda: self.inbox(), what="the MO")
        [inbound] = await self.inbox()
        self.assertEqual(inbound.text, "Answer ~ ^ {ok}")
        return modem

    async def test_generic_echo_on(self) -> None:
        await self.round_trip(echo=True)

    async def test_generic_echo_off(self) -> None:
        await self.round_trip(echo=False)

    async def test_huawei_with_noise(self) -> None:
        modem = await self.round_trip(style="huawei", noise_interval=0.05)
        self.assertGreater(modem._noise_i, 5, "the noise was there")

    async def test_wavecom(self) -> None:
        await self.round_trip(style="wavecom")

    async def test_simcom(self) -> None:
        await self.round_trip(style="simcom")

    async def test_modem_that_reboots_by_itself_is_set_up_again(self) -> None:
        """After a reboot its settings are gone (PDU mode, CNMI): smsd sees the boot URC
        and initialises it again, so that +CMTI comes again."""
        for style in ("simcom", "wavecom", "huawei"):
            modem = self.modem(style=style, name=f"tty{style}")
            await self.start(modems=[modem])
            await self.up()
            inits = modem.commands.count("AT+CMGF=0")
            modem.reboot()
            await wait_for(
                lambda m=modem, n=inits: m.commands.count("AT+CMGF=0") > n,  # type: ignore[misc]
                what=f"{style} initialised again",
            )
            await self.up()
            modem.deliver(BOB, f"after the {style} reboot")
            await wait_for(self.inbox, what="the MO")
            [inbound] = await self.inbox()
            self.assertEqual(inbound.text, f"after the {style} reboot")
            await self.stop()
            self.root = None
            shutil.rmtree(self.data_dir)


class SendTests(ModemCase):
    async def test_sent_then_delivered_by_status_report(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        message_id = await self.submit("Hello from smsd")
        await self.wait_state(message_id, "sent")
        [sub] = modem.sent
        self.assertEqual((sub.recipient, sub.text), (ALICE, "Hello from smsd"))
        self.assertTrue(sub.status_report_request)
        self.assertEqual(sub.problems, [])
        modem.status_report(sub.mr, ALICE, 0x00)
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["status"], "TP-ST 0x00")
        await wait_for(lambda: modem.deleted, what="the report deleted from the SIM")

    async def test_failed_report(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "sent")
        modem.status_report(modem.sent[0].mr, ALICE, 0x41)
        m = await self.wait_state(message_id, "failed")
        self.assertEqual(m["status"], "TP-ST 0x41")

    async def test_reports_find_their_message_when_tp_mr_wraps(self) -> None:
        """Two messages to two phones get the same TP-MR (it wraps at 256): each report
        finds its own message."""
        modem = self.modem(first_mr=255)
        await self.start()
        await self.up()
        first = await self.submit("one", recipients=(ALICE,))
        await self.wait_state(first, "sent")
        modem.next_mr = modem.sent[0].mr  # 256 sends later, as far as the modem is concerned
        second = await self.submit("two", recipients=(BOB,))
        await self.wait_state(second, "sent")
        mr_first, mr_second = modem.sent[0].mr, modem.sent[1].mr
        self.assertEqual(mr_first, mr_second)
        modem.status_report(mr_second, BOB, 0x00)
        modem.status_report(mr_first, ALICE, 0x41)
        self.assertEqual((await self.wait_state(second, "delivered"))["state"], "delivered")
        self.assertEqual((await self.wait_state(first, "failed"))["state"], "failed")

    async def test_long_unicode_message_in_parts(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        text = "Grüße aus Łódź — " * 8
        message_id = await self.submit(text)
        await self.wait_state(message_id, "sent")
        parts = modem.sent
        self.assertGreater(len(parts), 1)
        self.assertEqual({p.concat[1] for p in parts if p.concat}, {len(parts)})
        self.assertEqual(
            "".join(p.text or "" for p in sorted(parts, key=lambda p: p.concat[2])), text
        )
        for p in parts:
            modem.status_report(p.mr, ALICE, 0x00)
        await self.wait_state(message_id, "delivered")

    async def test_cms_304_fails_the_message_without_retry(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        modem.fail_next_send(304)
        message_id = await self.submit("bad")
        m = await self.wait_state(message_id, "failed")
        self.assertIn("304", m["status"])
        self.assertEqual(m["attempts"], 1)
        self.assertEqual(self.gateway().health, Health.UP)

    async def test_cms_500_is_retried(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        modem.fail_next_send(500)
        message_id = await self.submit("try again")
        await self.wait_state(message_id, "sent")
        self.assertEqual([s.text for s in modem.sent], ["try again"])
        self.assertEqual((await self.message(message_id))["attempts"], 2)

    async def test_urc_during_cmgs(self) -> None:
        """A +CMTI between AT+CMGS and its prompt: the SMS goes out and the MO comes in."""
        modem = self.modem()
        await self.start()
        await self.up()
        modem.deliver_during_next_cmgs(BOB, "in the middle")
        message_id = await self.submit("out")
        await self.wait_state(message_id, "sent")
        await wait_for(lambda: self.inbox(), what="the MO")
        [inbound] = await self.inbox()
        self.assertEqual((inbound.sender, inbound.text), (BOB, "in the middle"))

    async def test_three_failed_sends_reinitialise(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        inits = modem.commands.count("ATZ")
        modem.fail_next_send(500, count=3)
        message_id = await self.submit("persist")
        await self.wait_state(message_id, "sent", timeout=15)
        self.assertGreater(modem.commands.count("ATZ"), inits)
        self.assertEqual(self.gateway().status()["sent"], 1)

    async def test_per_minute_paces_every_part(self) -> None:
        """per_minute spaces the parts (of one message too); checked as a lower bound only."""
        modem = self.modem()
        await self.start("per_minute = 120")
        await self.up()
        long_id = await self.submit("x" * 200)  # two parts
        short_id = await self.submit("y")
        await self.wait_state(long_id, "sent")
        await self.wait_state(short_id, "sent")
        times = sorted(s.at for s in modem.sent)
        self.assertEqual(len(times), 3)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        self.assertTrue(all(g >= 0.45 for g in gaps), gaps)

    async def test_garbage_from_the_device_changes_nothing(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        modem.garbage(b"\x00\xff\xfe\r\nNONSENSE 12\r\n+CMTI: broken\r\n>\r\n" + b"x" * 9000)
        message_id = await self.submit("still fine")
        await self.wait_state(message_id, "sent")
        self.assertEqual(modem.sent[-1].text, "still fine")
        self.assertEqual(self.gateway().health, Health.UP)


class ReceiveTests(ModemCase):
    async def test_mo_committed_then_deleted(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        modem.deliver(BOB, "Reply from Bob")
        await wait_for(lambda: modem.deleted, what="deleted from the SIM")
        [inbound] = await self.inbox()
        self.assertEqual(
            (inbound.gateway, inbound.sender, inbound.recipient, inbound.text),
            ("modem1", BOB, SIM_NUMBER, "Reply from Bob"),
        )

    async def test_alphanumeric_and_ucs2(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        modem.deliver("InfoSMS", "Ihr Paket 📦 kommt", alphanumeric=True)
        await wait_for(lambda: self.inbox(), what="the MO")
        [inbound] = await self.inbox()
        self.assertEqual((inbound.sender, inbound.text), ("InfoSMS", "Ihr Paket 📦 kommt"))

    async def test_concatenated_mo_joined(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        text = "This reply is longer than one SMS can carry. " * 5
        modem.deliver_long(BOB, text)
        await wait_for(lambda: self.inbox(), what="the joined MO")
        [inbound] = await self.inbox()
        self.assertEqual(inbound.text, text)
        self.assertGreater(inbound.parts, 1)

    async def test_stored_before_start_is_swept(self) -> None:
        """Messages on the SIM from before smsd started (no +CMTI) come in by the sweep."""
        modem = self.modem()
        modem.deliver(BOB, "while smsd was off", store=True)
        await self.start()
        await wait_for(lambda: self.inbox(), what="the swept MO")
        [inbound] = await self.inbox()
        self.assertEqual(inbound.text, "while smsd was off")
        await wait_for(lambda: modem.deleted, what="deleted after commit")

    async def test_not_deleted_before_commit(self) -> None:
        """While the store cannot commit, the SMS stays on the SIM."""
        modem = self.modem()
        await self.start()
        await self.up()
        receiver = self.root.receiver  # type: ignore[union-attr]
        original = receiver.receive
        held: defer.Deferred[int] = defer.Deferred()
        receiver.receive = lambda inbound: held  # type: ignore[method-assign]
        modem.deliver(BOB, "hold on")
        await sleep(0.8)
        self.assertEqual(modem.deleted, [])
        receiver.receive = original  # type: ignore[method-assign]
        held.callback(await original(Inbound("modem1", BOB, SIM_NUMBER, "hold on")))
        await wait_for(lambda: modem.deleted, what="deleted once committed")

    async def test_undecodable_pdu_kept_raw(self) -> None:
        """A stored PDU cut short: kept raw in the inbox (never lost), then deleted."""
        modem = self.modem()
        rec = modem.deliver(BOB, "to be cut", store=True)
        rec.pdu = rec.pdu[:30]  # the SMSC address, the first octet and part of the sender
        await self.start()
        await wait_for(lambda: self.inbox(), what="the raw PDU in the inbox")
        [inbound] = await self.inbox()
        self.assertIsNone(inbound.text)
        self.assertTrue(inbound.data)


class RecoveryTests(ModemCase):
    async def test_two_modems_one_stalls(self) -> None:
        """The acceptance test: two modems share the load, one stalls mid-run; every message
        still goes out once, the stalled one is re-initialised and takes traffic again, and
        the administrator got two alerts (down, back up)."""
        first, second = self.modem(), self.modem()
        await self.start()
        await self.up(0)
        await self.up(1)
        ids = [
            await self.submit(f"message {i}", recipients=(f"+1555123{i:04d}",)) for i in range(6)
        ]
        await wait_for(lambda: len(first.sent) + len(second.sent) >= 2, what="sending")
        first.stall()
        stalled_at = reactor.seconds()
        ids += [
            await self.submit(f"message {i}", recipients=(f"+1555123{i:04d}",))
            for i in range(6, 12)
        ]
        await wait_for(lambda: self.gateway(0).health == Health.DOWN, what="modem1 taken out")
        detected = reactor.seconds() - stalled_at
        for message_id in ids:
            await self.wait_state(message_id, "sent", "delivered", timeout=20)
        first.unstall()
        unstalled_at = reactor.seconds()
        await self.up(0, timeout=20)
        recovered = reactor.seconds() - unstalled_at
        texts = [s.text for s in first.sent + second.sent]
        self.assertEqual(sorted(texts), sorted(f"message {i}" for i in range(12)), "each once")
        before = len(first.sent)
        more = [await self.submit(f"after {i}", recipients=(f"+1555999{i:04d}",)) for i in range(6)]
        for message_id in more:
            await self.wait_state(message_id, "sent", "delivered", timeout=20)
        self.assertGreater(len(first.sent), before, "the recovered modem takes traffic again")
        await wait_for(lambda: len(self.subjects()) >= 2, what="two alerts")
        self.assertEqual(
            self.subjects(), ["smsd: gateway modem1 is back up", "smsd: gateway modem1 is down"]
        )
        print(f"stall to out of the pool {detected:.2f} s, answering again to up {recovered:.2f} s")

    async def test_vanish_and_reappear(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        modem.vanish()
        await wait_for(lambda: self.gateway().health == Health.DOWN, what="down")
        message_id = await self.submit("after the USB reset")
        await sleep(0.3)
        modem.reappear()
        await self.up()
        await self.wait_state(message_id, "sent")

    async def test_network_lost_and_back(self) -> None:
        modem = self.modem()
        await self.start()
        await self.up()
        modem.network_lost()
        await wait_for(
            lambda: (
                "registration" in self.gateway().health_reason
                or "registered" in self.gateway().health_reason
            ),
            what="down",
        )
        modem.network_back()
        await self.up()


class ConfigTests(unittest.TestCase):
    async def test_cmgs_timeout_must_be_shorter_than_send_timeout(self) -> None:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "smsd.toml")
        with open(path, "w") as f:
            f.write(
                '[[gateway]]\nid = "m"\ntype = "modem"\ndevice = "/dev/null"\n'
                'send_timeout = "30s"\ncmgs_timeout = "45s"\n'
            )
        with self.assertRaises(ConfigError) as e:
            make_service(load(path, os.path.join(directory, "data")))
        self.assertIn("cmgs_timeout", str(e.exception))
        # The traffic log it had opened is closed again: once the reactor runs, no
        # thread of it starts (to open a file in a data directory that may be gone).
        await sleep(0.1)
        traffic = [t for t in threading.enumerate() if t.name == "append:traffic.log"]
        self.assertEqual(traffic, [])
        self.assertFalse(os.path.exists(os.path.join(directory, "data", "traffic.log")))
