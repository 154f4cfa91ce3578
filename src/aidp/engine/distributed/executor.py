"""The Dask executor: the orchestrator's side of attempts that run on the workers of a Dask
cluster (``[executor] kind = "dask"``).

It is the local :class:`~aidp.engine.executor.Executor` with one phase sent elsewhere:
admission, the claim, the judgement and the outcome's transaction run here, exactly as for a
local attempt; only *invoke* -- tool, checks, checkpoint commit -- runs on a worker
(:func:`aidp.engine.distributed.attempt.run_remote_attempt`). Before an attempt, the
workstream's head is published to the shared remote (a compare-and-swap push); the worker
pushes the checkpoint back the same way; here the checkpoint is fetched and the workstream's
branch moved to it in the outcome's fenced transaction, as a local checkpoint is. The attempt
is submitted with the profile's ``resources`` (a worker started with ``--resources codex=2``
runs two ``{codex = 1}`` attempts at once). Cancelling sets a cluster-wide event the worker
watches.

A worker that dies mid-attempt: the scheduler gives the task to another worker (Dask's
``allowed-failures``), which adopts a checkpoint the dead one pushed or runs the attempt again
from the same start; when the scheduler gives up (``KilledWorker``) the attempt is ``crashed``
and aidp's own crash budget decides whether the step is tried again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aidp.core.states import AttemptOutcome
from aidp.engine.distributed.attempt import (
    AttemptSpec,
    RemoteResult,
    failed_invoked,
    log_topic,
    run_remote_attempt,
)
from aidp.engine.distributed.remote import (
    RemoteBranch,
    fetch_branch,
    is_checkpoint_of,
    push_branch,
)
from aidp.engine.executor import Executor, _Admitted, _Claim, _Invoked
from aidp.engine.runtime import StepRuntime, WorkstreamRuntime
from aidp.exceptions import AidpError, ConfigError
from aidp.workspace.checkpoint import RefUpdate

if TYPE_CHECKING:
    from distributed import Client

    from aidp.config import Settings

__all__ = ["DaskExecutor", "check_cluster", "connect"]


def connect(address: str, timeout_s: float) -> Client:
    """A client of the scheduler at ``address``.

    Raises:
        ConfigError: the ``distributed`` extra is missing, or no scheduler answers."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ConfigError("the Dask executor needs the distributed extra "
                          f"({exc.name} is missing)",
                          hint="pip install 'aidp[distributed]'") from exc
    try:
        return Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"no Dask scheduler answers at {address}: {exc}",
                          hint="start one (dask scheduler) or fix [executor] scheduler") from exc


def check_cluster(settings: Settings) -> None:
    """Make sure the scheduler of ``settings.executor`` answers (before a run is created).

    Raises:
        ConfigError: no scheduler address, the distributed extra missing, or no answer."""
    address = settings.executor.scheduler
    if not address:
        raise ConfigError("[executor] kind = dask needs a scheduler address",
                          hint="aidp run --executor dask --scheduler tcp://HOST:8786")
    connect(address, settings.executor.connect_timeout).close()


