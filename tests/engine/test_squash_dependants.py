"""``strategy: squash`` holds in the target's history even when a dependant merges there too."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Cli, git
from tests.engine.test_run import plan_file, run_json, status, wss

SQUASHED_THEN_MERGED = """
version: 1
workstreams:
  - id: a
    scope: ["a/**"]
    merge: {into: integration, strategy: squash}
    steps:
      - {id: s1, run: "mkdir -p a && echo 1 > a/f"}
      - {id: s2, depends_on: [s1], run: "echo 2 >> a/f"}
      - {id: s3, depends_on: [s2], run: "echo 3 >> a/f"}
  - id: b
    depends_on: [a]
    scope: ["b/**"]
    merge: {into: integration}
    steps:
      - {id: s1, run: "mkdir -p b && cat a/f > b/f"}
      - {id: s2, depends_on: [s1], run: "echo b >> b/f"}
"""


def subjects(repo: Path, ref: str) -> list[str]:
    return git(repo, "log", "--format=%s", ref).splitlines()


def test_a_dependant_merging_into_the_same_target_keeps_the_squash(
        cli: Cli, tmp_path: Path) -> None:
    """The target holds one commit of the squashed workstream and none of its step commits,
    while the dependant's own merge (strategy merge) keeps its steps; both works are there."""
    repo = cli.cwd
    result, summary = run_json(cli, plan_file(tmp_path, SQUASHED_THEN_MERGED))
    assert result.returncode == 0, result.stderr
    log = subjects(repo, "integration")
    squashes = [s for s in log if s.startswith("aidp: squash a ")]
    assert len(squashes) == 1  # b's merge commit sits on it (its first parent)
    assert git(repo, "log", "-1", "--format=%s", "integration^1").strip() == squashes[0]
    assert not [s for s in log if s.startswith("aidp: a/")], log
    assert {"aidp: b/s1", "aidp: b/s2"} <= set(log)
    assert git(repo, "show", "integration:a/f") == "1\n2\n3\n"
    assert git(repo, "show", "integration:b/f") == "1\n2\n3\nb\n"
    # the dependant started from a's squash result, not from a's branch
    data = wss(status(cli, summary["run_id"]))
    assert data["b"]["base"] == data["a"]["merged"]
    assert git(repo, "rev-list", "--count", f"{data['a']['merged']}..{data['b']['merged']}") \
        == "3\n"  # b's two steps and its merge, nothing else


def test_several_squashed_dependencies(cli: Cli, tmp_path: Path) -> None:
    """Two dependencies squashed into the dependant's target: it starts from the later squash
    result (which holds the earlier one), with no merge commit of its own for them."""
    repo = cli.cwd
    text = """
version: 1
workstreams:
  - id: a
    scope: ["a/**"]
    merge: {into: integration, strategy: squash}
    steps:
      - {id: s1, run: "mkdir -p a && echo a1 > a/f"}
      - {id: s2, depends_on: [s1], run: "echo a2 >> a/f"}
  - id: x
    depends_on: [a]
    scope: ["x/**"]
    merge: {into: integration, strategy: squash}
    steps:
      - {id: s1, run: "mkdir -p x && echo x1 > x/f"}
      - {id: s2, depends_on: [s1], run: "echo x2 >> x/f"}
  - id: c
    depends_on: [a, x]
    scope: ["c/**"]
    merge: {into: integration}
    steps:
      - {id: s1, run: "mkdir -p c && cat a/f x/f > c/f"}
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    log = subjects(repo, "integration")
    assert not [s for s in log if s.startswith(("aidp: a/", "aidp: x/", "aidp: merge dep"))], log
    assert len([s for s in log if s.startswith(("aidp: squash a ", "aidp: squash x "))]) == 2
    assert git(repo, "show", "integration:c/f") == "a1\na2\nx1\nx2\n"
    data = wss(status(cli, summary["run_id"]))
    assert data["c"]["base"] == data["x"]["merged"]


def test_resume_starts_the_dependant_from_the_stored_squash_result(
        cli: Cli, tmp_path: Path) -> None:
    """A dependency squashed by an earlier orchestrator: the resumed run takes its squash
    result from the database."""
    repo = cli.cwd
    flag = tmp_path / "flag"
    text = SQUASHED_THEN_MERGED + f"""
  - id: gate
    scope: ["gate/**"]
    steps: [{{id: s, run: "test -f {flag}"}}]
"""
    text = text.replace("    depends_on: [a]\n", "    depends_on: [a, gate]\n")
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 1
    run_id = summary["run_id"]
    assert wss(status(cli, run_id))["b"]["status"] == "skipped"  # never started
    flag.write_text("")
    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    log = subjects(repo, "integration")
    assert not [s for s in log if s.startswith("aidp: a/")], log
    assert len([s for s in log if s.startswith("aidp: squash a ")]) == 1
    assert git(repo, "show", "integration:b/f") == "1\n2\n3\nb\n"


def test_a_dependant_merging_elsewhere_starts_from_the_branch(
        cli: Cli, tmp_path: Path) -> None:
    """Squashed into another branch: the dependant starts from the dependency's branch, so its
    own target gets the dependency's step commits (the README says so)."""
    repo = cli.cwd
    text = SQUASHED_THEN_MERGED.replace("    merge: {into: integration}\n",
                                        "    merge: {into: other}\n")
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    data = wss(status(cli, summary["run_id"]))
    assert data["b"]["base"] == data["a"]["head"]
    assert {"aidp: a/s1", "aidp: a/s2", "aidp: a/s3"} <= set(subjects(repo, "other"))
    assert not [s for s in subjects(repo, "integration") if s.startswith("aidp: a/")]
