"""The fake LLM server's script: a list of steps, each model request consuming the next.

A script is a YAML or JSON file (or a Python list) of steps. Every request to
``/v1/chat/completions`` or ``/v1/responses`` consumes the next step; the last step repeats
forever. ``times: N`` makes a step serve N requests before the next one takes over.

Step kinds (one per step; ``hang``, ``stall``, ``usage`` and ``times`` combine with them)::

    - reply: "Done."                        # text: chat message content / a responses message
    - "Done."                               # the same, shorter
    - tool_calls:                           # chat tool_calls / responses function_call items
        - {name: exec_command, arguments: {cmd: "ls"}}   # arguments: a mapping or a JSON string
    - error: {status: 429, message: "slow down", retry_after: 2}  # also type, code
    - hang: 30                              # wait 30 s before the headers, then drop
    - {hang: 2, reply: "late"}              # ... or then answer
    - drop: true                            # close the connection without a response
    - {stall: 5, reply: "half ... rest"}    # headers and half the stream, wait 5 s, the rest
    - {reply: "ok", usage: {input_tokens: 10, output_tokens: 2}, times: 3}

A file may also be a mapping ``{steps: [...]}``. :func:`load_script` reports the first problem
as ``FILE:LINE: step N: message`` (:class:`ScriptError`, exit code 2).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aidp.exceptions import InputError

__all__ = [
    "MAX_SCRIPT_BYTES",
    "ErrorSpec",
    "Script",
    "ScriptError",
    "Step",
    "StepUsage",
    "ToolCallSpec",
    "load_script",
    "parse_script",
]

#: Script files larger than this are refused.
MAX_SCRIPT_BYTES = 4 * 2**20


class ScriptError(InputError):
    """A fake LLM script is invalid (exit code 2); the message names file, line and step."""

    def __init__(self, message: str, *, path: Path | None = None, line: int | None = None,
                 step: int | None = None) -> None:
        where = "script" if path is None else str(path)
        if line is not None:
            where += f":{line}"
        prefix = f"{where}: " + (f"step {step}: " if step is not None else "")
        super().__init__(prefix + message)
        self.path = path
        self.line = line
        self.step = step


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepUsage(_Strict):
    """Token counts reported for a step's reply (estimated from the text when absent)."""

    input_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    cached_tokens: int = Field(0, ge=0)


class ToolCallSpec(_Strict):
    """One function call of the model: ``arguments`` is a mapping (sent as JSON) or a string
    sent verbatim (so a script can send malformed JSON on purpose)."""

    name: str = Field(min_length=1)
    arguments: dict[str, Any] | str = Field(default_factory=dict)

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


class ErrorSpec(_Strict):
    """An HTTP error with an OpenAI-shaped body ``{"error": {message, type, param, code}}``;
    ``retry_after`` (seconds) becomes the ``Retry-After`` and ``retry-after-ms`` headers."""

    status: int = Field(ge=400, le=599)
    message: str = "error from the fake LLM"
    type: str | None = None
    code: str | None = None
    retry_after: float | None = Field(None, ge=0)

    def body(self) -> dict[str, Any]:
        kind = self.type
        if kind is None:
            kind = ("rate_limit_error" if self.status == 429
                    else "server_error" if self.status >= 500 else "invalid_request_error")
        code = self.code
        if code is None and self.status == 429:
            code = "rate_limit_exceeded"
        return {"error": {"message": self.message, "type": kind, "param": None, "code": code}}


