"""Change proposals as state: each OpenSpec change's review lifecycle, kept in the run database.

Unlike the spec index (a cache rebuilt from files), who approved what, when and with which
comment cannot be rebuilt from the Markdown, so it lives in the run database (tables
``proposals`` and ``proposal_transitions``, migration 0004). Every move goes through
:func:`aidp.specs.lifecycle.transition` and is recorded with actor, time and comment, in one
write transaction that re-reads the current state (two reviewers cannot both move it from the
same state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aidp.exceptions import NotFoundError
from aidp.specs.lifecycle import ProposalAction, ProposalState, transition
from aidp.state import proposals as ops

if TYPE_CHECKING:
    from aidp.state.store import Store

__all__ = ["ProposalBook", "ProposalRecord", "TransitionRecord"]


@dataclass(frozen=True)
class ProposalRecord:
    """A proposal's current state."""

    change_id: str
    state: ProposalState
    title: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class TransitionRecord:
    """One recorded move."""

    from_state: ProposalState | None
    to_state: ProposalState
    action: str
    actor: str
    comment: str | None
    ts: float


class ProposalBook:
    """Proposals of one database (a :class:`~aidp.state.store.Store`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, change_id: str) -> ProposalRecord | None:
        """The proposal of ``change_id``, or None if it was never recorded."""
        row = ops.proposal(self.store, change_id)
        return None if row is None else _record(row)

    def all(self) -> list[ProposalRecord]:
        """Every recorded proposal, by change id."""
        return [_record(row) for row in ops.proposals(self.store)]

    def history(self, change_id: str) -> list[TransitionRecord]:
        """Every recorded move of ``change_id``, oldest first."""
        return [TransitionRecord(ProposalState(r.from_state) if r.from_state else None,
                                 ProposalState(r.to_state), r.action, r.actor, r.comment, r.ts)
                for r in ops.proposal_history(self.store, change_id)]

    def ensure(self, change_id: str, title: str | None, actor: str) -> ProposalRecord:
        """Record ``change_id`` as a draft if it is not recorded yet."""
        with self.store.write() as tx:
            if ops.proposal_state(tx, change_id) is None:
                draft = ProposalState.DRAFT.value
                ops.insert_proposal(tx, change_id, draft, title)
                ops.insert_proposal_transition(tx, change_id, None, draft, "create", actor, None)
        found = self.get(change_id)
        assert found is not None
        return found

    def act(self, change_id: str, action: ProposalAction, actor: str,
            comment: str | None = None) -> ProposalRecord:
        """Apply ``action``; IllegalProposalTransition (nothing written) if the state forbids
        it, NotFoundError if the proposal was never recorded."""
        with self.store.write() as tx:
            state = ops.proposal_state(tx, change_id)
            if state is None:
                raise NotFoundError(f"no proposal for change {change_id!r}",
                                    hint=f"`aidp proposals submit {change_id}` records it")
            current = ProposalState(state)
            new = transition(current, action)
            ops.update_proposal(tx, change_id, new.value)
            ops.insert_proposal_transition(tx, change_id, current.value, new.value,
                                           action.value, actor, comment)
        found = self.get(change_id)
        assert found is not None
        return found


def _record(row: Any) -> ProposalRecord:
    return ProposalRecord(row.change_id, ProposalState(row.state), row.title, row.created_at,
                          row.updated_at)
