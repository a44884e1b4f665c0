"""Tests for protocols.smpp.EsmeSession: the ESME's state machine driven with bytes and times.

The SMSC's side is written with our own encoder for most tests and with ``smpp.pdu3``'s
(Jasmin's codec, which smsd does not use) for a few, so that the session is also fed bytes our
codec did not produce.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from smpp.pdu import operations as their_ops
from smpp.pdu import pdu_types as their_types
from smpp.pdu.pdu_encoding import PDUEncoder
from twisted.trial.unittest import SynchronousTestCase

from protocols import smpp
from protocols.smpp import Command, State, Status, Tag

MESSAGE = {"source_addr": "smsd", "destination_addr": "46701234567", "short_message": b"hi"}


def wire(command: int, sequence: int, status: int = 0, **params: Any) -> bytes:
    """What the SMSC sends."""
    return smpp.encode(smpp.make(command, sequence, status, **params))


def sent(session: smpp.EsmeSession) -> list[smpp.Pdu | smpp.Garbled]:
    """What the session wrote, decoded."""
    return smpp.Parser().feed(session.data_to_send())


def bound(mode: str = "transceiver", **kwargs: Any) -> smpp.EsmeSession:
    session = smpp.EsmeSession(**kwargs)
    sequence = session.bind(mode, "esme", "secret", now=0.0)
    response = {
        "transceiver": Command.BIND_TRANSCEIVER_RESP,
        "transmitter": Command.BIND_TRANSMITTER_RESP,
        "receiver": Command.BIND_RECEIVER_RESP,
    }[mode]
    session.data_to_send()
    events = session.receive(wire(response, sequence, system_id="SMSC"), 0.0)
    assert events == [smpp.Bound(mode, "SMSC")], events
    return session


class BindTests(SynchronousTestCase):
    def test_bind_ok(self) -> None:
        session = smpp.EsmeSession()
        self.assertIs(session.state, State.OPEN)
        sequence = session.bind("transceiver", "esme", "secret", system_type="VMA", now=5.0)
        self.assertIs(session.state, State.BINDING)
        self.assertEqual(session.outstanding, 1)
        [request] = sent(session)
        self.assertEqual(
            request,
            smpp.make(
                Command.BIND_TRANSCEIVER,
                sequence,
                system_id="esme",
                password="secret",
                system_type="VMA",
                interface_version=0x34,
            ),
        )
        self.assertEqual(session.data_to_send(), b"")
        response = smpp.make(
            Command.BIND_TRANSCEIVER_RESP,
            sequence,
            system_id="SMSC",
            tlvs=[(Tag.SC_INTERFACE_VERSION, 0x34)],
        )
        events = session.receive(smpp.encode(response), 6.0)
        self.assertEqual(events, [smpp.Bound("transceiver", "SMSC", 0x34)])
        self.assertIs(session.state, State.BOUND_TRX)
        self.assertEqual(session.outstanding, 0)
        self.assertEqual(session.idle_since, 6.0)

    def test_modes(self) -> None:
        self.assertIs(bound("transmitter").state, State.BOUND_TX)
        self.assertIs(bound("receiver").state, State.BOUND_RX)
        with self.assertRaises(smpp.SessionError):
            smpp.EsmeSession().bind("both", "esme", "secret", now=0.0)

    def test_wrong_password(self) -> None:
        session = smpp.EsmeSession()
        sequence = session.bind("transceiver", "esme", "wrong", now=0.0)
        refusal = wire(Command.BIND_TRANSCEIVER_RESP, sequence, Status.ESME_RINVPASWD)
        self.assertEqual(len(refusal), 16)  # SMPP sends no body with the error
        events = session.receive(refusal, 1.0)
        self.assertEqual(events, [smpp.BindRefused(Status.ESME_RINVPASWD)])
        self.assertIs(session.state, State.OPEN)
        self.assertEqual(session.outstanding, 0)
        session.bind("transceiver", "esme", "right", now=2.0)  # may try again on this connection

    def test_bind_nacked(self) -> None:
        session = smpp.EsmeSession()
        sequence = session.bind("transceiver", "esme", "secret", now=0.0)
        events = session.receive(wire(Command.GENERIC_NACK, sequence, Status.ESME_RINVCMDID), 0.0)
        self.assertEqual(events, [smpp.BindRefused(Status.ESME_RINVCMDID)])

    def test_bind_answered_with_the_wrong_kind(self) -> None:
        session = smpp.EsmeSession()
        sequence = session.bind("transceiver", "esme", "secret", now=0.0)
        session.data_to_send()
        events = session.receive(
            wire(Command.BIND_TRANSMITTER_RESP, sequence, system_id="SMSC")
            + wire(Command.ENQUIRE_LINK, 9),
            0.0,
        )
        self.assertEqual(len(events), 1)
        self.assertIsInstance(events[0], smpp.ProtocolFailure)
        self.assertIn("bind_transmitter_resp in answer to bind_transceiver", events[0].reason)
        self.assertIs(session.state, State.CLOSED)
        self.assertEqual(session.data_to_send(), b"")  # the enquire_link after it is not read
        self.assertEqual(session.receive(wire(Command.ENQUIRE_LINK, 10), 1.0), [])

    def test_bind_only_when_open(self) -> None:
        session = bound()
        with self.assertRaises(smpp.SessionError):
            session.bind("transceiver", "esme", "secret", now=0.0)

    def test_bad_bind_fields(self) -> None:
        session = smpp.EsmeSession()
        with self.assertRaises(ValueError) as caught:
            session.bind("transceiver", "esme", "much-too-long", now=0.0)
        self.assertIn("password: 13 octets, at most 8", str(caught.exception))
        self.assertEqual((session.outstanding, session.data_to_send()), (0, b""))


class SubmitTests(SynchronousTestCase):
    def test_submit_before_bind(self) -> None:
        session = smpp.EsmeSession()
        with self.assertRaises(smpp.SessionError):
            session.submit(MESSAGE, now=0.0)
        session.bind("transceiver", "esme", "secret", now=0.0)
        with self.assertRaises(smpp.SessionError) as caught:
            session.submit(MESSAGE, now=0.0)
        self.assertIn("cannot send submit_sm in state BINDING", str(caught.exception))
        with self.assertRaises(smpp.SessionError):
            bound("receiver").submit(MESSAGE, now=0.0)

    def test_results_matched_to_refs_out_of_order(self) -> None:
        session = bound()
        seqs = [session.submit(MESSAGE, now=1.0, ref=f"msg{i}") for i in range(3)]
        self.assertEqual(len(set(seqs)), 3)
        self.assertEqual(session.outstanding, 3)
        requests = sent(session)
        self.assertEqual([p.sequence for p in requests], seqs)  # type: ignore[union-attr]
        self.assertEqual(requests[0], smpp.make(Command.SUBMIT_SM, seqs[0], **MESSAGE))
        data = wire(Command.SUBMIT_SM_RESP, seqs[2], message_id="id-2") + wire(
            Command.SUBMIT_SM_RESP, seqs[0], Status.ESME_RTHROTTLED
        )
        events = session.receive(data[:20], 2.0) + session.receive(data[20:], 2.0)
        self.assertEqual(
            [(e.ref, e.sequence, e.status, e.message_id) for e in events],  # type: ignore[union-attr]
            [("msg2", seqs[2], 0, "id-2"), ("msg0", seqs[0], 0x58, None)],
        )
        self.assertIsInstance(events[0], smpp.SubmitResult)
        self.assertEqual(session.outstanding, 1)
        [last] = session.receive(wire(Command.SUBMIT_SM_RESP, seqs[1], message_id="id-1"), 3.0)
        self.assertEqual((last.ref, last.message_id), ("msg1", "id-1"))  # type: ignore[union-attr]
        self.assertEqual(session.outstanding, 0)

    def test_tlvs_and_data_sm(self) -> None:
        session = bound("transmitter")
        sequence = session.submit(
            MESSAGE, [(Tag.SAR_MSG_REF_NUM, 7), (0x1400, b"v")], now=0.0, ref="a"
        )
        [request] = sent(session)
        self.assertEqual(request.tlvs, ((Tag.SAR_MSG_REF_NUM, b"\x00\x07"), (0x1400, b"v")))  # type: ignore[union-attr]
        data_seq = session.data(
            {"destination_addr": "4670"}, [(Tag.MESSAGE_PAYLOAD, b"x" * 300)], now=0.0, ref="b"
        )
        self.assertEqual(sent(session)[0].command, Command.DATA_SM)  # type: ignore[union-attr]
        response = smpp.make(
            Command.DATA_SM_RESP, data_seq, message_id="d1", tlvs=[(Tag.DELIVERY_FAILURE_REASON, 0)]
        )
        [result] = session.receive(smpp.encode(response), 1.0)
        assert isinstance(result, smpp.SubmitResult)
        self.assertEqual((result.ref, result.message_id, result.pdu), ("b", "d1", response))
        self.assertEqual(session.outstanding, 1)
        self.assertNotEqual(sequence, data_seq)

    def test_bad_submit_leaves_no_trace(self) -> None:
        session = bound()
        with self.assertRaises(ValueError):
            session.submit({**MESSAGE, "short_message": b"x" * 255}, now=0.0, ref="big")
        with self.assertRaises(ValueError):
            session.submit(MESSAGE, [(0x1400, 5)], now=0.0)
        self.assertEqual((session.outstanding, session.data_to_send()), (0, b""))

    def test_generic_nack_delivers_the_ref(self) -> None:
        session = bound()
        sequence = session.submit(MESSAGE, now=0.0, ref={"id": 42})
        events = session.receive(wire(Command.GENERIC_NACK, sequence, Status.ESME_RSYSERR), 1.0)
        self.assertEqual(events, [smpp.GenericNack(sequence, Status.ESME_RSYSERR, {"id": 42})])
        self.assertEqual(session.outstanding, 0)

    def test_query(self) -> None:
        session = bound()
        sequence = session.query("0A1B", "smsd", 5, now=0.0, ref="q")
        [request] = sent(session)
        self.assertEqual(
            request,
            smpp.make(
                Command.QUERY_SM, sequence, message_id="0A1B", source_addr="smsd", source_addr_ton=5
            ),
        )
        answer = wire(Command.QUERY_SM_RESP, sequence, message_id="0A1B", message_state=2)
        self.assertEqual(
            session.receive(answer, 1.0),
            [smpp.QueryResult("q", sequence, 0, "0A1B", "", 2, 0)],
        )
        sequence = session.query("0A1B", now=0.0, ref="q2")
        self.assertEqual(
            session.receive(wire(Command.QUERY_SM_RESP, sequence, Status.ESME_RQUERYFAIL), 1.0)[0],
            smpp.QueryResult("q2", sequence, 0x67, "", "", 0, 0),
        )

    def test_request_cancel_sm(self) -> None:
        session = bound()
        sequence = session.request(Command.CANCEL_SM, {"message_id": "x"}, now=0.0, ref="c")
        response = smpp.make(Command.CANCEL_SM_RESP, sequence)
        self.assertEqual(
            session.receive(smpp.encode(response), 0.0), [smpp.Response("c", sequence, response)]
        )
        with self.assertRaises(smpp.SessionError):
            session.request(Command.SUBMIT_SM, {}, now=0.0)

    def test_stray_responses(self) -> None:
        session = bound()
        stray = wire(Command.SUBMIT_SM_RESP, 999, message_id="late")
        self.assertEqual(session.receive(stray, 0.0), [smpp.Stray(smpp.decode(stray))])
        sequence = session.submit(MESSAGE, now=0.0)
        wrong = wire(Command.QUERY_SM_RESP, sequence)
        self.assertEqual(session.receive(wrong, 0.0), [smpp.Stray(smpp.decode(wrong))])
        self.assertEqual(session.outstanding, 1)  # still waiting for its own answer


class SequenceTests(SynchronousTestCase):
    def test_wrap_around_skips_outstanding_numbers(self) -> None:
        session = bound(first_sequence=0x7FFFFFFD)
        seqs = [session.submit(MESSAGE, now=0.0, ref=i) for i in range(4)]
        self.assertEqual(seqs, [0x7FFFFFFE, 0x7FFFFFFF, 1, 2])
        session.receive(
            wire(Command.SUBMIT_SM_RESP, 0x7FFFFFFE) + wire(Command.SUBMIT_SM_RESP, 0x7FFFFFFF), 0
        )
        session.last_sequence = 0x7FFFFFFF  # as after another lap: 1 and 2 are still out
        self.assertEqual(session.submit(MESSAGE, now=0.0), 3)
        self.assertEqual(session.outstanding, 3)
        self.assertEqual([p.sequence for p in sent(session)], [*seqs, 3])  # type: ignore[union-attr]

    def test_first_sequence_range(self) -> None:
        with self.assertRaises(ValueError):
            smpp.EsmeSession(first_sequence=0)
        with self.assertRaises(ValueError):
            smpp.EsmeSession(first_sequence=0x80000000)
        self.assertEqual(smpp.EsmeSession().bind("receiver", "a", "b", now=0.0), 1)


class TimerTests(SynchronousTestCase):
    def test_expired_returns_and_forgets(self) -> None:
        session = bound()
        first = session.submit(MESSAGE, now=0.0, ref="a")
        second = session.submit(MESSAGE, now=10.0, ref="b")
        self.assertEqual(session.expired(29.9, 30.0), [])
        self.assertEqual(session.expired(30.0, 30.0), [(first, Command.SUBMIT_SM, "a")])
        self.assertEqual(session.outstanding, 1)
        late = wire(Command.SUBMIT_SM_RESP, first, message_id="x")
        self.assertEqual(session.receive(late, 31.0), [smpp.Stray(smpp.decode(late))])
        link = session.enquire_link(31.0)
        self.assertEqual(
            session.expired(float("inf"), 0.0),
            [(second, Command.SUBMIT_SM, "b"), (link, Command.ENQUIRE_LINK, None)],
        )
        self.assertEqual(session.outstanding, 0)

    def test_enquire_link_when_idle(self) -> None:
        session = smpp.EsmeSession()
        self.assertFalse(session.needs_enquire_link(100.0, 30.0))  # nothing happened yet
        session = bound()  # idle since 0
        self.assertFalse(session.needs_enquire_link(29.0, 30.0))
        self.assertTrue(session.needs_enquire_link(30.0, 30.0))
        sequence = session.enquire_link(30.0)
        self.assertEqual(sent(session), [smpp.make(Command.ENQUIRE_LINK, sequence)])
        self.assertFalse(session.needs_enquire_link(90.0, 30.0))  # one is already waiting
        self.assertEqual(session.receive(wire(Command.ENQUIRE_LINK_RESP, sequence), 31.0), [])
        self.assertEqual((session.outstanding, session.idle_since), (0, 31.0))
        self.assertFalse(session.needs_enquire_link(60.0, 30.0))
        self.assertTrue(session.needs_enquire_link(61.0, 30.0))
        session.submit(MESSAGE, now=50.0)
        self.assertFalse(session.needs_enquire_link(61.0, 30.0))  # sending counts as activity


class PeerRequestTests(SynchronousTestCase):
    def test_enquire_link_answered(self) -> None:
        session = bound()
        self.assertEqual(session.receive(wire(Command.ENQUIRE_LINK, 77), 5.0), [])
        self.assertEqual(sent(session), [smpp.make(Command.ENQUIRE_LINK_RESP, 77)])
        self.assertEqual(session.idle_since, 5.0)

    def test_unbind_answered_and_closed(self) -> None:
        session = bound()
        outstanding = session.submit(MESSAGE, now=0.0, ref="m")
        deliver = wire(Command.DELIVER_SM, 5, short_message=b"hi")
        session.receive(deliver, 0.0)
        session.data_to_send()
        self.assertEqual(session.receive(wire(Command.UNBIND, 78), 1.0), [smpp.Unbound()])
        self.assertEqual(sent(session), [smpp.make(Command.UNBIND_RESP, 78)])
        self.assertIs(session.state, State.CLOSED)
        self.assertFalse(session.respond(5, Command.DELIVER_SM_RESP))  # too late: not sent
        self.assertEqual(session.data_to_send(), b"")
        with self.assertRaises(smpp.SessionError):
            session.submit(MESSAGE, now=1.0)
        self.assertEqual(session.expired(float("inf"), 0), [(outstanding, Command.SUBMIT_SM, "m")])

    def test_our_unbind(self) -> None:
        session = bound()
        sequence = session.unbind(10.0)
        self.assertEqual(sent(session), [smpp.make(Command.UNBIND, sequence)])
        self.assertIs(session.state, State.UNBINDING)
        with self.assertRaises(smpp.SessionError):
            session.submit(MESSAGE, now=10.0)
        with self.assertRaises(smpp.SessionError):
            session.unbind(10.0)
        [late_mo] = session.receive(wire(Command.DELIVER_SM, 6), 10.5)  # still delivered
        self.assertIsInstance(late_mo, smpp.DeliverSm)
        self.assertTrue(session.respond(6, Command.DELIVER_SM_RESP))
        events = session.receive(wire(Command.UNBIND_RESP, sequence), 11.0)
        self.assertEqual(events, [smpp.UnbindComplete()])
        self.assertIs(session.state, State.CLOSED)
        with self.assertRaises(smpp.SessionError):
            session.enquire_link(12.0)

    def test_deliver_sm_waits_for_the_caller(self) -> None:
        session = bound()
        deliver = smpp.make(
            Command.DELIVER_SM, 301, source_addr="46701234567", short_message=b"hello"
        )
        events = session.receive(smpp.encode(deliver), 1.0)
        self.assertEqual(events, [smpp.DeliverSm(301, deliver)])
        self.assertEqual(session.data_to_send(), b"")  # not answered by the session
        self.assertTrue(session.respond(301, Command.DELIVER_SM_RESP, now=2.0))
        self.assertEqual(sent(session), [smpp.make(Command.DELIVER_SM_RESP, 301)])
        self.assertEqual(session.idle_since, 2.0)
        with self.assertRaises(smpp.SessionError):
            session.respond(301, Command.DELIVER_SM_RESP)  # twice
        with self.assertRaises(smpp.SessionError):
            session.respond(302, Command.DELIVER_SM_RESP)  # never received

    def test_respond_with_error_and_to_data_sm(self) -> None:
        session = bound("receiver")
        session.receive(wire(Command.DELIVER_SM, 8) + wire(Command.DATA_SM, 9), 0.0)
        session.respond(8, Command.DELIVER_SM, Status.ESME_RX_T_APPN)  # the request's id works
        with self.assertRaises(smpp.SessionError):
            session.respond(9, Command.DELIVER_SM_RESP)  # 9 is a data_sm
        session.respond(9, Command.DATA_SM_RESP, message_id="mo-9")
        self.assertEqual(
            sent(session),
            [
                smpp.make(Command.DELIVER_SM_RESP, 8, Status.ESME_RX_T_APPN),
                smpp.make(Command.DATA_SM_RESP, 9, message_id="mo-9"),
            ],
        )

    def test_deliver_sm_to_a_transmitter(self) -> None:
        session = bound("transmitter")
        [event] = session.receive(wire(Command.DELIVER_SM, 5), 0.0)
        self.assertIsInstance(event, smpp.PeerError)
        self.assertEqual(
            sent(session), [smpp.make(Command.DELIVER_SM_RESP, 5, Status.ESME_RINVBNDSTS)]
        )
        with self.assertRaises(smpp.SessionError):
            session.respond(5, Command.DELIVER_SM_RESP)

    def test_requests_only_an_smsc_serves(self) -> None:
        session = bound()
        [event] = session.receive(wire(Command.SUBMIT_SM, 12), 0.0)
        self.assertIsInstance(event, smpp.PeerError)
        self.assertEqual(sent(session), [smpp.Pdu(Command.SUBMIT_SM_RESP, 4, 12, {}, ())])

    def test_outbind_and_alert_notification(self) -> None:
        session = smpp.EsmeSession()
        events = session.receive(wire(Command.OUTBIND, 1, system_id="SMSC", password="pw"), 0.0)
        self.assertEqual(events, [smpp.Outbind("SMSC", "pw")])
        alert = smpp.make(
            Command.ALERT_NOTIFICATION,
            2,
            source_addr="4670",
            tlvs=[(Tag.MS_AVAILABILITY_STATUS, 0)],
        )
        self.assertEqual(session.receive(smpp.encode(alert), 0.0), [smpp.AlertNotification(alert)])
        self.assertEqual(session.data_to_send(), b"")  # neither has a response in SMPP


class GarbageTests(SynchronousTestCase):
    def test_garbled_request_is_nacked_and_the_session_goes_on(self) -> None:
        session = bound()
        sequence = session.submit(MESSAGE, now=0.0, ref="m")
        session.data_to_send()
        bad_deliver = bytearray(wire(Command.DELIVER_SM, 55, source_addr="1" * 20))
        bad_deliver[16 + 1 + 2 + 20] = ord("1")  # overwrite source_addr's NUL: 21 digits now
        unknown = bytes.fromhex("00000010 00000099 00000000 00000038")
        data = bytes(bad_deliver) + unknown + wire(Command.SUBMIT_SM_RESP, sequence, message_id="x")
        events = session.receive(data, 1.0)
        self.assertEqual(
            [type(e) for e in events], [smpp.PeerError, smpp.PeerError, smpp.SubmitResult]
        )
        self.assertIn("source_addr longer than 20 octets", events[0].reason)  # type: ignore[union-attr]
        self.assertEqual(
            sent(session),
            [
                smpp.make(Command.GENERIC_NACK, 55, Status.ESME_RINVSRCADR),
                smpp.make(Command.GENERIC_NACK, 56, Status.ESME_RINVCMDID),
            ],
        )
        self.assertIs(session.state, State.BOUND_TRX)

    def test_garbled_response_settles_its_request_without_a_nack(self) -> None:
        session = bound()
        sequence = session.submit(MESSAGE, now=0.0, ref="m")
        session.data_to_send()
        broken = wire(Command.SUBMIT_SM_RESP, sequence, message_id="abc") + b"\x02\x04\x00"
        broken = (len(broken)).to_bytes(4, "big") + broken[4:]
        events = session.receive(broken, 1.0)
        self.assertIsInstance(events[0], smpp.PeerError)
        self.assertEqual(events[1], smpp.SubmitResult("m", sequence, 0, None, None))
        self.assertEqual(session.data_to_send(), b"")
        self.assertEqual(session.outstanding, 0)

    def test_every_garbled_response_kind(self) -> None:
        def junk(data: bytes) -> bytes:  # 3 octets that cannot be a TLV
            return (len(data) + 3).to_bytes(4, "big") + data[4:] + b"\x01\x02\x03"

        session = smpp.EsmeSession()
        sequence = session.bind("transceiver", "esme", "secret", now=0.0)
        events = session.receive(junk(wire(Command.BIND_TRANSCEIVER_RESP, sequence)), 0.0)
        self.assertEqual(events[1:], [smpp.Bound("transceiver", "")])
        refused = smpp.EsmeSession()
        sequence = refused.bind("receiver", "esme", "secret", now=0.0)
        events = refused.receive(
            junk(wire(Command.BIND_RECEIVER_RESP, sequence, 0x0D, system_id="S")), 0.0
        )
        self.assertEqual(events[1:], [smpp.BindRefused(0x0D)])
        submitted = session.submit(MESSAGE, now=0.0, ref="s")
        events = session.receive(junk(wire(Command.GENERIC_NACK, submitted, 0x08)), 0.0)
        self.assertEqual(events[1:], [smpp.GenericNack(submitted, 0x08, "s")])
        queried = session.query("x", now=0.0, ref="q")
        events = session.receive(junk(wire(Command.QUERY_SM_RESP, queried, 0x67)), 0.0)
        self.assertEqual(events[1:], [smpp.QueryResult("q", queried, 0x67, None, None, None, None)])
        linked = session.enquire_link(0.0)
        events = session.receive(junk(wire(Command.SUBMIT_SM_RESP, linked)), 0.0)  # wrong kind
        self.assertEqual(len(events), 1)
        self.assertEqual(session.outstanding, 1)
        events = session.receive(junk(wire(Command.SUBMIT_SM_RESP, 4321)), 0.0)  # nobody's
        self.assertEqual(len(events), 1)
        unbinding = session.unbind(0.0)
        events = session.receive(junk(wire(Command.UNBIND_RESP, unbinding)), 0.0)
        self.assertEqual(events[1:], [smpp.UnbindComplete()])
        self.assertIs(session.state, State.CLOSED)
        self.assertEqual(session.data_to_send().count(b"\x80\x00\x00\x00"), 0)  # no nacks

    def test_long_message_id_is_still_read(self) -> None:
        session = bound()
        sequence = session.submit(MESSAGE, now=0.0, ref="m")
        body = b"m" * 80 + b"\0"
        response = (
            (16 + len(body)).to_bytes(4, "big")
            + bytes.fromhex(f"80000004 00000000 {sequence:08x}")
            + body
        )
        [result] = session.receive(response, 1.0)
        self.assertEqual(result.message_id, "m" * 80)  # type: ignore[union-attr]

    def test_oversize_is_a_protocol_failure(self) -> None:
        session = bound(max_length=1000)
        sequence = session.submit(MESSAGE, now=0.0, ref="m")
        data = wire(Command.SUBMIT_SM_RESP, sequence, message_id="ok") + b"\x00\x00\x10\x00junk"
        events = session.receive(data, 1.0)
        self.assertEqual(events[0].ref, "m")  # type: ignore[union-attr]  # what came first counts
        self.assertIsInstance(events[1], smpp.ProtocolFailure)
        self.assertIn("command_length 4096 outside 16..1000", events[1].reason)  # type: ignore[union-attr]
        self.assertIs(session.state, State.CLOSED)
        self.assertEqual(session.receive(wire(Command.ENQUIRE_LINK, 3), 2.0), [])
        session = bound()
        events = session.receive(b"\x00\x00\x00\x05", 0.0)
        self.assertEqual(len(events), 1)
        self.assertIsInstance(events[0], smpp.ProtocolFailure)

    def test_noise_never_raises(self) -> None:
        import random

        rng = random.Random(7)
        for _ in range(200):
            session = bound()
            session.submit(MESSAGE, now=0.0)
            noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
            header = rng.choice([b"", b"\x00\x00\x00\x20", b"\x00\x00\x00\x10\x80\x00\x00\x04"])
            for e in session.receive(header + noise, 1.0):
                self.assertIsInstance(e, smpp.Event.__args__)  # type: ignore[attr-defined]
            session.data_to_send()


class Pdu3PeerTests(SynchronousTestCase):
    """The SMSC's bytes made by smpp.pdu3's encoder, fed one byte at a time."""

    def test_conversation(self) -> None:
        encoder = PDUEncoder()
        t = their_types
        session = smpp.EsmeSession()
        session.bind("transceiver", "esme", "secret", now=0.0)
        [bind] = sent(session)
        self.assertEqual(
            encoder.decode(BytesIO(smpp.encode(bind))).params["system_id"],  # type: ignore[arg-type]
            b"esme",
        )
        submit_seq = 2
        stream = b"".join(
            encoder.encode(pdu)
            for pdu in (
                their_ops.BindTransceiverResp(seqNum=1, system_id="SMSC"),
                their_ops.EnquireLink(seqNum=500),
                their_ops.DeliverSM(
                    seqNum=501,
                    service_type=None,
                    source_addr_ton=t.AddrTon.INTERNATIONAL,
                    source_addr_npi=t.AddrNpi.ISDN,
                    source_addr="46701234567",
                    dest_addr_ton=t.AddrTon.UNKNOWN,
                    dest_addr_npi=t.AddrNpi.UNKNOWN,
                    destination_addr="1234",
                    esm_class=t.EsmClass(
                        t.EsmClassMode.DEFAULT, t.EsmClassType.SMSC_DELIVERY_RECEIPT
                    ),
                    protocol_id=0,
                    priority_flag=t.PriorityFlag.LEVEL_0,
                    schedule_delivery_time=None,
                    validity_period=None,
                    registered_delivery=t.RegisteredDelivery(
                        t.RegisteredDeliveryReceipt.NO_SMSC_DELIVERY_RECEIPT_REQUESTED
                    ),
                    replace_if_present_flag=t.ReplaceIfPresentFlag.DO_NOT_REPLACE,
                    data_coding=t.DataCoding(),
                    sm_default_msg_id=0,
                    short_message=b"id:7 stat:DELIVRD err:000",
                    receipted_message_id="7",
                    message_state=t.MessageState.DELIVERED,
                ),
                their_ops.Unbind(seqNum=502),
            )
        )
        events: list[Any] = []
        for i in range(len(stream)):
            events += session.receive(stream[i : i + 1], 1.0)
            if events and isinstance(events[-1], smpp.Bound) and session.outstanding == 0:
                submit_seq = session.submit(MESSAGE, now=1.0, ref="m")
        self.assertEqual(events[0], smpp.Bound("transceiver", "SMSC"))
        self.assertIsInstance(events[1], smpp.DeliverSm)
        receipt = smpp.receipt_from_pdu(events[1].pdu)
        assert receipt is not None
        self.assertEqual((receipt.id, receipt.stat), ("7", "DELIVRD"))
        self.assertEqual(events[2:], [smpp.Unbound()])
        answers = [encoder.decode(BytesIO(p)) for p in _frames(session.data_to_send())]
        self.assertEqual(
            [(a.id.name, a.seqNum) for a in answers],
            [("submit_sm", submit_seq), ("enquire_link_resp", 500), ("unbind_resp", 502)],
        )
        self.assertEqual(answers[0].params["destination_addr"], b"46701234567")


def _frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        length = int.from_bytes(data[:4], "big")
        out.append(data[:length])
        data = data[length:]
    return out
