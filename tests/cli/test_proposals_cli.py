"""``aidp proposals`` through the real executable, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli, git, init_repo
from tests.specs.corpus import ADD_OK, LOGIN, proposal, spec


@pytest.fixture
def specs_cli(tmp_path: Path, db_url: str) -> Cli:
    """A git repository holding an openspec tree with one valid and one broken change."""
    repo = init_repo(tmp_path / "repo", {
        "openspec/config.yaml": "schema: spec-driven\n",
        "openspec/specs/auth/spec.md": spec("auth", LOGIN),
        "openspec/changes/add-2fa/proposal.md": proposal("Add 2FA"),
        "openspec/changes/add-2fa/specs/auth/spec.md": ADD_OK,
        "openspec/changes/broken/proposal.md": proposal("Broken"),
        "openspec/changes/broken/specs/auth/spec.md":
            "## ADDED Requirements\n### Requirement: X\nThe system SHALL x.\n",
    })
    return Cli(repo, db_url)


def test_full_lifecycle_is_recorded(specs_cli: Cli) -> None:
    """submit, approve, start, apply, archive: each move recorded with who and comment; archive
    merges the change into the specs."""
    cli = specs_cli
    cli("proposals", "submit", "add-2fa", "--by", "alice", "-m", "ready for review", check=True)
    cli("proposals", "approve", "add-2fa", "--by", "bob", check=True)
    for action in ("start", "apply", "archive"):
        cli("proposals", action, "add-2fa", "--by", "ci", check=True)
    shown = json.loads(cli("proposals", "show", "add-2fa", "--json", check=True).stdout)
    assert shown["state"] == "archived"
    assert [(h["action"], h["from"], h["to"], h["by"], h["comment"]) for h in shown["history"]] \
        == [("create", None, "draft", "alice", None),
            ("submit", "draft", "review", "alice", "ready for review"),
            ("approve", "review", "approved", "bob", None),
            ("start", "approved", "in_progress", "ci", None),
            ("apply", "in_progress", "applied", "ci", None),
            ("archive", "applied", "archived", "ci", None)]
    merged = (cli.cwd / "openspec/specs/auth/spec.md").read_text()
    assert "### Requirement: Two factor" in merged
    assert not (cli.cwd / "openspec/changes/add-2fa").exists()


def test_request_changes_goes_back_to_draft(specs_cli: Cli) -> None:
    """request-changes then reopen: review -> changes_requested -> draft, then resubmit."""
    cli = specs_cli
    cli("proposals", "submit", "add-2fa", "--by", "alice", check=True)
    cli("proposals", "request-changes", "add-2fa", "--by", "bob", "-m", "add a scenario",
        check=True)
    cli("proposals", "reopen", "add-2fa", "--by", "alice", check=True)
    cli("proposals", "submit", "add-2fa", "--by", "alice", check=True)
    rows = json.loads(cli("proposals", "list", "--json", check=True).stdout)
    assert [(r["change"], r["state"], r["recorded"]) for r in rows] == [
        ("add-2fa", "review", True), ("broken", "draft", False)]


def test_illegal_move_is_exit_4_and_writes_nothing(specs_cli: Cli) -> None:
    """Approving a draft: exit 4, one error line with what is possible; history unchanged."""
    cli = specs_cli
    cli("proposals", "submit", "add-2fa", "--by", "alice", check=True)
    cli("proposals", "approve", "add-2fa", "--by", "bob", check=True)
    result = cli("proposals", "approve", "add-2fa")
    assert result.returncode == 4
    assert result.stderr.splitlines() == ["error: cannot approve a proposal in state approved",
                                          "hint: possible: reject, start"]
    history = json.loads(cli("proposals", "show", "add-2fa", "--json").stdout)["history"]
    assert len(history) == 3


def test_invalid_change_cannot_be_submitted(specs_cli: Cli) -> None:
    """submit validates first: an invalid change is refused (exit 2) naming file and line."""
    result = specs_cli("proposals", "submit", "broken")
    assert result.returncode == 2
    assert result.stderr.startswith("openspec/changes/broken/specs/auth/spec.md:2: [broken] "
                                    "error: ADDED \"X\" must include at least one scenario")
    assert "Traceback" not in result.stderr


def test_approve_warns_about_conflicting_changes(specs_cli: Cli) -> None:
    """Approving a change that claims a requirement another active change claims warns."""
    cli = specs_cli
    other = cli.cwd / "openspec/changes/also-2fa"
    (other / "specs/auth").mkdir(parents=True)
    (other / "proposal.md").write_text(proposal("Also"))
    (other / "specs/auth/spec.md").write_text(ADD_OK)
    git(cli.cwd, "add", "-A")
    cli("proposals", "submit", "add-2fa", check=True)
    result = cli("proposals", "approve", "add-2fa", "--json", check=True)
    assert json.loads(result.stdout)["warnings"] == [
        "conflict: auth/Two factor: claimed by 2 changes: add-2fa (ADDED at openspec/changes/"
        "add-2fa/specs/auth/spec.md:2), also-2fa (ADDED at openspec/changes/also-2fa/specs/auth/"
        "spec.md:2)"]


def test_unknown_change_is_exit_3(specs_cli: Cli) -> None:
    """An unknown change id: exit 3, one line."""
    result = specs_cli("proposals", "submit", "nope")
    assert result.returncode == 3 and result.stderr.startswith("error: no change 'nope'")
