"""The run supervisor of ``aidp serve``: one worker process per active service run.

The database is the queue: a run the API starts, resumes or retries is marked *active*
(:mod:`aidp.app.service_runs`), and one thread (started with the app, stopped with it) looks
every ``poll_s`` at the active runs and decides, run by run:

* it has a worker of ours: wait for it to exit. Exited with the run ended (completed, failed,
  cancelled): the run is *done*. Exited otherwise (killed, crashed) while the service is not
  stopping: started again after an exponential backoff (``backoff_s`` doubling up to
  ``max_backoff_s``); aidp's resume never redoes a completed step. After ``max_restarts``
  restarts in a row the service gives up on the run (``given_up``, shown by readiness) until it
  is asked for again: a crash loop ends.
* its lease is live without a worker of ours -- a worker orphaned by a service that was killed
  (``kill -9`` leaves the workers running: each has its own session), or ``aidp resume`` run by
  hand: left alone and watched; when the lease lapses (that process ended or died) the run is
  done or resumed like any other.
* neither, and the run has not ended: a worker is started, at most ``max_workers`` at once
  (the rest wait their turn, oldest first) -- once this service has claimed the run. Several
  services on one database (on several hosts) race over the same active runs: the claim
  (:func:`aidp.app.service_runs.claim_service_run`) lets one of them start the worker, whose
  lease then keeps the others off. A claim lasts one lease lifetime: when a service dies with
  its workers (its host is gone), another takes its runs over once their leases expire.

Stopping (the app's shut-down: SIGTERM or Ctrl-C of ``aidp serve``) sends SIGTERM to every
worker's process group -- the worker stops its tools and leaves the run resumable -- and waits
``stop_timeout_s`` for them (then SIGKILL). The runs stay active: the next start resumes them.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from aidp.app import service_runs
from aidp.app.context import AppContext

__all__ = ["Supervisor", "lower_priority_hook", "supervisor_hook"]

log = logging.getLogger("aidp.serve.supervisor")

#: Run statuses nothing can drive on from (a failed run can be resumed: asked for explicitly).
_FINAL = frozenset({"completed", "cancelled"})
_SETTLE_S = 2.0  # a run asked for this recently is not taken for ended: its start() is coming


class Supervisor:
    """Keeps a worker on every active service run of ``ctx``'s repository (see the module)."""

    def __init__(self, ctx: AppContext, *, max_workers: int, config_path: Path | None = None,
                 poll_s: float = 0.25, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 stop_timeout_s: float = 20.0, max_restarts: int = 5) -> None:
        self.ctx, self.max_workers, self.config_path = ctx, max_workers, config_path
        self.max_restarts = max_restarts
        self.poll_s, self.backoff_s, self.max_backoff_s = poll_s, backoff_s, max_backoff_s
        self.stop_timeout_s = stop_timeout_s
        self.workers: dict[str, service_runs.Worker] = {}
        self._requested: set[str] = set()     # asked for explicitly: start even if it ended
        self._failures: dict[str, int] = {}   # worker deaths in a row, per run
        self._not_before: dict[str, float] = {}
        self._spawned_status: dict[str, str] = {}  # the run's status when its worker started
        self._spawned_at: dict[str, float] = {}  # and the time (epoch seconds)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self.identity = _identity()
        #: Active runs without a worker at the last turn: waiting for a slot or a backoff.
        self.waiting = 0

    # -- the API's side ----------------------------------------------------------------------

    def begin(self) -> None:
        """Start the watching thread (it resumes the active runs left by a previous service)."""
        self._thread = threading.Thread(target=self._loop, name="aidp-supervisor", daemon=True)
        self._thread.start()

    def start(self, run_id: str, started_by: str | None = None) -> None:
        """Drive ``run_id`` (already marked active by :mod:`aidp.app.service_runs`): a worker
        starts at the next turn, or when a slot frees up."""
        with self._lock:
            self._requested.add(run_id)
            self._failures.pop(run_id, None)
            self._not_before.pop(run_id, None)
        log.info("run %s requested by %s", run_id, started_by or "-",
                 extra={"run": run_id, "by": started_by})
        self._wake.set()

    def worker_count(self) -> int:
        """Run workers alive now (as of the last turn; metrics report it)."""
        with self._lock:
            return len(self.workers)

    def healthy(self) -> bool:
        """True while the watching thread runs (readiness reports it)."""
        return (self._thread is not None and self._thread.is_alive()
                and not self._stopping.is_set() and self._error is None)

    def stop_all(self) -> None:
        """Stop watching, SIGTERM every worker's process group and wait for them (bounded)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for worker in workers:
            if worker.wait(max(0.0, deadline - time.monotonic())) is None:
                log.warning("run %s: worker %d did not stop in time; killed", worker.run_id,
                            worker.pid, extra={"run": worker.run_id, "pid": worker.pid})
                worker.signal(signal.SIGKILL)
                worker.wait(2.0)

    # -- the thread --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._turn()
                self._error = None
            except Exception as exc:  # noqa: BLE001 -- a DB hiccup must not end supervision
                self._error = type(exc).__name__
                log.warning("supervisor turn failed: %s", type(exc).__name__)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _turn(self) -> None:
        """One look at the workers and the active runs."""
        self._reap()
        now = time.monotonic()
        waiting = 0
        for run in service_runs.active_service_runs(self.ctx):
            if self._stopping.is_set():
                return
            with self._lock:
                if run.run_id in self.workers:
                    continue
                requested = run.run_id in self._requested
                if run.live:  # an orphaned worker or the CLI drives it: watch
                    continue
                if run.status in _FINAL or (run.status in service_runs.ENDED
                                            and not requested):
                    # not one asked for a moment ago: its start() is on its way
                    service_runs.finish_service_run(self.ctx, run.run_id,
                                                    unchanged_since=time.time() - _SETTLE_S)
                    self._forget(run.run_id)
                    continue
                if self._not_before.get(run.run_id, 0.0) > now:
                    waiting += 1  # a dead worker's restart, after its backoff
                    continue
                if len(self.workers) >= self.max_workers:
                    waiting += 1  # the rest wait for a slot, oldest first
                    continue
                if not service_runs.claim_service_run(self.ctx, run.run_id, self.identity):
                    self._forget(run.run_id)  # another service is starting its worker
                    continue
                self._spawn(run.run_id, run.status)
        self.waiting = waiting

    def _spawn(self, run_id: str, status: str) -> None:
        if self._failures.get(run_id):
            service_runs.note_restart(self.ctx, run_id)
        self._spawned_at[run_id] = time.time()  # a request after this keeps the run active
        worker = service_runs.start_worker(self.ctx, run_id, self.config_path)
        self.workers[run_id] = worker
        self._spawned_status[run_id] = status
        self._requested.discard(run_id)
        log.info("run %s: worker %d started", run_id, worker.pid,
                 extra={"run": run_id, "pid": worker.pid})

    def _reap(self) -> None:
        """Handle the workers that exited."""
        with self._lock:
            exited = [(r, w, code) for r, w in self.workers.items()
                      if (code := w.poll()) is not None]
            for run_id, _, _ in exited:
                del self.workers[run_id]
        for run_id, worker, code in exited:
            run = next((r for r in service_runs.active_service_runs(self.ctx)
                        if r.run_id == run_id), None)
            if run is None:
                continue
            before = self._spawned_status.pop(run_id, None)
            spawned_at = self._spawned_at.pop(run_id, 0.0)
            with self._lock:  # asked for again (retry, resume) since this worker started
                again = run_id in self._requested
            if again:
                continue  # the next turn starts a new worker
            if run.status in _FINAL or (run.status in service_runs.ENDED
                                        and (code in (0, 1) or before != run.status)):
                service_runs.finish_service_run(self.ctx, run_id, unchanged_since=spawned_at)
                self._forget(run_id)
                log.info("run %s: %s", run_id, run.status,
                         extra={"run": run_id, "status": run.status, "exit_code": code})
            elif not self._stopping.is_set() and not run.live:
                failures = self._failures.get(run_id, 0) + 1
                if failures > self.max_restarts:
                    service_runs.give_up(self.ctx, run_id)
                    with self._lock:
                        self._forget(run_id)
                    log.error("run %s: worker %d exited %d, %d times in a row; given up (the "
                              "run is resumable)", run_id, worker.pid, code, failures,
                              extra={"run": run_id, "pid": worker.pid, "exit_code": code})
                    continue
                delay = min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s)
                with self._lock:
                    self._failures[run_id] = failures
                    self._not_before[run_id] = time.monotonic() + delay
                log.warning("run %s: worker %d exited %d; restarting in %.1fs", run_id,
                            worker.pid, code, delay,
                            extra={"run": run_id, "pid": worker.pid, "exit_code": code})

    def _forget(self, run_id: str) -> None:
        self._requested.discard(run_id)
        self._failures.pop(run_id, None)
        self._not_before.pop(run_id, None)


def _identity() -> str:
    """This service among others on the database: host, pid and the pid's start time."""
    import socket

    from aidp.process.procfs import self_identity

    pid, started = self_identity()
    return f"pid {pid} on {socket.gethostname()} ({started})"


