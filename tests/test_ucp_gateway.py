"""The UCP/EMI gateway against our UCP SMSC simulator, seen the way a user sees it.

Each test runs a whole smsd in this process (``make_service`` on a config file) with one
``ucp`` gateway connected to ``tests/peers/ucpsmsc.py`` on 127.0.0.1, submits through the
Submitter as the HTTP form does, and checks what a user or an operator can see: message
states and status words in the store, what the SMSC decoded, the inbox, health and
``status()``. Frames smsd wrote are also read by Kannel's ``decode_emimsg`` (a decoder we did
not write): every kind smsd sends (OT 60, 51 in each coding, 31, ACKs and NACKs of 31/52/53)
is checked by at least one test.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.internet import reactor as global_reactor

from smsd import foreground
from smsd.config import load
from smsd.configschema import ConfigError
from smsd.service import Smsd, make_service
from tests.daemon import GatewayCase
from tests.fakes import sleep, wait_for
from tests.kannel_emi import Kannel
from tests.peers import ucpsmsc as sim
from tests.peers.ucpsmsc import UcpSmscFactory

reactor: Any = global_reactor

LOGIN = "12345"
PASSWORD = "secret"
ALICE = "+15551234567"
BOB = "15557654321"

CONFIG = """
[smsd]
traffic_log = ""
[http]
listen = ["tcp:0:interface=127.0.0.1"]
[snpp]
listen = []
[sip]
listen = []
[dispatch]
retry_min = "200ms"
retry_max = "1s"
poll = "200ms"
[inbound]
reassembly_timeout = "1s"
[[gateway]]
id = "telia"
type = "ucp"
host = "127.0.0.1"
port = {port}
{login}
reconnect_min = "100ms"
reconnect_max = "500ms"
{link}
"""

ASSUMED = "connection lost before the ACK; assumed accepted, not sent again"


def xser(value: str) -> dict[int, bytes]:
    """XSer services by type, read here (not with protocols.ucp)."""
    raw, out, i = bytes.fromhex(value), {}, 0
    while i + 2 <= len(raw):
        out[raw[i]] = raw[i + 2 : i + 2 + raw[i + 1]]
        i += 2 + raw[i + 1]
    return out


class UcpCase(GatewayCase):
    """One smsd with a ucp gateway on a fresh simulator, in a temporary directory."""

    timeout = 30

    def setUp(self) -> None:
        super().setUp()
        self.data_dir = self.data

    def simulator(self, **options: Any) -> UcpSmscFactory:
        options.setdefault("accounts", {LOGIN: PASSWORD})
        options.setdefault("notifications", True)
        smsc = UcpSmscFactory(**options)
        smsc.listen()
        self.addCleanup(smsc.stop)
        return smsc

    def write_config(
        self, link: str = "", *, password: str | None = PASSWORD, smsc: UcpSmscFactory
    ) -> str:
        path = os.path.join(self.directory, "smsd.toml")
        with open(path, "w") as f:
            f.write(self.config(link, password, smsc))
        return path

    def config(self, link: str, password: str | None, smsc: UcpSmscFactory) -> str:
        login = "" if password is None else f'login = "{LOGIN}"\npassword = "{password}"'
        return CONFIG.format(port=smsc.port, login=login, link=link)

    async def start(
        self,
        link: str = "",
        *,
        password: str | None = PASSWORD,
        smsc: UcpSmscFactory | None = None,
    ) -> Smsd:
        """smsd with one ucp gateway on ``smsc``; ``link`` adds keys to its [[gateway]];
        ``password=None`` configures no login (an IP-authenticated link)."""
        self.smsc = smsc if smsc is not None else self.simulator()
        return await self.start_gateway(self.config(link, password, self.smsc))

    async def up(self) -> None:
        await wait_for(lambda: self.gateway.health.value == "up", what="the link up")

    def kannel(self, frame: sim.Frame) -> Kannel:
        """Kannel's reading of a frame smsd wrote; it must be valid and agree on the header."""
        k = Kannel(frame.raw)
        self.assertTrue(k.valid, (frame.raw, k.stderr))
        self.assertEqual(k.fields["TRN"], str(frame.trn))
        self.assertEqual(k.fields["TYPE"][0], frame.kind)
        return k

    def kannel_all(self) -> list[Kannel]:
        """Every frame smsd wrote to the simulator, read by Kannel."""
        self.assertEqual(self.smsc.bad_frames, [])
        return [self.kannel(f) for f in self.smsc.frames]


