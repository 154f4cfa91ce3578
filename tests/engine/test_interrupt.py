"""Ctrl-C (SIGINT) stops ``aidp run`` promptly, kills its tools, and leaves a resumable run."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from aidp.process.procfs import is_alive
from tests.conftest import Cli

PLAN = """\
version: 1
workstreams:
  - id: w
    scope: ["w/**"]
    steps:
      - id: slow
        run: "echo $$ > {pid}; test -f {flag} || sleep 60; mkdir -p w && echo done > w/x"
      - {id: after, depends_on: [slow], run: "echo after >> w/x"}
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigint_stops_the_run_and_resume_finishes_it(cli: Cli, tmp_path: Path) -> None:
    """SIGINT: exit 130 within seconds, the tool is gone, the step is pending again (its
    interrupted attempt not counted), and `aidp resume` completes the run."""
    pid_file, flag = tmp_path / "pid", tmp_path / "flag"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.replace("{pid}", str(pid_file)).replace("{flag}", str(flag)))
    proc = cli.popen("run", str(plan))
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    tool_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "aidp resume" in err and "Traceback" not in err
    assert not is_alive(tool_pid)
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["status"] == "running" and not status["live"]
    step = status["workstreams"][0]["steps"][0]
    assert step["status"] == "pending" and step["attempts"] == 0
    flag.write_text("go")
    cli("resume", check=True)
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["status"] == "completed"
    assert [s["status"] for s in status["workstreams"][0]["steps"]] == ["completed"] * 2
