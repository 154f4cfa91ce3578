"""The event catalogue: complete (every kind any code journals is in it), CloudEvents documents,
selection; and the events of breakers, budgets and proposals reach the journal."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest

from aidp.app.context import AppContext
from aidp.app.events import (
    CATALOGUE,
    CATEGORIES,
    GAP_SETTLE_S,
    NO_RUN,
    category_of,
    check_patterns,
    cloud_event,
    events_after,
    matches,
)
from aidp.core.states import StepState
from aidp.exceptions import InputError
from aidp.resilience.breaker import BreakerPolicy
from aidp.state.breakers import BreakerBook
from aidp.state.store import Store
from tests.conftest import Cli

SRC = Path(__file__).resolve().parents[2] / "src" / "aidp"


def _kinds_of(node: ast.expr, tables: dict[str, ast.expr]) -> set[str]:
    """The kinds an ``event(run, KIND, ...)`` argument can take: a literal, either branch of
    ``a if c else b``, any value of a module-level dict (``_KINDS[state]``), or
    ``f"step.{state.value}"`` (every step state)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _kinds_of(node.body, tables) | _kinds_of(node.orelse, tables)
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
            and isinstance(table := tables.get(node.value.id), ast.Dict)):
        return {k for v in table.values for k in _kinds_of(v, tables)}
    if isinstance(node, ast.JoinedStr):
        prefix = "".join(v.value for v in node.values
                         if isinstance(v, ast.Constant) and isinstance(v.value, str))
        assert prefix == "step.", ast.unparse(node)
        return {f"step.{state.value}" for state in StepState}
    raise AssertionError(f"cannot tell the kind of {ast.unparse(node)}")


