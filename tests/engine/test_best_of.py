"""Best-of-N: candidates of three profiles against the fake provider, judged by the checks,
then the findings, the diff and the cost; every candidate recorded; usage summed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aidp.testing import FakeLLM
from tests.engine.test_honest_outcomes import drive
from tests.engine.test_providers import profile

KEY = "sk-canary-best-of-5b1c9e3a7d2f"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDP_TEST_BO_KEY", KEY)


def edit(body: str) -> str:
    return f"notes/a.md\n```\n{body}\n```\n"


PLAN = """version: 1
workstreams:
  - id: w
    scope: ["notes/**"]
    steps:
      - id: s
        prompt: Write notes/a.md; it must say ok.
        best_of: {n: 3, profiles: [alpha, beta, gamma], judge: checks}
        checks: ["grep -qx ok notes/a.md"]
      - id: after
        depends_on: [s]
        run: "test \\"$(cat notes/a.md)\\" = ok"
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_the_smallest_passing_candidate_wins_and_every_candidate_is_recorded(
        repo: Path, db_url: str, tmp_path: Path) -> None:
    usage = {"alpha": (1000, 100), "beta": (2000, 400), "gamma": (1500, 200)}
    replies = {"alpha": edit("broken"),  # fails the check
               # passes too, with a larger diff: a second file
               "beta": edit("ok") + "\nnotes/extra.md\n```\none\ntwo\nthree\n```\n",
               "gamma": edit("ok")}  # passes with the smallest diff
    servers = {name: FakeLLM([{"reply": replies[name],
                               "usage": {"input_tokens": i, "output_tokens": o}}], api_key=KEY)
               for name, (i, o) in usage.items()}
    for server in servers.values():
        server.__enter__()
    try:
        toml = "".join(profile(name, server.base_url, api_key_env="AIDP_TEST_BO_KEY",
                               prices={"input": 2.0, "output": 10.0})
                       for name, server in servers.items())
        summary, store, run_id = drive(repo, db_url, tmp_path, toml, PLAN)
        requests = {name: len(server.requests) for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
    try:
        assert summary.ok, summary
        assert requests == {"alpha": 1, "beta": 1, "gamma": 1}  # in parallel, each once
        rows = {a.profile: a for a in store.attempts(run_id, "w", "s")}
        assert sorted(rows) == ["alpha", "beta", "gamma"]
        assert {a.round for a in rows.values()} == {1}
        assert sorted(a.candidate for a in rows.values()) == [1, 2, 3]
        assert rows["gamma"].verdict == "won"
        assert rows["beta"].verdict == "lost"
        assert rows["alpha"].verdict == "failed"
        assert "larger diff" in rows["beta"].verdict_reason
        assert "lost to candidate 3" in rows["beta"].verdict_reason
        assert "checks passed" in rows["gamma"].verdict_reason
        assert "failed_permanent" in rows["alpha"].verdict_reason
        assert rows["gamma"].diff_lines < rows["beta"].diff_lines
        # the failing candidate's findings name its check
        found = [f for f in store.findings(run_id) if f.attempt == rows["alpha"].number]
        assert any("grep" in (f.message or "") or "grep" in f.source for f in found)
        # the step's checkpoint is the winner's commit, and the branch holds its tree only
        (step,) = [s for s in store.steps(run_id) if s.step_id == "s"]
        assert step.checkpoint_sha == rows["gamma"].candidate_sha
        branch = f"aidp/{run_id}/w"
        assert git(repo, "show", f"{branch}:notes/a.md") == "ok"
        assert "notes/extra.md" not in git(repo, "ls-tree", "-r", "--name-only", branch)
        assert git(repo, "rev-parse", f"{step.checkpoint_sha}^") == git(
            repo, "rev-parse", f"{branch}~2")  # the winner's parent is the round's start
        # the losers' commits stay on their own branches, to compare
        assert git(repo, "rev-parse", f"{branch}+s.{rows['beta'].number}") == \
            rows["beta"].candidate_sha
        # usage: the run's is the sum of the three candidates'
        total_in = sum(a.input_tokens for a in store.attempts(run_id))
        total_cost = sum(a.cost_usd for a in store.attempts(run_id))
        assert total_in == 1000 + 2000 + 1500
        assert total_cost == pytest.approx(sum(i * 2.0 + o * 10.0 for i, o in usage.values())
                                           / 1e6)
        judged = [e for e in store.events(run_id) if e.kind == "step.judged"]
        assert len(judged) == 1
    finally:
        store.close()
