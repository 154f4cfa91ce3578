"""Fixtures for the OpenSpec tests: the reference ``openspec`` CLI, when installed.

``scripts/setup_openspec.sh`` installs it into ``.tools/openspec``; ``AIDP_OPENSPEC`` or an
``openspec`` on PATH also work. Without it the compatibility tests skip with the reason, unless
``AIDP_REQUIRE_REAL_TOOLS=1`` turns that into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def openspec_binary() -> str | None:
    """The reference CLI's path, or None."""
    candidates = [os.environ.get("AIDP_OPENSPEC"),
                  str(REPO / ".tools/openspec/node_modules/.bin/openspec"),
                  shutil.which("openspec")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


@dataclass
class Reference:
    """Runs the real ``openspec`` CLI in a directory, telemetry off, no TTY."""

    binary: str

    def run(self, cwd: Path, *args: str) -> tuple[int, str, str]:
        env = {**os.environ, "OPENSPEC_TELEMETRY": "0", "NO_COLOR": "1", "CI": "1"}
        proc = subprocess.run([self.binary, *args], cwd=cwd, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, env=env, timeout=120, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def json(self, cwd: Path, *args: str) -> tuple[int, Any]:
        code, out, err = self.run(cwd, *args)
        try:
            return code, json.loads(out)
        except json.JSONDecodeError:
            return code, {"stdout": out, "stderr": err}


@pytest.fixture(scope="session")
def reference() -> Reference:
    """The real openspec CLI (skips, or fails under AIDP_REQUIRE_REAL_TOOLS=1, if absent)."""
    binary = openspec_binary()
    if binary is None:
        reason = ("openspec CLI not installed (run scripts/setup_openspec.sh, or set "
                  "AIDP_OPENSPEC)")
        if os.environ.get("AIDP_REQUIRE_REAL_TOOLS") == "1":
            pytest.fail(reason + " (AIDP_REQUIRE_REAL_TOOLS=1)")
        pytest.skip(reason)
    return Reference(binary)
