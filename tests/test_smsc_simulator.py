"""The SMSC simulator (``tests/peers/smsc.py``) against clients we did not write.

Perl's Net::SMPP (Debian ``libnet-smpp-perl``) plays the ESME: small scripts bind,
submit, read receipts and MOs, answer enquire_link and unbind, and print what
they saw as ``key=value`` lines. ``smpp.pdu`` (PyPI ``smpp.pdu3``) decodes the
bytes the simulator sends and encodes requests it must understand. A missing
peer fails the tests: run ``tests/install-peers``.
"""

from __future__ import annotations

import io
import os
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from smpp.pdu import operations, pdu_types
from smpp.pdu.pdu_encoding import PDUEncoder
from twisted.internet import defer, task, threads
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from tests.peers import smsc as sim
from tests.peers.smsc import SmscFactory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE = r"""
use strict; use warnings; use Net::SMPP; use IO::Select;
$| = 1;
my $port = shift @ARGV;
sub out { print @_, "\n" }
sub hx { return unpack("H*", defined $_[0] ? $_[0] : "") }
# Net::SMPP's reads block for ever (and reset alarm()): wait with select first.
sub next_pdu {
    my ($smpp, $secs) = @_;
    return undef unless IO::Select->new($smpp)->can_read(defined $secs ? $secs : 10);
    return $smpp->read_pdu();
}
sub trx { Net::SMPP->new_transceiver("127.0.0.1", port => $port, @_) }
sub tx { Net::SMPP->new_transmitter("127.0.0.1", port => $port, @_) }
sub rx { Net::SMPP->new_receiver("127.0.0.1", port => $port, @_) }
sub tlvs {  # the TLVs of a PDU: Net::SMPP stores each under its numeric tag too
    my ($p) = @_;
    return join(",", map { sprintf("%04x:%s", $_, hx($p->{$_})) }
                     sort { $a <=> $b } grep { /^\d+$/ } keys %$p);
}
"""

_perl: str | None = None


def need_net_smpp() -> str:
    """perl with Net::SMPP; missing is a failure (CI must install it), not a skip."""
    global _perl
    if _perl is None:
        perl = shutil.which("perl")
        if perl is None:
            raise AssertionError("perl is not installed: run tests/install-peers")
        probe = subprocess.run([perl, "-MNet::SMPP", "-e1"], capture_output=True, check=False)
        if probe.returncode != 0:
            raise AssertionError(
                "Perl Net::SMPP (Debian libnet-smpp-perl) is not installed: run tests/install-peers"
            )
        _perl = perl
    return _perl


@dataclass
class PerlRun:
    returncode: int
    stdout: str
    stderr: str

    def values(self, key: str) -> list[str]:
        prefix = key + "="
        return [line[len(prefix) :] for line in self.stdout.splitlines() if line.startswith(prefix)]

    def value(self, key: str) -> str:
        found = self.values(key)
        if len(found) != 1:
            raise AssertionError(f"{key}: {found!r} in\n{self.stdout}\n{self.stderr}")
        return found[0]


