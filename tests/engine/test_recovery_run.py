"""Recovery end to end: the fix loop, escalation, the crash cap, compensations, diagnostics,
and retry waits under an injected clock (no test sleeps for a backoff)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from aidp.config import load_settings
from aidp.core.clock import AutojumpClock
from aidp.engine.orchestrator import drive_run
from aidp.engine.run import create_run
from aidp.model.loader import load_plan
from aidp.state.store import Store
from tests.conftest import Cli, git

PY = sys.executable

# A "tool" that writes a broken implementation on its first attempt and the right one when
# asked to fix (AIDP_ATTEMPT_KIND=fix).
CALC_TOOL = (
    'mkdir -p calc; '
    'if [ "$AIDP_ATTEMPT_KIND" = fix ]; then v=a+b; else v=a-b; fi; '
    'printf "def add(a, b):\\n    return %s\\n" "$v" > calc/calc.py'
)
CALC_TEST = "from calc.calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def write_plan(tmp_path: Path, text: str) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return str(path)


def run_status(cli: Cli, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("run", *args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    status = json.loads(cli("status", run_id, "--json", check=True).stdout)
    return result.returncode, status


def step_of(status: dict[str, Any], ws: str, step: str) -> dict[str, Any]:
    wsd = next(w for w in status["workstreams"] if w["id"] == ws)
    return next(s for s in wsd["steps"] if s["id"] == step)


def test_fix_loop_feeds_findings_back(cli: Cli, tmp_path: Path) -> None:
    """A failing acceptance test, fixed on the second try: completed after one fix attempt,
    both attempts and the first one's findings in `status --json`, the findings in the fix
    prompt."""
    (cli.cwd / "tests").mkdir()
    (cli.cwd / "tests" / "test_calc.py").write_text(CALC_TEST)
    git(cli.cwd, "add", "-A")
    git(cli.cwd, "commit", "-qm", "test")
    plan = write_plan(tmp_path, f"""
version: 1
workstreams:
  - id: calc
    scope: ["calc/**"]
    steps:
      - id: implement
        prompt: Implement add(a, b) in calc/calc.py.
        run: {json.dumps(CALC_TOOL)}
        checks: ["{PY} -m pytest -q -p no:cacheprovider tests"]
        fix: {{max: 2}}
""")
    code, status = run_status(cli, plan)
    assert code == 0, status
    step = step_of(status, "calc", "implement")
    assert step["status"] == "completed"
    first, second = step["attempt_list"]
    assert (first["kind"], first["outcome"]) == ("first", "failed_permanent")
    assert first["failure_class"] == "permanent" and first["findings"]
    assert (second["kind"], second["outcome"]) == ("fix", "succeeded")
    assert second["findings"] == []
    fix_prompt = (cli.cwd / ".aidp" / "runs" / status["run_id"] / "prompts" / "calc"
                  / "implement.2.md").read_text()
    assert "Implement add(a, b)" in fix_prompt and "The previous attempt failed" in fix_prompt
    assert first["findings"][0]["message"].splitlines()[0] in fix_prompt


def test_fix_loop_stops_on_the_same_findings(cli: Cli, tmp_path: Path) -> None:
    """A tool that never fixes anything: the same findings twice end the loop early."""
    plan = write_plan(tmp_path, """
version: 1
workstreams:
  - id: w
    steps:
      - id: s
        run: "echo nothing"
        checks: ["sh -c 'echo wrong answer; exit 3'"]
        fix: {max: 5}
""")
    code, status = run_status(cli, plan)
    assert code == 1
    step = step_of(status, "w", "s")
    assert step["status"] == "failed" and step["failure_class"] == "permanent"
    assert [a["kind"] for a in step["attempt_list"]] == ["first", "fix"]
    assert "same findings" in step["reason"]


def test_escalation_moves_to_the_next_profile(cli: Cli, tmp_path: Path) -> None:
    """fix.escalate: when the step's profile gives up, the next profile runs with findings."""
    (cli.cwd / "aidp.toml").write_text(
        '[tools.weak]\nadapter = "shell"\ncommand = "echo weak tries"\n\n'
        '[tools.strong]\nadapter = "shell"\ncommand = "mkdir -p out && echo ok > out/r"\n')
    plan = write_plan(tmp_path, """
version: 1
workstreams:
  - id: w
    scope: ["out/**"]
    steps:
      - id: s
        tool: weak
        checks: ["test -f out/r"]
        fix: {max: 0, escalate: [strong]}
""")
    code, status = run_status(cli, plan)
    assert code == 0, status
    attempts = step_of(status, "w", "s")["attempt_list"]
    assert [(a["kind"], a["profile"], a["outcome"]) for a in attempts] == [
        ("first", "weak", "failed_permanent"), ("escalate", "strong", "succeeded")]


