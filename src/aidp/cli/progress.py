"""Progress views for ``aidp run`` / ``resume``: a live rich table on a TTY, plain lines
elsewhere, log records (JSON lines) under ``AIDP_LOG_FORMAT=json`` -- as in a run worker of
``aidp serve --log-format json``."""

from __future__ import annotations

import time
from typing import IO, Any

__all__ = ["LiveReporter", "LogReporter", "PlainReporter", "gate_lines", "merge_note",
           "queue_details", "queue_line", "render_summary"]

_ICONS = {
    "completed": "✔", "failed": "✘", "timeout": "⏱", "skipped": "↷", "cancelled": "■",
    "running": "▶", "retrying": "↻", "pending": "·", "validating": "✓?",
}


def gate_lines(kind: str, data: dict[str, Any]) -> list[str]:
    """What an opening human gate shows: the worktree to work in and the step's prompt."""
    if kind != "step.awaiting_approval":
        return []
    lines = [f"worktree: {data['worktree']}"] if data.get("worktree") else []
    if data.get("prompt"):
        lines.append("prompt:")
        lines.extend(f"  {line}" for line in str(data["prompt"]).splitlines())
    return lines


def merge_note(ws_id: str, data: dict[str, Any]) -> str | None:
    """What a completed workstream's merge did, in words (None: it was not merged)."""
    into, sha = data.get("merged_into"), data.get("merged_sha")
    if not into or not sha:
        return None
    if data.get("merge_changed") is False:
        return f"{data.get('merge_strategy') or 'merge'} of {ws_id} into {into} changed nothing"
    verb = "squashed" if data.get("merge_strategy") == "squash" else "merged"
    return f"{verb} {ws_id} into {into} ({str(sha)[:7]})"


def queue_line(queue: dict[str, Any]) -> str:
    """A merge queue in the run's summary: ``merge queue integration: 8 queued, 7 landed,
    1 rejected (ws3), 5 check runs``."""
    parts = [f"{queue['queued']} queued", f"{len(queue['landed'])} landed"]
    for key, word in (("rejected", "rejected"), ("not_merged", "not merged")):
        if queue.get(key):
            parts.append(f"{len(queue[key])} {word} ({', '.join(queue[key])})")
    runs = queue["check_runs"]
    parts.append(f"{runs} check run{'' if runs == 1 else 's'}")
    return f"merge queue {queue['into']}: {', '.join(parts)}"


#: Event data a progress line shows (PlainReporter) or a log record carries (LogReporter).
_SHOWN = ("attempt", "outcome", "reason", "branch", "adopted", "into", "check_runs")


def queue_details(kind: str, data: dict[str, Any]) -> dict[str, str]:
    """What a merge queue's check run adds to its progress line: the batch and the verdict."""
    if kind != "merge.checked":
        return {}
    return {"members": ",".join(data.get("members") or ()),
            "verdict": "passed" if data.get("passed") else "failed"}


class PlainReporter:
    """One line per event, for logs and CI (no colours, no cursor movement)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.t0 = time.monotonic()

    def event(self, kind: str, ws_id: str | None, step_id: str | None, data: dict[str, Any]
              ) -> None:
        if kind == "run.finished":
            return
        where = "/".join(p for p in (ws_id, step_id) if p)
        details = []
        for key in _SHOWN:
            if data.get(key) not in (None, "", 0):
                details.append(f"{key}={data[key]}")
        details += [f"{k}={v}" for k, v in queue_details(kind, data).items()]
        if data.get("sha"):
            details.append(f"checkpoint={str(data['sha'])[:10]}")
        if data.get("next_attempt_at"):
            wait = max(0.0, data["next_attempt_at"] - time.time())
            details.append(f"next attempt in {wait:.1f}s")
        note = merge_note(ws_id, data) if kind == "workstream.completed" and ws_id else None
        if note:
            details.append(f"-- {note}")
        line = f"[{time.monotonic() - self.t0:7.2f}s] {kind:<22} {where} {' '.join(details)}"
        self.stream.write(line.rstrip() + "\n" + "".join(
            f"    {text}\n" for text in gate_lines(kind, data)))
        self.stream.flush()

    def output(self, ws_id: str, step_id: str, data: bytes) -> None:
        """Tool output is in the step's log (`aidp logs`), not repeated here."""


