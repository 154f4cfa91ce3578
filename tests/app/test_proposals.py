"""The application layer's proposal commands on a real openspec tree and SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import aidp.app
from aidp.app import AppContext
from aidp.exceptions import InputError, NotFoundError, StateError
from tests.conftest import init_repo
from tests.specs.corpus import ADD_OK, LOGIN, proposal, spec


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:
    """A repository with an openspec tree holding one valid and one broken change."""
    monkeypatch.delenv("AIDP_DATABASE_URL", raising=False)
    repo = init_repo(tmp_path / "repo", {
        "openspec/config.yaml": "schema: spec-driven\n",
        "openspec/specs/auth/spec.md": spec("auth", LOGIN),
        "openspec/changes/add-2fa/proposal.md": proposal("Add 2FA"),
        "openspec/changes/add-2fa/specs/auth/spec.md": ADD_OK,
        "openspec/changes/broken/proposal.md": proposal("Broken"),
        "openspec/changes/broken/specs/auth/spec.md": "## ADDED Requirements\n",
    })
    context = AppContext.open(repo)
    yield context
    context.close()


def test_unrecorded_changes_are_drafts(app: AppContext) -> None:
    """list_proposals shows every active change; one never recorded is a draft."""
    views = {v.change: v for v in aidp.app.list_proposals(app)}
    assert {name: (v.state, v.recorded, v.present) for name, v in views.items()} == {
        "add-2fa": ("draft", False, True), "broken": ("draft", False, True)}
    assert views["add-2fa"].title == "Add 2FA"


def test_moves_are_recorded_with_who_and_why(app: AppContext) -> None:
    """submit then approve moves a valid change to approved; get_proposal shows each move with
    its actor and comment."""
    aidp.app.act_on_proposal(app, "add-2fa", "submit", by="ana")
    outcome = aidp.app.act_on_proposal(app, "add-2fa", "approve", by="bo", comment="ok")
    assert (outcome.state, outcome.by) == ("approved", "bo")
    detail = aidp.app.get_proposal(app, "add-2fa")
    assert detail.state == "approved"
    assert [(h.action, h.to_state, h.by, h.comment) for h in detail.history][-1] == (
        "approve", "approved", "bo", "ok")


def test_submit_refuses_a_change_that_does_not_validate(app: AppContext) -> None:
    """submit of an invalid change is an InputError; each error line goes to on_problem first
    and nothing is recorded."""
    lines: list[str] = []
    with pytest.raises(InputError, match="does not validate"):
        aidp.app.act_on_proposal(app, "broken", "submit", by="ana", on_problem=lines.append)
    assert lines
    assert aidp.app.get_proposal(app, "broken").recorded is False


def test_illegal_moves_and_unknown_changes_are_refused(app: AppContext) -> None:
    """A move the state forbids (apply under review) is a StateError that changes nothing;
    approving a change never recorded, or showing an unknown one, is NotFoundError."""
    with pytest.raises(NotFoundError):
        aidp.app.act_on_proposal(app, "add-2fa", "approve", by="ana")
    aidp.app.act_on_proposal(app, "add-2fa", "submit", by="ana")
    with pytest.raises(StateError):
        aidp.app.act_on_proposal(app, "add-2fa", "apply", by="ana")
    assert aidp.app.get_proposal(app, "add-2fa").state == "review"
    with pytest.raises(NotFoundError):
        aidp.app.get_proposal(app, "nothing-here")
