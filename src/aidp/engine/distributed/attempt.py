"""One attempt on a Dask worker: the worker's side of the Dask executor.

The orchestrator keeps everything that decides and records (admission, the attempt's claim,
judgement, the outcome transaction: :class:`~aidp.engine.executor.Executor`). What runs here is
the executor's *invoke* phase itself -- the same code as the local executor's, through
:class:`WorkerExecutor` -- in a worktree of the worker's own clone:

1. fetch the workstream's branch from the shared remote (:mod:`aidp.engine.distributed.remote`); the
   orchestrator published the attempt's start there;
2. if the remote already holds a checkpoint of this step on top of that start (a worker pushed it
   and died before answering), **adopt** it: nothing runs again;
3. otherwise take a worktree of the worker's pool at the start, run the tool, stage, run the
   checks and write the checkpoint commit, exactly as a local attempt does;
4. push the checkpoint to the remote with a compare-and-swap from the start, and answer with
   what happened (:class:`RemoteResult`) and the attempt's log.

Nothing here touches the database: a worker needs the remote and its tools, not the store.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from aidp.core.states import AttemptKind, AttemptOutcome, StepState, WorkstreamState
from aidp.engine.distributed.remote import (
    RemoteBranch,
    drop_branch,
    fetch_branch,
    is_checkpoint_of,
    push_branch,
)
from aidp.engine.executor import Executor, _Admitted, _Claim, _Invoked
from aidp.engine.runtime import StepRuntime, WorkstreamRuntime
from aidp.errors.finding import Finding
from aidp.exceptions import AidpError
from aidp.model.scope import compile_scope
from aidp.tools.adapter import AdapterResult

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from aidp.config import Settings
    from aidp.model.workstream import Step, Workstream
    from aidp.state.store import Store
    from aidp.tools.adapter import Usage
    from aidp.tools.gateway.grant import Live
    from aidp.workspace.worktrees import WorktreePool

__all__ = ["AttemptSpec", "RemoteResult", "WorkerContext", "failed_invoked", "log_topic",
           "run_remote_attempt", "set_worker_context"]

#: Log bytes an answer carries at most (the tail; the worker's own file keeps what the cap kept).
LOG_ANSWER_BYTES = 4 * 2**20
#: Output streamed live to the orchestrator per attempt, at most (the answer carries the log).
LIVE_BYTES = 256 * 2**10


def log_topic(token: str) -> str:
    """The cluster event topic an attempt's live output goes to."""
    return f"aidp-log-{token}"


@dataclass(frozen=True)
class AttemptSpec:
    """Everything a worker needs for one attempt (pickled to it; no secret: the worker's own
    environment holds the keys the profile names)."""

    run_id: str
    ws: Workstream
    branch: str
    start_sha: str  # the workstream's head the attempt starts from (published on the remote)
    step: Step
    number: int
    kind: AttemptKind
    profile_name: str
    fix_findings: tuple[Finding, ...]
    token: str
    settings: Settings
    started_at: float
    candidate: int | None = None  # a best-of candidate's place


@dataclass(frozen=True)
class RemoteResult:
    """What the worker answers: the invoke phase's result (its checkpoint, if any, is on the
    remote: ``invoked.sha``), the log's tail, which worker ran it, whether it was adopted, and
    the model exchanges its gateway recorded (JSONL, masked; empty for command steps)."""

    invoked: _Invoked
    log: bytes
    worker: str
    adopted: bool = False
    exchanges: bytes = b""


@dataclass
class WorkerContext:
    """The aidp side of one ``aidp worker`` process: its clone, the remote, its worktree pool,
    and -- when the worker reaches the run database (``--database-url``) -- the store, for the
    model gateway's budget checks before each request, shared rate-limit buckets and
    ``Retry-After`` holds. The worker only reads runs and updates those buckets and holds."""

    repo: Path
    remote: str
    pool: WorktreePool
    name: str
    store: Store | None = None


_context: WorkerContext | None = None


def set_worker_context(context: WorkerContext | None) -> None:
    """Make this process an aidp worker (``aidp worker`` does, before joining the cluster)."""
    global _context
    _context = context


class WorkerExecutor(Executor):
    """The executor's invoke phase on a worker: no lease, no breakers, no writes of run state
    (the "validating" mark is left out). The gateway checks the budgets before each model
    request only when the worker has the store; admission checked them before the attempt."""

    def __init__(self, context: WorkerContext, spec: AttemptSpec,
                 cancel: threading.Event) -> None:
        # None without a database: see aidp.engine.invocation.Invoker
        self.store = context.store  # type: ignore[assignment]
        self.run_id = spec.run_id
        self.repo = context.repo
        self.settings = spec.settings
        self.pool = context.pool
        self.cancel = cancel
        self.on_output = self._stream
        self.interrupting = False
        self.run_dir = context.repo / ".aidp" / "runs" / spec.run_id
        self.host = socket.gethostname()
        self.base_env = dict(os.environ)
        self._made_dirs: set[Path] = set()
        self._topic = log_topic(spec.token)
        self._streamed = 0

    def _stream(self, ws_id: str, step_id: str, data: bytes) -> None:
        """Send a piece of the tool's (masked) output to the orchestrator as it comes."""
        if self._streamed >= LIVE_BYTES:
            return
        piece = data[:LIVE_BYTES - self._streamed]
        self._streamed += len(piece)
        try:
            from distributed import get_worker

            get_worker().log_event(self._topic, piece.decode("utf-8", errors="replace"))
        except Exception:  # noqa: BLE001 -- live output is a courtesy; the answer has the log
            self._streamed = LIVE_BYTES

    def _live_budget(self, wsr: WorkstreamRuntime, step: Step, profile_name: str
                     ) -> Callable[[Usage, Sequence[Live]], str | None] | None:
        if self.store is None:
            return None
        return super()._live_budget(wsr, step, profile_name)

    def _validating(self, wsr: WorkstreamRuntime, step: Step, number: int, changed: int) -> None:
        return None


