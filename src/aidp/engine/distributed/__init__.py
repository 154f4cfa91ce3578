"""Attempts on a Dask cluster (the ``distributed`` extra): the executor's backend for many
machines.

The orchestrator keeps deciding and recording; only an attempt's *invoke* phase -- tool,
checks, checkpoint commit -- runs on a worker, in the worker's own clone, with the workstream's
branch passed through a shared git remote by compare-and-swap pushes:

* :class:`~aidp.engine.distributed.executor.DaskExecutor` (the orchestrator's side, chosen by
  ``[executor] kind = "dask"`` or ``--executor dask``);
* :func:`~aidp.engine.distributed.attempt.run_remote_attempt` (the function a worker runs);
* :func:`~aidp.engine.distributed.worker.serve_worker` (``aidp worker``);
* :mod:`~aidp.engine.distributed.remote` (fetch, compare-and-swap push).

Importing this package imports neither Dask nor the executor: they are imported where used, so
``aidp --help`` and local runs never pay for them.
"""

from __future__ import annotations

__all__: list[str] = []
