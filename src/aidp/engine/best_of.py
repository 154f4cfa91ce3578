"""Best-of-N: a round of N candidate attempts of one step, run in parallel and judged.

A step with ``best_of: {n, profiles, judge}`` runs each of its attempts as a *round*: N
candidates, each an ordinary attempt (its own row, log, findings, usage and breaker permit)
with its own profile (``profiles`` in turn, or the step's own), each in its own worktree on
its own branch ``aidp/<run>/<workstream>+<step>.<attempt>`` started from the workstream's head.
They run at once, on threads of the worker that took the step; their tools, checks and
checkpoint commits are the executor's (:meth:`~aidp.engine.executor.Executor._invoke`).

The judge (``checks``): a candidate whose acceptance checks all passed beats one that failed;
among those, the fewest findings, then the smallest diff (lines added + removed against the
round's start), then the lowest cost, then the first. ``judge: PROFILE`` asks that tool profile
instead when two or more candidates passed: one more attempt of the round (kind ``judge``), in
a worktree of its own at the round's start, prompted with the task and each passing
candidate's figures and diff, which writes ``VERDICT.md`` (``WINNER: N`` and ``REASON: ...``);
a judge that fails or names no passing candidate leaves the ranking above in force, and says
so in the winner's reason. The winner's checkpoint commit -- whose
parent is the workstream's head -- becomes the step's checkpoint: the workstream's branch
moves to it by compare-and-swap, in the transaction that records the round. Every candidate
keeps its verdict (``won``, ``lost``, ``failed``) and the reason, its commit on its branch and
its diff size. When none passes, the candidate with the fewest findings stands for the round:
its failure decides what follows (retry, fix, escalate, fail: a round counts as one attempt of
the step's retry policy, and a fix round feeds every candidate the findings of the one that
stood for it).

Candidates run beside the run's ``--parallel`` slots (the step holds one slot for its round).

Budgets count every candidate: admission checks them once for the round, and the model gateway
asks before each request what all live attempts spent. After a crash, the round's attempts in
flight count as one crash.
"""

from __future__ import annotations

import dataclasses
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aidp.core.states import AttemptKind, AttemptOutcome
from aidp.engine.runtime import AttemptReport, StepRuntime, WorkstreamRuntime
from aidp.exceptions import AidpError, ToolError
from aidp.model.scope import compile_scope
from aidp.workspace.checkpoint import RefUpdate
from aidp.workspace.worktrees import reset_worktree

if TYPE_CHECKING:
    from aidp.engine.executor import Executor, _Admitted, _Claim, _Invoked, _Judgement
    from aidp.state.tx import Tx
    from aidp.workspace.worktrees import Worktree

__all__ = ["VERDICT_FILE", "candidate_branch", "run_round"]

#: Where a judge profile writes its choice, at the top of its worktree.
VERDICT_FILE = "VERDICT.md"
_DIFF_SHOWN = 30_000  # characters of each candidate's diff in the judge's prompt
_WINNER = re.compile(r"^\W*WINNER\W*:?\s*#?\s*(\d+)", re.IGNORECASE | re.MULTILINE)
_REASON = re.compile(r"^\W*REASON\W*:?\s*(.+)$", re.IGNORECASE | re.MULTILINE)


def candidate_branch(run_id: str, ws_id: str, step_id: str, number: int) -> str:
    """The branch of a candidate (``+`` is no id's character: it names no workstream)."""
    return f"aidp/{run_id}/{ws_id}+{step_id}.{number}"


@dataclasses.dataclass
class _Candidate:
    place: int  # 1..N
    admitted: _Admitted
    wsr: WorkstreamRuntime  # the workstream's runtime, on the candidate's branch and worktree
    claim: _Claim | None = None
    invoked: _Invoked | None = None
    judgement: _Judgement | None = None
    diff_files: int | None = None
    diff_lines: int | None = None
    verdict: str = "failed"
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.invoked is not None and self.invoked.outcome is AttemptOutcome.SUCCEEDED

    @property
    def cost(self) -> float:
        return self.invoked.result.usage.cost_usd if self.invoked is not None else 0.0

    @property
    def findings(self) -> int:
        return len(self.judgement.findings) if self.judgement is not None else 0

    def rank(self) -> tuple[int, int, float, int]:
        return (self.findings, self.diff_lines or 0, self.cost, self.place)