def kannel_submit(case: UcpCase, sub: sim.Submit) -> Kannel:
    """Kannel's reading of the OT 51 the simulator decoded as ``sub``: the same fields."""
    [frame] = [f for f in case.smsc.frames if f.kind == "O" and f.ot == 51 and f.trn == sub.trn]
    k = case.kannel(frame)
    for name, value in sub.fields.items():
        label = "E50_NMSG" if name == "Msg" else f"E50_{name.upper()}"
        case.assertEqual(k.fields[label], value, name)
    return k


# --- Sending and notifications ------------------------------------------------------------------


class SendTests(UcpCase):
    """SMS out as OT 51; sent with the ACK's AdC:SCTS, then delivered or failed by OT 53."""

    async def test_sent_then_delivered_through_the_whole_daemon(self) -> None:
        """OT 60, then one OT 51 in IRA; the ACK's id is kept, the OT 53 delivers it."""
        await self.start()
        message_id = await self.submit("Hello €")
        sent = await self.wait_state(message_id, "sent", "delivered")
        [sub] = self.smsc.submits
        self.assertEqual(sent["parts"][0]["provider_id"], f"15551234567:{sub.scts}")
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual((m["status"], m["attempts"]), ("Dst:0 Rsn:000", 1))

        [login] = self.smsc.logins
        self.assertEqual((login.account, login.password, login.accepted), (LOGIN, PASSWORD, True))
        self.assertEqual(
            {k: login.fields.get(k) for k in ("OTON", "ONPI", "STYP", "VERS")},
            {"OTON": "6", "ONPI": "5", "STYP": "1", "VERS": "0100"},
        )
        f = sub.fields
        self.assertEqual((sub.adc, sub.text), ("0015551234567", "Hello €"))
        self.assertEqual((f["MT"], f["NRq"], f["NT"], f.get("OAdC", "")), ("3", "1", "7", ""))
        self.assertNotIn("XSer", {k for k, v in f.items() if v})
        # the notification's ACK went back, and Kannel reads all we wrote
        await wait_for(lambda: [r for r in self.smsc.results_received if r.ot == 53])
        frames = self.kannel_all()
        self.assertEqual([k.fields["OPERATION"][:2] for k in frames], ["60", "51", "53"])
        self.assertEqual(frames[0].fields["E60_PWD"], PASSWORD)
        self.assertEqual(frames[1].fields["E50_AMSG"], "Hello \x80")  # Kannel's € (GSM ESC e)
        self.assertEqual(frames[2].fields["E53_ACK"], "A")
        kannel_submit(self, sub)

        status = self.member()
        self.assertEqual((status["state"], status["type"]), ("up", "ucp"))
        self.assertEqual((status["ucp_window"], status["window"]), (10, 50))
        self.assertEqual((status["submitted"], status["notifications"]), (1, 1))
        [link] = status["links"]
        self.assertEqual((link["role"], link["up"], link["outstanding"]), ("main", True, 0))
        # under load, HTTP clients are served before this link (smsd.foreground)
        self.assertTrue(foreground.is_background(self.gateway.links[0].protocol.transport))

    async def test_not_delivered_fails_with_its_reason(self) -> None:
        """Dst 2 (not delivered), Rsn 001: failed, the words kept."""
        await self.start(smsc=self.simulator(notify_status=(2, "001")))
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "failed")
        self.assertEqual((m["status"], m["parts"][0]["state"]), ("Dst:2 Rsn:001", "failed"))

    async def test_buffered_is_intermediate(self) -> None:
        """Dst 1 (buffered) keeps the message sent with those words; Dst 0 then delivers."""
        smsc = self.simulator(notifications=False)
        await self.start(smsc=smsc)
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "sent")
        [sub] = smsc.submits
        ack = await smsc.notify(sub, 1, "107")
        assert ack is not None and ack.ack
        m = await self.message(message_id)
        self.assertEqual((m["state"], m["parts"][0]["status"]), ("sent", "Dst:1 Rsn:107"))
        await smsc.notify(sub, 0, "000")
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["status"], "Dst:0 Rsn:000")

    async def test_no_notification_requested(self) -> None:
        """notifications = false: no NRq, the message stays sent."""
        await self.start("notifications = false")
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "sent")
        [sub] = self.smsc.submits
        self.assertEqual((sub.fields.get("NRq", ""), sub.fields.get("NT", "")), ("", ""))
        await sleep(0.3)
        self.assertEqual((await self.message(message_id))["state"], "sent")

    async def test_senders(self) -> None:
        """Alphanumeric via OTOA 5039 (7-bit packed), +E.164 as OTOA 1139 without the +."""
        await self.start()
        ids = [
            await self.submit("a", sender="ACME Corp"),
            await self.submit("b", sender="+15550001111"),
        ]
        for message_id in ids:
            await self.wait_state(message_id, "delivered")
        seen = {s.text: (s.oadc, s.fields.get("OTOA")) for s in self.smsc.submits}
        self.assertEqual(seen, {"a": ("ACME Corp", "5039"), "b": ("15550001111", "1139")})
        for sub in self.smsc.submits:
            kannel_submit(self, sub)

    async def test_ip_authenticated_link_sends_no_login(self) -> None:
        """No login configured, an SMSC without accounts: no OT 60, sent and delivered."""
        smsc = self.simulator(accounts=None)
        await self.start(password=None, smsc=smsc)
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "delivered")
        self.assertEqual(smsc.logins, [])


