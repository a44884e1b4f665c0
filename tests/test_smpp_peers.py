"""The SMPP gateway against two SMSCs we did not write, seen the way a user sees it.

* Kannel's ``drive_smpp`` (Debian ``kannel-extras``): binds as transmitter and receiver
  only, answers submit_sm without a message_id, sends N deliver_sm (each followed by an
  enquire_link) once the receiver binds, and connects to 127.0.0.1:13001 as a fake smsbox
  (hard-wired in drive_smpp.c), so the tests listen there.
* Perl's Net::SMPP (Debian ``libnet-smpp-perl``) as an SMSC: the script below listens on
  a free port, takes a transceiver bind, answers submit_sm as told on its command line, and
  sends receipts and MOs when the test writes a command to its stdin. It prints what it
  decoded as ``key=value`` lines.

smsd runs in this process as in tests/test_smpp_gateway.py (its ``SmppCase``). A missing
peer fails the test: run ``tests/install-peers``.
"""

from __future__ import annotations

import contextlib
import os
from types import SimpleNamespace
from typing import Any, cast

from twisted.internet import defer, error
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.python.failure import Failure

from tests.peers.smsc import SmscFactory
from tests.process import free_port
from tests.test_smpp_gateway import ALICE, PASSWORD, SYSTEM_ID, SmppCase, gsm, reactor, wait_for
from tests.test_smsc_simulator import PRELUDE, PerlRun, need_net_smpp

DRIVE_SMPP = "/usr/lib/kannel/test/drive_smpp"
SMSBOX_PORT = 13001  # where drive_smpp connects as a fake smsbox: not configurable
BOB = "+15557654321"


def need_drive_smpp() -> str:
    """Kannel's drive_smpp; missing is a failure (CI must install it), not a skip."""
    if not os.access(DRIVE_SMPP, os.X_OK):
        raise AssertionError(
            f"{DRIVE_SMPP} (Debian kannel-extras) is not installed: run tests/install-peers"
        )
    return DRIVE_SMPP