def _profiles(ex: Executor, wsr: WorkstreamRuntime, sr: StepRuntime
              ) -> tuple[list[str], str | None] | AttemptReport:
    """The profile of each candidate, and how they were chosen (or the report that no profile
    serves the step)."""
    step = sr.step
    spec = step.best_of
    assert spec is not None
    if sr.profile is not None:  # an escalation: every candidate runs the next profile
        return [sr.profile] * spec.n, f"escalated to {sr.profile}"
    if spec.profiles:
        return [spec.profiles[i % len(spec.profiles)] for i in range(spec.n)], None
    if step.capability is not None:
        try:
            choice = ex._choose(step)
        except ToolError as exc:
            return ex._no_profile(wsr, sr, exc)
        return [choice.profile] * spec.n, choice.reason
    return [step.tool] * spec.n, None


def _admit(ex: Executor, wsr: WorkstreamRuntime, sr: StepRuntime
           ) -> list[_Candidate] | AttemptReport:
    """Admission of the round: the budgets once, each candidate's breakers and fallbacks."""
    from aidp.engine.executor import _Admitted

    step = sr.step
    spec = step.best_of
    assert spec is not None
    chosen = _profiles(ex, wsr, sr)
    if isinstance(chosen, AttemptReport):
        return chosen
    names, how = chosen
    first = sr.last_number + 1
    kind = sr.next_kind if sr.last_number else AttemptKind.FIRST
    for name in dict.fromkeys(names):
        spent = ex._budget_spent(wsr, step, name)
        if spent is not None:
            return ex._stop_for_budget(wsr, sr, first, kind, name, spent)
    candidates: list[_Candidate] = []
    refused: AttemptReport | None = None
    for place, wanted in enumerate(names, start=1):
        try:
            gate = ex._admit(wsr, sr, wanted)
        except ToolError as exc:
            return ex._no_profile(wsr, sr, exc)
        if isinstance(gate, AttemptReport):
            refused = gate
            continue
        name, permit, why = gate
        number = first + len(candidates)
        reason = "; ".join(x for x in (f"best-of-{spec.n} candidate {place}", how, why) if x)
        admitted = _Admitted(number, kind, name, ex.settings.profile(name), permit, reason)
        branch = candidate_branch(ex.run_id, wsr.ws.id, step.id, number)
        candidates.append(_Candidate(place, admitted, dataclasses.replace(wsr, branch=branch)))
    if not candidates:
        assert refused is not None
        return refused
    return candidates


def _take_worktrees(ex: Executor, wsr: WorkstreamRuntime, candidates: list[_Candidate]) -> None:
    """A worktree per candidate, on its branch at the workstream's head."""
    start = wsr.head_sha
    assert start is not None
    for cand in candidates:
        wt = ex.pool.acquire(cand.wsr.branch, start)
        cand.wsr.worktree, cand.wsr.worktree_path = wt, str(wt.path)
        cand.wsr.needs_reset = False


def _diff_size(wt: Worktree, base: str, sha: str) -> tuple[int, int]:
    """(files, lines added + removed) between two commits."""
    stats = wt.pygit.diff(base, sha).stats
    return stats.files_changed, stats.insertions + stats.deletions


