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
from typing import TYPE_CHECKING

from sqlalchemy import insert, select, update

from aidp.exceptions import NotFoundError
from aidp.specs.lifecycle import ProposalAction, ProposalState, transition
from aidp.state.tables import proposal_transitions, proposals

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
        with self.store.reader.connect() as conn:
            row = conn.execute(select(proposals).where(
                proposals.c.change_id == change_id)).first()
        if row is None:
            return None
        return ProposalRecord(row.change_id, ProposalState(row.state), row.title,
                              row.created_at, row.updated_at)

    def all(self) -> list[ProposalRecord]:
        """Every recorded proposal, by change id."""
        with self.store.reader.connect() as conn:
            rows = conn.execute(select(proposals).order_by(proposals.c.change_id)).all()
        return [ProposalRecord(r.change_id, ProposalState(r.state), r.title, r.created_at,
                               r.updated_at) for r in rows]

    def history(self, change_id: str) -> list[TransitionRecord]:
        """Every recorded move of ``change_id``, oldest first."""
        with self.store.reader.connect() as conn:
            rows = conn.execute(select(proposal_transitions).where(
                proposal_transitions.c.change_id == change_id).order_by(
                proposal_transitions.c.id)).all()
        return [TransitionRecord(ProposalState(r.from_state) if r.from_state else None,
                                 ProposalState(r.to_state), r.action, r.actor, r.comment, r.ts)
                for r in rows]

    def ensure(self, change_id: str, title: str | None, actor: str) -> ProposalRecord:
        """Record ``change_id`` as a draft if it is not recorded yet."""
        with self.store.write() as tx:
            row = tx.conn.execute(select(proposals.c.state).where(
                proposals.c.change_id == change_id)).first()
            if row is None:
                tx.conn.execute(insert(proposals).values(
                    change_id=change_id, state=ProposalState.DRAFT.value, title=title,
                    created_at=tx.now, updated_at=tx.now))
                tx.conn.execute(insert(proposal_transitions).values(
                    change_id=change_id, from_state=None, to_state=ProposalState.DRAFT.value,
                    action="create", actor=actor, comment=None, ts=tx.now))
        found = self.get(change_id)
        assert found is not None
        return found

    def act(self, change_id: str, action: ProposalAction, actor: str,
            comment: str | None = None) -> ProposalRecord:
        """Apply ``action``; IllegalProposalTransition (nothing written) if the state forbids
        it, NotFoundError if the proposal was never recorded."""
        with self.store.write() as tx:
            row = tx.conn.execute(select(proposals.c.state).where(
                proposals.c.change_id == change_id)).first()
            if row is None:
                raise NotFoundError(f"no proposal for change {change_id!r}",
                                    hint=f"`aidp proposals submit {change_id}` records it")
            current = ProposalState(row.state)
            new = transition(current, action)
            tx.conn.execute(update(proposals).where(proposals.c.change_id == change_id).values(
                state=new.value, updated_at=tx.now))
            tx.conn.execute(insert(proposal_transitions).values(
                change_id=change_id, from_state=current.value, to_state=new.value,
                action=action.value, actor=actor, comment=comment, ts=tx.now))
        found = self.get(change_id)
        assert found is not None
        return found
