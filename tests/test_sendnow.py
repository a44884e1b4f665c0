"""send_now and write_to_child: bytes on their way at once, never out of order, all of them.

A Twisted client connects to a plain blocking socket; the test reads that
socket itself, so it sees exactly what reached the kernel before the
reactor's next turn. A child process echoes its stdin, for the pipe.
"""

from __future__ import annotations

import socket
import sys

from twisted.internet import defer, reactor
from twisted.internet.protocol import ClientFactory, ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from smsd.sendnow import send_now, write_to_child


class _Client(Protocol):
    def __init__(self, made: defer.Deferred[Protocol]) -> None:
        self.made = made

    def connectionMade(self) -> None:
        self.made.callback(self)


class SendNowTests(unittest.TestCase):
    timeout = 20

    async def connect(self) -> tuple[Protocol, socket.socket]:
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        made: defer.Deferred[Protocol] = defer.Deferred()
        factory = ClientFactory.forProtocol(lambda: _Client(made))
        connector = reactor.connectTCP("127.0.0.1", listener.getsockname()[1], factory)
        self.addCleanup(connector.disconnect)
        client = await made
        peer, _ = listener.accept()
        self.addCleanup(peer.close)
        peer.settimeout(0.5)
        return client, peer

    def read(self, peer: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            try:
                chunk = peer.recv(n - len(data))
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data

    async def test_the_bytes_are_sent_before_the_reactor_turns(self) -> None:
        client, peer = await self.connect()
        send_now(client.transport, b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertEqual(self.read(peer, 19), b"HTTP/1.1 200 OK\r\n\r\n")

    async def test_queued_bytes_go_first(self) -> None:
        """After a plain write (still in Twisted's buffer), send_now queues behind it."""
        client, peer = await self.connect()
        client.transport.write(b"first ")
        send_now(client.transport, b"second")
        self.assertEqual(self.read(peer, 1), b"")  # both wait for the reactor
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(self.read(peer, 12), b"first second")

    async def test_what_the_socket_does_not_take_follows_in_order(self) -> None:
        client, peer = await self.connect()
        data = bytes(range(256)) * 32768  # 8 MiB: more than the socket buffers hold
        send_now(client.transport, data)
        send_now(client.transport, b"end")
        received = bytearray()
        while len(received) < len(data) + 3:
            await deferLater(reactor, 0, lambda: None)
            peer.settimeout(0.01)
            try:
                received += peer.recv(1 << 20)
            except TimeoutError:
                continue
        self.assertEqual(bytes(received), data + b"end")

    def test_other_transports_are_written_as_usual(self) -> None:
        transport = StringTransport()
        send_now(transport, b"abc")
        self.assertEqual(transport.value(), b"abc")


class _Echoed(ProcessProtocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.data += data

    def processEnded(self, reason: object) -> None:
        self.ended.callback(None)


ECHO = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"


class WriteToChildTests(unittest.TestCase):
    timeout = 20

    def spawn(self) -> tuple[_Echoed, object]:
        echoed = _Echoed()
        child = reactor.spawnProcess(echoed, sys.executable, [sys.executable, "-c", ECHO], env={})
        return echoed, child

    async def test_nothing_is_left_for_the_reactor_to_write(self) -> None:
        echoed, child = self.spawn()
        write_to_child(child, b"one batch")
        writer = child.pipes[0]  # type: ignore[attr-defined]
        self.assertEqual((writer.dataBuffer, writer._tempDataBuffer), (b"", []))
        child.closeStdin()  # type: ignore[attr-defined]
        await echoed.ended
        self.assertEqual(bytes(echoed.data), b"one batch")

    async def test_what_the_pipe_does_not_take_follows_in_order(self) -> None:
        echoed, child = self.spawn()
        data = bytes(range(256)) * 16384  # 4 MiB: more than a pipe holds
        write_to_child(child, data)
        write_to_child(child, b"end")
        child.closeStdin()  # type: ignore[attr-defined]
        await echoed.ended
        self.assertEqual(bytes(echoed.data), data + b"end")

    def test_other_transports_are_written_as_usual(self) -> None:
        transport = StringTransport()
        write_to_child(transport, b"abc")
        self.assertEqual(transport.value(), b"abc")
