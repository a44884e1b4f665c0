"""Tests for protocols.at: the AT dialogue driven with bytes and times, as a modem sends them.

The transcripts are written the way the modems write: Huawei E173-style sticks (``^RSSI`` and
``^BOOT`` chatter, ``COMMAND NOT SUPPORT``), Wavecom Fastracks (``+CMS ERROR`` in answer to
``AT+CMGS``, ``+WIND``), SIMCom SIM800s (``RDY``, ``+CFUN: 1``, ``+CPIN: READY``, ``Call Ready``,
``SMS Ready`` after a restart): ``\\r\\n`` around every answer line, the echo of a command ending in
``\\r``, the prompt ``\\r\\n> `` with no line end.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import at
from protocols.at import Noise, Response, Timeout, Urc

relaxed = settings(deadline=None)  # property tests check behaviour, never timing

# An SMS-SUBMIT to +4917612345678, "hello", and the AT+CMGS length for it (no SMSC prefix).
SUBMIT = "0011000D91947116325476F80000AA05E8329BFD06"
SUBMIT_LENGTH = len(SUBMIT) // 2 - 1
PAYLOAD = SUBMIT.encode("ascii") + b"\x1a"
CMGS = f"AT+CMGS={SUBMIT_LENGTH}"
# An SMS-DELIVER and an SMS-STATUS-REPORT as a modem hands them over (with SMSC prefix).
DELIVER = "07919471000000F0040C919471163254760000521080214365000AE8329BFD4697D9EC37"
REPORT = "07919471000000F006290D91947116325476F8521080214365005210802143750000"


def session(*lines: str, timeout: float = 5.0, now: float = 0.0) -> at.AtSession:
    """A session with ``lines`` queued (tags are the lines), the first one already written."""
    s = at.AtSession()
    for line in lines:
        s.command(line, now, timeout=timeout, tag=line)
    s.data_to_send()
    return s


def feed(s: at.AtSession, data: bytes, now: float = 0.0) -> list[at.Event]:
    return s.receive(data, now)


def ok(command: str, *lines: str, tag: Any = None) -> Response:
    return Response(command, tag if tag is not None else command, True, "OK", None, "", lines)


# Queue and writing ------------------------------------------------------------------------


def test_one_command_in_flight_the_rest_in_order():
    s = at.AtSession()
    assert not s.busy and s.in_flight is None and s.next_deadline() is None
    s.command("AT", 10.0, timeout=2.0, tag=1)
    s.command("AT+CSQ", 10.5, timeout=3.0, tag=2)
    s.command("ATI", 10.6, timeout=4.0, tag=3)
    assert s.data_to_send() == b"AT\r"
    assert s.data_to_send() == b""  # once
    assert s.busy and s.in_flight == "AT" and s.next_deadline() == 12.0
    assert feed(s, b"\r\nOK\r\n", 11.0) == [ok("AT", tag=1)]
    assert s.data_to_send() == b"AT+CSQ\r"
    assert s.in_flight == "AT+CSQ" and s.next_deadline() == 14.0  # counted from the write
    assert feed(s, b"\r\n+CSQ: 17,99\r\n\r\nOK\r\n", 11.5) == [ok("AT+CSQ", "+CSQ: 17,99", tag=2)]
    assert s.data_to_send() == b"ATI\r"
    assert feed(s, b"\r\nE173\r\n\r\nOK\r\n", 12.0) == [ok("ATI", "E173", tag=3)]
    assert s.data_to_send() == b""
    assert not s.busy and s.in_flight is None and s.next_deadline() is None


def test_next_command_goes_out_in_the_same_read_as_the_final_code():
    s = session("AT+CMGD=1", "AT+CMGD=2")
    events = feed(s, b"\r\nOK\r\n\r\nOK\r\n")
    assert events == [ok("AT+CMGD=1"), ok("AT+CMGD=2")]
    assert s.data_to_send() == b"AT+CMGD=2\r"


@pytest.mark.parametrize("line", ["", "  ", "AT\r", "AT\nAT", "AT\x1a", "AT\x1b", 'AT+CUSD=1,"€"'])
def test_a_line_that_cannot_be_sent_is_refused(line):
    s = at.AtSession()
    with pytest.raises(ValueError):
        s.command(line, 0.0, timeout=1.0)
    assert not s.busy and s.data_to_send() == b""


# AT+CMGS ----------------------------------------------------------------------------------


def cmgs_session() -> at.AtSession:
    s = at.AtSession()
    s.command(CMGS, 0.0, timeout=30.0, payload=PAYLOAD, tag="sms")
    assert s.data_to_send() == CMGS.encode() + b"\r"
    return s


CMTI = Urc("+CMTI", '"SM",3')
RSSI = Urc("^RSSI", "14")


def test_cmgs_echo_off_with_urcs_before_the_prompt_and_before_ok():
    s = cmgs_session()
    assert feed(s, b'\r\n+CMTI: "SM",3\r\n') == [CMTI]
    assert s.data_to_send() == b""  # no prompt yet
    assert feed(s, b"\r\n^RSSI:14\r\n\r\n> ") == [RSSI]
    assert s.data_to_send() == PAYLOAD
    assert feed(s, b"\r\n+CMGS: 41\r\n") == []
    assert feed(s, b'\r\n^RSSI:14\r\n\r\n+CMTI: "SM",3\r\n') == [RSSI, CMTI]
    assert feed(s, b"\r\nOK\r\n") == [ok(CMGS, "+CMGS: 41", tag="sms")]
    assert s.data_to_send() == b"" and not s.busy


def test_cmgs_echo_on_with_urcs_before_the_prompt_and_before_ok():
    s = cmgs_session()
    echo = CMGS.encode() + b"\r"
    assert feed(s, echo + b'\r\n+CMTI: "SM",3\r\n\r\n^RSSI:14\r\n\r\n> ') == [CMTI, RSSI]
    assert s.data_to_send() == PAYLOAD
    assert feed(s, PAYLOAD) == []  # the modem echoes the PDU after the prompt
    events = feed(s, b'\r\n+CMGS: 41\r\n\r\n^RSSI:14\r\n\r\n+CMTI: "SM",3\r\n\r\nOK\r\n')
    assert events == [RSSI, CMTI, ok(CMGS, "+CMGS: 41", tag="sms")]


def test_cmgs_payload_echoed_on_a_line_of_its_own_and_prompt_without_space():
    s = cmgs_session()
    assert feed(s, b"\r\n>") == []
    assert s.data_to_send() == PAYLOAD
    assert feed(s, b"\r\n" + SUBMIT.lower().encode() + b"\r\n+CMGS: 7\r\n\r\nOK\r\n") == [
        ok(CMGS, "+CMGS: 7", tag="sms")
    ]


def test_cmgs_prompt_line_ends_before_the_answer():
    s = cmgs_session()
    assert feed(s, b"\r\n> \r\n") == []
    assert s.data_to_send() == PAYLOAD
    assert feed(s, b"> +CMGS: 8\r\n\r\nOK\r\n") == [ok(CMGS, "+CMGS: 8", tag="sms")]


def test_cmgs_refused_before_the_prompt_sends_no_payload():
    s = cmgs_session()
    assert feed(s, b"\r\n+CMS ERROR: 330\r\n") == [
        Response(CMGS, "sms", False, "CMS", 330, "SMSC address unknown", ())
    ]
    assert s.data_to_send() == b""


def test_payload_goes_out_once():
    s = cmgs_session()
    feed(s, b"\r\n> ")
    assert s.data_to_send() == PAYLOAD
    assert feed(s, b"\r\n> \r\n>\r\n") == []
    assert s.data_to_send() == b""


def test_text_mode_payload_echo_of_several_lines():
    s = at.AtSession()
    s.command(
        'AT+CMGS="+4917612345678"', 0.0, timeout=9.0, payload=b"line one\rline two\x1a", tag=7
    )
    s.data_to_send()
    feed(s, b'AT+CMGS="+4917612345678"\r\r\n> ')
    assert s.data_to_send() == b"line one\rline two\x1a"
    events = feed(s, b"line one\r\n> line two\x1a\r\n+CMGS: 9\r\n\r\nOK\r\n")
    assert events == [ok('AT+CMGS="+4917612345678"', "+CMGS: 9", tag=7)]


def test_stray_prompt_is_noise():
    s = at.AtSession()
    assert feed(s, b"\r\n> \r\n") == [Noise(">")]
    s = session("AT+CSQ")
    assert feed(s, b"\r\n> ") == []
    assert s.data_to_send() == b""
    assert feed(s, b"\r\n+CSQ: 3,99\r\n\r\nOK\r\n") == [Noise(">"), ok("AT+CSQ", "+CSQ: 3,99")]


# Echo -------------------------------------------------------------------------------------


def test_echo_is_dropped_with_trailing_spaces_and_any_case():
    s = session("AT+CREG?", "at+csq")
    assert feed(s, b"AT+CREG?  \r\r\n+CREG: 0,1\r\n\r\nOK\r\n") == [ok("AT+CREG?", "+CREG: 0,1")]
    assert feed(s, b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n") == [ok("at+csq", "+CSQ: 20,99")]


def test_echo_of_ate0_itself():
    s = session("ATE0")
    assert feed(s, b"ATE0\r\r\nOK\r\n") == [ok("ATE0")]


# Responses and URCs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "line", "idle"),
    [
        ("AT+CREG?", "+CREG: 0,1", Urc("+CREG", "0,1")),
        ("AT+CPIN?", "+CPIN: READY", Urc("+CPIN", "READY")),
        ("AT+CGREG?", "+CGREG: 0,5", Urc("+CGREG", "0,5")),
        (
            'AT+CUSD=1,"*100#",15',
            '+CUSD: 0,"Balance: 5 EUR",15',
            Urc("+CUSD", '0,"Balance: 5 EUR",15'),
        ),
        ("AT+CFUN?", "+CFUN: 1", Urc("+CFUN", "1")),
        ("AT^SYSCFG?", "^SYSCFG:2,2,3FFFFFFF,1,2", Noise("^SYSCFG:2,2,3FFFFFFF,1,2")),
    ],
)
def test_a_urc_prefix_is_a_response_line_for_its_own_command(command, line, idle):
    s = session(command)
    assert feed(s, f"\r\n{line}\r\n\r\nOK\r\n".encode()) == [ok(command, line)]
    assert feed(s, f"\r\n{line}\r\n".encode()) == [idle]  # nothing in flight


def test_a_urc_while_another_command_is_in_flight():
    s = session("AT+CSQ")
    assert feed(s, b"\r\n+CREG: 1\r\n+CPIN: READY\r\n+CSQ: 9,99\r\nOK\r\n") == [
        Urc("+CREG", "1"),
        Urc("+CPIN", "READY"),
        ok("AT+CSQ", "+CSQ: 9,99"),
    ]


@pytest.mark.parametrize(
    ("line", "urc"),
    [
        ('+CMTI: "SM",3', Urc("+CMTI", '"SM",3')),
        ('+CDSI: "SR",1', Urc("+CDSI", '"SR",1')),
        ("+CREG: 1", Urc("+CREG", "1")),
        ("+CGREG: 1", Urc("+CGREG", "1")),
        ("RING", Urc("RING", "")),
        ("^RSSI:17", Urc("^RSSI", "17")),
        ("^BOOT:12071345,0,0,0,75", Urc("^BOOT", "12071345,0,0,0,75")),
        ("^MODE:5,4", Urc("^MODE", "5,4")),
        ("^SIMST:1", Urc("^SIMST", "1")),
        ("^SRVST:2", Urc("^SRVST", "2")),
        ('+CUSD: 0,"Balance",15', Urc("+CUSD", '0,"Balance",15')),
        ("+CIEV: 2,3", Urc("+CIEV", "2,3")),
        ("+CPIN: NOT READY", Urc("+CPIN", "NOT READY")),
        ("RDY", Urc("RDY", "")),
        ("SMS Ready", Urc("SMS Ready", "")),
        ("Call Ready", Urc("Call Ready", "")),
        ("+CSQN: 20,99", Urc("+CSQN", "20,99")),
        ("^SYSSTART", Urc("^SYSSTART", "")),
        ("+WIND: 4", Urc("+WIND", "4")),
        ("NO CARRIER", Urc("NO CARRIER", "")),
    ],
)
def test_urcs_idle_and_while_a_command_is_in_flight(line, urc):
    assert feed(at.AtSession(), f"\r\n{line}\r\n".encode()) == [urc]
    if urc.name == "NO CARRIER":
        return  # a final code when a command is in flight
    s = session("AT+CSQ")
    events = feed(s, f"\r\n+CSQ: 9,99\r\n\r\n{line}\r\n\r\nOK\r\n".encode())
    assert events == [urc, ok("AT+CSQ", "+CSQ: 9,99")]


def test_urc_case_and_spacing():
    assert feed(at.AtSession(), b'+cmti : "ME" , 12\r\n') == [Urc("+CMTI", '"ME" , 12')]
    assert feed(at.AtSession(), b"sms ready\r\n") == [Urc("SMS Ready", "")]


def test_lines_without_prefix_are_information_lines():
    s = session("AT+CGMI", "AT+CGSN", "ATI")
    assert feed(s, b"\r\nhuawei\r\n\r\nOK\r\n") == [ok("AT+CGMI", "huawei")]
    assert feed(s, b"\r\n356640041234567\r\n\r\nOK\r\n") == [ok("AT+CGSN", "356640041234567")]
    events = feed(
        s, b"\r\nManufacturer: huawei\r\nModel: E173\r\n+GCAP: +CGSM,+DS,+ES\r\n\r\nOK\r\n"
    )
    assert events == [ok("ATI", "Manufacturer: huawei", "Model: E173", "+GCAP: +CGSM,+DS,+ES")]


def test_idle_lines_that_are_no_urc_are_noise():
    s = at.AtSession()
    events = feed(s, b"\r\nOK\r\n+CSQ: 3,99\r\nhello\r\n+CMS ERROR: 500\r\nBUSY\r\n")
    assert events == [
        Noise("OK"),
        Noise("+CSQ: 3,99"),
        Noise("hello"),
        Noise("+CMS ERROR: 500"),
        Noise("BUSY"),
    ]


def test_empty_lines_and_padding_are_ignored():
    s = session("AT")
    assert feed(s, b"\r\n\r\n\n\r  \t\r\n\x00\x00\r\n\x1a\r\nOK  \r\n") == [ok("AT")]


# +CMT, +CDS and their PDU line -----------------------------------------------------------


def test_cmt_and_cds_take_the_next_line_while_idle():
    s = at.AtSession()
    assert feed(s, b"\r\n+CMT: ,37\r\n") == []
    assert feed(s, DELIVER.encode() + b"\r\n") == [Urc("+CMT", ",37", DELIVER)]
    events = feed(
        s,
        b'\r\n+CMT: "",37\r\n' + DELIVER.encode() + b"\r\n+CDS: 25\r\n" + REPORT.encode() + b"\r\n",
    )
    assert events == [Urc("+CMT", '"",37', DELIVER), Urc("+CDS", "25", REPORT)]


def test_cmt_and_cds_take_the_next_line_while_a_command_is_in_flight():
    s = session("AT+CSQ", CMGS)
    data = b"\r\n+CMT: ,37\r\n" + DELIVER.encode() + b"\r\n+CSQ: 9,99\r\n"
    data += b"\r\n+CDS: 25\r\n" + REPORT.encode() + b"\r\n\r\nOK\r\n"
    assert feed(s, data) == [
        Urc("+CMT", ",37", DELIVER),
        Urc("+CDS", "25", REPORT),
        ok("AT+CSQ", "+CSQ: 9,99"),
    ]


def test_cmt_between_cmgs_and_its_prompt():
    s = cmgs_session()
    assert feed(s, b"\r\n+CMT: ,37\r\n" + DELIVER.encode() + b"\r\n\r\n> ") == [
        Urc("+CMT", ",37", DELIVER)
    ]
    assert s.data_to_send() == PAYLOAD


def test_cmt_whose_pdu_was_lost():
    s = session("AT")
    assert feed(s, b"\r\n+CMT: ,37\r\n\r\nOK\r\n") == [Urc("+CMT", ",37", None), ok("AT")]
    s = at.AtSession()
    assert feed(s, b'+CDS: 25\r\n+CMTI: "SM",1\r\n') == [
        Urc("+CDS", "25", None),
        Urc("+CMTI", '"SM",1'),
    ]


def test_text_mode_cds_is_one_line():
    s = at.AtSession()
    line = '+CDS: 6,41,"+4917612345678",145,"25/01/08,12:34:56+04","25/01/08,12:34:57+04",0'
    assert feed(s, line.encode() + b"\r\n") == [Urc("+CDS", line[6:])]


def test_cmgr_and_cmgl_keep_their_pdu_lines():
    s = session("AT+CMGR=3", "AT+CMGL=4")
    events = feed(s, b"AT+CMGR=3\r\r\n+CMGR: 0,,37\r\n" + DELIVER.encode() + b"\r\n\r\nOK\r\n")
    assert events == [ok("AT+CMGR=3", "+CMGR: 0,,37", DELIVER)]
    assert s.data_to_send() == b"AT+CMGL=4\r"
    data = b"\r\n+CMGL: 1,0,,37\r\n" + DELIVER.encode() + b"\r\n"
    data += b'\r\n+CMTI: "SM",3\r\n'
    data += b"+CMGL: 3,1,,37\r\n" + DELIVER.lower().encode() + b"\r\n\r\nOK\r\n"
    assert feed(s, data) == [
        CMTI,
        ok("AT+CMGL=4", "+CMGL: 1,0,,37", DELIVER, "+CMGL: 3,1,,37", DELIVER.lower()),
    ]


# Final result codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "result", "code", "text"),
    [
        ("OK", "OK", None, ""),
        ("ERROR", "ERROR", None, "ERROR"),
        ("NO CARRIER", "NO CARRIER", None, "NO CARRIER"),
        ("BUSY", "BUSY", None, "BUSY"),
        ("NO ANSWER", "NO ANSWER", None, "NO ANSWER"),
        ("NO DIALTONE", "NO DIALTONE", None, "NO DIALTONE"),
        ("NO DIAL TONE", "NO DIALTONE", None, "NO DIALTONE"),
        ("COMMAND NOT SUPPORT", "COMMAND NOT SUPPORT", None, "COMMAND NOT SUPPORT"),
        ("TOO MANY PARAMETERS", "TOO MANY PARAMETERS", None, "TOO MANY PARAMETERS"),
        ("+CMS ERROR: 304", "CMS", 304, "invalid PDU mode parameter"),
        ("+CMS ERROR:500", "CMS", 500, "unknown error"),
        ("+CMS ERROR: 42", "CMS", 42, "network congestion"),
        ("+CMS ERROR: 192", "CMS", 0xC0, "service centre busy"),
        ("+CMS ERROR: 7", "CMS", 7, "network cause 7"),
        ("+CMS ERROR: 225", "CMS", 225, "service centre cause 0xE1"),
        ("+CMS ERROR: 535", "CMS", 535, "manufacturer-specific error"),
        ("+CMS ERROR: 399", "CMS", 399, ""),
        ("+CMS ERROR: Invalid PDU mode parameter", "CMS", None, "Invalid PDU mode parameter"),
        ("+CME ERROR: 10", "CME", 10, "SIM not inserted"),
        ("+CME ERROR: 14", "CME", 14, "SIM busy"),
        ("+CME ERROR: 100", "CME", 100, "unknown"),
        ("+CME ERROR: 99", "CME", 99, ""),
        ("+CME ERROR: 772", "CME", 772, "manufacturer-specific error"),
        ("+CME ERROR: SIM PIN required", "CME", None, "SIM PIN required"),
        ('+CME ERROR: "operation not allowed"', "CME", None, "operation not allowed"),
        ("+CME ERROR", "CME", None, ""),
        ("ok", "OK", None, ""),
    ],
)
def test_every_final_code(line, result, code, text):
    s = session("AT+CPIN?", "AT")
    events = feed(s, f"\r\n+CPIN: SIM PIN\r\n\r\n{line}\r\n".encode())
    assert events == [
        Response("AT+CPIN?", "AT+CPIN?", result == "OK", result, code, text, ("+CPIN: SIM PIN",))
    ]
    assert s.in_flight == "AT"


def test_numeric_result_codes_of_atv0_are_information_lines():
    """ATV0 is not supported (init sends ATV1 / ATZ): a lone "0" or "4" is an ordinary line,
    never mistaken for a final code in an answer such as AT+CMGF?'s "0" on some modems."""
    s = session("AT+CSCS?")
    assert feed(s, b"\r\n0\r\n\r\nOK\r\n") == [ok("AT+CSCS?", "0")]


