"""End to end through the real ``aidp`` executable: runs, branches, checkpoints, the journal.

Most tests run on SQLite and PostgreSQL (the ``cli`` fixture); slow or odd ones on SQLite only.
Workstream files live outside the repository (in tmp_path) so that they never dirty it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aidp.process.procfs import is_alive
from aidp.state import tables
from aidp.state.store import Store
from tests.conftest import Cli, CliResult, git, init_repo

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
TRAILERS = ("Aidp-Run", "Aidp-Workstream", "Aidp-Step", "Aidp-Attempt")
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


# -- helpers -----------------------------------------------------------------------------------


def plan_file(tmp_path: Path, text: str, name: str = "plan.yaml") -> str:
    """Write a workstream file outside the repository and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_json(cli: Cli, *args: str, timeout: float = 90) -> tuple[CliResult, dict[str, Any]]:
    """``aidp run --json ARGS``: the result and its JSON summary."""
    result = cli("run", "--json", *args, timeout=timeout)
    assert result.stdout.strip(), f"no JSON summary (exit {result.returncode}):\n{result.stderr}"
    return result, json.loads(result.stdout)


def status(cli: Cli, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cli("status", "--json", run_id, check=True).stdout)
    return data


def wss(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["id"]: w for w in data["workstreams"]}


def steps_of(data: dict[str, Any], ws_id: str) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in wss(data)[ws_id]["steps"]}


def trailers(repo: Path, sha: str) -> dict[str, str]:
    text = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", sha)
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def rev(repo: Path, ref: str) -> str:
    return git(repo, "rev-parse", ref).strip()


def attempts(cli: Cli, run_id: str, ws_id: str | None = None) -> list[Any]:
    store = Store(str(cli.db_url))
    try:
        return store.attempts(run_id, ws_id)
    finally:
        store.close()


def events(cli: Cli, run_id: str) -> list[Any]:
    store = Store(str(cli.db_url))
    try:
        return store.events(run_id)
    finally:
        store.close()


def disjoint(intervals: list[tuple[float, float]]) -> bool:
    """True if no two [start, end] intervals overlap."""
    ordered = sorted(intervals)
    return all(a[1] <= b[0] for a, b in itertools.pairwise(ordered))


def ws_intervals(cli: Cli, run_id: str) -> dict[str, tuple[float, float]]:
    """Each workstream's [first step started, last step finished] from the attempts table."""
    spans: dict[str, tuple[float, float]] = {}
    for a in attempts(cli, run_id):
        lo, hi = spans.get(a.ws_id, (a.started_at, a.finished_at))
        spans[a.ws_id] = (min(lo, a.started_at), max(hi, a.finished_at))
    return spans


# -- the quickstart ----------------------------------------------------------------------------


@pytest.fixture
def quickstart(tmp_path: Path, db_url: str) -> Cli:
    """A fresh git repository holding a copy of the quickstart's tiny project."""
    repo = tmp_path / "qs"
    shutil.copytree(QUICKSTART / "repo", repo)
    init_repo(repo, {})
    return Cli(repo, db_url)


def test_quickstart(quickstart: Cli) -> None:
    """The quickstart fails in exactly one place; branches, checkpoints and status agree."""
    cli, repo = quickstart, quickstart.cwd
    result, summary = run_json(cli, "--parallel", "3", str(QUICKSTART / "workstreams.yaml"))
    assert result.returncode == 1, result.stderr
    assert summary["status"] == "failed"
    run_id = summary["run_id"]
    data = status(cli, run_id)
    got = {w["id"]: w["status"] for w in data["workstreams"]}
    assert got == {"docs": "completed", "lib": "completed", "release": "completed",
                   "broken": "failed", "after-broken": "skipped"}, json.dumps(data, indent=1)
    branches = set(git(repo, "branch", "--list", f"aidp/{run_id}/*",
                       "--format=%(refname:short)").split())
    assert branches == {f"aidp/{run_id}/{w}" for w in ("docs", "lib", "release", "broken")}
    for ws in data["workstreams"]:
        if ws["status"] == "skipped":
            continue
        assert ws["branch"] == f"aidp/{run_id}/{ws['id']}"
        assert ws["head"] == rev(repo, ws["branch"])
        log = git(repo, "log", "--format=%H", f"{ws['base']}..{ws['branch']}").split()
        for step in ws["steps"]:
            if step["status"] != "completed":
                assert step["checkpoint"] is None
                continue
            sha = step["checkpoint"]
            assert sha in log
            t = trailers(repo, sha)
            assert set(TRAILERS) <= set(t)
            assert (t["Aidp-Run"], t["Aidp-Workstream"], t["Aidp-Step"]) == (
                run_id, ws["id"], step["id"])
            assert t["Aidp-Attempt"] == "1"
        own = [c for c in log if trailers(repo, c).get("Aidp-Step")
               and trailers(repo, c)["Aidp-Workstream"] == ws["id"]]
        assert len(own) == sum(1 for s in ws["steps"] if s["status"] == "completed")
    release = wss(data)["release"]["branch"]
    files = set(git(repo, "ls-tree", "-r", "--name-only", release).split())
    assert {"docs/guide.md", "lib/VERSION", "RELEASE.md"} <= files
    integration = set(git(repo, "ls-tree", "-r", "--name-only", "quickstart/integration").split())
    assert {"docs/guide.md", "lib/VERSION", "RELEASE.md"} <= integration
    merged = wss(data)["release"]["merged"]
    assert merged == rev(repo, "quickstart/integration")
    assert len(git(repo, "rev-list", "--parents", "-n1", merged).split()) == 3
    skipped = wss(data)["after-broken"]
    assert "broken" in skipped["reason"]
    assert all(s["status"] == "skipped" for s in skipped["steps"])
    assert "fully done" in wss(data)["broken"]["reason"]


