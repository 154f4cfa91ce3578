"""Store operations on change proposals (tables ``proposals`` and ``proposal_transitions``).

Rows are named tuples with the columns of those tables; states are the values of
:class:`aidp.core.states.ProposalState`. :mod:`aidp.specs.proposals` builds the review
lifecycle on these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aidp.state.tx import NO_RUN

if TYPE_CHECKING:
    from aidp.state.store import Store
    from aidp.state.tx import Tx

__all__ = [
    "insert_proposal",
    "insert_proposal_transition",
    "proposal",
    "proposal_history",
    "proposal_state",
    "proposals",
    "update_proposal",
]


def proposal(store: Store, change_id: str) -> Any | None:
    """The proposal row of ``change_id``, or None if it was never recorded."""
    rows = store.read("SELECT * FROM proposals WHERE change_id = :change_id",
                      {"change_id": change_id})
    return rows[0] if rows else None


def proposals(store: Store) -> list[Any]:
    """Every proposal row, by change id."""
    return store.read("SELECT * FROM proposals ORDER BY change_id")


def proposal_history(store: Store, change_id: str) -> list[Any]:
    """The transition rows of ``change_id``, oldest first."""
    return store.read("SELECT * FROM proposal_transitions WHERE change_id = :change_id "
                      "ORDER BY id", {"change_id": change_id})


def proposal_state(tx: Tx, change_id: str) -> str | None:
    """The state of ``change_id`` inside a write transaction (the row stays locked until the
    commit on PostgreSQL; SQLite's write transactions hold the whole database), or None."""
    sql = "SELECT state FROM proposals WHERE change_id = :change_id"
    if tx.dialect != "sqlite":
        sql += " FOR UPDATE"
    rows = tx.execute(sql, {"change_id": change_id})
    return str(rows[0].state) if rows else None


def insert_proposal(tx: Tx, change_id: str, state: str, title: str | None) -> None:
    tx.execute("INSERT INTO proposals (change_id, state, title, created_at, updated_at) "
               "VALUES (:change_id, :state, :title, :now, :now)",
               {"change_id": change_id, "state": state, "title": title, "now": tx.now})


def update_proposal(tx: Tx, change_id: str, state: str) -> None:
    tx.execute("UPDATE proposals SET state = :state, updated_at = :now "
               "WHERE change_id = :change_id",
               {"change_id": change_id, "state": state, "now": tx.now})


def insert_proposal_transition(tx: Tx, change_id: str, from_state: str | None, to_state: str,
                               action: str, actor: str, comment: str | None) -> None:
    """Append one move to the history (``ts`` is the transaction's time) and journal it as a
    ``proposal.transitioned`` event of no run, in the same transaction: the live stream and the
    webhooks see every review step exactly when it is recorded."""
    tx.execute("INSERT INTO proposal_transitions "
               "(change_id, from_state, to_state, action, actor, comment, ts) "
               "VALUES (:change_id, :from_state, :to_state, :action, :actor, :comment, :ts)",
               {"change_id": change_id, "from_state": from_state, "to_state": to_state,
                "action": action, "actor": actor, "comment": comment, "ts": tx.now})
    tx.event(NO_RUN, "proposal.transitioned", change=change_id, action=action, by=actor,
             comment=comment, **{"from": from_state, "to": to_state})