def test_cms_and_cme_tables():
    for code in (304, 305, 310, 311, 313, 314, 315, 316, 322, 330, 331, 332, 500):
        assert at.CMS_ERRORS[code]
    for code in (1, 8, 10, 21, 38, 41, 42, 47, 96, 111, 0xC0, 0xC3, 0xD0):
        assert at.CMS_ERRORS[code]
    assert {0, 3, 4, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22, 23, 30, 31, 100} <= set(
        at.CME_ERRORS
    )
    assert at.CME_ERRORS[11] == "SIM PIN required"


def failed(result: str, code: int | None = None, text: str = "") -> Response:
    return Response("AT+CMGS=23", None, False, result, code, text, ())


@pytest.mark.parametrize(
    "code", [314, 331, 332, 500, 535, 38, 41, 42, 47, 22, 27, 0xC0, 0xC2, 0xD0, 0xFF, 300, 302, 322]
)
def test_transient_cms(code):
    assert at.transient(failed("CMS", code))


@pytest.mark.parametrize(
    "code", [304, 305, 310, 311, 313, 315, 316, 317, 330, 1, 8, 10, 21, 96, 111, 127, 0x80, 0xC3]
)
def test_permanent_cms(code):
    assert not at.transient(failed("CMS", code))


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (14, True),
        (30, True),
        (31, True),
        (100, True),
        (3, True),
        (20, True),
        (10, False),
        (11, False),
        (12, False),
        (13, False),
        (15, False),
        (16, False),
        (4, False),
        (50, False),
    ],
)
def test_transient_cme(code, expected):
    assert at.transient(failed("CME", code)) is expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (failed("ERROR", text="ERROR"), True),
        (failed("NO CARRIER", text="NO CARRIER"), True),
        (failed("COMMAND NOT SUPPORT", text="COMMAND NOT SUPPORT"), False),
        (failed("TOO MANY PARAMETERS", text="TOO MANY PARAMETERS"), False),
        (failed("CME", None, "SIM PIN required"), False),
        (failed("CME", None, "SIM busy"), True),
        (failed("CME", None, "something odd"), True),
        (failed("CMS", None, "Invalid PDU mode parameter"), False),
        (failed("CMS", None, "(U)SIM not inserted"), False),
        (failed("CMS", None, "SIM busy"), True),
        (failed("CMS", None, "Temporary failure"), True),
        (failed("CMS", None, "Unassigned (unallocated) number."), False),
        (ok("AT"), False),
    ],
)
def test_transient_other_results(response, expected):
    assert at.transient(response) is expected


