"""Reports of a run for CI: JUnit XML and a Markdown summary (``aidp ci``).

This module owns how a run's read model (:class:`~aidp.app.views.RunView`) becomes a test
report: every step is a test case of its workstream's test suite, and a step's state decides
its verdict (:class:`Verdict`) -- completed passes; failed or timed out is a failure (its
``type`` the outcome that ended it: ``failed_permanent``, ``timed_out``, ``budget_exceeded``,
...); skipped, cancelled or never reached is skipped, with the reason. :func:`collect_report`
reads what the run view does not hold (the tail of each failed step's last log, masked again
with the run's secret names); everything else here is pure: :func:`build_report` turns the
views into a :class:`RunReport`, and :func:`junit_xml`, :func:`markdown_summary` and
:meth:`RunReport.to_dict` render it.

Text from tools (findings, log tails) can hold anything: characters XML 1.0 forbids (NUL,
ANSI escapes, other control characters) are written as visible ``\\xNN`` escapes, so the XML
is always well-formed; the rest is escaped by :mod:`xml.etree.ElementTree`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.app.views import FindingView, RunView, StepView, WorkstreamView, iso_ts

if TYPE_CHECKING:
    from aidp.app.context import AppContext

__all__ = [
    "LOG_TAIL_BYTES", "RunReport", "StepReport", "Verdict", "WorkstreamReport", "build_report",
    "collect_report", "finding_line", "junit_xml", "markdown_summary", "xml_safe",
]

#: How much of the end of a failed step's last log a report carries (``<system-out>``).
LOG_TAIL_BYTES = 4096
#: The longest ``message`` attribute of a ``<failure>`` or ``<skipped>`` (its text has it all).
_MESSAGE_CHARS = 500

# Characters outside XML 1.0's Char production: C0 controls but TAB, LF and CR; surrogates;
# U+FFFE and U+FFFF.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class Verdict(str, Enum):
    """What a step is in a test report."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


_FAILED_STATES = ("failed", "timeout")


@dataclass(frozen=True)
class StepReport:
    """One step as a test case: its verdict, why, how long and what it cost.

    ``duration_s`` runs from its first attempt's start to its last attempt's end (retry waits
    included; 0 for a step that never ran). ``failure_type`` is the outcome that ended a failed
    step; ``checks`` the acceptance checks its last attempt failed; ``log_tail`` the end of that
    attempt's log (failed steps only).
    """

    ws_id: str
    step_id: str
    status: str
    verdict: Verdict
    failure_type: str | None
    reason: str | None
    attempts: int
    started_at: float | None
    duration_s: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    findings: tuple[FindingView, ...] = ()
    checks: tuple[str, ...] = ()
    log_tail: str = ""

    @property
    def message(self) -> str:
        """One line saying why the step failed or was skipped ("" when it passed)."""
        if self.verdict is Verdict.PASSED:
            return ""
        if self.verdict is Verdict.FAILED or self.status in ("skipped", "cancelled"):
            text = self.reason or f"{self.step_id} {self.status}"
        elif self.attempts == 0:  # pending, never started
            text = "not run: the run ended before this step started"
        else:  # the run stopped (a signal, a crash) in the middle of it
            text = "not finished: the run stopped before this step completed" + (
                f" ({self.reason})" if self.reason else "")
        first = (text.splitlines() or [""])[0]
        return first if len(first) <= _MESSAGE_CHARS else first[:_MESSAGE_CHARS - 1] + "…"

    def to_dict(self) -> dict[str, Any]:
        """The step as ``aidp ci --json`` prints it."""
        return {"id": self.step_id, "status": self.status, "verdict": self.verdict.value,
                "type": self.failure_type, "reason": self.reason, "attempts": self.attempts,
                "duration_s": round(self.duration_s, 3), "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost_usd": self.cost_usd,
                "checks": list(self.checks),
                "findings": [f.to_dict() for f in self.findings]}


@dataclass(frozen=True)
class WorkstreamReport:
    """One workstream as a test suite."""

    id: str
    status: str
    branch: str
    reason: str | None
    started_at: float | None
    duration_s: float
    steps: tuple[StepReport, ...] = ()

    def count(self, verdict: Verdict) -> int:
        """How many of its steps have ``verdict``."""
        return sum(1 for s in self.steps if s.verdict is verdict)

    def to_dict(self) -> dict[str, Any]:
        """The workstream as ``aidp ci --json`` prints it."""
        return {"id": self.id, "status": self.status, "branch": self.branch,
                "reason": self.reason, "duration_s": round(self.duration_s, 3),
                "steps": [s.to_dict() for s in self.steps]}


