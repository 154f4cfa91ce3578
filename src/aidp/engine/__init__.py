"""The engine: drives runs. Its rooms, by role:

- :mod:`~aidp.engine.runtime`: the runtime records (steps, workstreams, attempt reports); pure.
- :mod:`~aidp.engine.run`: creating a run (``new_run_id``, ``preflight``, ``create_run``) and
  what driving one reports (``Reporter``, ``RunSummary``).
- the **Orchestrator** (:mod:`~aidp.engine.orchestrator`, ``drive_run``): one run's lease,
  worker threads and scheduling loop, with its ledger (:mod:`~aidp.engine.ledger`), resume path
  (:mod:`~aidp.engine.resume`), workstream lifecycle (:mod:`~aidp.engine.lifecycle`) and
  merge queues (:mod:`~aidp.engine.mergequeue`: integration checks before a target moves).
- the **Scheduler** (:mod:`~aidp.engine.scheduler`): which steps may start now; pure.
- the **Executor** (:mod:`~aidp.engine.executor`): one attempt, in phases -- admission
  (:mod:`~aidp.engine.admission`), invocation (:mod:`~aidp.engine.invocation`), judgement
  (:mod:`~aidp.engine.outcome`, :mod:`~aidp.engine.diagnosis`), record.
- :mod:`~aidp.engine.compensation` (undo actions), :mod:`~aidp.engine.control` (cancel,
  rollback) and :mod:`~aidp.engine.retention` (which finished runs' branches may go).

The other roles of the architecture document live below the engine, which calls them: the
**State Manager** is :mod:`aidp.state` (store, transactions, leases), the **Checkpoint Manager**
:mod:`aidp.workspace.checkpoint`, the **Error Engine** :mod:`aidp.errors`, the **Plugin Manager**
:mod:`aidp.errors.manager` (detectors) with :mod:`aidp.tools.registry` (adapters), the **Retry
Manager** :mod:`aidp.resilience` (retry schedule, recovery decision, circuit breaker).

The vocabulary it works in (states, DAG code, the clock) lives in :mod:`aidp.core`. Import the
modules themselves: this package imports nothing, so that importing one room does not pay for the
orchestrator's database and git imports.
"""

from __future__ import annotations

__all__: list[str] = []
