"""The appender: lines reach the file in order, lingering lines wait for company.

A real file in a temporary directory; the reactor is trial's, so the
appender's thread writes for real.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from smsd.appender import Appender


class AppenderTests(unittest.TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="smsd-test-appender-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.path = os.path.join(self.directory, "traffic.log")

    def lines(self) -> list[str]:
        with open(self.path, encoding="utf-8") as f:
            return f.read().splitlines()

    async def test_lines_added_without_linger_are_written_at_once(self) -> None:
        appender = Appender(self.path, reactor)
        appender.add(["one", "two"])
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(self.lines(), ["one", "two"])
        await appender.close()

    async def test_lingering_lines_go_together_after_the_linger(self) -> None:
        appender = Appender(self.path, reactor, linger=0.5)
        for n in range(100):
            appender.add([f"line {n}"])
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(self.lines(), [])  # still lingering
        await deferLater(reactor, 0.6, lambda: None)
        self.assertEqual(self.lines(), [f"line {n}" for n in range(100)])
        await appender.close()

    async def test_a_write_someone_waits_for_takes_the_lingering_lines_along(self) -> None:
        appender = Appender(self.path, reactor, linger=30)
        appender.add(["early"])
        await appender.write(["waited for"])
        self.assertEqual(self.lines(), ["early", "waited for"])
        await appender.close()

    async def test_close_writes_what_lingers(self) -> None:
        appender = Appender(self.path, reactor, linger=30)
        appender.add(["last"])
        await appender.close()
        self.assertEqual(self.lines(), ["last"])
