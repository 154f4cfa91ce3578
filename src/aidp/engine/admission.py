"""Admission: whether an attempt may start, and with which tool profile.

Owns the gates an attempt passes before anything runs: the profile choice for a step asking for
a capability (the registry's scores), the budgets (step, workstream, profile, run), the circuit
breakers of the profile and its fallbacks, and the human gate of a ``manual`` profile. A refused
attempt is recorded here, in one transaction, and reported; an admitted one gets its breaker
permit, which :meth:`Admission._settle_breaker` settles when the attempt ends. It never runs a
tool and never touches a worktree.
"""

from __future__ import annotations

from collections.abc import Sequence

from aidp.config import Settings, ToolProfile
from aidp.core.clock import Clock
from aidp.core.states import AttemptKind, AttemptOutcome, FailureClass, StepState
from aidp.engine.invocation import prompt_text
from aidp.engine.outcome import provider_refused
from aidp.engine.runtime import AttemptReport, StepRuntime, WorkstreamRuntime
from aidp.errors.finding import Finding
from aidp.exceptions import ToolError
from aidp.model.workstream import Step
from aidp.resilience.breaker import BreakerPolicy, BreakerState
from aidp.state.breakers import BreakerBook, Permit, endpoint_key, profile_key
from aidp.state.store import Store
from aidp.state.tx import Fence
from aidp.tools.adapter import Usage
from aidp.tools.registry import (
    Choice,
    NoProfileError,
    ProfileHealth,
    choose_profile,
    fallback_chain,
)
from aidp.tools.stats import ProfileStats

__all__ = ["Admission"]