# Timeouts and resynchronising -------------------------------------------------------------


def test_timeout_fails_the_queue_and_resyncs_before_the_next_command():
    s = at.AtSession()
    s.command("AT+CSQ", 0.0, timeout=2.0, tag=1)
    s.command("AT+CREG?", 0.1, timeout=2.0, tag=2)
    s.command("AT", 0.2, timeout=2.0, tag=3)
    assert s.data_to_send() == b"AT+CSQ\r"
    assert s.expired(1.99) == [] and s.busy
    assert s.expired(2.0) == [
        Timeout("AT+CSQ", 1, (), False),
        Timeout("AT+CREG?", 2, (), False),
        Timeout("AT", 3, (), False),
    ]
    assert s.data_to_send() == b""  # no prompt: no ESC
    assert not s.busy and s.next_deadline() is None
    s.command("AT+CGMI", 2.1, timeout=2.0, tag=4)
    assert s.data_to_send() == b"" and s.busy and s.in_flight is None
    assert s.next_deadline() == 2.5
    # The late answer to AT+CSQ is noise, and each byte restarts the quiet time.
    assert feed(s, b"\r\n+CSQ: 17,99\r\n\r\nOK\r\n", 2.3) == [Noise("+CSQ: 17,99"), Noise("OK")]
    assert s.next_deadline() == 2.8
    assert s.expired(2.79) == [] and s.data_to_send() == b""
    assert s.expired(2.8) == []
    assert s.data_to_send() == b"AT+CGMI\r"
    assert s.next_deadline() == 4.8
    assert feed(s, b"\r\nhuawei\r\n\r\nOK\r\n", 3.0) == [ok("AT+CGMI", "huawei", tag=4)]