# -- success, scope, no change -----------------------------------------------------------------


SIMPLE = """
version: 1
workstreams:
  - id: a
    scope: ["a/**"]
    steps:
      - {id: one, run: "mkdir -p a && echo 1 > a/one"}
      - {id: two, depends_on: [one], run: "echo 2 > a/two", checks: ["test -f a/two"]}
  - id: b
    scope: ["b/**"]
    steps:
      - {id: one, run: "mkdir -p b && echo b > b/x"}
"""


def test_successful_run_exits_zero(cli: Cli, tmp_path: Path) -> None:
    """A plan whose steps all succeed exits 0 and prints a JSON summary saying completed."""
    result, summary = run_json(cli, plan_file(tmp_path, SIMPLE))
    assert result.returncode == 0, result.stderr
    assert summary["status"] == "completed" and summary["ok"] is True
    assert {w["id"]: w["status"] for w in summary["workstreams"]} == {"a": "completed",
                                                                      "b": "completed"}
    assert git(cli.cwd, "show", f"{summary['workstreams'][0]['branch']}:a/two") == "2\n"


def test_write_outside_scope_fails_permanently(cli: Cli, tmp_path: Path) -> None:
    """A change outside the scope fails the step for good, commits nothing, skips dependants."""
    text = """
version: 1
workstreams:
  - id: a
    scope: ["a/**"]
    steps:
      - {id: one, run: "mkdir -p a && echo 1 > a/in && echo x > stray.txt",
         retry: {max_attempts: 3, initial_delay: 0.01}}
      - {id: two, depends_on: [one], run: "true"}
  - id: later
    depends_on: [a]
    scope: ["later/**"]
    steps: [{id: s, run: "true"}]
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 1
    data = status(cli, summary["run_id"])
    a = wss(data)["a"]
    one = steps_of(data, "a")["one"]
    assert one["status"] == "failed" and one["attempts"] == 1
    assert "stray.txt" in one["reason"]
    [attempt] = attempts(cli, summary["run_id"], "a")
    assert attempt.outcome == "failed_permanent" and "stray.txt" in attempt.error
    assert steps_of(data, "a")["two"]["status"] == "skipped"
    assert a["head"] == a["base"] == rev(cli.cwd, a["branch"])
    assert wss(data)["later"]["status"] == "skipped"
    assert "a" in wss(data)["later"]["reason"]


def test_requires_change_without_change(cli: Cli, tmp_path: Path) -> None:
    """requires_change with nothing changed: outcome no_change, the step fails."""
    text = """
version: 1
workstreams:
  - id: a
    steps: [{id: s, run: "true", requires_change: true}]
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 1
    data = status(cli, summary["run_id"])
    assert steps_of(data, "a")["s"]["status"] == "failed"
    assert [a.outcome for a in attempts(cli, summary["run_id"])] == ["no_change"]