class LogReporter:
    """One log record per event, on logger ``aidp.run``, with the run, workstream, step and
    attempt as fields (:mod:`aidp.app.logs` writes each as a JSON line); failures are
    warnings. It carries the same event data as :class:`PlainReporter`'s lines, no more."""

    def __init__(self, run_id: str) -> None:
        import logging

        self.run_id = run_id
        self.log = logging.getLogger("aidp.run")

    def event(self, kind: str, ws_id: str | None, step_id: str | None, data: dict[str, Any]
              ) -> None:
        import logging

        if kind == "run.finished":
            return
        fields: dict[str, Any] = {k: data[k] for k in _SHOWN if data.get(k) not in (None, "", 0)}
        fields.update(queue_details(kind, data))
        if data.get("sha"):
            fields["checkpoint"] = str(data["sha"])[:10]
        if data.get("next_attempt_at"):
            fields["next_attempt_in_s"] = round(max(0.0, data["next_attempt_at"] - time.time()),
                                                1)
        note = merge_note(ws_id, data) if kind == "workstream.completed" and ws_id else None
        if note:
            fields["merge"] = note
        if kind == "step.awaiting_approval":
            fields.update({k: data[k] for k in ("worktree", "prompt") if data.get(k)})
        where = "/".join(p for p in (ws_id, step_id) if p)
        failed = kind.rsplit(".", 1)[-1] in ("failed", "timeout", "cancelled", "crashed")
        self.log.log(logging.WARNING if failed else logging.INFO, "%s", f"{kind} {where}".strip(),
                     extra={"run": self.run_id, "workstream": ws_id, "step": step_id,
                            "event": kind, **fields})

    def output(self, ws_id: str, step_id: str, data: bytes) -> None:
        """Tool output is in the step's log (`aidp logs`), not repeated here."""


class LiveReporter:
    """A rich table of workstreams that refreshes in place while the run goes on."""

    def __init__(self, console: Any, workstreams: list[tuple[str, int]]) -> None:
        from rich.live import Live

        self.console = console
        self.rows: dict[str, dict[str, Any]] = {
            ws_id: {"status": "pending", "step": "", "done": 0, "total": total, "note": "",
                    "output": ""}
            for ws_id, total in workstreams
        }
        self.t0 = time.monotonic()
        self.live = Live(self._table(), console=console, refresh_per_second=8, transient=False)
        self.live.start()

    def event(self, kind: str, ws_id: str | None, step_id: str | None, data: dict[str, Any]
              ) -> None:
        row = self.rows.get(ws_id or "")
        if row is not None:
            noun, _, verb = kind.partition(".")
            if noun == "workstream":
                row["status"] = verb
                row["note"] = data.get("reason") or ""
                if verb == "completed":
                    row["step"] = ""
                    row["note"] = merge_note(ws_id or "", data) or ""
            elif noun == "step":
                row["step"] = f"{step_id} {_ICONS.get(verb, '')} {verb}"
                if verb == "started":
                    row["status"] = "running"
                    row["step"] = f"{step_id} ▶ attempt {data.get('attempt', 1)}"
                if verb == "completed":
                    row["done"] += 1
                if data.get("reason"):
                    row["note"] = str(data["reason"])
        for text in gate_lines(kind, data):
            self.console.print(text, markup=False, highlight=False)
        if kind == "run.finished":
            self.live.update(self._table())
            self.live.stop()
        else:
            self.live.update(self._table())

    def output(self, ws_id: str, step_id: str, data: bytes) -> None:
        """Keep the last non-empty output line of each workstream (shown in the table)."""
        lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
        row = self.rows.get(ws_id)
        if lines and row is not None:
            row["output"] = lines[-1].strip()[:60]

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"aidp run  {time.monotonic() - self.t0:6.1f}s", expand=False)
        for name in ("workstream", "status", "steps", "current step", "note"):
            table.add_column(name)
        for ws_id, row in self.rows.items():
            status = row["status"]
            table.add_row(ws_id, f"{_ICONS.get(status, '')} {status}",
                          f"{row['done']}/{row['total']}", row["step"],
                          (row["note"] or row["output"])[:60])
        return table


def render_summary(summary: dict[str, Any], stream: IO[str]) -> None:
    """The final summary: one line per workstream and the run's verdict."""
    for ws in summary["workstreams"]:
        steps = ws["steps"]
        done = sum(1 for s in steps.values() if s == "completed")
        line = (f"  {_ICONS.get(ws['status'], ' ')} {ws['id']:<24} {ws['status']:<10} "
                f"{done}/{len(steps)} steps  {ws['branch']}")
        if ws.get("reason"):
            line += f"\n      {ws['reason']}"
        note = merge_note(ws["id"], ws)
        if note:
            line += f"\n      {note}"
        stream.write(line + "\n")
    for queue in summary.get("merge_queues", ()):
        stream.write(queue_line(queue) + "\n")
    stream.write(f"run {summary['run_id']} {summary['status']} in {summary['duration_s']:.2f}s\n")
    stream.flush()