LONG_UCS2 = "长消息的第一部分" * 10  # 80 characters: two UCS-2 parts


class CodingTests(UcpCase):
    """MT 3 for GSM text, MT 4 with the DCS in XSer for UCS-2 and 8-bit, UDH in XSer."""

    async def test_long_ucs2_with_udh(self) -> None:
        await self.start()
        message_id = await self.submit(LONG_UCS2)
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["total"], 2)
        subs = self.smsc.submits
        services = [xser(s.fields["XSer"]) for s in subs]
        self.assertEqual([s[2] for s in services], [b"\x08", b"\x08"])
        udhs = [s[1] for s in services]
        self.assertEqual([(u[0], u[1], u[4], u[5]) for u in udhs], [(5, 0, 2, 1), (5, 0, 2, 2)])
        self.assertEqual(udhs[0][3], udhs[1][3])  # one reference
        self.assertEqual([s.fields["MT"] for s in subs], ["4", "4"])
        self.assertEqual([s.fields["MCLs"] for s in subs], ["1", "1"])
        data = b"".join(s.data or b"" for s in subs)
        self.assertEqual(data.decode("utf-16-be"), LONG_UCS2)
        self.assertEqual(subs[0].fields["NB"], f"{8 * len(subs[0].data or b''):04d}")
        for sub in subs:
            k = kannel_submit(self, sub)
            self.assertEqual(k.fields["E50_XSER"], sub.fields["XSer"])
        self.assertEqual({p["state"] for p in m["parts"]}, {"delivered"})

    async def test_long_gsm_text_in_ira_with_udh(self) -> None:
        text = "".join(f"{i:03d}-abcdef " for i in range(20))  # 220 characters: two parts
        await self.start()
        message_id = await self.submit(text)
        await self.wait_state(message_id, "delivered")
        subs = self.smsc.submits
        self.assertEqual([s.fields["MT"] for s in subs], ["3", "3"])
        self.assertEqual("".join(s.text or "" for s in subs), text)
        self.assertEqual([xser(s.fields["XSer"])[1][5] for s in subs], [1, 2])
        self.assertEqual([2 in xser(s.fields["XSer"]) for s in subs], [False, False])
        for sub in subs:
            kannel_submit(self, sub)

    async def test_8bit_with_udh(self) -> None:
        udh = bytes([6, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0])  # port addressing 2948 <- 9200
        payload = bytes(range(1, 256, 7))  # no NUL: Kannel prints TMSG as a C string
        await self.start()
        message_id = await self.submit(None, data=payload, udh=udh)
        await self.wait_state(message_id, "delivered")
        [sub] = self.smsc.submits
        self.assertEqual((sub.fields["MT"], sub.data), ("4", payload))
        self.assertEqual(xser(sub.fields["XSer"]), {1: udh, 2: b"\x04"})
        k = kannel_submit(self, sub)
        self.assertEqual(k.fields["E50_TMSG"].encode("latin-1"), payload)


