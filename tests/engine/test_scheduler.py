"""pick_ready with hand-built runtimes: slots, one step per workstream, dependencies,
conflicts, tool limits, retry timing and critical-path ranking."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aidp.core.dag import step_order
from aidp.core.states import StepState, WorkstreamState
from aidp.engine.runtime import StepRuntime, WorkstreamRuntime, branch_name
from aidp.engine.scheduler import chain_ranks, conflict_map, next_step, pick_ready
from aidp.model.scope import compile_scope
from aidp.model.workstream import Workstream

NOW = 1000.0


class World:
    """Runtimes for a list of workstream specs, plus a pick() with sensible defaults."""

    def __init__(self, *specs: dict[str, Any]) -> None:
        self.ws: dict[str, WorkstreamRuntime] = {}
        self.steps: dict[str, StepRuntime] = {}
        for spec in specs:
            ws = Workstream.model_validate(spec)
            self.ws[ws.id] = WorkstreamRuntime(
                ws=ws, state=WorkstreamState.PENDING, branch=branch_name("R", ws.id),
                base_ref="0" * 40, scope=compile_scope(ws.scope), step_order=step_order(ws),
            )
            for step in ws.steps:
                self.steps[f"{ws.id}/{step.id}"] = StepRuntime(ws.id, step, StepState.PENDING)

    def pick(self, **kw: Any) -> list[str]:
        args: dict[str, Any] = {"busy": set(), "running_tools": Counter(), "tool_limits": {},
                                    "slots": 8, "now": NOW, "ranks": chain_ranks(self.ws),
                                    "conflicts": conflict_map(self.ws)}
        args.update(kw)
        return [sr.key for _, sr in pick_ready(self.ws, self.steps, **args)]

    def set(self, key: str, state: StepState, **kw: Any) -> None:
        self.steps[key].state = state
        for name, value in kw.items():
            setattr(self.steps[key], name, value)


def ws(ws_id: str, *steps: str | dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A workstream spec; a step given as a string is an independent shell step."""
    return {"id": ws_id, "steps": [{"id": s, "run": "true"} if isinstance(s, str) else s
                                   for s in steps] or [{"id": "s", "run": "true"}], **extra}


def test_slots_are_respected() -> None:
    """No more than ``slots`` steps are chosen; zero slots choose nothing."""
    world = World(*[ws(f"w{i}") for i in range(5)])
    assert len(world.pick(slots=3)) == 3
    assert world.pick(slots=0) == []
    assert world.pick(slots=-1) == []
    assert len(world.pick(slots=10)) == 5


def test_one_step_at_a_time_per_workstream() -> None:
    """A workstream with independent steps starts only one; a busy workstream starts none."""
    world = World(ws("a", "s1", "s2", "s3"))
    assert world.pick() == ["a/s1"]
    world.ws["a"].state = WorkstreamState.RUNNING
    assert world.pick(busy={"a"}) == []


def test_step_dependencies() -> None:
    """A step waits until every step it depends on completed."""
    world = World(ws("a", "s1", {"id": "s2", "run": "true", "depends_on": ["s1"]}, "s3"))
    world.ws["a"].state = WorkstreamState.RUNNING
    world.set("a/s1", StepState.RUNNING)
    assert world.pick(busy=set()) == ["a/s3"]
    world.set("a/s3", StepState.COMPLETED)
    assert world.pick() == []
    world.set("a/s1", StepState.FAILED)
    assert world.pick() == []
    world.set("a/s1", StepState.COMPLETED)
    assert world.pick() == ["a/s2"]


def test_workstream_dependencies() -> None:
    """A workstream starts only when every workstream it depends on completed."""
    world = World(ws("a"), ws("b"), ws("c", depends_on=["a", "b"]))
    assert sorted(world.pick()) == ["a/s", "b/s"]
    world.ws["a"].state = WorkstreamState.COMPLETED
    world.ws["b"].state = WorkstreamState.RUNNING
    assert "c/s" not in world.pick(busy={"b"})
    world.ws["b"].state = WorkstreamState.FAILED
    assert world.pick() == []
    world.ws["b"].state = WorkstreamState.COMPLETED
    assert world.pick() == ["c/s"]


def test_finished_workstreams_are_never_picked() -> None:
    """Workstreams in a terminal state start nothing even with pending steps."""
    world = World(*[ws(f"w{i}") for i in range(4)])
    for wsr, state in zip(world.ws.values(), [WorkstreamState.FAILED, WorkstreamState.SKIPPED,
                                              WorkstreamState.CANCELLED,
                                              WorkstreamState.COMPLETED]):
        wsr.state = state
    assert world.pick() == []


def test_conflict_map_is_symmetric() -> None:
    """conflicts_with declared on one side binds both; unknown ids are ignored."""
    world = World(ws("a", conflicts_with=["b", "zzz"]), ws("b"), ws("c"))
    assert conflict_map(world.ws) == {"a": frozenset({"b"}), "b": frozenset({"a"}),
                                      "c": frozenset()}


def test_conflicting_workstreams_never_start_together() -> None:
    """Of two conflicting pending workstreams only one starts in the same pick."""
    world = World(ws("a", conflicts_with=["b"]), ws("b"), ws("c"))
    picked = world.pick()
    assert "c/s" in picked
    assert len({"a/s", "b/s"} & set(picked)) == 1


def test_conflict_waits_while_the_other_is_running() -> None:
    """A workstream does not start while one it conflicts with is running (declared either way)."""
    world = World(ws("a", "s1", "s2"), ws("b", conflicts_with=["a"]))
    world.ws["a"].state = WorkstreamState.RUNNING
    world.set("a/s1", StepState.COMPLETED)
    assert world.pick() == ["a/s2"]
    assert world.pick(busy={"a"}) == []
    world.ws["a"].state = WorkstreamState.COMPLETED
    assert world.pick() == ["b/s"]