def test_timeout_keeps_the_lines_that_came():
    s = session("ATI", timeout=1.0)
    feed(s, b"\r\nManufacturer: huawei\r\n")
    assert s.expired(1.0) == [Timeout("ATI", "ATI", ("Manufacturer: huawei",), False)]


def test_timeout_after_the_prompt_writes_esc():
    s = cmgs_session()
    feed(s, b"\r\n> ", 1.0)
    assert s.data_to_send() == PAYLOAD
    assert s.expired(29.9) == []
    assert s.expired(30.0) == [Timeout(CMGS, "sms", (), True)]
    assert s.data_to_send() == at.ESC


def test_timeout_before_the_prompt():
    s = cmgs_session()
    feed(s, b'\r\n+CMTI: "SM",3\r\n', 1.0)
    assert s.expired(31.0) == [Timeout(CMGS, "sms", (), False)]
    assert s.data_to_send() == b""
    # A prompt that comes late is noise: the payload is not sent any more.
    assert feed(s, b"\r\n> \r\n", 31.1) == [Noise(">")]
    assert s.data_to_send() == b""


def test_resync_reports_urcs_but_not_those_named_like_the_dead_command():
    s = session("AT+CREG?", timeout=1.0)
    s.expired(1.0)
    data = b'\r\n+CREG: 0,1\r\n\r\nOK\r\n\r\n+CMTI: "SM",3\r\n\r\n+CMT: ,37\r\n' + DELIVER.encode()
    assert feed(s, data + b"\r\n", 1.2) == [
        Noise("+CREG: 0,1"),
        Noise("OK"),
        CMTI,
        Urc("+CMT", ",37", DELIVER),
    ]


