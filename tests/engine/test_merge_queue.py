"""The merge queue through the real ``aidp`` executable: workstreams with ``merge.checks`` land
on their target only after the integration checks passed on the merged tree; a failing batch
is bisected, the culprit rejected with its findings, the rest landed."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.engine.mergequeue import MERGE_STEP, first_failing
from tests.conftest import Cli, git
from tests.engine.test_run import SQLITE_ONLY, events, plan_file, run_json, status, wss

#: Fails when ws1's and ws3's files are both in the tree (each alone is fine).
CLASH = ("if [ -f f1.txt ] && [ -f f3.txt ]; then echo 'f3.txt clashes with f1.txt' >&2; "
         "exit 1; fi")


def queue_plan(count: int, *, batch: int = 4, check: str = CLASH, extra: str = "",
               depends: dict[int, int] | None = None) -> str:
    """``count`` workstreams ws1.. each adding fN.txt, merging into ``integration`` through a
    queue whose check is ``check``."""
    lines = ["version: 1", "workstreams:"]
    for n in range(1, count + 1):
        dep = f"\n    depends_on: [ws{depends[n]}]" if depends and n in depends else ""
        lines.append(f"""  - id: ws{n}
    scope: ["f{n}.txt"]{dep}
    merge:
      into: integration
      batch: {batch}
      checks: [{{name: no-clash, run: {json.dumps(check)}}}]
    steps: [{{id: s, run: "echo {n} > f{n}.txt{extra}"}}]""")
    return "\n".join(lines) + "\n"


def tree_passes(repo: Path, sha: str) -> bool:
    """Whether the tree of ``sha`` passes CLASH (not both f1.txt and f3.txt)."""
    names = set(git(repo, "ls-tree", "--name-only", sha).split())
    return not {"f1.txt", "f3.txt"} <= names


def held(repo: Path, branch: str) -> list[str]:
    """Every commit ``branch`` ever pointed at (its reflog), newest first."""
    return git(repo, "reflog", "show", "--format=%H", f"refs/heads/{branch}").split()


def queue_of(summary: dict[str, Any]) -> dict[str, Any]:
    (queue,) = summary["merge_queues"]
    return dict(queue)


def test_bisection_rejects_the_one_that_breaks_the_checks_with_another(
        cli: Cli, tmp_path: Path) -> None:
    """Rule: 8 queued, ws3 failing only with ws1: the target never holds a failing tree, ws3 is
    rejected with its findings, the other 7 land, in fewer check runs than merges."""
    repo = cli.cwd
    git(repo, "branch", "integration")
    result, summary = run_json(cli, "--parallel", "1", plan_file(tmp_path, queue_plan(8)))
    assert result.returncode == 1, result.stderr  # ws3 failed
    queue = queue_of(summary)
    others = [f"ws{n}" for n in (1, 2, 4, 5, 6, 7, 8)]
    assert queue["into"] == "integration" and queue["queued"] == 8
    assert queue["rejected"] == ["ws3"] and sorted(queue["landed"]) == others
    runs = queue["check_runs"]
    print(f"\nmerge queue: 8 merges, batch 4, ws3 bad with ws1: {runs} check runs")
    assert 1 < runs < 8  # batched and bisected, not one run per merge
    # the target never held a failing tree: neither what it pointed at nor its history
    shas = held(repo, "integration")
    first_parent = git(repo, "rev-list", "--first-parent", "integration").split()
    assert all(tree_passes(repo, sha) for sha in {*shas, *first_parent})
    names = set(git(repo, "ls-tree", "--name-only", "integration").split())
    assert names >= {f"f{n}.txt" for n in (1, 2, 4, 5, 6, 7, 8)} and "f3.txt" not in names
    # one merge commit per landed workstream, with its trailers
    merged = git(repo, "log", "--first-parent", "--merges", "--format=%(trailers:key="
                 "Aidp-Workstream,valueonly)", "integration").split()
    assert sorted(merged) == others
    # ws3: failed with the reason and the findings naming the check; its work is kept
    data = wss(status(cli, summary["run_id"]))
    assert data["ws3"]["status"] == "failed"
    assert data["ws3"]["reason"].startswith(
        "integration checks failed when merged onto integration: check 'no-clash' failed")
    assert all(data[w]["status"] == "completed" for w in others)
    found = json.loads(cli("findings", "--json", summary["run_id"], check=True).stdout)
    mine = [f for f in found["findings"] if f["workstream"] == "ws3"]
    assert mine and all(f["step"] == MERGE_STEP for f in mine)
    assert any("no-clash" in f["message"] and "clashes with f1.txt" in f["message"]
               for f in mine)
    # the journal: one merge.checked per run with the running count, one rejection
    journal = events(cli, summary["run_id"])
    checked = [json.loads(e.data) for e in journal if e.kind == "merge.checked"]
    assert [c["check_runs"] for c in checked] == list(range(1, runs + 1))
    assert any(not c["passed"] and "ws3" in c["members"] for c in checked)
    assert [e.ws_id for e in journal if e.kind == "merge.rejected"] == ["ws3"]
    assert len([e for e in journal if e.kind == "merge.queued"]) == 8


@SQLITE_ONLY
def test_a_queue_without_failures_runs_the_checks_once_per_batch(
        cli: Cli, tmp_path: Path) -> None:
    """Rule: a batch that passes lands whole after one check run; the summary says so."""
    repo = cli.cwd
    result = cli("run", "--parallel", "4", plan_file(tmp_path, queue_plan(4, check="true")))
    assert result.returncode == 0, result.stderr
    assert "merge queue integration: 4 queued, 4 landed, 1 check run" in result.stdout
    merged = git(repo, "log", "--first-parent", "--merges", "--format=%(trailers:key="
                 "Aidp-Workstream,valueonly)", "integration").split()
    assert sorted(merged) == ["ws1", "ws2", "ws3", "ws4"]
    assert not (repo / ".aidp" / "merge-queue").exists() or not any(
        (repo / ".aidp" / "merge-queue").iterdir())  # the scratch worktree is gone


def test_steps_go_on_starting_while_a_batch_is_checked(cli: Cli, tmp_path: Path) -> None:
    """Rule: integration checks run beside the run, not in its way: while ``a``'s slow check
    runs, ``c`` (ready only once ``b`` ends, and started by the orchestrator) starts and ends;
    the target moves only after the check passed."""
    plan = """version: 1
