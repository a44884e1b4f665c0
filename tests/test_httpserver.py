"""HTTP/1.1 as clients see it from smsd's own server (smsd/channels/httpserver.py).

Each class runs one smsd (tests/process.py) with a small ``max_body`` and a
short ``idle_timeout``. curl, a client we did not write, sends what it can
express; raw sockets (127.0.0.1 only, every recv bounded by a timeout) send
what curl cannot: requests pipelined in one send(), HTTP/1.0 keep-alive,
oversized heads, garbage, bytes after a connection's last request. The tests
check what the client receives (status line, headers, body, the connection
closing) and, after the refusals, that smsd's log holds no traceback.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smsd.channels.httpserver import parse_query
from tests.process import need
from tests.test_http import CONFIG, HttpCase, form

MAX_BODY = 2048
SERVER_CONFIG = CONFIG.replace(
    "maxmsgs = 4", f'maxmsgs = 4\nmax_body = {MAX_BODY}\nidle_timeout = "1s"'
)
WAIT = 10.0  # seconds: the timeout of every raw socket call
MAX_READS = 100  # recv calls for one answer, at most
TRANSFER_END = re.compile(rb"\n@@ (\d+) @@\n")  # what curl -w writes after each transfer
FORM_TYPE = "Content-Type: application/x-www-form-urlencoded"
TEXT_TYPE = "text/plain; charset=utf-8"


@dataclass
class Reply:
    """One HTTP answer as the client received it."""

    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""
    interim: list[int] = field(default_factory=list)  # the 1xx answers before it
    connects: int = -1  # curl's num_connects: 0 when the transfer reused a connection

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, code, _reason = status_line.split(" ", 2)
    if version != "HTTP/1.1":
        raise AssertionError(f"not an HTTP/1.1 status line: {status_line!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(code), headers


def curl_replies(*args: str, stdin: bytes | None = None) -> list[Reply]:
    """curl -i with these options and URLs: one Reply per transfer, in order."""
    run = subprocess.run(
        [need("curl"), "-sS", "-i", "-w", "\n@@ %{num_connects} @@\n", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if run.returncode != 0:
        raise AssertionError(f"curl {args}: exit {run.returncode}: {run.stderr!r}")
    pieces = TRANSFER_END.split(run.stdout)  # output, connects, output, connects, ..., b""
    replies = []
    for out, connects in zip(pieces[0::2], pieces[1::2], strict=False):
        interim = []
        head, _, body = out.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        while 100 <= status < 200:  # curl -i shows 100 Continue before the answer
            interim.append(status)
            head, _, body = body.partition(b"\r\n\r\n")
            status, headers = parse_head(head)
        replies.append(Reply(status, headers, body, interim, int(connects)))
    return replies


def request(
    method: str, target: str, *headers: str, body: bytes = b"", version: str = "1.1"
) -> bytes:
    """One request's bytes; Content-Length is added for a body unless it is chunked."""
    lines = [f"{method} {target} HTTP/{version}", "Host: 127.0.0.1", *headers]
    if body and not any(h.lower().startswith("transfer-encoding:") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join([*lines, "", ""]).encode("latin-1") + body


def submit(number: str, text: str, *headers: str, **fields: str) -> bytes:
    """A urlencoded POST of the /sms/ form."""
    body = urlencode({"number": number, "data": text, **fields}).encode()
    return request("POST", "/sms/", FORM_TYPE, *headers, body=body)


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


class Raw:
    """One client connection for what curl cannot send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.buffer = b""  # received, not yet taken as an answer

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes, *, once: bool = False) -> None:
        """Send ``data``; ``once``: in a single send() call (requests in it are pipelined)."""
        if once:
            sent = self.sock.send(data)
            if sent != len(data):
                raise AssertionError(f"send() took {sent} of {len(data)} bytes")
        else:
            self.sock.sendall(data)

    def _recv(self) -> bytes:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""  # closed by a reset (bytes the server never read): closed all the same
        self.buffer += chunk
        return chunk

    def _fill(self, enough: Callable[[], bool]) -> None:
        for _ in range(MAX_READS):
            if enough():
                return
            if not self._recv():
                raise AssertionError(f"closed in the middle of an answer: {self.buffer[:300]!r}")
        raise AssertionError(f"no end of the answer in {MAX_READS} reads")

    def answer(self, *, head: bool = False) -> Reply:
        """The next answer; ``head``: it answers a HEAD, so no body is read."""
        self._fill(lambda: b"\r\n\r\n" in self.buffer)
        raw_head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, headers = parse_head(raw_head)
        length = 0 if head or status < 200 else int(headers.get("content-length", "0"))
        self._fill(lambda: len(self.buffer) >= length)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Reply(status, headers, body)

    def closed(self) -> bool:
        """Nothing more comes and the server closes: recv gives b'' within WAIT."""
        try:
            return not self.buffer and self._recv() == b""
        except TimeoutError:
            return False

    def reset(self) -> None:
        """Close with a TCP reset instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class ServerCase(HttpCase):
    config = SERVER_CONFIG

    def raw(self) -> Raw:
        return Raw(self.smsd.port)

    def accepted(self, reply: Reply, number: str, parts: int = 1) -> int:
        """The id in a 200 ``OK <id> <number> <parts>`` answer from /sms/."""
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.headers["content-type"], TEXT_TYPE)
        match = re.fullmatch(rf"OK (\d+) {re.escape(number)} (\d+)\n", reply.text)
        self.assertIsNotNone(match, reply.text)
        assert match is not None
        self.assertEqual(int(match[2]), parts, reply.text)
        return int(match[1])

    def numbers_sent(self) -> set[str]:
        lines = self.smsd.loopback_lines("loopback.jsonl") + self.smsd.loopback_lines(
            "second.jsonl"
        )
        return {line["number"] for line in lines}

    def assert_healthy_and_no_traceback(self) -> None:
        """A new connection is served, and smsd's log shows no traceback."""
        (health,) = curl_replies(self.url("/api/v1/health"))
        self.assertEqual(health.status, 200)
        self.assertTrue(health.json()["ok"])
        log = Path(self.smsd.log_path).read_text(errors="replace")
        self.assertNotIn("Traceback", log)


