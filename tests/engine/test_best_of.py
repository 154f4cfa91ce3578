"""Best-of-N: candidates of three profiles against the fake provider, judged by the checks,
then the findings, the diff and the cost; every candidate recorded; usage summed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aidp.testing import FakeLLM
from tests.conftest import Cli, git
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
        assert rows["gamma"].verdict_reason == (
            "checks passed; the best of 2 passing of 3 (fewest findings, smallest diff, "
            "lowest cost)")
        assert "failed_permanent" in rows["alpha"].verdict_reason
        assert rows["gamma"].diff_lines < rows["beta"].diff_lines
        # the failing candidate's findings name its check
        found = [f for f in store.findings(run_id) if f.attempt == rows["alpha"].number]
        assert any("grep" in (f.message or "") or "grep" in f.source for f in found)
        # the step's checkpoint is the winner's commit, and the branch holds its tree only
        (step,) = [s for s in store.steps(run_id) if s.step_id == "s"]
        assert step.checkpoint_sha == rows["gamma"].candidate_sha
        branch = f"aidp/{run_id}/w"
        assert git(repo, "show", f"{branch}:notes/a.md").strip() == "ok"
        assert "notes/extra.md" not in git(repo, "ls-tree", "-r", "--name-only", branch)
        assert git(repo, "rev-parse", f"{step.checkpoint_sha}^") == git(
            repo, "rev-parse", f"{branch}~2")  # the winner's parent is the round's start
        # the losers' commits stay on their own branches, to compare
        assert git(repo, "rev-parse", f"{branch}+s.{rows['beta'].number}").strip() == \
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


SEEDED = """version: 1
workstreams:
  - id: w
    steps:
      - id: s
        # one profile, three candidates told apart by $AIDP_CANDIDATE: the first writes a
        # line the check refuses, the others 2 and 3 lines
        run: >-
          if [ $AIDP_CANDIDATE = 1 ]; then echo bad > out.txt;
          else seq {candidate} > out.txt; fi
        best_of: {n: 3}
        checks: ["! grep -q bad out.txt"]
"""


def test_status_shows_the_candidates_side_by_side(cli_inproc: Cli, tmp_path: Path) -> None:
    plan_path = tmp_path / "p.yaml"
    plan_path.write_text(SEEDED)
    result = cli_inproc("run", "--json", str(plan_path))
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    data = json.loads(cli_inproc("status", run_id, "--json", check=True).stdout)
    (step,) = data["workstreams"][0]["steps"]
    candidates = {a["candidate"]["place"]: a for a in step["attempt_list"]}
    assert [candidates[p]["candidate"]["verdict"] for p in (1, 2, 3)] == [
        "failed", "won", "lost"]
    assert candidates[3]["candidate"]["reason"] == \
        "lost to candidate 2: larger diff (3 vs 2 lines)"
    assert step["checkpoint"] == candidates[2]["candidate"]["commit"]
    assert subprocess.run(["git", "show", f"{step['checkpoint']}:out.txt"], cwd=cli_inproc.cwd,
                          capture_output=True, text=True, check=True).stdout == "1\n2\n"
    text = cli_inproc("status", run_id, check=True).stdout
    assert "#2 shell" in text and "won" in text and "lost to candidate 2" in text


def test_a_round_where_none_passes_is_one_attempt_and_fixes_as_a_round(
        cli_inproc: Cli, tmp_path: Path) -> None:
    """No candidate passes: the round counts once against the retry policy, and the fix round
    feeds the findings back; its candidates pass."""
    plan_path = tmp_path / "p.yaml"
    plan_path.write_text("""version: 1
workstreams:
  - id: w
    steps:
      - id: s
        run: >-
          if [ -n "$AIDP_FINDINGS_FILE" ]; then echo fixed{candidate} > out.txt;
          else echo bad > out.txt; fi
        best_of: {n: 2}
        checks: ["! grep -q bad out.txt"]
        fix: {max: 1}
""")
    result = cli_inproc("run", "--json", str(plan_path))
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    data = json.loads(cli_inproc("status", run_id, "--json", check=True).stdout)
    (step,) = data["workstreams"][0]["steps"]
    attempts = step["attempt_list"]
    assert [(a["number"], a["kind"], a["candidate"]["round"], a["candidate"]["verdict"])
            for a in attempts] == [(1, "first", 1, "failed"), (2, "first", 1, "failed"),
                                   (3, "fix", 3, "won"), (4, "fix", 3, "lost")]
    assert attempts[3]["candidate"]["reason"] == "lost to candidate 1: a tie, decided by order"


def test_kill_9_during_a_round_is_one_crash_and_resume_finishes_it(
        cli: Cli, tmp_path: Path) -> None:
    """aidp dies while three candidates run: resume kills them, counts one crash for the
    step (not three: max_crashes 2 still allows a new round), runs a new round, and the
    workstream's branch holds one checkpoint of the step."""
    from tests.engine.test_crash_resume import kill9, kill_leftovers, wait_for

    marks = tmp_path / "marks"
    marks.mkdir()
    plan_path = tmp_path / "p.yaml"
    plan_path.write_text(f"""version: 1
workstreams:
  - id: w
    steps:
      - id: s
        run: >-
          if [ -e {marks}/resumed ]; then seq {{candidate}} > out.txt;
          else touch {marks}/c{{candidate}}; sleep 60; fi
        best_of: {{n: 3}}
        retry: {{max_crashes: 2}}
""")
    proc = cli.popen("run", "--json", str(plan_path))
    run_id = None
    try:
        wait_for(lambda: len(list(marks.glob("c*"))) == 3, "three candidates running")
        kill9(proc)
        (marks / "resumed").touch()
        runs_out = json.loads(cli("runs", "--json", check=True).stdout)
        run_id = runs_out[0]["run_id"]
        result = cli("resume", run_id, timeout=120)
        assert result.returncode == 0, result.stderr
        data = json.loads(cli("status", run_id, "--json", check=True).stdout)
        (step,) = data["workstreams"][0]["steps"]
        attempts = step["attempt_list"]
        assert [(a["number"], a["outcome"]) for a in attempts[:3]] == [
            (1, "crashed"), (2, "crashed"), (3, "crashed")]
        assert [a["candidate"]["verdict"] for a in attempts[3:]] == ["won", "lost", "lost"]
        assert step["status"] == "completed"
        log = git(cli.cwd, "log", "--format=%(trailers:key=Aidp-Step,valueonly)",
                  f"aidp/{run_id}/w")
        assert [line for line in log.splitlines() if line.strip()] == ["s"]
    finally:
        if proc.poll() is None:
            kill9(proc)
        if run_id is not None:
            kill_leftovers(run_id)