workstreams:
  - id: a
    scope: ["a.txt"]
    merge: {into: integration, batch: 1, checks: ["sleep 3"]}
    steps: [{id: s, run: "echo a > a.txt"}]
  - id: b
    scope: ["b.txt"]
    steps: [{id: s, run: "sleep 0.5; echo b > b.txt"}]
  - id: c
    scope: ["c.txt"]
    depends_on: [b]
    steps: [{id: s, run: "echo c > c.txt"}]
"""
    result, summary = run_json(cli, "--parallel", "2", plan_file(tmp_path, plan))
    assert result.returncode == 0, result.stderr
    journal = events(cli, summary["run_id"])
    checked = [e for e in journal if e.kind == "merge.checked"]
    assert len(checked) == 1 and json.loads(checked[0].data)["passed"]
    c_done = next(e for e in journal if e.kind == "step.completed" and e.ws_id == "c")
    queued = next(e for e in journal if e.kind == "merge.queued")
    landed = next(e for e in journal if e.kind == "workstream.completed" and e.ws_id == "a")
    assert queued.ts < c_done.ts < checked[0].ts, (queued.ts, c_done.ts, checked[0].ts)
    assert checked[0].ts <= landed.ts
    assert git(cli.cwd, "show", "integration:a.txt").strip() == "a"


@SQLITE_ONLY
def test_cancel_during_an_integration_check_stops_it_and_moves_nothing(
        cli: Cli, tmp_path: Path) -> None:
    """Rule: ``aidp cancel`` while a batch is checked kills the check at once; the run ends
    cancelled and the target never moved."""
    repo = cli.cwd
    git(repo, "branch", "integration")
    before = git(repo, "rev-parse", "integration")
    plan = """version: 1
workstreams:
  - id: a
    scope: ["a.txt"]
    merge: {into: integration, batch: 1, checks: ["sleep 60"]}
    steps: [{id: s, run: "echo a > a.txt"}]
