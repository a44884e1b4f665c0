"""Delivery reports from gateways -> matched to their parts in the store, in batches.

Reports arrive in bursts (an SMSC flushes its queue after a reconnect); they
are gathered for one reactor turn and applied in one store operation. A
report that matches nothing yet (it overtook the send result) is kept by
the store and applied when the result is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from smsd.model import Report
from smsd.store import Change

log = Logger()


class ReportSink:
    def __init__(self, store: Any, reactor: Any, notify: Callable[[list[Change]], None]) -> None:
        self.store = store
        self.reactor = reactor
        self.notify = notify
        self._batch: list[Report] = []
        self._waiting: list[Deferred[None]] = []
        self._call: Any = None
        self.received = 0

    def report(self, report: Report) -> Deferred[None]:
        """Fires once the report is committed: a driver acknowledges it to the
        network only then, so that a crash cannot lose a report already acked."""
        if not report.at:
            report = attrs.evolve(report, at=self.reactor.seconds())
        d: Deferred[None] = Deferred()
        self._batch.append(report)
        self._waiting.append(d)
        self.received += 1
        if self._call is None:
            self._call = self.reactor.callLater(0, self.flush)
        return d

    def flush(self) -> Any:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if not self._batch:
            return None
        batch, self._batch = self._batch, []
        waiting, self._waiting = self._waiting, []
        d = self.store.apply_reports(batch)
        d.addCallbacks(self._applied, self._failed, callbackArgs=(waiting,), errbackArgs=(waiting,))
        return d

    def _applied(self, changes: list[Change], waiting: list[Deferred[None]]) -> None:
        for d in waiting:
            d.callback(None)
        if changes:
            self.notify(changes)

    def _failed(self, failure: Failure, waiting: list[Deferred[None]]) -> None:
        log.failure("applying {count} delivery reports failed", failure, count=len(waiting))
        for d in waiting:
            d.errback(failure)