class Admission:
    """The executor's admission gates (a mixin of :class:`~aidp.engine.executor.Executor`)."""

    store: Store
    fence: Fence
    run_id: str
    settings: Settings
    clock: Clock
    breakers: BreakerBook
    host: str
    base_env: dict[str, str]

    def _guarded(self, profile: ToolProfile | None) -> bool:
        if profile is None:
            return False
        enabled = profile.breaker.enabled
        return enabled if enabled is not None else profile.adapter not in ("shell", "manual")

    def _breaker_keys(self, name: str, profile: ToolProfile) -> list[str]:
        return [profile_key(name), *([endpoint_key(profile.base_url)]
                                     if profile.base_url else [])]

    def _admit(self, wsr: WorkstreamRuntime, sr: StepRuntime, wanted: str
               ) -> tuple[str, Permit | None, str | None] | AttemptReport:
        """The profile this attempt runs with and its breaker permit: ``wanted`` if its
        breakers admit it, else the first profile of its fallback chain that they admit.
        When none does, the step waits in ``circuit_open`` (or fails, ``on_open: fail``)."""
        chain = fallback_chain(self.settings, wanted)
        refusals: list[str] = []
        retry_at: list[float] = []
        for name in chain:
            profile = self.settings.profile(name)
            if not self._guarded(profile):
                reason = None if name == wanted else (
                    "; ".join(refusals) + f"; chose {name} (fallback of {wanted})")
                return name, None, reason
            assert profile is not None
            permit = self.breakers.admit_all(self._breaker_keys(name, profile),
                                             BreakerPolicy.from_profile(profile),
                                             now=self.clock.now())
            if permit.allowed:
                reason = None if name == wanted else (
                    "; ".join(refusals) + f"; chose {name} (fallback of {wanted})")
                if permit.probe:
                    reason = (reason + "; " if reason else "") + f"{name}: half-open probe"
                return name, permit, reason
            refusals.append(f"{name}: breaker open ({', '.join(permit.refused_by)})")
            if permit.retry_at is not None:
                retry_at.append(permit.retry_at)
        first = self.settings.profile(wanted)
        wait = first is None or first.breaker.on_open == "wait"
        when = min(retry_at) if retry_at else self.clock.now() + 1.0
        budget = sr.step.retry.budget
        started = sr.history.first_started_at
        if wait and budget is not None and started is not None and when > started + budget:
            wait = False
        reason = "; ".join(refusals) + (
            "; waiting for a breaker to close" if wait else "; no healthy profile")
        state = StepState.CIRCUIT_OPEN if wait else StepState.FAILED
        with self.store.write(self.fence) as tx:
            tx.update_step(self.run_id, wsr.ws.id, sr.step.id, status=state.value,
                           reason=reason, next_attempt_at=when if wait else None,
                           outcome=None if wait else AttemptOutcome.CIRCUIT_OPEN.value,
                           **({} if wait else {"finished_at": tx.now}))
            tx.event(self.run_id, f"step.{state.value}", wsr.ws.id, sr.step.id, reason=reason,
                     next_attempt_at=when if wait else None)
        return AttemptReport(wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None, state,
                             reason, next_attempt_at=when if wait else None,
                             history=sr.history, next_kind=sr.next_kind, profile=sr.profile,
                             fix_findings=sr.fix_findings)

    def _choose(self, step: Step) -> Choice:
        """The profile for a step asking for a capability: the registry scores the matching
        profiles (capability, language, environment, priority, recent success, breakers), or,
        with ``select``, ranks them by the statistics of every finished attempt in the
        database (one aggregate query, made only for such a step)."""
        health: dict[str, ProfileHealth] = {}
        rates = self._success_rates()
        for name, profile in self.settings.tools.items():
            open_ = False
            if self._guarded(profile):
                snap = self.breakers.snapshot(profile_key(name), now=self.clock.now())
                open_ = snap is not None and snap.state is BreakerState.OPEN
            health[name] = ProfileHealth(breaker_open=open_, success_rate=rates.get(name))
        stats = ([ProfileStats.of_row(row) for row in self.store.profile_stats()]
                 if step.select != "score" else [])
        return choose_profile(
            self.settings, tool=None, capability=step.capability, language=step.language,
            environment=self.base_env.get("AIDP_ENVIRONMENT"), health=health,
            select=step.select, stats=stats)

    def _success_rates(self) -> dict[str, float]:
        """Share of succeeded attempts per profile in this run (recent success)."""
        totals: dict[str, list[int]] = {}
        for row in self.store.attempts(self.run_id):
            if row.profile and row.outcome:
                item = totals.setdefault(row.profile, [0, 0])
                item[0] += row.outcome == AttemptOutcome.SUCCEEDED.value
                item[1] += 1
        return {name: ok / n for name, (ok, n) in totals.items() if n}

    def _no_profile(self, wsr: WorkstreamRuntime, sr: StepRuntime, exc: ToolError
                    ) -> AttemptReport:
        """No profile serves the step's capability. When profiles match but every one (and
        its fallbacks) is behind an open breaker (``retryable``), the step waits in
        ``circuit_open`` until the earliest reopen time, as a step naming a profile does
        (unless every matching profile says ``on_open: fail`` or the retry budget would run
        out); when nothing matches, it fails (permanent)."""
        reason = exc.message
        if isinstance(exc, NoProfileError) and exc.retryable:
            waiting = self._wait_for_capability(wsr, sr, exc)
            if waiting is not None:
                return waiting
        with self.store.write(self.fence) as tx:
            tx.update_step(self.run_id, wsr.ws.id, sr.step.id, status=StepState.FAILED.value,
                           reason=reason, failure_class=FailureClass.PERMANENT.value,
                           next_attempt_at=None, finished_at=tx.now)
            tx.event(self.run_id, "step.failed", wsr.ws.id, sr.step.id, reason=reason)
        return AttemptReport(wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None,
                             StepState.FAILED, reason, history=sr.history,
                             failure_class=FailureClass.PERMANENT.value)

    def _wait_for_capability(self, wsr: WorkstreamRuntime, sr: StepRuntime,
                             exc: NoProfileError) -> AttemptReport | None:
        """The ``circuit_open`` wait of a capability step whose matches are all behind open
        breakers, until the earliest reopen time of their breakers; None when it must fail
        (every match says ``on_open: fail``, or the step's retry budget ends first)."""
        matches = [name for name, score, _ in exc.candidates if score is not None]
        names = list(dict.fromkeys(n for name in matches
                                   for n in fallback_chain(self.settings, name)))
        profiles = {name: p for name in names if (p := self.settings.profile(name)) is not None}
        if not any(profiles[name].breaker.on_open == "wait" for name in matches
                   if name in profiles):
            return None
        now = self.clock.now()
        # the profile breakers are the ones the registry's choice reads (_choose)
        times = [snap.reopen_at for name, profile in profiles.items() if self._guarded(profile)
                 if (snap := self.breakers.snapshot(profile_key(name), now=now)) is not None
                 and snap.state is BreakerState.OPEN and snap.reopen_at is not None]
        when = min(times) if times else now + 1.0
        budget = sr.step.retry.budget
        started = sr.history.first_started_at
        if budget is not None and started is not None and when > started + budget:
            return None
        reason = exc.message + "; waiting for a breaker to close"
        state = StepState.CIRCUIT_OPEN
        with self.store.write(self.fence) as tx:
            tx.update_step(self.run_id, wsr.ws.id, sr.step.id, status=state.value,
                           reason=reason, next_attempt_at=when, outcome=None)
            tx.event(self.run_id, f"step.{state.value}", wsr.ws.id, sr.step.id, reason=reason,
                     next_attempt_at=when)
        return AttemptReport(wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None, state,
                             reason, next_attempt_at=when, history=sr.history,
                             next_kind=sr.next_kind, profile=sr.profile,
                             fix_findings=sr.fix_findings)

    def _settle_breaker(self, permit: Permit | None, profile_name: str,
                        outcome: AttemptOutcome, failure: FailureClass | None,
                        findings: list[Finding]) -> dict[str, str] | None:
        """Tell the breakers how the attempt went; their states afterwards (for diagnostics).

        Transient failures count against a provider, and so does a call it refused (bad
        credentials, no permission, an unknown model, no quota: :func:`provider_refused`), so
        that its breaker opens and a fallback is chosen; a success or another permanent
        failure (the provider answered: a failed check, an edit that did not apply) counts for
        it; a cancelled attempt gives its slot back."""
        profile = self.settings.profile(profile_name)
        if permit is None or profile is None:
            return None
        policy = BreakerPolicy.from_profile(profile)
        if outcome is AttemptOutcome.CANCELLED:
            after = self.breakers.release_all(permit, policy, now=self.clock.now())
        else:
            transient = failure is FailureClass.TRANSIENT
            crashed = outcome is AttemptOutcome.CRASHED
            refused = provider_refused(findings)
            answered = not crashed and not refused and failure in (None, FailureClass.PERMANENT)
            after = self.breakers.record_all(
                permit, policy, success=answered,
                transient=transient or refused, now=self.clock.now(),
                retry_after=max((f.retry_after for f in findings if f.retry_after),
                                default=None) if transient else None)
        return {key: snap.state.value for key, snap in after.items()}

    def _budget_spent(self, wsr: WorkstreamRuntime, step: Step, profile_name: str,
                      live: Usage | None = None,
                      others: Sequence[tuple[tuple[str, ...], Usage]] = ()) -> str | None:
        """Which budget (step, workstream, profile, run) is already spent, if any; ``live`` is
        what the running attempt has spent so far and ``others`` what the other attempts open
        in the gateway have, tagged (run, workstream, step, profile): the gateway asks before
        each request."""
        profile = self.settings.profile(profile_name)
        levels = [("step", step.budget), ("workstream", wsr.ws.budget),
                  (f"profile {profile_name}", profile.budget if profile else None),
                  ("run", self.settings.run.budget)]
        if all(budget is None for _, budget in levels):
            return None
        rows = self.store.usage(self.run_id)
        extra_tokens = live.total_tokens if live is not None else 0
        extra_cost = live.cost_usd if live is not None else 0.0
        running = [(tags[1:4], used) for tags, used in others
                   if len(tags) == 4 and tags[0] == self.run_id]

        def counts(level: str, ws_id: str, step_id: str, profile: str | None) -> bool:
            return (level == "run" or (level == "workstream" and ws_id == wsr.ws.id)
                    or (level == "step" and (ws_id, step_id) == (wsr.ws.id, step.id))
                    or (level.startswith("profile") and profile == profile_name))

        for level, budget in levels:
            if budget is None:
                continue
            mine = [r for r in rows if counts(level, r.ws_id, r.step_id, r.profile)]
            theirs = [used for (ws_id, step_id, profile), used in running
                      if counts(level, ws_id, step_id, profile)]
            tokens = extra_tokens + sum(u.total_tokens for u in theirs) + sum(
                int(r.input_tokens or 0) + int(r.output_tokens or 0) for r in mine)
            cost = extra_cost + sum(u.cost_usd for u in theirs) + sum(
                float(r.cost_usd or 0.0) for r in mine)
            if budget.tokens is not None and tokens >= budget.tokens:
                return f"the {level} budget of {budget.tokens} tokens is spent ({tokens})"
            if budget.cost_usd is not None and cost >= budget.cost_usd:
                return (f"the {level} budget of ${budget.cost_usd:g} is spent "
                        f"(${cost:.4f})")
        return None

    def _stop_for_budget(self, wsr: WorkstreamRuntime, sr: StepRuntime, number: int,
                         kind: AttemptKind, profile_name: str, spent: str) -> AttemptReport:
        """Record an attempt that did not start because a budget is spent; the step fails."""
        step = sr.step
        with self.store.write(self.fence) as tx:
            attempt_id = tx.insert_attempt(
                run_id=self.run_id, ws_id=wsr.ws.id, step_id=step.id, number=number,
                host=self.host, kind=kind.value, profile=profile_name)
            tx.update_attempt(attempt_id, outcome=AttemptOutcome.BUDGET_EXCEEDED.value,
                              finished_at=tx.now, error=spent)
            tx.update_step(self.run_id, wsr.ws.id, step.id, status=StepState.FAILED.value,
                           reason=spent, outcome=AttemptOutcome.BUDGET_EXCEEDED.value,
                           next_attempt_at=None,
                           finished_at=tx.now)
            tx.event(self.run_id, "budget.exceeded", wsr.ws.id, step.id, attempt=number,
                     limit=spent, profile=profile_name)
            tx.event(self.run_id, "step.failed", wsr.ws.id, step.id, attempt=number,
                     outcome=AttemptOutcome.BUDGET_EXCEEDED.value, reason=spent)
        return AttemptReport(wsr.ws.id, step.id, number, sr.attempts,
                             AttemptOutcome.BUDGET_EXCEEDED, StepState.FAILED, spent,
                             history=sr.history)

    def _await_approval(self, wsr: WorkstreamRuntime, sr: StepRuntime) -> AttemptReport:
        """A human gate: the step waits, its worktree prepared, for `aidp approve/reject`."""
        reason = (f"waiting for a human: aidp approve {self.run_id} {wsr.ws.id}/{sr.step.id} "
                  f"(or aidp reject ... --reason)")
        prompt = prompt_text(sr.step)
        with self.store.write(self.fence) as tx:
            tx.update_step(self.run_id, wsr.ws.id, sr.step.id,
                           status=StepState.AWAITING_APPROVAL.value, reason=reason,
                           next_attempt_at=None)
            tx.event(self.run_id, "step.awaiting_approval", wsr.ws.id, sr.step.id,
                     worktree=wsr.worktree_path, prompt=(prompt or "")[:2000])
        return AttemptReport(wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None,
                             StepState.AWAITING_APPROVAL, reason, history=sr.history,
                             next_kind=AttemptKind.APPROVAL, profile=sr.profile)