# --- Inbound ------------------------------------------------------------------------------------


class InboundTests(UcpCase):
    """OT 52 into the inbox, ACKed once committed; long ones joined; what cannot be read is
    NACKed with 02."""

    async def test_single_mo(self) -> None:
        await self.start()
        await self.up()
        result = await self.smsc.deliver_mo("1234", "00" + BOB, "Hi there €")
        assert result is not None
        self.assertTrue(result.ack)
        [mo] = await self.inbox()
        self.assertEqual(
            (mo.gateway, mo.sender, mo.recipient, mo.text, mo.parts),
            ("telia", "+" + BOB, "1234", "Hi there €", 1),
        )
        self.assertEqual(self.kannel(result).fields["E52_ACK"], "A")

    async def test_ucs2_mo(self) -> None:
        await self.start()
        await self.up()
        text = "你好 мир"
        result = await self.smsc.deliver_mo(
            "1234", "00" + BOB, data=text.encode("utf-16-be"), xser="020108"
        )
        assert result is not None and result.ack
        [mo] = await self.inbox()
        self.assertEqual((mo.text, mo.encoding), (text, "ucs2"))

    async def test_concatenated_parts_out_of_order(self) -> None:
        await self.start()
        await self.up()
        pieces = ["Part one, ", "part two, ", "and three."]
        results = []
        for seq in (3, 1, 2):
            udh = f"050003AA03{seq:02X}"
            r = await self.smsc.deliver_mo("1234", "00" + BOB, pieces[seq - 1], xser=f"0106{udh}")
            results.append(r)
        self.assertTrue(all(r is not None and r.ack for r in results))
        [mo] = await wait_for(self.inbox, what="the joined MO")
        self.assertEqual((mo.text, mo.parts, mo.sender), ("".join(pieces), 3, "+" + BOB))

    async def test_undecodable_mo_is_nacked_and_the_link_stays(self) -> None:
        """MT 3 whose Msg is not hex, and UCS-2 of an odd length: NACK 02, nothing stored."""
        await self.start()
        await self.up()
        bad = await self.smsc.deliver_mo("1234", BOB, "x", Msg="ZZZ")
        odd = await self.smsc.deliver_mo("1234", BOB, data=b"\x00A\x00", xser="020108")
        for r in (bad, odd):
            assert r is not None
            self.assertEqual(r.fields[:2], ["N", "02"])
            self.assertEqual(self.kannel(r).fields["E52_ACK"], "N")
        self.assertEqual(await self.inbox(), [])
        self.assertEqual(len(self.smsc.connections), 1)
        message_id = await self.submit("still here")
        await self.wait_state(message_id, "delivered")

    async def test_mo_acknowledged_only_once_committed(self) -> None:
        await self.start()
        await self.up()
        order: list[str] = []
        assert self.root is not None and self.root.receiver is not None
        self.root.receiver.listeners.append(lambda inbound: order.append("committed"))
        result = await self.smsc.deliver_mo("1234", BOB, "commit first")
        order.append(f"answered {result.fields[0] if result else None}")
        self.assertEqual(order, ["committed", "answered A"])

    async def test_inbound_connection(self) -> None:
        """inbound_port: a second connection (with its own login) gets OT 52 and OT 53."""
        smsc = self.simulator(mo_via="inbound")
        inbound = smsc.listen_inbound()
        await self.start(f"inbound_port = {inbound}", smsc=smsc)
        await wait_for(lambda: len([c for c in smsc.connections if c.logged_in]) == 2)
        self.assertEqual(sorted(c.inbound for c in smsc.connections), [False, True])
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "delivered")
        result = await smsc.deliver_mo("1234", "00" + BOB, "over there")
        assert result is not None and result.ack
        [mo] = await self.inbox()
        self.assertEqual(mo.text, "over there")
        roles = {link["role"]: link["up"] for link in self.member()["links"]}
        self.assertEqual(roles, {"main": True, "inbound": True})


