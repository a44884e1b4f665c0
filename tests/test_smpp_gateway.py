"""The SMPP gateway against our SMSC simulator, seen the way a user sees it.

Each test runs a whole smsd in this process (``make_service`` on a config file, the
HTTP channel on a free port) with one ``smpp`` gateway bound to
``tests/peers/smsc.py``, submits through the Submitter as the HTTP form does, and
checks what a user or an operator can see: message states and status words in the
store, what the SMSC decoded, the inbox, the gateway's health and ``status()``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec
from twisted.internet import defer, ssl
from twisted.internet import reactor as global_reactor
from twisted.internet.interfaces import ISSLTransport

from smsd import foreground
from smsd.config import load
from smsd.configschema import ConfigError
from smsd.model import Inbound
from smsd.service import Smsd, make_service
from tests.daemon import GatewayCase
from tests.fakes import sleep, wait_for
from tests.peers import smsc as sim
from tests.peers.smsc import SmscFactory

reactor: Any = global_reactor

SYSTEM_ID = "esme"
PASSWORD = "secret"
ALICE = "+15551234567"

CONFIG = """
[smsd]
traffic_log = ""
[snpp]
listen = []
[sip]
listen = []
[http]
listen = ["tcp:0:interface=127.0.0.1"]
[dispatch]
retry_min = "200ms"
retry_max = "1s"
poll = "200ms"
[inbound]
reassembly_timeout = "1s"
[[gateway]]
id = "smsc"
type = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "{system_id}"
password = "{password}"
reconnect_min = "100ms"
reconnect_max = "500ms"
{link}
"""


def gateway_timers(root: Smsd) -> list[Any]:
    """Pending reactor timers that belong to the smpp gateways of ``root`` or their binds."""
    owners = {id(g) for g in root.gateways}
    owners |= {id(b) for g in root.gateways for b in getattr(g, "binds", ())}
    return [
        call
        for call in reactor.getDelayedCalls()
        if call.active() and id(getattr(call.func, "__self__", None)) in owners
    ]


class SmppCase(GatewayCase):
    """One smsd with an smpp gateway on a fresh simulator, in a temporary directory."""

    timeout = 30

    def setUp(self) -> None:
        super().setUp()
        self.data_dir = self.data
        self.leftovers: list[Any] = []

    def simulator(self, **options: Any) -> SmscFactory:
        """The SMSC, listening on a free port; stopped in cleanup (after smsd)."""
        options.setdefault("accounts", {SYSTEM_ID: PASSWORD})
        smsc = SmscFactory(**options)
        smsc.listen()
        self.addCleanup(smsc.stop)
        return smsc

    async def start(
        self, link: str = "", *, password: str = PASSWORD, smsc: SmscFactory | None = None
    ) -> Smsd:
        """smsd with one smpp gateway on ``smsc``; ``link`` adds keys to its [[gateway]].

        Returns once the dispatcher's start-up release of old leases is done (see
        test_message_claimed_during_start_up_is_sent_once for why)."""
        if smsc is None:
            smsc = self.simulator()
        self.smsc = smsc
        config = CONFIG.format(port=smsc.port, system_id=SYSTEM_ID, password=password, link=link)
        return await self.start_gateway(config)

    async def _stop_smsd(self) -> None:
        root = self.root
        if root is None or not root.running:
            return
        await root.stopService()
        calls = gateway_timers(root)
        self.leftovers = [getattr(c.func, "__qualname__", repr(c.func)) for c in calls]
        for call in calls:  # see test_stop_leaves_no_timer_behind
            call.cancel()

    # What a user does and sees ---------------------------------------------

    async def bound(self, count: int = 1) -> None:
        """Wait until the simulator has ``count`` live binds of ours."""
        await wait_for(lambda: len(self.smsc.bound(SYSTEM_ID)) >= count, what=f"{count} bind(s)")

    def receipt(
        self, receipt_id: str, stat: str, err: str = "000", *, tlvs: bool = True, state: int = 0
    ) -> defer.Deferred[int | None]:
        """A receipt written by hand (esm_class 0x04): the Appendix B text, and unless
        ``tlvs`` is False receipted_message_id and message_state (``state`` overrides it).
        Fires with smsd's deliver_sm_resp status."""
        text = (
            f"id:{receipt_id} sub:001 dlvrd:001 submit date:2401311200 done date:2401311201"
            f" stat:{stat} err:{err} text:Hello"
        )
        extra = {}
        if tlvs:
            extra = {
                sim.TAG_RECEIPTED_MESSAGE_ID: sim.cstring(receipt_id),
                sim.TAG_MESSAGE_STATE: bytes([state or sim.MESSAGE_STATES[stat]]),
            }
        return self.smsc.deliver_mo(
            SYSTEM_ID, ALICE[1:], "", text.encode("ascii"), esm_class=sim.ESM_RECEIPT, tlvs=extra
        )


def gsm(text: str) -> bytes:
    """GSM 7-bit unpacked, by the PyPI gsm0338 codec (not smsd's)."""
    return text.encode("gsm03.38")


# --- Sending and receipts -----------------------------------------------------------------------