def lower_priority_hook(increment: int) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan hook, entered after :func:`supervisor_hook`: the event loop's thread -- and
    the request threads it starts later, which inherit it -- are scheduled ``increment`` nice
    levels below the supervisor's thread, whose run workers keep its priority.

    On Linux a nice value belongs to a thread (``setpriority`` of thread id), not to the
    whole process; elsewhere this does nothing. Measured by ``bench/bench_api.py``: the
    makespan of a run read by 50 clients.
    """

    @asynccontextmanager
    async def hook(app: Any) -> AsyncIterator[None]:
        import os
        import sys

        if increment and sys.platform == "linux":
            thread = threading.get_native_id()
            try:
                os.setpriority(os.PRIO_PROCESS, thread,
                               os.getpriority(os.PRIO_PROCESS, thread) + increment)
            except OSError as exc:  # a sandbox may forbid it: serve as before
                log.warning("could not lower the priority of request handling: %s", exc)
        yield

    return hook


def supervisor_hook(config_path: Path | None = None, **options: Any
                    ) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan hook for :func:`aidp.api.server.create_app`: the supervisor lives as long as
    the app (``app.state.supervisor``)."""

    @asynccontextmanager
    async def hook(app: Any) -> AsyncIterator[None]:
        import asyncio

        ctx = app.state.ctx
        settings = ctx.settings.serve
        options.setdefault("max_restarts", settings.worker_restarts)
        supervisor = Supervisor(ctx, max_workers=settings.max_workers,
                                config_path=config_path, **options)
        app.state.supervisor = supervisor
        supervisor.begin()
        try:
            yield
        finally:
            await asyncio.to_thread(supervisor.stop_all)

    return hook
