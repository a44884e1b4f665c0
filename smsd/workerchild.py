"""The store writer process's side of :mod:`smsd.workerproc`: pickle frames
on stdin and stdout, the operations committed in batches (group commit).

A module of its own so that the child imports no more than it needs:
SQLite, pickle, the store's operations and Twisted's logger, not Twisted's
reactor modules (``smsd.workerproc`` has those, for the parent side).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import signal
import struct
import sys
from typing import Any

from smsd.groupcommit import execute

_LENGTH = struct.Struct("!I")
_PIPE_SIZE = 1 << 20  # more operations wait in the pipe while a commit runs


def frame(obj: Any) -> bytes:
    """One frame: the pickle's length in 4 bytes, then the pickle."""
    data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def read_frames(buffer: bytearray, most: int) -> tuple[list[Any], int]:
    """Complete frames at the start of ``buffer`` (up to ``most``) and the bytes they took."""
    items: list[Any] = []
    pos, end = 0, len(buffer)
    view = memoryview(buffer)
    try:
        while len(items) < most and end - pos >= 4:
            (n,) = _LENGTH.unpack_from(buffer, pos)
            if end - pos - 4 < n:
                break
            items.append(pickle.loads(view[pos + 4 : pos + 4 + n]))
            pos += 4 + n
    finally:
        view.release()
    return items, pos


def _survives(obj: Any) -> bool:
    """Whether ``obj`` comes out of pickling whole (an exception whose
    ``__init__`` wants other arguments than its ``args`` pickles, then fails)."""
    try:
        pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
    except Exception:
        return False
    return True


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else its words."""
    return exc if _survives(exc) else RuntimeError(f"{type(exc).__name__}: {exc}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(inp: int, out: int) -> None:
    """Take operations from ``inp``, commit them in batches, answer on ``out``."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(inp, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    buffer = bytearray()
    chunk = memoryview(bytearray(_PIPE_SIZE))  # os.read would map and unmap a new 1 MiB each time
    eof = False

    def take(most: int) -> list[Any]:
        nonlocal eof
        while True:
            items, used = read_frames(buffer, most)
            del buffer[:used]
            if items or eof:
                return items
            n = os.readv(inp, [chunk])
            eof = not n
            buffer.extend(chunk[:n])

    first = take(1)
    if not first:
        return
    connect, batch = first[0]
    conn = connect()
    try:
        while items := take(batch):
            results = execute(conn, [(fn, args, key) for key, fn, args in items], True)
            answer = [(key, ok, value if ok else _portable(value)) for key, ok, value in results]
            try:
                data = frame(answer)
            except Exception:  # a value that does not pickle: that operation fails alone
                data = frame([_checked(result) for result in answer])
            try:
                _write_all(out, data)
            except BrokenPipeError:
                return  # smsd is gone (killed): what was committed stays committed
    finally:
        conn.close()


def _checked(result: tuple[int, bool, Any]) -> tuple[int, bool, Any]:
    if _survives(result):
        return result
    return (result[0], False, RuntimeError("the store's answer did not pickle"))


def main() -> None:
    # The parent ends this process by closing its stdin, after the last
    # commit it needs: a signal to the whole process group (Ctrl-C, systemd's
    # stop) must not end it before that.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    out = os.dup(1)
    os.dup2(2, 1)  # a stray print goes to the log, never into the answers
    serve(0, out)


if __name__ == "__main__":
    main()