class SendTests(SmppCase):
    """SMS out as submit_sm; sent, then delivered or failed as the receipt says."""

    async def test_transceiver_sent_then_delivered(self) -> None:
        """One bind_transceiver; the SMS is sent, then delivered with the operator's words."""
        await self.start()
        await self.bound()
        message_id = await self.submit("Hello")
        sent = await self.wait_state(message_id, "sent", "delivered")
        [sub] = self.smsc.submits
        self.assertEqual(sent["parts"][0]["provider_id"], sub.message_id.lower())
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["status"], "stat:DELIVRD err:000")
        self.assertEqual(m["parts"][0]["status"], "stat:DELIVRD err:000")
        self.assertEqual(m["attempts"], 1)

        [session] = self.smsc.sessions
        self.assertEqual(
            (session.mode, session.system_id, session.password, session.interface_version),
            ("transceiver", SYSTEM_ID, PASSWORD, 0x34),
        )
        self.assertEqual(
            (sub.dest_addr_ton, sub.dest_addr_npi, sub.destination_addr), (1, 1, ALICE[1:])
        )
        self.assertEqual(
            (sub.esm_class, sub.registered_delivery, sub.data_coding, sub.short_message),
            (0, 1, 0, b"Hello"),
        )
        [receipt] = self.smsc.receipts_sent
        self.assertEqual((receipt.status, receipt.attempts), (0, 1))  # acknowledged once

        self.assertEqual(self.gateway.health.value, "up")
        # under load, HTTP clients are served before this bind (smsd.foreground)
        self.assertTrue(foreground.is_background(self.gateway.binds[0].protocol.transport))
        status = self.member()
        self.assertEqual(status["state"], "up")
        [bind] = status["binds"]
        # 10 unacknowledged submit_sm on the wire, and a backlog of four windows ready
        self.assertEqual((status["bind_window"], status["window"]), (10, 50))
        self.assertEqual(
            (bind["mode"], bind["bound"], bind["outstanding"]), ("transceiver", True, 0)
        )
        self.assertEqual((status["submitted"], status["receipts"]), (1, 1))

    async def test_undeliverable_receipt_fails_with_its_words(self) -> None:
        """stat:UNDELIV: failed, and the operator's stat and err kept."""
        await self.start(smsc=self.simulator(final_state=lambda sub: ("UNDELIV", "001")))
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "failed")
        self.assertEqual(m["status"], "stat:UNDELIV err:001")
        self.assertEqual(m["parts"][0]["state"], "failed")

    async def test_expired_receipt(self) -> None:
        """stat:EXPIRED: the message ends expired, the words kept."""
        await self.start(smsc=self.simulator(final_state=lambda sub: ("EXPIRED", "000")))
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "expired")
        self.assertEqual(m["status"], "stat:EXPIRED err:000")

    async def test_intermediate_receipt_keeps_sent(self) -> None:
        """ENROUTE then DELIVRD: sent with the intermediate words, then delivered."""
        smsc = self.simulator(
            final_state=lambda sub: [("ENROUTE", "000"), ("DELIVRD", "000")], receipt_delay=0.5
        )
        await self.start(smsc=smsc)
        message_id = await self.submit("Hello")
        await wait_for(lambda: len([d for d in smsc.receipts_sent if d.status == 0]) >= 1)
        m = await self.message(message_id)
        if len([d for d in smsc.receipts_sent if d.status == 0]) == 1:  # DELIVRD not yet in
            self.assertEqual(m["state"], "sent")
            self.assertEqual(m["parts"][0]["status"], "stat:ENROUTE err:000")
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["status"], "stat:DELIVRD err:000")

    async def test_no_receipt_asked_when_the_link_says_so(self) -> None:
        """registered_delivery = false: registered_delivery 0, no receipt, the SMS stays sent."""
        await self.start("registered_delivery = false")
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "sent")
        [sub] = self.smsc.submits
        self.assertEqual(sub.registered_delivery, 0)
        await sleep(0.3)
        self.assertEqual(self.smsc.receipts_sent, [])
        self.assertEqual((await self.message(message_id))["state"], "sent")


class CodingTests(SmppCase):
    """data_coding and short_message as the SMSC decoded them; TON/NPI from the address form."""

    async def sent_as(self, text: str | None = None, link: str = "", **fields: Any) -> sim.Submit:
        await self.start(link)
        message_id = await self.submit(text, **fields)
        await self.wait_state(message_id, "delivered")
        [sub] = self.smsc.submits
        return sub

    async def test_gsm7_unpacked_with_escape(self) -> None:
        """GSM 7-bit, one septet per octet, data_coding 0; € and { go as escapes."""
        text = "Price: 5€ {ok} @home"
        sub = await self.sent_as(text)
        self.assertEqual(sub.data_coding, 0)
        self.assertEqual(sub.short_message, gsm(text))
        self.assertIn(b"\x1b\x65", sub.short_message)  # € is ESC e
        self.assertEqual(sub.short_message.decode("gsm03.38"), text)

    async def test_ucs2_for_chinese(self) -> None:
        """Text outside GSM 7-bit: UCS-2 (UTF-16BE), data_coding 8."""
        text = "你好世界"
        sub = await self.sent_as(text)
        self.assertEqual(sub.data_coding, 8)
        self.assertEqual(sub.short_message, text.encode("utf-16-be"))

    async def test_latin1_default_alphabet(self) -> None:
        """default_alphabet = "latin1": Latin-1 octets with data_coding 3."""
        text = "Café Zürich, 5 ¥"
        sub = await self.sent_as(text, 'default_alphabet = "latin1"')
        self.assertEqual(sub.data_coding, 3)
        self.assertEqual(sub.short_message, text.encode("latin-1"))

    async def test_binary_with_udh(self) -> None:
        """binary=1 (data and udh): data_coding 4, UDHI, the UDH then the octets as given."""
        udh = bytes([6, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0])  # port addressing 2948 <- 9200
        data = bytes(range(0, 256, 7))
        sub = await self.sent_as(None, data=data, udh=udh)
        self.assertEqual((sub.data_coding, sub.esm_class), (4, 0x40))
        self.assertEqual((sub.udh, sub.text), (udh, data))

    async def test_sender_ton_npi_from_its_form(self) -> None:
        """+E.164: international/E.164; digits: a short code; text: alphanumeric."""
        await self.start()
        ids = [
            await self.submit("a", sender="+15550001111"),
            await self.submit("b", sender="12345"),
            await self.submit("c", sender="Shop"),
        ]
        for message_id in ids:
            await self.wait_state(message_id, "delivered")
        by_text = {s.short_message: s for s in self.smsc.submits}
        seen = {
            text: (s.source_addr_ton, s.source_addr_npi, s.source_addr)
            for text, s in by_text.items()
        }
        self.assertEqual(
            seen,
            {b"a": (1, 1, "15550001111"), b"b": (3, 0, "12345"), b"c": (5, 0, "Shop")},
        )

    async def test_a_sender_smpp_cannot_carry_fails_that_message_alone(self) -> None:
        """A GSM sender ID outside Latin-1 (Δ) cannot be a source_addr: that message fails
        for good with the codec's words; the others of the same pump go out."""
        await self.start()
        bad = await self.submit("a", sender="ΔELTA")
        good = await self.submit("b", sender="Shop")
        m = await self.wait_state(bad, "failed")
        self.assertIn("source_addr", m["error"] or m["status"])
        self.assertEqual(m["attempts"], 1)
        await self.wait_state(good, "delivered")
        self.assertEqual([s.short_message for s in self.smsc.submits], [b"b"])

    async def test_ton_npi_overrides(self) -> None:
        """source_ton/source_npi in the link win over the address's form."""
        sub = await self.sent_as("x", "source_ton = 0\nsource_npi = 9", sender="+15550001111")
        self.assertEqual((sub.source_addr_ton, sub.source_addr_npi), (0, 9))