class ConnectionTests(ServerCase):
    """Keep-alive, pipelining, declined upgrades, idle and vanished clients."""

    def test_curl_reuses_the_connection_for_two_urls(self) -> None:
        health, sms = curl_replies(
            self.url("/api/v1/health"), self.url("/sms/?number=%2B15551240001&data=again")
        )
        self.assertEqual((health.status, health.connects), (200, 1))
        self.assertTrue(health.json()["ok"])
        self.assertEqual(int(health.headers["content-length"]), len(health.body))
        self.assertNotIn("connection", health.headers)  # HTTP/1.1: kept by default
        self.assertEqual(sms.connects, 0)  # the first transfer's connection
        self.accepted(sms, "+15551240001")

    def test_http10_without_keep_alive_is_answered_then_closed(self) -> None:
        (reply,) = curl_replies("--http1.0", self.url("/api/v1/health"))
        self.assertEqual((reply.status, reply.headers["connection"]), (200, "close"))
        with self.raw() as c:
            c.send(request("GET", "/api/v1/health", version="1.0"))
            reply = c.answer()
            self.assertTrue(c.closed(), c.buffer)
        self.assertEqual((reply.status, reply.headers["connection"]), (200, "close"))
        self.assertTrue(reply.json()["ok"])

    def test_http10_keep_alive_is_confirmed_and_kept(self) -> None:
        with self.raw() as c:
            c.send(request("GET", "/api/v1/health", "Connection: keep-alive", version="1.0"))
            first = c.answer()
            c.send(request("GET", "/sms/?number=%2B15551240002&data=ten", version="1.0"))
            second = c.answer()
            self.assertTrue(c.closed(), c.buffer)
        self.assertEqual((first.status, first.headers["connection"]), (200, "keep-alive"))
        self.assertEqual(second.headers["connection"], "close")
        self.accepted(second, "+15551240002")

    def test_pipelined_requests_are_answered_in_order(self) -> None:
        with self.raw() as c:
            c.send(
                submit("+15551240003", "first")
                + request("GET", "/nowhere")  # answerable at once: it must still wait its turn
                + submit("+15551240004", "second", "Connection: close"),
                once=True,
            )
            first, missing, second = c.answer(), c.answer(), c.answer()
            self.assertTrue(c.closed(), c.buffer)
        first_id = self.accepted(first, "+15551240003")
        self.assertEqual((missing.status, missing.json()), (404, {"error": "no such resource"}))
        second_id = self.accepted(second, "+15551240004")
        self.assertEqual(second.headers["connection"], "close")
        self.assertLess(first_id, second_id)

    def test_garbage_behind_a_submit_still_gets_the_submit_answered(self) -> None:
        """The submit may be committed by the time the garbage is read: its client hears
        that it was accepted, then the connection closes."""
        with self.raw() as c:
            c.send(
                submit("+15551240005", "before garbage") + b"\x16\x03\x01garbage\r\n\r\n", once=True
            )
            reply = c.answer()
            self.assertTrue(c.closed(), c.buffer)
        self.accepted(reply, "+15551240005")
        self.assertEqual(reply.headers["connection"], "close")

    def test_nothing_is_answered_after_a_connections_last_request(self) -> None:
        with self.raw() as c:
            c.send(
                request("GET", "/nowhere", "Connection: close") + request("GET", "/api/v1/health"),
                once=True,
            )
            reply = c.answer()
            self.assertTrue(c.closed(), c.buffer)  # no second answer, no 400 for the extra bytes
        self.assertEqual((reply.status, reply.headers["connection"]), (404, "close"))

    def test_upgrade_offers_are_declined_and_http11_goes_on(self) -> None:
        # curl --http2 on http:// offers h2c: Upgrade: h2c, with the request's body if any.
        health, again = curl_replies(
            "--http2", self.url("/api/v1/health"), self.url("/api/v1/health")
        )
        self.assertEqual((health.status, again.status, again.connects), (200, 200, 0))
        self.assertTrue(health.json()["ok"])
        for number, text, extra in (
            ("+15551240005", "h2c offered, form body", ()),
            ("+15551240006", "h2c offered, chunked body", ("-H", "Transfer-Encoding: chunked")),
        ):
            (posted,) = curl_replies(
                "--http2", *extra, *form(number=number, data=text), self.url("/sms/")
            )
            self.assertNotIn("upgrade", posted.headers)
            self.assertEqual(self.message(self.accepted(posted, number))["text"], text)
        with self.raw() as c:  # a WebSocket offer, and a request pipelined behind it
            c.send(
                request(
                    "GET",
                    "/nowhere",
                    "Connection: Upgrade",
                    "Upgrade: websocket",
                    "Sec-WebSocket-Version: 13",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                )
                + request("GET", "/api/v1/health", "Connection: close"),
                once=True,
            )
            declined, after = c.answer(), c.answer()
            self.assertTrue(c.closed(), c.buffer)
        self.assertEqual((declined.status, declined.json()), (404, {"error": "no such resource"}))
        self.assertNotIn("connection", declined.headers)
        self.assertEqual(after.status, 200)
        self.assertTrue(after.json()["ok"])

    def test_idle_connections_are_closed_after_idle_timeout(self) -> None:
        with self.raw() as answered, self.raw() as silent, self.raw() as halfway:
            answered.send(request("GET", "/api/v1/health"))
            self.assertEqual(answered.answer().status, 200)
            halfway.send(b"GET /api/v1/health HTTP/1.1\r\nHost: 127")
            for c in (answered, silent, halfway):  # idle_timeout is 1s; closed() waits 10s
                self.assertTrue(c.closed(), c.buffer)

    def test_a_client_gone_mid_request_leaves_the_server_serving(self) -> None:
        with self.raw() as c:  # closed (FIN) right after its request
            c.send(submit("+15551240007", "nobody reads the answer"))
        with self.raw() as c:  # reset once the server has read its pipelined submit
            c.send(request("GET", "/nowhere") + submit("+15551240008", "nor this"), once=True)
            self.assertEqual(c.answer().status, 404)
            c.reset()
        # The submits were whole requests: they are carried out all the same (by either
        # loopback gateway: the traffic is shared between them).
        self.smsd.wait_for(
            lambda: {"+15551240007", "+15551240008"} <= self.numbers_sent(), what="both sent"
        )
        self.assert_healthy_and_no_traceback()