@dataclass(frozen=True)
class RunReport:
    """A run as a test report: its workstreams' steps with their verdicts."""

    run_id: str
    status: str
    started_at: float | None
    duration_s: float
    workstreams: tuple[WorkstreamReport, ...] = ()

    @property
    def steps(self) -> list[StepReport]:
        """Every step, workstream by workstream."""
        return [s for ws in self.workstreams for s in ws.steps]

    def count(self, verdict: Verdict) -> int:
        """How many steps have ``verdict``."""
        return sum(ws.count(verdict) for ws in self.workstreams)

    @property
    def ok(self) -> bool:
        """True when the run completed and every step passed (``aidp ci`` exits 0)."""
        return self.status == "completed" and all(
            s.verdict is Verdict.PASSED for s in self.steps)

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """The report as ``aidp ci --json`` prints it (without the paths it was written to)."""
        return {"run_id": self.run_id, "status": self.status, "ok": self.ok,
                "duration_s": round(self.duration_s, 3), "tests": len(self.steps),
                "passed": self.count(Verdict.PASSED), "failures": self.count(Verdict.FAILED),
                "skipped": self.count(Verdict.SKIPPED), "cost_usd": self.cost_usd,
                "workstreams": [ws.to_dict() for ws in self.workstreams]}


# -- building ---------------------------------------------------------------------------------

def collect_report(app: AppContext, run_id: str, *, tail_bytes: int = LOG_TAIL_BYTES
                   ) -> RunReport:
    """The report of run ``run_id``, with the last ``tail_bytes`` of each failed step's last
    log (masked again with the run's secret names, though aidp's logs are masked as written).

    Raises:
        NotFoundError: no database or no such run.
    """
    from aidp.app.masking import mask_text, run_secret_names
    from aidp.app.queries import get_run

    view = get_run(app, run_id)
    names = run_secret_names(app.store().run(run_id).plan_json, app.settings)
    tails: dict[tuple[str, str], str] = {}
    for ws in view.workstreams:
        for step in ws.steps:
            last = step.attempt_list[-1] if step.attempt_list else None
            if step.status in _FAILED_STATES and last is not None and last.log_path:
                tails[(ws.id, step.id)] = mask_text(_read_tail(Path(last.log_path), tail_bytes),
                                                    names)
    return build_report(view, tails)


def _read_tail(path: Path, size: int) -> str:
    """The last ``size`` bytes of ``path`` as text from its first whole line ("" if none)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            length = fh.tell()
            fh.seek(max(0, length - size))
            data = fh.read(size)
    except OSError:
        return ""
    if length > size and b"\n" in data:
        data = data.split(b"\n", 1)[1]  # a cut first line is noise
    return data.decode("utf-8", "replace")


def build_report(view: RunView, log_tails: Mapping[tuple[str, str], str] | None = None
                 ) -> RunReport:
    """The report of ``view`` (pure); ``log_tails``: ``(ws_id, step_id)`` -> the end of that
    step's last log."""
    tails = log_tails or {}
    workstreams = tuple(_workstream(ws, tails) for ws in view.workstreams)
    starts = [t for t in (view.started_at, view.created_at) if t is not None]
    ends = [t for t in (view.finished_at,) if t is not None]
    ends += [s.started_at + s.duration_s for ws in workstreams for s in ws.steps
             if s.started_at is not None]
    started = starts[0] if starts else None
    duration = max(0.0, max(ends) - started) if started is not None and ends else 0.0
    return RunReport(run_id=view.run_id, status=view.state, started_at=started,
                     duration_s=duration, workstreams=workstreams)


def _workstream(ws: WorkstreamView, tails: Mapping[tuple[str, str], str]) -> WorkstreamReport:
    steps = tuple(_step(ws, s, tails.get((ws.id, s.id), "")) for s in ws.steps)
    ran = [s for s in steps if s.started_at is not None]
    started = min((s.started_at for s in ran if s.started_at is not None), default=None)
    end = max((s.started_at + s.duration_s for s in ran if s.started_at is not None),
              default=None)
    duration = end - started if started is not None and end is not None else 0.0
    return WorkstreamReport(id=ws.id, status=ws.status, branch=ws.branch, reason=ws.reason,
                            started_at=started, duration_s=max(0.0, duration), steps=steps)


