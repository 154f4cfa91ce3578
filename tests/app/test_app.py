"""The application layer on real SQLite stores and real git repositories: the views of a run,
and the commands that change it, as the CLI (and later the API) sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import aidp.app
from aidp.app import AppContext
from aidp.exceptions import NotFoundError, StateError
from aidp.model.loader import load_plan
from tests.conftest import git, init_repo

FAILING = ("printf 'Traceback (most recent call last):\\n  File \"calc.py\", line 3, in <module>"
           "\\nValueError: boom\\n' >&2; exit 1")


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:
    """A fresh repository opened for the application layer, its database the default SQLite
    file (created by the first run)."""
    monkeypatch.delenv("AIDP_DATABASE_URL", raising=False)
    context = AppContext.open(init_repo(tmp_path / "repo"))
    yield context
    context.close()


def _plan(tmp_path: Path, workstreams: dict[str, list[dict[str, object]]]) -> Path:
    """A workstream file outside the repository; each workstream scoped to its directory."""
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"version": 1, "workstreams": [
        {"id": ws_id, "scope": [f"{ws_id}/**"], "steps": steps}
        for ws_id, steps in workstreams.items()]}))
    return path


def _write(ws_id: str, step_id: str) -> dict[str, object]:
    return {"id": step_id, "run": f"mkdir -p {ws_id} && echo {step_id} >> {ws_id}/log.txt"}


def _run(app: AppContext, tmp_path: Path, workstreams: dict[str, list[dict[str, object]]],
         ) -> str:
    """Create and drive a run of ``workstreams`` to its end; its id."""
    run_id = aidp.app.create_run(app, load_plan([_plan(tmp_path, workstreams)]), parallel=2)
    aidp.app.drive_run(app, run_id)
    return run_id


def test_run_view_shows_statuses_attempts_and_checkpoints(app: AppContext, tmp_path: Path
                                                          ) -> None:
    """After a run, get_run shows each workstream's and step's status, attempts and
    checkpoint; list_runs counts the completed workstreams."""
    run_id = _run(app, tmp_path, {
        "good": [_write("good", "one"), _write("good", "two")],
        "bad": [{"id": "crash", "run": FAILING, "retry": {"max_attempts": 1}}],
    })
    view = aidp.app.get_run(app, run_id)
    assert (view.run_id, view.status, view.live) == (run_id, "failed", False)
    statuses = {ws.id: (ws.status, [(s.id, s.status, s.attempts) for s in ws.steps])
                for ws in view.workstreams}
    assert statuses == {"good": ("completed", [("one", "completed", 1), ("two", "completed", 1)]),
                        "bad": ("failed", [("crash", "failed", 1)])}
    two = view.step("good", "two")
    assert two is not None and two.checkpoint == view.workstreams[0].head
    assert two.checkpoint == git(app.repo, "rev-parse", view.workstreams[0].branch).strip()
    crash = view.step("bad", "crash")
    assert crash is not None and crash.checkpoint is None
    assert [a.outcome[:6] for a in crash.attempt_list if a.outcome] == ["failed"]
    listed = aidp.app.list_runs(app)
    assert [(r.run_id, r.status, r.workstreams, r.completed) for r in listed] == [
        (run_id, "failed", 2, 1)]


def test_run_view_to_dict_is_the_status_json(app: AppContext, tmp_path: Path) -> None:
    """RunView.to_dict() has exactly the keys `aidp status --json` prints, at every level."""
    run_id = _run(app, tmp_path, {"good": [_write("good", "one")]})
    data = aidp.app.get_run(app, run_id).to_dict()
    assert list(data) == ["run_id", "status", "recorded_status", "live", "resumable", "holder",
                          "repo", "created_at", "started_at", "finished_at", "cancel_requested",
                          "workstreams"]
    ws = data["workstreams"][0]
    assert list(ws) == ["id", "status", "branch", "base", "head", "merged", "worktree", "reason",
                        "steps", "compensations"]
    step = ws["steps"][0]
    assert list(step) == ["id", "status", "attempts", "attempts_total", "reason", "checkpoint",
                          "next_attempt_at", "failure_class", "outcome", "profile",
                          "attempt_list", "compensations", "gate"]
    attempt = step["attempt_list"][0]
    assert attempt["number"] == 1 and attempt["outcome"] == "succeeded"
    assert set(attempt["usage"]) == {"input_tokens", "output_tokens", "cost_usd", "requests"}
    assert json.loads(json.dumps(data)) == data  # plain JSON, no dataclasses or paths left


def test_findings_agree_between_views_and_diagnostics(app: AppContext, tmp_path: Path) -> None:
    """A failed attempt's findings are the same through list_findings and the run view, and
    its diagnostics bundle is readable through get_diagnostics."""
    run_id = _run(app, tmp_path, {
        "bad": [{"id": "crash", "run": FAILING, "retry": {"max_attempts": 1}}]})
    step = aidp.app.resolve_step(app, run_id[:8].lower(), "crash")
    assert (step.run_id, step.ws_id, step.step_id) == (run_id, "bad", "crash")
    found = aidp.app.list_findings(app, run_id, ws_id="bad", step_id="crash")
    assert found, "a Python traceback on stderr gives at least one finding"
    assert all(f.attempt == 1 for f in found)
    view = aidp.app.get_run(app, run_id).step("bad", "crash")
    assert view is not None
    assert [f.detail_dict() for f in view.attempt_list[0].findings] == [
        f.detail_dict() for f in found]
    assert found[0].to_dict() == {"workstream": "bad", "step": "crash", "attempt": 1,
                                  **found[0].detail_dict()}
    assert aidp.app.list_findings(app, run_id, attempt=2) == []
    bundle = aidp.app.get_diagnostics(app, step)
    assert bundle.to_dict()["outcome"].startswith("failed")
    with pytest.raises(NotFoundError):
        aidp.app.get_diagnostics(app, step, attempt=7)


def test_usage_counts_every_attempt(app: AppContext, tmp_path: Path) -> None:
    """get_usage sums the attempts of a run per step, workstream and profile."""
    run_id = _run(app, tmp_path, {"good": [_write("good", "one"), _write("good", "two")]})
    ledger = aidp.app.get_usage(app, run_id).to_dict()
    assert ledger["run_id"] == run_id
    assert ledger["total"]["attempts"] == 2
    assert ledger["steps"]["good/one"]["attempts"] == 1
    assert sum(item["attempts"] for item in ledger["profiles"].values()) == 2


def test_unknown_run_is_not_found(app: AppContext, tmp_path: Path) -> None:
    """Without a database a query of one run raises NotFoundError and creates none (the lists
    are empty); with one, an unknown run or step reference is NotFoundError too."""
    with pytest.raises(NotFoundError, match="no aidp database"):
        aidp.app.resolve_run(app, None)
    assert aidp.app.list_runs(app) == []
    assert not (app.repo / ".aidp" / "aidp.db").exists()
    assert aidp.app.list_breakers(app) == []
    _run(app, tmp_path, {"good": [_write("good", "one")]})
    with pytest.raises(NotFoundError, match="no run 'NOPE'"):
        aidp.app.resolve_run(app, "NOPE")
    with pytest.raises(NotFoundError):
        aidp.app.get_run(app, "01NOSUCHRUN")
    with pytest.raises(NotFoundError, match="no step"):
        aidp.app.resolve_step(app, None, "good/nothing")


def test_cancel_ends_a_run_nobody_drives(app: AppContext, tmp_path: Path) -> None:
    """cancel_run on a created, undriven run cancels it here and now: every step and
    workstream ends cancelled; cancelling again changes nothing."""
    run_id = aidp.app.create_run(app, load_plan([_plan(tmp_path, {
        "good": [_write("good", "one")]})]), parallel=1)
    outcome = aidp.app.cancel_run(app, None, wait_s=0)
    assert (outcome.run_id, outcome.live, outcome.status, outcome.cancelled) == (
        run_id, False, "cancelled", True)
    view = aidp.app.get_run(app, run_id)
    assert view.cancel_requested
    assert [(ws.status, [s.status for s in ws.steps]) for ws in view.workstreams] == [
        ("cancelled", ["cancelled"])]
    assert aidp.app.cancel_run(app, run_id).status == "cancelled"


def test_cancel_refuses_a_completed_run(app: AppContext, tmp_path: Path) -> None:
    """A completed run cannot be cancelled: StateError."""
    run_id = _run(app, tmp_path, {"good": [_write("good", "one")]})
    with pytest.raises(StateError, match="already completed"):
        aidp.app.cancel_run(app, run_id)


def test_rollback_reopens_the_later_steps(app: AppContext, tmp_path: Path) -> None:
    """rollback_run moves the branch back to a step's checkpoint; the steps after it become
    pending again, and so does their workstream."""
    run_id = _run(app, tmp_path, {"good": [_write("good", "one"), _write("good", "two")]})
    before = aidp.app.get_run(app, run_id)
    one = before.step("good", "one")
    assert one is not None and one.checkpoint is not None
    outcome = aidp.app.rollback_run(app, run_id, "good/one")
    assert outcome.reopened == ("two",)
    after = aidp.app.get_run(app, run_id)
    ws = after.workstreams[0]
    assert ws.status == "pending" and ws.head == one.checkpoint
    assert [(s.id, s.status) for s in ws.steps] == [("one", "completed"), ("two", "pending")]
    assert git(app.repo, "rev-parse", ws.branch).strip() == one.checkpoint
    summary = aidp.app.drive_run(app, run_id)  # resume runs the reopened step again
    assert summary.ok


def test_decide_gate_refuses_a_step_not_awaiting_approval(app: AppContext, tmp_path: Path
                                                          ) -> None:
    """approve/reject of a step that is not waiting at a human gate is a StateError."""
    run_id = _run(app, tmp_path, {"good": [_write("good", "one")]})
    with pytest.raises(StateError, match="not awaiting approval"):
        aidp.app.decide_gate(app, run_id, "one", approve=True, by="tests")


def test_reset_breaker_closes_an_open_breaker(app: AppContext, tmp_path: Path) -> None:
    """reset_breaker closes an open breaker and reports the state it was in; list_breakers
    shows it closed afterwards."""
    from aidp.resilience.breaker import BreakerPolicy
    from aidp.state.breakers import BreakerBook

    with pytest.raises(NotFoundError, match="no breaker"):
        aidp.app.reset_breaker(app, "profile:llm")
    book = BreakerBook(app.store(create=True))
    policy = BreakerPolicy(failure_threshold=1, cooldown_s=300)
    admission = book.admit("profile:llm", policy)
    book.record("profile:llm", policy, admission, success=False, transient=True)
    [view] = aidp.app.list_breakers(app)
    assert (view.key, view.state, view.failure_threshold) == ("profile:llm", "open", 1)
    assert view.reopen_in_s is not None and 0 < view.reopen_in_s <= 300
    assert aidp.app.reset_breaker(app, "profile:llm") == "open"
    assert [v.state for v in aidp.app.list_breakers(app)] == ["closed"]


def test_worktrees_are_listed_and_pruned(app: AppContext, tmp_path: Path) -> None:
    """After a run its pooled worktrees are idle; prune_worktrees removes clean ones and keeps
    a dirty one unless forced."""
    _run(app, tmp_path, {"good": [_write("good", "one")], "more": [_write("more", "one")]})
    listed = aidp.app.list_worktrees(app)
    assert listed and not any(w.in_use for w in listed)
    dirty = listed[0].path
    (dirty / "scratch.txt").write_text("uncommitted\n")
    outcome = aidp.app.prune_worktrees(app)
    assert [w.path for w in outcome.kept] == [dirty]
    assert dirty not in outcome.removed and len(outcome.removed) == len(listed) - 1
    assert aidp.app.prune_worktrees(app, force=True).removed == (dirty,)
    assert aidp.app.list_worktrees(app) == []


def test_the_door_is_pinned_and_cheap() -> None:
    """aidp.app exports exactly its __all__ (sorted, each name defined), and importing it loads
    neither SQLAlchemy, pygit2 nor the engine."""
    assert aidp.app.__all__ == sorted(aidp.app.__all__)
    assert all(hasattr(aidp.app, name) for name in aidp.app.__all__)
    probe = ("import sys, aidp.app; print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('sqlalchemy', 'pygit2', 'alembic') or m.startswith(('aidp.engine', 'aidp.state'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True, env=os.environ.copy()).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("lease", "shown"), [
    ({"released": True}, "interrupted"),
    ({"pid": 2 ** 22 + 1, "pid_start": None}, "interrupted"),  # holder gone from this host
    ({"expires_at": 1.0}, "interrupted"),
    ({}, "running"),  # ours: alive, not expired, not released
])
def test_a_running_run_nobody_drives_shows_interrupted(app: AppContext, tmp_path: Path,
                                                       lease: dict[str, object],
                                                       shown: str) -> None:
    """A running run whose lease was released or expired, or whose holder is dead, is shown
    `interrupted` and resumable (status and runs); a live one stays `running`."""
    import socket
    import time

    from aidp.process.procfs import self_identity

    run_id = _run(app, tmp_path, {"good": [_write("good", "one")]})
    pid, pid_start = self_identity()
    values = {"released": False, "host": socket.gethostname(), "pid": pid,
              "pid_start": pid_start, "expires_at": time.time() + 600, **lease}
    with app.store().write() as tx:
        tx.update_run(run_id, status="running", finished_at=None)
        tx.update_lease(run_id, **values)
    view = aidp.app.get_run(app, run_id)
    data = view.to_dict()
    assert (data["status"], data["recorded_status"]) == (shown, "running")
    assert data["live"] is (shown == "running") and data["resumable"] is (shown != "running")
    [item] = [i.to_dict() for i in aidp.app.list_runs(app)]
    assert (item["status"], item["live"], item["resumable"]) == (
        shown, data["live"], data["resumable"])


def test_a_kept_view_is_never_older_than_the_database(app: AppContext, tmp_path: Path) -> None:
    """get_run keeps what it read while nobody commits (the same view object comes back), and
    reads again after any commit: of this context, or of another process (the CLI)."""
    run_id = aidp.app.create_run(app, load_plan([_plan(tmp_path, {
        "good": [_write("good", "one")]})]), parallel=1)
    first = aidp.app.get_run(app, run_id)
    again = aidp.app.get_run(app, run_id)
    assert again.workstreams is first.workstreams and not first.cancel_requested
    env = {**os.environ, "AIDP_DATABASE_URL": ""}
    env.pop("AIDP_DATABASE_URL")
    subprocess.run([str(Path(sys.executable).with_name("aidp")), "cancel", run_id, "--wait",
                    "0"], cwd=app.repo, env=env, check=True, capture_output=True, timeout=60)
    seen = aidp.app.get_run(app, run_id)
    assert seen.cancel_requested and seen.status == "cancelled"
    assert aidp.app.list_runs(app)[0].status == "cancelled"