def test_poison_step_stops_at_the_crash_cap_and_compensates(cli: Cli, tmp_path: Path) -> None:
    """A tool that SIGKILLs itself every time: failed with class crashed after max_crashes
    attempts, and its step and workstream compensations ran and were recorded."""
    marker = tmp_path / "compensated"
    plan = write_plan(tmp_path, f"""
version: 1
workstreams:
  - id: w
    compensate:
      - run: "echo ws >> {marker}"
      - delete_branch: true
    steps:
      - id: poison
        run: "touch junk; kill -9 $$"
        retry: {{max_attempts: 1, max_crashes: 3, initial_delay: 0}}
        compensate:
          - reset: true
          - run: "echo step >> {marker}"
""")
    code, status = run_status(cli, plan)
    assert code == 1
    step = step_of(status, "w", "poison")
    assert step["status"] == "failed" and step["outcome"] == "crashed"
    assert step["failure_class"] is None  # crashed is an outcome, not a class
    assert [a["outcome"] for a in step["attempt_list"]] == ["crashed"] * 3
    assert [(c["action"], c["status"]) for c in step["compensations"]] == [
        ("reset", "succeeded"), ("run", "succeeded")]
    ws = status["workstreams"][0]
    assert [(c["action"], c["status"]) for c in ws["compensations"]] == [
        ("run", "succeeded"), ("delete_branch", "succeeded")]
    assert marker.read_text().split() == ["step", "ws"]
    assert git(cli.cwd, "branch", "--list", ws["branch"]) == ""


def test_failed_compensation_is_reported(cli: Cli, tmp_path: Path) -> None:
    """A compensation that fails is recorded as failed; the others still run."""
    plan = write_plan(tmp_path, """
version: 1
workstreams:
  - id: w
    steps:
      - id: s
        run: "exit 0"
        checks: ["false"]
        compensate:
          - run: "exit 7"
          - reset: true
""")
    code, status = run_status(cli, plan)
    assert code == 1
    comps = step_of(status, "w", "s")["compensations"]
    assert [(c["action"], c["status"]) for c in comps] == [("run", "failed"),
                                                           ("reset", "succeeded")]
    assert "exit code 7" in comps[0]["detail"]


def test_diagnose_and_findings(cli: Cli, tmp_path: Path) -> None:
    """`aidp diagnose` shows a failed attempt's bundle (secrets masked); `aidp findings`
    lists its findings."""
    plan = write_plan(tmp_path, """
version: 1
workstreams:
  - id: w
    steps:
      - id: s
        env: [AIDP_TEST_SECRET]
        run: "echo using $AIDP_TEST_SECRET; echo dirty > f.txt"
        checks: ["sh -c 'echo assertion failed in f.txt; exit 1'"]
""")
    cli_env = cli.env
    cli.env = lambda: {**cli_env(), "AIDP_TEST_SECRET": "hunter2-very-secret"}  # type: ignore[method-assign]
    code, status = run_status(cli, plan)
    assert code == 1
    run_id = status["run_id"]
    out = cli("diagnose", run_id, "w/s", check=True).stdout
    assert "outcome: failed_permanent" in out and "AIDP_TEST_SECRET" in out
    assert "f.txt" in out  # git status of the worktree
    bundle = json.loads(cli("diagnose", run_id, "w/s", "--json", check=True).stdout)
    assert bundle["findings"] and bundle["git"]["head"]
    assert "hunter2-very-secret" not in json.dumps(bundle)
    assert any("***" in line for line in bundle["log_tail"])
    found = json.loads(cli("findings", run_id, "--json", check=True).stdout)["findings"]
    assert [(f["step"], f["detector"], f["class"]) for f in found] == [("s", "check", "permanent")]
    missing = cli("diagnose", run_id, "w/nope")
    assert missing.returncode == 3 and "Traceback" not in missing.stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_backoff_waits_pass_on_the_injected_clock(repo: Path, db_url: str,
                                                  tmp_path: Path) -> None:
    """Retries 30 s and 60 s apart complete at once under an AutojumpClock, which records
    exactly those waits."""
    counter = tmp_path / "count"
    plan_path = Path(write_plan(tmp_path, f"""
version: 1
workstreams:
  - id: w
    steps:
      - id: s
        run: "n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter};
              test $n -ge 3"
        retry: {{max_attempts: 3, initial_delay: 30, factor: 2}}
"""))
    plan = load_plan([plan_path])
    store = Store(db_url)
    try:
        run_id = create_run(store, repo, plan, parallel=2)
        clock = AutojumpClock()
        summary = drive_run(store, repo, run_id, load_settings(repo), clock=clock)
    finally:
        store.close()
    assert summary.ok
    assert sum(clock.jumps) == pytest.approx(90.0, abs=1.0)
    assert max(clock.jumps) <= 60.0 + 1e-6
