"""Through the real CLI: a runaway tool cannot outlive its timeout or flood memory or disk."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from aidp.process.procfs import is_alive
from tests.conftest import Cli

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

HANG = """\
version: 1
workstreams:
  - id: w
    scope: ["w/**"]
    steps:
      - id: hang
        timeout: 1
        run: |
          trap '' TERM
          sleep 300 & echo $! > {pids}/child
          setsid sh -c 'echo $$ > {pids}/escaped; trap "" TERM; sleep 300' &
          echo $$ > {pids}/tool
          while :; do sleep 1; done
"""

FLOOD = """\
version: 1
workstreams:
  - id: w
    scope: ["w/**"]
    steps:
      - id: flood
        run: "head -c 1073741824 /dev/zero; echo; echo the-end"
"""


def test_hanging_tool_and_all_its_descendants_are_killed(cli: Cli, tmp_path: Path) -> None:
    """A tool ignoring SIGTERM, with a background child and a setsid grandchild, is gone with
    all of them after its timeout; the step ends `timeout`."""
    pids = tmp_path / "pids"
    pids.mkdir()
    (tmp_path / "aidp.toml").write_text('[run]\nkill_grace = "500ms"\n')
    plan = tmp_path / "hang.yaml"
    plan.write_text(HANG.replace("{pids}", str(pids)))
    result = cli("run", "--json", "--config", str(tmp_path / "aidp.toml"), str(plan),
                 timeout=60)
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["workstreams"][0]["steps"] == {"hang": "timeout"}
    recorded = {name: int((pids / name).read_text()) for name in ("tool", "child", "escaped")}
    assert {name: is_alive(pid) for name, pid in recorded.items()} == dict.fromkeys(
        recorded, False)


def test_a_gigabyte_of_output_leaves_a_capped_log_and_flat_memory(
    cli: Cli, tmp_path: Path
) -> None:
    """1 GiB of tool output: the log keeps its head (the cap) and tail, aidp's memory stays
    small, and the step still completes."""
    (tmp_path / "aidp.toml").write_text("[run]\nlog_cap_bytes = 1048576\n")
    plan = tmp_path / "flood.yaml"
    plan.write_text(FLOOD)
    proc = subprocess.Popen(
        cli.popen_argv("run", "--json", "--config", str(tmp_path / "aidp.toml"), str(plan)),
        cwd=cli.cwd, env=cli.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    with proc.stdout:
        out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, out
    # ru_maxrss (KiB) covers aidp and the processes it waited for: far below the output size.
    assert usage.ru_maxrss < 300 * 1024
    run_id = json.loads(out)["run_id"]
    log = cli("logs", run_id, "w/flood", check=True)
    size = len(log.stdout.encode())
    assert 1_048_576 <= size <= 1_048_576 + 65_536 + 1_024
    assert "output truncated" in log.stdout
    assert log.stdout.rstrip().endswith("the-end")
