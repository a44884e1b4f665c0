"""The fake GSM modem (``tests/peers/fakemodem.py``) seen from a serial port it did not write.

The tests open the modem's device path with Twisted's own ``SerialPort`` (pyserial on the
pty slave), as the modem gateway will, and talk AT commands to it. SMS-SUBMIT PDUs come from an
independent encoder (``gsmmodem.pdu`` of PyPI ``python-gsmmodem-new``); the SMS-DELIVER PDUs
the modem sends are read back with PyPI ``smspdudecoder`` and the status reports with
``gsmmodem.pdu.decodeSmsPdu``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
import sys
import tempfile
from typing import Any

from gsmmodem.pdu import decodeSmsPdu, encodeSmsSubmitPdu
from smspdudecoder.easy import read_incoming_sms
from twisted.internet import protocol
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.serialport import SerialPort
from twisted.trial import unittest

from tests.fakes import sleep, wait_for
from tests.peers import fakemodem as fm
from tests.peers.fakemodem import FakeModem

reactor: Any = global_reactor
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINAL = re.compile(rb"\r\n(OK|ERROR|\+CM[ES] ERROR: [^\r]*)\r\n")
ALICE = "+15551230001"
BOB = "+15551230002"


class Terminal(protocol.Protocol):
    """The gateway's end of the serial line, as simple as it gets: every byte is kept."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.reason: Any = None
        self.lost: Deferred[Any] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        self.reason = reason
        self.lost.callback(None)

    def send(self, data: bytes) -> int:
        start = len(self.data)
        self.transport.write(data)
        return start

    def lines(self, start: int = 0) -> list[str]:
        return [x.decode("latin-1") for x in re.split(rb"\r\n|\r", self.data[start:]) if x]

    async def until(self, pattern: bytes, start: int = 0, timeout: float = 3.0) -> re.Match[bytes]:
        regex = re.compile(pattern)
        return await wait_for(
            lambda: regex.search(self.data, start), timeout=timeout, what=repr(pattern)
        )

    async def command(self, line: str, timeout: float = 3.0) -> list[str]:
        """Send ``line`` + CR; the lines up to and including the final result."""
        start = self.send(line.encode("latin-1") + b"\r")
        m = await self.until(FINAL.pattern, start, timeout)
        return [x.decode("latin-1") for x in re.split(rb"\r\n|\r", self.data[start : m.end()]) if x]

    async def send_pdu(self, pdu: str, length: int, *, end: bytes = b"\x1a") -> list[str]:
        """AT+CMGS=<length>, wait for the prompt, type the PDU and ``end``."""
        start = self.send(f"AT+CMGS={length}\r".encode())
        m = await self.until(rb"\r\n> |" + FINAL.pattern, start)
        if not m.group(0).endswith(b"> "):
            return self.lines(start)
        start = self.send(pdu.encode() + end)
        m = await self.until(FINAL.pattern, start)
        return [x.decode("latin-1") for x in re.split(rb"\r\n|\r", self.data[start : m.end()]) if x]


def submit_pdus(number: str, text: str, **kwargs: Any) -> list[tuple[str, int]]:
    """(hex, TPDU length) of each SMS-SUBMIT python-gsmmodem-new makes for ``text``."""
    return [(str(p), p.tpduLength) for p in encodeSmsSubmitPdu(number, text, **kwargs)]


def temporary_directory(case: unittest.TestCase) -> str:
    """Outside the checkout (trial's mktemp is below the working directory, where a
    device link left behind would be copied by the packaging test), removed after."""
    directory = tempfile.mkdtemp(prefix="fakemodem-")
    case.addCleanup(shutil.rmtree, directory, True)
    return directory


class ModemTestCase(unittest.TestCase):
    timeout = 20

    def modem(self, **options: Any) -> FakeModem:
        modem = FakeModem(reactor, temporary_directory(self), **options)
        self.addCleanup(modem.close)
        return modem

    def open(self, modem: FakeModem) -> Terminal:
        term = Terminal()
        port = SerialPort(term, modem.path, reactor, baudrate=115200)

        async def close() -> None:
            if term.reason is None:
                port.loseConnection()
                await term.lost

        self.addCleanup(close)
        return term

    async def ready(self, echo_off: bool = True, **options: Any) -> tuple[FakeModem, Terminal]:
        modem = self.modem(**options)
        term = self.open(modem)
        await wait_for(lambda: modem.opened, what="the modem to see the port opened")
        if echo_off:
            self.assertEqual((await term.command("ATE0"))[-1], "OK")
        return modem, term


class CodecTests(unittest.TestCase):
    """The hand-written encoders against the independent decoders."""

    def test_septet_packing_matches_gsmmodem(self) -> None:
        from gsmmodem.pdu import packSeptets

        for text in ("a", "hellohello", "1234567", "12345678", "€[]" * 5):
            septets = fm.gsm7_septets(text)
            self.assertEqual(fm.pack_septets(septets), bytes(packSeptets(bytearray(septets))))
            self.assertEqual(fm.unpack_septets(fm.pack_septets(septets), len(septets)), septets)

    def test_timestamps_with_negative_and_positive_offsets(self) -> None:
        for hours in (-5, 0, 2, 5.75):
            tz = dt.timezone(dt.timedelta(hours=hours))
            when = dt.datetime(2031, 12, 31, 23, 59, 58, tzinfo=tz)
            pdu, _ = fm.build_deliver(ALICE, "x", scts=when)
            self.assertEqual(read_incoming_sms(pdu)["date"], when)
            self.assertEqual(decodeSmsPdu(pdu)["time"], when)
            self.assertEqual(fm.decode_timestamp(fm.encode_timestamp(when)), when)

    def test_alphanumeric_sender_with_an_extension_character(self) -> None:
        when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        with self.assertRaises(ValueError):
            fm.build_deliver("Shop€[1]", "text", scts=when)  # not digits
        pdu, _ = fm.build_deliver("Shop€[1]", "text", scts=when, alphanumeric=True)
        self.assertEqual(read_incoming_sms(pdu)["sender"], "Shop€[1]")
        self.assertEqual(decodeSmsPdu(pdu)["number"], "Shop€[1]")

    def test_a_udh_before_gsm7_text_keeps_the_septet_boundary(self) -> None:
        when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        for ref in range(0, 256, 17):
            pdu, _ = fm.build_deliver(ALICE, "ab€c", scts=when, concat=(ref, 3, 2))
            got = decodeSmsPdu(pdu)
            self.assertEqual(got["text"], "ab€c")
            self.assertEqual((got["udh"][0].reference, got["udh"][0].parts), (ref, 3))

    def test_strict_submit_decoder(self) -> None:
        (pdu, length), *_ = submit_pdus(BOB, "hello")
        sub = fm.decode_submit(pdu, length)
        self.assertEqual((sub.recipient, sub.text, sub.alphabet), (BOB, "hello", "gsm7"))
        bad = {
            "length": (pdu, length + 1),
            "surplus": (pdu + "00", length + 1),
            "short": (pdu[:-2], length - 1),
            "odd hex": (pdu + "0", length),
            "not hex": (pdu[:-2] + "ZZ", length),
            "MTI deliver": (pdu[:2] + "00" + pdu[4:], length),
        }
        for why, (text, n) in bad.items():
            with self.assertRaises(fm.PduError, msg=why):
                fm.decode_submit(text, n)