class DaskExecutor(Executor):
    """Runs each attempt's invoke phase on the Dask cluster of ``settings.executor``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        settings = self.settings.executor
        if not settings.scheduler:
            check_cluster(self.settings)  # raises: no address
        self.client = connect(str(settings.scheduler), settings.connect_timeout)
        self.remote = settings.remote
        self._published: dict[str, str] = {}  # branch -> its head on the remote, as we left it
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    # -- the invoke phase, on a worker -------------------------------------------------------

    def _invoke(self, wsr: WorkstreamRuntime, sr: StepRuntime, admitted: _Admitted,
                claim: _Claim, candidate: int | None = None) -> _Invoked:
        # a best-of candidate runs on its own branch (``wsr`` is the candidate's)
        assert wsr.worktree is not None
        start = str(wsr.worktree.pygit.head.target)
        where = RemoteBranch(self.repo, self.remote, wsr.branch)
        try:
            self._publish(where, start, sr)
            answer = self._submit(wsr, sr, admitted, claim, start, candidate)
        except AidpError as exc:
            return failed_invoked(AttemptOutcome.FAILED_TRANSIENT, exc.message)
        # the whole log (what was streamed is its beginning), after the worker's name
        claim.log_path.write_bytes(f"[aidp] ran on worker {answer.worker}\n".encode()
                                   + answer.log)
        if answer.exchanges:  # where `aidp diagnose`, replay and the dashboard look for them
            from aidp.tools.exchanges import recording_path

            recording = recording_path(self.repo, self.run_id, wsr.ws.id, sr.step.id,
                                       admitted.number)
            recording.parent.mkdir(parents=True, exist_ok=True)
            recording.write_bytes(answer.exchanges)
        invoked = answer.invoked
        wsr.needs_reset = True  # the local worktree did not see the attempt: reset before reuse
        if invoked.sha is None:
            return invoked
        try:
            fetched = fetch_branch(where)
        except AidpError as exc:
            return failed_invoked(AttemptOutcome.FAILED_TRANSIENT,
                           f"the checkpoint {invoked.sha[:12]} could not be fetched: "
                           f"{exc.message}")
        if fetched != invoked.sha:
            return failed_invoked(AttemptOutcome.FAILED_TRANSIENT,
                           f"the remote's {wsr.branch} is at {(fetched or 'nothing')[:12]}, not "
                           f"at the worker's checkpoint {invoked.sha[:12]}")
        with self._lock:
            self._published[wsr.branch] = invoked.sha
        move = RefUpdate(wsr.worktree.path, wsr.branch, invoked.sha, start,
                         f"aidp: checkpoint {wsr.ws.id}/{sr.step.id} from {answer.worker}")
        return replace(invoked, checkpoint=move)

    def _publish(self, where: RemoteBranch, start: str, sr: StepRuntime) -> None:
        """Make the remote's branch hold ``start`` (a compare-and-swap push) -- unless it
        already holds a checkpoint of this step on top of it, which the worker adopts."""
        with self._lock:
            known = self._published.get(where.branch)
        if known == start:
            return
        if known is None and push_branch(where, start, None):  # the usual first time: new
            with self._lock:
                self._published[where.branch] = start
            return
        current = fetch_branch(where)
        if current == start:
            pass
        elif current is not None and is_checkpoint_of(self.repo, current, start, self.run_id,
                                                      sr.ws_id, sr.step.id):
            return  # a worker pushed it and its answer was lost: the next attempt adopts it
        elif not push_branch(where, start, current):
            raise AidpError(f"the remote's {where.branch} moved while it was published")
        with self._lock:
            self._published[where.branch] = start

    def _submit(self, wsr: WorkstreamRuntime, sr: StepRuntime, admitted: _Admitted,
                claim: _Claim, start: str, candidate: int | None) -> RemoteResult:
        spec = AttemptSpec(
            run_id=self.run_id, ws=wsr.ws, branch=wsr.branch, start_sha=start, step=sr.step,
            number=admitted.number, kind=admitted.kind, profile_name=admitted.profile_name,
            fix_findings=sr.fix_findings, token=claim.token, settings=self.settings,
            started_at=claim.started_at, candidate=candidate)
        profile = admitted.profile
        topic = log_topic(claim.token)
        live = claim.log_path.open("ab")

        def received(event: tuple[float, str]) -> None:  # on the client's event loop
            data = str(event[1]).encode()
            live.write(data)
            live.flush()
            if self.on_output is not None:
                self.on_output(wsr.ws.id, sr.step.id, data)

        self.client.subscribe_topic(topic, received)
        try:
            return self._wait(spec, profile, claim)
        finally:
            self.client.unsubscribe_topic(topic)
            live.close()

    def _wait(self, spec: AttemptSpec, profile: Any, claim: _Claim) -> RemoteResult:
        from distributed import Event
        from distributed.scheduler import KilledWorker

        future = self.client.submit(run_remote_attempt, spec, key=f"aidp-attempt-{claim.token}",
                                    pure=False, resources=dict(profile.resources)
                                    if profile is not None and profile.resources else None)
        cancelled_at: float | None = None
        hiccups = 0
        while True:
            if self.cancel.is_set() and cancelled_at is None:
                Event(f"aidp-cancel-{claim.token}", client=self.client).set()
                cancelled_at = time.monotonic()
            if (cancelled_at is not None and time.monotonic() - cancelled_at
                    > self.settings.run.kill_grace + 10):
                future.cancel()
                return _unanswered(AttemptOutcome.CANCELLED, "cancelled")
            try:
                answer = future.result(timeout=0.25)
            except TimeoutError:
                continue
            except KilledWorker as exc:
                return _unanswered(AttemptOutcome.CRASHED,
                                   f"the Dask workers running it died: {exc}")
            except Exception as exc:  # noqa: BLE001 -- the cluster's failure, not the tool's
                if future.status not in ("error", "cancelled") and hiccups < _HICCUPS:
                    # not the task's own failure: the worker holding the answer died before it
                    # was fetched, and the scheduler computes it again (distributed 2026.11
                    # surfaces that as an UnboundLocalError of its sync() here)
                    hiccups += 1
                    time.sleep(0.1)
                    continue
                return _unanswered(AttemptOutcome.FAILED_TRANSIENT,
                                   f"the Dask cluster failed the attempt: "
                                   f"{type(exc).__name__}: {exc}")
            assert isinstance(answer, RemoteResult)
            return answer


#: Times an answer may be lost with its worker and computed again before the attempt fails.
_HICCUPS = 20


def _unanswered(outcome: AttemptOutcome, reason: str) -> RemoteResult:
    """No worker answered the attempt: ``outcome`` for ``reason``, no log, no worker."""
    return RemoteResult(failed_invoked(outcome, reason), b"", "?")
