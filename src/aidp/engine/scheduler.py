"""The Scheduler: which steps may start now. Pure: it reads the runtimes and returns choices;
it never writes (not the runtimes, not the store) and imports only the runtime records.

Rules: at most ``slots`` steps start; a workstream runs one step at a time (one worktree); a
workstream starts only when its dependencies completed and no workstream it conflicts with is
active; a step starts when its own dependencies completed and, if it is retrying, when its next
attempt is due; a tool profile's concurrency limit is never exceeded. Active workstreams go
first (finishing work frees worktrees), then the longest remaining chain (critical path first).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence, Set
from itertools import chain

from aidp.core.states import StepState, WorkstreamState
from aidp.engine.runtime import StepRuntime, WorkstreamRuntime

__all__ = ["chain_ranks", "conflict_map", "next_step", "pick_ready", "rank_order"]


def chain_ranks(workstreams: Mapping[str, WorkstreamRuntime]) -> dict[str, int]:
    """For each workstream, its step count plus the longest chain of dependants after it."""
    children: dict[str, list[str]] = {ws_id: [] for ws_id in workstreams}
    for ws_id, wsr in workstreams.items():
        for dep in wsr.ws.depends_on:
            children[dep].append(ws_id)
    ranks: dict[str, int] = {}

    def rank(ws_id: str) -> int:
        if ws_id not in ranks:
            ranks[ws_id] = len(workstreams[ws_id].ws.steps) + max(
                (rank(child) for child in children[ws_id]), default=0
            )
        return ranks[ws_id]

    for ws_id in workstreams:
        rank(ws_id)
    return ranks


def rank_order(workstreams: Mapping[str, WorkstreamRuntime], ranks: Mapping[str, int]
               ) -> list[WorkstreamRuntime]:
    """The workstreams by decreasing rank (ties: in the given order), for ``pick_ready``'s
    ``order``: computed once per run instead of sorted at every scheduling round."""
    return sorted(workstreams.values(), key=lambda w: -ranks.get(w.ws.id, 0))


def next_step(wsr: WorkstreamRuntime, steps: Mapping[str, StepRuntime], now: float,
              waived: Set[str] = frozenset()) -> StepRuntime | None:
    """The first step of ``wsr`` (in topological order) that may start at ``now``.

    A dependency is satisfied when it completed or its key (``ws/step``) is in ``waived``
    (skipped by the user).
    """
    candidates = (wsr.open_steps() if wsr.steps
                  else (steps[f"{wsr.ws.id}/{s}"] for s in wsr.step_order))
    for sr in candidates:
        if sr.state.terminal:
            continue
        due = sr.state is StepState.PENDING or (
            sr.state in (StepState.RETRYING, StepState.CIRCUIT_OPEN)
            and (sr.next_attempt_at or 0.0) <= now
        )
        if due and all(steps[key].state is StepState.COMPLETED or key in waived
                       for key in (f"{wsr.ws.id}/{d}" for d in sr.step.depends_on)):
            return sr
    return None


def pick_ready(
    workstreams: Mapping[str, WorkstreamRuntime],
    steps: Mapping[str, StepRuntime],
    *,
    busy: Set[str],
    running_tools: Counter[str],
    tool_limits: Mapping[str, int],
    slots: int,
    now: float,
    ranks: Mapping[str, int],
    conflicts: Mapping[str, frozenset[str]],
    waived: Set[str] = frozenset(),
    order: Sequence[WorkstreamRuntime] | None = None,
) -> list[tuple[WorkstreamRuntime, StepRuntime]]:
    """Choose up to ``slots`` (workstream, step) pairs to start now.

    ``busy``: workstreams with a step in flight; ``running_tools``: steps in flight per profile;
    ``tool_limits``: profile -> max concurrent steps (0 or absent: no limit);
    ``ranks``: from :func:`chain_ranks`; ``conflicts``: from :func:`conflict_map`;
    ``order``: :func:`rank_order` of ``workstreams``, possibly without finished ones (the
    caller keeps it, saving a sort per call).
    """
    if slots <= 0:
        return []
    if order is None:
        order = rank_order(workstreams, ranks)
    running = [w for w in order if w.state is WorkstreamState.RUNNING]
    active = {w.ws.id for w in running}
    tools = Counter(running_tools)
    chosen: list[tuple[WorkstreamRuntime, StepRuntime]] = []
    # Active workstreams first (finishing work frees worktrees), then pending ones by rank.
    for wsr in chain(running, (w for w in order if w.state is WorkstreamState.PENDING)):
        if len(chosen) >= slots:
            break
        ws_id = wsr.ws.id
        if ws_id in busy:
            continue
        if wsr.state is WorkstreamState.PENDING:
            if not all(workstreams[d].delivered for d in wsr.ws.depends_on):
                continue
            if not conflicts.get(ws_id, frozenset()).isdisjoint(active):
                continue
        sr = next_step(wsr, steps, now, waived)
        if sr is None:
            continue
        limit = tool_limits.get(sr.step.tool, 0)
        if limit and tools[sr.step.tool] >= limit:
            continue
        tools[sr.step.tool] += 1
        chosen.append((wsr, sr))
        if wsr.state is WorkstreamState.PENDING:
            active.add(ws_id)  # later candidates must see it as active for conflict rules
    return chosen


def conflict_map(workstreams: Mapping[str, WorkstreamRuntime]) -> dict[str, frozenset[str]]:
    """For each workstream, those that must not run together with it (symmetric)."""
    pairs: dict[str, set[str]] = {ws_id: set() for ws_id in workstreams}
    for ws_id, wsr in workstreams.items():
        for other in wsr.ws.conflicts_with:
            if other in pairs:
                pairs[ws_id].add(other)
                pairs[other].add(ws_id)
    return {ws_id: frozenset(others) for ws_id, others in pairs.items()}
