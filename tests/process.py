"""Run smsd as users do (``twistd -n smsd``) in a temporary directory, for end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

LOOPBACK = """
[snpp]
listen = []
[sip]
listen = []
[http]
listen = ["tcp:{port}:interface=127.0.0.1"]
[[gateway]]
id = "loopback"
type = "loopback"
"""  # a daemon on a free port with the loopback gateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int, *, writer: bool = False) -> set[int]:
    """The pids of smsd's children: its HTTP workers, or (``writer``) its store writer."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = f.read().split()
    except OSError:
        return set()
    found = set()
    for child in pids:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue  # ended meanwhile
        if (b"smsd.workerchild" in command) == writer:
            found.add(int(child))
    return found


def processes(pid: int) -> dict[str, int]:
    """smsd's processes by name: the main one, its store writer, its HTTP workers."""
    found = {"smsd": pid}
    found.update(("store writer", w) for w in children(pid, writer=True))
    found.update((f"http worker {i}", w) for i, w in enumerate(sorted(children(pid))))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent's wait() has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def twistd() -> str:
    """The twistd script installed beside this Python (the venv's)."""
    path = os.path.join(os.path.dirname(sys.executable), "twistd")
    return path if os.path.exists(path) else shutil.which("twistd") or "twistd"


def script(name: str) -> str:
    """A console script installed beside this Python (the venv's)."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else shutil.which(name) or name


def need(program: str) -> str:
    """A real peer the tests use: missing is a failure (CI must install it), not a skip."""
    path = shutil.which(program)
    if path is None:
        raise AssertionError(f"{program} is not installed: run tests/install-peers")
    return path


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """swaks (Debian) against 127.0.0.1:``port``; blocking: tests run it in a thread.

    POSIXLY_CORRECT: Perl's option parser otherwise takes "+1555..." for an option."""
    command = [need("swaks"), "--server", f"127.0.0.1:{port}", *args]
    env = {**os.environ, "POSIXLY_CORRECT": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)


class SmsdProcess:
    """One smsd daemon; ``config`` is TOML text (``{port}`` is replaced)."""

    def __init__(self, config: str | None = None, directory: str | None = None) -> None:
        self.dir = directory or tempfile.mkdtemp(prefix="smsd-test-")
        self.port = free_port() if config is not None else 8080  # 8080: the embedded default
        self.config_path: str | None = None
        if config is not None:
            self.config_path = os.path.join(self.dir, "smsd.toml")
            with open(self.config_path, "w") as f:
                f.write(config.replace("{port}", str(self.port)))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.dir, "smsd.log")

    @property
    def data_dir(self) -> str:
        return os.path.join(self.dir, "smsd-data")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0, args: tuple[str, ...] = ()) -> SmsdProcess:
        cmd = [twistd(), "-n", "--pidfile=", "smsd"]
        if self.config_path:
            cmd += ["--config", self.config_path]
        cmd += list(args)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"smsd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _ = self.get("/api/v1/health")
                if status in (200, 503):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"smsd did not answer within {timeout}s:\n{self.log()}")

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run smsd-admin on this daemon's configuration and data."""
        cmd = [script("smsd-admin")]
        if self.config_path:
            cmd += ["--config", self.config_path]
        result = subprocess.run(
            [*cmd, *args], cwd=self.dir, capture_output=True, text=True, timeout=60, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"smsd-admin {' '.join(args)}: {result.stderr}")
        return result

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait_for(self, predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    def loopback_lines(self, name: str = "loopback.jsonl") -> list[dict[str, Any]]:
        path = os.path.join(self.data_dir, name)
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def curl(*args: str, timeout: float = 20.0) -> tuple[int, str]:
    """Run curl; returns (HTTP status, body)."""
    out = subprocess.run(
        [need("curl"), "-s", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    body, _, code = out.stdout.decode("utf-8", "replace").rpartition("\n")
    return int(code or 0), body
