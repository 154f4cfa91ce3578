"""Routing from results, the pure part: the figures of a profile for a step (aidp.tools.stats)
and how ``select: best_success | cheapest_passing`` ranks the matching profiles
(aidp.tools.registry.choose_profile); plus the store's sums they come from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.config import Settings, ToolProfile
from aidp.state.store import Store
from aidp.tools.registry import ProfileHealth, Select, choose_profile
from aidp.tools.stats import MIN_SAMPLES, ProfileStats, figures_for, wilson_lower_bound


def settings(**profiles: dict[str, Any]) -> Settings:
    """Settings holding the given profiles (keyword = profile name, value = its fields)."""
    return Settings(tools={name: ToolProfile(**fields) for name, fields in profiles.items()})


def pair() -> Settings:
    """aider (priority 1) and codex, both editing code; codex falls back to openai."""
    return settings(
        aider={"adapter": "aider", "capabilities": ["code_edit"], "priority": 1},
        codex={"adapter": "codex", "capabilities": ["code_edit"], "fallback": ["openai"]},
        openai={"adapter": "openai", "capabilities": ["review"]},
    )


def sums(profile: str, succeeded: int, finished: int, capability: str | None = "code_edit",
         language: str | None = None, cost_usd: float = 0.0) -> ProfileStats:
    return ProfileStats(profile, capability, language, finished=finished, succeeded=succeeded,
                        steps=finished, cost_usd=cost_usd)


def choose(select: Select, stats: list[ProfileStats], *, language: str | None = None,
           health: dict[str, ProfileHealth] | None = None, config: Settings | None = None
           ) -> tuple[str, str]:
    choice = choose_profile(config or pair(), tool=None, capability="code_edit",
                            language=language, health=health or {}, select=select,
                            stats=stats)
    return choice.profile, choice.reason


# -- figures ------------------------------------------------------------------------------------


def test_wilson_lower_bound_counts_few_samples_for_less() -> None:
    """14/15 beats 3/3 and 6/15; no samples is 0."""
    assert wilson_lower_bound(14, 15) > wilson_lower_bound(3, 3) > wilson_lower_bound(6, 15)
    assert wilson_lower_bound(0, 0) == 0.0
    assert round(wilson_lower_bound(14, 15), 2) == 0.70


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_lower_bound_is_a_lower_bound(counts: tuple[int, int]) -> None:
    """The bound lies in [0, observed rate] for every count."""
    succeeded, finished = counts
    bound = wilson_lower_bound(succeeded, finished)
    assert 0.0 <= bound <= succeeded / finished + 1e-12


@pytest.mark.parametrize(("rows", "scope", "counts"), [
    ([sums("a", 5, 6, language="python"), sums("a", 1, 9, language="go")],
     "code_edit/python", (5, 6)),
    ([sums("a", 2, 2, language="python"), sums("a", 1, 9, language="go")],
     "code_edit", (3, 11)),
    ([sums("a", 2, 2, language="python"), sums("a", 3, 4, capability=None)],
     "all its work", (5, 6)),
], ids=["language", "capability-wide", "profile-wide"])
def test_figures_take_the_narrowest_scope_with_enough_samples(
        rows: list[ProfileStats], scope: str, counts: tuple[int, int]) -> None:
    """The language's figures when it has MIN_SAMPLES finished attempts, else the capability's
    in any language, else all the profile's work (a step that named it by tool included)."""
    figures = figures_for([*rows, sums("other", 9, 9)], "a", "code_edit", "Python")
    assert figures.known and figures.scope.lower() == scope  # the language compared without case
    assert (figures.stats.succeeded, figures.stats.finished) == counts


def test_figures_with_too_few_samples_are_unknown() -> None:
    """Fewer than MIN_SAMPLES anywhere: unknown, and said so with the count."""
    figures = figures_for([sums("a", 2, MIN_SAMPLES - 2, language="go"),
                           sums("a", 1, 1, capability=None)], "a", "code_edit", "python")
    assert not figures.known and figures.success == f"{MIN_SAMPLES - 1} finished, too few"


def test_sums_add_and_derive_their_means() -> None:
    """success rate, fix loop, cost per attempt and per success, latency, duration."""
    total = (ProfileStats("a", finished=4, succeeded=3, steps=2, fix_attempts=1, cost_usd=0.4,
                          latency_ms=100, duration_s=2.0, wins=1)
             + ProfileStats("a", finished=4, succeeded=1, steps=2, fix_attempts=2, cost_usd=0.4,
                            latency_ms=300, duration_s=6.0, losses=2))
    assert total.success_rate == 0.5 and total.fix_loop == 0.75
    assert total.mean_cost_usd == pytest.approx(0.1)
    assert total.cost_per_success == pytest.approx(0.2)
    assert total.mean_latency_ms == 50 and total.mean_duration_s == 1.0
    assert (total.wins, total.losses) == (1, 2)
    assert ProfileStats("a").success_rate is None and ProfileStats("a").cost_per_success is None


# -- best_success ---------------------------------------------------------------------------------


def test_best_success_picks_the_higher_success_rate_and_cites_the_figures() -> None:
    """codex 14/15 beats aider 6/15 although aider has the higher priority."""
    stats = [sums("aider", 6, 15), sums("codex", 14, 15, language="python")]
    assert choose("best_success", stats, language="python") == (
        "codex", "select best_success: chose codex (success 14/15 = 93% for code_edit/python) "
        "over aider (success 6/15 = 40% for code_edit)")
    assert choose("score", stats, language="python")[0] == "aider"


