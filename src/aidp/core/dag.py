"""Pure graph code for plans: cycles, topological orders, waves, critical path, parallelism.

Edges are given as ``{node: [the nodes it depends on]}``, the direction of ``depends_on``.
Nodes that appear only as dependencies are leaves. Nothing here does I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any, Protocol

__all__ = [
    "PlanAnalysis",
    "PlanGraph",
    "StepNode",
    "WorkstreamNode",
    "all_descendants",
    "analyze",
    "descendants",
    "find_cycle",
    "largest_conflict_free",
    "step_order",
    "waves",
]

_EXACT_LIMIT = 20  # waves up to this size get an exact maximum conflict-free set


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Find one dependency cycle, deterministically (nodes and edges in the given order).

    Args:
        edges: each node mapped to the nodes it depends on.

    Returns:
        The cycle as ``[a, b, c, a]`` (``a`` depends on ``b`` ... ``c`` on ``a``), or None.
    """
    graph = {node: list(deps) for node, deps in edges.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in graph:
        if state.get(root):
            continue
        path: list[str] = [root]
        iters = [iter(graph.get(root, ()))]
        state[root] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            mark = state.get(nxt)
            if mark == 1:
                return [*path[path.index(nxt) :], nxt]
            if mark is None:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(graph.get(nxt, ())))
    return None


def descendants(edges: Mapping[str, Iterable[str]], node: str) -> set[str]:
    """Every node that depends on ``node``, directly or transitively (``node`` excluded).

    Args:
        edges: each node mapped to the nodes it depends on.
        node: typically a failed workstream or step whose dependants must be skipped.
    """
    return _reach(_dependants(edges), node)


