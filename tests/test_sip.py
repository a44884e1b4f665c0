"""SIP MESSAGE to SMS and back, with sipsak (Debian) and hand-written requests over UDP and TCP.

A whole smsd runs in this process (``make_service``) with the loopback gateway and
``[sip] listen`` on free UDP and TCP ports. sipsak sends MESSAGE and REGISTER (with and
without digest) from files (``-f``: its ``-M`` mode crashes in 0.9.8.1); a socket in the
test plays the registered phone. Error cases are sent as raw requests, with the digest
computed here with hashlib, independently of ``protocols/sip.py``.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import socket
import subprocess
import tempfile
from typing import Any

import attrs
from twisted.internet import defer, threads
from twisted.internet import reactor as global_reactor

from smsd.model import Inbound, SenderPolicy, User
from smsd.service import Smsd
from tests.daemon import DaemonCase
from tests.fakes import wait_for
from tests.process import free_port, need

reactor: Any = global_reactor

ALICE_PHONE = "+15557654321"
DEDICATED = "+15550009999"
REALM = "sms.example.org"

CONFIG = """
[smsd]
traffic_log = ""
domain = "sms.example.org"
default_country = "US"
trusted_networks = [{trusted}]
[http]
listen = []
[snpp]
listen = []
[sip]
listen = ["udp:{port}:interface=127.0.0.1", "tcp:{port}:interface=127.0.0.1"]
{extra}
[[gateway]]
id = "loopback"
type = "loopback"
latency = "1ms"
report_delay = "20ms"
{gateway}
"""


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest(method: str, uri: str, challenge: str, user: str, password: str) -> str:
    """An Authorization value for a WWW-Authenticate challenge (RFC 2617, qop=auth)."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    ha1 = md5(f"{user}:{params['realm']}:{password}")
    ha2 = md5(f"{method}:{uri}")
    cnonce, nc = "0a4f113b", "00000001"
    response = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}",'
        f' uri="{uri}", response="{response}", qop=auth, nc={nc}, cnonce="{cnonce}",'
        " algorithm=MD5"
    )


def request(
    method: str,
    uri: str,
    body: bytes = b"",
    *,
    branch: str | None = None,
    port: int = 5999,
    headers: str = "",
    content_type: str = "text/plain;charset=UTF-8",
    from_: str = "<sip:alice@sms.example.org>;tag=a1",
    to: str | None = None,
    cseq: int = 1,
    call_id: str = "call-1@test",
    transport: str = "UDP",
) -> bytes:
    branch = branch or f"z9hG4bK{random.randrange(1 << 40):x}"
    head = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: {from_}\r\n"
        f"To: {to or '<' + uri + '>'}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        + (f"Content-Type: {content_type}\r\n" if body else "")
        + headers
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def header(response: bytes, name: str) -> str | None:
    for line in response.decode("utf-8", "replace").split("\r\n")[1:]:
        if not line:
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