def _step(ws: WorkstreamView, step: StepView, tail: str) -> StepReport:
    tries = step.attempt_list
    starts = [a.started_at for a in tries if a.started_at is not None]
    ends = [a.finished_at for a in tries if a.finished_at is not None]
    started = min(starts) if starts else None
    duration = max(0.0, max(ends) - started) if started is not None and ends else 0.0
    if step.status == "completed":
        verdict = Verdict.PASSED
    elif step.status in _FAILED_STATES:
        verdict = Verdict.FAILED
    else:  # skipped, cancelled, or never reached (pending, running ... when the run ended)
        verdict = Verdict.SKIPPED
    last = tries[-1] if tries else None
    checks = tuple(dict.fromkeys(
        f.source for f in (last.findings if last is not None else ())
        if f.source and f.source != "tool"))
    failure_type = None
    if verdict is Verdict.FAILED:
        failure_type = step.outcome or (last.outcome if last is not None else None) or (
            "timed_out" if step.status == "timeout" else step.status)
    return StepReport(
        ws_id=ws.id, step_id=step.id, status=step.status, verdict=verdict,
        failure_type=failure_type, reason=step.reason, attempts=len(tries), started_at=started,
        duration_s=duration,
        input_tokens=sum(a.input_tokens or 0 for a in tries),
        output_tokens=sum(a.output_tokens or 0 for a in tries),
        cost_usd=sum(a.cost_usd or 0.0 for a in tries),
        findings=tuple(f for a in tries for f in a.findings),
        checks=checks if verdict is Verdict.FAILED else (),
        log_tail=tail if verdict is Verdict.FAILED else "")


# -- rendering --------------------------------------------------------------------------------

def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 forbids written as a visible ``\\xNN`` (or
    ``\\uNNNN``) escape, so any tool output can go into an attribute or element."""
    return _XML_FORBIDDEN.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def finding_line(finding: FindingView) -> str:
    """One finding as ``aidp findings`` prints it: ``WS/STEP#ATTEMPT class detector [code]
    file:line:col: first line of the message``."""
    where = finding.file or "-"
    if finding.line:
        where += f":{finding.line}" + (f":{finding.column}" if finding.column else "")
    code = f" [{finding.code}]" if finding.code else ""
    first = (finding.message.splitlines() or [""])[0]
    return (f"{finding.ws_id}/{finding.step_id}#{finding.attempt} "
            f"{finding.failure_class!s:<9} {finding.detector}{code} {where}: {first}")


def _failure_text(step: StepReport) -> str:
    """The body of a step's ``<failure>``: outcome, reason, failing checks, findings."""
    lines = [f"{step.ws_id}/{step.step_id} {step.status} ({step.failure_type}) after "
             f"{step.attempts} attempt{'s' if step.attempts != 1 else ''}"]
    if step.reason:
        lines.append(f"reason: {step.reason}")
    lines.extend(f"failing check: {name}" for name in step.checks)
    if step.findings:
        lines.append(f"findings ({len(step.findings)}):")
        lines.extend(f"  {finding_line(f)}" for f in step.findings)
    else:
        lines.append("findings: none recorded")
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    return f"{max(0.0, value):.3f}"