class RequestTests(ServerCase):
    """Methods, paths, and the ways a body arrives."""

    def test_head_gives_the_headers_and_no_body(self) -> None:
        (get,) = curl_replies(self.url("/nowhere"))
        (head,) = curl_replies("-I", self.url("/nowhere"))
        self.assertEqual((head.status, head.body), (404, b""))
        with self.raw() as c:
            c.send(
                request("HEAD", "/nowhere")
                + request("HEAD", "/api/v1/health")
                + request("GET", "/nowhere", "Connection: close"),
                once=True,
            )
            missing, not_allowed = c.answer(head=True), c.answer(head=True)
            after = c.answer()  # parsed right after the heads: no body bytes in between
            self.assertTrue(c.closed(), c.buffer)
        self.assertEqual(missing.status, 404)
        self.assertEqual(missing.headers["content-type"], get.headers["content-type"])
        self.assertEqual(int(missing.headers["content-length"]), len(get.body))
        # The resources define GET and POST only (HEAD is not mapped to GET).
        self.assertEqual((not_allowed.status, not_allowed.headers["allow"]), (405, "GET, POST"))
        self.assertGreater(int(not_allowed.headers["content-length"]), 0)
        self.assertEqual((after.status, after.body), (404, get.body))

    def test_unknown_paths_are_404_with_a_json_error(self) -> None:
        for path in ("/", "/nowhere", "/smsx/", "/api/v2/messages", "/api/v1/nothing"):
            (reply,) = curl_replies(self.url(path))
            self.assertEqual(reply.status, 404, path)
            self.assertEqual(reply.headers["content-type"], "application/json", path)
            self.assertIsInstance(reply.json()["error"], str)

    def test_wrong_methods_are_405_with_allow(self) -> None:
        (sms,) = curl_replies("-X", "DELETE", self.url("/sms/"))
        self.assertEqual((sms.status, sms.headers["allow"]), (405, "GET, POST"))
        self.assertEqual(sms.headers["content-type"], TEXT_TYPE)
        self.assertEqual(sms.text, "ERROR: method DELETE not allowed\n")
        (api,) = curl_replies(
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
            "--data-binary",
            "{}",
            self.url("/api/v1/messages"),
        )
        self.assertEqual((api.status, api.headers["allow"]), (405, "GET, POST"))
        self.assertEqual(api.json(), {"error": "method PUT not allowed"})

    def test_a_chunked_form_body_is_read_whole(self) -> None:
        text = "chunked " * 40  # 320 characters: 3 parts
        (reply,) = curl_replies(
            "-H",
            "Transfer-Encoding: chunked",
            *form(number="+15551241001", data=text),
            self.url("/sms/"),
        )
        self.assertEqual(self.message(self.accepted(reply, "+15551241001", 3))["text"], text)
        # Many small chunks, the stream cut in the middle of one (curl sends a single chunk).
        body = urlencode({"number": "+15551241002", "data": text}).encode()
        data = request(
            "POST", "/sms/", FORM_TYPE, "Transfer-Encoding: chunked", "Connection: close"
        ) + chunked(*(body[i : i + 7] for i in range(0, len(body), 7)))
        with self.raw() as c:
            c.send(data[: len(data) // 2])
            c.send(data[len(data) // 2 :])
            reply = c.answer()
        self.assertEqual(self.message(self.accepted(reply, "+15551241002", 3))["text"], text)

    def test_expect_100_continue(self) -> None:
        text = "z" * 1200  # a form body over 1024 bytes: curl waits for the 100
        (reply,) = curl_replies(
            "-H",
            "Expect: 100-continue",
            *form(number="+15551241003", data=text, maxmsgs="10"),
            self.url("/sms/"),
        )
        self.assertEqual(reply.interim, [100])
        self.assertEqual(self.message(self.accepted(reply, "+15551241003", 8))["text"], text)
        data = submit("+15551241004", text, "Expect: 100-continue", maxmsgs="10")
        head, body = data.split(b"\r\n\r\n", 1)
        with self.raw() as c:
            c.send(head + b"\r\n\r\n")
            go_on = c.answer()  # before any body byte is sent
            c.send(body)
            reply = c.answer()
        self.assertEqual((go_on.status, go_on.headers, go_on.body), (100, {}, b""))
        self.accepted(reply, "+15551241004", 8)

    def test_a_multipart_form_submits(self) -> None:
        text = "Zażółć gęślą jaźń\r\ntwo lines"
        (reply,) = curl_replies(
            "-F", "number=+15551241005", "--form-string", f"data={text}", self.url("/sms/")
        )
        self.assertEqual(self.message(self.accepted(reply, "+15551241005"))["text"], text)


class LimitTests(ServerCase):
    """Bodies over max_body, heads over 16 KiB, and bytes that are not HTTP."""

    def assert_refused(self, reply: Reply, status: int, text: str) -> None:
        self.assertEqual(reply.status, status, reply)
        self.assertEqual(reply.headers["connection"], "close")
        self.assertEqual(reply.headers["content-type"], TEXT_TYPE)
        self.assertTrue(reply.text.startswith(text), reply.text)

    def test_content_length_over_max_body_is_413_before_the_body(self) -> None:
        too_large = f"ERROR: request body over {MAX_BODY} bytes\n"
        with self.raw() as c:  # the head announces 100000 bytes; none are sent
            c.send(request("POST", "/sms/", FORM_TYPE, "Content-Length: 100000"))
            reply = c.answer()
            self.assertTrue(c.closed(), c.buffer)
        self.assert_refused(reply, 413, too_large)
        self.assertEqual(reply.text, too_large)
        # curl with Expect: the 413 comes instead of the 100, so it never sends the body.
        (expecting,) = curl_replies(
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "@-",
            self.url("/sms/"),
            stdin=b"x" * 5000,
        )
        self.assertEqual(expecting.interim, [])
        self.assert_refused(expecting, 413, too_large)
        # curl without Expect, pushing 1 MB: it still reads the 413.
        (pushing,) = curl_replies(
            "-H", "Expect:", "--data-binary", "@-", self.url("/sms/"), stdin=b"x" * 1_000_000
        )
        self.assert_refused(pushing, 413, too_large)
        self.assert_healthy_and_no_traceback()

    def test_a_chunked_body_over_max_body_is_413(self) -> None:
        too_large = f"ERROR: request body over {MAX_BODY} bytes\n"
        (reply,) = curl_replies(
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            self.url("/sms/"),
            stdin=b"number=%2B15551242001&data=" + b"x" * 3000,
        )
        self.assert_refused(reply, 413, too_large)
        with self.raw() as c:  # three chunks, each under the limit, together over it
            c.send(
                request("POST", "/sms/", FORM_TYPE, "Transfer-Encoding: chunked")
                + chunked(b"x" * 1000, b"y" * 1000, b"z" * 1000)
            )
            reply = c.answer()
            self.assertTrue(c.closed(), c.buffer)
        self.assert_refused(reply, 413, too_large)
        self.assert_healthy_and_no_traceback()

    def test_a_head_over_16_kib_is_refused_and_closed(self) -> None:
        over = {
            "one header": request("GET", "/nowhere", "X-Big: " + "a" * 17000),
            "many headers": request(
                "GET", "/nowhere", *(f"X-Header-{i}: {'v' * 100}" for i in range(170))
            ),
            "the URL": request("GET", "/sms/?data=" + "a" * 17000),
        }
        for what, data in over.items():
            with self.raw() as c:
                c.send(data)
                reply = c.answer()
                self.assertTrue(c.closed(), (what, c.buffer))
            self.assertTrue(400 <= reply.status < 500, (what, reply))
            self.assert_refused(reply, reply.status, "")
        (big,) = curl_replies("-H", "X-Big: " + "a" * 17000, self.url("/nowhere"))
        self.assertTrue(400 <= big.status < 500, big)
        (under,) = curl_replies("-H", "X-Big: " + "a" * 15000, self.url("/nowhere"))
        self.assertEqual(under.status, 404)  # just under the limit: an ordinary request
        self.assert_healthy_and_no_traceback()

    def test_garbage_gets_a_400_text_and_a_close(self) -> None:
        for garbage in (
            b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + bytes(32),  # a TLS ClientHello
            b"SSH-2.0-OpenSSH_9.2\r\n",
            bytes(64),
            b"HELLO\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
            b"POST /sms/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            b"POST /sms/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ):
            with self.raw() as c:
                c.send(garbage)
                reply = c.answer()
                self.assertTrue(c.closed(), (garbage, c.buffer))
            self.assert_refused(reply, 400, "malformed request")
        self.assert_healthy_and_no_traceback()


class ParseQueryTests(SynchronousTestCase):
    """parse_query reads forms as urllib's parse_qs does, bytes kept as sent."""

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=12)), max_size=6))
    def test_agrees_with_urllib(self, pairs: list[tuple[bytes, bytes]]) -> None:
        raw = urlencode(pairs).encode() + b"&&flag&=x&a+b=c%2"  # blanks, no '=', bad escape
        expected = parse_qs(raw.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
        got = parse_query(raw)
        self.assertEqual(
            got,
            {k.encode("latin-1"): [v.encode("latin-1") for v in vs] for k, vs in expected.items()},
        )

    def test_utf8_and_plus(self) -> None:
        self.assertEqual(
            parse_query(b"data=%E2%82%AC+5&number=%2B1555&empty="),
            {b"data": ["€ 5".encode()], b"number": [b"+1555"], b"empty": [b""]},
        )