LONG = "".join(f"{i:03d}-abcdef " for i in range(20))  # 220 GSM characters: two parts


def concat_seq(sub: sim.Submit) -> int:
    """The part number of a submit_sm, from its UDH or its SAR TLVs."""
    concat = sub.concat or sub.sar
    assert concat is not None
    return concat[2]


class LongMessageTests(SmppCase):
    """Long messages as UDH, SAR TLVs or message_payload; one logical message, N receipts."""

    async def test_udh_parts(self) -> None:
        """long_messages = "udh": each part with UDHI and a concatenation IE."""
        await self.start()
        message_id = await self.submit(LONG)
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["total"], 2)
        subs = sorted(self.smsc.submits, key=concat_seq)
        self.assertEqual([s.esm_class for s in subs], [0x40, 0x40])
        [(ref1, total1, seq1), (ref2, total2, seq2)] = [s.concat for s in subs]  # type: ignore[misc]
        self.assertEqual((ref1, total1, seq1, total2, seq2), (ref2, 2, 1, 2, 2))
        self.assertEqual(b"".join(s.text for s in subs), gsm(LONG))
        self.assertEqual([s.sar for s in subs], [None, None])
        self.assertEqual({p["state"] for p in m["parts"]}, {"delivered"})

    async def test_sar_parts(self) -> None:
        """long_messages = "sar": SAR TLVs, no UDH at all."""
        await self.start('long_messages = "sar"')
        message_id = await self.submit(LONG)
        await self.wait_state(message_id, "delivered")
        subs = sorted(self.smsc.submits, key=concat_seq)
        self.assertEqual([s.esm_class for s in subs], [0, 0])
        self.assertEqual([s.udh for s in subs], [None, None])
        [(ref1, total1, seq1), (ref2, total2, seq2)] = [s.sar for s in subs]  # type: ignore[misc]
        self.assertEqual((ref1, total1, seq1, total2, seq2), (ref2, 2, 1, 2, 2))
        self.assertEqual(b"".join(s.short_message for s in subs), gsm(LONG))

    async def test_payload(self) -> None:
        """long_messages = "payload": one submit_sm, sm_length 0, the whole text in
        message_payload; its one receipt delivers the message."""
        await self.start('long_messages = "payload"')
        message_id = await self.submit(LONG)
        m = await self.wait_state(message_id, "delivered")
        [sub] = self.smsc.submits
        self.assertEqual((sub.short_message, sub.esm_class, sub.data_coding), (b"", 0, 0))
        self.assertEqual(sub.message_payload, gsm(LONG))
        self.assertEqual(m["total"], 2)
        self.assertEqual({p["state"] for p in m["parts"]}, {"delivered"})

    async def test_delivered_only_when_every_part_is(self) -> None:
        """Part 1's receipt alone leaves the message sent; part 2's delivers it."""
        await self.start(smsc=self.simulator(receipts=False))
        message_id = await self.submit(LONG)
        await self.wait_state(message_id, "sent")
        subs = sorted(self.smsc.submits, key=concat_seq)
        self.assertEqual(await self.receipt(subs[0].message_id or "", "DELIVRD"), 0)
        m = await self.message(message_id)
        self.assertEqual(m["state"], "sent")
        self.assertEqual([p["state"] for p in m["parts"]], ["delivered", "sent"])
        self.assertEqual(await self.receipt(subs[1].message_id or "", "DELIVRD"), 0)
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["status"], "stat:DELIVRD err:000")

    async def test_one_undeliverable_part_fails_the_message(self) -> None:
        """Part 2 UNDELIV, part 1 DELIVRD: the message failed, with part 2's words."""

        def chooser(sub: sim.Submit) -> tuple[str, str]:
            return ("UNDELIV", "034") if concat_seq(sub) == 2 else ("DELIVRD", "000")

        await self.start(smsc=self.simulator(final_state=chooser))
        message_id = await self.submit(LONG)
        m = await self.wait_state(message_id, "failed")
        self.assertEqual(m["status"], "stat:UNDELIV err:034")

    async def test_sar_receipt_of_one_part_fails_the_message(self) -> None:
        """The same with SAR parts."""

        def chooser(sub: sim.Submit) -> tuple[str, str]:
            return ("UNDELIV", "001") if concat_seq(sub) == 1 else ("DELIVRD", "000")

        await self.start('long_messages = "sar"', smsc=self.simulator(final_state=chooser))
        message_id = await self.submit(LONG)
        m = await self.wait_state(message_id, "failed")
        self.assertEqual(m["status"], "stat:UNDELIV err:001")


