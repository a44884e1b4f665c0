"""The store's writer process: operations committed in a child, answers in the reactor.

Each test starts a real child (``python -m smsd.workerchild``) on an SQLite
file in its own temporary directory. The operations are the functions below,
which the child imports by name, as it does the store's.
"""

from __future__ import annotations

import copyreg
import functools
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile

import attrs
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from smsd import model, store
from smsd.store import QuotaExceeded
from smsd.workerchild import frame, serve
from smsd.workerproc import RESTART_DELAY, WorkerProcess, WriterGone


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS notes (n INTEGER PRIMARY KEY)")
    return conn


def add(conn: sqlite3.Connection, n: int) -> int:
    conn.execute("INSERT INTO notes (n) VALUES (?)", (n,))
    return n


def pid(conn: sqlite3.Connection) -> int:
    return os.getpid()


def over_quota(conn: sqlite3.Connection) -> None:
    raise QuotaExceeded(10, 10, 2)


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b}")  # args do not rebuild it


def raise_unpicklable(conn: sqlite3.Connection) -> None:
    raise Unpicklable(1, 2)


def die(conn: sqlite3.Connection) -> None:
    os._exit(3)


class WorkerProcessTests(unittest.TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="smsd-test-workerproc-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.path = os.path.join(self.directory, "notes.db")
        self.worker = WorkerProcess("test-writer", functools.partial(connect, self.path), reactor)
        self.addCleanup(self.worker.close)

    def rows(self) -> list[int]:
        conn = sqlite3.connect(self.path)
        try:
            return [n for (n,) in conn.execute("SELECT n FROM notes ORDER BY n")]
        finally:
            conn.close()

    async def test_operations_run_in_the_child_and_commit(self) -> None:
        child = await self.worker.run(pid)
        self.assertNotEqual(child, os.getpid())
        results = await defer.gatherResults([self.worker.run(add, n) for n in range(100)])
        self.assertEqual(results, list(range(100)))
        self.assertEqual(self.rows(), list(range(100)))  # committed, seen from outside

    async def test_a_failed_operation_fails_alone(self) -> None:
        ds = [self.worker.run(add, 1), self.worker.run(add, 1), self.worker.run(add, 2)]
        results = await defer.DeferredList(ds, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, False, True])
        results[1][1].trap(sqlite3.IntegrityError)
        self.assertEqual(self.rows(), [1, 2])

    async def test_the_store_errors_keep_their_type_and_fields(self) -> None:
        with self.assertRaises(QuotaExceeded) as raised:
            await self.worker.run(over_quota)
        self.assertEqual((raised.exception.used, raised.exception.limit), (10, 10))
        self.assertIn("monthly limit reached", str(raised.exception))

    async def test_an_exception_that_does_not_pickle_comes_back_as_its_words(self) -> None:
        with self.assertRaises(RuntimeError) as raised:
            await self.worker.run(raise_unpicklable)
        self.assertEqual(str(raised.exception), "Unpicklable: 1 and 2")
        self.assertEqual(await self.worker.run(add, 5), 5)

    async def test_an_argument_that_does_not_pickle_fails_at_once(self) -> None:
        d = self.worker.run(add, lambda: 1)
        self.assertFailure(d, Exception)
        await d
        self.assertEqual(await self.worker.run(add, 6), 6)

    async def test_close_commits_what_was_queued_first(self) -> None:
        ds = [self.worker.run(add, n) for n in range(50)]
        await self.worker.close()
        self.assertEqual(len(await defer.gatherResults(ds)), 50)
        self.assertEqual(len(self.rows()), 50)
        late = self.worker.run(add, 99)  # smsd is stopping: never done, never an error
        await deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(late.called)
        self.assertEqual(len(self.rows()), 50)

    async def test_a_stop_signal_to_the_process_group_does_not_end_it(self) -> None:
        """Ctrl-C or systemd's SIGTERM reach every process; the writer waits for smsd."""
        child = await self.worker.run(pid)
        os.kill(child, signal.SIGTERM)
        os.kill(child, signal.SIGINT)
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(await self.worker.run(add, 7), 7)

    async def test_a_child_that_dies_fails_what_waits_and_is_replaced(self) -> None:
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        first = await self.worker.run(pid)
        await self.worker.run(add, 1)
        waiting = self.worker.run(die)
        self.assertFailure(waiting, WriterGone)
        await waiting
        with self.assertRaises(WriterGone):  # not replaced yet: try again later
            await self.worker.run(add, 2)
        critical = [e for e in events if e.get("log_level") == LogLevel.critical]
        self.assertEqual(len(critical), 1)
        self.assertEqual(critical[0]["n"], 1)
        await deferLater(reactor, RESTART_DELAY + 0.2, lambda: None)
        self.assertNotEqual(await self.worker.run(pid), first)
        self.assertEqual(await self.worker.run(add, 3), 3)
        self.assertEqual(self.rows(), [1, 3])

    async def test_a_child_that_keeps_dying_young_is_started_again_less_often(self) -> None:
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        await self.worker.run(die).addErrback(lambda f: f.trap(WriterGone))
        await deferLater(reactor, RESTART_DELAY + 0.2, lambda: None)
        await self.worker.run(die).addErrback(lambda f: f.trap(WriterGone))
        delays = [e["delay"] for e in events if e.get("log_level") == LogLevel.critical]
        self.assertEqual(delays, [RESTART_DELAY, 2 * RESTART_DELAY])

    async def test_close_while_no_child_runs(self) -> None:
        await self.worker.run(die).addErrback(lambda f: f.trap(WriterGone))
        await self.worker.close()  # at once: there is no child to wait for
        await deferLater(reactor, RESTART_DELAY + 0.2, lambda: None)
        late = self.worker.run(add, 4)
        self.assertFalse(late.called)  # closed: no child was started again


