"""The store's writer in a process of its own, with the writer thread's group commit.

Why a process: in the SMPP benchmark the writer thread's transactions took
10.8 ms of wall time for 3.8 ms of CPU. SQLite lets go of the GIL at every
statement step and must take it back from the reactor thread, so most of a
transaction was spent waiting for the reactor, and the reactor waited for
the commits. A child process has its own GIL: the reactor and the commits
run side by side, on two cores.

The wire is pickle frames (4-byte length, then the pickle) on the child's
stdin and stdout: operations go as ``(key, fn, args)``, where ``fn`` is a
module-level function (pickled by name) and each batch's results come back
as one frame of ``(key, ok, value or exception)``. Both ends are ours and
the pipe is private to them, so pickle is safe here. The child commits
whatever has arrived while the previous commit ran (group commit), exactly
as the thread does, with the same code (:func:`smsd.groupcommit.execute`);
its side is :mod:`smsd.workerchild`. It ends when its stdin closes: when
the parent closes the store, or dies.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable
from itertools import count
from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ProcessTerminated
from twisted.logger import Logger
from twisted.python.failure import Failure

import smsd
from smsd.workerchild import frame, read_frames

log = Logger()

RESTART_DELAY = 1.0  # seconds before a child that died is replaced (not a tight loop)
RESTART_MAX = 60.0  # a child that keeps dying young waits twice as long each time, up to this
SETTLED = 10.0  # seconds a child must have lived for its next replacement to start at once


class WriterGone(Exception):
    """The writer process ended while smsd still needed it."""


class WorkerProcess:
    """The :class:`smsd.worker.WorkerThread` interface, for a transactional
    resource, with the work done in a child process.

    ``connect`` must pickle (a module-level function or a partial of one): the
    child calls it to open its connection.
    """

    def __init__(
        self, name: str, connect: Callable[[], Any], reactor: Any, *, batch: int = 512
    ) -> None:
        self._name = name
        self._connect = connect
        self._batch = batch
        self._reactor = reactor
        self._pending: dict[int, Deferred[Any]] = {}
        self._keys = count()
        self._closed: Deferred[None] = Deferred()
        self._gone: Exception | None = None
        self._closing = False
        self._restart: Any = None  # the delayed call that starts a child again
        self._delay = RESTART_DELAY
        self._transport: Any = None
        self._write: Callable[[bytes], None] | None = None  # to the child once it runs
        self._early: list[bytes] = []  # operations asked for before the child runs
        # Started once the reactor runs, as the writer thread is: twistd without
        # -n forks to become a daemon in between, and the child must be the
        # daemon's (its exit is seen only by its parent).
        reactor.callWhenRunning(self._start)

    def _start(self) -> None:
        self._restart = None
        if self._closing and (self._transport is not None or not self._early):
            return  # closed: a dead child is not replaced, and nothing waits to be done
        self._gone = None
        self._started = self._reactor.seconds()
        self._buffer = bytearray()
        here = os.path.dirname(os.path.dirname(os.path.abspath(smsd.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        self._transport = self._reactor.spawnProcess(
            _Pipe(self),
            sys.executable,
            [sys.executable, "-m", "smsd.workerchild", self._name],
            env=env,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        # Imported here, in smsd, not at the top: the child imports this module too,
        # and Twisted's TCP and process modules would cost it 11 MB (OpenSSL among them).
        from smsd.sendnow import write_to_child

        self._write = functools.partial(write_to_child, self._transport)
        self._transport.write(frame((self._connect, self._batch)))
        early, self._early = self._early, []
        for data in early:
            self._transport.write(data)
        if self._closing:  # closed before the reactor ran, with operations asked for
            self._transport.closeStdin()

    def run(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Queue ``fn(connection, *args)`` in the child; the Deferred fires in the reactor.

        After ``close`` nothing more is done and the Deferred never fires, as
        with the writer thread: smsd is stopping, and a part that still asks
        (a lease release scheduled at start) must not log an error for it.
        While a child that died is not yet replaced, operations fail with
        WriterGone (a client hears "try again", nothing was acknowledged).
        """
        if self._closing:
            return Deferred()
        if self._gone is not None:
            return fail(self._gone)
        key = next(self._keys)
        try:
            data = frame((key, fn, args))
        except Exception:
            return fail()
        d: Deferred[Any] = Deferred()
        self._pending[key] = d
        if self._write is None:  # no child yet
            self._early.append(data)
        else:
            self._write(data)
        return d

    def close(self) -> Deferred[None]:
        """Let the child commit what it was given, then end; fires once it has."""
        if self._closing:
            return self._closed
        self._closing = True
        if self._restart is not None:  # no child now: none to wait for
            self._restart.cancel()
            self._restart = None
            self._closed.callback(None)
        elif self._transport is None:  # the reactor has not run yet: no child so far
            if not self._early:
                self._closed.callback(None)
            # else the child starts with the reactor, does what was asked, and ends
        else:
            self._transport.closeStdin()
        return self._closed

    def join(self, timeout: float) -> None:
        """End the child before the reactor runs (a start that failed), at once:
        nothing was acknowledged yet, and SQLite rolls back what it had not committed."""
        pid = self._transport.pid if self._transport is not None else None
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    # From the child ----------------------------------------------------------

    def _received(self, data: bytes) -> None:
        self._buffer += data
        batches, used = read_frames(self._buffer, len(self._buffer))
        del self._buffer[:used]
        for results in batches:
            for key, ok, value in results:
                d = self._pending.pop(key)
                if ok:
                    d.callback(value)
                else:
                    d.errback(Failure(value))

    def _ended(self, reason: Failure) -> None:
        gone = WriterGone(f"{self._name} ended")
        self._gone = gone
        pending, self._pending = self._pending, {}
        closing = self._closing  # the errbacks below may close (their callers run at once)
        if closing:
            if pending or reason.check(ProcessTerminated):
                log.error(
                    "{name} ended: {why}; {n} store operations were not done",
                    name=self._name,
                    why=_how(reason),
                    n=len(pending),
                )
        else:
            if self._reactor.seconds() - self._started >= SETTLED:
                self._delay = RESTART_DELAY
            log.critical(
                "{name} ended: {why}; {n} store operations failed; starting it again in {delay} s",
                name=self._name,
                why=_how(reason),
                n=len(pending),
                delay=self._delay,
            )
            self._restart = self._reactor.callLater(self._delay, self._start)
            self._delay = min(self._delay * 2, RESTART_MAX)
        for d in pending.values():
            d.errback(Failure(gone))
        if closing:
            self._closed.callback(None)


def _how(reason: Failure) -> str:
    """How a child ended, in a few words: "exit code 1", "signal 9"."""
    value = reason.value
    if getattr(value, "signal", None):
        return f"signal {value.signal}"
    return f"exit code {getattr(value, 'exitCode', None) or 0}"


class _Pipe(protocol.ProcessProtocol):
    def __init__(self, owner: WorkerProcess) -> None:
        self._owner = owner
        self._errors = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self._owner._received(data)
            return
        # The child's log and anything it printed: one log line per line.
        *lines, self._errors = (self._errors + data).split(b"\n")
        for line in lines:
            log.warn("{name}: {line}", name=self._owner._name, line=line.decode(errors="replace"))

    def processEnded(self, reason: Failure) -> None:
        self._owner._ended(reason)