class MessageIdTests(SmppCase):
    """Receipts find their message however the SMSC writes the id."""

    async def delivered_with(self, link: str, **smsc: Any) -> dict[str, Any]:
        await self.start(link, smsc=self.simulator(**smsc))
        message_id = await self.submit("Hello")
        return await self.wait_state(message_id, "delivered")

    async def test_hex_in_responses_decimal_in_receipts(self) -> None:
        """Nexmo's way: message_id = "hex", receipt_id = "dec"."""
        m = await self.delivered_with(
            'message_id = "hex"\nreceipt_id = "dec"', id_format="hex", receipt_id_form="dec"
        )
        [sub] = self.smsc.submits
        self.assertEqual(m["parts"][0]["provider_id"], str(int(sub.message_id or "", 16)))
        [receipt] = self.smsc.receipts_sent
        self.assertEqual(receipt.receipt_id, str(int(sub.message_id or "", 16)))

    async def test_leading_zeros_dropped(self) -> None:
        """Zero-padded decimal ids in responses, without the zeros in receipts."""
        await self.delivered_with(
            'message_id = "dec"\nreceipt_id = "dec"',
            id_format="dec",
            id_width=12,
            receipt_id_form="strip_zeros",
        )
        [receipt] = self.smsc.receipts_sent
        self.assertNotEqual(receipt.receipt_id, receipt.message_id)

    async def test_hex_leading_zeros_and_case(self) -> None:
        """Padded upper-case hex in responses, bare lower-case hex in receipts."""
        await self.delivered_with(
            'message_id = "hex"\nreceipt_id = "hex"',
            id_format="hex",
            id_width=12,
            receipt_id_form=lambda i: i.lstrip("0").lower(),
        )

    async def test_case_changed(self) -> None:
        """Upper case in responses, lower case in receipts: as-is ignores case."""
        await self.delivered_with("", id_format="hex", receipt_id_form="lower")

    async def test_without_the_right_form_nothing_matches(self) -> None:
        """The control: hex vs decimal with as-is ids leaves the SMS sent (the receipt is
        still acknowledged and kept)."""
        await self.start(smsc=self.simulator(id_format="hex", receipt_id_form="dec"))
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "sent")
        [receipt] = await wait_for(lambda: [d for d in self.smsc.receipts_sent if d.finished])
        self.assertEqual(receipt.status, 0)
        self.assertEqual((await self.message(message_id))["state"], "sent")

    async def test_receipt_text_without_tlvs(self) -> None:
        """No TLVs: the Appendix B text alone says which message and what happened."""
        await self.start(
            smsc=self.simulator(receipt_tlvs=False, final_state=lambda sub: ("UNDELIV", "005"))
        )
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "failed")
        self.assertEqual(m["status"], "stat:UNDELIV err:005")
        [receipt] = self.smsc.receipts_sent
        self.assertEqual(receipt.sm.tlvs, {})

    async def test_tlvs_win_over_the_text(self) -> None:
        """message_state says DELIVERED while the text says UNDELIV: the TLV wins."""
        await self.start(smsc=self.simulator(receipts=False))
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "sent")
        [sub] = self.smsc.submits
        self.assertEqual(await self.receipt(sub.message_id or "", "UNDELIV", state=2), 0)
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["status"], "stat:DELIVRD err:000")

    async def test_receipt_before_its_response(self) -> None:
        """The receipt comes before submit_sm_resp: acknowledged at once, held, and matched
        once the response names the id."""
        smsc = self.simulator(receipt_before_response=True, deliver_timeout=8.0)
        await self.start(smsc=smsc)
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["status"], "stat:DELIVRD err:000")
        [receipt] = smsc.receipts_sent
        # Answered on the first try, before the simulator let the response go.
        self.assertEqual((receipt.status, receipt.attempts), (0, 1))
        [sub] = smsc.submits
        self.assertTrue(sub.answered)


# --- Throughput and errors ----------------------------------------------------------------------