def test_no_change_makes_an_empty_checkpoint(cli: Cli, tmp_path: Path) -> None:
    """A step that changes nothing still gets a checkpoint commit, with the tree unchanged."""
    text = """
version: 1
workstreams:
  - id: a
    steps: [{id: s, run: "true"}]
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    data = status(cli, summary["run_id"])
    sha = steps_of(data, "a")["s"]["checkpoint"]
    assert sha == rev(cli.cwd, wss(data)["a"]["branch"])
    assert rev(cli.cwd, f"{sha}^{{tree}}") == rev(cli.cwd, f"{sha}^^{{tree}}")
    assert rev(cli.cwd, f"{sha}^") == wss(data)["a"]["base"]
    assert trailers(cli.cwd, sha)["Aidp-Step"] == "s"


# -- retries and timeouts ----------------------------------------------------------------------


def flaky(counter: Path, succeed_at: int) -> str:
    """A command failing until its ``succeed_at``-th run (the count lives in ``counter``)."""
    return (f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
            f"echo attempt $AIDP_ATTEMPT try $n; test $n -ge {succeed_at}")


def test_retry_until_success(cli: Cli, tmp_path: Path) -> None:
    """A step failing twice then succeeding completes with three attempts recorded."""
    counter = tmp_path / "count"
    text = f"""
version: 1
workstreams:
  - id: a
    steps:
      - id: s
        run: {json.dumps(flaky(counter, 3))}
        retry: {{max_attempts: 3, initial_delay: 0.05}}
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    data = status(cli, summary["run_id"])
    step = steps_of(data, "a")["s"]
    assert step["status"] == "completed" and step["attempts"] == 3
    rows = attempts(cli, summary["run_id"])
    assert [(r.number, r.outcome) for r in rows] == [
        (1, "failed_transient"), (2, "failed_transient"), (3, "succeeded")]
    assert trailers(cli.cwd, step["checkpoint"])["Aidp-Attempt"] == "3"
    # the logs of each attempt stay apart
    run_id = summary["run_id"]
    assert "try 3" in cli("logs", run_id, "a/s", check=True).stdout
    first = cli("logs", run_id, "a/s", "--attempt", "1", check=True).stdout
    assert "attempt 1 try 1" in first and "try 2" not in first
    assert "attempt 2 try 2" in cli("logs", run_id, "s", "--attempt", "2", check=True).stdout
    missing = cli("logs", run_id, "a/s", "--attempt", "9")
    assert missing.returncode == 3 and missing.stderr.startswith("error:")


def test_retry_exhausted(cli: Cli, tmp_path: Path) -> None:
    """With max_attempts 2 a step needing three tries fails after two attempts."""
    text = f"""
version: 1
workstreams:
  - id: a
    steps:
      - id: s
        run: {json.dumps(flaky(tmp_path / "count", 3))}
        retry: {{max_attempts: 2, initial_delay: 0.05}}
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 1
    step = steps_of(status(cli, summary["run_id"]), "a")["s"]
    assert step["status"] == "failed" and step["attempts"] == 2
    assert "code 1" in step["reason"]


def test_failing_check_is_not_retried(cli: Cli, tmp_path: Path) -> None:
    """A failing acceptance check is permanent: one attempt despite max_attempts 3."""
    text = """
version: 1
workstreams:
  - id: a
    steps:
      - id: s
        run: "echo x > f"
        checks: [{name: never, run: "false"}]
        retry: {max_attempts: 3, initial_delay: 0.01}
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 1
    rows = attempts(cli, summary["run_id"])
    assert [r.outcome for r in rows] == ["failed_permanent"]
    assert "'never'" in rows[0].error


@SQLITE_ONLY
def test_timeout(cli: Cli, tmp_path: Path) -> None:
    """A step over its timeout is killed: attempt timed_out, step timeout, the run ends."""
    text = """
version: 1
workstreams:
  - id: a
    steps: [{id: s, run: "sleep 30", timeout: 1}]
"""
    result, summary = run_json(cli, plan_file(tmp_path, text), timeout=25)
    assert result.returncode == 1
    step = steps_of(status(cli, summary["run_id"]), "a")["s"]
    assert step["status"] == "timeout"
    assert [a.outcome for a in attempts(cli, summary["run_id"])] == ["timed_out"]


# -- concurrency -------------------------------------------------------------------------------


