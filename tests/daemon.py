"""A whole smsd in the test's own process (``make_service``), as the channel tests run it.

The channel tests (SMTP, SNPP, SIP, replies...) each start smsd on a configuration of
their own, talk to it with a real client, and look at what a user would see: the
stored messages and what the loopback gateway sent. This is that once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from smsd.config import load
from smsd.service import Smsd, make_service
from tests.fakes import wait_for


class DaemonCase(unittest.TestCase):
    """``run_smsd(config)``: smsd started in a temporary directory, stopped in cleanup."""

    timeout = 40

    def setUp(self) -> None:
        # Not self.mktemp(): under pytest that lands in the checkout.
        self.directory = tempfile.mkdtemp(prefix=f"smsd-test-{type(self).__name__}-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.data = os.path.join(self.directory, "data")
        self.root: Smsd | None = None

    def build_smsd(self, config: str) -> Smsd:
        """smsd made from ``config`` but not started (to add users first); stopped in
        cleanup once started."""
        path = os.path.join(self.directory, "smsd.toml")
        with open(path, "w") as f:
            f.write(config)
        root = make_service(load(path, self.data))
        self.root = root
        self.addCleanup(lambda: defer.ensureDeferred(self._stop_smsd()))
        return root

    def run_smsd(self, config: str) -> Smsd:
        root = self.build_smsd(config)
        root.startService()
        return root

    async def _stop_smsd(self) -> None:
        if self.root is not None and self.root.running:
            await self.root.stopService()

    async def stored_messages(self) -> list[dict[str, Any]]:
        """Every queued message so far, as the JSON API's store view shows it (ids 1...)."""
        assert self.root is not None
        out = []
        for i in range(1, 1000):
            m = await self.root.store.get_message(i)
            if m is None:
                break
            out.append(m)
        return out

    async def loopback_parts(self, count: int, log: str = "loopback.jsonl") -> list[dict[str, Any]]:
        """What the loopback gateway sent, once it has sent ``count`` parts."""
        path = os.path.join(self.data, log)

        def read() -> list[dict[str, Any]] | None:
            try:
                with open(path) as f:
                    lines = [json.loads(line) for line in f if line.strip()]
            except FileNotFoundError:
                return None
            return lines if len(lines) >= count else None

        return await wait_for(read, what=f"{count} parts at the loopback gateway")
