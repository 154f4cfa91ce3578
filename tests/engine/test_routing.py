"""Routing from results, through real runs: attempts recorded by ``aidp run`` in real
repositories become each profile's statistics, and a capability step with ``select:`` is routed
by them, the attempt's recorded reason citing the figures; ``aidp tools stats`` shows them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aidp.state.store import Store
from aidp.testing import FakeLLM
from tests.conftest import Cli

#: Two shell profiles offering the same capability; ``flaky`` has the higher priority, so the
#: registry's score alone would pick it.
PROFILES = """\
[tools.steady]
adapter = "shell"
capabilities = ["code_edit"]

[tools.flaky]
adapter = "shell"
capabilities = ["code_edit"]
priority = 1
"""


def workstream(ident: str, step: str, scope: str | None = None) -> str:
    """One workstream of one step (given as a YAML flow mapping) writing under ``ident/`` (or
    ``scope``, which it may share with other workstreams)."""
    shared = f'scope: ["{scope}"]\n    scope_overlap: allow' if scope else f'scope: ["{ident}/**"]'
    return f"""
  - id: {ident}
    {shared}
    steps:
      - {step}"""


def write_plan(path: Path, items: list[str]) -> Path:
    path.write_text("version: 1\nworkstreams:" + "".join(items) + "\n")
    return path


def attempt_step(ident: str, tool: str, ok: bool) -> str:
    """A step on profile ``tool`` whose command succeeds (writes a file) or fails (exit 1)."""
    command = f"mkdir -p {ident} && echo done > {ident}/out.txt" if ok else "exit 1"
    return workstream(ident, f"{{id: s, tool: {tool}, run: '{command}'}}")


def record_history(cli: Cli, tmp_path: Path) -> None:
    """30 finished attempts in one real run: steady succeeds 14 of 15 times, flaky 6 of 15."""
    items = [attempt_step(f"s{i:02}", "steady", ok=i != 7) for i in range(15)]
    items += [attempt_step(f"f{i:02}", "flaky", ok=i < 6) for i in range(15)]
    result = cli("run", "--parallel", "4", str(write_plan(tmp_path / "history.yaml", items)))
    assert result.returncode != 0  # ten of the workstreams failed, as they should


def routed_attempt(store: Store, run_id: str, ws_id: str) -> Any:
    (attempt,) = store.attempts(run_id, ws_id)
    return attempt


def test_best_success_routes_to_the_profile_that_succeeds_more(
        repo: Path, db_url: str, tmp_path: Path) -> None:
    """After 30 recorded attempts (steady 14/15, flaky 6/15), a capability step with select:
    best_success runs on steady and its recorded reason cites both profiles' figures; the same
    step with the default select (score) still runs on flaky, the higher priority."""
    (repo / "aidp.toml").write_text(PROFILES)
    cli = Cli(repo, db_url)
    record_history(cli, tmp_path)
    step = ("{{id: s, capability: code_edit, select: {select}, "
            "run: 'mkdir -p {ws} && touch {ws}/x'}}")
    plan = write_plan(tmp_path / "routed.yaml", [
        workstream("best", step.format(select="best_success", ws="best")),
        workstream("plain", step.format(select="score", ws="plain")),
    ])
    summary = json.loads(cli("run", "--json", str(plan), check=True).stdout)
    store = Store(db_url)
    try:
        run_id = summary["run_id"]
        best = routed_attempt(store, run_id, "best")
        assert best.profile == "steady" and best.outcome == "succeeded"
        assert best.capability == "code_edit"
        assert best.choice_reason == (
            "select best_success: chose steady (success 14/15 = 93% for all its work) "
            "over flaky (success 6/15 = 40% for all its work)")
        (started,) = [json.loads(e.data) for e in store.events(run_id)
                      if e.kind == "step.started" and e.ws_id == "best"]
        assert started["profile"] == "steady"
        assert started["choice_reason"] == best.choice_reason  # aidp events, the dashboard
        plain = routed_attempt(store, run_id, "plain")
        assert plain.profile == "flaky" and "select" not in plain.choice_reason
    finally:
        store.close()
    # the routed attempt counts too: steady now has 15 of 16 (14 by name, 1 for code_edit)
    rows = json.loads(cli("tools", "stats", "--json", check=True).stdout)
    assert {(r["profile"], r["capability"], r["finished"], r["succeeded"]) for r in rows} == {
        ("steady", None, 15, 14), ("flaky", None, 15, 6),
        ("steady", "code_edit", 1, 1), ("flaky", "code_edit", 1, 1)}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_tools_stats_prints_a_table_and_filters(repo: Path, db_url: str, tmp_path: Path) -> None:
    """aidp tools stats: one line per profile x capability x language with attempts,
    successes, rate, fix loop, costs, latency, duration, wins and losses; --capability and
    --language filter; --json gives the same rows with the sums and the derived figures."""
    (repo / "aidp.toml").write_text(PROFILES)
    cli = Cli(repo, db_url, in_process=True)
    assert cli("tools", "stats", check=True).stdout.strip() == "no finished attempts yet"
    step = "{{id: s, capability: code_edit, language: {lang}, run: '{cmd}'}}"
    plan = write_plan(tmp_path / "plan.yaml", [
        attempt_step("a", "steady", ok=True),
        attempt_step("b", "steady", ok=False),
        workstream("c", step.format(lang="python", cmd="mkdir -p c && touch c/x")),
        workstream("d", step.format(lang="go", cmd="exit 3")),
    ])
    cli("run", str(plan))
    lines = cli("tools", "stats", check=True).stdout.splitlines()
    assert lines[0].split() == ["PROFILE", "CAPABILITY", "LANGUAGE", "ATTEMPTS", "SUCCEEDED",
                                "RATE", "FIX", "LOOP", "COST/ATTEMPT", "COST/SUCCESS",
                                "LATENCY", "DURATION", "WON", "LOST"]
    cells = [line.split()[:9] for line in lines[1:]]
    assert cells == [
        ["flaky", "code_edit", "go", "1", "0", "0%", "0.00", "$0.0000", "-"],
        ["flaky", "code_edit", "python", "1", "1", "100%", "0.00", "$0.0000", "$0.0000"],
        ["steady", "-", "-", "2", "1", "50%", "0.00", "$0.0000", "$0.0000"],
    ]
    python = cli("tools", "stats", "--capability", "CODE_EDIT", "--language", "python",
                 check=True).stdout.splitlines()
    assert [line.split()[:3] for line in python[1:]] == [["flaky", "code_edit", "python"]]
    rows = json.loads(cli("tools", "stats", "--json", "--language", "go", check=True).stdout)
    assert rows == [{
        "profile": "flaky", "capability": "code_edit", "language": "go", "finished": 1,
        "succeeded": 0, "success_rate": 0.0, "steps": 1, "fix_attempts": 0, "fix_loop": 0.0,
        "cost_usd": 0.0, "mean_cost_usd": 0.0, "cost_per_success": None, "latency_ms": 0,
        "mean_latency_ms": 0.0, "duration_s": rows[0]["duration_s"],
        "mean_duration_s": rows[0]["mean_duration_s"], "wins": 0, "losses": 0}]
    assert rows[0]["duration_s"] > 0


EDIT = "notes/{name}.md\n```\nhello\n```\n"


def priced(name: str, base_url: str, price: float, priority: int = 0) -> str:
    """An openai profile offering code_edit at ``price`` dollars per million tokens."""
    return (f'[tools.{name}]\nadapter = "openai"\nbase_url = "{base_url}"\n'
            f'model = "fake-model"\nedit_format = "whole"\ntimeout = 20\n'
            f'capabilities = ["code_edit"]\npriority = {priority}\n'
            f"[tools.{name}.prices]\ninput = {price}\noutput = {price}\n")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cheapest_passing_takes_the_cheapest_profile_that_succeeds_often_enough(
        repo: Path, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three model profiles, five attempts each: 'bargain' is cheapest but passes its checks
    2 of 5 times, 'fair' and 'premium' pass 5 of 5 and fair costs less per success: a
    select: cheapest_passing step runs on fair, the reason citing the cost per success and the
    success rates (premium has the highest priority, bargain is under 80 %)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    with FakeLLM([{"reply": EDIT.format(name="x")}]) as llm:
        (repo / "aidp.toml").write_text(priced("bargain", llm.base_url, 1.0)
                                        + priced("fair", llm.base_url, 5.0)
                                        + priced("premium", llm.base_url, 50.0, priority=1))
        cli = Cli(repo, db_url)
        items = []
        for name in ("bargain", "fair", "premium"):
            for i in range(5):
                ok = name != "bargain" or i < 2
                check = "true" if ok else "false"
                items.append(workstream(
                    f"{name}{i}", f"{{id: s, tool: {name}, prompt: Write notes/x.md., "
                    f"checks: ['{check}']}}", scope="notes/**"))
        cli("run", "--parallel", "4", str(write_plan(tmp_path / "history.yaml", items)))
        routed = write_plan(tmp_path / "routed.yaml", [workstream(
            "cheap", "{id: s, capability: code_edit, select: cheapest_passing, "
            "prompt: Write notes/x.md.}", scope="notes/**")])
        summary = json.loads(cli("run", "--json", str(routed), check=True).stdout)
    store = Store(db_url)
    try:
        attempt = routed_attempt(store, summary["run_id"], "cheap")
    finally:
        store.close()
    assert attempt.profile == "fair"
    reason = attempt.choice_reason
    assert reason.startswith("select cheapest_passing: chose fair ($")
    assert "per success, success 5/5 = 100% for all its work) over premium ($" in reason
    assert "bargain (success 2/5 = 40% for all its work, under 80%)" in reason
    stats = json.loads(Cli(repo, db_url)("tools", "stats", "--json", check=True).stdout)
    costs = {r["profile"]: r["cost_per_success"] for r in stats if r["capability"] is None}
    assert 0 < costs["fair"] < costs["premium"]