class BasicTests(ModemTestCase):
    async def test_the_device_path_is_a_symlink_to_a_raw_pty(self) -> None:
        modem = self.modem(name="ttyUSBmodem")
        self.assertEqual(os.path.basename(modem.path), "ttyUSBmodem")
        self.assertTrue(os.path.islink(modem.path))
        self.assertEqual(os.readlink(modem.path), modem.device)
        self.assertTrue(modem.device and modem.device.startswith("/dev/pts/"))
        self.assertTrue(stat.S_ISCHR(os.stat(modem.path).st_mode))
        self.assertEqual(modem.opened, 0)
        term = self.open(modem)
        await wait_for(lambda: modem.opened == 1)
        self.assertEqual(await term.command("AT"), ["AT", "OK"])
        modem.close()
        self.assertFalse(os.path.lexists(modem.path))
        await term.lost

    async def test_echo_is_on_until_ate0_and_atz_restores_it(self) -> None:
        modem, term = await self.ready(echo_off=False)
        start = term.send(b"AT\r")
        await term.until(FINAL.pattern, start)
        self.assertEqual(bytes(term.data[start:]), b"AT\r\r\nOK\r\n")
        start = term.send(b"ATE0\r")
        await term.until(FINAL.pattern, start)
        self.assertEqual(bytes(term.data[start:]), b"ATE0\r\r\nOK\r\n")
        start = term.send(b"AT\r")
        await term.until(FINAL.pattern, start)
        self.assertEqual(bytes(term.data[start:]), b"\r\nOK\r\n")
        start = term.send(b"ATZ\r")
        await term.until(FINAL.pattern, start)
        self.assertEqual(bytes(term.data[start:]), b"\r\nOK\r\n")
        start = term.send(b"AT\r\n")  # a LF after the CR is echoed and ignored
        await term.until(FINAL.pattern, start)
        self.assertEqual(bytes(term.data[start:]), b"AT\r\r\nOK\r\n\n")
        self.assertEqual(modem.commands, ["AT", "ATE0", "AT", "ATZ", "AT"])

    async def test_echo_off_by_configuration(self) -> None:
        _, term = await self.ready(echo_off=False, echo=False)
        start = term.send(b"AT\r")
        await term.until(FINAL.pattern, start)
        self.assertEqual(bytes(term.data[start:]), b"\r\nOK\r\n")
        await term.command("ATE1")
        await term.command("ATZ")
        start = term.send(b"AT\r")
        await term.until(FINAL.pattern, start)
        self.assertEqual(bytes(term.data[start:]), b"\r\nOK\r\n")

    async def test_several_commands_on_a_line_and_unknown_ones(self) -> None:
        modem, term = await self.ready()
        self.assertEqual(await term.command("AT+CMEE=1;+CMGF=0;+CMGF?"), ["+CMGF: 0", "OK"])
        self.assertEqual(await term.command("ATV1Q0&D2S0=0"), ["OK"])
        self.assertEqual(await term.command("AT+FOO"), ["+CME ERROR: 4"])
        self.assertEqual(
            await term.command("AT+CMEE=2;+FOO"), ["+CME ERROR: operation not supported"]
        )
        self.assertEqual(await term.command("AT+CMEE=0;+FOO"), ["ERROR"])
        self.assertEqual(await term.command("AT+CMEE=7"), ["ERROR"])
        self.assertEqual(await term.command("at+cmee?"), ["+CMEE: 0", "OK"])
        self.assertIn("AT+FOO", modem.commands)

    async def test_lines_not_starting_with_at_get_no_answer(self) -> None:
        modem, term = await self.ready()
        term.send(b"hello\r\r\rxyz\r")
        self.assertEqual(await term.command("AT"), ["OK"])
        self.assertEqual(modem.ignored, [b"hello", b"xyz"])

    async def test_identities_per_style(self) -> None:
        for style, maker in [
            ("generic", "FAKE"),
            ("simcom", "SIMCOM_Ltd"),
            ("wavecom", "WAVECOM MODEM"),
        ]:
            modem, term = await self.ready(style=style, imei="490154203237518")
            self.assertEqual(await term.command("AT+CGMI"), [maker, "OK"])
            self.assertEqual(await term.command("AT+CGSN"), ["490154203237518", "OK"])
            self.assertEqual(await term.command("AT+CIMI"), [modem.imsi, "OK"])
            lines = await term.command("ATI")
            self.assertEqual(lines[0], f"Manufacturer: {maker}")
            self.assertEqual(lines[-1], "OK")
            self.assertEqual((await term.command("AT+CGMM"))[0], modem.style.model)
            self.assertEqual((await term.command("AT+CGMR"))[0], modem.style.revision)

    async def test_status_queries_and_settings(self) -> None:
        modem, term = await self.ready(rssi=17, slots=25, smsc="+4917211111")
        self.assertEqual(await term.command("AT+CSQ"), ["+CSQ: 17,99", "OK"])
        modem.rssi = 3
        self.assertEqual(await term.command("AT+CSQ"), ["+CSQ: 3,99", "OK"])
        self.assertEqual(await term.command("AT+CSCA?"), ['+CSCA: "+4917211111",145', "OK"])
        self.assertEqual(await term.command('AT+CSCA="4917222222",145'), ["OK"])
        self.assertEqual(await term.command("AT+CSCA?"), ['+CSCA: "+4917222222",145', "OK"])
        self.assertEqual(modem.smsc, "+4917222222")
        self.assertEqual(
            await term.command('AT+CPMS="SM","SM","SM"'), ["+CPMS: 0,25,0,25,0,25", "OK"]
        )
        modem.deliver(ALICE, "one")
        self.assertEqual(
            await term.command("AT+CPMS?"), ['+CPMS: "SM",1,25,"SM",1,25,"SM",1,25', "OK"]
        )
        self.assertEqual(await term.command('AT+CPMS="XX"'), ["+CMS ERROR: 303"])
        self.assertEqual(await term.command("AT+CREG?"), ["+CREG: 0,1", "OK"])
        self.assertEqual(await term.command("AT+CREG=2;+CREG?"), ['+CREG: 2,1,"1A2B","00C3"', "OK"])
        self.assertEqual(await term.command("AT+CFUN?"), ["+CFUN: 1", "OK"])
        self.assertEqual(await term.command("AT+COPS?"), ['+COPS: 0,0,"FAKE NET",0', "OK"])
        self.assertEqual(await term.command("AT+CNMI?"), ["+CNMI: 0,0,0,0,0", "OK"])
        self.assertEqual(await term.command("AT+CNMI=2,1,0,2,0;+CNMI?"), ["+CNMI: 2,1,0,2,0", "OK"])

    async def test_radio_off_unregisters(self) -> None:
        _, term = await self.ready(register_delay=0.2)
        await sleep(0.25)
        self.assertEqual(await term.command("AT+CFUN=0;+CREG?"), ["+CREG: 0,0", "OK"])
        self.assertEqual(await term.command("AT+CFUN=1;+CREG?"), ["+CREG: 0,2", "OK"])
        await sleep(0.25)
        self.assertEqual(await term.command("AT+CREG?"), ["+CREG: 0,1", "OK"])

    async def test_canned_responses_override_a_command(self) -> None:
        modem, term = await self.ready()
        modem.responses["+CSQ"] = ["+CSQ: 99,99", "OK"]
        modem.responses["+CGMI"] = lambda form, args: ["+CME ERROR: 100"]
        modem.responses["+CREG"] = lambda form, args: None  # None: the normal answer
        self.assertEqual(await term.command("AT+CSQ"), ["+CSQ: 99,99", "OK"])
        self.assertEqual(await term.command("AT+CGMI"), ["+CME ERROR: 100"])
        self.assertEqual(await term.command("AT+CREG?"), ["+CREG: 0,1", "OK"])

    async def test_closing_and_reopening_the_port(self) -> None:
        modem, term = await self.ready()
        term.transport.loseConnection()
        await term.lost
        await wait_for(lambda: modem.closed == 1, what="the modem to see the close")
        modem.deliver(ALICE, "while closed")  # stored; nothing is written to nobody
        term2 = self.open(modem)
        await wait_for(lambda: modem.opened == 2)
        self.assertEqual(await term2.command("AT"), ["OK"])  # still ATE0: nothing was reset
        self.assertEqual(len(await term2.command("AT+CMGL=4")), 3)