def _give_verdicts(candidates: list[_Candidate]) -> _Candidate:
    """Give each candidate its verdict and reason; return the one the round keeps."""
    passing = sorted((c for c in candidates if c.passed), key=_Candidate.rank)
    for cand in candidates:
        if not cand.passed:
            assert cand.invoked is not None
            cand.verdict = "failed"
            cand.reason = (f"{cand.invoked.outcome.value}: "
                           f"{(cand.judgement.reason if cand.judgement else None) or 'failed'}")
    if passing:
        winner = passing[0]
        winner.verdict = "won"
        winner.reason = (f"checks passed; the best of {len(passing)} passing of "
                         f"{len(candidates)} (fewest findings, smallest diff, lowest cost)")
        for cand in passing[1:]:
            cand.verdict = "lost"
            cand.reason = f"lost to candidate {winner.place}: " + _why_lost(cand, winner)
        return winner
    # none passed: the one with the fewest findings stands for the round (a cancellation first,
    # so that a stopping run stops the step)
    return min(candidates, key=lambda c: (
        c.invoked is None or c.invoked.outcome is not AttemptOutcome.CANCELLED, c.findings,
        c.place))


def _why_lost(cand: _Candidate, winner: _Candidate) -> str:
    if cand.findings != winner.findings:
        return f"more findings ({cand.findings} vs {winner.findings})"
    if (cand.diff_lines or 0) != (winner.diff_lines or 0):
        return f"larger diff ({cand.diff_lines} vs {winner.diff_lines} lines)"
    if cand.cost != winner.cost:
        return f"higher cost (${cand.cost:.4f} vs ${winner.cost:.4f})"
    return "a tie, decided by order"


@dataclasses.dataclass
class _Judge:
    """The judge profile's attempt: what it ran as, and the choice it wrote."""

    attempt: _Candidate
    choice: int | None = None  # a passing candidate's place
    why: str = ""  # its reason, or why there is no choice


def _judge_prompt(sr: StepRuntime, passing: list[_Candidate], start: str) -> str:
    step = sr.step
    task = step.prompt or (step.run if isinstance(step.run, str) else " ".join(step.run or ()))
    parts = [
        "You judge several candidate changes made for one task, and choose the best: the one "
        "that does the task most correctly, clearly and simply.", "", "## The task", "",
        task or f"(step {step.id} of workstream {sr.ws_id})", "",
        f"## The candidates ({len(passing)}; each passed the acceptance checks)"]
    for cand in passing:
        assert cand.wsr.worktree is not None and cand.invoked is not None
        diff = cand.wsr.worktree.pygit.diff(start, cand.invoked.sha).patch or ""
        cut = len(diff) > _DIFF_SHOWN
        parts += ["", f"### Candidate {cand.place} ({cand.admitted.profile_name}): "
                  f"{cand.diff_lines} line(s) in {cand.diff_files} file(s), "
                  f"{cand.findings} finding(s)", "", "```diff", diff[:_DIFF_SHOWN].rstrip(),
                  "```" + ("\n(the diff goes on; only its start is shown)" if cut else "")]
    parts += ["", "## Your answer", "",
              f"Write your choice to the file {VERDICT_FILE}, in exactly two lines, and change "
              "no other file:", "", "WINNER: <the candidate's number>",
              "REASON: <one sentence>"]
    return "\n".join(parts) + "\n"


