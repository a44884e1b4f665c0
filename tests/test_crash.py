"""Accepted means durable: kill -9 while messages wait, restart, every one goes out once."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

from twisted.trial import unittest

from tests.process import SmsdProcess, curl

CONFIG = """
[snpp]
listen = []
[sip]
listen = []
[http]
listen = ["tcp:{port}:interface=127.0.0.1"]
max_recipients = 100
[dispatch]
poll = "200ms"
[[gateway]]
id = "loopback"
type = "loopback"
throughput = 100
report_delay = "50ms"
"""

MESSAGES = 1000


class KillNineTests(unittest.TestCase):
    timeout = 300

    def setUp(self) -> None:
        self.smsd = SmsdProcess(CONFIG)
        self.addCleanup(self.smsd.cleanup)

    def submit(self, count: int) -> list[int]:
        ids = []
        for start in range(0, count, 100):
            numbers = [f"+1555{n:07d}" for n in range(start, start + 100)]
            code, body = curl(
                "-H", "content-type: application/json", "--data-binary",
                json.dumps({"to": numbers, "text": f"crash test {start}"}),
                f"{self.smsd.url}/api/v1/messages",
            )  # fmt: skip
            self.assertEqual(code, 202, body)
            ids += [m["id"] for m in json.loads(body)["messages"]]
        return ids

    def states(self) -> dict[str, int]:
        return json.loads(self.smsd.admin("queue", "--json").stdout)["states"]

    def sent_lines(self) -> list[dict]:
        return self.smsd.loopback_lines()

    def reconfigure(self, old: str, new: str) -> None:
        config = Path(self.smsd.config_path or "")
        config.write_text(re.sub(old, new, config.read_text()))

    def test_crash_between_network_ack_and_commit(self) -> None:
        """The loopback network kills smsd right after it took parts, before the store knew."""
        self.reconfigure(r"throughput = \d+", "throughput = 0\ncrash_after = 300")
        self.smsd.start()
        ids = self.submit(MESSAGES)
        assert self.smsd.proc is not None
        self.assertEqual(self.smsd.proc.wait(60), -9)  # it died by itself
        written = self.sent_lines()
        self.assertGreaterEqual(len(written), 300)
        unrecorded = self.states().get("sending", 0) + self.states().get("queued", 0)
        self.assertGreater(unrecorded, MESSAGES - len(written))  # some sent, not recorded

        self.reconfigure(r"crash_after = \d+", "crash_after = 0")
        self.smsd.start()
        self.smsd.wait_for(
            lambda: self.states().get("delivered") == MESSAGES, timeout=120, what="all delivered"
        )
        counts = collections.Counter(line["id"] for line in self.sent_lines())
        self.assertEqual(set(counts), set(ids))
        self.assertEqual([i for i, n in counts.items() if n > 1], [])

    def test_kill_nine_twice_loses_nothing_and_doubles_nothing(self) -> None:
        self.smsd.start()
        ids = self.submit(MESSAGES)  # acknowledged: each must go out exactly once
        self.assertEqual(len(set(ids)), MESSAGES)
        # Throttled to 100/s: most are still queued when the first kill comes.
        self.smsd.wait_for(lambda: len(self.sent_lines()) >= 150, what="150 sent")
        self.smsd.kill()
        first = len(self.sent_lines())
        self.assertLess(first, MESSAGES, "the kill must come while messages wait")
        self.assertEqual(sum(self.states().values()), MESSAGES)  # all still in the store

        self.smsd.start()  # again throttled: kill it once more mid-way
        self.smsd.wait_for(lambda: len(self.sent_lines()) >= first + 150, what="150 more sent")
        self.smsd.kill()

        self.reconfigure(r"throughput = \d+", "throughput = 0")
        self.smsd.start()
        self.smsd.wait_for(
            lambda: self.states().get("delivered") == MESSAGES, timeout=120, what="all delivered"
        )
        lines = self.sent_lines()
        counts = collections.Counter(line["id"] for line in lines)
        self.assertEqual(set(counts), set(ids))
        self.assertEqual([i for i, n in counts.items() if n > 1], [])
        self.assertEqual(len(lines), MESSAGES)
        self.assertEqual(self.states(), {"delivered": MESSAGES})