class ErrorTests(SmppCase):
    """Throttling backs off without counting a failure; temporary errors retry; permanent
    ones fail with the SMSC's status; the link's overrides win."""

    async def refused_once(self, status: int, link: str = "") -> int:
        """smsd bound (with ``link``); the SMSC answers the next submit_sm ``status``;
        the id of the SMS submitted then."""
        await self.start(link)
        await self.bound()
        self.smsc.fail_next(status)
        return await self.submit("Hello")

    async def test_throttled_then_sent_without_an_attempt(self) -> None:
        """ESME_RTHROTTLED twice: sent in the end, one attempt, no strike in the pool."""
        await self.start('throttle_delay = "100ms"')
        await self.bound()
        self.smsc.throttle_next(2)
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "sent", "delivered")
        self.assertEqual(m["attempts"], 1)
        self.assertEqual(
            [s.status for s in self.smsc.submits],
            [sim.ESME_RTHROTTLED, sim.ESME_RTHROTTLED, sim.ESME_ROK],
        )
        status = self.member()
        self.assertEqual((status["errors"], status["state"], status["throttled"]), (0, "up", 2))
        await self.wait_state(message_id, "delivered")

    async def test_queue_full_then_sent_without_an_attempt(self) -> None:
        """ESME_RMSGQFUL while the SMSC's queue is full: waits, then sent with one attempt."""
        await self.start('throttle_delay = "100ms"')
        await self.bound()
        self.smsc.queue_full = True
        message_id = await self.submit("Hello")
        await wait_for(lambda: self.smsc.submits, what="a submit_sm refused")
        self.smsc.queue_full = False
        m = await self.wait_state(message_id, "sent", "delivered")
        self.assertEqual(m["attempts"], 1)
        self.assertEqual(self.smsc.submits[0].status, sim.ESME_RMSGQFUL)
        self.assertEqual(self.member()["errors"], 0)

    async def test_throttling_slows_the_bind_down(self) -> None:
        """A throttle_rate of 2/s at the SMSC: every SMS still goes out, once each."""
        smsc = self.simulator(throttle_rate=2)
        await self.start('throttle_delay = "200ms"', smsc=smsc)
        await self.bound()
        ids = [await self.submit(f"m{i}") for i in range(6)]
        for message_id in ids:
            m = await self.wait_state(message_id, "delivered", timeout=15)
            self.assertEqual(m["attempts"], 1)
        self.assertEqual(len(smsc.accepted), 6)
        self.assertEqual(self.member()["errors"], 0)

    async def test_a_long_pause_sends_the_backlog_back_to_the_queue(self) -> None:
        """Throttled for longer than a moment: what waits for the bind goes back to the
        queue (no attempt counted) instead of waiting in the gateway past the dispatcher's
        send timeout, and every SMS still goes out once."""
        smsc = self.simulator(throttle_rate=1)
        await self.start('window = 1\nthrottle_delay = "1500ms"', smsc=smsc)
        await self.bound()
        submits = [defer.ensureDeferred(self.submit(f"m{i}")) for i in range(3)]
        ids = await defer.gatherResults(submits)
        for message_id in ids:
            m = await self.wait_state(message_id, "delivered", timeout=20)
            self.assertEqual(m["attempts"], 1)
        self.assertEqual(sorted(s.short_message for s in smsc.accepted), [b"m0", b"m1", b"m2"])
        assert self.root is not None and self.root.dispatcher is not None
        # more came back throttled than the SMSC refused: the backlog, never sent
        self.assertGreater(self.root.dispatcher.counters["throttled"], self.member()["throttled"])
        self.assertEqual(self.member()["errors"], 0)

    async def test_invalid_destination_fails_for_good(self) -> None:
        """ESME_RINVDSTADR for a prefix: failed at once with the status name, never retried."""
        await self.start(smsc=self.simulator(status_for_prefix={"1555999": sim.ESME_RINVDSTADR}))
        message_id = await self.submit("Hello", recipients=("+15559990000",))
        m = await self.wait_state(message_id, "failed")
        self.assertIn("ESME_RINVDSTADR (0x0B)", m["error"] or m["status"])
        self.assertEqual(m["attempts"], 1)
        await sleep(0.5)
        self.assertEqual(len(self.smsc.submits), 1)

    async def test_system_error_is_retried(self) -> None:
        """ESME_RSYSERR is temporary: sent on the second attempt."""
        message_id = await self.refused_once(sim.ESME_RSYSERR)
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["attempts"], 2)
        self.assertEqual([s.status for s in self.smsc.submits], [sim.ESME_RSYSERR, sim.ESME_ROK])

    async def test_temporary_errors_override(self) -> None:
        """temporary_errors = ["ESME_RINVDSTADR"]: that status is retried."""
        message_id = await self.refused_once(
            sim.ESME_RINVDSTADR, 'temporary_errors = ["ESME_RINVDSTADR"]'
        )
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["attempts"], 2)

    async def test_permanent_errors_override(self) -> None:
        """permanent_errors = ["0x08"]: ESME_RSYSERR fails the message at once."""
        message_id = await self.refused_once(sim.ESME_RSYSERR, 'permanent_errors = ["0x08"]')
        m = await self.wait_state(message_id, "failed")
        self.assertIn("ESME_RSYSERR (0x08)", m["error"] or m["status"])
        self.assertEqual(len(self.smsc.submits), 1)

    async def test_generic_nack_for_a_submit_is_an_error_of_that_message(self) -> None:
        """A submit_sm answered generic_nack ESME_RSYSERR... is retried, the bind stays."""
        message_id = await self.refused_once(sim.ESME_RSYSERR)
        await self.wait_state(message_id, "delivered")
        self.assertEqual(len(self.smsc.sessions), 1)


# --- The connection -----------------------------------------------------------------------------

ASSUMED = "connection lost before the response; assumed accepted, not sent again"


