"""Prosody (Debian ``prosody``) on loopback, for the XMPP gateway tests.

Each instance has its own configuration and data directory in a temporary
directory outside the checkout, free ports for clients and components, one
virtual host with plain-password accounts written straight into its data
directory (no prosodyctl, no root), and a ``Component`` entry for the SMS
domain with a shared secret. It runs in the foreground (``-F``) as whoever
runs the tests; a missing prosody fails the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.process import free_port, need

CONFIG = """
-- Written by tests/peers/prosody.py: a throw-away server on loopback.
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
run_as_root = true -- containers and CI run the tests as root
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {component} }}
component_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster", "saslauth", "disco", "ping", "offline" }}
modules_disabled = {{ "s2s", "tls" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
log = {{ {{ levels = {{ min = "{level}" }}, to = "file", filename = "{dir}/prosody.log" }} }}

VirtualHost "{host}"

Component "{component_domain}"
    component_secret = "{secret}"
"""


def _lua_escape(host: str) -> str:
    """Prosody's file-name encoding of a host: everything but letters and digits is %xx."""
    return "".join(c if c.isalnum() else f"%{ord(c):02x}" for c in host)


class Prosody:
    """One server: ``start()``, ``stop()``, ``restart()``; users added before or after."""

    def __init__(
        self,
        host: str = "example.org",
        component_domain: str = "sms.example.org",
        secret: str = "component-secret",
        debug: bool = False,
    ) -> None:
        self.binary = need("prosody")
        self.dir = tempfile.mkdtemp(prefix="smsd-prosody-")
        self.host = host
        self.component_domain = component_domain
        self.secret = secret
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        with open(self.config, "w") as f:
            f.write(
                CONFIG.format(
                    dir=self.dir,
                    c2s=self.c2s_port,
                    component=self.component_port,
                    host=host,
                    component_domain=component_domain,
                    secret=secret,
                    level="debug" if debug else "info",
                )
            )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "prosody.log")

    def add_user(self, name: str, password: str) -> None:
        """An account in internal_plain's store: a Lua table file per user."""
        accounts = os.path.join(self.dir, "data", _lua_escape(self.host), "accounts")
        os.makedirs(accounts, exist_ok=True)
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        with open(os.path.join(accounts, f"{_lua_escape(name)}.dat"), "w") as f:
            f.write(f'return {{\n\t["password"] = "{quoted}";\n}};\n')

    def start(self, timeout: float = 15.0) -> None:
        out = open(os.path.join(self.dir, "stdout.log"), "ab")  # noqa: SIM115 (kept by Popen)
        self.proc = subprocess.Popen(
            [self.binary, "--config", self.config, "-F"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.dir,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prosody exited at start: {self.tail()}")
            if _listening(self.c2s_port) and _listening(self.component_port):
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"prosody did not listen within {timeout} s: {self.tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, lines: int = 30) -> str:
        text = ""
        for name in ("stdout.log", "prosody.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text += "".join(f.readlines()[-lines:])
            except OSError:
                pass
        return text


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False