class Peer(ProcessProtocol):
    """A peer program: its output so far, its stdin, and its end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.out: list[str] = []
        self.err: list[str] = []
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.exit: Failure | None = None

    def outReceived(self, data: bytes) -> None:
        self.out.append(data.decode("utf-8", "replace"))

    def errReceived(self, data: bytes) -> None:
        self.err.append(data.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:
        self.exit = reason
        self.ended.callback(None)

    @property
    def running(self) -> bool:
        return not self.ended.called

    def log(self) -> str:
        """stdout and stderr, as one text (drive_smpp logs to both)."""
        return "".join(self.out) + "".join(self.err)

    def output(self) -> str:
        """Everything it printed, for failure messages."""
        end = f"ended: {self.exit.value}" if self.exit is not None else "running"
        out, err = "".join(self.out), "".join(self.err)
        return f"--- {self.name} ({end}) stdout:\n{out}\n--- stderr:\n{err}"

    def values(self, key: str) -> list[str]:
        """The values of its ``key=value`` lines so far."""
        return PerlRun(-1, "".join(self.out), "").values(key)

    async def wait_values(self, key: str, count: int = 1, timeout: float = 8.0) -> list[str]:
        """The first ``count`` values of ``key`` once printed."""
        try:
            await wait_for(lambda: len(self.values(key)) >= count, timeout=timeout, what=key)
        except AssertionError as e:
            raise AssertionError(f"{e} from {self.name}\n{self.output()}") from None
        return self.values(key)[:count]

    def send(self, line: str) -> None:
        """A command line on its stdin."""
        assert self.transport is not None and self.running, self.output()
        self.transport.write(line.encode() + b"\n")

    async def stop(self) -> None:
        """Kill it (if still running) and wait for its end."""
        if self.running:
            assert self.transport is not None
            with contextlib.suppress(error.ProcessExitedAlready):
                self.transport.signalProcess("KILL")
        await self.ended


class PeerCase(SmppCase):
    """SmppCase with peer programs, started on the fly and killed in cleanup."""

    def spawn(self, name: str, argv: list[str]) -> Peer:
        peer = Peer(name)
        reactor.spawnProcess(peer, argv[0], argv, env=dict(os.environ), path=self.directory)
        self.addCleanup(lambda: defer.ensureDeferred(peer.stop()))
        return peer

    async def start_on(self, port: int, link: str = "") -> None:
        """smsd with one smpp gateway on 127.0.0.1:``port``."""
        smsc = cast(SmscFactory, SimpleNamespace(port=port))  # start() reads only its port
        await self.start(link, smsc=smsc)


# --- Kannel's drive_smpp --------------------------------------------------------------------


class _Smsbox(Protocol):
    """drive_smpp's connection as a fake smsbox: held open, nothing said."""

    factory: _SmsboxFactory

    def connectionMade(self) -> None:
        self.factory.connections.append(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.factory.connections.remove(self)


class _SmsboxFactory(Factory):
    protocol = _Smsbox

    def __init__(self) -> None:
        self.connections: list[_Smsbox] = []


class DriveSmppTests(PeerCase):
    """drive_smpp as the SMSC: separate transmitter and receiver binds."""

    MOS = 3

    async def drive_smpp(self) -> Peer:
        """The dummy smsbox on 13001, drive_smpp on a free port, smsd bound to it."""
        program = need_drive_smpp()
        factory = _SmsboxFactory()
        try:
            listener = reactor.listenTCP(SMSBOX_PORT, factory, interface="127.0.0.1")
        except error.CannotListenError as e:
            raise AssertionError(
                f"127.0.0.1:{SMSBOX_PORT} is busy ({e.socketError}): drive_smpp connects there "
                "as a fake smsbox (the port is hard-wired); stop what listens there"
            ) from None

        async def close() -> None:
            await listener.stopListening()
            for connection in list(factory.connections):
                assert connection.transport is not None
                connection.transport.abortConnection()
            await wait_for(lambda: not factory.connections, what="smsbox connections closed")

        self.addCleanup(lambda: defer.ensureDeferred(close()))
        port = free_port()
        peer = self.spawn("drive_smpp", [program, "-v", "0", "-p", str(port), "-m", str(self.MOS)])
        await self.start_on(port, 'bind = "transmitter+receiver"')
        try:
            await wait_for(
                lambda: all(b["bound"] for b in self.member()["binds"]), what="both binds"
            )
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.member()}\n{peer.output()}") from None
        return peer

    async def test_messages_sent_and_both_binds_bound(self) -> None:
        """Three SMS end ``sent`` (no id, so no receipt to wait for); drive_smpp read their
        text; health is up with a bound transmitter and a bound receiver."""
        peer = await self.drive_smpp()
        texts = ["Hello Kannel", "second one", "third"]
        ids = [await self.submit(text) for text in texts]
        for message_id in ids:
            m = await self.wait_state(message_id, "sent")
            self.assertEqual(m["attempts"], 1)
            self.assertIsNone(m["parts"][0]["provider_id"])  # drive_smpp gives no id
        for text in texts:  # drive_smpp's debug log shows what it decoded
            self.assertIn(f"submit_sm: short_message = <{text}>", peer.log())

        self.assertEqual(self.gateway.health.value, "up")
        status = self.member()
        self.assertEqual(status["state"], "up")
        self.assertEqual(
            [(b["mode"], b["bound"], b["problem"]) for b in status["binds"]],
            [("transmitter", True, ""), ("receiver", True, "")],
        )
        self.assertEqual(status["submitted"], 3)

    async def test_mos_land_in_the_inbox(self) -> None:
        """The three deliver_sm (texts "1", "2", "3", from 456 to 123, esm_class 0) are in the
        inbox; drive_smpp got an answer to every deliver_sm and enquire_link."""
        peer = await self.drive_smpp()
        handled = "Handling SMPP PDU of type "
        for answer in ("enquire_link_resp", "deliver_sm_resp"):
            await wait_for(
                lambda answer=answer: peer.log().count(handled + answer) >= self.MOS,
                what=f"{self.MOS} {answer} at drive_smpp",
            )

        inbox = await self.inbox()  # deliver_sm is answered once its MO is committed
        counters = {k: self.member()[k] for k in ("mo", "receipts")}
        self.assertEqual(
            sorted((mo.gateway, mo.sender, mo.recipient, mo.text, mo.parts) for mo in inbox),
            [("smsc", "456", "123", str(n), 1) for n in range(1, self.MOS + 1)],
            f"the gateway counted {counters}",
        )
        self.assertEqual(counters, {"mo": self.MOS, "receipts": 0})


# --- Perl Net::SMPP -------------------------------------------------------------------------

