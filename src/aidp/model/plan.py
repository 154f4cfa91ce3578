"""The validated plan of one run: what the engine executes and what a run row stores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aidp.model.workstream import Step, Workstream

__all__ = ["Plan"]


@dataclass(frozen=True)
class Plan:
    """Validated workstreams in file order, self-contained (``prompt_file`` already read into
    ``prompt``), so a run can be resumed even when the files changed or vanished.

    ``sources`` maps a workstream id to ``"file:line"`` where it was declared. ``locations``
    (not stored with a run) maps a node of a freshly loaded plan to its ``(file, line)``: keys
    ``WS``, ``WS/STEP`` (the lines of their ``id``) and ``WS:FIELD``, ``WS/STEP:FIELD`` (the
    line of that field, when written).
    """

    workstreams: tuple[Workstream, ...]
    sources: dict[str, str] = field(default_factory=dict)
    locations: dict[str, tuple[str, int | None]] = field(default_factory=dict, compare=False)

    def location(self, ws_id: str, step_id: str | None = None,
                 name: str | None = None) -> tuple[str, int | None]:
        """``(file, line)`` of a field of a workstream or step (else of its ``id``), as
        precisely as known."""
        node = ws_id if step_id is None else f"{ws_id}/{step_id}"
        if name is not None and f"{node}:{name}" in self.locations:
            return self.locations[f"{node}:{name}"]
        if node in self.locations:
            return self.locations[node]
        file, _, line = self.sources.get(ws_id, "?").rpartition(":")
        return (file, int(line)) if line.isdigit() else (self.sources.get(ws_id, "?"), None)

    def workstream(self, ws_id: str) -> Workstream:
        for ws in self.workstreams:
            if ws.id == ws_id:
                return ws
        raise KeyError(ws_id)

    def step(self, ws_id: str, step_id: str) -> Step:
        for step in self.workstream(ws_id).steps:
            if step.id == step_id:
                return step
        raise KeyError(f"{ws_id}/{step_id}")

    @property
    def step_count(self) -> int:
        return sum(len(ws.steps) for ws in self.workstreams)

    def to_json(self) -> str:
        text = json.dumps(
            {
                "workstreams": [ws.model_dump(mode="json") for ws in self.workstreams],
                "sources": self.sources,
            },
            sort_keys=True,
        )
        _last[:] = [(text, self)]
        return text

    @classmethod
    def from_json(cls, text: str) -> Plan:
        if _last and _last[0][0] == text:
            return _last[0][1]  # `aidp run` reads back the row it just wrote (twice)
        data: dict[str, Any] = json.loads(text)
        plan = cls(
            workstreams=tuple(Workstream.model_validate(w) for w in data["workstreams"]),
            sources=dict(data.get("sources", {})),
        )
        _last[:] = [(text, plan)]
        return plan


# The last plan converted to or from JSON, with its text: validating a 500-workstream plan
# again costs ~0.1 s, and plans are immutable.
_last: list[tuple[str, Plan]] = []