class PinTests(ModemTestCase):
    async def test_pin_then_registration(self) -> None:
        modem, term = await self.ready(pin="1234", register_delay=0.3)
        await term.command("AT+CMEE=1")
        self.assertEqual(await term.command("AT+CPIN?"), ["+CPIN: SIM PIN", "OK"])
        self.assertEqual(await term.command("AT+CREG?"), ["+CREG: 0,0", "OK"])
        self.assertEqual(await term.command("AT+CIMI"), ["+CME ERROR: 11"])
        self.assertEqual(await term.command("AT+CMGL=4"), ["+CMS ERROR: 311"])
        self.assertEqual(await term.command("AT+CMGS=20"), ["+CMS ERROR: 311"])
        self.assertEqual(await term.command('AT+CPIN="0000"'), ["+CME ERROR: 16"])
        self.assertEqual(await term.command('AT+CPIN="1234"'), ["OK"])
        self.assertEqual(await term.command("AT+CPIN?"), ["+CPIN: READY", "OK"])
        self.assertEqual(await term.command('AT+CPIN="1234"'), ["+CME ERROR: 3"])
        self.assertEqual(await term.command("AT+CREG?"), ["+CREG: 0,2", "OK"])
        (pdu, length), *_ = submit_pdus(BOB, "too early")
        self.assertEqual(await term.send_pdu(pdu, length), ["+CMS ERROR: 331"])
        await sleep(0.35)
        self.assertEqual(await term.command("AT+CREG?"), ["+CREG: 0,1", "OK"])
        self.assertEqual((await term.send_pdu(pdu, length))[-1], "OK")
        self.assertIn("pin_wrong left=2", modem.events)

    async def test_three_wrong_pins_need_the_puk(self) -> None:
        modem, term = await self.ready(pin="1234")
        await term.command("AT+CMEE=1")
        for _ in range(3):
            self.assertEqual(await term.command('AT+CPIN="9999"'), ["+CME ERROR: 16"])
        self.assertEqual(await term.command("AT+CPIN?"), ["+CPIN: SIM PUK", "OK"])
        self.assertEqual(await term.command("AT+CIMI"), ["+CME ERROR: 12"])
        self.assertEqual(await term.command("AT+CMGR=1"), ["+CMS ERROR: 316"])
        self.assertEqual(await term.command('AT+CPIN="1234"'), ["+CME ERROR: 12"])
        self.assertEqual(await term.command('AT+CPIN="11111111","4321"'), ["+CME ERROR: 16"])
        self.assertEqual(await term.command('AT+CPIN="12345678","4321"'), ["OK"])
        self.assertEqual(await term.command("AT+CPIN?"), ["+CPIN: READY", "OK"])
        self.assertEqual(modem.pin, "4321")

    async def test_puk_required_from_the_start_and_plain_error_without_cmee(self) -> None:
        _, term = await self.ready(puk_required=True, puk="87654321")
        self.assertEqual(await term.command("AT+CPIN?"), ["+CPIN: SIM PUK", "OK"])
        self.assertEqual(await term.command("AT+CIMI"), ["ERROR"])  # CMEE=0
        self.assertEqual(await term.command('AT+CPIN="87654321","0000"'), ["OK"])


