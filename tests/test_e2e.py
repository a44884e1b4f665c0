"""End to end, as a user meets smsd: ``twistd -n smsd``, curl, the JSON API, loopback.jsonl."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

from twisted.trial import unittest

from tests.process import LOOPBACK, SmsdProcess, alive, children, curl, twistd


class EmbeddedDefaultTests(unittest.TestCase):
    """No configuration file: SQLite in ./smsd-data, the loopback gateway, HTTP on 8080."""

    def setUp(self) -> None:
        self.smsd = SmsdProcess().start()
        self.addCleanup(self.smsd.cleanup)

    def test_curl_to_delivered(self) -> None:
        code, body = curl(f"{self.smsd.url}/sms/?number=%2B15551234567&data=Hello")
        self.assertEqual(code, 200, body)
        words = body.split()
        self.assertEqual(words[0], "OK")
        message_id = int(words[1])

        def delivered() -> dict | None:
            status, message = self.smsd.get(f"/api/v1/messages/{message_id}")
            return message if status == 200 and message["state"] == "delivered" else None

        message = self.smsd.wait_for(delivered, what="state delivered")
        self.assertEqual(message["to"], "+15551234567")
        self.assertEqual(message["text"], "Hello")
        lines = self.smsd.loopback_lines()
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["id"], message_id)
        self.assertEqual(lines[0]["number"], "+15551234567")
        self.assertEqual(lines[0]["text"], "Hello")
        self.assertEqual((lines[0]["part"], lines[0]["parts"]), (1, 1))
        self.assertEqual(lines[0]["encoding"], "gsm7")
        # twistd ends a SIGTERM shutdown by dying of that signal, on purpose: -15.
        self.assertIn(self.smsd.stop(), (0, -15))
        self.assertIn("smsd stopped", self.smsd.log())


class LoopbackTests(unittest.TestCase):
    def setUp(self) -> None:
        self.smsd = SmsdProcess(LOOPBACK).start()
        self.addCleanup(self.smsd.cleanup)

    def test_two_part_message_has_concatenation_udh(self) -> None:
        text = "x" * 200
        code, body = curl(
            "--data-urlencode",
            "number=+15551234567",
            "--data-urlencode",
            f"data={text}",
            f"{self.smsd.url}/sms/",
        )
        self.assertEqual(code, 200, body)
        self.assertTrue(body.startswith("OK "), body)
        lines = self.smsd.wait_for(
            lambda: len(self.smsd.loopback_lines()) == 2 and self.smsd.loopback_lines(),
            what="2 parts",
        )
        lines.sort(key=lambda e: e["part"])
        self.assertEqual([len(e["text"]) for e in lines], [153, 47])
        ref = lines[0]["udh"][6:8]
        self.assertEqual([e["udh"] for e in lines], [f"050003{ref}0201", f"050003{ref}0202"])


class TrafficLogTests(unittest.TestCase):
    def setUp(self) -> None:
        self.smsd = SmsdProcess(LOOPBACK).start()
        self.addCleanup(self.smsd.cleanup)

    def traffic(self) -> list[list[str]]:
        path = os.path.join(self.smsd.data_dir, "traffic.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.rstrip("\n").split(";") for line in f]

    def test_a_line_per_part_out_and_in(self) -> None:
        code, body = curl(
            "--data-urlencode",
            "number=+15551234567",
            "--data-urlencode",
            "data=" + "z" * 200,
            "--data-urlencode",
            "sender=Acme;Ltd",
            f"{self.smsd.url}/sms/",
        )
        self.assertEqual(code, 200, body)
        out = self.smsd.wait_for(
            lambda: len(self.traffic()) == 2 and self.traffic(), what="2 lines"
        )
        for line in out:
            self.assertEqual(len(line), 8, line)  # date;time;OUT;gateway;sender;number;chars;parts
            self.assertRegex(line[0], r"^\d{4}-\d\d-\d\d$")
            self.assertEqual(line[2:6], ["OUT", "loopback", "Acme,Ltd", "+15551234567"])
        self.assertEqual(sorted((int(x[6]), int(x[7])) for x in out), [(47, 2), (153, 2)])
        code, body = curl(
            "-H",
            "content-type: application/json",
            "--data-binary",
            '{"from": "+15557654321", "to": "+15551110000", "text": "Hi back"}',
            f"{self.smsd.url}/api/v1/inbound",
        )
        self.assertEqual(code, 201, body)
        line = self.smsd.wait_for(lambda: len(self.traffic()) == 3 and self.traffic()[2])
        self.assertEqual(line[2:], ["IN", "loopback", "+15557654321", "+15551110000", "7", "1"])


class PortInUseTests(unittest.TestCase):
    def test_a_port_in_use_stops_the_start_with_one_line(self) -> None:
        smsd = SmsdProcess(LOOPBACK)
        self.addCleanup(smsd.cleanup)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", smsd.port))
            taken.listen()
            result = subprocess.run(
                [twistd(), "-n", "--pidfile=", "smsd", "--config", smsd.config_path or ""],
                cwd=smsd.dir,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"smsd: cannot listen on tcp:{smsd.port}:interface=127.0.0.1:", output)
        self.assertIn("Address already in use", output)
        self.assertNotIn("Traceback", output)


class DaemonModeTests(unittest.TestCase):
    """``twistd smsd`` without -n: twistd forks to become a daemon after building the
    service, so the store's writer and threads must start after that fork, in the daemon."""

    def test_a_daemon_takes_a_message_and_stops_with_its_writer(self) -> None:
        smsd = SmsdProcess(LOOPBACK)
        self.addCleanup(smsd.cleanup)
        pidfile = os.path.join(smsd.dir, "twistd.pid")
        command = [twistd(), f"--pidfile={pidfile}", f"--logfile={smsd.log_path}", "smsd"]
        subprocess.run(
            [*command, "--config", str(smsd.config_path)],
            cwd=smsd.dir,
            check=True,
            timeout=30,
        )  # returns once the daemon has forked
        pid = smsd.wait_for(lambda: _read_pid(pidfile), what="the pid file")
        self.addCleanup(_kill, pid)
        smsd.wait_for(lambda: _answers(smsd), what="the daemon's health answer")
        code, body = curl(f"{smsd.url}/sms/?number=%2B15551234567&data=daemon", timeout=10)
        self.assertEqual(code, 200, body)
        message_id = int(body.split()[1])
        smsd.wait_for(lambda: len(smsd.loopback_lines()) == 1, what="the loopback delivery")
        status, message = smsd.get(f"/api/v1/messages/{message_id}")
        self.assertEqual((status, message["text"]), (200, "daemon"))
        writer = children(pid, writer=True)
        self.assertEqual(len(writer), 1)  # the store's writer is the daemon's own child
        os.kill(pid, signal.SIGTERM)
        smsd.wait_for(lambda: not alive(pid) and not any(alive(w) for w in writer), what="exit")
        self.assertIn("smsd stopped", smsd.log())


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _answers(smsd: SmsdProcess) -> bool:
    try:
        return smsd.get("/api/v1/health")[0] in (200, 503)
    except OSError:
        return False


def _kill(pid: int) -> None:
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
