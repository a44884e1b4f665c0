"""smsd.foreground: with clients and gateway links ready at once, the clients go first.

A real epoll reactor of the test's own (not the one trial runs), real
socket pairs made readable, a clock the test moves: which descriptors one
turn of the reactor reads.
"""

from __future__ import annotations

import socket

from twisted.internet import epollreactor, selectreactor, task
from twisted.trial import unittest

from smsd import foreground


class _Reader:
    """A readable end of a socket pair that remembers it was read, and leaves
    the byte there (so it is ready again at the next turn)."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.ours, self.theirs = socket.socketpair()
        self.theirs.send(b"x")

    def fileno(self) -> int:
        return self.ours.fileno()

    def doRead(self) -> None:
        self.log.append(self.name)

    def logPrefix(self) -> str:
        return self.name

    def connectionLost(self, reason: object) -> None:
        pass

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


class ForegroundTests(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = epollreactor.EPollReactor()
        self.addCleanup(self.reactor._poller.close)
        self.addCleanup(self.reactor.waker.connectionLost, None)  # its pipe
        self.now = 0.0
        self.assertTrue(foreground.install(self.reactor, clock=lambda: self.now))
        self.read: list[str] = []

    def reader(self, name: str, *, link: bool = False) -> _Reader:
        r = _Reader(name, self.read)
        self.addCleanup(r.close)
        self.reactor.addReader(r)
        self.addCleanup(self.reactor.removeReader, r)
        if link:
            foreground.background(r)
        return r

    def turn(self, at: float) -> list[str]:
        self.now = at
        self.read.clear()
        self.reactor.doIteration(0)
        return sorted(self.read)

    def test_a_client_goes_first_and_the_link_waits_a_millisecond_at_most(self) -> None:
        self.assertEqual(foreground.BACKGROUND_WAIT, 0.001)
        self.reader("http")
        self.reader("smpp", link=True)
        self.assertEqual(self.turn(0.0), ["http"])
        self.assertEqual(self.turn(0.0009), ["http"])
        self.assertEqual(self.turn(0.001), ["http", "smpp"])
        # served: the next wait starts again from nothing
        self.assertEqual(self.turn(0.0011), ["http"])

    def test_a_link_alone_is_served_at_once(self) -> None:
        self.reader("smpp", link=True)
        self.assertEqual(self.turn(1.0), ["smpp"])

    def test_clients_alone_are_served_as_before(self) -> None:
        self.reader("http")
        self.reader("smtp")
        self.assertEqual(self.turn(1.0), ["http", "smtp"])

    def test_the_mark_goes_with_the_connection_not_its_descriptor_number(self) -> None:
        self.reader("http")
        link = self.reader("smpp", link=True)
        self.reactor.removeReader(link)
        fd = link.fileno()
        link.close()
        del link  # the connection is gone; a client's socket gets the same number
        client = _Reader("client", self.read)
        self.addCleanup(client.close)
        self.assertEqual(client.fileno(), fd)
        self.reactor.addReader(client)
        self.addCleanup(self.reactor.removeReader, client)
        self.assertEqual(self.turn(1.0), ["client", "http"])

    def test_a_tls_link_is_marked_by_its_tcp_connection(self) -> None:
        self.reader("http")
        tcp = self.reader("smpp", link=False)

        class Tls:  # TLSMemoryBIOProtocol: no fileno, the TCP connection under it
            transport = tcp

        foreground.background(Tls())
        self.assertEqual(self.turn(1.0), ["http"])

    def test_queued_work_waits_behind_the_clients_like_a_link(self) -> None:
        self.reader("http")
        foreground.later(self.reactor, self.read.append, "report")
        self.assertEqual(self.turn(0.0), ["http"])
        self.assertEqual(self.turn(0.001), ["http", "report"])

    def test_queued_work_runs_at_once_when_no_client_is_ready(self) -> None:
        foreground.later(self.reactor, self.read.append, "submit")
        self.assertEqual(self.turn(1.0), ["submit"])

    def test_work_queued_by_queued_work_waits_for_the_next_turn(self) -> None:
        def submit() -> None:
            self.read.append("submit")
            foreground.later(self.reactor, self.read.append, "answer")

        foreground.later(self.reactor, submit)
        self.assertEqual(self.turn(1.0), ["submit"])
        self.assertEqual(self.turn(1.0), ["answer"])

    def test_work_that_fails_is_logged_and_the_rest_runs(self) -> None:
        def broken() -> None:
            raise RuntimeError("simulated")

        foreground.later(self.reactor, broken)
        foreground.later(self.reactor, self.read.append, "next")
        self.assertEqual(self.turn(1.0), ["next"])
        [failure] = self.flushLoggedErrors(RuntimeError)
        self.assertEqual(str(failure.value), "simulated")

    def test_on_another_reactor_queued_work_runs_on_its_next_turn(self) -> None:
        clock = task.Clock()
        foreground.later(clock, self.read.append, "report")
        self.assertEqual(self.read, [])
        clock.advance(0)
        self.assertEqual(self.read, ["report"])

    def test_another_reactor_is_left_alone(self) -> None:
        other = selectreactor.SelectReactor()
        self.addCleanup(other.waker.connectionLost, None)
        poll = other.doIteration
        self.assertFalse(foreground.install(other))
        self.assertEqual(other.doIteration, poll)