class SendTests(ModemTestCase):
    async def test_cmgs_with_an_independent_pdu(self) -> None:
        modem, term = await self.ready(first_mr=41, echo_off=False)
        text = "Hello {world} [€] @home"
        (pdu, length), *_ = submit_pdus(BOB, text, requestStatusReport=True)
        start = term.send(f"AT+CMGS={length}\r".encode())
        await term.until(rb"> ", start)
        self.assertEqual(bytes(term.data[start:]), f"AT+CMGS={length}\r\r\n> ".encode())
        start = term.send(pdu.encode() + b"\x1a")
        await term.until(FINAL.pattern, start)
        # the PDU is echoed, Ctrl-Z is not
        self.assertEqual(bytes(term.data[start:]), pdu.encode() + b"\r\n+CMGS: 41\r\n\r\nOK\r\n")
        [sub] = modem.sent
        self.assertEqual((sub.mr, sub.recipient, sub.text), (41, BOB, text))
        self.assertEqual((sub.dcs, sub.alphabet, sub.udh, sub.concat), (0, "gsm7", None, None))
        self.assertTrue(sub.status_report_request)
        self.assertEqual((sub.tpdu_length, sub.pdu, sub.smsc), (length, pdu, None))
        self.assertFalse(sub.before_prompt)
        self.assertEqual(sub.problems, [])

    async def test_ucs2_concatenated_and_the_mr_wraps(self) -> None:
        modem, term = await self.ready(first_mr=254)
        text = "Grüße aus Ελλάδα — " * 6  # UCS-2, 114 characters: 2 parts
        pdus = submit_pdus(ALICE, text, reference=77, requestStatusReport=False)
        self.assertEqual(len(pdus), 2)
        answers = [await term.send_pdu(p, n) for p, n in pdus]
        pdu3, n3 = submit_pdus("0170123456", "third", validity=dt.timedelta(hours=2))[0]
        answers.append(await term.send_pdu(pdu3, n3))
        self.assertEqual([a[0] for a in answers], ["+CMGS: 254", "+CMGS: 255", "+CMGS: 0"])
        first, second, third = modem.sent
        self.assertEqual((first.alphabet, first.dcs), ("ucs2", 0x08))
        self.assertEqual((first.concat, second.concat), ((77, 2, 1), (77, 2, 2)))
        self.assertEqual(first.udh, bytes([0, 3, 77, 2, 1]))
        self.assertEqual(first.text + second.text, text)
        self.assertFalse(first.status_report_request)
        self.assertEqual((third.recipient, third.recipient_toa), ("0170123456", 0xA1))  # national
        self.assertEqual(third.relative_validity, dt.timedelta(hours=2))
        self.assertEqual(modem.next_mr, 1)

    async def test_a_wrong_length_or_a_bad_pdu_gets_304(self) -> None:
        modem, term = await self.ready()
        (pdu, length), *_ = submit_pdus(BOB, "hello")
        self.assertEqual(await term.send_pdu(pdu, length + 1), ["+CMS ERROR: 304"])
        self.assertEqual(await term.send_pdu(pdu, length - 1), ["+CMS ERROR: 304"])
        self.assertEqual(await term.send_pdu(pdu[:-2], length - 1), ["+CMS ERROR: 304"])
        self.assertEqual(await term.send_pdu("00" + "x" * 20, 10), ["+CMS ERROR: 304"])
        deliver_type = pdu[:2] + "04" + pdu[4:]
        self.assertEqual(await term.send_pdu(deliver_type, length), ["+CMS ERROR: 304"])
        self.assertEqual(await term.command("AT+CMGS=3"), ["+CMS ERROR: 304"])
        self.assertEqual(await term.command("AT+CMGS=abc"), ["+CMS ERROR: 304"])
        self.assertEqual(modem.sent, [])
        self.assertEqual([s.error for s in modem.refused], [304] * 5)
        self.assertEqual(
            modem.refused[0].problems, [f"AT+CMGS={length + 1} but the TPDU has {length} octets"]
        )
        self.assertEqual((await term.send_pdu(pdu, length))[-1], "OK")

    async def test_esc_aborts_with_ok(self) -> None:
        modem, term = await self.ready()
        (pdu, length), *_ = submit_pdus(BOB, "never mind")
        self.assertEqual(await term.send_pdu(pdu, length, end=b"\x1b"), ["OK"])
        self.assertEqual((modem.sent, modem.refused, modem.aborted), ([], [], 1))
        self.assertEqual(await term.command("AT"), ["OK"])

    async def test_failures_on_demand(self) -> None:
        modem, term = await self.ready()
        (pdu, length), *_ = submit_pdus(BOB, "hello")
        modem.fail_next_send()
        modem.fail_next_send([332, 314])
        modem.fail_next_send(42, count=2)
        results = [(await term.send_pdu(pdu, length))[0] for _ in range(6)]
        self.assertEqual(
            results,
            [
                "+CMS ERROR: 500",
                "+CMS ERROR: 332",
                "+CMS ERROR: 314",
                "+CMS ERROR: 42",
                "+CMS ERROR: 42",
                "+CMGS: 0",
            ],
        )
        self.assertEqual([s.error for s in modem.refused], [500, 332, 314, 42, 42])

    async def test_network_lost_and_back(self) -> None:
        modem, term = await self.ready()
        await term.command("AT+CREG=1")
        (pdu, length), *_ = submit_pdus(BOB, "hello")
        start = len(term.data)
        modem.network_lost(fm.DENIED)
        await term.until(rb"\r\n\+CREG: 3\r\n", start)
        self.assertEqual(await term.command("AT+CREG?"), ["+CREG: 1,3", "OK"])
        self.assertEqual(await term.send_pdu(pdu, length), ["+CMS ERROR: 331"])
        start = len(term.data)
        modem.network_back()
        await term.until(rb"\r\n\+CREG: 1\r\n", start)
        self.assertEqual((await term.send_pdu(pdu, length))[0], "+CMGS: 0")
        start = len(term.data)
        modem.slow_registration(0.2)
        await term.until(rb"\r\n\+CREG: 2\r\n", start)
        await term.until(rb"\r\n\+CREG: 1\r\n", start)

    async def test_no_smsc_anywhere_gets_330(self) -> None:
        modem, term = await self.ready(smsc=None)
        self.assertEqual(await term.command("AT+CSCA?"), ['+CSCA: "",129', "OK"])
        (pdu, length), *_ = submit_pdus(BOB, "hello")
        self.assertEqual(await term.send_pdu(pdu, length), ["+CMS ERROR: 330"])
        (pdu, length), *_ = submit_pdus(BOB, "hello", smsc="+4917200000")
        # python-gsmmodem-new counts the SMSC prefix in its tpduLength: a real modem says 304
        self.assertEqual(await term.send_pdu(pdu, length), ["+CMS ERROR: 304"])
        length = len(pdu) // 2 - 1 - int(pdu[:2], 16)
        self.assertEqual((await term.send_pdu(pdu, length))[0], "+CMGS: 0")
        self.assertEqual(modem.sent[0].smsc, "+4917200000")

    async def test_text_mode_is_not_for_sending(self) -> None:
        _, term = await self.ready(text_mode=True)
        self.assertEqual(await term.command("AT+CMGF?"), ["+CMGF: 1", "OK"])
        self.assertEqual(await term.command("AT+CMGS=20"), ["+CMS ERROR: 303"])
        self.assertEqual(await term.command("AT+CMGF=0;+CMGL=4"), ["OK"])
        self.assertEqual(await term.command('AT+CMGL="ALL"'), ["+CMS ERROR: 304"])

    async def test_urcs_between_the_command_and_the_prompt(self) -> None:
        modem, term = await self.ready()
        await term.command("AT+CNMI=2,1,0,2,0")
        modem.urc_during_cmgs = ["^RSSI:12"]
        modem.deliver_during_next_cmgs(ALICE, "squeezed in")
        (pdu, length), *_ = submit_pdus(BOB, "hello")
        start = term.send(f"AT+CMGS={length}\r".encode())
        await term.until(rb"> ", start)
        self.assertEqual(bytes(term.data[start:]), b'\r\n^RSSI:12\r\n\r\n+CMTI: "SM",1\r\n\r\n> ')
        start = term.send(pdu.encode() + b"\x1a")
        await term.until(FINAL.pattern, start)
        self.assertEqual(term.lines(start), ["+CMGS: 0", "OK"])
        self.assertEqual(modem.urcs, ["^RSSI:12", '+CMTI: "SM",1'])

    async def test_cnmi_mode_2_holds_urcs_while_a_pdu_is_typed(self) -> None:
        modem, term = await self.ready()
        await term.command("AT+CNMI=2,1,0,2,0")
        (pdu, length), *_ = submit_pdus(BOB, "hello")
        start = term.send(f"AT+CMGS={length}\r".encode())
        await term.until(rb"> ", start)
        modem.deliver(ALICE, "held back")
        await sleep(0.05)
        self.assertNotIn(b"+CMTI", term.data)
        term.send(pdu.encode() + b"\x1a")
        await term.until(rb'\r\n\+CMGS: 0\r\n\r\nOK\r\n\r\n\+CMTI: "SM",1\r\n', start)
        # mode 1 sends at once
        await term.command("AT+CNMI=1,1,0,2,0")
        start = term.send(f"AT+CMGS={length}\r".encode())
        await term.until(rb"> ", start)
        modem.deliver(ALICE, "straight through")
        await term.until(rb'\r\n\+CMTI: "SM",2\r\n', start)
        term.send(b"\x1b")
        await term.until(FINAL.pattern, start)

    async def test_answer_and_send_delays(self) -> None:
        modem, term = await self.ready()
        modem.answer_delay = 0.2
        t0 = reactor.seconds()
        self.assertEqual(await term.command("AT"), ["OK"])
        self.assertGreaterEqual(reactor.seconds() - t0, 0.2)
        modem.answer_delay = 0.0
        modem.answer_delays["+CSQ"] = 0.2
        t0 = reactor.seconds()
        await term.command("AT+CSQ")
        self.assertGreaterEqual(reactor.seconds() - t0, 0.2)
        modem.send_delay = 0.3
        (pdu, length), *_ = submit_pdus(BOB, "hello")
        t0 = reactor.seconds()
        self.assertEqual((await term.send_pdu(pdu, length))[0], "+CMGS: 0")
        self.assertGreaterEqual(reactor.seconds() - t0, 0.3)

    async def test_a_pdu_typed_before_the_prompt_is_recorded(self) -> None:
        modem, term = await self.ready()
        modem.answer_delay = 0.2
        (pdu, length), *_ = submit_pdus(BOB, "impatient")
        start = term.send(f"AT+CMGS={length}\r{pdu}\x1a".encode())
        await term.until(FINAL.pattern, start)
        self.assertEqual(term.lines(start), ["> ", "+CMGS: 0", "OK"])
        self.assertTrue(modem.sent[0].before_prompt)

    async def test_automatic_status_reports(self) -> None:
        modem, term = await self.ready(auto_status_reports=0x00, report_delay=0.05)
        await term.command("AT+CNMI=2,1,0,1,0")
        (pdu, length), *_ = submit_pdus(BOB, "report me", requestStatusReport=True)
        start = len(term.data)
        await term.send_pdu(pdu, length)
        m = await term.until(rb"\r\n\+CDS: (\d+)\r\n([0-9A-F]+)\r\n", start)
        report = decodeSmsPdu(m.group(2).decode())
        self.assertEqual(report["type"], "SMS-STATUS-REPORT")
        self.assertEqual((report["reference"], report["number"], report["status"]), (0, BOB, 0))
        self.assertEqual(int(m.group(1)), report["tpdu_length"])
        self.assertEqual(await term.command("AT+CNMA"), ["OK"])
        self.assertEqual(await term.command("AT+CNMA"), ["+CMS ERROR: 340"])
        self.assertEqual(modem.acks, 1)


