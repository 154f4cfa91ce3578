"""On a terminal ``aidp run`` shows a live table; elsewhere plain lines."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli

PLAN = """\
version: 1
workstreams:
  - id: talk
    scope: ["t/**"]
    steps:
      - {id: s, run: "mkdir -p t && echo hello > t/x && echo progress-line-42"}
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_live_table_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    """With a TTY on stdout, the run is drawn as a table of workstreams with their status."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    master, slave = pty.openpty()
    proc = subprocess.Popen(cli.popen_argv("run", str(plan)), cwd=cli.cwd, env=cli.env(),
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "workstream" in screen and "current step" in screen
    assert "completed" in screen and "talk" in screen


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_plain_lines_without_a_terminal(cli: Cli, tmp_path: Path) -> None:
    """Without a TTY every event is one plain line, without colour codes."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    result = cli("run", str(plan), check=True)
    assert "\x1b[" not in result.stdout
    lines = result.stdout.splitlines()
    assert any("step.completed" in line and "talk/s" in line for line in lines)
