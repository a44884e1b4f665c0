"""The reactor timers of one test peer, so that stopping it cancels every one of them.

Both simulators (``smsc.py``, ``fakemodem.py``) schedule answers, receipts and faults
on the reactor; a trial test whose peer leaves a timer behind fails as a dirty
reactor, and a peer that fires after its test ended disturbs the next. They also
let tests wait for what they record (``wait_for``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


class Timers:
    """``callLater`` remembered until it runs, all cancelled by :meth:`stop`."""

    def __init__(self, reactor: Any, gone: str) -> None:
        self.reactor = reactor
        self.gone = gone  # what a wait says when the peer stopped under it
        self.calls: set[Any] = set()
        self.stopped = False

    def later(self, delay: float, f: Callable[..., Any], *args: Any) -> Any:
        """reactor.callLater, or None once stopped."""
        if self.stopped:
            return None
        holder: list[Any] = []

        def run() -> None:
            self.calls.discard(holder[0])
            f(*args)

        call = self.reactor.callLater(max(delay, 0.0), run)
        holder.append(call)
        self.calls.add(call)
        return call

    def cancel(self, call: Any) -> None:
        if call is not None and call.active():
            call.cancel()
        self.calls.discard(call)

    def stop(self) -> None:
        self.stopped = True
        for call in list(self.calls):
            if call.active():
                call.cancel()
        self.calls.clear()

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float, interval: float, what: str
    ) -> Deferred[Any]:
        """Poll ``predicate``; fires with its first truthy value, or fails with
        AssertionError after ``timeout`` seconds or once the peer stopped."""
        deadline = self.reactor.seconds() + timeout
        d: Deferred[Any] = Deferred()

        def poll() -> None:
            try:
                value = predicate()
            except Exception:
                d.errback(Failure())
                return
            if value:
                d.callback(value)
            elif self.stopped:
                d.errback(AssertionError(f"{what}: {self.gone}"))
            elif self.reactor.seconds() >= deadline:
                d.errback(AssertionError(f"{what}: not within {timeout}s"))
            else:
                self.later(interval, poll)

        poll()
        return d