class ServeTests(unittest.TestCase):
    """The child's loop itself, in this process, on pipes."""

    def test_smsd_gone_before_the_answer_ends_it_quietly_with_the_commit_kept(self) -> None:
        directory = tempfile.mkdtemp(prefix="smsd-test-serve-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "notes.db")
        inp_r, inp_w = os.pipe()
        out_r, out_w = os.pipe()
        os.write(inp_w, frame((functools.partial(connect, path), 512)) + frame((0, add, (7,))))
        os.close(inp_w)  # then EOF, as when smsd dies
        os.close(out_r)  # nobody reads the answer
        try:
            serve(inp_r, out_w)  # returns, no BrokenPipeError
        finally:
            os.close(inp_r)
            os.close(out_w)
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT n FROM notes").fetchall(), [(7,)])

    def test_the_child_loads_no_network_or_reactor_modules(self) -> None:
        """The writer child needs SQLite, pickle and Twisted's logger: Twisted's
        reactor modules (Deferreds, TCP, TLS) and the asyncio they bring would cost
        it about 14 MB of memory."""
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, smsd.workerchild, smsd.store.sqlite;"
                " print(sorted({m.rsplit('.', 1)[0] for m in sys.modules if m == 'OpenSSL'"
                " or m.startswith(('twisted.internet', 'asyncio'))}))",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        self.assertEqual(out.stdout.strip(), "[]")


class RecordPicklingTests(unittest.TestCase):
    """What crosses the pipe comes out equal, pickled by field values (copyreg)."""

    def test_every_record_round_trips(self) -> None:
        classes = [
            model.OutPart,
            model.Message,
            model.PartResult,
            model.Report,
            model.User,
            model.Inbound,
            model.InboundPart,
            store.NewMessage,
            store.Charge,
            store.Claim,
            store.Added,
            store.Outcome,
            store.Change,
        ]
        for cls in classes:
            self.assertIn(cls, copyreg.dispatch_table)
            fields = attrs.fields(cls)
            record = cls(*(f"value {i}" for i in range(len(fields))))
            copy = pickle.loads(pickle.dumps(record, pickle.HIGHEST_PROTOCOL))
            self.assertEqual(copy, record)
            self.assertEqual(type(copy), cls)
