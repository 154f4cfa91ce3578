"""``aidp worker``: one Dask worker that runs aidp attempts, in its own clone of the repository.

A plain ``distributed.Worker`` (threads, no nanny: a worker that dies stays dead, and the
scheduler gives its tasks to the others) with the resources it was given, joined to the
scheduler; before it joins, this process becomes an aidp worker
(:func:`aidp.engine.distributed.attempt.set_worker_context`): attempts use the clone's worktree pool
(``.aidp/worktrees`` of the clone) and its remote. SIGTERM or SIGINT closes it gracefully: its
running attempts are finished or handed back to the scheduler.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

from aidp.engine.distributed.attempt import WorkerContext, set_worker_context
from aidp.exceptions import ConfigError, InputError

__all__ = ["parse_resources", "serve_worker"]


def parse_resources(values: tuple[str, ...]) -> dict[str, float]:
    """``("codex=2", "gpu=1")`` -> ``{"codex": 2.0, "gpu": 1.0}``.

    Raises:
        InputError: naming the malformed item."""
    found: dict[str, float] = {}
    for value in values:
        for item in value.split(","):
            name, sep, amount = item.strip().partition("=")
            try:
                number = float(amount)
            except ValueError:
                number = -1.0
            if not sep or not name or number < 0:
                raise InputError(f"--resources {item!r}: expected NAME=AMOUNT, e.g. codex=2")
            found[name] = number
    return found


def serve_worker(scheduler: str, *, repo: Path, remote: str, nthreads: int,
                 resources: dict[str, float], name: str | None, host: str | None,
                 database_url: str | None = None) -> None:
    """Join the cluster at ``scheduler`` and run attempts until stopped.

    Raises:
        ConfigError: the distributed extra is missing, or the scheduler does not answer."""
    try:
        from distributed import Worker
    except ImportError as exc:
        raise ConfigError(f"aidp worker needs the distributed extra ({exc.name} is missing)",
                          hint="pip install 'aidp[distributed]'") from exc
    from aidp.workspace.worktrees import WorktreePool

    label = name or f"{socket.gethostname()}-{repo.name}"
    store = None
    if database_url:
        from aidp.state.store import Store

        store = Store(database_url, create=False)  # a worker never creates or migrates it
    set_worker_context(WorkerContext(repo=repo, remote=remote, pool=WorktreePool(repo),
                                     name=label, store=store))

    async def run() -> None:
        worker = Worker(scheduler, nthreads=nthreads, resources=resources or None, name=label,
                        host=host, validate=False)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.close()))
        try:
            await asyncio.wait_for(worker.start(), timeout=60)
        except (OSError, TimeoutError) as exc:
            await worker.close()
            raise ConfigError(f"no Dask scheduler answers at {scheduler}: {exc}") from exc
        print(f"aidp worker {label}: {worker.address} joined {scheduler} "
              f"(threads {nthreads}, resources {resources or 'none'})", flush=True)
        await worker.finished()

    try:
        asyncio.run(run())
    finally:
        set_worker_context(None)
        if store is not None:
            store.close()