class ConnectionTests(SmppCase):
    """Lost connections, silent SMSCs, refused binds, several binds, keep-alives, garbage."""

    async def test_drop_with_a_full_window_assumes_sent(self) -> None:
        """The SMSC drops the connection with three submit_sm unanswered: never sent twice,
        sent with words that say so; the link binds again and carries on."""
        smsc = self.simulator(drop_after=3)
        await self.start("window = 3", smsc=smsc)
        await self.bound()
        ids = [await self.submit(f"m{i}") for i in range(3)]
        for message_id in ids:
            m = await self.wait_state(message_id, "sent")
            self.assertEqual(m["parts"][0]["provider_id"], None)
            self.assertEqual(m["parts"][0]["status"], ASSUMED)
            self.assertEqual(m["attempts"], 1)
        await wait_for(lambda: len(smsc.sessions) >= 2 and smsc.bound(SYSTEM_ID), what="rebind")
        message_id = await self.submit("after")
        await self.wait_state(message_id, "delivered")
        self.assertEqual(len(smsc.submits), 4)
        self.assertEqual(self.member()["unanswered"], 3)

    async def test_drop_sends_the_backlog_again_without_an_attempt(self) -> None:
        """What waited in the gateway for a window slot was never sent: when the bind drops
        it goes back to the queue at once, no attempt counted, and out on the next bind."""
        smsc = self.simulator(drop_after=2)
        await self.start("window = 2\nbacklog = 3", smsc=smsc)
        await self.bound()
        submits = [defer.ensureDeferred(self.submit(f"m{i}")) for i in range(5)]
        ids = await defer.gatherResults(submits)
        states = [await self.wait_state(i, "sent", "delivered") for i in ids]
        assumed = [m for m in states if m["parts"][0]["status"] == ASSUMED]
        self.assertEqual(len(assumed), 2)  # the window: never sent twice
        for m in states:
            if m not in assumed:
                m = await self.wait_state(m["id"], "delivered")
                self.assertEqual(m["attempts"], 1)
        self.assertEqual(len(smsc.submits), 5)  # each went out once
        assert self.root is not None and self.root.dispatcher is not None
        self.assertEqual(self.root.dispatcher.counters["throttled"], 3)

    async def test_drop_with_resend(self) -> None:
        """unanswered = "resend": the three are sent again on the new bind."""
        smsc = self.simulator(drop_after=3)
        await self.start('window = 3\nunanswered = "resend"', smsc=smsc)
        await self.bound()
        ids = [await self.submit(f"m{i}") for i in range(3)]
        for message_id in ids:
            m = await self.wait_state(message_id, "delivered")
            self.assertEqual(m["attempts"], 2)
        self.assertEqual(len(smsc.submits), 6)
        self.assertEqual(len(smsc.accepted), 3)

    async def test_silent_smsc_times_out_and_reconnects(self) -> None:
        """No response within response_timeout: assumed sent, the bind is closed and made
        again once the SMSC talks."""
        smsc = self.simulator()
        await self.start('response_timeout = "1s"', smsc=smsc)
        await self.bound()
        smsc.hang = True
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "sent")
        self.assertEqual(
            m["parts"][0]["status"], "no response in 1s; assumed accepted, not sent again"
        )
        await wait_for(lambda: not smsc.sessions[0].bound, what="the silent bind closed")
        smsc.hang = False
        await wait_for(lambda: smsc.bound(SYSTEM_ID), what="a new bind")
        self.assertEqual(smsc.counts["submit_sm"], 1)  # not sent again
        await wait_for(lambda: self.gateway.health.value == "up", what="health up")

    async def test_bind_refused_is_down_without_a_retry_storm(self) -> None:
        """A wrong password: health down with the SMSC's words, an error in the log, and no
        new bind before bind_refused_delay; the SMS waits in the queue."""
        log = self.capture_log()
        smsc = self.simulator()
        await self.start('bind_refused_delay = "4s"', password="wrong", smsc=smsc)
        reason = "bind refused: ESME_RINVPASWD (0x0E)"
        await wait_for(lambda: self.gateway.health_reason == reason, what=reason)
        self.assertEqual(self.gateway.health.value, "down")
        status = self.member()
        self.assertEqual((status["state"], status["reason"]), ("down", reason))
        message_id = await self.submit("Hello")
        await sleep(2.0)
        self.assertEqual(len(smsc.sessions), 1)  # reconnect_min is 100ms: a storm would show
        self.assertEqual([s.password for s in smsc.sessions], ["wrong"])
        m = await self.message(message_id)
        self.assertEqual((m["state"], m["attempts"]), ("queued", 0))
        errors = [line for line in log if line.startswith("error:") and "refused" in line]
        self.assertTrue(errors, log)
        self.assertNotIn("wrong", "\n".join(log))  # the password is never logged

    async def test_bind_refused_then_accepted(self) -> None:
        """The SMSC refuses once (ESME_RBINDFAIL); after bind_refused_delay the link is up."""
        smsc = self.simulator()
        smsc.fail_next_binds(sim.ESME_RBINDFAIL)
        await self.start('bind_refused_delay = "1s"', smsc=smsc)
        await wait_for(lambda: smsc.bound(SYSTEM_ID), what="the second bind")
        self.assertEqual([s.status for s in smsc.sessions], [sim.ESME_RBINDFAIL, 0])
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "delivered")

    async def test_transceiver_refused_is_down(self) -> None:
        """An SMSC without transceivers answers ESME_RINVCMDID: health down, saying so."""
        await self.start('bind_refused_delay = "5s"', smsc=self.simulator(transceiver="reject"))
        reason = "bind refused: ESME_RINVCMDID (0x03)"
        await wait_for(lambda: self.gateway.health_reason == reason, what=reason)

    async def test_transmitter_and_receiver(self) -> None:
        """bind = "transmitter+receiver": two binds; submit_sm on one, receipts on the other."""
        smsc = self.simulator(transceiver="reject")
        await self.start('bind = "transmitter+receiver"', smsc=smsc)
        await self.bound(2)
        self.assertEqual(
            sorted(s.mode for s in smsc.sessions if s.status == 0), ["receiver", "transmitter"]
        )
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["status"], "stat:DELIVRD err:000")
        [receipt] = smsc.receipts_sent
        self.assertEqual(receipt.via, ["receiver"])
        self.assertEqual(
            sorted(b["mode"] for b in self.member()["binds"]), ["receiver", "transmitter"]
        )

    async def test_two_binds_share_the_traffic(self) -> None:
        """binds = 2: two transceivers, both carrying submit_sm."""
        smsc = self.simulator(submit_delay=0.5)
        await self.start("binds = 2", smsc=smsc)
        await self.bound(2)
        ids = [await self.submit(f"m{i}") for i in range(6)]
        busy = await wait_for(
            lambda: all(b["outstanding"] for b in self.member()["binds"]),
            what="both binds with submit_sm in flight",
        )
        self.assertTrue(busy)
        for message_id in ids:
            await self.wait_state(message_id, "delivered")
        self.assertEqual([s.mode for s in smsc.sessions], ["transceiver", "transceiver"])

    async def test_enquire_link_both_ways(self) -> None:
        """enquire_link after the idle time; the SMSC's own enquire_link answered."""
        smsc = self.simulator()
        await self.start('enquire_link = "1s"', smsc=smsc)
        await self.bound()
        await wait_for(lambda: smsc.enquire_links_received, timeout=5, what="an enquire_link")
        resp = await smsc.send_enquire_link(SYSTEM_ID)
        assert resp is not None
        self.assertEqual((resp.name, resp.status), ("enquire_link_resp", 0))

    async def test_garbage_is_nacked_and_the_bind_stays(self) -> None:
        """An unknown command and a garbled deliver_sm: generic_nack, same bind afterwards."""
        smsc = self.simulator()
        await self.start(smsc=smsc)
        await self.bound()
        nack = await smsc.send_unknown_command(SYSTEM_ID)
        assert nack is not None
        self.assertEqual((nack.name, nack.status), ("generic_nack", sim.ESME_RINVCMDID))
        garbled = sim.pack_pdu(sim.DELIVER_SM, 0, 77, b"\xff\xff\xff\xff")
        nack = await smsc.send_noise(SYSTEM_ID, data=garbled)
        assert nack is not None
        self.assertEqual((nack.name, nack.sequence), ("generic_nack", 77))
        self.assertNotEqual(nack.status, 0)
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "delivered")
        self.assertEqual(len(smsc.sessions), 1)
        self.assertTrue(smsc.sessions[0].bound)

    async def test_oversize_length_closes_and_reconnects(self) -> None:
        """command_length 0x7FFFFFFF: the connection is closed with a log line, the link
        binds again."""
        log = self.capture_log()
        smsc = self.simulator()
        await self.start(smsc=smsc)
        await self.bound()
        first = smsc.connections[0]
        await smsc.send_bad_length(SYSTEM_ID, length=0x7FFFFFFF, timeout=2.0)
        await first.when_lost()
        await wait_for(lambda: len(smsc.bound(SYSTEM_ID)) == 1 and len(smsc.sessions) == 2)
        self.assertTrue([line for line in log if "command_length" in line], log)
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "delivered")

    async def test_smsc_unbinds(self) -> None:
        """The SMSC unbinds: answered, and the link binds again."""
        smsc = self.simulator()
        await self.start(smsc=smsc)
        await self.bound()
        resp = await smsc.send_unbind(SYSTEM_ID)
        assert resp is not None
        self.assertEqual((resp.name, resp.status), ("unbind_resp", 0))
        await wait_for(lambda: len(smsc.sessions) == 2 and smsc.bound(SYSTEM_ID))
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "delivered")


