"""``pip install .`` in a clean venv gives a working ``twistd smsd`` and ``smsd-admin``.

The first README command, done the way a newcomer does it: a new virtual
environment, the package installed from its wheel (not in editable mode),
``twistd -n smsd`` in an empty directory on the embedded default, and curl.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from twisted.trial import unittest

from tests.process import curl

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str, cwd: str | Path | None = None, timeout: float = 600) -> str:
    result = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class WheelTests(unittest.TestCase):
    timeout = 900

    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = Path(tempfile.mkdtemp(prefix="smsd-wheel-"))
        # Build from a copy, so that no build/ or *.egg-info lands in the checkout.
        source = cls.dir / "src"
        shutil.copytree(
            ROOT, source,
            ignore=shutil.ignore_patterns(".venv", ".git", "smsd-data", "build", "*.egg-info",
                                          "__pycache__", ".pytest_cache", ".hypothesis",
                                          "_trial_temp*", "tests.test_*"),
        )  # fmt: skip
        run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
            "-w", str(cls.dir / "dist"), str(source))  # fmt: skip
        (cls.wheel,) = (cls.dir / "dist").glob("smsd-*.whl")

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_wheel_layout(self) -> None:
        names = zipfile.ZipFile(self.wheel).namelist()
        self.assertIn("twisted/plugins/smsd_plugin.py", names)
        self.assertNotIn("twisted/__init__.py", names)  # it would shadow Twisted itself
        self.assertNotIn("twisted/plugins/__init__.py", names)
        for module in ("smsd/service.py", "smsd/admin.py", "protocols/gsm0338.py"):
            self.assertIn(module, names)
        self.assertFalse([n for n in names if n.startswith("tests/")])
        meta = zipfile.ZipFile(self.wheel)
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        self.assertIn("smsd-admin = smsd.admin:main", meta.read(entry_points).decode())
        (metadata,) = [n for n in names if n.endswith("/METADATA")]
        requires = meta.read(metadata).decode()
        for dependency in ("twisted[tls]", "attrs", "pyserial", "phonenumbers"):
            self.assertIn(f"Requires-Dist: {dependency}", requires.replace("Twisted", "twisted"))

    def test_clean_venv_install_and_first_sms(self) -> None:
        venv = self.dir / "venv"
        run(sys.executable, "-m", "venv", str(venv))
        bin_dir = venv / "bin"
        run(str(bin_dir / "python"), "-m", "pip", "install", "-q", str(self.wheel))
        empty = self.dir / "empty"
        empty.mkdir()
        help_text = run(str(bin_dir / "smsd-admin"), "--help", cwd=empty)
        self.assertIn("user", help_text)
        log = open(empty / "smsd.log", "wb")  # noqa: SIM115 - closed below
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [str(bin_dir / "twistd"), "-n", "smsd"], cwd=empty, stdout=log, stderr=log
        )
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        deadline = time.monotonic() + 60
        while True:
            code, body = curl("http://127.0.0.1:8080/sms/?number=%2B15551234567&data=Hello")
            if code == 200 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.2)
        self.assertEqual(code, 200, (empty / "smsd.log").read_text())
        message_id = body.split()[1]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            code, text = curl(f"http://127.0.0.1:8080/api/v1/messages/{message_id}")
            if json.loads(text).get("state") == "delivered":
                break
            time.sleep(0.1)
        self.assertEqual(json.loads(text)["state"], "delivered")
        lines = (empty / "smsd-data" / "loopback.jsonl").read_text().splitlines()
        self.assertEqual(json.loads(lines[0])["text"], "Hello")
        self.assertTrue(os.path.exists(empty / "smsd-data" / "smsd.db"))