def test_resync_drops_a_partial_line_left_over():
    s = session("AT+CSQ", timeout=1.0)
    s.expired(1.0)
    s.command("AT", 1.0, timeout=1.0, tag="next")
    feed(s, b"\r\nOK", 1.1)  # no line end
    assert s.expired(1.6) == []
    assert s.data_to_send() == b"AT\r"
    assert feed(s, b"\r\nOK\r\n", 1.7) == [Noise("OK"), ok("AT", tag="next")]


def test_a_modem_that_never_falls_silent_fails_the_waiting_command():
    s = session("AT+CSQ", timeout=1.0)
    s.expired(1.0)
    s.command("AT", 1.0, timeout=3.0, tag="ping")
    for i in range(1, 15):
        assert feed(s, b"\xff\x00garbage\r\n", 1.0 + 0.2 * i) == [Noise("\xff\x00garbage")]
    assert s.data_to_send() == b""
    assert s.next_deadline() == 4.0
    assert s.expired(3.99) == []
    assert s.expired(4.0) == [Timeout("AT", "ping", (), False)]
    assert not s.busy and s.data_to_send() == b""


def test_command_queued_after_the_quiet_time_goes_out_at_once():
    s = session("AT+CSQ", timeout=1.0)
    s.expired(1.0)
    s.command("AT", 5.0, timeout=1.0)
    assert s.data_to_send() == b"AT\r"


