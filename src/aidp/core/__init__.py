"""The base layer: aidp's vocabulary, which every other package points down at.

* :mod:`aidp.core.states` -- the state enums of runs, workstreams and steps, the attempt
  outcome, the failure class and the attempt kind, with their transition tables.
* :mod:`aidp.core.dag` -- pure graph code for plans (cycles, orders, waves, critical path).
* :mod:`aidp.core.clock` -- the injected clock (the wall clock, or a jumping one in tests).

Nothing here does I/O, and nothing here imports any other part of aidp except
:mod:`aidp.exceptions` (a test walks the import graph and pins that). Import the modules
themselves: this package imports nothing, so that ``aidp validate`` stays light.
"""

from __future__ import annotations

__all__: list[str] = []