# --- Window, errors, connection -----------------------------------------------------------------


class WindowTests(UcpCase):
    async def test_never_more_than_window_unacknowledged(self) -> None:
        peak = [0]
        smsc = self.simulator(ack_delay=0.2)

        def seen(line: str) -> None:
            if line.startswith("submit"):
                peak[0] = max(peak[0], len(smsc.outstanding))

        smsc.on_event = seen
        await self.start("window = 3", smsc=smsc)
        await self.up()
        submits = [defer.ensureDeferred(self.submit(f"m{i}")) for i in range(12)]
        ids = await defer.gatherResults(submits)
        for message_id in ids:
            await self.wait_state(message_id, "delivered", timeout=15)
        self.assertEqual(peak[0], 3)
        self.assertEqual(len(smsc.submits), 12)
        self.assertEqual(len({s.trn for s in smsc.submits}), 12)  # TRNs move on

    def test_window_over_100_stops_the_start(self) -> None:
        smsc = self.simulator()
        path = self.write_config("window = 101", smsc=smsc)
        with self.assertRaises(ConfigError) as e:
            make_service(load(path, os.path.join(self.directory, "data")))
        self.assertIn("gateway.telia.window: at most 100", str(e.exception))

    def test_ack_timeout_must_be_below_send_timeout(self) -> None:
        smsc = self.simulator()
        path = self.write_config('ack_timeout = "90s"', smsc=smsc)
        with self.assertRaises(ConfigError) as e:
            make_service(load(path, os.path.join(self.directory, "data")))
        self.assertIn("ack_timeout: must be shorter than send_timeout", str(e.exception))


class ErrorTests(UcpCase):
    async def test_nack_04_is_throttling_and_costs_no_attempt(self) -> None:
        await self.start('throttle_delay = "100ms"')
        await self.up()
        self.smsc.nack_next(sim.EC_NOT_ALLOWED, 2)
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["attempts"], 1)
        self.assertEqual([s.error for s in self.smsc.submits], [4, 4, None])
        status = self.member()
        self.assertEqual((status["errors"], status["state"], status["throttled"]), (0, "up", 2))

    async def test_permanent_nack_fails_at_once(self) -> None:
        await self.start()
        await self.up()
        self.smsc.nack_next(sim.EC_ADC_INVALID)
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "failed")
        self.assertIn("NACK ADC_INVALID (06)", m["error"] or m["status"])
        await sleep(0.5)
        self.assertEqual(len(self.smsc.submits), 1)

    async def test_temporary_nack_is_retried(self) -> None:
        await self.start()
        await self.up()
        self.smsc.nack_next(5)  # call barring active: temporary
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["attempts"], 2)

    async def test_garbage_bad_checksum_unknown_ot_and_bad_fields(self) -> None:
        """Noise, an OT 52 with a wrong checksum (NACK 01), an unknown OT (03), an OT 53 with
        a malformed Dst (02), an OT 31 (ACK): the same connection carries on."""
        await self.start()
        await self.up()
        self.smsc.send_garbage(b"\r\nnoise\x00")
        checksum = await self.smsc.send_bad_checksum(ot=52, trn=77)
        unknown = await self.smsc.send_operation(99, ["x", "y"])
        bad_53 = await self.smsc.send_operation(
            53, ["1234", "", "", "", "", "", "", "", "", "", "", "", "", "", "020125120000", "X"]
        )
        alert = await self.smsc.send_alert("1234")
        answers = [checksum, unknown, bad_53, alert]
        assert all(a is not None for a in answers)
        self.assertEqual(
            [(a.trn, a.ot, a.fields[:2]) for a in answers if a is not None],
            [
                (77, 52, ["N", "01"]),
                (unknown.trn, 99, ["N", "03"]),  # type: ignore[union-attr]
                (bad_53.trn, 53, ["N", "02"]),  # type: ignore[union-attr]
                (alert.trn, 31, ["A", ""]),  # type: ignore[union-attr]
            ],
        )
        for a in (checksum, bad_53, alert):
            assert a is not None
            k = self.kannel(a)
            self.assertEqual(k.fields["TYPE"], "R (Result)")
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "delivered")
        self.assertEqual(len(self.smsc.connections), 1)
        self.assertGreaterEqual(self.member()["nacked_by_us"], 3)