def _adoptable(clone: Path, spec: AttemptSpec, tip: str) -> bool:
    """The remote's head is a checkpoint of this very step on top of the attempt's start."""
    return is_checkpoint_of(clone, tip, spec.start_sha, spec.run_id, spec.ws.id, spec.step.id)


def failed_invoked(outcome: AttemptOutcome, reason: str) -> _Invoked:
    """An invoke phase that ran no tool: ``outcome`` for ``reason``."""
    return _Invoked(AdapterResult(None, error=reason), [], [], [], [], outcome, reason, None, 0,
                    [], [], ())


def _failed(reason: str, context: WorkerContext) -> RemoteResult:
    return RemoteResult(failed_invoked(AttemptOutcome.FAILED_TRANSIENT, reason),
                        f"[aidp] {reason}\n".encode(), context.name)


def _adopted(clone: Path, spec: AttemptSpec, tip: str, context: WorkerContext) -> RemoteResult:
    from aidp.workspace.git import run_git

    changed = run_git(["diff", "--name-only", "--no-renames", spec.start_sha, tip], clone
                      ).stdout.split()
    invoked = _Invoked(AdapterResult(0), changed, [], [], [], AttemptOutcome.SUCCEEDED, None,
                       tip, 0, [], [], ())
    note = (f"[aidp] adopted checkpoint {tip[:12]} of {spec.ws.id}/{spec.step.id}: pushed by a "
            "worker that ran this attempt before and did not answer\n")
    return RemoteResult(invoked, note.encode(), context.name, adopted=True)


def _watch_cancel(token: str, cancel: threading.Event, done: threading.Event) -> None:
    """Set ``cancel`` when the orchestrator sets the attempt's cluster-wide cancel event."""
    from distributed import Event

    event = Event(f"aidp-cancel-{token}")
    while not done.is_set():
        try:
            if event.wait(timeout=0.5):
                cancel.set()
                return
        except Exception:  # noqa: BLE001 -- the scheduler hiccuped: look again
            time.sleep(0.5)


def run_remote_attempt(spec: AttemptSpec) -> RemoteResult:
    """Run ``spec`` on this worker (the function the orchestrator submits to the cluster).

    Never raises for the tool or git: a failure is an answer with a transient outcome. Raises
    only when this process is not an aidp worker (a plain ``dask worker``)."""
    context = _context
    if context is None:
        raise RuntimeError("not an aidp worker: start workers with `aidp worker`")
    where = RemoteBranch(context.repo, context.remote, spec.branch)
    try:
        tip = fetch_branch(where)
        if tip is None:
            return _failed(f"the remote has no branch {spec.branch}", context)
        if tip != spec.start_sha:
            if _adoptable(context.repo, spec, tip):
                return _adopted(context.repo, spec, tip, context)
            return _failed(f"the remote's {spec.branch} is at {tip[:12]}, not at the attempt's "
                           f"start {spec.start_sha[:12]}", context)
    except AidpError as exc:
        return _failed(exc.message, context)
    cancel, done = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch_cancel, args=(spec.token, cancel, done),
                               name="aidp-cancel-watch", daemon=True)
    watcher.start()
    executor = WorkerExecutor(context, spec, cancel)
    branch = f"aidp-worker/{uuid.uuid4().hex[:12]}"  # this attempt's own, in this clone
    try:
        wt = context.pool.acquire(branch, spec.start_sha)
    except AidpError as exc:
        done.set()
        return _failed(f"worker {context.name}: {exc.message}", context)
    log_path = executor.run_dir / "logs" / spec.ws.id / f"{spec.step.id}.{spec.number}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    wsr = WorkstreamRuntime(ws=spec.ws, state=WorkstreamState.RUNNING, branch=branch,
                            base_ref=spec.start_sha, scope=compile_scope(spec.ws.scope),
                            base_sha=spec.start_sha, head_sha=spec.start_sha,
                            worktree_path=str(wt.path), worktree=wt)
    sr = StepRuntime(spec.ws.id, spec.step, StepState.RUNNING, last_number=spec.number - 1,
                     fix_findings=spec.fix_findings)
    admitted = _Admitted(spec.number, spec.kind, spec.profile_name,
                         spec.settings.profile(spec.profile_name), None, None)
    claim = _Claim(0, spec.token, log_path, wt.path, spec.started_at)
    try:
        invoked = executor._invoke(wsr, sr, admitted, claim, spec.candidate)
        if invoked.checkpoint is not None:
            invoked.checkpoint.apply()
            if not push_branch(where, invoked.checkpoint.new, spec.start_sha):
                tip = fetch_branch(where)
                if tip is None or not _adoptable(context.repo, spec, tip):
                    return _failed(f"the remote's {spec.branch} moved while the attempt ran; "
                                   "its checkpoint was not pushed", context)
                invoked = replace(invoked, sha=tip)  # another run of this attempt landed first
            invoked = replace(invoked, checkpoint=None)
    except AidpError as exc:
        return _failed(f"worker {context.name}: {exc.message}", context)
    finally:
        done.set()
        context.pool.release(wt)
        drop_branch(context.repo, branch)
    from aidp.tools.exchanges import recording_path

    recording = recording_path(context.repo, spec.run_id, spec.ws.id, spec.step.id, spec.number)
    exchanges = recording.read_bytes() if recording.is_file() else b""
    return RemoteResult(invoked, _tail(log_path), context.name, exchanges=exchanges)


def _tail(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_ANSWER_BYTES))
            return f.read()
    except OSError:
        return b""