def all_descendants(edges: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """:func:`descendants` of every node of ``edges``, indexing the dependants once (each
    node costs the size of its own answer, not a pass over the graph)."""
    dependants = _dependants(edges)
    return {node: _reach(dependants, node) for node in edges}


def _dependants(edges: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    dependants: dict[str, list[str]] = {}
    for child, deps in edges.items():
        for dep in deps:
            dependants.setdefault(dep, []).append(child)
    return dependants


def _reach(dependants: Mapping[str, list[str]], node: str) -> set[str]:
    found: set[str] = set()
    todo = [node]
    while todo:
        for child in dependants.get(todo.pop(), ()):
            if child not in found and child != node:
                found.add(child)
                todo.append(child)
    return found


def _ordered_topo(order: list[str], edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Kahn's algorithm picking, among ready nodes, the earliest one in ``order``."""
    index = {node: i for i, node in enumerate(order)}
    pending = {n: {d for d in edges.get(n, ()) if d in index and d != n} for n in order}
    dependants: dict[str, list[str]] = {n: [] for n in order}
    for node, deps in pending.items():
        for dep in deps:
            dependants[dep].append(node)
    ready = [index[n] for n in order if not pending[n]]
    heapq.heapify(ready)
    result: list[str] = []
    while ready:
        node = order[heapq.heappop(ready)]
        result.append(node)
        for child in dependants[node]:
            pending[child].discard(node)
            if not pending[child]:
                heapq.heappush(ready, index[child])
    if len(result) != len(order):
        raise ValueError(f"dependency cycle: {' -> '.join(find_cycle(pending) or [])}")
    return result


class StepNode(Protocol):
    """What the graph code reads of a step (:class:`aidp.model.workstream.Step` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def depends_on(self) -> Sequence[str]: ...


class WorkstreamNode(StepNode, Protocol):
    """What the graph code reads of a workstream (:class:`aidp.model.workstream.Workstream`)."""

    @property
    def conflicts_with(self) -> Sequence[str]: ...
    @property
    def steps(self) -> Sequence[StepNode]: ...


class PlanGraph(Protocol):
    """What the graph code reads of a plan (:class:`aidp.model.plan.Plan` is one)."""

    @property
    def workstreams(self) -> Sequence[WorkstreamNode]: ...
    @property
    def step_count(self) -> int: ...


def step_order(ws: WorkstreamNode) -> list[str]:
    """The ids of ``ws``'s steps in a topological order, ties broken by file order.

    Raises:
        ValueError: the steps' ``depends_on`` form a cycle (validation reports it first).
    """
    return _ordered_topo([s.id for s in ws.steps], {s.id: s.depends_on for s in ws.steps})


def waves(order: list[str], edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Group nodes by topological generation: wave k holds nodes whose longest dependency chain
    has k links. Within a wave, nodes keep their position in ``order``.

    Raises:
        ValueError: the edges form a cycle.
    """
    index = {node: i for i, node in enumerate(order)}
    sorter = TopologicalSorter({n: [d for d in edges.get(n, ()) if d in index] for n in order})
    try:
        sorter.prepare()
    except CycleError as exc:
        raise ValueError(f"dependency cycle: {' -> '.join(exc.args[1])}") from exc
    result: list[list[str]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=index.__getitem__)
        result.append(ready)
        sorter.done(*ready)
    return result


def largest_conflict_free(nodes: list[str], conflicts: set[frozenset[str]]) -> list[str]:
    """A largest subset of ``nodes`` with no conflicting pair (exact for up to 20 nodes,
    greedy by fewest conflicts beyond that). The result keeps the order of ``nodes``."""
    if len(nodes) <= _EXACT_LIMIT:
        best: list[str] = []

        def grow(i: int, chosen: list[str]) -> None:
            nonlocal best
            if len(chosen) + len(nodes) - i <= len(best):
                return
            if i == len(nodes):
                best = list(chosen)
                return
            node = nodes[i]
            if all(frozenset((node, c)) not in conflicts for c in chosen):
                grow(i + 1, [*chosen, node])
            grow(i + 1, chosen)

        grow(0, [])
        return best
    degree = {n: sum(1 for m in nodes if frozenset((n, m)) in conflicts) for n in nodes}
    picked: set[str] = set()
    for node in sorted(nodes, key=lambda n: degree[n]):
        if all(frozenset((node, c)) not in conflicts for c in picked):
            picked.add(node)
    return [n for n in nodes if n in picked]


@dataclass(frozen=True)
class PlanAnalysis:
    """What ``aidp plan`` shows: waves, the critical path and the useful parallelism.

    ``critical_path`` is the chain of workstreams with the most steps in total
    (``critical_steps``); ``max_parallelism`` is the largest number of workstreams of one wave
    that may run together, given ``conflicts_with``.
    """

    waves: list[list[str]]
    critical_path: list[str]
    critical_steps: int
    max_parallelism: int
    step_count: int
    step_orders: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (plus ``workstream_count``)."""
        return {
            "waves": [list(w) for w in self.waves],
            "critical_path": list(self.critical_path),
            "critical_steps": self.critical_steps,
            "max_parallelism": self.max_parallelism,
            "step_count": self.step_count,
            "workstream_count": sum(len(w) for w in self.waves),
            "step_orders": {k: list(v) for k, v in self.step_orders.items()},
        }


def analyze(plan: PlanGraph) -> PlanAnalysis:
    """Analyze a validated plan.

    Args:
        plan: a plan from :func:`aidp.model.loader.load_plan` (acyclic, known dependencies).

    Returns:
        The :class:`PlanAnalysis`.

    Raises:
        ValueError: the plan has a cycle (it was not validated).
    """
    order = [ws.id for ws in plan.workstreams]
    edges = {ws.id: ws.depends_on for ws in plan.workstreams}
    generations = waves(order, edges)
    steps = {ws.id: len(ws.steps) for ws in plan.workstreams}
    best: dict[str, int] = {}
    previous: dict[str, str | None] = {}
    for node in (n for wave in generations for n in wave):
        deps = [d for d in edges[node] if d in best]
        top = max(deps, key=lambda d: (best[d], -order.index(d)), default=None)
        best[node] = steps[node] + (best[top] if top is not None else 0)
        previous[node] = top
    path: list[str] = []
    if best:
        cursor: str | None = max(order, key=lambda n: (best[n], -order.index(n)))
        while cursor is not None:
            path.append(cursor)
            cursor = previous[cursor]
        path.reverse()
    conflicts = {
        frozenset((ws.id, other))
        for ws in plan.workstreams
        for other in ws.conflicts_with
        if other != ws.id
    }
    parallelism = max((len(largest_conflict_free(w, conflicts)) for w in generations), default=0)
    return PlanAnalysis(
        waves=generations,
        critical_path=path,
        critical_steps=best[path[-1]] if path else 0,
        max_parallelism=parallelism,
        step_count=plan.step_count,
        step_orders={ws.id: step_order(ws) for ws in plan.workstreams},
    )