PERL_SMSC = r"""
my ($submit_status, $message_id) = (hex(shift @ARGV), shift @ARGV);
my $l = Net::SMPP->new_listen("127.0.0.1", port => $port, system_id => "PERLSMSC", async => 1)
    or die "listen: $!";
out "port=", $l->sockport;
my $sel = IO::Select->new($l, \*STDIN);
my ($c, $last, %sent);
my $in = "";
my $deadline = time + 25;

sub command {  # a line from the test
    my @w = split " ", shift;
    my $what = shift @w;
    my $seq;
    if ($what eq "receipt") {  # receipt STAT ERR STATE: for the last submit_sm
        my ($stat, $err, $state) = @w;
        my $text = "id:$message_id sub:001 dlvrd:001 submit date:2401311200"
                 . " done date:2401311201 stat:$stat err:$err text:"
                 . substr($last->{short_message}, 0, 20);
        $seq = $c->deliver_sm(
            source_addr_ton => $last->{dest_addr_ton}, source_addr_npi => $last->{dest_addr_npi},
            source_addr => $last->{destination_addr}, dest_addr_ton => $last->{source_addr_ton},
            dest_addr_npi => $last->{source_addr_npi}, destination_addr => $last->{source_addr},
            esm_class => 0x04, data_coding => 0, short_message => $text,
            receipted_message_id => "$message_id\0", message_state => pack("C", $state));
    } elsif ($what eq "mo") {  # mo SOURCE DEST DATA_CODING HEX
        my ($src, $dst, $dc, $hex) = @w;
        $seq = $c->deliver_sm(source_addr_ton => 1, source_addr_npi => 1, source_addr => $src,
            dest_addr_ton => 3, dest_addr_npi => 0, destination_addr => $dst, esm_class => 0,
            data_coding => $dc, short_message => pack("H*", $hex));
    } else { die "unknown command $what" }
    $sent{$seq} = $what;
    out "${what}_seq=$seq";
}

sub pdu {  # a PDU from smsd
    my $p = shift;
    my $cmd = $p->explain_cmd;
    if ($cmd =~ /^bind_(transceiver|transmitter|receiver)$/) {
        out "bind=$1 $p->{system_id} $p->{password} ", hx(chr $p->{interface_version});
        my $resp = "${cmd}_resp";
        $c->$resp(seq => $p->{seq});
    } elsif ($cmd eq "submit_sm") {
        $last = $p;
        out "submit_source=$p->{source_addr_ton}/$p->{source_addr_npi}/$p->{source_addr}";
        out "submit_dest=$p->{dest_addr_ton}/$p->{dest_addr_npi}/$p->{destination_addr}";
        out "submit_coding=$p->{esm_class}/$p->{data_coding}/$p->{registered_delivery}";
        out "submit_text=", hx($p->{short_message});
        $c->submit_sm_resp(seq => $p->{seq}, status => $submit_status,
                           message_id => $submit_status ? "" : $message_id);
    } elsif ($cmd eq "deliver_sm_resp") {
        my $what = delete $sent{$p->{seq}} or die "deliver_sm_resp for no deliver_sm";
        out "${what}_resp=$p->{seq}/$p->{status}";
    } elsif ($cmd eq "enquire_link") {
        $c->enquire_link_resp(seq => $p->{seq});
    } elsif ($cmd eq "unbind") {
        $c->unbind_resp(seq => $p->{seq});
        out "unbind=1";
    } else {
        out "unexpected=$cmd";
        $c->generic_nack(seq => $p->{seq}, status => 3);
    }
}

while (time < $deadline) {
    for my $fh ($sel->can_read(0.2)) {
        if ($fh == $l) {
            die "a second connection" if $c;
            $c = $l->accept or die "accept: $!";
            $sel->add($c);
        } elsif ($fh == \*STDIN) {
            sysread(STDIN, $in, 4096, length $in) or exit 0;
            command($1) while $in =~ s/^(.*)\n//;
        } else {
            my $p = $c->read_pdu or do { out "closed=1"; exit 0 };
            pdu($p);
        }
    }
}
die "still running after 25s";
"""

ESME_RINVDSTADR = 0x0B