def junit_xml(report: RunReport) -> str:
    """The report as JUnit XML (the Ant/Jenkins shape CI servers read): ``<testsuites>`` with
    the totals, one ``<testsuite>`` per workstream with its run id, branch, attempts, tokens
    and cost as properties, one ``<testcase>`` per step (``classname`` the workstream id);
    ``<failure type=OUTCOME>`` listing the findings and failing checks, ``<skipped>`` with
    the reason, and a failed step's log tail as its ``<system-out>``."""
    import xml.etree.ElementTree as ET

    steps = report.steps
    root = ET.Element("testsuites", {
        "name": xml_safe(f"aidp run {report.run_id}"), "tests": str(len(steps)),
        "failures": str(report.count(Verdict.FAILED)), "errors": "0",
        "skipped": str(report.count(Verdict.SKIPPED)), "time": _seconds(report.duration_s)})
    if report.started_at is not None:
        root.set("timestamp", iso_ts(report.started_at) or "")
    for ws in report.workstreams:
        suite = ET.SubElement(root, "testsuite", {
            "name": xml_safe(ws.id), "tests": str(len(ws.steps)),
            "failures": str(ws.count(Verdict.FAILED)), "errors": "0",
            "skipped": str(ws.count(Verdict.SKIPPED)), "time": _seconds(ws.duration_s),
            "timestamp": iso_ts(ws.started_at or report.started_at) or "1970-01-01T00:00:00"})
        properties = ET.SubElement(suite, "properties")
        tokens = (sum(s.input_tokens for s in ws.steps), sum(s.output_tokens for s in ws.steps))
        cost = sum(s.cost_usd for s in ws.steps)
        values = {"aidp.run_id": report.run_id, "aidp.branch": ws.branch,
                  "aidp.status": ws.status, "aidp.reason": ws.reason or "",
                  "aidp.attempts": str(sum(s.attempts for s in ws.steps)),
                  # usage is known only where a model was asked (shell steps spend nothing)
                  "aidp.input_tokens": str(tokens[0]) if any(tokens) else "",
                  "aidp.output_tokens": str(tokens[1]) if any(tokens) else "",
                  "aidp.cost_usd": f"{cost:.6f}" if cost else ""}
        for name, value in values.items():
            if value:
                ET.SubElement(properties, "property", {"name": name, "value": xml_safe(value)})
        for step in ws.steps:
            case = ET.SubElement(suite, "testcase", {
                "classname": xml_safe(ws.id), "name": xml_safe(step.step_id),
                "time": _seconds(step.duration_s)})
            if step.verdict is Verdict.FAILED:
                failure = ET.SubElement(case, "failure", {
                    "message": xml_safe(step.message), "type": step.failure_type or "failed"})
                failure.text = xml_safe(_failure_text(step))
                if step.log_tail:
                    ET.SubElement(case, "system-out").text = xml_safe(step.log_tail)
            elif step.verdict is Verdict.SKIPPED:
                ET.SubElement(case, "skipped", {"message": xml_safe(step.message)})
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


_MARKS = {Verdict.PASSED: "✅", Verdict.FAILED: "❌", Verdict.SKIPPED: "⏭️"}


def _cell(text: str) -> str:
    """``text`` fit for a Markdown table cell: one line, pipes and markup escaped."""
    one = " ".join(text.split())
    return re.sub(r"([\\|`*<>\[\]])", r"\\\1", one)


def _fenced(text: str) -> list[str]:
    """``text`` in a code fence longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", text.rstrip("\n"), fence]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _cost(step: StepReport) -> str:
    if not step.cost_usd and not (step.input_tokens or step.output_tokens):
        return "-"
    return f"${step.cost_usd:.4f} ({step.input_tokens + step.output_tokens:,} tokens)"


def markdown_summary(report: RunReport) -> str:
    """The report in Markdown (for ``$GITHUB_STEP_SUMMARY`` and pull-request comments): a
    headline with the counts, wall time and run id; a table of every step with its outcome,
    attempts, duration and cost; then a section per failed step with its findings."""
    passed, failed = report.count(Verdict.PASSED), report.count(Verdict.FAILED)
    skipped = report.count(Verdict.SKIPPED)
    mark = "✅" if report.ok else "❌"
    lines = [f"## {mark} aidp: {passed} passed, {failed} failed, {skipped} skipped",
             "",
             f"Run `{report.run_id}` {report.status} in {_duration(report.duration_s)}"
             + (f", cost ${report.cost_usd:.4f}" if report.cost_usd else "") + ".",
             "",
             "| workstream | step | outcome | attempts | duration | cost |",
             "|---|---|---|---:|---:|---:|"]
    for ws in report.workstreams:
        for step in ws.steps:
            outcome = step.status + (f" ({step.failure_type})" if step.failure_type else "")
            lines.append(f"| {_cell(ws.id)} | {_cell(step.step_id)} | "
                         f"{_MARKS[step.verdict]} {_cell(outcome)} | {step.attempts} | "
                         f"{_duration(step.duration_s)} | {_cell(_cost(step))} |")
    failures = [s for s in report.steps if s.verdict is Verdict.FAILED]
    for step in failures:
        lines += ["", f"### ❌ {_cell(step.ws_id)}/{_cell(step.step_id)}: "
                  f"{_cell(step.failure_type or step.status)}", ""]
        lines += _fenced(_failure_text(step))
    skipped_steps = [s for s in report.steps if s.verdict is Verdict.SKIPPED]
    if skipped_steps:
        lines += ["", "### ⏭️ Skipped", ""]
        lines += [f"- {_cell(s.ws_id)}/{_cell(s.step_id)}: {_cell(s.message)}"
                  for s in skipped_steps]
    return "\n".join(lines) + "\n"