"""
    proc = cli.popen("run", "--json", plan_file(tmp_path, plan))
    try:
        deadline = time.monotonic() + 60
        run_id = None
        while time.monotonic() < deadline:
            runs = json.loads(cli("runs", "--json", check=True).stdout)
            if runs and any(e.kind == "merge.checking" for e in events(cli, runs[0]["run_id"])):
                run_id = runs[0]["run_id"]
                break
            time.sleep(0.1)
        assert run_id is not None, "the check never started"
        cancelled = time.monotonic()
        cli("cancel", run_id, check=True)
        proc.communicate(timeout=30)
        took = time.monotonic() - cancelled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert took < 15, took
    assert status(cli, run_id)["status"] == "cancelled"
    assert git(repo, "rev-parse", "integration") == before


@SQLITE_ONLY
def test_a_squash_queue_lands_one_commit_per_workstream(cli: Cli, tmp_path: Path) -> None:
    """Rule: with strategy squash the queue lands one single-parent commit per workstream,
    each workstream's merged_sha being its own commit."""
    repo = cli.cwd
    text = queue_plan(3, check="true").replace("      batch: 4", "      strategy: squash\n"
                                               "      batch: 4")
    result, summary = run_json(cli, "--parallel", "3", plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    commits = git(repo, "rev-list", "--first-parent", "main..integration").split()
    assert len(commits) == 3 and not git(repo, "rev-list", "--merges", "main..integration")
    merged = {w["id"]: w["merged_sha"] for w in summary["workstreams"]}
    assert sorted(merged.values()) == sorted(commits)
    assert queue_of(summary)["check_runs"] == 1


@SQLITE_ONLY
def test_the_text_summary_names_the_rejected_and_counts_check_runs(
        cli: Cli, tmp_path: Path) -> None:
    """Rule: ``aidp run`` prints the queue's line: queued, landed, rejected, check runs."""
    result = cli("run", "--parallel", "1", plan_file(tmp_path, queue_plan(4)))
    assert result.returncode == 1
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("merge queue "))
    assert line.startswith("merge queue integration: 4 queued, 3 landed, 1 rejected (ws3), ")
    assert "integration checks failed when merged onto integration" in result.stdout
    progress = result.stdout + result.stderr
    assert "members=ws1,ws2,ws3,ws4 verdict=failed" in progress  # the progress lines
    assert "merge.rejected" in progress


@SQLITE_ONLY
def test_a_conflict_takes_the_entry_out_and_the_rest_lands(cli: Cli, tmp_path: Path) -> None:
    """Rule: a queued merge that conflicts with an earlier one of its batch leaves the queue
    as an unchecked one would (failed: merging failed); the others are checked and land."""
    repo = cli.cwd
    text = """
version: 1
workstreams:
  - id: a
    scope: ["shared.txt"]
    scope_overlap: allow
    merge: {into: integration, checks: ["test -f shared.txt"]}
    steps: [{id: s, run: "echo a > shared.txt"}]
  - id: b
    scope: ["shared.txt"]
    scope_overlap: allow
    merge: {into: integration, checks: ["test -f shared.txt"]}
    steps: [{id: s, run: "echo b > shared.txt"}]
  - id: c
    scope: ["c.txt"]
    merge: {into: integration, checks: ["test -f shared.txt"]}
    steps: [{id: s, run: "echo c > c.txt"}]
"""
    result, summary = run_json(cli, "--parallel", "1", plan_file(tmp_path, text))
    assert result.returncode == 1
    queue = queue_of(summary)
    data = wss(status(cli, summary["run_id"]))
    assert queue["not_merged"] == ["b"] and data["b"]["status"] == "failed"
    assert data["b"]["reason"].startswith(
        "all steps completed; merging into integration failed: merging aidp/")
    assert "conflicts in: shared.txt" in data["b"]["reason"]
    assert queue["rejected"] == [] and queue["landed"] == ["a", "c"]
    assert queue["check_runs"] == 1  # a and c, checked together
    assert git(repo, "show", "integration:shared.txt") == "a\n"


@SQLITE_ONLY
def test_dependants_of_a_rejected_workstream_are_skipped(cli: Cli, tmp_path: Path) -> None:
    """Rule: a rejected workstream's dependants are skipped (their branches hold its work)."""
    repo = cli.cwd
    result, summary = run_json(cli, "--parallel", "1",
                               plan_file(tmp_path, queue_plan(4, depends={4: 3})))
    assert result.returncode == 1
    data = wss(status(cli, summary["run_id"]))
    assert data["ws3"]["status"] == "failed" and data["ws4"]["status"] == "skipped"
    assert data["ws4"]["reason"] == "dependency ws3 failed"
    assert queue_of(summary)["landed"] == ["ws1", "ws2"]
    assert all(tree_passes(repo, sha) for sha in held(repo, "integration"))