def test_abort_drops_everything_and_writes_esc_at_the_prompt():
    s = at.AtSession()
    s.command(CMGS, 0.0, timeout=30.0, payload=PAYLOAD, tag="sms")
    s.command("AT+CSQ", 0.0, timeout=3.0, tag="csq")
    feed(s, b"\r\n> ")
    assert s.data_to_send() == CMGS.encode() + b"\r" + PAYLOAD
    feed(s, b"\r\n+CMT: ,37\r\n0791")
    assert s.abort() == [
        Timeout(CMGS, "sms", (), True),
        Timeout("AT+CSQ", "csq", (), False),
        Noise("+CMT: ,37"),
        Noise("0791"),
    ]
    assert s.data_to_send() == at.ESC
    assert not s.busy and s.next_deadline() is None
    assert s.abort() == []
    # The session resyncs: the next command waits for QUIET seconds of silence.
    s.command("AT", 100.0, timeout=1.0)
    assert s.data_to_send() == b"" and s.next_deadline() == 100.5
    s.expired(100.5)
    assert s.data_to_send() == b"AT\r"


def test_abort_without_prompt_or_idle():
    s = session("AT+CSQ")
    assert s.abort() == [Timeout("AT+CSQ", "AT+CSQ", (), False)]
    assert s.data_to_send() == b""
    s = at.AtSession()
    assert s.abort() == []
    s.command("AT", 0.0, timeout=1.0)
    assert s.data_to_send() == b"AT\r"  # nothing was in flight: no resync


# Line ends, splitting, noise --------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n", b"\n\r"])
def test_line_ends(eol):
    s = session("AT+CSQ")
    data = b"AT+CSQ\r" + eol + b"+CSQ: 9,99" + eol + eol + b'+CMTI: "SM",3' + eol + b"OK" + eol
    assert feed(s, data) == [CMTI, ok("AT+CSQ", "+CSQ: 9,99")]


def test_overlong_line_is_cut_and_reported_as_noise():
    s = session("AT+CSQ")
    long = b"A" * 5000
    assert feed(s, b"\r\n" + long + b"\r\n+CSQ: 9,99\r\nOK\r\n") == [
        Noise("A" * at.MAX_LINE),
        ok("AT+CSQ", "+CSQ: 9,99"),
    ]
    s = session("AT+CSQ")
    events = []
    for _ in range(20):
        events += feed(s, b"B" * 1000)
    assert events == [Noise("B" * at.MAX_LINE)]
    assert feed(s, b"BBB\r\nOK\r\n") == [ok("AT+CSQ")]
    assert len(s._buffer) == 0


def test_binary_noise_and_nuls():
    s = at.AtSession()
    events = feed(s, b"\x00\xff\xfe\x80\r\n\x00\x00OK\x00\r\n\x07\x08\r\n")
    assert events == [Noise("\xff\xfe\x80"), Noise("OK"), Noise("\x07\x08")]
    s = session("AT")
    assert feed(s, b"\xff\xfe\r\nOK\r\n") == [ok("AT", "\xff\xfe")]


# Transcripts ------------------------------------------------------------------------------

Step = tuple[Any, ...]

HUAWEI_E173: list[Step] = [
    ("rx", b"\r\n^RSSI:17\r\n\r\n^BOOT:12071345,0,0,0,75\r\n\r\n^MODE:5,4\r\n"),
    ("cmd", "ATI", {}),
    ("rx", b"ATI\r\r\nManufacturer: huawei\r\nModel: E173\r\nRevision: 11.126.85.00.209\r\n"),
    ("rx", b"IMEI: 356640041234567\r\n+GCAP: +CGSM,+DS,+ES\r\n\r\nOK\r\n"),
    ("cmd", "AT+CNMI=2,1,0,2,0", {}),
    ("rx", b"AT+CNMI=2,1,0,2,0\r\r\n^BOOT:12071345,0,0,0,75\r\n\r\nOK\r\n"),
    ("cmd", "AT+CSCB=1", {}),
    ("rx", b"AT+CSCB=1\r\r\nCOMMAND NOT SUPPORT\r\n"),
    ("cmd", "AT+CSQ", {}),
    ("rx", b"AT+CSQ\r\r\n+CSQ: 14,99\r\n\r\n^RSSI:14\r\n\r\nOK\r\n"),
    ("cmd", CMGS, {"payload": PAYLOAD, "timeout": 60.0}),
    ("rx", CMGS.encode() + b"\r\r\n^RSSI:14\r\n\r\n> "),
    ("rx", PAYLOAD + b"\r\n^DSFLOWRPT:0000001E,00000000,00000000,0000000000000000\r\n"),
    ("rx", b"\r\n+CMGS: 41\r\n\r\n^BOOT:12071345,0,0,0,75\r\n\r\nOK\r\n"),
    ("rx", b'\r\n^SRVST:2\r\n\r\n+CMTI: "SM",0\r\n\r\n^SIMST:1\r\n'),
]