class ConnectionTests(UcpCase):
    async def test_drop_with_outstanding_trns_sends_nothing_twice(self) -> None:
        smsc = self.simulator(drop_after=3)
        await self.start("window = 3", smsc=smsc)
        await self.up()
        ids = [await self.submit(f"m{i}") for i in range(3)]
        for message_id in ids:
            m = await self.wait_state(message_id, "sent")
            self.assertEqual(
                (m["parts"][0]["provider_id"], m["parts"][0]["status"], m["attempts"]),
                (None, ASSUMED, 1),
            )
        await wait_for(lambda: len(smsc.logins) >= 2 and smsc.connections, what="reconnect")
        message_id = await self.submit("after")
        await self.wait_state(message_id, "delivered")
        self.assertEqual([s.text for s in smsc.submits], ["m0", "m1", "m2", "after"])
        self.assertEqual(self.member()["unanswered"], 3)

    async def test_drop_with_resend(self) -> None:
        smsc = self.simulator(drop_after=3)
        await self.start('window = 3\nunanswered = "resend"', smsc=smsc)
        await self.up()
        ids = [await self.submit(f"m{i}") for i in range(3)]
        for message_id in ids:
            m = await self.wait_state(message_id, "delivered")
            self.assertEqual(m["attempts"], 2)
        self.assertEqual(len(smsc.submits), 6)
        self.assertEqual(sorted(s.text or "" for s in smsc.accepted), ["m0", "m1", "m2"])

    async def test_slow_ack_times_out_reconnects_and_is_not_resent(self) -> None:
        """An ACK slower than ack_timeout: assumed sent, no new submit on that connection,
        a new connection, and the message never goes out again."""
        log = self.capture_log()
        smsc = self.simulator(ack_delay=2.5)
        await self.start('ack_timeout = "1s"', smsc=smsc)
        await self.up()
        message_id = await self.submit("slow")
        m = await self.wait_state(message_id, "sent")
        self.assertEqual(m["parts"][0]["status"], "no ACK in 1s; assumed accepted, not sent again")
        await wait_for(lambda: len(smsc.logins) >= 2, what="a new connection")
        smsc.ack_delay = 0.0
        await self.up()
        after = await self.submit("after")
        await self.wait_state(after, "delivered")
        self.assertEqual([s.text for s in smsc.submits], ["slow", "after"])
        self.assertTrue([line for line in log if "no result in 1s" in line], log)

    async def test_late_ack_while_the_link_drains(self) -> None:
        """A's ACK is slower than ack_timeout, B is never answered: at A's timeout the link
        takes no new submit but stays open for B, so A's ACK still comes in, as a late
        result counted and logged (A stays sent, never resent); after B's timeout the link
        reconnects."""
        log = self.capture_log()
        smsc = self.simulator(notifications=False, ack_delay=3.0)
        await self.start('ack_timeout = "2s"', smsc=smsc)
        await self.up()
        a = await self.submit("A")
        await wait_for(lambda: smsc.submits, what="A on the wire")
        await sleep(1.5)
        smsc.ignore_next(1)
        b = await self.submit("B")
        m = await self.wait_state(a, "sent")
        self.assertEqual(m["parts"][0]["status"], "no ACK in 2s; assumed accepted, not sent again")
        await wait_for(lambda: self.member()["late"] == 1, what="A's late ACK")
        self.assertTrue([line for line in log if "late ACK" in line and "assumed sent" in line])
        await self.wait_state(b, "sent")
        await wait_for(lambda: len(smsc.logins) >= 2, what="a new connection")
        self.assertEqual([s.text for s in smsc.submits], ["A", "B"])
        self.assertEqual(self.member()["unanswered"], 2)

    async def test_login_refused_is_down_without_a_retry_storm(self) -> None:
        log = self.capture_log()
        smsc = self.simulator()
        await self.start('login_refused_delay = "4s"', password="wrong", smsc=smsc)
        reason = "login refused: AUTHENTICATION_FAILURE (07)"
        await wait_for(lambda: self.gateway.health_reason == reason, what=reason)
        self.assertEqual(self.gateway.health.value, "down")
        status = self.member()
        self.assertEqual((status["state"], status["reason"]), ("down", reason))
        message_id = await self.submit("Hello")
        await sleep(2.0)
        self.assertEqual([login.password for login in smsc.logins], ["wrong"])
        m = await self.message(message_id)
        self.assertEqual((m["state"], m["attempts"]), ("queued", 0))
        errors = [line for line in log if line.startswith("error:") and "refused" in line]
        self.assertTrue(errors, log)
        self.assertNotIn("wrong", "\n".join(log))  # the password is never logged
        [login_frame] = [f for f in smsc.frames if f.ot == 60]
        self.assertEqual(self.kannel(login_frame).fields["E60_OADC"], LOGIN)

    async def test_login_refused_then_accepted(self) -> None:
        smsc = self.simulator()
        smsc.fail_next_logins()
        await self.start('login_refused_delay = "1s"', smsc=smsc)
        await wait_for(lambda: len(smsc.logins) == 2 and smsc.logins[1].accepted)
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "delivered")

    async def test_keepalive_on_an_idle_link(self) -> None:
        smsc = self.simulator()
        await self.start('keepalive = "1s"', smsc=smsc)
        await self.up()
        await wait_for(lambda: smsc.alerts, timeout=5, what="an OT 31")
        k = self.kannel(smsc.alerts[0])
        self.assertEqual((k.fields["OPERATION"][:2], k.fields["E50_ADC"]), ("31", LOGIN))
        self.assertEqual(len(smsc.logins), 1)

    async def test_smsc_drops_the_idle_connection(self) -> None:
        smsc = self.simulator()
        await self.start(smsc=smsc)
        await self.up()
        await smsc.drop_connections()
        await wait_for(lambda: len(smsc.logins) == 2 and smsc.logins[1].accepted)
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "delivered")


class ShutdownTests(UcpCase):
    async def test_window_drains_before_the_connection_closes(self) -> None:
        smsc = self.simulator(ack_delay=1.0, notifications=False)
        await self.start(smsc=smsc)
        await self.up()
        ids = [await self.submit(f"m{i}") for i in range(3)]
        await wait_for(lambda: len(smsc.submits) == 3, what="three OT 51 in flight")
        self.assertFalse(any(s.answered for s in smsc.submits))
        await self.stop()
        self.assertTrue(all(s.answered for s in smsc.submits))
        await self.assert_sent_after_stop(ids)

    async def test_stop_leaves_no_timer_behind(self) -> None:
        await self.start()
        await self.up()
        gateway = self.gateway
        await self.stop()
        owners = {id(gateway), *(id(link) for link in gateway.links)}
        left = [
            c
            for c in reactor.getDelayedCalls()
            if c.active() and id(getattr(c.func, "__self__", None)) in owners
        ]
        self.assertEqual(left, [])