def test_the_budget_counts_every_candidate(repo: Path, db_url: str, tmp_path: Path) -> None:
    """Three candidates of 600 tokens each fail the checks: 1,800 tokens spent against a
    budget of 1,000, so no fix round starts, though each candidate alone stayed under it."""
    script = [{"reply": edit("broken"), "usage": {"input_tokens": 500, "output_tokens": 100}}]
    with FakeLLM(script, api_key=KEY) as llm:
        toml = profile("llm", llm.base_url, api_key_env="AIDP_TEST_BO_KEY")
        summary, store, run_id = drive(repo, db_url, tmp_path, toml, """version: 1
workstreams:
  - id: w
    scope: ["notes/**"]
    steps:
      - id: s
        tool: llm
        prompt: Write notes/a.md; it must say ok.
        best_of: {n: 3}
        checks: ["grep -qx ok notes/a.md"]
        fix: {max: 2}
        budget: {tokens: 1000}
""")
        requests = len(llm.requests)
    try:
        assert not summary.ok
        (step,) = store.steps(run_id)
        assert step.outcome == "budget_exceeded", step.reason
        assert "budget of 1000 tokens is spent (1800)" in (step.reason or "")
        assert requests == 3
    finally:
        store.close()


JUDGED = """version: 1
workstreams:
  - id: w
    steps:
      - id: s
        prompt: Write the numbers up to your candidate number into out.txt.
        run: "seq {candidate} > out.txt"
        best_of: {n: 3, judge: referee}
        checks: ["test -s out.txt"]
"""


def test_a_judge_profile_compares_the_diffs_and_its_choice_wins(
        repo: Path, db_url: str, tmp_path: Path) -> None:
    """Three candidates pass; the ranking would keep the smallest (1), the judge (a model
    profile against the fake provider) is shown every diff and picks 3: 3 is kept, the others
    lose to it citing the judge, and the judge's attempt and usage are recorded."""
    reply = "VERDICT.md\n```\nWINNER: 3\nREASON: it counts furthest\n```\n"
    with FakeLLM([{"reply": reply, "usage": {"input_tokens": 700, "output_tokens": 20}}],
                 api_key=KEY) as llm:
        toml = profile("referee", llm.base_url, api_key_env="AIDP_TEST_BO_KEY")
        summary, store, run_id = drive(repo, db_url, tmp_path, toml, JUDGED)
        asked = [r["body"]["messages"][-1]["content"] for r in llm.requests]
    try:
        assert summary.ok, summary
        rows = {a.number: a for a in store.attempts(run_id)}
        assert [(n, rows[n].kind, rows[n].candidate, rows[n].verdict) for n in sorted(rows)] == [
            (1, "first", 1, "lost"), (2, "first", 2, "lost"), (3, "first", 3, "won"),
            (4, "judge", None, None)]
        assert rows[3].verdict_reason == "chosen by judge referee: it counts furthest"
        assert rows[1].verdict_reason == "lost to candidate 3: judge referee: it counts furthest"
        assert rows[4].verdict_reason == "WINNER: 3; it counts furthest"
        assert (rows[4].profile, rows[4].input_tokens, rows[4].round) == ("referee", 700, 1)
        (step,) = store.steps(run_id)
        assert step.checkpoint_sha == rows[3].candidate_sha
        # the judge was shown the task and every passing candidate's diff
        (prompt,) = asked
        assert "Write the numbers up to your candidate number" in prompt
        for place in (1, 2, 3):
            assert f"### Candidate {place} (shell)" in prompt
        assert "+3" in prompt and "WINNER: <the candidate's number>" in prompt
    finally:
        store.close()


def test_a_judge_without_a_verdict_leaves_the_ranking_and_says_so(
        repo: Path, db_url: str, tmp_path: Path) -> None:
    with FakeLLM([{"reply": "VERDICT.md\n```\nI like them all.\n```\n"}], api_key=KEY) as llm:
        toml = profile("referee", llm.base_url, api_key_env="AIDP_TEST_BO_KEY")
        summary, store, run_id = drive(repo, db_url, tmp_path, toml, JUDGED)
    try:
        assert summary.ok, summary
        rows = {a.number: a for a in store.attempts(run_id)}
        assert rows[1].verdict == "won"
        assert rows[1].verdict_reason.endswith(
            "; judge referee gave no verdict (VERDICT.md names no passing candidate "
            "(WINNER: one of 1, 2, 3)), so the ranking stands")
    finally:
        store.close()