class Step(_Strict):
    """One scripted answer to one model request (see the module docstring)."""

    reply: str | None = None
    tool_calls: list[ToolCallSpec] | None = None
    error: ErrorSpec | None = None
    hang: float | None = Field(None, ge=0, description="seconds to wait before the headers")
    drop: bool | None = None
    stall: float | None = Field(None, ge=0, description="seconds to wait mid-stream")
    usage: StepUsage | None = None
    times: int = Field(1, ge=1, description="how many requests this step serves")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"reply": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        answers = self.reply is not None or self.tool_calls is not None
        if self.drop is False:
            raise ValueError("drop must be true (or absent)")
        if self.drop and (answers or self.error is not None or self.stall is not None):
            raise ValueError("drop cannot be combined with reply, tool_calls, error or stall")
        if self.error is not None and (answers or self.stall is not None):
            raise ValueError("error cannot be combined with reply, tool_calls or stall")
        if not (answers or self.error or self.drop or self.hang is not None
                or self.stall is not None):
            raise ValueError("a step needs one of reply, tool_calls, error, hang, drop, stall")
        return self

    @property
    def answers(self) -> bool:
        """True if the step produces a model answer (text and/or tool calls)."""
        return self.reply is not None or self.tool_calls is not None or self.stall is not None


class Script(_Strict):
    """The steps of a fake LLM session, in order; the last one repeats."""

    steps: list[Step] = Field(min_length=1)

    @classmethod
    def of(cls, steps: Script | Sequence[Any]) -> Script:
        """A script from a :class:`Script` or a list of step dicts / strings / :class:`Step`."""
        if isinstance(steps, Script):
            return steps
        return parse_script(list(steps))


def _data_path(data: Any, loc: Sequence[str | int], missing: bool) -> list[str | int]:
    """The part of a pydantic error location that exists in ``data`` (pydantic also names
    union branches and validators); a missing field's name is kept."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
    if missing and loc and isinstance(loc[-1], str) and (not path or path[-1] != loc[-1]):
        path.append(loc[-1])
    return path


def parse_script(data: Any, *, path: Path | None = None,
                 lines: dict[tuple[str | int, ...], int] | None = None) -> Script:
    """Validate already-parsed script data; raises :class:`ScriptError` for the first problem.

    ``lines`` maps a node's path in ``data`` to its 1-based line (see
    :func:`aidp.model.loader.build_yaml_tree`), so the error can name the line.
    """
    if isinstance(data, list):
        wrapped: Any = {"steps": data}
        skip = 1  # the "steps" key is ours, not the file's
    elif isinstance(data, dict):
        wrapped, skip = data, 0
    else:
        raise ScriptError("a script is a list of steps (or a mapping with 'steps')", path=path,
                          line=1 if path is not None else None)
    try:
        return Script.model_validate(wrapped)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = _data_path(wrapped, first["loc"], first["type"] == "missing")
        step = where[1] if len(where) > 1 and where[0] == "steps" else None
        line = None
        if lines:
            node = tuple(where[skip:])
            while node not in lines and node:
                node = node[:-1]
            line = lines.get(node)
        shown = ".".join(str(p) for p in (where[2:] if step is not None else where))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ScriptError(f"{shown}: {message}" if shown else message, path=path, line=line,
                          step=step if isinstance(step, int) else None) from exc


def load_script(path: Path | str) -> Script:
    """Read a YAML (``.yaml``/``.yml``) or JSON script file.

    Raises:
        ScriptError: unreadable, too large, invalid syntax or an invalid step; the message is
            ``FILE[:LINE]: [step N: ]problem``.
    """
    from aidp.model.loader import TreeError, build_yaml_tree

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SCRIPT_BYTES:
            raise ScriptError(f"file is {size} bytes, over the {MAX_SCRIPT_BYTES} limit",
                              path=path)
        raw = path.read_bytes()
    except OSError as exc:
        raise ScriptError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScriptError("file is not valid UTF-8", path=path,
                          line=raw[: exc.start].count(b"\n") + 1) from exc
    lines: dict[tuple[str | int, ...], int] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScriptError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from exc
        try:  # JSON is YAML: the tree builder gives the line of every node
            _, lines = build_yaml_tree(text)
        except TreeError:
            lines = {}
    else:
        try:
            data, lines = build_yaml_tree(text)
        except TreeError as exc:
            raise ScriptError(exc.message, path=path, line=exc.line) from exc
    if data is None:
        raise ScriptError("file is empty", path=path, line=1)
    return parse_script(data, path=path, lines=lines)
