"""The lifecycle of a change proposal: states, actions and the one transition table.

::

    draft --submit--> review --approve--> approved --start--> in_progress --apply--> applied
      ^                 |  \\                 |                    |                  |
      |                 |   request-changes   reject               (run failed:        archive
      |                 |        v            v                     back to approved)   v
      +---reopen--- changes_requested     rejected ---reopen--> draft              archived

Pure data and functions, no I/O: :func:`transition` says where an action leads from a state, or
raises :class:`IllegalProposalTransition` naming the state, the action and what is allowed.
"""

from __future__ import annotations

from enum import Enum

from aidp.core.states import ProposalState  # re-exported: the lifecycle's vocabulary
from aidp.exceptions import StateError

__all__ = [
    "ACTIONS",
    "PROPOSAL_TRANSITIONS",
    "IllegalProposalTransition",
    "ProposalAction",
    "ProposalState",
    "check_transition",
    "transition",
]


class ProposalAction(str, Enum):
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request-changes"
    REOPEN = "reopen"
    START = "start"
    APPLY = "apply"
    ABORT = "abort"
    ARCHIVE = "archive"


S = ProposalState
PROPOSAL_TRANSITIONS: dict[ProposalState, frozenset[ProposalState]] = {
    S.DRAFT: frozenset({S.REVIEW, S.REJECTED}),
    S.REVIEW: frozenset({S.APPROVED, S.CHANGES_REQUESTED, S.REJECTED}),
    S.CHANGES_REQUESTED: frozenset({S.DRAFT, S.REVIEW, S.REJECTED}),
    S.APPROVED: frozenset({S.IN_PROGRESS, S.REJECTED}),
    S.REJECTED: frozenset({S.DRAFT}),
    S.IN_PROGRESS: frozenset({S.APPLIED, S.APPROVED}),
    S.APPLIED: frozenset({S.ARCHIVED}),
    S.ARCHIVED: frozenset(),
}

A = ProposalAction
# action -> (states it may start from, state it leads to)
ACTIONS: dict[ProposalAction, tuple[frozenset[ProposalState], ProposalState]] = {
    A.SUBMIT: (frozenset({S.DRAFT, S.CHANGES_REQUESTED}), S.REVIEW),
    A.APPROVE: (frozenset({S.REVIEW}), S.APPROVED),
    A.REJECT: (frozenset({S.DRAFT, S.REVIEW, S.CHANGES_REQUESTED, S.APPROVED}), S.REJECTED),
    A.REQUEST_CHANGES: (frozenset({S.REVIEW}), S.CHANGES_REQUESTED),
    A.REOPEN: (frozenset({S.REJECTED, S.CHANGES_REQUESTED}), S.DRAFT),
    A.START: (frozenset({S.APPROVED}), S.IN_PROGRESS),
    A.APPLY: (frozenset({S.IN_PROGRESS}), S.APPLIED),
    A.ABORT: (frozenset({S.IN_PROGRESS}), S.APPROVED),
    A.ARCHIVE: (frozenset({S.APPLIED}), S.ARCHIVED),
}


class IllegalProposalTransition(StateError):
    """The action does not fit the proposal's state; the message says what would."""


def check_transition(current: ProposalState, new: ProposalState) -> ProposalState:
    """``new`` if the table allows ``current -> new`` (staying put is not a transition)."""
    if new not in PROPOSAL_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in PROPOSAL_TRANSITIONS[current])) or "nothing"
        raise IllegalProposalTransition(f"proposal: {current.value} -> {new.value} is not "
                                        f"allowed (from {current.value}: {allowed})")
    return new


def transition(current: ProposalState, action: ProposalAction) -> ProposalState:
    """The state ``action`` leads to from ``current``; IllegalProposalTransition otherwise."""
    sources, target = ACTIONS[action]
    if current not in sources:
        can = sorted(a.value for a, (src, _) in ACTIONS.items() if current in src)
        raise IllegalProposalTransition(
            f"cannot {action.value} a proposal in state {current.value}",
            hint=("possible: " + ", ".join(can)) if can else "an archived proposal is final")
    return check_transition(current, target)