class Phone:
    """A UDP socket standing in for a registered phone: takes MESSAGEs, answers them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]

    def take(self, status: int = 200, ignore: int = 0) -> list[bytes]:
        """Read MESSAGEs (blocking: run in a thread); answer ``status`` after ignoring the
        first ``ignore`` (so that smsd must retransmit). The MESSAGEs seen."""
        seen = []
        while True:
            data, peer = self.sock.recvfrom(65535)
            seen.append(data)
            if len(seen) <= ignore:
                continue
            head = data.split(b"\r\n\r\n", 1)[0].decode()
            lines = head.split("\r\n")
            copy = [
                h
                for h in lines[1:]
                if h.split(":", 1)[0].lower() in ("via", "from", "call-id", "cseq")
            ]
            to = next(h for h in lines[1:] if h.lower().startswith("to:"))
            answer = f"SIP/2.0 {status} Whatever\r\n" + "\r\n".join(
                [*copy, f"{to};tag=phone1", "Content-Length: 0"]
            )
            self.sock.sendto(answer.encode() + b"\r\n\r\n", peer)
            return seen

    def close(self) -> None:
        self.sock.close()


class SipCase(DaemonCase):
    timeout = 60

    async def start(
        self, extra: str = "", trusted: str = '"127.0.0.1/32"', gateway: str = ""
    ) -> Smsd:
        self.port = free_port()
        config = CONFIG.format(port=self.port, extra=extra, trusted=trusted, gateway=gateway)
        root = self.run_smsd(config)
        await self.gateways_started()
        return root

    async def add_alice(self, **kw: Any) -> None:
        assert self.root is not None
        user = User(
            name="alice",
            emails=("alice@example.org",),
            sip_ha1=md5(f"alice:{REALM}:s3cret"),
            dedicated=(DEDICATED,),
            **kw,
        )
        await self.root.store.add_user(user)

    def udp(self, *datagrams: bytes, read: int | None = None) -> defer.Deferred[list[bytes]]:
        """Send the datagrams from one socket; the answers (one per datagram by default)."""
        count = len(datagrams) if read is None else read

        def run() -> list[bytes]:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(10)
                s.bind(("127.0.0.1", 0))
                answers = []
                for d in datagrams:
                    s.sendto(d, ("127.0.0.1", self.port))
                for _ in range(count):
                    answers.append(s.recv(65535))
                return answers

        return threads.deferToThread(run)

    async def ask(self, method: str, uri: str, body: bytes = b"", **kw: Any) -> bytes:
        [answer] = await self.udp(request(method, uri, body, **kw))
        return answer

    async def authorised(
        self, method: str, uri: str, body: bytes = b"", password: str = "s3cret", **kw: Any
    ) -> bytes:
        """Ask, get the 401, answer the challenge as a phone would."""
        first = await self.ask(method, uri, body, **kw)
        self.assertEqual(status_of(first), 401, first)
        challenge = header(first, "WWW-Authenticate")
        assert challenge is not None
        auth = digest(method, uri, challenge, "alice", password)
        extra = kw.pop("headers", "")
        return await self.ask(
            method, uri, body, headers=f"Authorization: {auth}\r\n{extra}", cseq=2, **kw
        )

    def sipsak(
        self, text: str, *extra: str, method: str = "MESSAGE", headers: str = ""
    ) -> defer.Deferred[tuple[int, str]]:
        """sipsak sends a request from a file (blocking: in a thread); (exit code, output)."""
        binary = need("sipsak")
        uri = (
            f"sip:+15551234567@127.0.0.1:{self.port}"
            if method == "MESSAGE"
            else f"sip:alice@127.0.0.1:{self.port}"
        )
        body = text.encode()
        to = uri if method == "MESSAGE" else "sip:alice@sms.example.org"
        message = (
            f"{method} {uri} SIP/2.0\n"
            f"From: <sip:alice@sms.example.org>;tag=4d2a1b7c\n"
            f"To: <{to}>\n"
            f"Call-ID: {random.randrange(1 << 30)}@127.0.0.1\n"
            f"CSeq: 1 {method}\n"
            + ("Content-Type: text/plain;charset=UTF-8\n" if body else "")
            + headers
            + f"Content-Length: {len(body)}\nMax-Forwards: 70\nUser-Agent: sipsak 0.9.8.1\n\n"
        ).encode() + body

        def run() -> tuple[int, str]:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "request.sip")
                with open(path, "wb") as f:
                    f.write(message)
                result = subprocess.run(
                    [binary, "-vv", "-f", path, *extra, "-s", uri],
                    capture_output=True,
                    timeout=30,
                )
            return result.returncode, (result.stdout + result.stderr).decode("utf-8", "replace")

        return threads.deferToThread(run)


class SipsakTests(SipCase):
    """Against a SIP tool we did not write."""

    async def test_message_from_a_trusted_pbx_becomes_an_sms(self) -> None:
        await self.start()
        code, output = await self.sipsak("Server room too hot")
        self.assertEqual(code, 0, output)
        self.assertIn("202", output)
        [part] = await self.loopback_parts(1)
        self.assertEqual((part["number"], part["text"]), ("+15551234567", "Server room too hot"))
        [m] = await self.stored_messages()
        self.assertEqual((m["channel"], m["user"]), ("sip", None))

    async def test_message_with_digest_is_the_users(self) -> None:
        await self.start(trusted="")
        await self.add_alice(sender_policy=SenderPolicy.DEDICATED)
        code, output = await self.sipsak("Hello from my desk", "-u", "alice", "-a", "s3cret")
        self.assertEqual(code, 0, output)
        self.assertIn("authorizing", output)  # challenged (401) first, as phones are
        [part] = await self.loopback_parts(1)
        self.assertEqual((part["text"], part["sender"]), ("Hello from my desk", DEDICATED))
        [m] = await self.stored_messages()
        self.assertEqual((m["user"], m["reply_to"]), ("alice", "sip:alice@sms.example.org"))

    async def test_wrong_password_is_refused(self) -> None:
        await self.start(trusted="")
        await self.add_alice()
        code, output = await self.sipsak("x", "-u", "alice", "-a", "wrong")
        self.assertNotEqual(code, 0, output)
        self.assertIn("401", output)
        self.assertEqual(await self.stored_messages(), [])

    async def test_register_then_an_answer_comes_back_to_the_phone(self) -> None:
        """The loop: REGISTER (sipsak), MESSAGE (sipsak) -> SMS -> the phone's answer ->
        MESSAGE to the registered phone, retransmitted until it answers."""
        await self.start(trusted="")
        await self.add_alice()
        phone = Phone()
        self.addCleanup(phone.close)
        code, output = await self.sipsak(
            "",
            "-u",
            "alice",
            "-a",
            "s3cret",
            method="REGISTER",
            headers=f"Contact: <sip:alice@127.0.0.1:{phone.port}>;expires=600\n",
        )
        self.assertEqual(code, 0, output)
        assert self.root is not None
        [binding] = await self.root.store.sip_bindings("alice", reactor.seconds())
        self.assertEqual(binding.contact, f"sip:alice@127.0.0.1:{phone.port}")
        code, output = await self.sipsak("Are you there?", "-u", "alice", "-a", "s3cret")
        self.assertEqual(code, 0, output)
        [part] = await self.loopback_parts(1)
        taken = threads.deferToThread(phone.take, 200, 1)  # ignores the first: a retransmit
        await self.root.receiver.receive(  # type: ignore[union-attr]
            Inbound("loopback", part["number"], part["sender"] or DEDICATED, "Yes, here")
        )
        seen = await taken
        self.assertEqual(len(seen), 2)
        first = seen[0].decode()
        self.assertTrue(first.startswith(f"MESSAGE sip:alice@127.0.0.1:{phone.port} SIP/2.0"))
        self.assertIn("From: <sip:+15551234567@sms.example.org>", first)
        self.assertTrue(first.endswith("\r\n\r\nYes, here"), first)
        self.assertEqual(seen[0].split(b"branch=")[1][:20], seen[1].split(b"branch=")[1][:20])
        state = await wait_for(lambda: self._delivered(1), what="the inbox entry delivered")
        self.assertEqual(state["delivered_to"], "sip:alice@sms.example.org")

    async def _delivered(self, inbox_id: int) -> dict[str, Any] | None:
        assert self.root is not None
        state = await self.root.store.inbox_state(inbox_id)
        return state if state and state["state"] == "delivered" else None


class MessageTests(SipCase):
    """What a phone hears for each kind of MESSAGE."""

    async def test_tel_uri_user_phone_and_national_numbers(self) -> None:
        await self.start()
        for uri in (
            "tel:+1-555-123-4567",
            "sip:+1(555)1234567@sms.example.org;user=phone",
            "sip:555.123.4567@sms.example.org",
        ):
            answer = await self.ask("MESSAGE", uri, b"hi")
            self.assertEqual(status_of(answer), 202, (uri, answer))
        self.assertEqual({m["recipient"] for m in await self.stored_messages()}, {"+15551234567"})

    async def test_utf8_over_tcp_and_content_length_in_bytes(self) -> None:
        await self.start()
        body = "Grüße, 温度が高い 🌡".encode()

        def run() -> bytes:
            with socket.create_connection(("127.0.0.1", self.port), 10) as s:
                s.sendall(b"\r\n\r\n")  # a keep-alive ping first (RFC 5626)
                s.sendall(
                    request("MESSAGE", "sip:+15551234567@sms.example.org", body, transport="TCP")
                )
                data = b""
                while b"\r\n\r\n" not in data.lstrip(b"\r\n"):
                    data += s.recv(4096)
                return data

        answer = (await threads.deferToThread(run)).lstrip(b"\r\n")
        self.assertEqual(status_of(answer), 202, answer)
        [part] = await self.loopback_parts(1)
        self.assertEqual(part["text"], body.decode())

    async def test_error_answers(self) -> None:
        await self.start("max_body_udp = 300")
        number = "sip:+15551234567@sms.example.org"
        cases = [
            (request("MESSAGE", number, b"<b>hi</b>", content_type="text/html"), 415),
            (request("MESSAGE", number, b"x" * 400), 413),
            (request("MESSAGE", "sip:helpdesk@sms.example.org", b"hi"), 404),
            (request("MESSAGE", "sip:+1555@sms.example.org", b"hi"), 484),
            (request("MESSAGE", number, b"\xff\xfe", content_type="text/plain;charset=utf-8"), 415),
            (request("INVITE", number, b""), 405),
            (request("MESSAGE", number, b"hi").replace(b"CSeq: 1 MESSAGE", b"CSeq: 1 INVITE"), 400),
        ]
        answers = await self.udp(*(c[0] for c in cases))
        self.assertEqual(sorted(status_of(a) for a in answers), sorted(c[1] for c in cases))
        for answer in answers:
            if status_of(answer) == 415 and b"html" not in answer:
                self.assertEqual(header(answer, "Accept")[:10], "text/plain")  # type: ignore[index]
            if status_of(answer) == 405:
                self.assertEqual(header(answer, "Allow"), "MESSAGE, OPTIONS, REGISTER")
        self.assertEqual(await self.stored_messages(), [])

    async def test_digest_needed_outside_trusted_networks(self) -> None:
        await self.start(trusted="")
        await self.add_alice()
        uri = "sip:+15551234567@sms.example.org"
        first = await self.ask("MESSAGE", uri, b"hi")
        self.assertEqual(status_of(first), 401)
        challenge = header(first, "WWW-Authenticate") or ""
        self.assertIn('realm="sms.example.org"', challenge)
        self.assertIn('qop="auth"', challenge)
        wrong = await self.ask(
            "MESSAGE",
            uri,
            b"hi",
            headers=f"Authorization: {digest('MESSAGE', uri, challenge, 'alice', 'nope')}\r\n",
        )
        self.assertEqual(status_of(wrong), 401)
        ok = await self.authorised("MESSAGE", uri, b"hi")
        self.assertEqual(status_of(ok), 202, ok)
        self.assertEqual([m["user"] for m in await self.stored_messages()], ["alice"])

    async def test_a_user_without_rights_or_quota_is_403(self) -> None:
        await self.start(trusted="")
        await self.add_alice(monthly_limit=1)
        uri = "sip:+15551234567@sms.example.org"
        self.assertEqual(status_of(await self.authorised("MESSAGE", uri, b"one")), 202)
        answer = await self.authorised("MESSAGE", uri, b"two", call_id="call-2@test")
        self.assertEqual(status_of(answer), 403, answer)
        assert self.root is not None
        user = await self.root.store.get_user("alice")
        await self.root.store.update_user(attrs.evolve(user, active=False))
        assert self.root.directory is not None
        self.root.directory.forget("alice")  # read again at once, not after the cache's 5 s
        answer = await self.authorised("MESSAGE", uri, b"three", call_id="call-3@test")
        self.assertEqual(status_of(answer), 403, answer)

    async def test_no_gateway_up_is_503_with_retry_after(self) -> None:
        await self.start(gateway="enabled = false")
        answer = await self.ask("MESSAGE", "sip:+15551234567@sms.example.org", b"hi")
        self.assertEqual(status_of(answer), 503, answer)
        self.assertEqual(header(answer, "Retry-After"), "60")
        self.assertEqual(await self.stored_messages(), [])

    async def test_a_retransmission_is_answered_and_sent_once(self) -> None:
        await self.start()
        datagram = request(
            "MESSAGE", "sip:+15551234567@sms.example.org", b"once", branch="z9hG4bKsame"
        )
        answers = await self.udp(datagram)
        answers += await self.udp(datagram, datagram)  # the phone did not hear the first
        self.assertEqual([status_of(a) for a in answers], [202, 202, 202])
        self.assertEqual(len({header(a, "To") for a in answers}), 1)  # the same To-tag
        await self.loopback_parts(1)
        self.assertEqual(len(await self.stored_messages()), 1)

    async def test_the_via_says_where_the_request_came_from(self) -> None:
        """received and rport (RFC 3581): a phone behind a NAT learns its outside address."""
        await self.start()

        def run() -> tuple[int, bytes]:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(10)
                s.bind(("127.0.0.1", 0))
                s.sendto(
                    request("OPTIONS", "sip:sms.example.org", port=5999), ("127.0.0.1", self.port)
                )
                return s.getsockname()[1], s.recv(65535)

        port, answer = await threads.deferToThread(run)
        via = header(answer, "Via") or ""
        self.assertIn(f";rport={port};received=127.0.0.1", via)
        self.assertTrue(via.startswith("SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK"), via)

    async def test_options_and_garbage(self) -> None:
        await self.start()
        rng = random.Random(7)
        junk = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(200)]
        junk += [
            b"MESSAGE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n",
            b"\r\n\r\n",
            b"SIP/2.0 200 OK\r\n\r\n",
        ]

        def spray() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for d in junk:
                    s.sendto(d, ("127.0.0.1", self.port))

        await threads.deferToThread(spray)
        answer = await self.ask("OPTIONS", "sip:sms.example.org")
        self.assertEqual(status_of(answer), 200)
        self.assertEqual(header(answer, "Allow"), "MESSAGE, OPTIONS, REGISTER")
        self.assertEqual(await self.stored_messages(), [])


class RegisterTests(SipCase):
    async def test_register_refresh_remove_and_limits(self) -> None:
        await self.start(trusted="")
        await self.add_alice()
        uri = "sip:sms.example.org"
        contact = "<sip:alice@127.0.0.1:5070>"
        to = "<sip:alice@sms.example.org>"
        answer = await self.authorised(
            "REGISTER", uri, to=to, headers=f"Contact: {contact}\r\nExpires: 30\r\n"
        )
        self.assertEqual(status_of(answer), 423)
        self.assertEqual(header(answer, "Min-Expires"), "60")
        answer = await self.authorised(
            "REGISTER", uri, to=to, headers=f"Contact: {contact};expires=999999\r\n"
        )
        self.assertEqual(status_of(answer), 200, answer)
        self.assertRegex(
            header(answer, "Contact") or "", r"<sip:alice@127.0.0.1:5070>;expires=3[56]\d\d"
        )
        answer = await self.authorised(
            "REGISTER", uri, to="<sip:bob@sms.example.org>", headers=f"Contact: {contact}\r\n"
        )
        self.assertEqual(status_of(answer), 403)
        answer = await self.authorised(
            "REGISTER", uri, to=to, headers="Contact: *\r\nExpires: 0\r\n", call_id="c2"
        )
        self.assertEqual(status_of(answer), 200)
        assert self.root is not None
        self.assertEqual(await self.root.store.sip_bindings("alice", reactor.seconds()), [])

    async def test_no_binding_falls_back_to_mail(self) -> None:
        await self.start(trusted="")
        await self.add_alice()
        phone = Phone()
        self.addCleanup(phone.close)
        uri = "sip:sms.example.org"
        answer = await self.authorised(
            "REGISTER",
            uri,
            to="<sip:alice@sms.example.org>",
            headers=f"Contact: <sip:alice@127.0.0.1:{phone.port}>\r\n",
        )
        self.assertEqual(status_of(answer), 200)
        taken = threads.deferToThread(phone.take, 480)  # the phone says: not now
        assert self.root is not None
        await self.root.receiver.receive(Inbound("loopback", ALICE_PHONE, DEDICATED, "call me"))  # type: ignore[union-attr]
        await taken
        state = await wait_for(lambda: self._settled(1), what="the inbox entry delivered")
        self.assertEqual(state["delivered_to"], "alice@example.org")  # into her Maildir

    async def _settled(self, inbox_id: int) -> dict[str, Any] | None:
        assert self.root is not None
        state = await self.root.store.inbox_state(inbox_id)
        return state if state and state["state"] == "delivered" else None
