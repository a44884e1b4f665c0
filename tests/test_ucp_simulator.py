"""The UCP SMSC simulator (``tests/peers/ucpsmsc.py``) against ``protocols.ucp``'s session,
over real TCP on 127.0.0.1: each side was written without the other's codec, so agreement here
means both read the frames the same way (the codec itself is checked against Kannel in
``test_ucp_codec.py``)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.python.failure import Failure
from twisted.trial import unittest

from protocols import ucp
from tests.peers import ucpsmsc
from tests.peers.ucpsmsc import UcpSmscFactory

SUBMIT = ucp.make_submit("0031612345678", "Shop", "Hello there", notify=3)


class Client(protocol.Protocol):
    """A minimal ESME: an EsmeSession on a TCP connection, events recorded."""

    def __init__(self) -> None:
        self.session = ucp.EsmeSession(window=5)
        self.events: list[ucp.Event] = []
        self.connected = False
        self.auto_ack = True
        self._lost: list[Deferred[None]] = []

    def now(self) -> float:
        return reactor.seconds()  # type: ignore[attr-defined]

    def flush(self) -> None:
        data = self.session.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        events = self.session.receive(data, self.now())
        self.events += events
        for event in events:
            if self.auto_ack and isinstance(
                event, ucp.MoReceived | ucp.NotificationReceived | ucp.Alert
            ):
                self.session.ack(event.trn, now=self.now())
        self.flush()

    def connectionMade(self) -> None:
        self.connected = True

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.connected = False
        self.session.close()
        waiters, self._lost = self._lost, []
        for d in waiters:
            d.callback(None)

    def when_lost(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.connected:
            self._lost.append(d)
        else:
            d.callback(None)
        return d

    def close(self) -> Deferred[None]:
        d = self.when_lost()
        if self.connected:
            self.transport.loseConnection()  # type: ignore[union-attr]
        return d

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class SimulatorTests(unittest.TestCase):
    timeout = 20

    def start(self, **options: Any) -> UcpSmscFactory:
        self.smsc = UcpSmscFactory(**options)
        self.port = self.smsc.listen()
        self.addCleanup(self.smsc.stop)
        return self.smsc

    @inlineCallbacks
    def connect(self, port: int | None = None) -> Generator[Deferred[Any], Any, Client]:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port or self.port, timeout=5)
        client = yield connectProtocol(endpoint, Client())
        self.addCleanup(client.close)
        return client

    @inlineCallbacks
    def logged_in(self, **options: Any) -> Generator[Deferred[Any], Any, Client]:
        smsc = self.start(accounts={"acct": "secret"}, **options)
        client = yield self.connect()
        client.session.login("acct", "secret", now=client.now())
        client.flush()
        yield smsc.wait_for(lambda: client.of(ucp.LoggedIn), what="login")
        return client

    @inlineCallbacks
    def test_login_submit_ack_and_notification(self) -> Generator[Deferred[Any], Any, None]:
        client = yield self.logged_in(notifications=True, notify_status=(0, "000"))
        smsc = self.smsc
        trn = client.session.submit(SUBMIT, now=client.now(), ref="m1")
        client.flush()
        [acked] = yield smsc.wait_for(lambda: client.of(ucp.Acked), what="ACK")
        [sub] = smsc.submits
        self.assertEqual((acked.trn, acked.ref, acked.id), (trn, "m1", sub.id))
        self.assertEqual((sub.adc, sub.oadc, sub.text), ("0031612345678", "Shop", "Hello there"))
        self.assertEqual(acked.id, f"0031612345678:{acked.scts}")
        [dn] = yield smsc.wait_for(lambda: client.of(ucp.NotificationReceived), what="OT 53")
        self.assertEqual(dn.notification.id, acked.id)
        self.assertEqual(dn.notification.status, ucp.DeliveryStatus.DELIVERED)
        [result] = yield smsc.wait_for(lambda: smsc.results_received, what="ACK of OT 53")
        self.assertEqual((result.ot, result.ack), (53, True))
        self.assertEqual(
            [(lo.account, lo.password, lo.accepted) for lo in smsc.logins],
            [("acct", "secret", True)],
        )

    @inlineCallbacks
    def test_login_refused(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(accounts={"acct": "secret"})
        client = yield self.connect()
        trn = client.session.login("acct", "wrong", now=client.now())
        client.flush()
        [refused] = yield smsc.wait_for(lambda: client.of(ucp.LoginRefused), what="NACK")
        self.assertEqual((refused.trn, refused.error), (trn, ucp.Error.AUTHENTICATION_FAILURE))
        client.session.submit(SUBMIT, now=client.now())  # OPEN again; the SMSC refuses it
        client.flush()
        [nacked] = yield smsc.wait_for(lambda: client.of(ucp.Nacked), what="submit NACK")
        self.assertEqual(nacked.error, 7)

    @inlineCallbacks
    def test_mo_keepalive_and_alert(self) -> Generator[Deferred[Any], Any, None]:
        client = yield self.logged_in()
        smsc = self.smsc
        answer = yield smsc.deliver_mo("1234", "0612345678", "Hi €")
        self.assertTrue(answer.ack)
        [mo] = client.of(ucp.MoReceived)
        msg = ucp.read_message(mo.operation)
        self.assertEqual((msg.sender, msg.recipient, msg.text), ("0612345678", "1234", "Hi €"))
        binary = yield smsc.deliver_mo("1234", "0612", data=b"\x01\x02", xser="0106050003010201")
        self.assertTrue(binary.ack)
        msg = ucp.read_message(client.of(ucp.MoReceived)[1].operation)
        self.assertEqual((msg.data, msg.udh), (b"\x01\x02", bytes.fromhex("050003010201")))
        client.session.keepalive(now=client.now(), adc="acct")
        client.flush()
        yield smsc.wait_for(lambda: smsc.alerts, what="OT 31")
        yield smsc.wait_for(lambda: not client.session.outstanding, what="OT 31 ACK")
        alert = yield smsc.send_alert("0612")
        self.assertTrue(alert.ack)

    @inlineCallbacks
    def test_nack_next_and_slow_acks(self) -> Generator[Deferred[Any], Any, None]:
        client = yield self.logged_in(ack_delay=0.2)
        smsc = self.smsc
        smsc.nack_next(ucp.Error.OPERATION_NOT_ALLOWED, count=2)
        start = client.now()
        for i in range(3):
            client.session.submit(SUBMIT, now=client.now(), ref=i)
        client.flush()
        yield smsc.wait_for(lambda: len(client.of(ucp.Acked) + client.of(ucp.Nacked)) == 3)
        self.assertGreaterEqual(client.now() - start, 0.2)
        nacks = client.of(ucp.Nacked)
        self.assertEqual(
            [(n.ref, n.error, n.temporary) for n in nacks], [(0, 4, True), (1, 4, True)]
        )
        self.assertEqual([a.ref for a in client.of(ucp.Acked)], [2])

    @inlineCallbacks
    def test_ignored_submit_stays_outstanding(self) -> Generator[Deferred[Any], Any, None]:
        client = yield self.logged_in()
        smsc = self.smsc
        smsc.ignore_next()
        lost = client.session.submit(SUBMIT, now=client.now(), ref="lost")
        client.session.submit(SUBMIT, now=client.now(), ref="ok")
        client.flush()
        yield smsc.wait_for(lambda: client.of(ucp.Acked), what="second ACK")
        self.assertEqual(list(client.session.outstanding), [lost])
        self.assertEqual([s.held for s in smsc.submits], [True, False])

    @inlineCallbacks
    def test_drop_with_outstanding_trns(self) -> Generator[Deferred[Any], Any, None]:
        client = yield self.logged_in(drop_after=2)
        smsc = self.smsc
        trns = [client.session.submit(SUBMIT, now=client.now(), ref=i) for i in range(2)]
        lost = client.when_lost()
        client.flush()
        yield lost
        self.assertEqual(sorted(client.session.outstanding), sorted(trns))
        self.assertEqual([p.ref for p in client.session.expired(float("inf"), 0)], [0, 1])
        self.assertEqual(len(smsc.outstanding), 2)

    @inlineCallbacks
    def test_garbage_and_bad_checksum(self) -> Generator[Deferred[Any], Any, None]:
        client = yield self.logged_in()
        smsc = self.smsc
        smsc.send_garbage(b"garbage\r\n")
        nack = yield smsc.send_bad_checksum(ot=52)
        self.assertEqual((nack.ot, nack.fields[:2]), (52, ["N", "01"]))
        self.assertEqual(len(client.of(ucp.PeerError)), 2)
        # and the other way: the simulator NACKs our garbage
        client.transport.write(b"\x0201/00021/O/51/1/2/00\x03")  # type: ignore[union-attr]
        client.transport.write(ucp.encode(ucp.Operation(2, 99, {}, ("x",))))  # type: ignore[union-attr]
        yield smsc.wait_for(lambda: len(client.of(ucp.Stray)) == 2, what="NACKs")
        self.assertEqual([s.result.error for s in client.of(ucp.Stray)], [1, 3])

    @inlineCallbacks
    def test_inbound_listener(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(mo_via="inbound")
        inbound_port = smsc.listen_inbound()
        main = yield self.connect()
        d = smsc.deliver_mo("1234", "0612", "queued")  # no inbound connection yet: waits
        self.assertEqual(smsc.operations_sent, [])
        receiver = yield self.connect(inbound_port)
        answer = yield d
        self.assertTrue(answer.ack)
        self.assertEqual((len(receiver.of(ucp.MoReceived)), main.of(ucp.MoReceived)), (1, []))

    @inlineCallbacks
    def test_unanswered_operation_times_out(self) -> Generator[Deferred[Any], Any, None]:
        self.start(result_timeout=0.2)
        client = yield self.connect()
        client.auto_ack = False
        answer = yield self.smsc.deliver_mo("1234", "0612", "x")
        self.assertIsNone(answer)
        self.assertEqual(len(client.of(ucp.MoReceived)), 1)

    def test_codec_helpers_agree(self) -> None:
        frame = ucpsmsc.pack_frame(5, "O", 51, [SUBMIT.get(n, "") for n in ucpsmsc.FIELDS_5X])
        self.assertEqual(frame, ucp.encode(ucp.Operation(5, 51, SUBMIT)))
        self.assertEqual(ucpsmsc.unpack_frame(frame).named()["OTOA"], "5039")
        with self.assertRaises(ucpsmsc.BadFrame):
            ucpsmsc.unpack_frame(frame[:-3] + b"00\x03")