WAVECOM_FASTRACK: list[Step] = [
    ("rx", b"\r\n+WIND: 3\r\n\r\n+WIND: 4\r\n"),
    ("cmd", "AT+CMEE=1", {}),
    ("rx", b"AT+CMEE=1\r\r\nOK\r\n"),
    ("cmd", "AT+CMGS=9", {"payload": b"0011000B91947116325476F8\x1a"}),
    ("rx", b"AT+CMGS=9\r\r\n> "),
    ("rx", b"0011000B91947116325476F8\x1a\r\n+CMS ERROR: 304\r\n"),
    ("cmd", CMGS, {"payload": PAYLOAD}),
    ("rx", CMGS.encode() + b"\r\r\n> " + PAYLOAD),
    ("rx", b'\r\n+CMS ERROR: 42\r\n\r\n+CMTI: "SM",2\r\n'),
    ("cmd", "AT+CPMS?", {}),
    ("rx", b'AT+CPMS?\r\r\n+CPMS: "SM",2,20,"SM",2,20,"SM",2,20\r\n\r\nOK\r\n'),
]

SIMCOM_SIM800: list[Step] = [
    ("cmd", "AT+CFUN=1,1", {}),
    ("rx", b"AT+CFUN=1,1\r\r\nOK\r\n"),
    ("rx", b"\x00\x00\xf8\xff\x00"),
    ("rx", b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n"),
    ("cmd", "AT", {}),
    ("rx", b"AT\r\r\nOK\r\n\r\nCall Ready\r\n\r\nSMS Ready\r\n"),
    ("cmd", "AT+CPIN?", {}),
    ("rx", b"AT+CPIN?\r\r\n+CPIN: READY\r\n\r\nOK\r\n"),
    ("cmd", "AT+CMGR=1", {}),
    ("rx", b'AT+CMGR=1\r\r\n+CMGR: 0,"",37\r\n' + DELIVER.encode() + b"\r\n\r\nOK\r\n"),
    ("rx", b"\r\n+CDS: 25\r\n" + REPORT.encode() + b"\r\n"),
    ("cmd", "AT+CMGD=1", {"timeout": 1.0}),
    ("tick", 2.0),
    ("rx", b"AT+CMGD=1\r\r\nOK\r\n"),  # too late: noise during the quiet time
    ("cmd", "AT+CSQ", {}),
    ("tick", 0.6),
    ("rx", b"AT+CSQ\r\r\n+CSQ: 21,0\r\n\r\nOK\r\n"),
]


def play(script: list[Step], split: str | int = "whole") -> tuple[list[at.Event], bytes]:
    """Run ``script``, feeding each read whole, a byte at a time, or cut at ``split``."""
    s = at.AtSession()
    now = 0.0
    events: list[at.Event] = []
    wire = b""
    for step in script:
        if step[0] == "cmd":
            kwargs = {"timeout": 5.0, **step[2]}
            s.command(step[1], now, tag=step[1], **kwargs)
        elif step[0] == "tick":
            now += step[1]
            events += s.expired(now)
        else:
            data = step[1]
            if split == "whole":
                chunks = [data]
            elif split == "bytes":
                chunks = [data[i : i + 1] for i in range(len(data))]
            else:
                chunks = [data[:split], data[split:]]
            for chunk in chunks:
                events += s.receive(chunk, now)
        wire += s.data_to_send()
        now += 0.01
    return events, wire


def test_huawei_transcript():
    events, wire = play(HUAWEI_E173)
    assert events == [
        Urc("^RSSI", "17"),
        Urc("^BOOT", "12071345,0,0,0,75"),
        Urc("^MODE", "5,4"),
        ok(
            "ATI",
            "Manufacturer: huawei",
            "Model: E173",
            "Revision: 11.126.85.00.209",
            "IMEI: 356640041234567",
            "+GCAP: +CGSM,+DS,+ES",
        ),
        Urc("^BOOT", "12071345,0,0,0,75"),
        ok("AT+CNMI=2,1,0,2,0"),
        Response(
            "AT+CSCB=1", "AT+CSCB=1", False, "COMMAND NOT SUPPORT", None, "COMMAND NOT SUPPORT", ()
        ),
        Urc("^RSSI", "14"),
        ok("AT+CSQ", "+CSQ: 14,99"),
        Urc("^RSSI", "14"),
        Urc("^DSFLOWRPT", "0000001E,00000000,00000000,0000000000000000"),
        Urc("^BOOT", "12071345,0,0,0,75"),
        ok(CMGS, "+CMGS: 41"),
        Urc("^SRVST", "2"),
        Urc("+CMTI", '"SM",0'),
        Urc("^SIMST", "1"),
    ]
    assert wire == (
        b"ATI\rAT+CNMI=2,1,0,2,0\rAT+CSCB=1\rAT+CSQ\r" + CMGS.encode() + b"\r" + PAYLOAD
    )
    assert not at.transient(events[6])


def test_wavecom_transcript():
    events, wire = play(WAVECOM_FASTRACK)
    assert events == [
        Urc("+WIND", "3"),
        Urc("+WIND", "4"),
        ok("AT+CMEE=1"),
        Response("AT+CMGS=9", "AT+CMGS=9", False, "CMS", 304, "invalid PDU mode parameter", ()),
        Response(CMGS, CMGS, False, "CMS", 42, "network congestion", ()),
        Urc("+CMTI", '"SM",2'),
        ok("AT+CPMS?", '+CPMS: "SM",2,20,"SM",2,20,"SM",2,20'),
    ]
    assert not at.transient(events[3]) and at.transient(events[4])
    assert wire.count(b"\x1a") == 2


def test_simcom_transcript():
    events, wire = play(SIMCOM_SIM800)
    assert events == [
        ok("AT+CFUN=1,1"),
        Noise("\xf8\xff"),  # boot garbage; the line end that follows belongs to it
        Urc("RDY", ""),
        Urc("+CFUN", "1"),
        Urc("+CPIN", "READY"),
        ok("AT"),
        Urc("Call Ready", ""),
        Urc("SMS Ready", ""),
        ok("AT+CPIN?", "+CPIN: READY"),
        ok("AT+CMGR=1", '+CMGR: 0,"",37', DELIVER),
        Urc("+CDS", "25", REPORT),
        Timeout("AT+CMGD=1", "AT+CMGD=1", (), False),
        Noise("AT+CMGD=1"),
        Noise("OK"),
        ok("AT+CSQ", "+CSQ: 21,0"),
    ]
    assert wire.endswith(b"AT+CMGD=1\rAT+CSQ\r")


@pytest.mark.parametrize("script", [HUAWEI_E173, WAVECOM_FASTRACK, SIMCOM_SIM800])
def test_transcripts_give_the_same_events_however_the_reads_are_cut(script):
    whole = play(script)
    assert play(script, "bytes") == whole
    longest = max(len(step[1]) for step in script if step[0] == "rx")
    for cut in range(longest + 1):
        assert play(script, cut) == whole, cut


# fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('0,"SM","+4917612345678",145', ["0", "SM", "+4917612345678", "145"]),
        ('"SM",3', ["SM", "3"]),
        (",24", ["", "24"]),
        ('"a,b", c ,"d e"', ["a,b", "c", "d e"]),
        ("", []),
        ("  ", []),
        ("5", ["5"]),
        ('"unterminated,still', ["unterminated,still"]),
        ('("SM","ME"),(0-3),1', ['("SM","ME")', "(0-3)", "1"]),
        ('0,"Balance: 5,00 EUR",15', ["0", "Balance: 5,00 EUR", "15"]),
        ('"",', ["", ""]),
    ],
)
def test_fields(value, expected):
    assert at.fields(value) == expected


