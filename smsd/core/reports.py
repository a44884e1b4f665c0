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
        self._call: Any = None
        self.received = 0

    def report(self, report: Report) -> None:
        if not report.at:
            report = attrs.evolve(report, at=self.reactor.seconds())
        self._batch.append(report)
        self.received += 1
        if self._call is None:
            self._call = self.reactor.callLater(0, self.flush)

    def flush(self) -> Any:
        self._call = None
        if not self._batch:
            return None
        batch, self._batch = self._batch, []
        d = self.store.apply_reports(batch)
        d.addCallbacks(self._applied, self._failed, errbackArgs=(len(batch),))
        return d

    def _applied(self, changes: list[Change]) -> None:
        if changes:
            self.notify(changes)

    def _failed(self, failure: Failure, count: int) -> None:
        log.failure("applying {count} delivery reports failed", failure, count=count)
