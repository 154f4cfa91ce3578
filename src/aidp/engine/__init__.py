"""The engine: the scheduler,
the executor (one attempt), the orchestrator (a run's lifecycle) and run control (cancel,
rollback).

The vocabulary it works in (states, DAG code, the clock) lives in :mod:`aidp.core`. Import the
modules themselves: this package imports nothing, so that importing one room does not pay for the
orchestrator's database and git imports.
"""

from __future__ import annotations

__all__: list[str] = []
