"""The engine: states and transition tables (``states``), pure DAG code (``dag``), the scheduler,
the executor (one attempt), the orchestrator (a run's lifecycle) and run control (cancel,
rollback).

Import the modules themselves: this package imports nothing, so that ``aidp validate`` (which
uses ``dag``) does not pay for the orchestrator's database and git imports.
"""

from __future__ import annotations

__all__: list[str] = []