# --- Inbound ------------------------------------------------------------------------------------

BOB = "15557654321"


class InboundTests(SmppCase):
    """MO deliver_sm into the inbox; long ones joined; acknowledged only once committed."""

    async def test_single_mo(self) -> None:
        """A GSM 7-bit MO: in the inbox with the sender in +E.164."""
        await self.start()
        status = await self.smsc.deliver_mo(SYSTEM_ID, BOB, "1234", "Hi there €", dest_ton=3)
        self.assertEqual(status, 0)
        [mo] = await self.inbox()
        self.assertEqual(
            (mo.gateway, mo.sender, mo.recipient, mo.text, mo.parts),
            ("smsc", "+" + BOB, "1234", "Hi there €", 1),
        )

    async def test_ucs2_mo(self) -> None:
        """UCS-2 MO: the text as sent."""
        await self.start()
        status = await self.smsc.deliver_mo(SYSTEM_ID, BOB, "1234", "你好 мир", data_coding=8)
        self.assertEqual(status, 0)
        [mo] = await self.inbox()
        self.assertEqual((mo.text, mo.encoding), ("你好 мир", "ucs2"))

    async def test_udh_parts_out_of_order(self) -> None:
        """Three UDH parts sent 3, 1, 2: one inbox message with the whole text."""
        await self.start()
        text = "Part one, " + "part two, " + "and part three."
        statuses = await self.smsc.deliver_long_mo(
            SYSTEM_ID, BOB, "1234", text, parts=3, order=[3, 1, 2]
        )
        self.assertEqual(statuses, [0, 0, 0])
        [mo] = await wait_for(self.inbox, what="the joined MO")
        self.assertEqual((mo.text, mo.parts, mo.sender), (text, 3, "+" + BOB))

    async def test_sar_parts(self) -> None:
        """SAR parts: joined the same way."""
        await self.start()
        text = "SAR first half / and the second half"
        statuses = await self.smsc.deliver_long_mo(
            SYSTEM_ID, BOB, "1234", text, parts=2, method="sar", ref=0x1234
        )
        self.assertEqual(statuses, [0, 0])
        [mo] = await wait_for(self.inbox, what="the joined MO")
        self.assertEqual((mo.text, mo.parts), (text, 2))

    async def test_ucs2_udh_parts(self) -> None:
        """A long UCS-2 MO in UDH parts: the text survives the join."""
        await self.start()
        text = "长消息的第一部分" + "以及第二部分"
        statuses = await self.smsc.deliver_long_mo(
            SYSTEM_ID, BOB, "1234", text, data_coding=8, parts=2
        )
        self.assertEqual(statuses, [0, 0])
        [mo] = await wait_for(self.inbox, what="the joined MO")
        self.assertEqual(mo.text, text)

    async def test_missing_part_delivered_as_parts(self) -> None:
        """Part 2 of 3 never comes: after reassembly_timeout parts 1 and 3 are in the inbox,
        each on its own."""
        await self.start()
        pieces = ["AAAA ", "BBBB ", "CCCC"]
        statuses = await self.smsc.deliver_long_mo(
            SYSTEM_ID, BOB, "1234", "".join(pieces), parts=3, missing=[2]
        )
        self.assertEqual(statuses, [0, 0])
        self.assertEqual(await self.inbox(), [])
        inbox = await wait_for(lambda: self._two(), timeout=6, what="the parts on their own")
        self.assertEqual(sorted(m.text for m in inbox), ["AAAA ", "CCCC"])

    async def _two(self) -> list[Inbound] | None:
        inbox = await self.inbox()
        return inbox if len(inbox) >= 2 else None

    async def test_mo_acknowledged_only_once_committed(self) -> None:
        """deliver_sm_resp comes after the inbound SMS is in the store."""
        await self.start()
        await self.bound()
        order: list[str] = []
        assert self.root is not None and self.root.receiver is not None
        self.root.receiver.listeners.append(lambda inbound: order.append("committed"))
        seen: list[list[Inbound]] = []

        async def answered(status: int | None) -> None:
            order.append(f"answered {status}")
            seen.append(await self.inbox())

        d = self.smsc.deliver_mo(SYSTEM_ID, BOB, "1234", "commit first")
        d.addCallback(lambda status: defer.ensureDeferred(answered(status)))
        await d
        self.assertEqual(order, ["committed", "answered 0"])
        self.assertEqual([m.text for m in seen[0]], ["commit first"])

    async def test_mo_as_message_payload(self) -> None:
        """An MO in message_payload: in the inbox like any other."""
        await self.start()
        status = await self.smsc.deliver_mo(SYSTEM_ID, BOB, "1234", "in the payload", payload=True)
        self.assertEqual(status, 0)
        [mo] = await self.inbox()
        self.assertEqual(mo.text, "in the payload")