def test_best_success_prefers_many_samples_to_a_lucky_few() -> None:
    """5/5 (Wilson bound 0.57) loses to 28/30 (0.79)."""
    assert choose("best_success", [sums("aider", 5, 5), sums("codex", 28, 30)])[0] == "codex"


def test_best_success_puts_unknown_profiles_after_known_ones() -> None:
    """A profile with too few samples comes after one with figures, however poor."""
    profile, reason = choose("best_success", [sums("aider", 1, 2), sums("codex", 1, 10)])
    assert profile == "codex"
    assert reason.endswith("over aider (success 2 finished, too few)")


def test_no_figures_fall_back_to_the_score() -> None:
    """Nobody has enough samples: the score's choice, and the reason says why."""
    assert choose("best_success", [sums("codex", 3, 3)]) == (
        "aider", "select best_success: no matching profile has enough finished attempts; "
        "chose aider (code_edit, score 1.1)")


def test_equal_figures_go_by_score() -> None:
    """The same success rate: the higher score (aider's priority) wins the tie."""
    assert choose("best_success", [sums("aider", 8, 10), sums("codex", 8, 10)])[0] == "aider"


def test_best_success_with_an_open_breaker_takes_its_fallback() -> None:
    """The best profile's breaker is open: its fallback chain runs as with the score, and the
    reason says so before the figures."""
    profile, reason = choose("best_success", [sums("aider", 1, 10), sums("codex", 9, 10)],
                             health={"codex": ProfileHealth(breaker_open=True)})
    assert profile == "openai"
    assert reason.startswith("codex: breaker open; chose openai (fallback of codex); "
                             "select best_success: codex was first (success 9/10")


# -- cheapest_passing -----------------------------------------------------------------------------


def test_cheapest_passing_skips_the_cheap_profile_that_fails() -> None:
    """Only profiles succeeding in 80 % count; among them the lowest cost per success wins."""
    config = settings(**{name: {"adapter": "openai", "capabilities": ["code_edit"]}
                         for name in ("bargain", "fair", "premium")})
    stats = [sums("bargain", 2, 10, cost_usd=0.1), sums("fair", 9, 10, cost_usd=1.8),
             sums("premium", 10, 10, cost_usd=5.0)]
    assert choose("cheapest_passing", stats, config=config) == (
        "fair", "select cheapest_passing: chose fair ($0.2000 per success, success 9/10 = 90% "
        "for code_edit) over premium ($0.5000 per success, success 10/10 = 100% for "
        "code_edit), bargain (success 2/10 = 20% for code_edit, under 80%)")


def test_cheapest_passing_without_a_passing_profile_falls_back_to_the_score() -> None:
    """Nobody passes 80 %: the score decides, and the reason says so."""
    profile, reason = choose("cheapest_passing", [sums("aider", 1, 10), sums("codex", 2, 10)])
    assert profile == "aider"
    assert reason.startswith("select cheapest_passing: no matching profile succeeds in 80% of "
                             "enough finished attempts; chose aider")


# -- the store's sums -----------------------------------------------------------------------------


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def test_store_sums_finished_attempts_of_every_run(store: Store) -> None:
    """Per (profile, capability, language) over every run: interrupted, cancelled and refused
    attempts and attempts in flight do not count; fix attempts, steps, costs, latency,
    duration and best-of-N verdicts do."""
    rows: list[dict[str, Any]] = []
    for run in ("R1", "R2"):
        rows += [
            {"run_id": run, "step_id": "a", "profile": "codex", "outcome": "failed_permanent",
             "cost_usd": 0.5, "latency_ms": 100, "verdict": "lost"},
            {"run_id": run, "step_id": "a", "profile": "codex", "outcome": "succeeded",
             "kind": "fix", "cost_usd": 0.5, "latency_ms": 300, "verdict": "won"},
            {"run_id": run, "step_id": "b", "profile": "codex", "outcome": "crashed",
             "interrupted": True},
            {"run_id": run, "step_id": "b", "profile": "codex", "outcome": "cancelled"},
            {"run_id": run, "step_id": "b", "profile": "codex", "outcome": "budget_exceeded"},
            {"run_id": run, "step_id": "b", "profile": "codex", "outcome": None},
            {"run_id": run, "step_id": "c", "profile": "aider", "outcome": "succeeded",
             "capability": None, "language": None},
        ]
    with store.write() as tx:
        for run in ("R1", "R2"):
            tx.insert_run(id=run, status="completed", repo="/r", plan_json="{}", sources="[]")
            tx.insert_workstreams([{"run_id": run, "ws_id": "w", "position": 0,
                                    "status": "completed", "branch": "b", "base_ref": "HEAD"}])
            tx.insert_steps([{"run_id": run, "ws_id": "w", "step_id": s, "position": i,
                              "status": "completed"} for i, s in enumerate("abc")])
        for number, row in enumerate(rows):
            tx.insert_attempt(**{"ws_id": "w", "number": number, "capability": "code_edit",
                                 "language": "python", "started_at": 10.0,
                                 "finished_at": 12.0, **row})
    found = {(r.profile, r.capability): ProfileStats.of_row(r) for r in store.profile_stats()}
    assert set(found) == {("aider", None), ("codex", "code_edit")}
    codex = found[("codex", "code_edit")]
    assert codex == ProfileStats("codex", "code_edit", "python", finished=4, succeeded=2,
                                 steps=2, fix_attempts=2, cost_usd=2.0, latency_ms=800,
                                 duration_s=8.0, wins=2, losses=2)
    assert found[("aider", None)].finished == 2 and found[("aider", None)].language is None