@SQLITE_ONLY
@pytest.mark.parametrize("kill_at", [
    pytest.param(1, id="before-anything-landed"),
    pytest.param(4, id="after-a-landing-and-a-rejection"),
])
def test_a_crash_mid_queue_resumes_without_landing_a_failing_tree(
        cli: Cli, tmp_path: Path, kill_at: int) -> None:
    """Rule: aidp killed while the integration checks run: resume kills the check it left
    running, re-queues the unmerged finished workstreams, keeps what landed, lands each once
    and never the failing tree."""
    repo = cli.cwd
    git(repo, "branch", "integration")
    counter = tmp_path / "check-runs"
    orphan = tmp_path / "orphan-finished"
    # check run number ``kill_at`` kills its orchestrator (the check's parent) with SIGKILL,
    # then lives on, orphaned, unless resume kills it
    check = (f"n=$(($(cat {counter} 2>/dev/null || echo 0) + 1)); echo $n > {counter}; "
             f"if [ $n -eq {kill_at} ]; then kill -9 $PPID; sleep 4; touch {orphan}; fi; "
             f"{CLASH}")
    result = cli("run", "--parallel", "1", plan_file(tmp_path, queue_plan(8, check=check)))
    killed = time.monotonic()
    assert result.returncode == -9, result.stderr
    landed_before = held(repo, "integration")
    branch = git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/aidp/").split()[0]
    run_id = branch.split("/")[3]
    done = cli("resume", "--json", run_id)
    assert done.returncode == 1, done.stderr
    queue = queue_of(json.loads(done.stdout))
    assert queue["rejected"] == ["ws3"]
    assert sorted(queue["landed"]) == [f"ws{n}" for n in (1, 2, 4, 5, 6, 7, 8)]
    shas = held(repo, "integration")
    assert shas[-len(landed_before):] == landed_before  # nothing that landed was undone
    assert all(tree_passes(repo, sha) for sha in shas)
    merged = git(repo, "log", "--first-parent", "--merges", "--format=%(trailers:key="
                 "Aidp-Workstream,valueonly)", "integration").split()
    assert sorted(merged) == [f"ws{n}" for n in (1, 2, 4, 5, 6, 7, 8)]  # each landed once
    time.sleep(max(0.0, killed + 5 - time.monotonic()))
    assert not orphan.exists()  # resume killed the check the dead orchestrator left running


def test_without_checks_a_merge_lands_at_once(cli_inproc: Cli, tmp_path: Path) -> None:
    """Rule: without merge.checks nothing is queued and no merge queue is reported."""
    text = queue_plan(2).replace("      checks: [{name: no-clash, run: " + json.dumps(CLASH)
                                 + "}]\n", "")
    assert "checks" not in text
    result, summary = run_json(cli_inproc, plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    assert "merge_queues" not in summary
    assert all(w["merged_into"] == "integration" for w in summary["workstreams"])


@given(st.integers(1, 64), st.data())
def test_first_failing_finds_the_boundary_in_log2_calls(count: int, data: st.DataObject
                                                        ) -> None:
    """Rule: bisection finds the first failing prefix with ceil(log2 count) checks."""
    bad = data.draw(st.integers(1, count))
    calls: list[int] = []

    def passes(prefix: int) -> bool:
        calls.append(prefix)
        return prefix < bad

    assert first_failing(count, passes) == bad
    assert len(calls) <= math.ceil(math.log2(count)) if count > 1 else not calls
    assert all(0 < c < count for c in calls)


@pytest.mark.parametrize(("extra", "code"), [
    pytest.param("    merge: {into: i, strategy: none, checks: ['true']}\n", "merge-checks",
                 id="checks-need-a-landing-strategy"),
    pytest.param("    merge: {into: i, checks: ['echo {step}']}\n", "placeholder",
                 id="only-merge-placeholders"),
])
def test_merge_checks_validation(tmp_path: Path, extra: str, code: str) -> None:
    """Rule: merge.checks need a landing strategy and name only {worktree}, {repo}, {run_id}."""
    from tests.model.test_validate import codes, load_text, plan, ws

    assert code in codes(load_text(tmp_path, plan(ws("a", extra))))


def test_one_queue_per_target_declares_the_same_checks(tmp_path: Path) -> None:
    """Rule: workstreams merging into one branch agree on merge.checks and batch."""
    from tests.model.test_validate import codes, load_text, plan, ws

    same = "    scope: [a]\n    merge: {into: i, checks: ['true'], batch: 2}\n"
    assert codes(load_text(tmp_path, plan(ws("a", same), ws("b", same.replace("[a]", "[b]")))
                           )) == []
    for other in ("{into: i}", "{into: i, checks: ['false'], batch: 2}",
                  "{into: i, checks: ['true'], batch: 3}"):
        found = load_text(tmp_path, plan(ws("a", same),
                                         ws("b", f"    scope: [b]\n    merge: {other}\n")))
        assert codes(found) == ["merge-checks"] and found[0].id == "b"
    elsewhere = "    scope: [b]\n    merge: {into: j}\n"
    assert codes(load_text(tmp_path, plan(ws("a", same), ws("b", elsewhere)))) == []
