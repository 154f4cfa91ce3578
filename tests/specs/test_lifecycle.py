"""The proposal lifecycle: every (from, to) pair and every (state, action) pair."""

from __future__ import annotations

import itertools

import pytest

from aidp.specs.lifecycle import (
    ACTIONS,
    PROPOSAL_TRANSITIONS,
    IllegalProposalTransition,
    ProposalAction,
    ProposalState,
    check_transition,
    transition,
)

S, A = ProposalState, ProposalAction
EXPECTED = {
    (S.DRAFT, S.REVIEW), (S.DRAFT, S.REJECTED),
    (S.REVIEW, S.APPROVED), (S.REVIEW, S.CHANGES_REQUESTED), (S.REVIEW, S.REJECTED),
    (S.CHANGES_REQUESTED, S.DRAFT), (S.CHANGES_REQUESTED, S.REVIEW),
    (S.CHANGES_REQUESTED, S.REJECTED),
    (S.APPROVED, S.IN_PROGRESS), (S.APPROVED, S.REJECTED),
    (S.REJECTED, S.DRAFT),
    (S.IN_PROGRESS, S.APPLIED), (S.IN_PROGRESS, S.APPROVED),
    (S.APPLIED, S.ARCHIVED),
}


@pytest.mark.parametrize("current,new", list(itertools.product(S, S)),
                         ids=[f"{a.value}->{b.value}" for a, b in itertools.product(S, S)])
def test_every_pair(current: ProposalState, new: ProposalState) -> None:
    """check_transition allows exactly the pairs of the documented diagram."""
    if (current, new) in EXPECTED:
        assert check_transition(current, new) is new
    else:
        with pytest.raises(IllegalProposalTransition, match=f"{current.value} -> {new.value}"):
            check_transition(current, new)


def test_table_is_the_diagram() -> None:
    """The table has a row per state and lists exactly the expected moves."""
    assert set(PROPOSAL_TRANSITIONS) == set(S)
    assert {(a, b) for a, targets in PROPOSAL_TRANSITIONS.items() for b in targets} == EXPECTED


@pytest.mark.parametrize("state,action", list(itertools.product(S, A)),
                         ids=[f"{s.value}:{a.value}" for s, a in itertools.product(S, A)])
def test_every_action_from_every_state(state: ProposalState, action: ProposalAction) -> None:
    """An action leads to its target from its source states and is refused elsewhere, with a
    hint naming what is possible."""
    sources, target = ACTIONS[action]
    if state in sources:
        assert transition(state, action) is target
    else:
        with pytest.raises(IllegalProposalTransition) as caught:
            transition(state, action)
        assert caught.value.exit_code == 4 and caught.value.hint


def test_every_move_has_an_action() -> None:
    """Each allowed move is reachable through exactly one action (no dead rows)."""
    moves = {(s, target) for action, (sources, target) in ACTIONS.items() for s in sources}
    assert moves == EXPECTED


def test_archived_is_final() -> None:
    """Nothing leaves archived."""
    assert S.ARCHIVED.terminal and PROPOSAL_TRANSITIONS[S.ARCHIVED] == frozenset()