def run_perl(script: str, *args: object, timeout: float = 20.0) -> Deferred[PerlRun]:
    """Run a Net::SMPP script in a thread (bounded by ``timeout``)."""
    perl = need_net_smpp()

    def run() -> PerlRun:
        p = subprocess.run(
            [perl, "-e", PRELUDE + script, "--", *map(str, args)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
        return PerlRun(p.returncode, p.stdout, p.stderr)

    return threads.deferToThread(run)


class SimulatorTestCase(unittest.TestCase):
    timeout = 30

    def setUp(self) -> None:
        need_net_smpp()

    def start(self, **options: Any) -> SmscFactory:
        self.smsc = SmscFactory(**options)
        self.port = self.smsc.listen()
        self.addCleanup(self.smsc.stop)
        return self.smsc

    @inlineCallbacks
    def perl(self, script: str, *args: object) -> Generator[Deferred[Any], Any, PerlRun]:
        """Run a script against the simulator; it must exit 0."""
        run = yield run_perl(script, self.port, *args)
        if run.returncode != 0:
            raise AssertionError(f"perl exited {run.returncode}:\n{run.stdout}\n{run.stderr}")
        return run


SUBMIT_AND_READ_RECEIPT = r"""
my ($s, $b) = trx(system_id => "esme1", password => "secret");
die "no connection" unless $s;
out "bind_status=", $b->status;
out "bind_system_id=", $b->{system_id};
out "sc_interface_version=", hx($b->{sc_interface_version});
my $r = $s->submit_sm(
    service_type => "CMT", source_addr_ton => 5, source_addr_npi => 0, source_addr => "Shop",
    dest_addr_ton => 1, dest_addr_npi => 1, destination_addr => "15551230002",
    registered_delivery => 1, data_coding => 0,
    short_message => "Hello from Net::SMPP, a bit longer") or die "submit";
out "submit_status=", $r->status;
out "message_id=", $r->message_id;
my $p = next_pdu($s) or die "no receipt";
out sprintf("cmd=0x%08X", $p->{cmd});
out "esm_class=$p->{esm_class}";
out "receipt_source=$p->{source_addr_ton}/$p->{source_addr_npi}/$p->{source_addr}";
out "receipt_dest=$p->{dest_addr_ton}/$p->{dest_addr_npi}/$p->{destination_addr}";
out "receipt=$p->{short_message}";
out "tlvs=", tlvs($p);
$s->deliver_sm_resp(seq => $p->{seq}, message_id => "");
my $u = $s->unbind() or die "unbind";
out "unbind_status=", $u->status;
"""

RECEIPT_RE = re.compile(
    r"id:(?P<id>\S+) sub:001 dlvrd:(?P<dlvrd>\d{3}) submit date:\d{10} done date:\d{10} "
    r"stat:(?P<stat>[A-Z]{7}) err:(?P<err>\S{3}) text:(?P<text>.*)$"
)


class BindSubmitReceiptTests(SimulatorTestCase):
    """Binds, submit_sm decoding, message ids and receipts, driven by Net::SMPP."""

    @inlineCallbacks
    def test_transceiver_submit_receipt_unbind(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(accounts={"esme1": "secret"})
        run = yield self.perl(SUBMIT_AND_READ_RECEIPT)
        self.assertEqual(run.value("bind_status"), "0")
        self.assertEqual(run.value("bind_system_id"), "SMSCSIM")
        self.assertEqual(run.value("sc_interface_version"), "34")
        self.assertEqual(run.value("submit_status"), "0")
        message_id = run.value("message_id")
        self.assertRegex(message_id, r"^[0-9A-F]{8}$")

        [session] = smsc.sessions
        self.assertEqual(
            (session.mode, session.system_id, session.password, session.interface_version),
            ("transceiver", "esme1", "secret", 0x34),
        )
        [sub] = smsc.submits
        self.assertEqual(sub.message_id, message_id)
        self.assertEqual(
            (sub.command, sub.system_id, sub.service_type), ("submit_sm", "esme1", "CMT")
        )
        self.assertEqual(
            (sub.source_addr_ton, sub.source_addr_npi, sub.source_addr), (5, 0, "Shop")
        )
        self.assertEqual(
            (sub.dest_addr_ton, sub.dest_addr_npi, sub.destination_addr), (1, 1, "15551230002")
        )
        self.assertEqual((sub.esm_class, sub.registered_delivery, sub.data_coding), (0, 1, 0))
        self.assertEqual(sub.short_message, b"Hello from Net::SMPP, a bit longer")
        self.assertEqual((sub.udh, sub.sar, sub.tlvs), (None, None, {}))
        self.assertTrue(sub.answered)

        self.assertEqual(run.value("cmd"), "0x00000005")
        self.assertEqual(run.value("esm_class"), "4")
        self.assertEqual(run.value("receipt_source"), "1/1/15551230002")
        self.assertEqual(run.value("receipt_dest"), "5/0/Shop")
        m = RECEIPT_RE.match(run.value("receipt"))
        self.assertIsNotNone(m, run.value("receipt"))
        assert m is not None
        self.assertEqual(m["id"], message_id)
        self.assertEqual((m["dlvrd"], m["stat"], m["err"]), ("001", "DELIVRD", "000"))
        self.assertEqual(m["text"], "Hello from Net::SMPP")  # the first 20 characters
        rid = (message_id.encode() + b"\0").hex()
        self.assertEqual(run.value("tlvs"), f"001e:{rid},0427:02")

        [receipt] = yield smsc.wait_for(lambda: [d for d in smsc.deliveries if d.status == 0])
        self.assertEqual(
            (receipt.kind, receipt.attempts, receipt.via), ("receipt", 1, ["transceiver"])
        )
        self.assertEqual(run.value("unbind_status"), "0")
        self.assertEqual(smsc.counts["unbind"], 1)
        self.assertEqual(
            [p.name for p in smsc.responses_sent],
            ["bind_transceiver_resp", "submit_sm_resp", "unbind_resp"],
        )

    @inlineCallbacks
    def test_separate_binds_when_transceiver_is_refused(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(accounts={"esme1": "secret"}, transceiver="reject")
        run = yield self.perl(
            r"""
            my ($trx, $tr) = trx(system_id => "esme1", password => "secret");
            out "transceiver_status=", $tr->status;
            my @login = ("127.0.0.1", port => $port, system_id => "esme1", password => "secret");
            my ($tx, $txr) = Net::SMPP->new_transmitter(@login);
            my ($rx, $rxr) = Net::SMPP->new_receiver(@login);
            out "transmitter_status=", $txr->status;
            out "receiver_status=", $rxr->status;
            my $r = $tx->submit_sm(destination_addr => "15551230002", registered_delivery => 1,
                                   short_message => "split binds");
            out "message_id=", $r->message_id;
            my $p = next_pdu($rx) or die "no receipt on the receiver";
            out "receipt=$p->{short_message}";
            $rx->deliver_sm_resp(seq => $p->{seq}, message_id => "");
            out "tx_unbind=", $tx->unbind()->status;
            out "rx_unbind=", $rx->unbind()->status;
            """
        )
        self.assertEqual(run.value("transceiver_status"), str(sim.ESME_RINVCMDID))
        self.assertEqual(
            (run.value("transmitter_status"), run.value("receiver_status")), ("0", "0")
        )
        self.assertEqual(
            [(s.mode, s.system_id, s.status) for s in smsc.sessions],
            [("transceiver", "esme1", 3), ("transmitter", "esme1", 0), ("receiver", "esme1", 0)],
        )
        self.assertIn(f"id:{run.value('message_id')} ", run.value("receipt"))
        [receipt] = smsc.receipts_sent
        self.assertEqual(receipt.via, ["receiver"])
        self.assertEqual((run.value("tx_unbind"), run.value("rx_unbind")), ("0", "0"))

    @inlineCallbacks
    def test_transceiver_bind_left_unanswered(self) -> Generator[Deferred[Any], Any, None]:
        """Like Kannel's drive_smpp: a transceiver bind just hangs."""
        smsc = self.start(transceiver="ignore")
        run = yield self.perl(
            r"""
            my $s = Net::SMPP->new_connect("127.0.0.1", port => $port, system_id => "esme1") or die;
            $s->bind_transceiver(async => 1);
            out "answered=", (IO::Select->new($s)->can_read(1) ? 1 : 0);
            """
        )
        self.assertEqual(run.value("answered"), "0")
        [session] = smsc.sessions
        self.assertEqual(
            (session.mode, session.status, session.bound), ("transceiver", None, False)
        )
        self.assertEqual(smsc.responses_sent, [])

    @inlineCallbacks
    def test_bad_credentials_keep_the_connection(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(accounts={"esme1": "secret"})
        smsc.fail_next_binds()
        run = yield self.perl(
            r"""
            my $s = Net::SMPP->new_connect("127.0.0.1", port => $port) or die;
            for my $login (["esme1", "secret"], ["esme1", "wrong"], ["nobody", "secret"],
                           ["esme1", "secret"]) {
                my $r = $s->bind_transceiver(system_id => $login->[0], password => $login->[1])
                    or die "no answer";
                out "status=", $r->status;
            }
            """
        )
        # RBINDFAIL (fail_next_binds), RINVPASWD, RINVSYSID, OK
        self.assertEqual(run.values("status"), ["13", "14", "15", "0"])
        self.assertEqual([s.status for s in smsc.sessions], [0x0D, 0x0E, 0x0F, 0])
        self.assertEqual(len({s.peer for s in smsc.sessions}), 1)  # one connection

    @inlineCallbacks
    def test_bad_credentials_close_the_connection(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(accounts={"esme1": "secret"}, on_bind_failure="close")
        run = yield self.perl(
            r"""
            my $s = Net::SMPP->new_connect("127.0.0.1", port => $port) or die;
            my $r = $s->bind_transmitter(system_id => "esme1", password => "wrong") or die;
            out "status=", $r->status;
            my $p = next_pdu($s, 5);
            out "after=", (defined $p ? $p->explain_cmd : "eof");
            """
        )
        self.assertEqual(run.value("status"), "14")
        self.assertEqual(run.value("after"), "eof")
        yield smsc.wait_for(lambda: not smsc.connections, what="connection closed")

    @inlineCallbacks
    def test_submit_from_unbound_or_receiver_is_refused(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start()
        run = yield self.perl(
            r"""
            my $s = Net::SMPP->new_connect("127.0.0.1", port => $port) or die;
            my @sm = (destination_addr => "1555", short_message => "x");
            out "unbound=", $s->submit_sm(@sm)->status;
            my ($rx, $b) = rx(system_id => "r");
            out "receiver=", $rx->submit_sm(@sm)->status;
            """
        )
        self.assertEqual((run.value("unbound"), run.value("receiver")), ("4", "4"))  # RINVBNDSTS
        self.assertEqual([s.status for s in smsc.submits], [4, 4])
        self.assertEqual(smsc.accepted, [])

    @inlineCallbacks
    def test_message_id_formats(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start()
        script = r"""
            my ($s, $b) = trx(system_id => "esme1");
            my $r = $s->submit_sm(destination_addr => "15551230002", short_message => "id?");
            out "status=", $r->status;
            out "message_id=", $r->message_id;
            out "body=", hx($r->{data});
            """
        expected = {
            "hex": r"^[0-9A-F]{8}$",
            "dec": r"^[0-9]{8,}$",
            "uuid": r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
            "empty": r"^$",
            "none": r"^$",
        }
        for id_format, pattern in expected.items():
            smsc.id_format = id_format
            run = yield self.perl(script)
            self.assertEqual(run.value("status"), "0")
            message_id = run.value("message_id")
            self.assertRegex(message_id, pattern, id_format)
            self.assertEqual(smsc.submits[-1].message_id, message_id)
            body = {"none": "", "empty": "00"}.get(id_format, (message_id.encode() + b"\0").hex())
            self.assertEqual(run.value("body"), body, id_format)
        ids = [s.message_id for s in smsc.submits]
        self.assertEqual(ids[:2], ["0ABC0001", "180092930"])  # one counter for all formats

    @inlineCallbacks
    def test_every_field_and_tlv_is_decoded(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(receipts=False)
        run = yield self.perl(
            r"""
            my ($s, $b) = trx(system_id => "esme1");
            my $udh = pack("C*", 5, 0, 3, 0x2A, 2, 1);
            my $r = $s->submit_sm(
                service_type => "WAP", source_addr_ton => 1, source_addr_npi => 1,
                source_addr => "15551230001", dest_addr_ton => 2, dest_addr_npi => 8,
                destination_addr => "0701234567", esm_class => 0x43, protocol_id => 0x7F,
                priority_flag => 1, validity_period => "000001000000000R",
                registered_delivery => 0x11, replace_if_present_flag => 1, data_coding => 8,
                short_message => $udh . "\x00H\x00i", user_message_reference => pack("n", 513));
            out "udh_status=", $r->status;
            $r = $s->submit_sm(destination_addr => "15551230002", short_message => "part one",
                sar_msg_ref_num => pack("n", 0x1234), sar_total_segments => pack("C", 2),
                sar_segment_seqnum => pack("C", 1));
            out "sar_status=", $r->status;
            my $long = join("", map { "\x00" . chr(0x41 + $_ % 26) } 0..299);
            $r = $s->data_sm(source_addr_ton => 5, source_addr => "Shop",
                destination_addr => "15551230002", registered_delivery => 0, data_coding => 8,
                message_payload => $long);
            out "data_sm_status=", $r->status;
            out "data_sm_id=", $r->message_id;
            """
        )
        self.assertEqual(
            (run.value("udh_status"), run.value("sar_status"), run.value("data_sm_status")),
            ("0", "0", "0"),
        )
        udh, sar, data = smsc.submits
        self.assertEqual(udh.service_type, "WAP")
        self.assertEqual(
            (udh.source_addr_ton, udh.source_addr_npi, udh.source_addr), (1, 1, "15551230001")
        )
        self.assertEqual(
            (udh.dest_addr_ton, udh.dest_addr_npi, udh.destination_addr), (2, 8, "0701234567")
        )
        self.assertEqual((udh.esm_class, udh.protocol_id, udh.priority_flag), (0x43, 0x7F, 1))
        self.assertEqual(
            (udh.schedule_delivery_time, udh.validity_period), ("", "000001000000000R")
        )
        self.assertEqual((udh.registered_delivery, udh.replace_if_present_flag), (0x11, 1))
        self.assertEqual((udh.data_coding, udh.sm_default_msg_id), (8, 0))
        self.assertEqual(udh.udh, bytes([5, 0, 3, 0x2A, 2, 1]))
        self.assertEqual(udh.concat, (0x2A, 2, 1))
        self.assertEqual(udh.text.decode("utf-16-be"), "Hi")
        self.assertEqual(udh.tlvs, {sim.TAG_USER_MESSAGE_REFERENCE: b"\x02\x01"})

        self.assertEqual((sar.sar, sar.udh, sar.short_message), ((0x1234, 2, 1), None, b"part one"))

        self.assertEqual(data.command, "data_sm")
        self.assertEqual(data.message_id, run.value("data_sm_id"))
        self.assertEqual((data.source_addr_ton, data.source_addr, data.data_coding), (5, "Shop", 8))
        self.assertEqual(data.short_message, b"")
        assert data.message_payload is not None
        self.assertEqual(len(data.message_payload), 600)
        self.assertEqual(data.text.decode("utf-16-be")[:3], "ABC")
        self.assertEqual([p.name for p in smsc.responses_sent][-1], "data_sm_resp")

    @inlineCallbacks
    def test_malformed_submits_get_error_statuses(self) -> Generator[Deferred[Any], Any, None]:
        """Net::SMPP checks nothing: a 300-octet short_message wraps sm_length to 44."""
        smsc = self.start()
        run = yield self.perl(
            r"""
            no warnings;  # pack "C" wraps 300 to 44, with a warning
            my ($s, $b) = trx(system_id => "esme1");
            for my $args ([validity_period => "123"], [source_addr => "1" x 25],
                          [short_message => "x" x 300], [esm_class => 0x40]) {
                my $r = $s->submit_sm(destination_addr => "15551230002", @$args) or die;
                out "status=", $r->status;
            }
            """
        )
        self.assertEqual(
            run.values("status"),
            [
                str(sim.ESME_RINVEXPIRY),
                str(sim.ESME_RINVSRCADR),
                str(sim.ESME_RINVOPTPARSTREAM),
                str(sim.ESME_RINVESMCLASS),
            ],
        )
        reasons = [reason for _, reason in smsc.decode_errors]
        self.assertIn("validity_period", reasons[0])
        self.assertIn("source_addr", reasons[1])
        self.assertIn("overruns", reasons[2])
        self.assertIn("UDHI", reasons[3])
        self.assertEqual(smsc.submits, [])  # nothing undecodable is recorded as a message


class ReceiptTests(SimulatorTestCase):
    """Receipt variants, switched at run time on one simulator."""

    SCRIPT = r"""
        my ($to, $rd, $text, $count) = @ARGV;
        my ($s, $b) = trx(system_id => "esme1");
        my $r = $s->submit_sm(source_addr => "Shop", destination_addr => $to,
                              registered_delivery => $rd, short_message => $text) or die;
        out "message_id=", $r->message_id;
        for (1 .. $count) {
            my $p = next_pdu($s) or die "receipt missing";
            out "receipt=$p->{short_message}";
            out "tlvs=", tlvs($p);
            $s->deliver_sm_resp(seq => $p->{seq}, message_id => "");
        }
        $s->unbind();
        """

    @inlineCallbacks
    def test_receipt_quirks(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(receipt_id_form="dec", final_state=lambda sub: ("UNDELIV", "001"))
        # Nexmo: hex in submit_sm_resp, decimal in the receipt
        run = yield self.perl(self.SCRIPT, "15551230002", 1, "nexmo", 1)
        message_id = run.value("message_id")
        m = RECEIPT_RE.match(run.value("receipt"))
        assert m is not None, run.value("receipt")
        self.assertEqual(m["id"], str(int(message_id, 16)))
        self.assertEqual(
            (m["dlvrd"], m["stat"], m["err"], m["text"]), ("000", "UNDELIV", "001", "nexmo")
        )
        rid = (m["id"].encode() + b"\0").hex()
        self.assertEqual(run.value("tlvs"), f"001e:{rid},0423:030001,0427:05")

        # leading zeros dropped, no TLVs
        smsc.receipt_id_form, smsc.receipt_tlvs = "strip_zeros", False
        smsc.final_state = lambda sub: ("EXPIRED", "000")
        run = yield self.perl(self.SCRIPT, "15551230002", 1, "zeros", 1)
        message_id = run.value("message_id")
        self.assertTrue(message_id.startswith("0"), message_id)
        self.assertIn(f"id:{message_id.lstrip('0')} ", run.value("receipt"))
        self.assertIn("stat:EXPIRED", run.value("receipt"))
        self.assertEqual(run.value("tlvs"), "")

        # case changed; an intermediate ACCEPTD receipt, then the final one
        smsc.receipt_id_form, smsc.receipt_tlvs = "lower", True
        smsc.final_state = lambda sub: [("ACCEPTD", "000"), ("DELIVRD", "000")]
        run = yield self.perl(self.SCRIPT, "15551230002", 1, "two", 2)
        lower = run.value("message_id").lower()
        self.assertNotEqual(lower, run.value("message_id"))
        receipts = run.values("receipt")
        self.assertEqual(
            [re.findall(r"stat:(\w+)", r) for r in receipts], [["ACCEPTD"], ["DELIVRD"]]
        )
        self.assertTrue(all(r.startswith(f"id:{lower} ") for r in receipts))
        self.assertEqual([t[-2:] for t in run.values("tlvs")], ["06", "02"])

        # registered_delivery 2: only failures are reported
        smsc.final_state = lambda sub: (
            ("DELIVRD", "000") if sub.destination_addr.endswith("1") else ("REJECTD", "00B")
        )
        yield self.perl(self.SCRIPT, "15551230001", 2, "ok", 0)
        run = yield self.perl(self.SCRIPT, "15551230009", 2, "bad", 1)
        self.assertIn("stat:REJECTD err:00B", run.value("receipt"))
        self.assertEqual(run.value("tlvs").split(",")[-1], "0427:08")
        self.assertEqual(
            [d.stat for d in smsc.receipts_sent],
            ["UNDELIV", "EXPIRED", "ACCEPTD", "DELIVRD", "REJECTD"],
        )
        self.assertTrue(all(d.status == 0 and d.attempts == 1 for d in smsc.receipts_sent))

    @inlineCallbacks
    def test_unanswered_receipt_is_sent_again(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(deliver_timeout=0.5)
        run = yield self.perl(
            r"""
            my ($s, $b) = trx(system_id => "esme1");
            $s->submit_sm(destination_addr => "15551230002", registered_delivery => 1,
                          short_message => "again") or die;
            my $p1 = next_pdu($s) or die "no receipt";   # not answered
            out "first_seq=$p1->{seq}";
            out "first=$p1->{short_message}";
            my $p2 = next_pdu($s) or die "no second receipt";
            out "second_seq=$p2->{seq}";
            out "second=$p2->{short_message}";
            $s->deliver_sm_resp(seq => $p2->{seq}, message_id => "");
            $s->unbind();
            """
        )
        self.assertEqual(run.value("first"), run.value("second"))
        [receipt] = smsc.receipts_sent
        self.assertEqual((receipt.attempts, receipt.resends, receipt.status), (2, 1, 0))
        self.assertEqual(
            receipt.sequences, [int(run.value("first_seq")), int(run.value("second_seq"))]
        )
        self.assertNotEqual(receipt.sequences[0], receipt.sequences[1])

    @inlineCallbacks
    def test_receipt_gives_up_after_max_redeliveries(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(deliver_timeout=0.3, max_redeliveries=1)
        run = yield self.perl(
            r"""
            my ($s, $b) = trx(system_id => "esme1");
            $s->submit_sm(destination_addr => "15551230002", registered_delivery => 1,
                          short_message => "never answered") or die;
            for (1 .. 2) { my $p = next_pdu($s) or die "missing"; out "got=", $p->explain_cmd; }
            out "third=", (IO::Select->new($s)->can_read(1) ? 1 : 0);
            """
        )
        self.assertEqual(run.values("got"), ["deliver_sm", "deliver_sm"])
        self.assertEqual(run.value("third"), "0")
        [receipt] = smsc.receipts_sent
        yield smsc.wait_for(lambda: receipt.given_up, what="given up")
        status = yield receipt.wait()
        self.assertIsNone(status)
        self.assertEqual(receipt.attempts, 2)

    @inlineCallbacks
    def test_receipt_before_response(self) -> Generator[Deferred[Any], Any, None]:
        """The response is held until the receipt is answered (or deliver_timeout)."""
        smsc = self.start(receipt_before_response=True, deliver_timeout=10.0)
        run = yield self.perl(
            r"""
            my ($s, $b) = trx(system_id => "esme1");
            $s->submit_sm(destination_addr => "15551230002", registered_delivery => 1,
                          short_message => "race", async => 1);
            for (1 .. 2) {
                my $p = next_pdu($s) or die "missing";
                out "got=", $p->explain_cmd;
                if ($p->{cmd} == Net::SMPP::CMD_deliver_sm) {
                    out "receipt=$p->{short_message}";
                    $s->deliver_sm_resp(seq => $p->{seq}, message_id => "");
                } else {
                    out "message_id=", $p->message_id;
                }
            }
            $s->unbind();
            """
        )
        self.assertEqual(run.values("got"), ["deliver_sm", "submit_sm_resp"])
        self.assertIn(f"id:{run.value('message_id')} ", run.value("receipt"))
        [receipt] = smsc.receipts_sent
        self.assertEqual((receipt.attempts, receipt.status), (1, 0))

    @inlineCallbacks
    def test_receipt_before_response_lost_by_a_synchronous_client(
        self,
    ) -> Generator[Deferred[Any], Any, None]:
        """Net::SMPP's synchronous submit_sm (wait_pdu) drops the receipt that arrives
        before the response; the simulator sends it again after deliver_timeout."""
        smsc = self.start(receipt_before_response=True, deliver_timeout=0.5)
        run = yield self.perl(
            r"""
            my ($s, $b) = trx(system_id => "esme1");
            my $r = $s->submit_sm(destination_addr => "15551230002", registered_delivery => 1,
                                  short_message => "sync") or die;
            out "message_id=", $r->message_id;
            my $p = next_pdu($s) or die "no re-sent receipt";
            out "receipt=$p->{short_message}";
            $s->deliver_sm_resp(seq => $p->{seq}, message_id => "");
            $s->unbind();
            """
        )
        self.assertIn(f"id:{run.value('message_id')} ", run.value("receipt"))
        [receipt] = smsc.receipts_sent
        self.assertEqual((receipt.attempts, receipt.status), (2, 0))


class FaultTests(SimulatorTestCase):
    """Faults switched at run time."""

    SUBMITS = r"""
        my ($s, $b) = trx(system_id => "esme1");
        for my $to (@ARGV) {
            my $r = $s->submit_sm(destination_addr => $to, short_message => "x") or die;
            out "status=", $r->status;
            out "body=", hx($r->{data});
        }
        """

    @inlineCallbacks
    def test_throttled_queue_full_and_prefix_statuses(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(status_for_prefix={"4670": sim.ESME_RINVDSTADR})
        smsc.throttle_next(2)
        run = yield self.perl(self.SUBMITS, "155501", "155502", "155503", "46701234567", "155504")
        self.assertEqual(run.values("status"), ["88", "88", "0", "11", "0"])
        self.assertEqual(run.values("body")[:2], ["", ""])  # no message_id on errors
        smsc.queue_full = True
        run = yield self.perl(self.SUBMITS, "155505")
        self.assertEqual(run.values("status"), ["20"])
        smsc.queue_full, smsc.empty_body_on_error = False, False
        smsc.fail_next(sim.ESME_RSYSERR)
        run = yield self.perl(self.SUBMITS, "155506", "155507")
        self.assertEqual(run.values("status"), ["8", "0"])
        self.assertEqual(run.values("body")[0], "00")
        self.assertEqual([s.status for s in smsc.submits], [0x58, 0x58, 0, 0x0B, 0, 0x14, 0x08, 0])
        self.assertEqual(
            [s.message_id is not None for s in smsc.submits],
            [False, False, True, False, True, False, False, True],
        )

    @inlineCallbacks
    def test_throttle_rate_per_second(self) -> Generator[Deferred[Any], Any, None]:
        clock = [1000.0]  # a frozen clock: all submits in the same second
        self.start(throttle_rate=2, now=lambda: clock[0])
        run = yield self.perl(self.SUBMITS, "1", "2", "3", "4")
        self.assertEqual(run.values("status"), ["0", "0", "88", "88"])
        clock[0] = 1001.5
        run = yield self.perl(self.SUBMITS, "5", "6", "7")
        self.assertEqual(run.values("status"), ["0", "0", "88"])

    @inlineCallbacks
    def test_drop_after_submits(self) -> Generator[Deferred[Any], Any, None]:
        """A full window lost: the connection drops with two submits unanswered."""
        smsc = self.start(drop_after=2)
        run = yield self.perl(
            r"""
            my ($s, $b) = trx(system_id => "esme1");
            $s->submit_sm(destination_addr => "1555000$_", short_message => "lost $_", async => 1)
                for 1 .. 2;
            my $p = next_pdu($s);
            out "after=", (defined $p ? $p->explain_cmd : "eof");
            my ($s2, $b2) = trx(system_id => "esme1") or die;
            my $r = $s2->submit_sm(destination_addr => "15550003", short_message => "again");
            out "status=", $r->status;
            """
        )
        self.assertEqual((run.value("after"), run.value("status")), ("eof", "0"))
        self.assertEqual(
            [(s.status, s.answered) for s in smsc.submits],
            [(None, False), (None, False), (0, True)],
        )
        self.assertIsNone(smsc.drop_after)
        self.assertEqual(len(smsc.sessions), 2)

    @inlineCallbacks
    def test_hang(self) -> Generator[Deferred[Any], Any, None]:
        """After the MO is answered the SMSC answers nothing, not even enquire_link."""
        smsc = self.start()
        perl = self.perl(
            r"""
            my ($s, $b) = trx(system_id => "esme1");
            my $p = next_pdu($s) or die "no MO";
            $s->deliver_sm_resp(seq => $p->{seq}, message_id => "");
            $s->submit_sm(destination_addr => "1555", short_message => "anyone?", async => 1);
            $s->enquire_link(async => 1);
            out "answered=", (IO::Select->new($s)->can_read(1) ? 1 : 0);
            """
        )
        yield smsc.wait_for(lambda: smsc.bound("esme1"), what="bound")
        mo = smsc.deliver_mo("esme1", "15551230001", "1234", "go")
        mo.addCallback(lambda status: setattr(smsc, "hang", True) or status)
        status = yield mo
        self.assertEqual(status, 0)
        run = yield perl
        self.assertEqual(run.value("answered"), "0")
        self.assertEqual((smsc.counts["submit_sm"], smsc.counts["enquire_link"]), (1, 1))
        self.assertEqual(smsc.submits, [])
        self.assertEqual([p.name for p in smsc.responses_sent], ["bind_transceiver_resp"])

    @inlineCallbacks
    def test_delayed_response_and_clean_stop(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start(submit_delay=0.2)
        run = yield self.perl(self.SUBMITS, "15551230002")
        self.assertEqual(run.values("status"), ["0"])
        # Now leave things pending: a response due in a minute, a receipt, an MO nobody takes.
        smsc.submit_delay, smsc.receipt_delay = 60.0, 60.0
        yield self.perl(
            r"""
            my ($s, $b) = trx(system_id => "esme1");
            $s->submit_sm(destination_addr => "15551230002", registered_delivery => 1,
                          short_message => "later", async => 1);
            """
        )
        yield smsc.wait_for(lambda: len(smsc.submits) == 2, what="second submit")
        mo = smsc.deliver_mo("nobody", "15551230001", "1234", "waiting")
        self.assertFalse(smsc.submits[1].answered)
        yield smsc.stop()
        self.assertEqual(smsc.connections, [])
        self.assertEqual(smsc._timers.calls, set())
        status = yield mo
        self.assertIsNone(status)
        # trial fails the test if a DelayedCall or a socket is left behind


class ClientDirectedTests(SimulatorTestCase):
    """MOs, enquire_link, unbind and garbage sent to the client."""

    @inlineCallbacks
    def test_mo_messages_and_long_parts(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start()
        answers = [0, 0x64, 0, 0, 0, 0, 0]
        perl = self.perl(
            r"""
            my ($rx, $b) = Net::SMPP->new_receiver("127.0.0.1", port => $port, system_id => "esme1")
                or die;
            for my $status (@ARGV) {
                my $p = next_pdu($rx) or die "no deliver_sm";
                out sprintf("mo=%s esm:%d dc:%d from:%d/%d/%s to:%d/%d/%s sm:%s tlvs:%s",
                    $p->explain_cmd, $p->{esm_class}, $p->{data_coding}, $p->{source_addr_ton},
                    $p->{source_addr_npi}, $p->{source_addr}, $p->{dest_addr_ton},
                    $p->{dest_addr_npi}, $p->{destination_addr}, hx($p->{short_message}), tlvs($p));
                $rx->deliver_sm_resp(seq => $p->{seq}, message_id => "", status => $status);
            }
            $rx->unbind();
            """,
            *answers,
        )
        yield smsc.wait_for(lambda: smsc.bound("esme1", receiving=True), what="receiver bound")
        statuses = yield defer.gatherResults(
            [
                smsc.deliver_mo("esme1", "15551230001", "1234", "Hello @ home"),
                smsc.deliver_mo("esme1", "15551230001", "1234", "Привет", 8),
                smsc.deliver_mo("esme1", "15551230001", "1234", "in payload", 3, payload=True),
                smsc.deliver_long_mo(
                    "esme1",
                    "15551230001",
                    "1234",
                    "abcdefghi",
                    parts=3,
                    ref=7,
                    order=[3, 1],
                    missing=[2],
                ),
                smsc.deliver_long_mo(
                    "esme1",
                    "15551230001",
                    "1234",
                    b"ABCDEFGH",
                    8,
                    parts=2,
                    method="sar",
                    ref=0x1234,
                    order=[2, 1],
                ),
            ]
        )
        self.assertEqual(statuses, [0, 0x64, 0, [0, 0], [0, 0]])
        run = yield perl
        mos = run.values("mo")
        head = "deliver_sm esm:{} dc:{} from:1/1/15551230001 to:1/1/1234 sm:{} tlvs:{}"
        self.assertEqual(mos[0], head.format(0, 0, b"Hello \x00 home".hex(), ""))
        self.assertEqual(mos[1], head.format(0, 8, "Привет".encode("utf-16-be").hex(), ""))
        self.assertEqual(mos[2], head.format(0, 3, "", "0424:" + b"in payload".hex()))
        self.assertEqual(mos[3], head.format(0x40, 0, "050003070303" + b"ghi".hex(), ""))
        self.assertEqual(mos[4], head.format(0x40, 0, "050003070301" + b"abc".hex(), ""))
        sar = "020c:1234,020e:02,020f:{:02x}"
        self.assertEqual(mos[5], head.format(0, 8, b"EFGH".hex(), sar.format(2)))
        self.assertEqual(mos[6], head.format(0, 8, b"ABCD".hex(), sar.format(1)))
        self.assertEqual([d.status for d in smsc.mos_sent], answers)

    @inlineCallbacks
    def test_mo_waits_for_a_receiving_bind(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start()
        mo = smsc.deliver_mo("esme1", "15551230001", "1234", "stored")
        self.assertEqual(smsc.mos_sent[0].attempts, 0)
        run = yield self.perl(
            r"""
            my ($tx, $t) = tx(system_id => "esme1");
            out "tx_readable=", (IO::Select->new($tx)->can_read(0.5) ? 1 : 0);
            my ($rx, $b) = rx(system_id => "esme1");
            my $p = next_pdu($rx) or die "no MO";
            out "mo=$p->{short_message}";
            $rx->deliver_sm_resp(seq => $p->{seq}, message_id => "");
            """
        )
        self.assertEqual((run.value("tx_readable"), run.value("mo")), ("0", "stored"))
        status = yield mo
        self.assertEqual(status, 0)
        self.assertEqual(smsc.mos_sent[0].via, ["receiver"])

    @inlineCallbacks
    def test_enquire_link_unknown_command_and_unbind(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start()
        perl = self.perl(
            r"""
            my ($s, $b) = trx(system_id => "esme1");
            while (my $p = next_pdu($s)) {
                out "got=", $p->explain_cmd, ":", $p->{seq};
                if ($p->{cmd} == Net::SMPP::CMD_enquire_link) {
                    $s->enquire_link_resp(seq => $p->{seq});
                } elsif ($p->{cmd} == Net::SMPP::CMD_unbind) {
                    $s->unbind_resp(seq => $p->{seq});
                    last;
                } elsif (!$p->{known_pdu}) {
                    $s->generic_nack(seq => $p->{seq}, status => 3);   # ESME_RINVCMDID
                }
            }
            out "done=1";
            """
        )
        yield smsc.wait_for(lambda: smsc.bound("esme1"), what="bound")
        resp = yield smsc.send_enquire_link("esme1")
        self.assertEqual((resp.name, resp.status, resp.sequence), ("enquire_link_resp", 0, 1))
        nack = yield smsc.send_unknown_command("esme1")
        self.assertEqual((nack.name, nack.status, nack.sequence), ("generic_nack", 3, 2))
        self.assertEqual(smsc.raw_sent, [sim.pack_pdu(0x99, 0, 2)])
        resp = yield smsc.send_unbind("esme1")
        self.assertEqual((resp.name, resp.status, resp.sequence), ("unbind_resp", 0, 3))
        run = yield perl
        self.assertEqual(run.values("got"), ["enquire_link:1", "Unknown(0x00000099):2", "unbind:3"])
        self.assertEqual(run.value("done"), "1")
        self.assertEqual(smsc.nacks_received, [nack])

    @inlineCallbacks
    def test_bad_length_and_noise(self) -> Generator[Deferred[Any], Any, None]:
        smsc = self.start()
        script = r"""
            my ($s, $b) = trx(system_id => shift @ARGV);
            while (1) {
                my $p = next_pdu($s);
                if (!defined $p) {
                    my $error = ${*$s}{smpperror} || "timeout";
                    out "error=$error";
                    my ($seq) = $error =~ /seq=(\d+)/;
                    # ESME_RINVCMDLEN
                    $s->generic_nack(seq => $seq, status => 2) if $error =~ /Too short/;
                    last;
                }
                out "got=", $p->explain_cmd;
            }
            """
        short = self.perl(script, "short")
        yield smsc.wait_for(lambda: smsc.bound("short"), what="bound")
        nack = yield smsc.send_bad_length("short", length=8)
        self.assertEqual((nack.name, nack.status, nack.sequence), ("generic_nack", 2, 1))
        run = yield short
        self.assertIn("Too short length 8 < 16", run.value("error"))

        # Noise whose first word is a plausible length: Net::SMPP waits for the rest.
        noisy = self.perl(script, "noisy")
        yield smsc.wait_for(lambda: smsc.bound("noisy"), what="bound")
        nack = yield smsc.send_noise("noisy", data=b"\x00\x01\x00\x00" + b"noise!" * 5, timeout=1.0)
        self.assertIsNone(nack)
        yield smsc.drop_connections("noisy")
        run = yield noisy
        self.assertIn("invalid length", run.value("error"))
        self.assertEqual(len(smsc.nacks_received), 1)


class CodecCrossCheckTests(unittest.TestCase):
    """smpp.pdu (PyPI) decodes what the simulator sends, and encodes what it must read."""

    timeout = 30

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.smsc = SmscFactory(reactor=self.clock)
        self.conn = self.smsc.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.conn.makeConnection(self.transport)
        self.encoder = PDUEncoder()

    def feed(self, pdu: Any) -> None:
        self.conn.dataReceived(self.encoder.encode(pdu))

    def sent(self) -> list[Any]:
        """Every PDU the simulator wrote since the last call, decoded by smpp.pdu."""
        data, pdus = self.transport.value(), []
        self.transport.clear()
        stream = io.BytesIO(data)
        while stream.tell() < len(data):
            pdus.append(self.encoder.decode(stream))
        return pdus

    def test_bind_submit_receipt_and_mo(self) -> None:
        t = pdu_types
        self.feed(operations.BindTransceiver(1, system_id="esme1", password="pw"))
        [bind_resp] = self.sent()
        self.assertEqual(bind_resp.commandId, t.CommandId.bind_transceiver_resp)
        self.assertEqual(bind_resp.params["system_id"], b"SMSCSIM")
        self.assertEqual(bind_resp.params["sc_interface_version"], 0x34)

        self.feed(
            operations.SubmitSM(
                2,
                source_addr="Shop",
                source_addr_ton=t.AddrTon.ALPHANUMERIC,
                destination_addr="15551230002",
                dest_addr_ton=t.AddrTon.INTERNATIONAL,
                dest_addr_npi=t.AddrNpi.ISDN,
                esm_class=t.EsmClass(
                    t.EsmClassMode.DEFAULT,
                    t.EsmClassType.DEFAULT,
                    [t.EsmClassGsmFeatures.UDHI_INDICATOR_SET],
                ),
                registered_delivery=t.RegisteredDelivery(
                    t.RegisteredDeliveryReceipt.SMSC_DELIVERY_RECEIPT_REQUESTED
                ),
                data_coding=t.DataCoding(t.DataCodingScheme.DEFAULT, t.DataCodingDefault.UCS2),
                short_message=b"\x05\x00\x03\x01\x02\x01" + "Hé".encode("utf-16-be"),
                sar_msg_ref_num=0x1234,
                sar_total_segments=2,
                sar_segment_seqnum=1,
            )
        )
        [sub] = self.smsc.submits
        self.assertEqual((sub.source_addr_ton, sub.source_addr), (5, "Shop"))
        self.assertEqual(
            (sub.dest_addr_ton, sub.dest_addr_npi, sub.destination_addr), (1, 1, "15551230002")
        )
        self.assertEqual((sub.esm_class, sub.registered_delivery, sub.data_coding), (0x40, 1, 8))
        self.assertEqual((sub.concat, sub.sar), ((1, 2, 1), (0x1234, 2, 1)))
        self.assertEqual(sub.text.decode("utf-16-be"), "Hé")
        [resp] = self.sent()
        self.assertEqual(resp.commandId, t.CommandId.submit_sm_resp)
        self.assertEqual((resp.seqNum, resp.params["message_id"]), (2, b"0ABC0001"))

        self.clock.advance(0)  # the receipt
        [receipt] = self.sent()
        p = receipt.params
        self.assertEqual(receipt.commandId, t.CommandId.deliver_sm)
        self.assertEqual(p["esm_class"].type, t.EsmClassType.SMSC_DELIVERY_RECEIPT)
        self.assertEqual((p["source_addr"], p["destination_addr"]), (b"15551230002", b"Shop"))
        self.assertEqual(p["source_addr_ton"], t.AddrTon.INTERNATIONAL)
        self.assertEqual(p["dest_addr_ton"], t.AddrTon.ALPHANUMERIC)
        self.assertEqual(p["receipted_message_id"], b"0ABC0001")
        self.assertEqual(p["message_state"], t.MessageState.DELIVERED)
        self.assertRegex(p["short_message"], rb"^id:0ABC0001 sub:001 dlvrd:001 submit date:\d{10} ")
        self.assertTrue(
            p["short_message"].endswith(b"stat:DELIVRD err:000 text:" + "Hé".encode("utf-16-be"))
        )
        self.conn.dataReceived(sim.pack_pdu(sim.DELIVER_SM | sim.RESP, 0, receipt.seqNum, b"\0"))
        self.assertEqual(self.smsc.receipts_sent[0].status, 0)

        mo = self.smsc.deliver_mo("esme1", "15551230001", "1234", "Привет", 8, sar=(9, 3, 2))
        udh = self.smsc.deliver_mo(
            "esme1", "15551230001", "1234", b"\x01\x02", 4, udh=bytes([5, 0, 3, 7, 2, 2])
        )
        payload = self.smsc.deliver_mo(
            "esme1", "Shop", "1234", "long " * 60, 1, payload=True, source_ton=5, source_npi=0
        )
        first, second, third = self.sent()
        p = first.params
        self.assertEqual(p["data_coding"].schemeData, t.DataCodingDefault.UCS2)
        self.assertEqual(p["short_message"].decode("utf-16-be"), "Привет")
        self.assertEqual(
            (p["sar_msg_ref_num"], p["sar_total_segments"], p["sar_segment_seqnum"]), (9, 3, 2)
        )
        p = second.params
        self.assertEqual(p["esm_class"].gsmFeatures, {t.EsmClassGsmFeatures.UDHI_INDICATOR_SET})
        self.assertEqual(p["short_message"], bytes([5, 0, 3, 7, 2, 2, 1, 2]))
        p = third.params
        self.assertEqual(
            (p["source_addr_ton"], p["source_addr"]), (t.AddrTon.ALPHANUMERIC, b"Shop")
        )
        self.assertEqual(p["message_payload"], b"long " * 60)
        self.assertIn(p["short_message"], (b"", None))
        for d, seq in ((mo, first.seqNum), (udh, second.seqNum), (payload, third.seqNum)):
            self.conn.dataReceived(sim.pack_pdu(sim.DELIVER_SM | sim.RESP, 0, seq, b"\0"))
            self.assertEqual(self.successResultOf(d), 0)
        self.smsc.stop()

    def test_strict_decoding(self) -> None:
        def body(**overrides: Any) -> bytes:
            sm = sim.SmFields(destination_addr="15551230002", short_message=b"hi")
            for k, v in overrides.items():
                setattr(sm, k, v)
            return sim.encode_sm(sm, sim.SUBMIT_SM)

        good = body()
        self.assertEqual(sim.decode_sm(sim.SUBMIT_SM, good).short_message, b"hi")
        cases = [
            (good[:-1], sim.ESME_RINVMSGLEN),  # sm_length says 2, one octet follows
            (body(tlvs={0x020C: b"\x01"}), sim.ESME_RINVPARLEN),  # sar_msg_ref_num is 2 octets
            (good + b"\x02\x0c\x00\x05\x00", sim.ESME_RINVOPTPARSTREAM),  # TLV overruns
            (good + b"\x00", sim.ESME_RINVOPTPARSTREAM),  # stray octet
            (body(tlvs={0x0424: b"x"}), sim.ESME_RINVMSGLEN),  # short_message and payload
            (body(esm_class=0x40, short_message=b"\x09\x00"), sim.ESME_RINVESMCLASS),  # bad UDH
            (body(schedule_delivery_time="2601"), sim.ESME_RINVSCHED),
            (b"CMT", sim.ESME_RINVSERTYP),  # no NUL
        ]
        for data, status in cases:
            with self.assertRaises(sim.DecodeError) as caught:
                sim.decode_sm(sim.SUBMIT_SM, data)
            self.assertEqual(caught.exception.status, status, caught.exception.reason)
        twice = good + sim.encode_tlvs([(0x0204, b"\x00\x01"), (0x0204, b"\x00\x02")])
        with self.assertRaises(sim.DecodeError):
            sim.decode_sm(sim.SUBMIT_SM, twice)

    def test_bad_frame_from_the_client(self) -> None:
        self.conn.dataReceived(sim.HEADER.pack(8, sim.ENQUIRE_LINK, 0, 5))
        [nack] = self.sent()
        self.assertEqual(
            (nack.commandId, nack.status, nack.seqNum),
            (pdu_types.CommandId.generic_nack, pdu_types.CommandStatus.ESME_RINVCMDLEN, 5),
        )
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.smsc.bad_frames), 1)

    def test_split_message(self) -> None:
        self.assertEqual(sim.split_message("abcdefg", 0, 3), [b"abc", b"def", b"g"])
        self.assertEqual(sim.split_message("€€€€", 0, 2), [b"\x1be\x1be", b"\x1be\x1be"])
        self.assertEqual(sim.split_message(b"\x00a\x00b\x00c", 8, 2), [b"\x00a\x00b", b"\x00c"])
        self.assertEqual(sim.concat_udh(0x1234, 3, 1), bytes([6, 8, 4, 0x12, 0x34, 3, 1]))

    def test_wait_for_times_out(self) -> None:
        d = self.smsc.wait_for(lambda: False, timeout=1.0, interval=0.25, what="never")
        self.clock.advance(0.5)
        self.assertNoResult(d)
        self.clock.advance(1.0)
        failure = self.failureResultOf(d, AssertionError)
        self.assertIn("never", str(failure.value))


class StandaloneTests(unittest.TestCase):
    """``python -m tests.peers.smsc`` prints one line per event."""

    timeout = 30

    def setUp(self) -> None:
        need_net_smpp()

    @inlineCallbacks
    def test_command_line(self) -> Generator[Deferred[Any], Any, None]:
        def run() -> tuple[str, str]:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.peers.smsc",
                    "--port",
                    "0",
                    "--receipts",
                    "--receipt-delay",
                    "0",
                    "--id-format",
                    "dec",
                    "--account",
                    "esme1:pw",
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                assert proc.stdout is not None
                ready, _, _ = select.select([proc.stdout], [], [], 15)
                first = proc.stdout.readline() if ready else ""
                m = re.search(r"port=(\d+)", first)
                if m is None:
                    raise AssertionError(f"no port in {first!r}")
                perl = subprocess.run(
                    [
                        need_net_smpp(),
                        "-e",
                        PRELUDE + SUBMIT_AND_READ_RECEIPT.replace("secret", "pw"),
                        "--",
                        m.group(1),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=15,
                    check=False,
                )
            finally:
                proc.terminate()
                rest, _ = proc.communicate(timeout=10)
            return perl.stdout, first + rest

        perl_out, log = yield threads.deferToThread(run)
        self.assertIn("submit_status=0", perl_out)
        self.assertRegex(log, r"bind mode=transceiver system_id=esme1 status=0x00000000")
        self.assertRegex(
            log, r"submit_sm system_id=esme1 seq=\d+ source=Shop to=15551230002 .* id=180092929"
        )
        self.assertRegex(
            log, r"deliver_sm kind=receipt system_id=esme1 seq=1 attempt=1 id=180092929"
        )
        self.assertIn("unbind system_id=esme1", log)