class ReceiveTests(ModemTestCase):
    async def cmgr(self, term: Terminal, index: int) -> tuple[int, int, str]:
        lines = await term.command(f"AT+CMGR={index}")
        self.assertEqual(lines[-1], "OK", lines)
        lines = lines[[x.startswith("+CMGR") for x in lines].index(True) :]  # after any URC
        m = re.fullmatch(r"\+CMGR: (\d),,(\d+)", lines[0])
        assert m is not None, lines
        return int(m.group(1)), int(m.group(2)), lines[1]

    async def test_cmti_then_cmgr_then_cmgd(self) -> None:
        modem, term = await self.ready(timezone=dt.timezone(dt.timedelta(hours=-3)))
        await term.command("AT+CNMI=2,1,0,2,0")
        start = len(term.data)
        when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=1)))
        rec = modem.deliver(ALICE, "Hi there, ¿qué tal? {ok}", scts=when)
        self.assertEqual((rec.route, rec.index), ("stored", 1))
        await term.until(rb'\r\n\+CMTI: "SM",1\r\n', start)
        stat_, length, pdu = await self.cmgr(term, 1)
        self.assertEqual(stat_, fm.REC_UNREAD)
        got = read_incoming_sms(pdu)
        self.assertEqual((got["sender"], got["content"]), (ALICE, "Hi there, ¿qué tal? {ok}"))
        self.assertEqual((got["date"], got["partial"]), (when, False))
        self.assertEqual(length, decodeSmsPdu(pdu)["tpdu_length"])
        self.assertEqual(decodeSmsPdu(pdu)["smsc"], modem.smsc)
        self.assertEqual((await self.cmgr(term, 1))[0], fm.REC_READ)
        self.assertEqual(await term.command("AT+CMGD=1"), ["OK"])
        self.assertEqual(await term.command("AT+CMGR=1"), ["+CMS ERROR: 321"])
        self.assertEqual(await term.command("AT+CMGR=31"), ["+CMS ERROR: 321"])
        self.assertEqual(await term.command("AT+CMGD=1"), ["OK"])
        self.assertEqual(modem.deleted, [1])
        # the default time stamp: the reactor's clock in the modem's time zone
        modem.deliver(BOB, "now")
        date = decodeSmsPdu((await self.cmgr(term, 1))[2])["time"]  # smspdudecoder gives UTC
        self.assertEqual(date.utcoffset(), dt.timedelta(hours=-3))
        self.assertLess(abs(date.timestamp() - reactor.seconds()), 2)

    async def test_alphanumeric_ucs2_and_8bit_messages(self) -> None:
        modem, term = await self.ready()
        modem.deliver("MyBank", "Code 1234", alphanumeric=True)
        modem.deliver(ALICE, "Привет, мир")  # does not fit GSM-7: UCS-2 by itself
        modem.deliver(ALICE, "plain", ucs2=True)
        modem.deliver("1234", data=b"\x00\xff binary")
        modem.deliver(ALICE, "flash", message_class=0)
        expect = [
            ("MyBank", "Code 1234"),
            (ALICE, "Привет, мир"),
            (ALICE, "plain"),
            ("1234", b"\x00\xff binary"),
            (ALICE, "flash"),
        ]
        for index, (sender, text) in enumerate(expect, 1):
            got = read_incoming_sms((await self.cmgr(term, index))[2])
            self.assertEqual((got["sender"], got["content"]), (sender, text))
        pdu = (await self.cmgr(term, 3))[2]
        self.assertEqual(decodeSmsPdu(pdu)["text"], "plain")
        # SMSC 7 octets, first octet, OA 8 octets, PID: then the DCS, class 0 GSM-7
        self.assertEqual(modem.store[5].delivery.pdu[34:36], "10")

    async def test_a_long_message_in_parts_and_out_of_order(self) -> None:
        modem, term = await self.ready()
        text = "".join(f"word{i} " for i in range(60))  # 410 characters: 3 parts of 153
        recs = modem.deliver_long(BOB, text, ref=200, order=[2, 3, 1])
        self.assertEqual([r.index for r in recs], [1, 2, 3])
        parts = {}
        for index in (1, 2, 3):
            got = read_incoming_sms((await self.cmgr(term, index))[2])
            partial = got["partial"]
            self.assertEqual((partial["reference"], partial["parts_count"]), ("200-3", 3))
            parts[partial["part_number"]] = got["content"]
        self.assertEqual([len(parts[i]) for i in (1, 2)], [153, 153])
        self.assertEqual(parts[1] + parts[2] + parts[3], text)
        recs = modem.deliver_long(ALICE, "ein kurzer Text", parts=3, ref=0x1234)
        got = [read_incoming_sms((await self.cmgr(term, r.index))[2]) for r in recs]
        self.assertEqual("".join(g["content"] for g in got), "ein kurzer Text")
        self.assertEqual(got[0]["partial"]["reference"], f"{0x1234}-3")
        long_ucs2 = "Ж" * 140  # 67 UCS-2 characters a part
        recs = modem.deliver_long(ALICE, long_ucs2)
        self.assertEqual(len(recs), 3)
        got = [read_incoming_sms((await self.cmgr(term, r.index))[2]) for r in recs]
        self.assertEqual("".join(g["content"] for g in got), long_ucs2)

    async def test_cmt_routes_directly_and_wants_cnma(self) -> None:
        modem, term = await self.ready()
        await term.command("AT+CNMI=2,2,0,1,0")
        start = len(term.data)
        rec = modem.deliver(ALICE, "direct")
        self.assertEqual((rec.route, rec.index, modem.store), ("direct", None, {}))
        m = await term.until(rb"\r\n\+CMT: ,(\d+)\r\n([0-9A-F]+)\r\n", start)
        got = read_incoming_sms(m.group(2).decode())
        self.assertEqual((got["sender"], got["content"]), (ALICE, "direct"))
        self.assertEqual(int(m.group(1)), decodeSmsPdu(m.group(2).decode())["tpdu_length"])
        self.assertEqual(await term.command("AT+CNMA"), ["OK"])
        rec = modem.deliver(ALICE, "forced into the store", store=True)
        self.assertEqual(rec.route, "stored")
        start = len(term.data)
        await term.command("AT+CNMI=2,1,0,1,0")
        modem.deliver(ALICE, "as +CMT anyway", store=False)
        await term.until(rb"\r\n\+CMT: ,", start)

    async def test_without_cnmi_messages_are_stored_silently_and_listed(self) -> None:
        modem, term = await self.ready()
        for i in range(3):
            modem.deliver(ALICE, f"message {i}")
        await sleep(0.05)
        self.assertEqual(modem.urcs, [])
        await self.cmgr(term, 2)
        lines = await term.command("AT+CMGL=0")  # unread only
        self.assertEqual(lines[0][:10], "+CMGL: 1,0")
        self.assertEqual(len(lines), 5)
        lines = await term.command("AT+CMGL=4")
        heads = [x for x in lines if x.startswith("+CMGL")]
        self.assertEqual(
            [h.split(",")[:2] for h in heads],
            [["+CMGL: 1", "1"], ["+CMGL: 2", "1"], ["+CMGL: 3", "1"]],
        )
        texts = [
            read_incoming_sms(lines[i + 1])["content"] for i, x in enumerate(lines) if x in heads
        ]
        self.assertEqual(texts, ["message 0", "message 1", "message 2"])
        self.assertEqual(await term.command("AT+CMGL"), ["OK"])  # no unread left
        modem.deliver(ALICE, "unread")
        self.assertEqual(await term.command("AT+CMGD=1,1"), ["OK"])  # all read ones
        self.assertEqual(modem.deleted, [1, 2, 3])
        self.assertEqual(await term.command("AT+CMGD=0,4"), ["OK"])
        self.assertEqual((modem.deleted, modem.store), ([1, 2, 3, 4], {}))

    async def test_cnmi_mode_0_buffers_until_mode_2(self) -> None:
        modem, term = await self.ready()
        await term.command("AT+CNMI=0,1,0,0,0")
        modem.deliver(ALICE, "buffered")
        await sleep(0.05)
        self.assertNotIn(b"+CMTI", term.data)
        start = len(term.data)
        self.assertEqual(await term.command("AT+CNMI=2,1,0,0,0"), ["OK"])
        await term.until(rb'\r\nOK\r\n\r\n\+CMTI: "SM",1\r\n', start)

    async def test_a_full_store_loses_messages(self) -> None:
        modem, term = await self.ready(slots=2, style="huawei", noise_interval=0)
        await term.command("AT+CNMI=2,1,0,2,0")
        recs = [modem.deliver(ALICE, f"m{i}") for i in range(3)]
        self.assertEqual([r.route for r in recs], ["stored", "stored", "lost"])
        self.assertEqual(modem.lost, [recs[2]])
        await term.until(rb'\^SMMEMFULL: "SM"')
        self.assertEqual(
            await term.command("AT+CPMS?"), ['+CPMS: "SM",2,2,"SM",2,2,"SM",2,2', "OK"]
        )

    async def test_empty_slots_per_style_and_zero_based_indexes(self) -> None:
        modem, term = await self.ready(style="simcom", first_index=0, slots=5)
        self.assertEqual(await term.command("AT+CMGR=0"), ["OK"])
        self.assertEqual(await term.command("AT+CMGR=5"), ["+CMS ERROR: 321"])
        await term.command("AT+CNMI=2,1,0,2,0")
        start = len(term.data)
        self.assertEqual(modem.deliver(ALICE, "zero").index, 0)
        await term.until(rb'\+CMTI: "SM",0\r\n', start)
        self.assertEqual(await term.command("AT+CMGD=?"), ["+CMGD: (0-4),(0-4)", "OK"])

    async def test_status_reports_direct_and_stored(self) -> None:
        modem, term = await self.ready()
        await term.command("AT+CNMI=2,1,0,1,0")
        start = len(term.data)
        when = dt.datetime(2024, 2, 29, 12, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
        modem.status_report(17, BOB, 0x00, scts=when, discharge=when + dt.timedelta(seconds=30))
        m = await term.until(rb"\r\n\+CDS: (\d+)\r\n([0-9A-F]+)\r\n", start)
        report = decodeSmsPdu(m.group(2).decode())
        self.assertEqual((report["reference"], report["number"], report["status"]), (17, BOB, 0))
        self.assertEqual(report["time"], when)
        self.assertEqual(report["discharge"] - report["time"], dt.timedelta(seconds=30))
        await term.command("AT+CNMI=2,1,0,2,0")
        start = len(term.data)
        rec = modem.status_report(18, "0170123", 0x45)
        await term.until(rb'\r\n\+CDSI: "SM",1\r\n', start)
        self.assertEqual((rec.route, rec.index), ("stored", 1))
        pdu = (await self.cmgr(term, 1))[2]
        report = decodeSmsPdu(pdu)
        self.assertEqual(
            (report["reference"], report["number"], report["status"]), (18, "0170123", 0x45)
        )
        await term.command("AT+CNMI=2,1,0,0,0")
        self.assertEqual(modem.status_report(19, BOB).route, "discarded")


class FaultTests(ModemTestCase):
    async def test_stall_swallows_everything_until_unstall(self) -> None:
        modem, term = await self.ready(echo_off=False)
        modem.stall()
        start = term.send(b"AT\r")
        modem.deliver(ALICE, "lost URC", store=False)
        await sleep(0.3)
        self.assertEqual(bytes(term.data[start:]), b"")
        modem.unstall()
        self.assertEqual(await term.command("AT"), ["AT", "OK"])
        self.assertEqual(modem.commands, ["AT"])  # the stalled one was never read as a command

    async def test_vanish_closes_the_port_and_reappear_gives_a_new_device(self) -> None:
        modem, term = await self.ready(style="simcom")
        await term.command("AT+CNMI=2,1,0,2,0")
        modem.deliver(ALICE, "kept on the SIM")
        old = modem.device
        modem.vanish()
        await term.lost
        reason = term.reason
        # a clean ConnectionDone, not ConnectionLost: the hung-up pty slave reads as EOF
        self.assertTrue(reason.check(ConnectionDone), reason)
        self.assertFalse(os.path.lexists(modem.path))
        new = modem.reappear()
        self.assertEqual(os.readlink(modem.path), new)
        self.assertNotEqual((new, old), (None, None))
        term2 = self.open(modem)
        await term2.until(rb"\r\nSMS Ready\r\n")
        self.assertEqual(
            term2.lines(), ["RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"]
        )
        self.assertEqual(await term2.command("AT"), ["AT", "OK"])  # echo back on
        self.assertEqual(await term2.command("AT+CNMI?"), ["AT+CNMI?", "+CNMI: 0,0,0,0,0", "OK"])
        lines = await term2.command("AT+CMGL=4")
        self.assertEqual(read_incoming_sms(lines[2])["content"], "kept on the SIM")
        self.assertEqual((modem.opened, modem.closed), (2, 1))

    async def test_reset_goes_silent_then_boots(self) -> None:
        modem, term = await self.ready(style="simcom", pin="1111", reset_time=0.3)
        await term.command('AT+CPIN="1111"')
        start = len(term.data)
        self.assertEqual(await term.command("AT+CFUN=1,1"), ["OK"])
        start = term.send(b"AT\r")  # swallowed while the modem reboots
        await term.until(rb"\r\nSMS Ready\r\n", start)
        self.assertEqual(
            term.lines(start), ["RDY", "+CFUN: 1", "+CPIN: SIM PIN", "Call Ready", "SMS Ready"]
        )
        self.assertEqual(len(modem.resets), 1)
        self.assertEqual(await term.command("AT+CPIN?"), ["AT+CPIN?", "+CPIN: SIM PIN", "OK"])
        start = len(term.data)
        modem.reboot(0.1, boot_urcs=False)
        await sleep(0.2)
        self.assertEqual(term.lines(start), [])
        self.assertEqual(len(modem.resets), 2)

    async def test_wavecom_and_generic_boot_urcs(self) -> None:
        for style, urcs in [
            ("wavecom", ["+WIND: 13", "+WIND: 1", "+WIND: 7", "+WIND: 4"]),
            ("generic", []),
        ]:
            _, term = await self.ready(style=style, reset_time=0.05)
            start = len(term.data)
            await term.command("AT+CFUN=1,1")
            await sleep(0.25)
            self.assertEqual(term.lines(start)[1:], urcs)

    async def test_huawei_reset_reenumerates_the_device(self) -> None:
        modem, term = await self.ready(style="huawei", noise_interval=0, reset_time=0.2)
        self.assertEqual(await term.command("AT+CFUN=1,1"), ["OK"])
        await term.lost
        await wait_for(lambda: os.path.lexists(modem.path) and not modem.gone)
        term2 = self.open(modem)
        await term2.until(rb"\r\n\^SYSSTART\r\n")
        self.assertEqual(await term2.command("ATE0"), ["ATE0", "OK"])

    async def test_huawei_noise_while_idle_until_curc_0(self) -> None:
        modem, term = await self.ready(style="huawei", noise_interval=0.05)
        await term.until(rb"\r\n\^RSSI:14\r\n\r\n\^BOOT:20952000,0,0,0,6\r\n")
        self.assertEqual(await term.command("AT^CURC=0"), ["OK"])
        await sleep(0.1)
        start = len(term.data)
        await sleep(0.2)
        self.assertEqual(term.lines(start), [])
        modem.send_noise("^DSFLOWRPT:0000001E,00000000")
        await term.until(rb"\r\n\^DSFLOWRPT:0000001E,00000000\r\n", start)
        modem.noise_interval = None
        await term.command("AT^CURC=1")
        await sleep(0.2)
        self.assertEqual(term.lines(start)[1:], ["OK"])

    async def test_garbage_goes_out_raw(self) -> None:
        modem, term = await self.ready()
        start = len(term.data)
        modem.garbage(b"\x00\xff\r\nNO CARRIER\x80")
        await term.until(rb"\x80", start)
        self.assertEqual(bytes(term.data[start:]), b"\x00\xff\r\nNO CARRIER\x80")

    async def test_a_big_answer_is_written_in_full(self) -> None:
        modem, term = await self.ready(slots=200)
        for i in range(200):
            modem.deliver(ALICE, f"{i:03d} " + "x" * 150)
        lines = await term.command("AT+CMGL=4", timeout=10)
        self.assertEqual(len(lines), 401)  # more than a pty buffer holds
        self.assertEqual(read_incoming_sms(lines[-2])["content"], "199 " + "x" * 150)


class StandaloneTests(unittest.TestCase):
    timeout = 20

    async def test_main_prints_the_device_and_serves_it(self) -> None:
        directory = temporary_directory(self)
        link = os.path.join(directory, "ttyFAKE9")
        out = bytearray()
        ended: Deferred[Any] = Deferred()

        class Watcher(protocol.ProcessProtocol):
            def outReceived(self, data: bytes) -> None:
                out.extend(data)

            def errReceived(self, data: bytes) -> None:
                out.extend(data)

            def processEnded(self, reason: Any) -> None:
                ended.callback(reason.value)

        proc = reactor.spawnProcess(
            Watcher(),
            sys.executable,
            [
                sys.executable,
                "-m",
                "tests.peers.fakemodem",
                "--link",
                link,
                "--deliver",
                f"{ALICE}:hi",
            ],
            env={**os.environ, "PYTHONPATH": ROOT},
            path=ROOT,
        )

        async def stop() -> None:
            if not ended.called:
                proc.signalProcess("TERM")
                await ended

        self.addCleanup(stop)
        await wait_for(lambda: b"device=/dev/pts/" in out, timeout=10, what="the device line")
        self.assertIn(f"link={link}".encode(), out)
        term = Terminal()
        port = SerialPort(term, link, reactor)
        try:
            self.assertEqual(await term.command("AT"), ["AT", "OK"])
            await wait_for(lambda: b"deliver" in out, what="the delivery")
            lines = await term.command("AT+CMGL=4")
            self.assertEqual(read_incoming_sms(lines[2])["content"], "hi")
        finally:
            port.loseConnection()
            await term.lost
        await stop()
        self.assertFalse(os.path.lexists(link))
