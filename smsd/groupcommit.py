"""Run a batch of store operations in one transaction: group commit.

Shared by the writer thread (:mod:`smsd.worker`) and the writer process
(:mod:`smsd.workerchild`). It answers with the exceptions themselves: the
writer process sends them to its parent as they are, and the thread makes
its Failures from them, traceback included. It imports nothing of Twisted's
reactor (the writer process runs without one).
"""

from __future__ import annotations

import contextlib
from typing import Any

from twisted.logger import Logger

log = Logger()

Result = tuple[Any, bool, Any]  # (token, ok, the value, or the exception when not ok)


def execute(conn: Any, batch: list[tuple[Any, ...]], transactional: bool) -> list[Result]:
    """Run ``(fn, args, token)`` operations; each gives ``(token, ok, value or exception)``.

    With ``transactional``, in one transaction (group commit).
    """
    results: list[Result] = []
    if not transactional:
        for fn, args, token in batch:
            try:
                results.append((token, True, fn(conn, *args)))
            except Exception as e:
                results.append((token, False, e))
        return results
    # Optimistic first: the whole batch in one transaction without savepoints.
    # Should an operation fail (a quota refused), roll back and run the batch
    # again with a savepoint around each operation, so that only it fails.
    try:
        conn.execute("BEGIN IMMEDIATE")
        for fn, args, token in batch:
            results.append((token, True, fn(conn, *args)))
        conn.execute("COMMIT")
        return results
    except Exception as e:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        if len(batch) == 1:
            return [(batch[0][2], False, e)]
    return _execute_each(conn, batch)


def _execute_each(conn: Any, batch: list[tuple[Any, ...]]) -> list[Result]:
    results: list[Result] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for fn, args, token in batch:
            conn.execute("SAVEPOINT op")
            try:
                value = fn(conn, *args)
            except Exception as e:
                results.append((token, False, e))
                conn.execute("ROLLBACK TO op")
            else:
                results.append((token, True, value))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except Exception as e:
        # The commit itself failed (disk full, I/O error): nothing of this
        # batch is durable, so every caller hears it failed.
        log.failure("store transaction failed")  # with the exception being handled
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        return [(token, False, e) for _, _, token in batch]
    return results