def test_conflicting_workstreams_never_overlap(cli: Cli, tmp_path: Path) -> None:
    """Two workstreams declared in conflict never run at the same time."""
    text = """
version: 1
workstreams:
  - id: a
    conflicts_with: [b]
    scope: ["ab/**"]
    steps:
      - {id: s1, run: "sleep 0.2"}
      - {id: s2, depends_on: [s1], run: "sleep 0.2"}
  - id: b
    scope: ["ab/**"]
    steps:
      - {id: s1, run: "sleep 0.2"}
      - {id: s2, depends_on: [s1], run: "sleep 0.2"}
  - id: c
    scope: ["c/**"]
    steps: [{id: s1, run: "sleep 0.2"}]
"""
    result, summary = run_json(cli, "--parallel", "4", plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    run_id = summary["run_id"]
    spans = ws_intervals(cli, run_id)
    assert disjoint([spans["a"], spans["b"]])
    # the journal agrees: between a workstream's start and its end, the other never starts
    started = {e.ws_id: e.ts for e in events(cli, run_id) if e.kind == "workstream.started"}
    ended = {e.ws_id: e.ts for e in events(cli, run_id) if e.kind == "workstream.completed"}
    assert disjoint([(started["a"], ended["a"]), (started["b"], ended["b"])])


def test_parallel_one_runs_one_step_at_a_time(cli: Cli, tmp_path: Path) -> None:
    """--parallel 1: no two attempts overlap."""
    text = "version: 1\nworkstreams:\n" + "".join(
        f"  - id: w{i}\n    scope: ['w{i}/**']\n    steps: [{{id: s, run: 'sleep 0.1'}}]\n"
        for i in range(3))
    result, summary = run_json(cli, "--parallel", "1", plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    rows = attempts(cli, summary["run_id"])
    assert len(rows) == 3
    assert disjoint([(r.started_at, r.finished_at) for r in rows])


def test_tool_concurrency_limit(cli: Cli, tmp_path: Path) -> None:
    """A tool profile with concurrency 1 never runs two of its steps at once, even at -p 4."""
    (cli.cwd / "aidp.toml").write_text('[tools.slow]\nadapter = "shell"\nconcurrency = 1\n')
    text = "version: 1\nworkstreams:\n" + "".join(
        f"  - id: w{i}\n    scope: ['w{i}/**']\n"
        f"    steps: [{{id: s, tool: slow, run: 'sleep 0.15'}}]\n" for i in range(3)
    ) + "  - id: free\n    scope: ['free/**']\n    steps: [{id: s, run: 'sleep 0.15'}]\n"
    result, summary = run_json(cli, "--parallel", "4", plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    rows = [r for r in attempts(cli, summary["run_id"]) if r.ws_id != "free"]
    assert len(rows) == 3
    assert disjoint([(r.started_at, r.finished_at) for r in rows])


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at the same instant)."""
    edges = sorted([(lo, 1) for lo, _ in intervals] + [(hi, -1) for _, hi in intervals],
                   key=lambda e: (e[0], e[1]))
    depth = best = 0
    for _, delta in edges:
        depth += delta
        best = max(best, depth)
    return best


def _pool_slots(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / ".aidp" / "worktrees").iterdir() if p.is_dir())


FOUR_SLEEPS = "version: 1\nworkstreams:\n" + "".join(
    f"  - id: w{i}\n    scope: ['w{i}/**']\n    steps: [{{id: s, run: 'sleep 0.8'}}]\n"
    for i in range(4))


@pytest.mark.parametrize(("ahead", "slots"), [(None, 3), ("0", 2), ("2", 4)])
def test_prepare_ahead_uses_spare_worktrees_never_more_steps(
        cli: Cli, tmp_path: Path, ahead: str | None, slots: int) -> None:
    """While both slots of -p 2 run, the next workstreams' worktrees are made ready in spare
    ones (run.prepare_ahead, default 1 at -p 2); still never more than two steps at once."""
    if ahead is not None:
        (cli.cwd / "aidp.toml").write_text(f"[run]\nprepare_ahead = {ahead}\n")
    result, summary = run_json(cli, "--parallel", "2", plan_file(tmp_path, FOUR_SLEEPS))
    assert result.returncode == 0, result.stderr
    rows = attempts(cli, summary["run_id"])
    assert len(rows) == 4 and {r.outcome for r in rows} == {"succeeded"}
    assert _max_overlap([(r.started_at, r.finished_at) for r in rows]) <= 2
    # the first workstreams hold their slots for 0.8 s: the others prepare in spare ones
    assert len(_pool_slots(cli.cwd)) == slots
    # every workstream's branch got its own checkpoint on the plan's base, nothing leaked
    base = rev(cli.cwd, "main")
    for w in wss(status(cli, summary["run_id"])).values():
        assert rev(cli.cwd, f"{w['branch']}~1") == base
        assert git(cli.cwd, "ls-tree", "-r", "--name-only", w["branch"]) == git(
            cli.cwd, "ls-tree", "-r", "--name-only", "main")


@SQLITE_ONLY
def test_no_spare_worktree_in_a_large_repository(cli: Cli, tmp_path: Path) -> None:
    """Over 5,000 tracked files a spare worktree costs a full checkout: none is made."""
    many = cli.cwd / "many"
    many.mkdir()
    for i in range(5001):
        (many / f"f{i}").write_text("x")
    git(cli.cwd, "add", "many")
    git(cli.cwd, "commit", "-q", "-m", "many files")
    result, _summary = run_json(cli, "--parallel", "2", plan_file(tmp_path, FOUR_SLEEPS))
    assert result.returncode == 0, result.stderr
    assert len(_pool_slots(cli.cwd)) == 2


# -- merging -----------------------------------------------------------------------------------


def test_merge_strategies(cli: Cli, tmp_path: Path) -> None:
    """squash makes a one-parent commit with the workstream's tree; merge a two-parent one."""
    text = """
version: 1
workstreams:
  - id: sq
    scope: ["sq/**"]
    merge: {into: int-squash, strategy: squash}
    steps:
      - {id: s1, run: "mkdir -p sq && echo 1 > sq/f"}
      - {id: s2, depends_on: [s1], run: "echo 2 >> sq/f"}
  - id: mg
    scope: ["mg/**"]
    merge: {into: int-merge}
    steps:
      - {id: s1, run: "mkdir -p mg && echo 1 > mg/f"}
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    data = status(cli, summary["run_id"])
    repo = cli.cwd
    sq, mg = wss(data)["sq"], wss(data)["mg"]
    squash = rev(repo, "int-squash")
    assert sq["merged"] == squash
    assert git(repo, "rev-list", "--parents", "-n1", squash).split() == [squash, sq["base"]]
    assert rev(repo, "int-squash^{tree}") == rev(repo, f"{sq['branch']}^{{tree}}")
    merge = rev(repo, "int-merge")
    assert mg["merged"] == merge
    assert git(repo, "rev-list", "--parents", "-n1", merge).split() == [merge, mg["base"],
                                                                         mg["head"]]
    assert trailers(repo, merge)["Aidp-Workstream"] == "mg"
    assert rev(repo, "main") == sq["base"]  # the base branch never moves


def test_merge_conflict_fails_the_second(cli: Cli, tmp_path: Path) -> None:
    """Two workstreams changing one file and merging into one target: the second fails."""
    text = """
version: 1
workstreams:
  - id: first
    merge: {into: integration}
    steps: [{id: s, run: "echo first > shared.txt"}]
  - id: second
    conflicts_with: [first]
    merge: {into: integration}
    steps: [{id: s, run: "echo second > shared.txt"}]
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 1
    data = status(cli, summary["run_id"])
    states = {w["id"]: w["status"] for w in data["workstreams"]}
    assert sorted(states.values()) == ["completed", "failed"]
    loser = next(w for w in data["workstreams"] if w["status"] == "failed")
    winner = next(w for w in data["workstreams"] if w["status"] == "completed")
    assert "shared.txt" in loser["reason"] and "integration" in loser["reason"]
    assert git(cli.cwd, "show", "integration:shared.txt") == f"{winner['id']}\n"


def test_dependency_merge_conflict_fails_the_fan_in(cli: Cli, tmp_path: Path) -> None:
    """A fan-in whose dependencies changed the same file fails with a reason naming it."""
    text = """
version: 1
workstreams:
  - id: a
    steps: [{id: s, run: "echo a > shared.txt"}]
  - id: b
    conflicts_with: [a]
    steps: [{id: s, run: "echo b > shared.txt"}]
  - id: both
    depends_on: [a, b]
    steps: [{id: s, run: "true"}]
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 1
    data = status(cli, summary["run_id"])
    assert wss(data)["a"]["status"] == wss(data)["b"]["status"] == "completed"
    fan_in = wss(data)["both"]
    assert fan_in["status"] == "failed"
    assert "shared.txt" in fan_in["reason"]
    assert "merge" in fan_in["reason"] or "conflict" in fan_in["reason"]
    assert steps_of(data, "both")["s"]["status"] != "completed"


# -- secrets and environment -------------------------------------------------------------------


def test_secrets_are_masked_everywhere(cli: Cli, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A declared secret reaches the tool but never the log, the database or git."""
    secret = "s3cr3t-" + tmp_path.name[-8:] + "-value"
    monkeypatch.setenv("MY_TOKEN", secret)
    monkeypatch.setenv("NOT_DECLARED", "hidden-" + secret[::-1])
    text = """
version: 1
workstreams:
  - id: a
    steps:
      - id: s
        env: [MY_TOKEN]
        run: 'echo "token=$MY_TOKEN other=[$NOT_DECLARED]"; test -n "$MY_TOKEN"'
        checks: ['echo "check sees $MY_TOKEN"']
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    run_id = summary["run_id"]
    log = cli("logs", run_id, "a/s", check=True).stdout
    assert "token=***" in log and "other=[]" in log and "check sees ***" in log
    assert secret not in log and secret not in result.stdout + result.stderr
    store = Store(str(cli.db_url))
    try:
        with store.engine.connect() as conn:
            for table in tables.metadata.sorted_tables:
                for row in conn.execute(select(table)):
                    for value in row:
                        assert secret not in str(value), table.name
    finally:
        store.close()
    history = git(cli.cwd, "log", "--all", "-p", "--format=%H%n%B")
    assert secret not in history


def test_declared_but_unset_variable_is_rejected(cli: Cli, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A declared but unset variable: exit 2 before anything is written (no run row), the
    problem located like `aidp validate` locates it (file:line: [ws/step])."""
    monkeypatch.delenv("AIDP_TEST_UNSET_VAR", raising=False)
    text = """
version: 1
workstreams:
  - id: a
    steps: [{id: s, env: [AIDP_TEST_UNSET_VAR], run: "true"}]
"""
    result = cli("run", plan_file(tmp_path, text))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{tmp_path / 'plan.yaml'}:5: [a/s] environment variable "
                                     "AIDP_TEST_UNSET_VAR is not set")
    assert "Traceback" not in result.stderr
    store = Store(str(cli.db_url))
    try:
        assert store.runs() == []
    finally:
        store.close()
    assert git(cli.cwd, "branch", "--list", "aidp/*") == ""


# -- cancel, rollback, resume ------------------------------------------------------------------


def _reap(proc: Any) -> None:
    """Kill an ``aidp`` started with ``cli.popen`` (its process group) if it still runs; close
    its pipes."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()


def _wait_for(predicate: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_cancel_a_live_run(cli: Cli, tmp_path: Path) -> None:
    """aidp cancel of a live run stops its tool and the run ends cancelled."""
    pid_file = tmp_path / "tool.pid"
    text = f"""
version: 1
workstreams:
  - id: a
    steps:
      - {{id: long, run: "echo $$ > {pid_file}; exec sleep 60"}}
      - {{id: after, depends_on: [long], run: "true"}}
"""
    proc = cli.popen("run", plan_file(tmp_path, text))
    try:
        _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the tool")
        tool_pid = int(pid_file.read_text())
        run_id = json.loads(cli("runs", "--json", check=True).stdout)[0]["run_id"]
        result = cli("cancel", run_id)
        assert result.returncode == 0, result.stdout + result.stderr
        assert proc.wait(timeout=30) == 1
    finally:
        _reap(proc)
    data = status(cli, run_id)
    assert data["status"] == "cancelled" and data["live"] is False
    assert wss(data)["a"]["status"] == "cancelled"
    assert {s["status"] for s in wss(data)["a"]["steps"]} == {"cancelled"}
    _wait_for(lambda: not is_alive(tool_pid), "the tool to die", 10)
    resumed = cli("resume", run_id)
    assert resumed.returncode == 4 and "cancelled" in resumed.stderr


@SQLITE_ONLY
def test_cancel_while_a_workstream_waits_prepared(cli: Cli, tmp_path: Path) -> None:
    """-p 1: the second workstream waits prepared for the slot; a cancel then never starts
    its tool, records no attempt for it, and leaves it cancelled as if never prepared."""
    marker = tmp_path / "started"
    text = f"""
version: 1
workstreams:
  - id: a
    scope: ["a/**"]
    steps: [{{id: s, run: "echo a >> {marker}; exec sleep 60"}}]
  - id: b
    scope: ["b/**"]
    steps: [{{id: s, run: "echo b >> {marker}; exec sleep 60"}}]
"""
    proc = cli.popen("run", "--parallel", "1", plan_file(tmp_path, text))
    try:
        _wait_for(lambda: marker.exists() and marker.read_text().strip(), "the first tool")
        _wait_for(lambda: len(_pool_slots(cli.cwd)) == 2, "the spare worktree")
        run_id = json.loads(cli("runs", "--json", check=True).stdout)[0]["run_id"]
        assert cli("cancel", run_id).returncode == 0
        assert proc.wait(timeout=30) == 1
    finally:
        _reap(proc)
    started = marker.read_text().split()  # which one got the slot first is a race
    assert len(started) == 1
    assert [a.ws_id for a in attempts(cli, run_id)] == started
    data = status(cli, run_id)
    assert data["status"] == "cancelled"
    assert steps_of(data, started[0])["s"]["status"] == "cancelled"
    assert wss(data)[started[0]]["status"] == "cancelled"  # not failed: the user cancelled
    waited = wss(data)["b" if started == ["a"] else "a"]
    assert waited["status"] == "cancelled", json.dumps(waited)
    assert waited["base"] is None and waited["worktree"] is None
    assert waited["steps"][0]["attempts"] == 0


CHAIN = """
version: 1
workstreams:
  - id: w
    steps:
      - {id: s1, run: "echo 1 >> log.txt"}
      - {id: s2, depends_on: [s1], run: "echo 2 >> log.txt"}
      - {id: s3, depends_on: [s2], run: "echo 3 >> log.txt"}
"""


def test_rollback_then_resume(cli: Cli, tmp_path: Path) -> None:
    """rollback --to s1 moves the branch back and reopens s2, s3; resume redoes them once."""
    repo = cli.cwd
    result, summary = run_json(cli, plan_file(tmp_path, CHAIN))
    assert result.returncode == 0, result.stderr
    run_id = summary["run_id"]
    before = steps_of(status(cli, run_id), "w")
    back = cli("rollback", run_id, "--to", "w/s1")
    assert back.returncode == 0, back.stderr
    data = status(cli, run_id)
    branch = wss(data)["w"]["branch"]
    assert rev(repo, branch) == before["s1"]["checkpoint"] == wss(data)["w"]["head"]
    after = steps_of(data, "w")
    assert [after[s]["status"] for s in ("s1", "s2", "s3")] == ["completed", "pending",
                                                                "pending"]
    assert after["s2"]["checkpoint"] is None
    resumed = cli("resume", "--json", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed"
    data = status(cli, run_id)
    assert all(s["status"] == "completed" for s in wss(data)["w"]["steps"])
    assert git(repo, "show", f"{branch}:log.txt") == "1\n2\n3\n"
    shas = git(repo, "log", "--format=%H", f"{wss(data)['w']['base']}..{branch}").split()
    steps = [trailers(repo, sha).get("Aidp-Step", "") for sha in shas]
    assert sorted(steps) == ["s1", "s2", "s3"]
    assert steps_of(data, "w")["s1"]["checkpoint"] == before["s1"]["checkpoint"]
    assert steps_of(data, "w")["s3"]["checkpoint"] == rev(repo, branch)


def test_resume_a_failed_run_after_the_fix(cli: Cli, tmp_path: Path) -> None:
    """Resuming a failed run retries the failed step (and its skipped dependants) to completion."""
    flag = tmp_path / "fixed"
    text = f"""
version: 1
workstreams:
  - id: w
    steps:
      - {{id: s1, run: "echo 1 > a.txt"}}
      - {{id: s2, depends_on: [s1], run: "echo 2 > b.txt", checks: ["test -f {flag}"]}}
  - id: after
    depends_on: [w]
    steps: [{{id: s, run: "cat b.txt > c.txt"}}]
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 1
    run_id = summary["run_id"]
    s1 = steps_of(status(cli, run_id), "w")["s1"]["checkpoint"]
    flag.write_text("")
    resumed = cli("resume", "--json", run_id)
    assert resumed.returncode == 0, resumed.stderr
    data = status(cli, run_id)
    assert data["status"] == "completed"
    assert steps_of(data, "w")["s1"]["checkpoint"] == s1  # not redone
    assert [a.number for a in attempts(cli, run_id, "w") if a.step_id == "s2"] == [1, 2]
    assert git(cli.cwd, "show", f"{wss(data)['after']['branch']}:c.txt") == "2\n"


# -- worktrees ---------------------------------------------------------------------------------


@SQLITE_ONLY
def test_worktrees_list_and_prune(cli: Cli, tmp_path: Path) -> None:
    """After a run pooled worktrees are idle; prune removes clean ones, dirty ones need --force."""
    meet = tmp_path / "meet"
    meet.mkdir()
    # two workstreams that wait for each other, so they hold two worktrees at once
    text = "version: 1\nworkstreams:\n" + "".join(
        f"  - id: {me}\n    scope: ['{me}/**']\n    steps:\n"
        f"      - {{id: s, timeout: 20, run: \"touch {meet}/{me}; "
        f"while [ ! -f {meet}/{other} ]; do sleep 0.05; done\"}}\n"
        for me, other in (("a", "b"), ("b", "a")))
    result, _ = run_json(cli, "--parallel", "2", plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    listed = json.loads(cli("worktrees", "list", "--json", check=True).stdout)
    assert len(listed) == 2
    assert not any(w["in_use"] or w["dirty"] for w in listed)
    dirty = Path(listed[0]["path"])
    (dirty / "untracked.txt").write_text("keep me")
    out = cli("worktrees", "prune", check=True).stdout
    assert f"removed {listed[1]['path']}" in out and f"kept {dirty}" in out
    listed = json.loads(cli("worktrees", "list", "--json", check=True).stdout)
    assert [w["path"] for w in listed] == [str(dirty)] and listed[0]["dirty"]
    assert dirty.exists()
    cli("worktrees", "prune", "--force", check=True)
    assert json.loads(cli("worktrees", "list", "--json", check=True).stdout) == []
    assert not dirty.exists()
    assert git(cli.cwd, "branch", "--list", "aidp/*").count("aidp/") == 2  # branches stay


# -- init --------------------------------------------------------------------------------------


def test_init_then_run_the_example(cli: Cli) -> None:
    """aidp init writes aidp.toml and an example that runs; a second init refuses."""
    first = cli("init")
    assert first.returncode == 0, first.stderr
    assert (cli.cwd / "aidp.toml").is_file()
    assert (cli.cwd / "workstreams" / "example.yaml").is_file()
    result = cli("run", "workstreams/example.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    again = cli("init")
    assert again.returncode == 2 and "exists" in again.stderr
    assert cli("init", "--force").returncode == 0


# -- many workstreams at once ------------------------------------------------------------------


def test_worker_threads_create_worktrees_at_once(tmp_path: Path) -> None:
    """Worker threads taking new worktrees from the run's pool at the same time never fail."""
    import threading

    from aidp.workspace.worktrees import WorktreePool

    errors: list[str] = []
    for trial in range(12):  # the race is narrow: several rounds of 16 simultaneous starts
        repo = init_repo(tmp_path / f"r{trial}")
        pool = WorktreePool(repo)  # one pool shared by the worker threads, as in a run
        barrier = threading.Barrier(16)

        def start(i: int, pool: WorktreePool = pool, barrier: threading.Barrier = barrier
                  ) -> None:
            barrier.wait()
            try:
                pool.release(pool.acquire(f"aidp/R/w{i}", "HEAD"))
            except Exception as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=start, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            break
    assert errors == []


def test_resume_retries_a_failed_merge(cli: Cli, tmp_path: Path) -> None:
    """After a merge into the target failed and the target was fixed, resume merges and
    completes the workstream (its steps are not redone)."""
    text = """
version: 1
workstreams:
  - id: w
    merge: {into: integration}
    steps: [{id: s, run: "echo mine > shared.txt"}]
"""
    repo = cli.cwd
    git(repo, "branch", "integration")
    git(repo, "checkout", "-q", "integration")
    (repo / "shared.txt").write_text("theirs\n")
    git(repo, "add", "shared.txt")
    git(repo, "commit", "-q", "-m", "a conflicting change on the target")
    git(repo, "checkout", "-q", "main")
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 1
    run_id = summary["run_id"]
    data = status(cli, run_id)
    assert wss(data)["w"]["status"] == "failed" and "shared.txt" in wss(data)["w"]["reason"]
    checkpoint = steps_of(data, "w")["s"]["checkpoint"]
    git(repo, "branch", "-f", "integration", "main")  # the user clears the conflict
    resumed = cli("resume", "--json", run_id)
    data = status(cli, run_id)
    assert (resumed.returncode, data["status"], wss(data)["w"]["status"]) == (
        0, "completed", "completed"), json.dumps(data, indent=1)
    assert steps_of(data, "w")["s"]["checkpoint"] == checkpoint
    assert git(repo, "show", "integration:shared.txt") == "mine\n"


@SQLITE_ONLY
def test_rollback_to_the_last_step_then_resume(cli: Cli, tmp_path: Path) -> None:
    """Rolling back to the last checkpoint reopens nothing, and resume completes the run."""
    result, summary = run_json(cli, plan_file(tmp_path, CHAIN))
    assert result.returncode == 0, result.stderr
    run_id = summary["run_id"]
    back = cli("rollback", run_id, "--to", "w/s3")
    assert back.returncode == 0 and "nothing" in back.stdout
    resumed = cli("resume", "--json", run_id)
    data = status(cli, run_id)
    assert (resumed.returncode, data["status"], wss(data)["w"]["status"]) == (
        0, "completed", "completed"), json.dumps(data, indent=1)


def test_checks_do_not_change_the_checkpoint(cli: Cli, tmp_path: Path) -> None:
    """Files a check writes or changes are not committed; the next step does not see them."""
    text = """
version: 1
workstreams:
  - id: w
    scope: ["out/**"]
    steps:
      - id: make
        run: "mkdir -p out && echo tool > out/a"
        checks: ["echo check > out/a && echo junk > out/junk && echo x > outside.txt"]
      - {id: next, depends_on: [make], run: "test ! -e out/junk && cat out/a > out/b"}
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    data = status(cli, summary["run_id"])
    make = steps_of(data, "w")["make"]["checkpoint"]
    assert git(cli.cwd, "ls-tree", "-r", "--name-only", make).split() == ["README.md", "out/a"]
    assert git(cli.cwd, "show", f"{make}:out/a") == "tool\n"
    assert git(cli.cwd, "show", f"{wss(data)['w']['branch']}:out/b") == "tool\n"
