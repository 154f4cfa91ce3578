"""A deposed lease holder moves no git ref: the fencing token guards git as well as the database.

``SIGSTOP`` an ``aidp run`` in the middle of a step, let its lease expire, let ``aidp resume``
take the run over and finish it, then ``SIGCONT`` the old process: it wakes up inside the
attempt it was running. Its checkpoint must not land (the step's work would be in the branch
twice), it must start nothing new, and it must exit saying it lost the run.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, git

PLAN = """\
version: 1
workstreams:
  - id: a
    scope: ["f.txt"]
    merge: {{into: fenced/integration}}
    steps:
      - id: s1
        run: "echo $$ >> {pids}; sleep {sleep}; echo s1 >> f.txt"
      - {{id: s2, depends_on: [s1], run: "echo s2 >> f.txt"}}
"""


def _wait_for(path: Path, lines: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or len(path.read_text().split()) < lines:
        assert time.monotonic() < deadline, f"{path} never got {lines} line(s)"
        time.sleep(0.02)


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_a_woken_stale_holder_commits_nothing(cli: Cli, tmp_path: Path) -> None:
    """The taken-over run ends with s1 and s2 once each on the branch and in the merge target;
    the woken holder exits 4 ("lease lost"), without a traceback, having moved no ref."""
    pids = tmp_path / "pids"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(pids=pids, sleep=3))
    (cli.cwd / "aidp.toml").write_text("[run]\nlease_ttl = 1.5\n")
    git(cli.cwd, "add", "aidp.toml")
    git(cli.cwd, "commit", "-qm", "aidp settings")
    old = cli.popen("run", str(plan))
    try:
        _wait_for(pids, 1)
        os.kill(old.pid, signal.SIGSTOP)  # the tool (its own process group) runs on
        time.sleep(2.5)  # the stopped holder's lease expires
        resumed = cli("resume", timeout=60)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        status = json.loads(cli("status", "--json", check=True).stdout)
        assert status["status"] == "completed"
        refs_before = git(cli.cwd, "for-each-ref", "--format=%(refname) %(objectname)")
    finally:
        os.kill(old.pid, signal.SIGCONT)
    _, err = old.communicate(timeout=60)
    assert old.returncode == 4, err
    assert "Traceback" not in err
    assert "lease" in err.lower() or "taken over" in err.lower(), err
    # nothing moved after the takeover finished: no checkpoint, no merge, no branch
    assert git(cli.cwd, "for-each-ref", "--format=%(refname) %(objectname)") == refs_before
    branch = status["workstreams"][0]["branch"]
    for ref in (branch, "fenced/integration"):
        assert git(cli.cwd, "show", f"{ref}:f.txt").split() == ["s1", "s2"], ref
    steps = git(cli.cwd, "log", "--format=%(trailers:key=Aidp-Step,valueonly)", branch).split()
    assert steps == ["s2", "s1"]
    # the database agrees with git: one checkpoint per step, the one on the branch
    checkpoints = {s["id"]: s["checkpoint"] for s in status["workstreams"][0]["steps"]}
    assert checkpoints["s2"] == git(cli.cwd, "rev-parse", branch).strip()
    assert checkpoints["s1"] == git(cli.cwd, "rev-parse", f"{branch}~1").strip()