@given(st.text(max_size=60))
@relaxed
def test_fields_never_raises(value):
    assert isinstance(at.fields(value), list)


# Properties -------------------------------------------------------------------------------

TOKENS = [
    b"\r",
    b"\n",
    b"\r\n",
    b"> ",
    b">",
    b"OK",
    b"ERROR",
    b"+CMS ERROR: 304",
    b"+CME ERROR: SIM busy",
    b"NO CARRIER",
    b'+CMTI: "SM",3',
    b"+CMT: ,37",
    b"+CDS: 25",
    b"^RSSI:14",
    b"+CSQ: 9,99",
    b"+CMGS: 5",
    b"AT+CSQ",
    b"AT+CMGS=19",
    SUBMIT.encode(),
    b"\x1a",
    b"\x00",
    b"\xff\xfe",
    b"RDY",
    b"A" * 1500,
]
COMMANDS = ["AT", "AT+CSQ", "AT+CREG?", "ATI", "AT+CMGS=19", "AT+CMGL=4"]

noise = st.one_of(
    st.binary(max_size=80),
    st.lists(st.sampled_from(TOKENS), max_size=12).map(b"".join),
)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("cmd"),
            st.sampled_from(COMMANDS),
            st.booleans(),
            st.floats(min_value=0.0, max_value=5.0),
        ),
        st.tuples(st.just("rx"), noise),
        st.tuples(st.just("tick"), st.floats(min_value=0.0, max_value=3.0)),
        st.tuples(st.just("abort")),
    ),
    max_size=40,
)


@given(operations)
@relaxed
def test_random_input_never_raises_and_every_command_ends_once(ops):
    s = at.AtSession()
    now = 0.0
    tags = 0
    ended: list[Any] = []

    def record(events: list[at.Event]) -> None:
        for event in events:
            assert isinstance(event, Response | Timeout | Urc | Noise)
            if isinstance(event, Response | Timeout):
                ended.append(event.tag)

    for op in ops:
        if op[0] == "cmd":
            payload = PAYLOAD if op[2] else None
            s.command(op[1], now, timeout=op[3], payload=payload, tag=tags)
            tags += 1
        elif op[0] == "rx":
            record(s.receive(op[1], now))
        elif op[0] == "tick":
            now += op[1]
            record(s.expired(now))
        else:
            record(s.abort())
        assert isinstance(s.data_to_send(), bytes)
        assert not s.busy or s.next_deadline() is not None
    for _ in range(100):
        if not s.busy:
            break
        deadline = s.next_deadline()
        assert deadline is not None
        now = max(now, deadline)
        record(s.expired(now))
    assert not s.busy
    assert sorted(ended) == list(range(tags))


@given(operations, st.integers(min_value=1, max_value=7))
@relaxed
def test_random_input_gives_the_same_events_however_the_reads_are_cut(ops, step):
    def run(cut: int | None) -> tuple[list[at.Event], bytes]:
        s = at.AtSession()
        now = 0.0
        events: list[at.Event] = []
        wire = b""
        for i, op in enumerate(ops):
            if op[0] == "cmd":
                payload = PAYLOAD if op[2] else None
                s.command(op[1], now, timeout=op[3], payload=payload, tag=i)
            elif op[0] == "rx":
                data = op[1]
                size = cut or len(data) or 1
                for j in range(0, len(data), size):
                    events += s.receive(data[j : j + size], now)
            elif op[0] == "tick":
                now += op[1]
                events += s.expired(now)
            else:
                events += s.abort()
            wire += s.data_to_send()
        return events, wire

    assert run(step) == run(None)
