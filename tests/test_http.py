"""The HTTP channel against curl: the forms, the JSON API, authentication, refusals.

One smsd daemon per class (started once); every request goes through curl, a
client we did not write, and every outcome is checked where a user would see
it: the HTTP answer, the JSON API and the loopback gateway's output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

from twisted.trial import unittest

from tests.process import SmsdProcess, curl, free_port, need

CONFIG = """
[snpp]
listen = []
[sip]
listen = []
[http]
listen = ["tcp:{port}"]
maxmsgs = 4
[[gateway]]
id = "loopback"
type = "loopback"
report_delay = "20ms"
[[gateway]]
id = "second"
type = "loopback"
log = "second.jsonl"
report_delay = "20ms"
[[route]]
prefix = ["+46"]
gateways = ["second"]
"""

OUTSIDE = "127.0.0.2"  # a source address outside the trusted 127.0.0.1/32


def lines_for(smsd: SmsdProcess, message_id: int) -> list[dict]:
    """What the two loopback gateways (traffic is shared between them) sent of a message."""
    lines = smsd.loopback_lines("loopback.jsonl") + smsd.loopback_lines("second.jsonl")
    return sorted((e for e in lines if e["id"] == message_id), key=lambda e: e["part"])


class HttpCase(unittest.TestCase):
    smsd: ClassVar[SmsdProcess]
    config: ClassVar[str] = CONFIG

    @classmethod
    def setUpClass(cls) -> None:
        cls.smsd = SmsdProcess(cls.config)
        cls.prepare(cls.smsd)
        cls.smsd.start()

    @classmethod
    def prepare(cls, smsd: SmsdProcess) -> None:
        """Before the daemon starts: users and the like."""

    @classmethod
    def tearDownClass(cls) -> None:
        cls.smsd.cleanup()

    def url(self, path: str) -> str:
        return self.smsd.url + path

    def api(self, method: str, path: str, body: Any = None, *args: str) -> tuple[int, Any]:
        extra = ["-X", method]
        if body is not None:
            data = body if isinstance(body, str) else json.dumps(body)
            extra += ["-H", "content-type: application/json", "--data-binary", data]
        code, text = curl(*extra, *args, self.url(path))
        try:
            return code, json.loads(text)
        except ValueError:
            self.fail(f"not JSON ({code}): {text!r}")

    def sms(self, *args: str) -> tuple[int, str]:
        """POST the /sms/ form; args are curl options (--data-urlencode k=v ...)."""
        return curl(*args, self.url("/sms/"))

    def message(self, message_id: int) -> dict:
        code, body = self.api("GET", f"/api/v1/messages/{message_id}")
        self.assertEqual(code, 200, body)
        return body

    def wait_state(self, message_id: int, state: str = "delivered") -> dict:
        return self.smsd.wait_for(
            lambda: (m := self.message(message_id))["state"] == state and m,
            what=f"message {message_id} {state}",
        )

    def queued_count(self) -> int:
        stats = json.loads(self.smsd.admin("queue", "--json").stdout)
        return sum(stats["states"].values())


def form(**fields: str) -> list[str]:
    out = []
    for k, v in fields.items():
        out += ["--data-urlencode", f"{k}={v}"]
    return out


class FormTests(HttpCase):
    def test_get_submits_and_answers_the_id(self) -> None:
        code, body = curl(self.url("/sms/?number=%2B15551234567&data=Hello"))
        self.assertEqual(code, 200)
        word, message_id, number, parts = body.split()
        self.assertEqual((word, number, parts), ("OK", "+15551234567", "1"))
        self.wait_state(int(message_id))

    def test_national_number_and_separators(self) -> None:
        code, body = self.sms(*form(number="(555) 123-4568", data="x"))
        self.assertEqual(code, 200, body)
        self.assertEqual(body.split()[2], "+15551234568")

    def test_euro_counts_two_septets(self) -> None:
        code, body = self.sms(*form(number="+15551230001", data="a" * 158 + "€"))
        self.assertEqual((code, body.split()[3]), (200, "1"), body)
        code, body = self.sms(*form(number="+15551230001", data="a" * 159 + "€"))
        self.assertEqual((code, body.split()[3]), (200, "2"), body)
        parts = self.smsd.wait_for(
            lambda: (
                len(lines_for(self.smsd, int(body.split()[1]))) == 2
                and lines_for(self.smsd, int(body.split()[1]))
            )
        )
        self.assertEqual("".join(p["text"] for p in parts), "a" * 159 + "€")
        self.assertEqual({p["encoding"] for p in parts}, {"gsm7"})

    def test_chinese_goes_out_as_ucs2_67_a_part(self) -> None:
        text = "短信网关测试" * 20  # 120 characters
        code, body = self.sms(*form(number="+15551230002", data=text))
        self.assertEqual(code, 200, body)
        message_id = int(body.split()[1])
        parts = self.smsd.wait_for(
            lambda: len(lines_for(self.smsd, message_id)) == 2 and lines_for(self.smsd, message_id)
        )
        self.assertEqual([len(p["text"]) for p in parts], [67, 53])
        self.assertEqual({p["encoding"] for p in parts}, {"ucs2"})
        self.assertEqual({p["dcs"] for p in parts}, {8})
        self.assertEqual("".join(p["text"] for p in parts), text)

    def test_omnigate_numbers_and_text(self) -> None:
        code, body = curl(self.url("/sms/?numbers=%2B15551230003,%2B15551230004&text=Hi+both"))
        self.assertEqual(code, 200, body)
        lines = body.splitlines()
        self.assertEqual([line.split()[2] for line in lines], ["+15551230003", "+15551230004"])

    def test_binary_with_udh(self) -> None:
        code, body = self.sms(
            *form(number="+15551230005", binary="1", data="deadbeef", udh="06050415811581")
        )
        self.assertEqual(code, 200, body)
        message_id = int(body.split()[1])
        (line,) = self.smsd.wait_for(lambda: lines_for(self.smsd, message_id))
        self.assertEqual(
            (line["hex"], line["udh"], line["encoding"]), ("deadbeef", "06050415811581", "8bit")
        )

    def test_flash(self) -> None:
        code, body = self.sms(*form(number="+15551230006", data="Alarm", flash="1"))
        self.assertEqual(code, 200, body)
        (line,) = self.smsd.wait_for(lambda: lines_for(self.smsd, int(body.split()[1])))
        self.assertEqual(line["dcs"], 0x10)

    def test_maxmsgs_truncates(self) -> None:
        code, body = self.sms(*form(number="+15551230007", data="y" * 400, maxmsgs="2"))
        self.assertEqual(code, 200, body)
        message_id = int(body.split()[1])
        self.assertEqual(body.split()[3], "2")
        message = self.message(message_id)
        self.assertTrue(message["truncated"])
        self.assertEqual(message["text"], "y" * 306)

    def test_too_long_without_truncation_is_refused(self) -> None:
        code, body = self.sms(*form(number="+15551230010", data="y" * 700, truncate="0"))
        self.assertEqual(code, 400, body)
        self.assertIn("text needs 5 SMS, more than maxmsgs=4", body)

    def test_transliteration_on_request(self) -> None:
        code, body = self.sms(
            *form(number="+15551230011", data="Zażółć “gęślą”", transliterate="1")
        )
        self.assertEqual(code, 200, body)
        message = self.message(int(body.split()[1]))
        self.assertEqual((message["encoding"], message["text"]), ("gsm7", 'Zazolc "gesla"'))

    def test_latin1_with_charset(self) -> None:
        code, body = curl(self.url("/sms/?number=%2B15551230008&data=%E9t%E9&charset=latin-1"))
        self.assertEqual(code, 200, body)
        self.assertEqual(self.message(int(body.split()[1]))["text"], "été")

    def test_repeated_id_is_queued_once(self) -> None:
        first = self.sms(*form(number="+15551230009", data="once", id="order-17"))
        again = self.sms(*form(number="+15551230009", data="once", id="order-17"))
        self.assertEqual(first[0], 200)
        self.assertEqual(first, again)
        message_id = int(first[1].split()[1])
        self.wait_state(message_id)
        self.assertEqual(len(lines_for(self.smsd, message_id)), 1)

    def test_route_by_prefix(self) -> None:
        code, body = self.sms(*form(number="+46701234567", data="Hej"))
        self.assertEqual(code, 200, body)
        message = self.wait_state(int(body.split()[1]))
        self.assertEqual(message["gateway"], "second")

    def test_refusals_are_4xx_with_one_line_and_queue_nothing(self) -> None:
        before = self.queued_count()
        cases = [
            (form(number="abc", data="x"), 400, "invalid number: 'abc'"),
            (form(data="x"), 400, "no recipient"),
            (form(number="+15551234567"), 400, "empty text"),
            (form(number="+15551234567", data=""), 400, "empty text"),
            (form(number="+15551234567", data="z" * 2000, maxmsgs="1"), 200, None),
            (form(number="+15551234567", data="x", gateway="nope"), 400, "unknown gateway"),
            (form(number="+15551234567", binary="1", data="zz"), 400, "not hexadecimal"),
            (form(number="+15551234567", binary="1", data="00", udh="0g"), 400, "udh"),
            (form(number="+15551234567", data="x", maxmsgs="0"), 400, "maxmsgs"),
            (form(number="+15551234567", data="x", maxmsgs="many"), 400, "maxmsgs"),
            (form(number="+15551234567", data="x", charset="klingon"), 400, "charset"),
            (form(number="+15551234567,bad,+1", data="x"), 400, "invalid number"),
        ]
        expected_new = 0
        for args, status, words in cases:
            code, body = self.sms(*args)
            self.assertEqual(code, status, f"{args}: {body}")
            if words is None:
                expected_new += 1
                continue
            self.assertTrue(body.startswith("ERROR: "), body)
            self.assertIn(words, body.splitlines()[0])
            self.assertNotIn("Traceback", body)
        self.assertEqual(self.queued_count(), before + expected_new)

    def test_several_numbers_say_which_failed(self) -> None:
        code, body = self.sms(*form(number="+15551234567,12ab,+999123", data="x"))
        self.assertEqual(code, 400)
        self.assertIn("ERROR 12ab:", body)
        self.assertIn("ERROR +999123:", body)
        self.assertNotIn("ERROR +15551234567", body)

    def test_method_and_size_limits(self) -> None:
        code, body = curl("-X", "DELETE", self.url("/sms/"))
        self.assertEqual(code, 405, body)
        code, body = curl("--data-binary", "@-", self.url("/sms/"))  # empty POST
        self.assertEqual(code, 400, body)


class SizeLimitTests(HttpCase):
    config = CONFIG.replace("maxmsgs = 4", "maxmsgs = 4\nmax_body = 2048")

    def test_body_over_the_limit_is_413(self) -> None:
        code, body = self.sms(*form(number="+15551234567", data="x" * 5000))
        self.assertEqual(code, 413, body)
        self.assertIn("request body over 2048 bytes", body)


class IdleConnectionTests(HttpCase):
    config = CONFIG.replace("maxmsgs = 4", 'maxmsgs = 4\nidle_timeout = "1s"')

    def test_silent_connection_is_closed(self) -> None:
        with socket.create_connection(("127.0.0.1", self.smsd.port), timeout=10) as s:
            s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            first = s.recv(65536)
            self.assertTrue(first.startswith(b"HTTP/1.1 200"), first)
            deadline = time.monotonic() + 8
            closed = False
            while time.monotonic() < deadline and not closed:
                closed = s.recv(65536) == b""
            self.assertTrue(closed, "an idle keep-alive connection stays open")


class JsonApiTests(HttpCase):
    def test_submit_202_then_delivered(self) -> None:
        code, body = self.api(
            "POST", "/api/v1/messages", {"to": ["+15551231001", "+15551231002"], "text": "x" * 200}
        )
        self.assertEqual(code, 202, body)
        self.assertEqual([m["to"] for m in body["messages"]], ["+15551231001", "+15551231002"])
        self.assertEqual({m["parts"] for m in body["messages"]}, {2})
        for m in body["messages"]:
            message = self.wait_state(m["id"])
            self.assertEqual([p["state"] for p in message["part_states"]], ["delivered"] * 2)
            self.assertEqual(message["status"], "stat:DELIVRD err:000")

    def test_not_before_holds_the_message(self) -> None:
        later = time.time() + 1.0
        code, body = self.api(
            "POST", "/api/v1/messages", {"to": "+15551231003", "text": "later", "not_before": later}
        )
        self.assertEqual(code, 202, body)
        message_id = body["messages"][0]["id"]
        self.assertEqual(self.message(message_id)["state"], "queued")
        message = self.wait_state(message_id)
        sent = message["part_states"][0]["sent"]
        self.assertGreaterEqual(sent, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(later)))

    def test_refusals_are_json(self) -> None:
        cases = [
            ("{not json", 400, "malformed JSON"),
            ("[]", 400, "expected a JSON object"),
            ({"to": "+15551234567"}, 400, "empty text"),
            ({"to": 15551234567, "text": "x"}, 400, "to:"),
            ({"to": "+15551234567", "text": "x", "maxmsgs": "2"}, 400, "maxmsgs"),
            ({"to": "+15551234567", "text": "x", "colour": "red"}, 400, "unknown field"),
            ({"to": "+15551234567", "text": "x", "not_before": "soon"}, 400, "not_before"),
            ({"to": "+15551234567", "text": "x", "validity": "ages"}, 400, "validity"),
            ({"to": "+15551234567", "text": "x", "gateway": "nope"}, 400, "unknown gateway"),
            ({"to": "+15551234567", "text": "x", "callback_url": "ftp://x"}, 400, "callback_url"),
            (
                {"to": "+15551234567", "text": "x" * 1000, "maxmsgs": 2, "truncate": False},
                400,
                "more than maxmsgs",
            ),
            ({"to": ["+15551234567", "nope"], "text": "x"}, 400, "invalid number"),
        ]
        for body, status, words in cases:
            code, answer = self.api("POST", "/api/v1/messages", body)
            self.assertEqual(code, status, f"{body}: {answer}")
            self.assertIn(words, answer["error"])
            self.assertNotIn("\n", answer["error"])
        code, answer = self.api("POST", "/api/v1/messages", {"to": ["+1555", "x"], "text": "x"})
        self.assertEqual(sorted(answer["recipients"]), ["+1555", "x"])

    def test_unknown_message_and_path(self) -> None:
        self.assertEqual(self.api("GET", "/api/v1/messages/999999")[0], 404)
        self.assertEqual(self.api("GET", "/api/v1/messages/abc")[0], 404)
        self.assertEqual(self.api("GET", "/api/v1/nothing")[0], 404)

    def test_inject_and_list_inbound(self) -> None:
        code, body = self.api(
            "POST",
            "/api/v1/inbound",
            {"from": "+15557654321", "to": "+15551110000", "text": "Reply!"},
        )
        self.assertEqual(code, 201, body)
        code, listed = self.api("GET", f"/api/v1/inbound?after={body['id'] - 1}")
        self.assertEqual(code, 200)
        (inbound,) = listed["inbound"]
        self.assertEqual(
            (inbound["from"], inbound["to"], inbound["text"]),
            ("+15557654321", "+15551110000", "Reply!"),
        )
        code, answer = self.api(
            "POST", "/api/v1/inbound", {"from": "+1555", "to": "+15551110000", "text": "x"}
        )
        self.assertEqual(code, 400, answer)

    def test_health(self) -> None:
        code, health = self.api("GET", "/api/v1/health")
        self.assertEqual(code, 200)
        self.assertTrue(health["ok"])
        self.assertEqual(
            {g["id"]: g["state"] for g in health["gateways"]}, {"loopback": "up", "second": "up"}
        )


class AuthTests(HttpCase):
    """Trusted networks may submit without credentials; everyone else authenticates."""

    @classmethod
    def prepare(cls, smsd: SmsdProcess) -> None:
        smsd.admin(
            "user",
            "add",
            "alice",
            "--password",
            "s3cret",
            "--email",
            "alice@example.org",
            "--monthly-limit",
            "3",
        )
        smsd.admin(
            "user",
            "add",
            "bob",
            "--password",
            "pw-bob",
            "--email",
            "bob@example.org",
            "--expires",
            "2020-01-31",
        )
        smsd.admin(
            "user",
            "add",
            "carol",
            "--password",
            "pw-carol",
            "--email",
            "carol@example.org",
            "--inactive",
        )
        smsd.admin(
            "user",
            "add",
            "dave",
            "--password",
            "pw-dave",
            "--email",
            "dave@example.org",
            "--sender-policy",
            "fixed",
            "--sender",
            "Acme",
            "--sender",
            "Helpdesk",
        )
        smsd.admin(
            "user",
            "add",
            "erin",
            "--password",
            "pw-erin",
            "--email",
            "erin@example.org",
            "--transliterate",
            "yes",
        )

    def outside(self, *args: str) -> tuple[int, str]:
        return curl("--interface", OUTSIDE, *args)

    def test_outside_without_credentials_is_401(self) -> None:
        code, body = self.outside(self.url("/sms/?number=%2B15551234567&data=x"))
        self.assertEqual(code, 401, body)
        code, headers = curl(
            "--interface",
            OUTSIDE,
            "-D",
            "-",
            "-o",
            "/dev/null",
            self.url("/sms/?number=%2B15551234567&data=x"),
        )
        self.assertIn('www-authenticate: basic realm="smsd"', headers.lower())

    def test_outside_with_credentials_200_then_over_limit_403(self) -> None:
        code, body = self.outside(
            self.url("/sms/?number=%2B15551234567&data=x&user=alice&pass=s3cret")
        )
        self.assertEqual(code, 200, body)
        code, body = self.outside(
            "-u", "alice:s3cret", *form(number="+15551234567", data="y" * 200), self.url("/sms/")
        )
        self.assertEqual(code, 200, body)  # 1 + 2 parts: the limit of 3 is reached
        code, body = self.outside(
            "-u", "alice:s3cret", self.url("/sms/?number=%2B15551234567&data=z")
        )
        self.assertEqual(code, 403, body)
        self.assertIn("monthly limit", body)
        code, answer = curl(
            "--interface",
            OUTSIDE,
            "-u",
            "alice:s3cret",
            "-H",
            "content-type: application/json",
            "--data-binary",
            '{"to": "+15551234567", "text": "z"}',
            self.url("/api/v1/messages"),
        )
        self.assertEqual(code, 403, answer)
        self.assertIn("monthly limit", json.loads(answer)["error"])

    def test_wrong_password_and_unknown_user_are_401(self) -> None:
        for creds in ("alice:wrong", "nobody:x"):
            code, body = self.outside("-u", creds, self.url("/sms/?number=%2B15551234567&data=x"))
            self.assertEqual(code, 401, body)
        # Wrong credentials are refused even from a trusted network.
        code, body = curl("-u", "alice:wrong", self.url("/sms/?number=%2B15551234567&data=x"))
        self.assertEqual(code, 401, body)

    def test_expired_and_disabled_accounts_are_403(self) -> None:
        code, body = self.outside("-u", "bob:pw-bob", self.url("/sms/?number=%2B1555123&data=x"))
        self.assertEqual(code, 403, body)
        self.assertIn("expired on 2020-01-31", body)
        code, body = self.outside("-u", "carol:pw-carol", self.url("/sms/?number=%2B1555&data=x"))
        self.assertEqual(code, 403, body)
        self.assertIn("disabled", body)

    def test_sender_policy(self) -> None:
        code, body = self.outside(
            "-u", "dave:pw-dave", self.url("/sms/?number=%2B15551234567&data=x")
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(self.message(int(body.split()[1]))["from"], "Acme")
        code, body = self.outside(
            "-u", "dave:pw-dave", self.url("/sms/?number=%2B15551234567&data=x&sender=Helpdesk")
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(self.message(int(body.split()[1]))["from"], "Helpdesk")
        code, body = self.outside(
            "-u", "dave:pw-dave", self.url("/sms/?number=%2B15551234567&data=x&sender=Bank")
        )
        self.assertEqual(code, 403, body)
        self.assertIn("not allowed", body)

    def test_a_users_own_transliteration_choice(self) -> None:
        code, body = self.outside(
            "-u", "erin:pw-erin", *form(number="+15551234567", data="Łódź"), self.url("/sms/")
        )
        self.assertEqual(code, 200, body)
        code, message = self.outside(
            "-u", "erin:pw-erin", self.url(f"/api/v1/messages/{body.split()[1]}")
        )
        self.assertEqual(json.loads(message)["text"], "Lodz")

    def test_users_see_only_their_messages(self) -> None:
        code, body = curl(self.url("/sms/?number=%2B15551239999&data=anonymous"))
        self.assertEqual(code, 200, body)
        message_id = body.split()[1]
        code, answer = self.outside(
            "-u", "dave:pw-dave", self.url(f"/api/v1/messages/{message_id}")
        )
        self.assertEqual(code, 404, answer)

    def test_no_password_reaches_the_log(self) -> None:
        for url in (
            "/sms/?number=%2B15551234567&data=x&user=dave&pass=pw-dave",
            "/sms/?number=bad&data=x&user=dave&pass=pw-dave",
            "/sms/?number=%2B15551234567&data=x&user=alice&pass=guessed-wrong",
            "/api/v1/messages/1?pass=s3cret",
        ):
            self.outside(self.url(url))
        self.outside("-u", "dave:pw-dave", self.url("/sms/?number=%2B15551234567&data=x"))
        log = Path(self.smsd.log_path).read_text(errors="replace")
        for secret in ("s3cret", "guessed-wrong", "pw-dave", "pw-erin", "pw-bob"):
            self.assertNotIn(secret, log)

    def test_inject_only_from_trusted_networks(self) -> None:
        code, body = self.outside(
            "-u",
            "dave:pw-dave",
            "-H",
            "content-type: application/json",
            "--data-binary",
            '{"from": "+15557654321", "to": "+15551110000", "text": "x"}',
            self.url("/api/v1/inbound"),
        )
        self.assertEqual(code, 403, body)


class CallbackTests(HttpCase):
    def test_status_callbacks_are_posted(self) -> None:
        received: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = HTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        url = f"http://127.0.0.1:{server.server_port}/status"
        code, body = self.api(
            "POST",
            "/api/v1/messages",
            {"to": "+15551232000", "text": "cb", "callback_url": url, "client_ref": "cb-1"},
        )
        self.assertEqual(code, 202, body)
        self.smsd.wait_for(
            lambda: any(r["state"] == "delivered" for r in received), what="delivered callback"
        )
        states = [r["state"] for r in received]
        self.assertEqual(states, ["sent", "delivered"])
        self.assertEqual({r["id"] for r in received}, {body["messages"][0]["id"]})
        self.assertEqual({r["client_ref"] for r in received}, {"cb-1"})


class HttpsTests(HttpCase):
    """HTTPS is an ssl: endpoint with the administrator's certificate."""

    @classmethod
    def prepare(cls, smsd: SmsdProcess) -> None:
        key, cert = os.path.join(smsd.dir, "key.pem"), os.path.join(smsd.dir, "cert.pem")
        subprocess.run(
            [
                need("openssl"),
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                cert,
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cls.tls_port = free_port()
        config = Path(smsd.config_path or "")
        tls = f"ssl:{cls.tls_port}:privateKey={key}:certKey={cert}"
        config.write_text(
            config.read_text().replace('listen = ["tcp:', f'listen = ["{tls}", "tcp:')
        )

    def test_https_submit(self) -> None:
        code, body = curl(
            "-k", f"https://127.0.0.1:{self.tls_port}/sms/?number=%2B15551234567&data=tls"
        )
        self.assertEqual(code, 200, body)
        self.wait_state(int(body.split()[1]))
