"""``aidp run --interactive``: a failed step asks whether to retry, skip or abort."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli

PLAN = """\
version: 1
workstreams:
  - id: w
    scope: ["out/**"]
    steps:
      - id: flaky
        run: "mkdir -p out && echo x > out/x"
        checks: ["test -f {flag}"]
      - id: after
        depends_on: [flaky]
        run: "mkdir -p out && echo y > out/y"
"""


DEPENDANT = """\
  - id: v
    depends_on: [w]
    scope: ["other/**"]
    steps:
      - id: later
        run: "mkdir -p other && echo z > other/z"
"""


def _start(cli: Cli, tmp_path: Path, text: str = PLAN) -> tuple[subprocess.Popen[str], Path]:
    flag = tmp_path / "flag"
    plan = cli.cwd / "plan.yaml"
    plan.write_text(text.replace("{flag}", str(flag)))
    proc = subprocess.Popen(
        [*cli.popen_argv("run", "--interactive", "--parallel", "1", str(plan))],
        cwd=cli.cwd, env=cli.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    return proc, flag


def _wait_for_prompt(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    seen = ""
    while "retry, skip or abort?" not in seen or not seen.endswith(": "):
        char = proc.stderr.read(1)
        assert char, f"aidp ended without asking: {seen}"
        seen += char
    return seen


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_retry_after_fixing_the_cause_completes_the_run(cli: Cli, tmp_path: Path) -> None:
    """Answering 'retry' runs the failed step again from its last checkpoint."""
    proc, flag = _start(cli, tmp_path)
    asked = _wait_for_prompt(proc)
    assert "w/flaky" in asked
    flag.write_text("now it exists")
    out, _ = proc.communicate("retry\n", timeout=60)
    assert proc.returncode == 0, out
    status = json.loads(cli("status", "--json", check=True).stdout)
    steps = {s["id"]: s for s in status["workstreams"][0]["steps"]}
    assert steps["flaky"]["status"] == steps["after"]["status"] == "completed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_skip_is_its_own_outcome_not_completion(cli: Cli, tmp_path: Path) -> None:
    """Answering 'skip' runs the workstream's other steps but ends it skipped, not completed:
    its dependant workstreams are skipped and the run exits 1 (the work was not done)."""
    proc, _ = _start(cli, tmp_path, PLAN + DEPENDANT)
    _wait_for_prompt(proc)
    proc.communicate("skip\n", timeout=60)
    assert proc.returncode == 1
    status = json.loads(cli("status", "--json").stdout)
    wss = {w["id"]: w for w in status["workstreams"]}
    steps = {s["id"]: s for s in wss["w"]["steps"]}
    assert steps["flaky"]["status"] == "skipped"
    assert steps["flaky"]["reason"] == "skipped by the user"
    assert steps["after"]["status"] == "completed"
    assert wss["w"]["status"] == "skipped"
    assert wss["v"]["status"] == "skipped"
    assert {s["status"] for s in wss["v"]["steps"]} == {"skipped"}
    assert status["status"] == "failed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_single_letters_are_accepted_and_the_prompt_says_so(cli: Cli, tmp_path: Path) -> None:
    """The prompt accepts r, s and a (any case) and says what end of input does."""
    proc, flag = _start(cli, tmp_path)
    asked = _wait_for_prompt(proc)
    flag.write_text("now it exists")
    _, err = proc.communicate("R\n", timeout=60)
    assert proc.returncode == 0, asked + err
    assert "r/s/a" in asked and "end of input" in asked
    assert "Error" not in err
    status = json.loads(cli("status", "--json", check=True).stdout)
    steps = {s["id"]: s for s in status["workstreams"][0]["steps"]}
    assert steps["flaky"]["status"] == "completed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_abort_cancels_the_run(cli: Cli, tmp_path: Path) -> None:
    """Answering 'abort' ends the run cancelled with exit code 1."""
    proc, _ = _start(cli, tmp_path)
    _wait_for_prompt(proc)
    proc.communicate("abort\n", timeout=60)
    assert proc.returncode == 1
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["status"] == "cancelled"