class NetSmppTests(PeerCase):
    """Net::SMPP as the SMSC: one transceiver bind, ids, receipts, MOs."""

    async def perl_smsc(self, submit_status: int = 0, message_id: str = "A1B2C3") -> Peer:
        """The Perl SMSC on a free port (it binds port 0 and prints the port), smsd bound to
        it as a transceiver (the default)."""
        perl = need_net_smpp()
        args = ["0", f"{submit_status:#x}", message_id]
        peer = self.spawn("Net::SMPP SMSC", [perl, "-e", PRELUDE + PERL_SMSC, "--", *args])
        [port] = await peer.wait_values("port")
        await self.start_on(int(port))
        [bind] = await peer.wait_values("bind")
        self.assertEqual(bind, f"transceiver {SYSTEM_ID} {PASSWORD} 34")
        await wait_for(lambda: self.gateway.health.value == "up", what="health up")
        return peer

    async def test_sent_then_delivered(self) -> None:
        """submit_sm answered with an id: ``sent`` with that id; Perl decoded the number and
        the GSM text; the receipt then makes it ``delivered`` with the operator's stat."""
        peer = await self.perl_smsc(message_id="A1B2C3")
        text = "Hi Perl: 5€ {ok}"
        message_id = await self.submit(text)
        m = await self.wait_state(message_id, "sent")
        self.assertEqual(m["parts"][0]["provider_id"], "a1b2c3")  # ids compare lower-cased
        self.assertEqual(await peer.wait_values("submit_dest"), [f"1/1/{ALICE[1:]}"])
        self.assertEqual(peer.values("submit_coding"), ["0/0/1"])  # esm, GSM 7-bit, receipt
        self.assertEqual(peer.values("submit_text"), [gsm(text).hex()])

        peer.send("receipt DELIVRD 000 2")
        m = await self.wait_state(message_id, "delivered")
        self.assertEqual(m["status"], "stat:DELIVRD err:000")
        self.assertEqual(m["parts"][0]["status"], "stat:DELIVRD err:000")
        self.assertEqual(m["attempts"], 1)
        [seq] = peer.values("receipt_seq")
        self.assertEqual(await peer.wait_values("receipt_resp"), [f"{seq}/0"])
        self.assertEqual(peer.values("unexpected"), [])

    async def test_undeliverable_receipt_keeps_the_operator_words(self) -> None:
        """stat:UNDELIV err:034 from Perl: failed, with the words as the operator wrote them."""
        peer = await self.perl_smsc(message_id="77")
        message_id = await self.submit("Hello")
        await self.wait_state(message_id, "sent")
        peer.send("receipt UNDELIV 034 5")
        m = await self.wait_state(message_id, "failed")
        self.assertEqual(m["status"], "stat:UNDELIV err:034")
        [seq] = peer.values("receipt_seq")
        self.assertEqual(await peer.wait_values("receipt_resp"), [f"{seq}/0"])

    async def mo_from_perl(self, data_coding: int, short_message: bytes) -> Any:
        """Perl sends an MO from BOB to 1234; checks it was answered deliver_sm_resp 0
        and returns the one inbound SMS that smsd stored."""
        peer = await self.perl_smsc()
        peer.send(f"mo {BOB[1:]} 1234 {data_coding} {short_message.hex()}")
        [seq] = await peer.wait_values("mo_seq")
        self.assertEqual(await peer.wait_values("mo_resp"), [f"{seq}/0"])
        [mo] = await self.inbox()
        return mo

    async def test_mo_lands_in_the_inbox_and_is_answered(self) -> None:
        """An MO deliver_sm from Perl: in the inbox with its numbers and text, and answered
        with deliver_sm_resp status 0 (only once committed)."""
        text = "Hi from Perl @ 5€"
        mo = await self.mo_from_perl(0, gsm(text))
        self.assertEqual(
            (mo.gateway, mo.sender, mo.recipient, mo.text, mo.parts),
            ("smsc", BOB, "1234", text, 1),
        )

    async def test_ucs2_mo(self) -> None:
        """A UCS-2 MO (data_coding 8) from Perl: the text as sent."""
        text = "你好 мир"
        mo = await self.mo_from_perl(8, text.encode("utf-16-be"))
        self.assertEqual((mo.text, mo.encoding), (text, "ucs2"))

    async def test_invalid_destination_fails_for_good(self) -> None:
        """submit_sm answered ESME_RINVDSTADR: failed permanently after one attempt, with the
        status name shown."""
        peer = await self.perl_smsc(submit_status=ESME_RINVDSTADR)
        message_id = await self.submit("Hello")
        m = await self.wait_state(message_id, "failed")
        self.assertEqual(m["attempts"], 1)
        self.assertEqual(m["parts"][0]["state"], "failed")
        self.assertEqual(m["parts"][0]["status"], "ESME_RINVDSTADR (0x0B)")
        self.assertIn("ESME_RINVDSTADR (0x0B)", m["error"] or m["status"])
        self.assertEqual(peer.values("submit_dest"), [f"1/1/{ALICE[1:]}"])
