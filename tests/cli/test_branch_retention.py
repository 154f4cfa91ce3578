"""``aidp worktrees prune`` keeps ``aidp/*`` branches from piling up: merged branches of
finished runs older than ``[run] keep_branches`` go; unmerged work only with ``--force``;
resumable runs are never touched."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli, git

DONE = """
version: 1
workstreams:
  - id: m
    scope: ["m/**"]
    merge: {into: integration}
    steps: [{id: s, run: "mkdir -p m && echo m > m/f"}]
  - id: sq
    scope: ["sq/**"]
    merge: {into: integration, strategy: squash}
    steps:
      - {id: s1, run: "mkdir -p sq && echo 1 > sq/f"}
      - {id: s2, depends_on: [s1], run: "echo 2 >> sq/f"}
  - id: loose
    scope: ["loose/**"]
    steps: [{id: s, run: "mkdir -p loose && date +%N > loose/f"}]
"""

FAILS = """
version: 1
workstreams:
  - id: f
    scope: ["f/**"]
    merge: {into: integration}
    steps:
      - {id: s1, run: "mkdir -p f && echo 1 > f/f"}
      - {id: s2, depends_on: [s1], run: "echo 2 >> f/f", checks: ["false"]}
"""


def _run(cli: Cli, tmp_path: Path, text: str, expect: int) -> str:
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    result = cli("run", "--json", str(plan))
    assert result.returncode == expect, result.stderr
    return str(json.loads(result.stdout)["run_id"])


def _branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)",
                   "refs/heads/aidp/").split())


def test_prune_deletes_merged_branches_of_old_finished_runs(cli_inproc: Cli,
                                                           tmp_path: Path) -> None:
    cli, repo = cli_inproc, cli_inproc.cwd
    first = _run(cli, tmp_path, DONE, 0)
    failed = _run(cli, tmp_path, FAILS, 1)
    last = _run(cli, tmp_path, DONE, 0)
    assert len(_branches(repo)) == 7
    integration = git(repo, "rev-parse", "integration")

    out = cli("worktrees", "prune", check=True).stdout  # keeps the newest run's branches
    assert f"deleted branch aidp/{first}/m" in out and f"deleted branch aidp/{first}/sq" in out
    assert (f"kept branch aidp/{first}/loose: its work is not merged (use --force to delete)"
            in out)
    assert _branches(repo) == {f"aidp/{first}/loose", f"aidp/{failed}/f",
                               f"aidp/{last}/m", f"aidp/{last}/sq", f"aidp/{last}/loose"}
    assert git(repo, "rev-parse", "integration") == integration  # targets never move

    cli("worktrees", "prune", "--keep-branches", "0", check=True)
    assert _branches(repo) == {f"aidp/{first}/loose", f"aidp/{failed}/f", f"aidp/{last}/loose"}

    out = cli("worktrees", "prune", "--keep-branches", "0", "--force", check=True).stdout
    assert f"deleted branch aidp/{first}/loose" in out
    assert _branches(repo) == {f"aidp/{failed}/f"}  # a failed run can be resumed: untouched

    cli("cancel", failed, check=True)  # given up: its branches may go now (unmerged: --force)
    assert "kept branch" in cli("worktrees", "prune", "--keep-branches", "0", check=True).stdout
    cli("worktrees", "prune", "--keep-branches", "0", "--force", check=True)
    assert _branches(repo) == set()
    assert git(repo, "show", "integration:sq/f") == "1\n2\n"


def test_keep_branches_comes_from_aidp_toml(cli_inproc: Cli, tmp_path: Path) -> None:
    cli, repo = cli_inproc, cli_inproc.cwd
    (repo / ".git" / "info" / "exclude").write_text("aidp.toml\n")
    first = _run(cli, tmp_path, DONE, 0)
    _run(cli, tmp_path, DONE, 0)
    (repo / "aidp.toml").write_text("[run]\nkeep_branches = 2\n")
    assert "deleted branch" not in cli("worktrees", "prune", check=True).stdout
    (repo / "aidp.toml").write_text("[run]\nkeep_branches = 1\n")
    out = cli("worktrees", "prune", check=True).stdout
    assert f"deleted branch aidp/{first}/m" in out


def test_prune_deletes_best_of_candidate_branches_with_their_workstream(
        cli_inproc: Cli, tmp_path: Path) -> None:
    cli, repo = cli_inproc, cli_inproc.cwd
    run_id = _run(cli, tmp_path, """
version: 1
workstreams:
  - id: b
    merge: {into: integration}
    steps: [{id: s, run: "seq {candidate} > b.txt", best_of: {n: 2}}]
""", 0)
    assert _branches(repo) == {f"aidp/{run_id}/b", f"aidp/{run_id}/b+s.1",
                               f"aidp/{run_id}/b+s.2"}
    out = cli("worktrees", "prune", "--keep-branches", "0", check=True).stdout
    assert f"deleted branch aidp/{run_id}/b+s.2" in out
    assert _branches(repo) == set()
    assert git(repo, "show", "integration:b.txt") == "1\n"
