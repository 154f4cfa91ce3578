"""Pure DAG analysis: cycles, orders, waves, critical path, parallelism."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aidp.core.dag import (
    analyze,
    descendants,
    find_cycle,
    largest_conflict_free,
    step_order,
    waves,
)
from aidp.model.plan import Plan
from aidp.model.workstream import Workstream


def make_ws(
    ws_id: str, steps: int = 1, depends_on: list[str] | None = None, **extra: Any
) -> Workstream:
    """A workstream with ``steps`` independent shell steps."""
    return Workstream.model_validate(
        {
            "id": ws_id,
            "depends_on": depends_on or [],
            "steps": [{"id": f"s{i}", "run": "true"} for i in range(steps)],
            **extra,
        }
    )


def test_find_cycle_returns_the_loop() -> None:
    """A cycle is returned as a closed path following depends_on."""
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_find_cycle_none_for_a_dag() -> None:
    """An acyclic graph, with leaves only named as dependencies, has no cycle."""
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "d": ["x"]}) is None


def test_descendants_are_transitive_dependants() -> None:
    """descendants() finds everything that depends on a node, directly or not."""
    edges = {"a": [], "b": ["a"], "c": ["b"], "d": [], "e": ["d", "c"]}
    assert descendants(edges, "a") == {"b", "c", "e"}
    assert descendants(edges, "e") == set()


def test_step_order_keeps_file_order_when_possible() -> None:
    """Steps are ordered topologically, ties broken by their order in the file."""
    ws = Workstream.model_validate(
        {
            "id": "w",
            "steps": [
                {"id": "late", "depends_on": ["early"], "run": "true"},
                {"id": "early", "run": "true"},
                {"id": "free", "run": "true"},
            ],
        }
    )
    assert step_order(ws) == ["early", "late", "free"]


def test_step_order_rejects_a_cycle() -> None:
    """A step cycle makes step_order raise ValueError naming the cycle."""
    ws = Workstream.model_validate(
        {
            "id": "w",
            "steps": [
                {"id": "a", "depends_on": ["b"], "run": "true"},
                {"id": "b", "depends_on": ["a"], "run": "true"},
            ],
        }
    )
    with pytest.raises(ValueError, match="cycle"):
        step_order(ws)


def test_analyze_waves_critical_path_and_parallelism() -> None:
    """Waves follow dependencies; the critical path is the chain with the most steps."""
    plan = Plan(
        (
            make_ws("a", steps=1),
            make_ws("b", steps=3),
            make_ws("c", steps=1, depends_on=["a", "b"]),
            make_ws("d", steps=1, depends_on=["a"]),
        )
    )
    analysis = analyze(plan)
    assert analysis.waves == [["a", "b"], ["c", "d"]]
    assert analysis.critical_path == ["b", "c"]
    assert analysis.critical_steps == 4
    assert analysis.max_parallelism == 2
    assert analysis.step_count == 6
    data = analysis.to_dict()
    assert data["workstream_count"] == 4
    assert data["step_orders"]["b"] == ["s0", "s1", "s2"]


def test_conflicts_limit_parallelism() -> None:
    """Workstreams declared in conflicts_with (either side) never count as running together."""
    plan = Plan(
        (
            make_ws("a", conflicts_with=["b"]),
            make_ws("b"),
            make_ws("c", conflicts_with=["b"]),
        )
    )
    assert analyze(plan).max_parallelism == 2


def test_largest_conflict_free_is_exact_for_small_waves() -> None:
    """For a small wave the largest conflict-free set is found exactly (greedy would fail)."""
    # a path x - y - z: greedy by file order from y would take only y; the answer is {x, z}
    conflicts = {frozenset(("x", "y")), frozenset(("y", "z"))}
    assert largest_conflict_free(["y", "x", "z"], conflicts) == ["x", "z"]


def test_empty_plan_analysis() -> None:
    """An empty plan has no waves and no critical path."""
    analysis = analyze(Plan(()))
    assert analysis.waves == [] and analysis.critical_path == [] and analysis.max_parallelism == 0


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]]]:
    """Nodes n0..nk in a random order, each depending only on nodes of lower number."""
    count = draw(st.integers(min_value=1, max_value=12))
    names = [f"n{i}" for i in range(count)]
    edges = {
        name: draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        for i, name in enumerate(names)
    }
    order = draw(st.permutations(names))
    return list(order), edges


@settings(max_examples=200, deadline=None)
@given(random_dags())
def test_every_edge_goes_to_a_later_wave(dag: tuple[list[str], dict[str, list[str]]]) -> None:
    """For random DAGs, each node's wave is later than each of its dependencies' waves."""
    order, edges = dag
    generations = waves(order, edges)
    wave_of = {node: k for k, wave in enumerate(generations) for node in wave}
    assert sorted(wave_of) == sorted(order)
    for node, deps in edges.items():
        for dep in deps:
            assert wave_of[dep] < wave_of[node]
    for wave in generations:
        assert wave == sorted(wave, key=order.index)


@settings(max_examples=200, deadline=None)
@given(random_dags())
def test_step_order_respects_dependencies(dag: tuple[list[str], dict[str, list[str]]]) -> None:
    """For random step DAGs, step_order puts every dependency before its dependant."""
    order, edges = dag
    ws = Workstream.model_validate(
        {"id": "w", "steps": [{"id": n, "depends_on": edges[n], "run": "true"} for n in order]}
    )
    result = step_order(ws)
    assert sorted(result) == sorted(order)
    position = {node: i for i, node in enumerate(result)}
    for node, deps in edges.items():
        for dep in deps:
            assert position[dep] < position[node]
    assert find_cycle(edges) is None


@settings(max_examples=100, deadline=None)
@given(random_dags())
def test_critical_path_is_a_dependency_chain(dag: tuple[list[str], dict[str, list[str]]]) -> None:
    """The critical path is a dependency chain and no chain has more steps."""
    order, edges = dag
    plan = Plan(tuple(make_ws(n, steps=1 + int(n[1:]) % 3, depends_on=edges[n]) for n in order))
    analysis = analyze(plan)
    path = analysis.critical_path
    for earlier, later in itertools.pairwise(path):
        assert earlier in edges[later]
    assert analysis.critical_steps == sum(len(plan.workstream(n).steps) for n in path)

    def longest(node: str) -> int:
        own = len(plan.workstream(node).steps)
        return own + max((longest(d) for d in edges[node]), default=0)

    assert analysis.critical_steps == max(longest(n) for n in order)