# --- Shutdown -----------------------------------------------------------------------------------


class ShutdownTests(SmppCase):
    """stopService lets the window drain, then unbinds, then fires."""

    async def test_drain_then_unbind(self) -> None:
        """Three submit_sm in flight when smsd stops: all answered (so sent with their ids),
        then unbind, then the service stops."""
        smsc = self.simulator(submit_delay=1.0, receipts=False)
        await self.start(smsc=smsc)
        await self.bound()
        ids = [await self.submit(f"m{i}") for i in range(3)]
        await wait_for(lambda: len(smsc.submits) == 3, what="three submit_sm in flight")
        self.assertFalse(any(s.answered for s in smsc.submits))
        await self.stop()
        self.assertTrue(all(s.answered for s in smsc.submits))
        self.assertEqual(smsc.counts["unbind"], 1)
        names = [p.name for p in smsc.responses_sent]
        self.assertEqual(names[-1], "unbind_resp")
        self.assertEqual(names.count("submit_sm_resp"), 3)
        await self.assert_sent_after_stop(ids)

    async def test_stop_leaves_no_timer_behind(self) -> None:
        """Once stopService has fired, the gateway has no timer left in the reactor."""
        await self.start()
        await self.bound()
        await self.stop()
        self.assertEqual(self.leftovers, [])


def make_certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost, made by openssl (a test peer):
    (key + certificate PEM for the SMSC, certificate PEM for smsd's tls_ca)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise AssertionError("openssl is not installed: run tests/install-peers")
    key, cert = os.path.join(directory, "smsc.key"), os.path.join(directory, "smsc.pem")
    request = "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
    names = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    subprocess.run(
        [openssl, *request.split(), "-addext", names, "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
    )
    both = os.path.join(directory, "smsc-both.pem")
    Path(both).write_bytes(Path(key).read_bytes() + Path(cert).read_bytes())
    return both, cert


class TlsTests(SmppCase):
    """tls = true: the SMSC's certificate is checked against the system's CAs or tls_ca."""

    def tls_simulator(self) -> tuple[SmscFactory, str]:
        both, cert = make_certificate(self.directory)
        smsc = SmscFactory(accounts={SYSTEM_ID: PASSWORD})
        with open(both, "rb") as f:
            server = ssl.PrivateCertificate.loadPEM(f.read()).options()
        smsc.listeners.append(reactor.listenSSL(0, smsc, server, interface="127.0.0.1"))
        self.addCleanup(smsc.stop)
        return smsc, cert

    async def test_sent_and_delivered_over_tls_with_the_operators_ca(self) -> None:
        smsc, cert = self.tls_simulator()
        await self.start(f'tls = true\ntls_ca = "{cert}"', smsc=smsc)
        await self.bound()
        message_id = await self.submit("Over TLS")
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["status"], "stat:DELIVRD err:000")
        [sub] = smsc.submits
        self.assertEqual(sub.short_message, b"Over TLS")
        transport = smsc.sessions[0].connection.transport
        self.assertTrue(ISSLTransport.providedBy(transport), transport)  # it really was TLS
        ours = self.gateway.binds[0].protocol.transport
        self.assertTrue(ISSLTransport.providedBy(ours), ours)
        self.assertTrue(foreground.is_background(ours))  # its TCP connection, under TLS

    async def test_untrusted_certificate_is_down_and_sends_nothing(self) -> None:
        """Without tls_ca the self-signed certificate is not trusted: no bind, the
        gateway is down saying why, and the message waits in the queue."""
        smsc, _ = self.tls_simulator()
        await self.start("tls = true", smsc=smsc)
        message_id = await self.submit("Not to a stranger")
        await wait_for(
            lambda: self.member()["state"] == "down" and self.member()["reason"], what="down"
        )
        self.assertEqual(self.member()["reason"], "TLS handshake failed: certificate verify failed")
        self.assertEqual(smsc.submits, [])
        self.assertEqual((await self.message(message_id))["state"], "queued")

    def test_unreadable_tls_ca_stops_the_start_with_one_line(self) -> None:
        path = os.path.join(self.directory, "smsd.toml")
        with open(path, "w") as f:
            f.write(
                CONFIG.format(
                    port=1,
                    system_id=SYSTEM_ID,
                    password=PASSWORD,
                    link='tls = true\ntls_ca = "missing.pem"',
                )
            )
        with self.assertRaises(ConfigError) as caught:
            make_service(load(path, os.path.join(self.directory, "data")))
        self.assertIn("gateway smsc: tls_ca: cannot read", str(caught.exception))
        self.assertIn("missing.pem", str(caught.exception))
