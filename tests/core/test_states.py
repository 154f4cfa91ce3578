"""Transition tables of runs, workstreams, steps and attempts: every (from, to) pair."""

from __future__ import annotations

import itertools
from enum import Enum
from typing import Any

import pytest

from aidp.core.states import (
    ATTEMPT_TRANSITIONS,
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    WORKSTREAM_TRANSITIONS,
    AttemptOutcome,
    RunState,
    StepState,
    WorkstreamState,
    check,
)
from aidp.exceptions import IllegalTransition

TABLES: dict[str, tuple[type[Enum], dict[Any, frozenset[Any]]]] = {
    "run": (RunState, RUN_TRANSITIONS),
    "workstream": (WorkstreamState, WORKSTREAM_TRANSITIONS),
    "step": (StepState, STEP_TRANSITIONS),
}


def _pairs() -> list[Any]:
    return [
        pytest.param(name, a, b, id=f"{name}:{a.value}->{b.value}")
        for name, (enum, _) in TABLES.items()
        for a, b in itertools.product(enum, enum)
    ]


@pytest.mark.parametrize(("name", "current", "new"), _pairs())
def test_check_allows_exactly_the_table(name: str, current: Any, new: Any) -> None:
    """check() allows a pair iff the table lists it (or it stays put), else IllegalTransition."""
    _, table = TABLES[name]
    if current is new or new in table[current]:
        assert check(table, current, new) is new
    else:
        with pytest.raises(IllegalTransition, match=f"{current.value} -> {new.value}"):
            check(table, current, new)


@pytest.mark.parametrize("name", list(TABLES))
def test_every_state_has_a_row(name: str) -> None:
    """Each table has a row for every state of its enum and names only states of that enum."""
    enum, table = TABLES[name]
    assert set(table) == set(enum)
    for targets in table.values():
        assert targets <= set(enum)


@pytest.mark.parametrize("name", list(TABLES))
def test_no_row_lists_its_own_state(name: str) -> None:
    """Staying put is implicit: no state lists itself as a target."""
    _, table = TABLES[name]
    for state, targets in table.items():
        assert state not in targets


REOPENINGS: dict[str, dict[Any, frozenset[Any]]] = {
    "run": {
        RunState.COMPLETED: frozenset({RunState.RUNNING}),
        RunState.FAILED: frozenset({RunState.RUNNING, RunState.CANCELLED}),
        RunState.CANCELLED: frozenset(),
    },
    "workstream": {
        WorkstreamState.COMPLETED: frozenset({WorkstreamState.PENDING}),
        WorkstreamState.FAILED: frozenset({WorkstreamState.PENDING}),
        WorkstreamState.SKIPPED: frozenset({WorkstreamState.PENDING}),
        WorkstreamState.CANCELLED: frozenset(),
    },
    "step": {
        StepState.COMPLETED: frozenset({StepState.PENDING}),
        # resume / interactive retry reopen; an interactive skip gives up on a failed step
        StepState.FAILED: frozenset({StepState.PENDING, StepState.SKIPPED}),
        StepState.TIMEOUT: frozenset({StepState.PENDING, StepState.SKIPPED}),
        StepState.SKIPPED: frozenset({StepState.PENDING}),
        StepState.CANCELLED: frozenset(),
    },
}


@pytest.mark.parametrize("name", list(TABLES))
def test_terminal_states_leave_only_by_documented_reopenings(name: str) -> None:
    """A terminal state leads nowhere except the documented reopenings; cancelled is final."""
    enum, table = TABLES[name]
    terminal = {s for s in enum if s.terminal}  # type: ignore[attr-defined]
    assert terminal == set(REOPENINGS[name])
    for state in terminal:
        assert table[state] == REOPENINGS[name][state]


@pytest.mark.parametrize(
    ("state", "terminal"),
    [*[(s, s in {RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED}) for s in RunState],
     *[(s, s not in {WorkstreamState.PENDING, WorkstreamState.RUNNING}) for s in WorkstreamState],
     *[(s, s in {StepState.COMPLETED, StepState.FAILED, StepState.TIMEOUT, StepState.SKIPPED,
                 StepState.CANCELLED}) for s in StepState]],
    ids=lambda v: f"{type(v).__name__}.{v.value}" if isinstance(v, Enum) else str(v),
)
def test_terminal_property(state: Any, terminal: bool) -> None:
    """The terminal property marks exactly the final states of each enum."""
    assert state.terminal is terminal


def test_only_completed_step_succeeded() -> None:
    """StepState.succeeded is true for completed only."""
    assert [s for s in StepState if s.succeeded] == [StepState.COMPLETED]


def test_non_terminal_states_can_always_be_cancelled() -> None:
    """Every non-terminal run, workstream and step state can move to cancelled."""
    for enum, table in TABLES.values():
        for state in enum:
            if not state.terminal:  # type: ignore[attr-defined]
                assert enum("cancelled") in table[state], state


@pytest.mark.parametrize(
    ("current", "new"),
    [pytest.param(a, b, id=f"{a.value if a else 'none'}->{b.value}")
     for a, b in itertools.product([None, *AttemptOutcome], AttemptOutcome)],
)
def test_attempt_outcome_is_set_once(current: AttemptOutcome | None, new: AttemptOutcome) -> None:
    """An attempt gets exactly one outcome: from None to any, never from one outcome to another."""
    allowed = new in ATTEMPT_TRANSITIONS[current]
    assert allowed is (current is None)


def test_attempt_table_covers_every_outcome() -> None:
    """ATTEMPT_TRANSITIONS has a row for None and each outcome; outcomes are final."""
    assert set(ATTEMPT_TRANSITIONS) == {None, *AttemptOutcome}
    assert ATTEMPT_TRANSITIONS[None] == frozenset(AttemptOutcome)


def test_illegal_transition_names_the_enum() -> None:
    """The IllegalTransition message names the enum and both states."""
    with pytest.raises(IllegalTransition) as info:
        check(RUN_TRANSITIONS, RunState.CANCELLED, RunState.RUNNING)
    assert str(info.value) == "RunState: cancelled -> running"
