"""``[http] workers``: the HTTP channel in worker processes, seen by curl.

One smsd daemon with two HTTP workers and the loopback gateway. What a client
sees must not change: answers only once the main process committed, the same
refusals (some made in the worker, some in the main process), health and
inject answered by the main process, and a worker that dies is replaced.
"""

from __future__ import annotations

import os
import signal
import time

from twisted.trial import unittest

from tests.process import SmsdProcess, alive, children, curl
from tests.test_http import CONFIG, HttpCase, form, lines_for

WORKERS_CONFIG = CONFIG.replace("maxmsgs = 4\n", "maxmsgs = 4\nworkers = 2\n")


class WorkerTests(HttpCase):
    config = WORKERS_CONFIG

    @classmethod
    def prepare(cls, smsd: SmsdProcess) -> None:
        smsd.admin("user", "add", "carol", "--password", "pw", "--email", "c@example.org",
                   "--monthly-limit", "1")  # fmt: skip

    def workers(self) -> set[int]:
        assert self.smsd.proc is not None
        return children(self.smsd.proc.pid)

    def test_two_workers_serve_and_the_message_is_delivered(self) -> None:
        self.smsd.wait_for(lambda: len(self.workers()) == 2, what="two workers")
        code, body = self.sms(*form(number="+15551250001", data="via a worker"))
        self.assertEqual(code, 200, body)
        message_id = int(body.split()[1])
        m = self.wait_state(message_id)
        self.assertEqual((m["text"], m["channel"]), ("via a worker", "http"))
        [line] = lines_for(self.smsd, message_id)
        self.assertEqual(line["number"], "+15551250001")

    def test_refusals_made_in_the_worker_and_in_the_main_process(self) -> None:
        code, body = self.sms(*form(number="not a number", data="x"))  # prepare(): the worker
        self.assertEqual(code, 400, body)
        self.assertIn("invalid number", body)
        first = self.sms("-u", "carol:pw", *form(number="+15551250002", data="one"))
        self.assertEqual(first[0], 200, first)
        code, body = self.sms("-u", "carol:pw", *form(number="+15551250003", data="two"))
        self.assertEqual(code, 403, body)  # the quota is checked as the main process commits
        self.assertIn("monthly limit", body)

    def test_health_and_inject_are_answered_by_the_main_process(self) -> None:
        code, health = self.api("GET", "/api/v1/health")
        self.assertEqual(code, 200, health)
        self.assertEqual({g["id"] for g in health["gateways"]}, {"loopback", "second"})
        self.assertIn("dispatcher", health)
        sms = {"from": "+15550009999", "to": "+15551250004", "text": "hi", "gateway": "loopback"}
        code, body = self.api("POST", "/api/v1/inbound", sms)
        self.assertEqual(code, 201, body)
        code, listed = self.api("GET", "/api/v1/inbound")
        self.assertIn("hi", [m["text"] for m in listed["inbound"] if m["id"] == body["id"]])
        code, body = self.api("POST", "/api/v1/inbound", {**sms, "gateway": "nowhere"})
        self.assertEqual((code, body), (400, {"error": "unknown gateway 'nowhere'"}))

    def test_a_worker_that_dies_is_replaced(self) -> None:
        before = self.smsd.wait_for(lambda: len(w := self.workers()) == 2 and w)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        after = self.smsd.wait_for(
            lambda: len(w := self.workers()) == 2 and victim not in w and w, what="a new worker"
        )
        self.assertEqual(len(after - before), 1)
        for n in range(4):  # whichever worker the kernel picks answers
            code, body = self.sms(*form(number=f"+1555125010{n}", data="after"))
            self.assertEqual(code, 200, body)
        self.assertIn("starting it again", self.smsd.log())
        self.assertNotIn("Traceback", self.smsd.log())


class StopTests(unittest.TestCase):
    def test_stopping_smsd_stops_its_workers(self) -> None:
        smsd = SmsdProcess(WORKERS_CONFIG)
        self.addCleanup(smsd.cleanup)
        smsd.start()
        assert smsd.proc is not None
        workers = smsd.wait_for(lambda: len(w := children(smsd.proc.pid)) == 2 and w)
        workers |= children(smsd.proc.pid, writer=True)
        self.assertEqual(len(workers), 3)  # the store's writer ends too
        code, body = curl(smsd.url + "/sms/?number=%2B15551250200&data=last")
        self.assertEqual(code, 200, body)
        self.assertIn(smsd.stop(), (0, -15))  # twistd ends with the signal it was sent
        deadline = time.monotonic() + 10
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse([p for p in workers if alive(p)])

    def test_workers_stop_when_the_main_process_is_killed(self) -> None:
        """kill -9 of the main process: nobody could commit what they take, so they end
        (and free the port for the next start)."""
        smsd = SmsdProcess(WORKERS_CONFIG)
        self.addCleanup(smsd.cleanup)
        smsd.start()
        assert smsd.proc is not None
        workers = smsd.wait_for(lambda: len(w := children(smsd.proc.pid)) == 2 and w)
        workers |= children(smsd.proc.pid, writer=True)
        self.assertEqual(len(workers), 3)  # the store's writer ends too: its stdin closed
        smsd.kill()
        smsd.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse([p for p in workers if alive(p)])
        smsd.start()  # the port is free again
        code, body = curl(smsd.url + "/sms/?number=%2B15551250300&data=again")
        self.assertEqual(code, 200, body)

    def test_an_ssl_endpoint_with_workers_is_a_configuration_error(self) -> None:
        config = WORKERS_CONFIG.replace('listen = ["tcp:{port}"]', 'listen = ["unix:http.sock"]')
        smsd = SmsdProcess(config)
        self.addCleanup(smsd.cleanup)
        with self.assertRaises(AssertionError) as caught:
            smsd.start(timeout=10)
        self.assertIn("http.listen: HTTP workers take tcp: endpoints only", str(caught.exception))
