"""Kannel's ``decode_emimsg`` (Debian ``kannel``) as a test oracle for UCP frames: a decoder we
did not write, which validates LEN and the checksum and prints every field. Missing, it fails
the tests (CI must install it: tests/install-peers), it never skips them."""

from __future__ import annotations

import os
import shutil
import subprocess

_decoder: str | None = None


def decode_emimsg() -> str:
    """Kannel's decoder; missing is a failure (CI must install it), not a skip."""
    global _decoder
    if _decoder is None:
        found = shutil.which("decode_emimsg") or next(
            (
                p
                for p in ("/usr/bin/decode_emimsg", "/usr/sbin/decode_emimsg")
                if os.access(p, os.X_OK)
            ),
            None,
        )
        if found is None:
            raise AssertionError(
                "Kannel's decode_emimsg (Debian package kannel) is missing: run tests/install-peers"
            )
        _decoder = found
    return _decoder


class Kannel:
    """What decode_emimsg printed for one frame: ``fields`` by its labels, ``(null)`` as ""."""

    def __init__(self, wire: bytes) -> None:
        assert wire[0] == 2 and wire[-1] == 3
        run = subprocess.run(
            [decode_emimsg(), wire[1:-1].decode("latin-1")],
            capture_output=True,
            timeout=20,
            check=False,
        )
        self.stdout = run.stdout.decode("latin-1")
        self.stderr = run.stderr.decode("latin-1")
        assert run.returncode == 0, (run.returncode, self.stdout, self.stderr)
        self.fields: dict[str, str] = {}
        for line in self.stdout.split("\n"):  # not splitlines: it also cuts at \x1c-\x1e
            label, tab, value = line.partition("\t")
            if tab:
                self.fields[label.strip()] = "" if value == "(null)" else value

    @property
    def valid(self) -> bool:
        return "Invalid EMI packet" not in self.stderr and "more fields" not in self.stderr


def kannel_label(ot: int, name: str) -> str:
    prefix = "E60" if ot == 60 else "E50"
    return f"{prefix}_{'NMSG' if name == 'Msg' else name.upper()}"
