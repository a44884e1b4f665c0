"""HTTP worker processes: the HTTP channel on a second core.

One Python process runs on one core: measured with ``bench/smpp_bench.py
--split``, smsd's HTTP side alone costs about 300 µs of CPU a submission and
its SMPP side about 410 µs a message, so one process tops out near 1,400 a
second where Kannel's threads use both cores. With ``[http] workers = N``
the main process keeps the store's only writer, the dispatcher and the
gateways, and N worker processes serve HTTP on the listening sockets the
main process opened (the kernel shares out the connections):

* a worker parses the request, authenticates, and ``prepare``s the
  submission (numbers, sender ID, text and parts) as the Submitter always
  does, then hands each reactor turn's batch to the main process, which
  commits it (with its claim at commit) and answers with the ids: the client
  hears "accepted" only once the main process has committed, as before;
* reads (message status, the inbound list, users for logins) go to the
  store directly: SQLite's readers do not wait for its writer. Writes never
  do: two processes writing one SQLite file wait on each other's lock (a
  prototype did, and its p99 went to 147 ms);
* health and inject are asked of the main process.

The link is the worker's stdin and stdout, with length-prefixed pickles
(both ends are this program). A worker that dies is started again after a
second; a worker whose main process has gone stops.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

log = Logger()

Handler = Callable[[Any], Any]  # a value, or a Deferred of one


class Link(Int32StringReceiver):
    """Calls both ways over one byte stream: ``call(name, payload)`` -> Deferred."""

    MAX_LENGTH = 64 << 20

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self._calls: dict[int, Deferred[Any]] = {}
        self._next = 0
        self.lost: Deferred[None] = Deferred()

    def waiting(self) -> int:
        """Calls still waiting for their answer."""
        return len(self._calls)

    def call(self, name: str, payload: Any = None) -> Deferred[Any]:
        self._next += 1
        d: Deferred[Any] = Deferred()
        self._calls[self._next] = d
        self.sendString(pickle.dumps(("call", self._next, name, payload), protocol=5))
        return d

    def stringReceived(self, data: bytes) -> None:
        kind, number, name, payload = pickle.loads(data)
        if kind == "call":
            handler = self.handlers.get(name)
            if handler is None:
                self._answer(number, "error", RuntimeError(f"no such call {name!r}"))
                return
            d = maybeDeferred(handler, payload)
            d.addCallbacks(
                lambda value: self._answer(number, "value", value),
                lambda f: self._answer(number, "error", _portable(f)),
            )
            return
        d = self._calls.pop(number, None)
        if d is not None:
            if kind == "value":
                d.callback(payload)
            else:
                d.errback(payload)

    def _answer(self, number: int, kind: str, payload: Any) -> None:
        if self.transport is not None:
            self.sendString(pickle.dumps((kind, number, None, payload), protocol=5))

    def connectionLost(self, reason: Failure | None = None) -> None:
        calls, self._calls = self._calls, {}
        for d in calls.values():
            d.errback(ConnectionError("the other process has gone"))
        if not self.lost.called:
            self.lost.callback(None)


def _portable(failure: Failure) -> BaseException:
    """An error the other side can be told: ours as they are, the rest in one line."""
    from smsd.channels.http import HttpError
    from smsd.core.submit import Refused

    if failure.check(Refused, HttpError):
        return failure.value
    log.failure("a call from an HTTP worker failed", failure)
    return RuntimeError("internal error (logged)")


# --- the main process's side --------------------------------------------------------------------


class Listener:
    """One endpoint of ``[http] listen``, listened on by the main process for the workers.

    Twisted parses and opens it (so ``tcp:`` takes every option it takes anywhere);
    the main process never accepts on it, it only hands the socket to the workers."""

    def __init__(self, description: str, reactor: Any) -> None:
        endpoint = serverFromString(reactor, description)
        if not isinstance(endpoint, TCP4ServerEndpoint | TCP6ServerEndpoint):
            raise ValueError(f"HTTP workers take tcp: endpoints only, not {description!r}")
        self.description = description
        self.endpoint = endpoint
        self.port: Any = None

    def open(self) -> None:
        """Listen now: a TCP endpoint does so at once, and a port in use raises here."""
        result: list[Any] = []
        self.endpoint.listen(Factory()).addBoth(result.append)
        [port] = result
        if isinstance(port, Failure):
            port.raiseException()  # CannotListenError
        port.stopReading()
        self.port = port

    def close(self) -> None:
        if self.port is not None:
            self.port.stopListening()
            self.port = None


class _Worker(ProcessProtocol):
    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.link = Link(pool.handlers)
        self.ended: Deferred[None] = Deferred()
        self._err = b""

    def connectionMade(self) -> None:
        self.link.makeConnection(self.transport)  # writes go to the worker's stdin

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.link.dataReceived(data)
            return
        self._err += data  # its log lines
        *lines, self._err = self._err.split(b"\n")
        for line in lines:
            if line.strip():
                log.info(
                    "http worker {n}: {line}", n=self.index, line=line.decode(errors="replace")
                )

    def processEnded(self, reason: Failure) -> None:
        self.link.connectionLost(reason)
        self.ended.callback(None)
        self.pool.ended(self, reason)


class WorkerPool(Service):
    """Opens the HTTP sockets, runs ``count`` workers on them, and answers their calls."""

    name = "http-workers"

    def __init__(
        self,
        *,
        count: int,
        listen: list[str],
        config_path: str | None,
        data_dir: str,
        handlers: dict[str, Handler],
        reactor: Any,
    ) -> None:
        self.count = count
        self.listeners = [Listener(d, reactor) for d in listen]
        self.config_path = config_path
        self.data_dir = data_dir
        self.handlers = handlers
        self.reactor = reactor
        self.workers: dict[int, _Worker] = {}
        self._restarts: dict[int, Any] = {}
        self._started: dict[int, float] = {}  # when each worker was last started
        self._delay: dict[int, float] = {}  # its next restart delay

    def privilegedStartService(self) -> None:
        for listener in self.listeners:
            listener.open()  # CannotListenError: the start stops with one line
        super().privilegedStartService()

    def startService(self) -> None:
        super().startService()
        for i in range(self.count):
            self._spawn(i)
        log.info(
            "HTTP served by {count} worker processes on {listen}",
            count=self.count,
            listen=", ".join(x.description for x in self.listeners),
        )

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        if not self.running:
            return
        worker = _Worker(self, index)
        fds: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
        specs = []
        for n, listener in enumerate(self.listeners):
            fds[3 + n] = listener.port.fileno()
            specs.append(f"{3 + n}:{int(listener.port.addressFamily)}")
        argv = [
            sys.executable,
            "-m",
            "smsd.workers",
            os.path.abspath(self.config_path) if self.config_path else "",
            os.path.abspath(self.data_dir),
            str(index),
            *specs,
        ]
        self.reactor.spawnProcess(worker, sys.executable, argv, env=dict(os.environ), childFDs=fds)
        self.workers[index] = worker
        self._started[index] = self.reactor.seconds()

    def ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if self.running:
            # One that keeps dying at once (a broken install) is retried ever more slowly.
            lived = self.reactor.seconds() - self._started.get(worker.index, 0.0)
            delay = 1.0 if lived > 10 else min(30.0, 2 * self._delay.get(worker.index, 0.5))
            self._delay[worker.index] = delay
            log.warn(
                "http worker {n} ended ({why}); starting it again in {delay:g}s",
                n=worker.index,
                why=reason.getErrorMessage(),
                delay=delay,
            )
            self._restarts[worker.index] = self.reactor.callLater(delay, self._spawn, worker.index)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        workers = list(self.workers.values())
        for w in workers:  # a worker stops taking requests and answers what it has
            _signal(w, "TERM")
        kill = self.reactor.callLater(10.0, lambda: [_signal(w, "KILL") for w in workers])
        d = DeferredList([w.ended for w in workers])

        def done(_: Any) -> None:
            if kill.active():
                kill.cancel()
            for listener in self.listeners:
                listener.close()

        d.addBoth(done)
        return d.addCallback(lambda _: None)


def _signal(worker: _Worker, name: str) -> None:
    if worker.transport is not None:
        with contextlib.suppress(error.ProcessExitedAlready):
            worker.transport.signalProcess(name)


# --- the worker's side --------------------------------------------------------------------------


def worker_main(argv: list[str]) -> None:
    """``python -m smsd.workers CONFIG DATA_DIR INDEX FD:FAMILY...`` (started by WorkerPool)."""
    from twisted.internet import reactor, stdio
    from twisted.logger import formatEventAsClassicLogText, globalLogBeginner

    from smsd.channels.http import HttpContext, make_site
    from smsd.config import load
    from smsd.core.routing import Router
    from smsd.core.submit import SubmitSettings, Submitter
    from smsd.core.users import Directory, make_portal
    from smsd.service import SWITCH_INTERVAL, tune_gc
    from smsd.store import open_store

    config_path, data_dir, index, *specs = argv

    def to_main(event: dict[str, Any]) -> None:  # the main process adds the time
        text = formatEventAsClassicLogText(event, formatTime=lambda _: "")
        if text:
            sys.stderr.write(text.lstrip())
            sys.stderr.flush()

    globalLogBeginner.beginLoggingTo([to_main], redirectStandardIO=False)
    sys.setswitchinterval(SWITCH_INTERVAL)
    config = load(config_path or None, data_dir)
    store = open_store(
        config.store.url,
        config.data_dir,
        synchronous=config.store.synchronous,
        batch=config.store.batch,
    )
    link = Link({})
    ids = config.gateway_ids()
    submitter = Submitter(
        store,
        SubmitSettings.from_config(config),
        reactor,
        router=Router.from_config(config.routes, ids),
        remote=lambda batch: link.call("commit", batch),
    )
    context = HttpContext.from_config(
        config,
        submitter=submitter,
        portal=make_portal(Directory(store, reactor)),
        store=store,
        reactor=reactor,
        health=lambda: link.call("health"),
        inject=lambda *args: link.call("inject", args),
    )
    site = make_site(context)
    ports = []
    for spec in specs:
        fd, family = (int(x) for x in spec.split(":"))
        ports.append(reactor.adoptStreamPort(fd, socket.AddressFamily(family), site))
        os.close(fd)  # adoptStreamPort made its own copy

    def draining() -> Deferred[None]:
        """Stop taking connections; answer what was taken (for at most 5 seconds)."""
        for port in ports:
            port.stopListening()
        d: Deferred[None] = Deferred()
        deadline = reactor.seconds() + 5.0

        def check() -> None:
            busy = submitter.busy() or link.waiting()
            if busy and reactor.seconds() < deadline and not link.lost.called:
                reactor.callLater(0.02, check)
            else:
                d.callback(None)

        check()
        return d

    reactor.addSystemEventTrigger("before", "shutdown", draining)
    reactor.addSystemEventTrigger("after", "shutdown", store.close)
    stdio.StandardIO(link)
    link.lost.addCallback(lambda _: reactor.running and reactor.stop())
    reactor.callWhenRunning(tune_gc)
    log.info("serving HTTP (worker {index}, pid {pid})", index=index, pid=os.getpid())
    reactor.run()


if __name__ == "__main__":
    worker_main(sys.argv[1:])
