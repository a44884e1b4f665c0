"""A worker thread that runs queued operations and answers with Deferreds.

Used for database connections (the store) and for files that are appended
to (loopback output, traffic log): the reactor never waits for the disk.

The writer runs every operation that is waiting when it wakes in one
transaction (group commit): while one commit waits for its fsync, new
operations pile up and share the next one, so many concurrent submissions
cost few fsyncs. An operation that fails (a quota refused, a duplicate user)
is rolled back alone and the rest of the batch still commits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from smsd.groupcommit import Result, execute

_STOP = object()


class WorkerThread:
    """One thread, one resource (a connection, a file), operations in arrival order.

    With ``transactional`` the resource is an SQLite connection and each
    batch runs in one transaction, each operation in its own savepoint.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], Any],
        reactor: Any,
        *,
        transactional: bool,
        batch: int = 512,
    ) -> None:
        self._connect = connect
        self._reactor = reactor
        self._transactional = transactional
        self._batch = batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed: Deferred[None] = Deferred()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        # Started once the reactor runs, not now: twistd without -n forks to
        # become a daemon after building the service and before running the
        # reactor, and a thread started before that fork stays behind in the
        # parent that exits. Operations queued until then wait in the queue.
        self._abandoned = False
        reactor.callWhenRunning(self._start)

    def run(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Queue ``fn(connection, *args)``; the Deferred fires in the reactor thread."""
        d: Deferred[Any] = Deferred()
        self._queue.put((fn, args, d))
        return d

    def close(self) -> Deferred[None]:
        self._queue.put(_STOP)
        return self._closed

    def join(self, timeout: float) -> None:
        """Wait (blocking) for the thread to end after ``close``: only before the reactor runs.

        A thread that has not started yet never will: a start that failed must not
        leave one behind to open its file or database once the reactor runs.
        """
        self._abandoned = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _start(self) -> None:
        if not self._abandoned:
            self._thread.start()

    def _run(self) -> None:
        conn = self._connect()
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self._batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            if batch:
                results = execute(conn, batch, self._transactional)
                self._reactor.callFromThread(_fire, results)
        conn.close()
        self._reactor.callFromThread(self._closed.callback, None)


def _fire(results: list[Result]) -> None:
    for d, ok, value in results:
        if ok:
            d.callback(value)
        else:
            d.errback(Failure(value, type(value), value.__traceback__))
