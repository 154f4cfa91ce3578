"""The application layer: the one door through which the interfaces (the CLI, next the REST
API) read and change aidp's state.

Queries return read models (frozen views whose ``to_dict()`` is the JSON an interface prints or
serves); commands change runs, proposals, breakers and the worktree pool by calling the engine,
the breaker book and the pool, which own the rules. Every function takes an
:class:`AppContext`: a repository opened with its settings, which alone builds the store.

Interfaces import nothing of :mod:`aidp.state`, :mod:`aidp.engine` or
:mod:`aidp.workspace.worktrees` (``tests/test_architecture.py`` pins it for the CLI). Importing
this package is cheap: the store, the engine and git are imported by the function that needs
them, which keeps ``aidp --help`` fast.
"""

from __future__ import annotations

from aidp.app.changes import compile_change
from aidp.app.commands import (
    cancel_run,
    create_run,
    decide_gate,
    drive_run,
    prune_worktrees,
    replay_step,
    reset_breaker,
    rollback_run,
    uncommitted_changes,
)
from aidp.app.context import AppContext
from aidp.app.proposals import (
    act_on_proposal,
    finish_change,
    get_proposal,
    list_proposals,
    start_change,
    sync_specs,
)
from aidp.app.queries import (
    get_attempt,
    get_diagnostics,
    get_run,
    get_usage,
    list_attempts,
    list_breakers,
    list_events,
    list_findings,
    list_runs,
    list_worktrees,
    resolve_run,
    resolve_step,
    run_plan,
    split_step_ref,
)
from aidp.app.views import (
    AttemptView,
    BreakerView,
    CancelOutcome,
    CompensationView,
    DiagnosticsView,
    EventView,
    FindingView,
    GateView,
    ProposalActOutcome,
    ProposalDetailView,
    ProposalView,
    PruneOutcome,
    ReopenedView,
    RollbackOutcome,
    RunListItemView,
    RunView,
    SpecSyncOutcome,
    StepRef,
    StepView,
    TransitionView,
    UsageView,
    WorkstreamView,
    WorktreeView,
    iso_ts,
)

__all__ = [
    "AppContext",
    "AttemptView",
    "BreakerView",
    "CancelOutcome",
    "CompensationView",
    "DiagnosticsView",
    "EventView",
    "FindingView",
    "GateView",
    "ProposalActOutcome",
    "ProposalDetailView",
    "ProposalView",
    "PruneOutcome",
    "ReopenedView",
    "RollbackOutcome",
    "RunListItemView",
    "RunView",
    "SpecSyncOutcome",
    "StepRef",
    "StepView",
    "TransitionView",
    "UsageView",
    "WorkstreamView",
    "WorktreeView",
    "act_on_proposal",
    "cancel_run",
    "compile_change",
    "create_run",
    "decide_gate",
    "drive_run",
    "finish_change",
    "get_attempt",
    "get_diagnostics",
    "get_proposal",
    "get_run",
    "get_usage",
    "iso_ts",
    "list_attempts",
    "list_breakers",
    "list_events",
    "list_findings",
    "list_proposals",
    "list_runs",
    "list_worktrees",
    "prune_worktrees",
    "replay_step",
    "reset_breaker",
    "resolve_run",
    "resolve_step",
    "rollback_run",
    "run_plan",
    "split_step_ref",
    "start_change",
    "sync_specs",
    "uncommitted_changes",
]
