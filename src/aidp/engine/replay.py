"""Replay: run one recorded attempt of a step again, offline or on another profile.

:func:`replay_step` takes an attempt that made a checkpoint, checks its parent commit (the
step's starting point) out in a scratch worktree, and runs the step's tool there with the same
prompt through the model gateway. Offline (the default) the gateway answers the tool's model
requests with the attempt's recorded exchanges (``.aidp/runs/RUN/exchanges/WS/STEP.N.jsonl``,
``docs/gateway.md``) in order and sends nothing anywhere; a request the recording does not hold
is refused and named. With ``profile`` the tool runs live on that profile (its endpoint and
key), for a comparison. Either way the worktree's resulting tree is compared with the
checkpoint's tree. The run, its database rows, branches and worktrees are not touched; the
scratch worktree is removed afterwards (its log stays under ``.aidp/runs/RUN/replays/``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aidp.config import Settings
from aidp.exceptions import InputError, NotFoundError, ToolError
from aidp.model.plan import Plan
from aidp.model.scope import compile_scope
from aidp.process.runner import CappedLog, build_env, new_token
from aidp.state.store import Store
from aidp.tools.adapter import Invocation, Usage
from aidp.tools.adapters._common import DEFAULT_ENDPOINT
from aidp.tools.exchanges import load_exchanges, recording_path
from aidp.tools.gateway import Grant, attach, shared_gateway
from aidp.tools.registry import get_adapter
from aidp.workspace.git import run_git

__all__ = ["ReplayReport", "replay_step"]


@dataclass
class ReplayReport:
    """What a replay did and whether it reproduced the checkpoint."""

    run_id: str
    ws_id: str
    step_id: str
    attempt: int
    profile: str
    offline: bool
    checkpoint: str
    expected_tree: str
    tree: str | None
    same: bool
    differing: list[str] = field(default_factory=list)
    requests: int = 0
    recorded_requests: int = 0
    usage: Usage = field(default_factory=Usage)
    findings: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    error: str | None = None
    log_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "workstream": self.ws_id, "step": self.step_id,
                "attempt": self.attempt, "profile": self.profile, "offline": self.offline,
                "checkpoint": self.checkpoint, "expected_tree": self.expected_tree,
                "tree": self.tree, "same": self.same, "differing": self.differing,
                "requests": self.requests, "recorded_requests": self.recorded_requests,
                "usage": self.usage.to_dict(), "findings": self.findings,
                "exit_code": self.exit_code, "error": self.error, "log_path": self.log_path}


def replay_step(store: Store, repo: Path, settings: Settings, run_id: str, ws_id: str,
                step_id: str, *, attempt: int | None = None, profile_name: str | None = None
                ) -> ReplayReport:
    """Run the step's recorded attempt again (see the module docstring).

    ``attempt``: its number (default: the last one that made a checkpoint). ``profile_name``:
    run live on this profile instead of replaying the recording.

    Raises:
        NotFoundError: no such run, step, attempt, checkpoint or recording.
        InputError: an unknown profile, a broken recording.
    """
    row = store.run(run_id)
    if row is None:
        raise NotFoundError(f"no run {run_id}")
    plan = Plan.from_json(row.plan_json)
    try:
        ws = plan.workstream(ws_id)
        step = plan.step(ws_id, step_id)
    except KeyError:
        raise NotFoundError(f"run {run_id} has no step {ws_id}/{step_id}") from None
    made = {int(c.attempt): str(c.sha) for c in store.checkpoints(run_id)
            if (c.ws_id, c.step_id) == (ws_id, step_id)}
    if attempt is None:
        if not made:
            raise NotFoundError(f"{ws_id}/{step_id} of run {run_id} made no checkpoint to "
                                "reproduce")
        attempt = max(made)
    if attempt not in made:
        raise NotFoundError(f"attempt {attempt} of {ws_id}/{step_id} made no checkpoint "
                            f"(attempts with one: {sorted(made) or 'none'})")
    recorded = [a for a in store.attempts(run_id)
                if (a.ws_id, a.step_id, int(a.number)) == (ws_id, step_id, attempt)]
    original_profile = str(recorded[0].profile) if recorded else (step.tool or "")
    name = profile_name or original_profile
    profile = settings.profile(name)
    if profile is None:
        raise InputError(f"unknown tool profile {name!r}")
    if not profile.uses_gateway() and profile_name is None:
        raise InputError(f"profile {name!r} does not use the model gateway: nothing recorded "
                         "to replay")
    run_dir = repo / ".aidp" / "runs" / run_id
    offline = profile_name is None
    exchanges = load_exchanges(recording_path(repo, run_id, ws_id, step_id, attempt)) \
        if offline else []
    sha = made[attempt]
    parent = run_git(["rev-parse", f"{sha}^1"], repo).stdout.strip()
    expected = run_git(["rev-parse", f"{sha}^{{tree}}"], repo).stdout.strip()
    prompt_dir = run_dir / "prompts" / ws_id
    prompt_file = next((p for p in (prompt_dir / f"{step_id}.{attempt}.md",
                                    prompt_dir / f"{step_id}.md") if p.is_file()), None)
    prompt = prompt_file.read_text(encoding="utf-8") if prompt_file else step.prompt
    replays = run_dir / "replays" / ws_id
    replays.mkdir(parents=True, exist_ok=True)
    log_path = replays / f"{step_id}.{attempt}.{'offline' if offline else name}.log"
    report = ReplayReport(run_id, ws_id, step_id, attempt, name, offline, sha, expected, None,
                          False, recorded_requests=sum(
                              1 for e in exchanges if e.get("method") == "POST"),
                          log_path=str(log_path))
    scratch = Path(tempfile.mkdtemp(prefix="aidp-replay-"))
    worktree = scratch / "worktree"
    run_git(["worktree", "add", "-q", "--detach", str(worktree), parent], repo)
    try:
        _run(report, settings, profile_name=name, profile=profile, ws_scope=ws.scope,
             step_env=[*ws.env, *step.env], worktree=worktree, attempt_dir=scratch / "attempt",
             prompt=prompt, prompt_file=prompt_file, timeout_s=step.timeout,
             context=step.context, exchanges=exchanges if offline else None,
             log_path=log_path, ids=(run_id, ws_id, step_id, attempt))
        run_git(["add", "-A"], worktree)
        report.tree = run_git(["write-tree"], worktree).stdout.strip()
        report.same = report.tree == expected
        if not report.same:
            report.differing = run_git(["diff", "--name-only", expected, report.tree],
                                       repo).stdout.split()
    finally:
        run_git(["worktree", "remove", "--force", str(worktree)], repo, check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _run(report: ReplayReport, settings: Settings, *, profile_name: str, profile: Any,
         ws_scope: list[str], step_env: list[str], worktree: Path, attempt_dir: Path,
         prompt: str | None, prompt_file: Path | None, timeout_s: float, context: list[str],
         exchanges: list[dict[str, Any]] | None, log_path: Path,
         ids: tuple[str, str, str, int]) -> None:
    """Run the tool once in ``worktree`` through the gateway; fill in ``report``."""
    try:
        adapter = get_adapter(profile.adapter)
    except ToolError as exc:
        raise InputError(exc.message) from None
    base_env = dict(os.environ)
    key_env = profile.key_env()
    names = [*step_env, *profile.env, *([key_env] if key_env and exchanges is None else [])]
    key = base_env.get(key_env) if key_env and exchanges is None else None
    secrets = [base_env[n] for n in names if base_env.get(n)]
    env = build_env(base_env, names, {"AIDP_RUN_ID": ids[0], "AIDP_WORKSTREAM": ids[1],
                                      "AIDP_STEP": ids[2], "AIDP_ATTEMPT": str(ids[3]),
                                      "AIDP_WORKTREE": str(worktree)})
    gateway = shared_gateway()
    ticket = gateway.open(Grant(upstream=profile.base_url or DEFAULT_ENDPOINT, key=key,
                                profile=profile_name, rate_limit=profile.rate_limit,
                                mask=tuple(secrets), replay=exchanges))
    routed, tool_env = attach(ticket, profile, env, key)
    scope = compile_scope(ws_scope)
    attempt_dir.mkdir(parents=True, exist_ok=True)
    log = CappedLog(log_path, cap_bytes=settings.run.log_cap_bytes)
    tracked = run_git(["ls-files", "-z"], worktree).stdout.split("\0")
    try:
        result = adapter.run(Invocation(
            run_id=ids[0], ws_id=ids[1], step_id=ids[2], attempt=ids[3],
            profile_name=profile_name, profile=routed, worktree=worktree, prompt=prompt,
            prompt_file=prompt_file, scope=tuple(ws_scope),
            scope_files=tuple(p for p in tracked if p and scope.matches(p)),
            context_files=tuple(worktree / c for c in context), command=routed.command,
            values={"worktree": str(worktree), "prompt_file": str(prompt_file or "")},
            env=tool_env, secrets=(*secrets, ticket.token), timeout_s=timeout_s,
            grace_s=settings.run.kill_grace, attempt_dir=attempt_dir, token=new_token(),
            log=log, cancel=threading.Event(), in_scope=scope.matches))
    finally:
        log.close()
        traffic = gateway.close(ticket)
    report.exit_code = result.exit_code
    report.error = result.error
    report.requests = traffic.usage.requests
    report.usage = traffic.usage
    report.findings = [f.to_dict() for f in traffic.findings]