def _ask_judge(ex: Executor, wsr: WorkstreamRuntime, sr: StepRuntime,
               candidates: list[_Candidate], start: str, round_: int) -> _Judge | None:
    """Run the round's judge profile on the passing candidates (None: it was not asked, its
    budget being spent -- the ranking stands)."""
    from aidp.engine.executor import _Admitted

    spec = sr.step.best_of
    assert spec is not None
    passing = [c for c in candidates if c.passed]
    name = spec.judge
    number = candidates[-1].admitted.number + 1
    step = sr.step.model_copy(update={
        "prompt": _judge_prompt(sr, passing, start), "prompt_file": None, "run": None,
        "checks": [], "requires_change": False, "tool": name, "capability": None,
        "context": []})
    judge_sr = dataclasses.replace(sr, step=step, fix_findings=())
    admitted = _Admitted(number, AttemptKind.JUDGE, name, ex.settings.profile(name), None,
                         f"judge of best-of round {round_}")
    branch = candidate_branch(ex.run_id, wsr.ws.id, sr.step.id, number)
    attempt = _Candidate(0, admitted, dataclasses.replace(
        wsr, branch=branch, scope=compile_scope([VERDICT_FILE])))
    if ex._budget_spent(wsr, sr.step, name) is not None:
        return None
    wt = ex.pool.acquire(branch, start)
    attempt.wsr.worktree, attempt.wsr.worktree_path = wt, str(wt.path)
    attempt.claim = ex._claim(attempt.wsr, judge_sr, admitted, (round_, None))
    attempt.invoked = ex._invoke(attempt.wsr, judge_sr, admitted, attempt.claim)
    attempt.judgement = ex._judge(judge_sr, admitted, attempt.claim, attempt.invoked)
    verdict = wt.path / VERDICT_FILE
    text = verdict.read_text("utf-8", "replace")[:10_000] if verdict.is_file() else ""
    places = {c.place for c in passing}
    found = [int(m) for m in _WINNER.findall(text)]
    reason = _REASON.search(text)
    if not attempt.passed:
        judge = _Judge(attempt, None, f"its attempt {attempt.invoked.outcome.value}")
    elif not found or found[-1] not in places:
        judge = _Judge(attempt, None, f"{VERDICT_FILE} names no passing candidate "
                       f"(WINNER: one of {', '.join(map(str, sorted(places)))})")
    else:
        judge = _Judge(attempt, found[-1], reason.group(1).strip()[:500] if reason else "")
    attempt.reason = f"WINNER: {judge.choice}; {judge.why}" if judge.choice else judge.why
    return judge


def _heed(judge: _Judge, candidates: list[_Candidate], ranked: _Candidate) -> _Candidate:
    """The winner once the judge spoke: its choice, or the ranking's (said in the reason)."""
    name = judge.attempt.admitted.profile_name
    if judge.choice is None:
        ranked.reason += f"; judge {name} gave no verdict ({judge.why}), so the ranking stands"
        return ranked
    winner = next(c for c in candidates if c.place == judge.choice)
    for cand in candidates:
        if cand.passed:
            cand.verdict = "won" if cand is winner else "lost"
            cand.reason = (f"chosen by judge {name}" if cand is winner
                           else f"lost to candidate {winner.place}: judge {name}") + (
                               f": {judge.why}" if judge.why else "")
    return winner


def _verdict(cand: _Candidate) -> dict[str, Any]:
    """The attempt row's best-of columns (a judge's: its reason only)."""
    if not cand.place:
        return {"verdict_reason": cand.reason}
    invoked = cand.invoked
    return {"verdict": cand.verdict, "verdict_reason": cand.reason,
            "candidate_sha": invoked.sha if invoked is not None else None,
            "diff_files": cand.diff_files, "diff_lines": cand.diff_lines}


