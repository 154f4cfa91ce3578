"""Uncommitted edits and ``aidp run``: the run starts from HEAD, so they are named (or refused)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Cli, commit_files, git

PLAN = "version: 1\nworkstreams: [{id: a, steps: [{id: s, run: 'test ! -e notes.txt'}]}]\n"


def _dirty(repo: Path) -> None:
    (repo / "README.md").write_text("edited, not committed\n")
    (repo / "notes.txt").write_text("untracked\n")


def test_uncommitted_changes_are_named_and_the_run_starts_from_head(repo: Path,
                                                                    tmp_path: Path) -> None:
    """Rule: uncommitted changes are not part of the run; aidp run warns naming them."""
    plan = tmp_path / "p.yaml"
    plan.write_text(PLAN)
    _dirty(repo)
    result = Cli(repo, in_process=True)("run", str(plan))
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning and "2 uncommitted changes" in warning[0] and "starts from HEAD" in warning[0]
    assert "README.md" in warning[0] and "notes.txt" in warning[0] and ".aidp" not in warning[0]


def test_dirty_refuse_exits_2_before_creating_anything(repo: Path, tmp_path: Path) -> None:
    """Rule: [run] dirty = "refuse" (or --refuse-dirty) refuses a dirty repository, writing
    nothing."""
    plan = tmp_path / "p.yaml"
    plan.write_text(PLAN)
    commit_files(repo, {"aidp.toml": '[run]\ndirty = "refuse"\n'}, "config")
    _dirty(repo)
    cli = Cli(repo, in_process=True)
    result = cli("run", str(plan))
    assert result.returncode == 2
    assert "README.md" in result.stderr and "notes.txt" in result.stderr
    assert git(repo, "branch", "--list", "aidp/*").strip() == ""
    assert not (repo / ".aidp" / "aidp.db").exists() or cli("runs", "--json").stdout.strip() in (
        "", "[]")
    git(repo, "checkout", "--", "README.md")
    (repo / "notes.txt").unlink()
    commit_files(repo, {"aidp.toml": '[run]\ndirty = "ignore"\n'}, "config")
    _dirty(repo)
    flagged = cli("run", "--refuse-dirty", str(plan))
    assert flagged.returncode == 2 and "notes.txt" in flagged.stderr
    ignored = cli("run", str(plan))
    assert ignored.returncode == 0 and "warning:" not in ignored.stderr