def journaled_kinds() -> dict[str, str]:
    """kind -> where: every kind passed to ``tx.event(...)`` anywhere in aidp's source."""
    found: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        tables = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign)
                  for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "event" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "tx" and len(node.args) >= 2):
                for kind in _kinds_of(node.args[1], tables):
                    found.setdefault(kind, f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_every_journaled_kind_is_in_the_catalogue() -> None:
    kinds = journaled_kinds()
    assert len(kinds) > 20
    missing = {kind: where for kind, where in kinds.items() if kind not in CATALOGUE}
    assert missing == {}


def test_the_catalogue_has_every_category_the_service_promises() -> None:
    promised = {"run", "workstream", "step", "attempt", "gate", "breaker", "budget",
                "proposal", "webhook"}
    assert promised <= set(CATEGORIES)
    assert promised <= {category_of(kind) for kind in CATALOGUE}
    assert {category_of(kind) for kind in CATALOGUE} <= set(CATEGORIES)


def test_selection_and_pattern_check() -> None:
    assert matches("step.approved", ["gate"]) and not matches("step.failed", ["gate"])
    assert matches("step.failed", ["dev.aidp.step.*"]) and matches("x.y", [])
    check_patterns(["gate", "step.*", "dev.aidp.run.finished", "*"])
    with pytest.raises(InputError, match=r"stpe\.failed"):
        check_patterns(["stpe.failed"])


def _store(cli: Cli) -> Store:
    assert cli.db_url is not None
    return Store(cli.db_url)


def _journal(cli: Cli) -> list[dict[str, object]]:
    """Every event of the CLI's database, as CloudEvents (through the application layer)."""
    assert cli.db_url is not None
    app = AppContext.open(cli.cwd)
    app.settings = app.settings.model_copy(update={
        "database": app.settings.database.model_copy(update={"url": cli.db_url})})
    try:
        page = events_after(app, 0, limit=1000)
        return [cloud_event(e) for e in page.events]
    finally:
        app.close()


def test_breaker_transitions_are_journaled(cli: Cli) -> None:
    """A breaker opening during a run is journaled under that run; a reset by hand under no
    run, naming who did it (in the CLI: ``aidp breakers reset``)."""
    store = _store(cli)
    try:
        book = BreakerBook(store, run_id="r1")
        policy = BreakerPolicy(failure_threshold=1, window_s=60, cooldown_s=300)
        admission = book.admit("profile:p", policy)
        book.record("profile:p", policy, admission, success=False, transient=True)
    finally:
        store.close()
    cli("breakers", "reset", "profile:p", check=True)
    docs = [d for d in _journal(cli) if str(d["type"]).startswith("dev.aidp.breaker.")]
    assert [(d["type"], d.get("aidprun")) for d in docs] == [
        ("dev.aidp.breaker.opened", "r1"), ("dev.aidp.breaker.reset", None)]
    opened, reset = (d["data"] for d in docs)
    assert isinstance(opened, dict) and isinstance(reset, dict)
    assert (opened["key"], opened["from"], opened["to"]) == ("profile:p", "closed", "open")
    assert (reset["from"], reset["to"]) == ("open", "closed") and "@" in str(reset["by"])
    assert docs[1]["source"] == "/aidp"


def test_budget_stop_is_journaled(cli: Cli, tmp_path: Path) -> None:
    """A step stopped by a spent budget: budget.exceeded (naming the limit), then step.failed,
    in the same transaction."""
    (cli.cwd / "aidp.toml").write_text("[run.budget]\ncost_usd = 0\n")
    plan = tmp_path / "p.yaml"
    plan.write_text("version: 1\nworkstreams: [{id: a, steps: [{id: s, run: 'true'}]}]\n")
    result = cli("run", "--json", str(plan))
    assert result.returncode == 1, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    docs = [d for d in _journal(cli) if d.get("aidprun") == run_id]
    kinds = [str(d["type"]).removeprefix("dev.aidp.") for d in docs]
    at = kinds.index("budget.exceeded")
    assert kinds[at + 1] == "step.failed"
    data = docs[at]["data"]
    assert isinstance(data, dict) and "run budget of $0 is spent" in str(data["limit"])
    assert docs[at]["subject"] == "a/s"


def test_proposal_transitions_are_journaled(cli: Cli) -> None:
    """Every move of a proposal is a proposal.transitioned event of no run."""
    from aidp.specs.proposals import ProposalBook

    store = _store(cli)
    try:
        book = ProposalBook(store)
        book.ensure("add-x", "Add x", "ann")
        from aidp.specs.lifecycle import ProposalAction

        book.act("add-x", ProposalAction.SUBMIT, "ann", "ready")
    finally:
        store.close()
    docs = [d for d in _journal(cli) if d["type"] == "dev.aidp.proposal.transitioned"]
    assert [(d["data"]["from"], d["data"]["to"], d["data"]["action"])  # type: ignore[index]
            for d in docs] == [(None, "draft", "create"), ("draft", "review", "submit")]
    assert all("aidprun" not in d and d["source"] == "/aidp" for d in docs)
    assert docs[1]["data"]["comment"] == "ready"  # type: ignore[index]
    assert NO_RUN == ""


def test_a_reader_never_skips_an_event_committed_late(db_url: str, repo: Path) -> None:
    """PostgreSQL takes ids from a sequence: while the transaction that took id N is open, a
    reader that sees N+1 stops before N (nothing lost); once N commits it reads both, in order;
    an id that never commits (rolled back) is skipped once the event after it has settled."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer: ids commit in order")
    store = Store(db_url)
    app = AppContext.open(repo)
    app.settings = app.settings.model_copy(update={
        "database": app.settings.database.model_copy(update={"url": db_url})})
    try:
        with store.write() as tx:
            tx.event("r", "run.created")
        base = events_after(app, 0).cursor
        with store.write() as held:
            held.event("r", "step.started", "a", "s")
            with store.write() as tx:
                tx.event("r", "step.completed", "a", "s")
            page = events_after(app, base)
            assert (page.events, page.cursor) == ((), base)
            assert events_after(app, base, run_id="r").events == ()
        page = events_after(app, base)
        assert [e.kind for e in page.events] == ["step.started", "step.completed"]
        base = page.cursor
        with pytest.raises(RuntimeError), store.write() as doomed:
            doomed.event("r", "step.failed")
            with store.write() as tx:
                tx.event("r", "run.finished")
            raise RuntimeError("rolled back")
        assert events_after(app, base).events == ()
        late = events_after(app, base, now=time.time() + 2 * GAP_SETTLE_S)
        assert [e.kind for e in late.events] == ["run.finished"]
    finally:
        app.close()
        store.close()