def test_tool_concurrency_limit() -> None:
    """Steps of a profile with a limit never exceed it, counting those already running."""
    world = World(*[ws(f"w{i}", {"id": "s", "run": "true", "tool": "slow"}) for i in range(4)],
                  ws("x"))
    picked = world.pick(tool_limits={"slow": 2})
    assert max(picked) == "x/s" and len(picked) == 3
    picked = world.pick(tool_limits={"slow": 2}, running_tools=Counter({"slow": 1}))
    assert len([k for k in picked if k.startswith("w")]) == 1
    assert len(world.pick(tool_limits={"slow": 0})) == 5  # 0 means no limit


def test_retrying_step_only_when_due() -> None:
    """A retrying step starts once next_attempt_at has come, not before."""
    world = World(ws("a", "s1", "s2"))
    world.ws["a"].state = WorkstreamState.RUNNING
    world.set("a/s1", StepState.RETRYING, next_attempt_at=NOW + 5)
    assert world.pick() == ["a/s2"]  # the other independent step may go meanwhile
    world.set("a/s2", StepState.COMPLETED)
    assert world.pick() == []
    assert world.pick(now=NOW + 5) == ["a/s1"]
    assert next_step(world.ws["a"], world.steps, NOW + 4.99) is None


def test_a_long_chain_is_scanned_from_its_first_open_step() -> None:
    """With the workstream's steps in order (as the orchestrator keeps them), the completed
    ones before the first open step are skipped once, not at every step; a step reopened by a
    rollback is found again."""
    chain = [{"id": "s0", "run": "true"}] + [
        {"id": f"s{i}", "run": "true", "depends_on": [f"s{i - 1}"]} for i in range(1, 5)]
    world = World(ws("c", *chain))
    wsr = world.ws["c"]
    wsr.steps = [world.steps[f"c/{s}"] for s in wsr.step_order]
    wsr.state = WorkstreamState.RUNNING
    for i in range(3):
        world.set(f"c/s{i}", StepState.COMPLETED)
    sr = next_step(wsr, world.steps, NOW)
    assert sr is not None and sr.key == "c/s3" and wsr.settled == 3
    assert not wsr.only_open(sr)  # s4 is still to run
    world.set("c/s3", StepState.RUNNING)
    world.set("c/s4", StepState.COMPLETED)
    assert wsr.only_open(sr)
    world.set("c/s1", StepState.PENDING)  # rolled back
    wsr.reopened()
    assert [s.key for s in wsr.open_steps()] == ["c/s1", "c/s3"]


def test_active_workstreams_go_first() -> None:
    """A running workstream is picked before pending ones, whatever their rank."""
    world = World(ws("short"), ws("long", "s1", "s2", "s3", "s4"))
    world.ws["short"].state = WorkstreamState.RUNNING
    assert world.pick(slots=1) == ["short/s"]


def test_critical_path_first() -> None:
    """With one slot the start of the longest chain of dependants is picked."""
    world = World(ws("lone", "s1", "s2"), ws("head"), ws("mid", depends_on=["head"]),
                  ws("tail", "s1", "s2", depends_on=["mid"]))
    ranks = chain_ranks(world.ws)
    assert ranks == {"lone": 2, "head": 4, "mid": 3, "tail": 2}
    assert world.pick(slots=1) == ["head/s"]


def test_chain_ranks_take_the_longest_branch() -> None:
    """A workstream's rank is its steps plus its longest chain of dependants."""
    world = World(ws("root"), ws("a", depends_on=["root"]),
                  ws("b", "s1", "s2", "s3", depends_on=["root"]), ws("c", depends_on=["a"]))
    assert chain_ranks(world.ws)["root"] == 4


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    conflicts=st.sets(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=6),
    running=st.sets(st.integers(0, 5), max_size=3),
    slots=st.integers(0, 6),
    limit=st.integers(0, 2),
)
def test_pick_ready_invariants(n: int, conflicts: set[tuple[int, int]], running: set[int],
                               slots: int, limit: int) -> None:
    """Whatever the state: at most slots, one step per workstream, none busy, conflicting
    workstreams never active together, the tool limit kept."""
    specs = []
    for i in range(n):
        others = sorted({f"w{b}" for a, b in conflicts if a == i and b != i and b < n})
        specs.append(ws(f"w{i}", {"id": "s1", "run": "true", "tool": "t"}, "s2",
                        conflicts_with=others))
    world = World(*specs)
    cmap = conflict_map(world.ws)
    busy: set[str] = set()
    for i in sorted(running):
        wid = f"w{i}"
        if i < n and cmap[wid].isdisjoint(busy):
            world.ws[wid].state = WorkstreamState.RUNNING
            world.set(f"{wid}/s1", StepState.RUNNING)
            busy.add(wid)
    tools = Counter({"t": len(busy)})
    picked = pick_ready(world.ws, world.steps, busy=busy, running_tools=tools,
                        tool_limits={"t": limit}, slots=slots, now=NOW,
                        ranks=chain_ranks(world.ws), conflicts=cmap)
    ids = [w.ws.id for w, _ in picked]
    assert len(picked) <= max(slots, 0)
    assert len(ids) == len(set(ids))
    assert not set(ids) & busy
    active = busy | set(ids)
    for wid in active:
        assert cmap[wid].isdisjoint(active - {wid})
    if limit:
        assert tools["t"] + sum(1 for _, sr in picked if sr.step.tool == "t") <= max(
            limit, tools["t"])