def run_round(ex: Executor, wsr: WorkstreamRuntime, sr: StepRuntime,
              may_close: bool) -> AttemptReport:
    """One round of ``sr``'s best-of-N candidates; every effect is recorded before this
    returns (see the module docstring)."""
    step = sr.step
    admitted = _admit(ex, wsr, sr)
    if isinstance(admitted, AttemptReport):
        return admitted
    candidates = admitted
    start = wsr.head_sha
    assert start is not None and wsr.worktree is not None
    try:
        _take_worktrees(ex, wsr, candidates)
    except AidpError as exc:
        for cand in candidates:
            if cand.wsr.worktree is not None:
                ex.pool.release(cand.wsr.worktree)
        for cand in candidates:
            ex._settle_breaker(cand.admitted.permit, cand.admitted.profile_name,
                               AttemptOutcome.CANCELLED, None, [])
        return AttemptReport(wsr.ws.id, step.id, sr.last_number, sr.attempts, None,
                             sr.state, prepare_error=exc.message)
    judge: _Judge | None = None
    try:
        round_ = candidates[0].admitted.number
        for cand in candidates:  # one thread: the first claim carries the deferred preparation
            cand.claim = ex._claim(cand.wsr, sr, cand.admitted, (round_, cand.place))

        def attempt(cand: _Candidate) -> None:
            assert cand.claim is not None
            cand.invoked = ex._invoke(cand.wsr, sr, cand.admitted, cand.claim, cand.place)
            cand.judgement = ex._judge(sr, cand.admitted, cand.claim, cand.invoked)
            if cand.invoked.sha is not None and cand.invoked.checkpoint is not None:
                cand.invoked.checkpoint.apply()  # the candidate's own branch: kept to compare
                assert cand.wsr.worktree is not None
                cand.diff_files, cand.diff_lines = _diff_size(cand.wsr.worktree, start,
                                                              cand.invoked.sha)

        with ThreadPoolExecutor(max_workers=len(candidates),
                                thread_name_prefix=f"aidp-best-of-{step.id}") as threads:
            for future in [threads.submit(attempt, cand) for cand in candidates]:
                future.result()
        kept = _give_verdicts(candidates)
        spec = step.best_of
        assert spec is not None
        if spec.judge != "checks" and sum(c.passed for c in candidates) > 1:
            judge = _ask_judge(ex, wsr, sr, candidates, start, round_)
            if judge is not None:
                kept = _heed(judge, candidates, kept)
        settled = [*(c for c in candidates if c is not kept),  # recorded beside the kept one
                   *([judge.attempt] if judge is not None else [])]
        assert kept.claim is not None and kept.invoked is not None and kept.judgement is not None
        invoked = kept.invoked
        if invoked.sha is not None:  # the workstream's branch moves to the winner's commit
            invoked = dataclasses.replace(invoked, checkpoint=RefUpdate(
                ex.repo, wsr.branch, invoked.sha, start,
                f"aidp: best of {len(candidates)}: {wsr.ws.id}/{step.id} candidate {kept.place}"))

        def record_others(tx: Tx) -> None:  # the other candidates' rows, and the judge's
            for cand in settled:
                assert cand.claim and cand.invoked and cand.judgement
                number = cand.admitted.number
                tx.update_attempt(cand.claim.attempt_id, finished_at=tx.now,
                                  **ex._attempt_values(cand.invoked, cand.judgement,
                                                       diagnostics[number]),
                                  **_verdict(cand))
                tx.insert_findings(ex._finding_rows(wsr.ws.id, step.id, number,
                                                    cand.judgement.sourced))
            tx.event(ex.run_id, "step.judged", wsr.ws.id, step.id, round=round_,
                     kept=kept.admitted.number, winner=kept.place if kept.passed else None,
                     candidates=[{"attempt": c.admitted.number, "place": c.place,
                                  "profile": c.admitted.profile_name,
                                  "outcome": c.invoked.outcome.value if c.invoked else None,
                                  "verdict": c.verdict, "reason": c.reason,
                                  "findings": c.findings, "diff_lines": c.diff_lines,
                                  "cost_usd": c.cost} for c in candidates],
                     judge=None if judge is None else {
                         "attempt": judge.attempt.admitted.number,
                         "profile": judge.attempt.admitted.profile_name,
                         "choice": judge.choice, "reason": judge.why})

        diagnostics = {
            cand.admitted.number: ex._settle(cand.wsr, sr, cand.admitted, cand.claim,
                                             cand.invoked, cand.judgement)
            for cand in settled if cand.claim and cand.invoked and cand.judgement}
        report = ex._record(kept.wsr, sr, kept.admitted, kept.claim, invoked, kept.judgement,
                            may_close, verdict=_verdict(kept), also=record_others)
    finally:
        for cand in [*candidates, *([judge.attempt] if judge is not None else [])]:
            if cand.wsr.worktree is not None:
                ex.pool.release(cand.wsr.worktree)
    if report.checkpoint_sha is not None:
        wsr.head_sha = report.checkpoint_sha
        if kept.wsr.worktree is None:  # the workstream closed (the candidate's went back)
            if wsr.worktree is not None:
                ex.pool.release(wsr.worktree)
            wsr.worktree = None
        elif wsr.worktree is not None:
            reset_worktree(wsr.worktree)  # onto the branch's new head
    # the next round numbers its attempts after every candidate (and the judge) of this one
    last = judge.attempt.admitted.number if judge is not None else candidates[-1].admitted.number
    return dataclasses.replace(report, last_number=last)
