"""Append lines to a file without blocking the reactor.

Lines written while the previous batch is on its way to the disk are
gathered and written together by a worker thread; each ``write`` fires once
its line has reached the operating system (and the disk, with ``fsync``).
"""

from __future__ import annotations

import os
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from smsd.worker import WorkerThread


def _write(f: IO[str], lines: list[str], fsync: bool) -> None:
    f.write("".join(lines))
    f.flush()
    if fsync:
        os.fsync(f.fileno())


class Appender:
    def __init__(self, path: str, reactor: Any, *, fsync: bool = False) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._fsync = fsync
        self._thread = WorkerThread(
            f"append:{os.path.basename(path)}",
            lambda: open(path, "a", encoding="utf-8"),  # noqa: SIM115 - closed by the thread
            reactor,
            transactional=False,
        )
        self._lines: list[str] = []
        self._waiters: list[Deferred[None]] = []
        self._busy = False

    def write(self, line: str) -> Deferred[None]:
        """Queue one line (a newline is added)."""
        d: Deferred[None] = Deferred()
        self._lines.append(line + "\n")
        self._waiters.append(d)
        self._kick()
        return d

    def write_many(self, lines: list[str]) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._lines.extend(line + "\n" for line in lines)
        self._waiters.append(d)
        self._kick()
        return d

    def _kick(self) -> None:
        if self._busy or not self._lines:
            return
        lines, waiters = self._lines, self._waiters
        self._lines, self._waiters = [], []
        self._busy = True
        self._thread.run(_write, lines, self._fsync).addBoth(self._written, waiters)

    def _written(self, result: Any, waiters: list[Deferred[None]]) -> None:
        self._busy = False
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)
        self._kick()

    def close(self) -> Deferred[None]:
        """Write what is pending, then close the file."""
        if self._lines:
            lines, waiters = self._lines, self._waiters
            self._lines, self._waiters = [], []
            self._thread.run(_write, lines, self._fsync).addBoth(self._written, waiters)
        return self._thread.close()
