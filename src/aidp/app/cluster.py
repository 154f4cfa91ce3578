"""The application layer's door to a Dask cluster: running this process as an ``aidp worker``
(:mod:`aidp.engine.distributed`). Runs on the cluster need no door of their own: ``[executor] kind =
"dask"`` makes the engine send their attempts there."""

from __future__ import annotations

from pathlib import Path

__all__ = ["parse_resources", "run_worker"]


def parse_resources(values: tuple[str, ...]) -> dict[str, float]:
    """``("codex=2", "gpu=1")`` -> ``{"codex": 2.0, "gpu": 1.0}``.

    Raises:
        InputError: naming the malformed item."""
    from aidp.engine.distributed.worker import parse_resources as parse

    return parse(values)


def run_worker(scheduler: str, *, repo: Path, remote: str, nthreads: int,
               resources: dict[str, float], name: str | None, host: str | None,
               database_url: str | None = None) -> None:
    """Join the cluster at ``scheduler`` as a worker on the clone ``repo`` until stopped; with
    ``database_url``, its model gateway checks budgets and shares rate limits through the run
    database.

    Raises:
        ConfigError: the distributed extra is missing, or the scheduler does not answer."""
    from aidp.engine.distributed.worker import serve_worker

    serve_worker(scheduler, repo=repo, remote=remote, nthreads=nthreads, resources=resources,
                 name=name, host=host, database_url=database_url)
