"""Load workstream files (YAML or JSON) safely into a validated, self-contained :class:`Plan`.

YAML is read event by event with PyYAML's safe parser (:mod:`aidp.model.yaml_tree`, imported
for the first YAML file), and the tree is built there so that every
node keeps its line and nothing dangerous gets through: anchors and aliases (alias bombs),
non-standard tags (``!!python/...``, custom ``!tags``), duplicate keys (PyYAML would keep the last
one silently), nesting deeper than :data:`MAX_DEPTH`, several documents in one file. JSON is read
with a strict ``json.loads`` (no NaN) and scanned once more for lines and duplicate keys. Files are
size-checked before they are read and must be UTF-8.

Each file is then validated with :class:`WorkstreamFile` (pydantic errors are mapped to lines and
ids), ``prompt_file`` is read into ``prompt``, and :mod:`aidp.model.validate` checks the whole
plan. Every problem of every file is collected before :class:`ValidationError` is raised. The
loader never writes anything.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydantic

from aidp.exceptions import Problem, ValidationError
from aidp.model.plan import Plan
from aidp.model.validate import (
    SourcedWorkstream,
    SourceMap,
    check_path,
    check_plan,
    check_workstream,
)
from aidp.model.workstream import WorkstreamFile

__all__ = ["MAX_DEPTH", "SUFFIXES", "TreeError", "build_yaml_tree", "load_plan", "parse_file"]

SUFFIXES = (".yaml", ".yml", ".json")


class _FileError(Exception):
    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line


MAX_DEPTH = 64
NodePath = tuple[str | int, ...]
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


class TreeError(Exception):
    """A structural problem met while building a tree, with the partial tree for the ids."""

    def __init__(self, code: str, message: str, line: int | None, partial: Any, path: NodePath):
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.partial = partial
        self.path = path


def build_yaml_tree(text: str) -> tuple[Any, dict[NodePath, int]]:
    """Parse one YAML document into plain data plus the 1-based line of every node.

    Raises:
        TreeError: syntax errors, anchors/aliases, non-standard tags, non-string or duplicate
            keys, nesting deeper than :data:`MAX_DEPTH`, several documents.
    """
    from aidp.model.yaml_tree import YamlTreeBuilder  # PyYAML only for YAML files

    return YamlTreeBuilder().build(text)


class _JsonLineScanner:
    """Walks JSON text already accepted by ``json.loads``: lines, duplicate keys, depth."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.lines: dict[NodePath, int] = {}

    def line_at(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def string(self) -> str:
        value, self.pos = _scanstring(self.text, self.pos + 1)
        return value

    def value(self, path: NodePath, depth: int, line: int | None = None) -> None:
        self.skip_space()
        self.lines[path] = line or self.line_at(self.pos)
        char = self.text[self.pos]
        if char in "{[":
            if depth + 1 > MAX_DEPTH:
                raise TreeError(
                    "too-deep",
                    f"nesting deeper than {MAX_DEPTH} levels",
                    self.line_at(self.pos),
                    None,
                    path,
                )
            self.pos += 1
            self.skip_space()
            closer = "}" if char == "{" else "]"
            seen: dict[str, int] = {}
            index = 0
            while self.text[self.pos] != closer:
                if char == "{":
                    key_line = self.line_at(self.pos)
                    key = self.string()
                    if key in seen:
                        raise TreeError(
                            "duplicate-key",
                            f"duplicate key {key!r} (first at line {seen[key]})",
                            key_line,
                            None,
                            (*path, key),
                        )
                    seen[key] = key_line
                    self.skip_space()
                    self.pos += 1  # the ':'
                    self.value((*path, key), depth + 1, key_line)
                else:
                    self.value((*path, index), depth + 1)
                    index += 1
                self.skip_space()
                if self.text[self.pos] == ",":
                    self.pos += 1
                    self.skip_space()
            self.pos += 1
        elif char == '"':
            self.string()
        else:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in ",]} \t\r\n":
                self.pos += 1
            if self.text[start : self.pos] in ("NaN", "Infinity", "-Infinity"):
                raise TreeError(
                    "invalid-json",
                    f"invalid JSON: {self.text[start : self.pos]} is not a number in JSON",
                    self.line_at(start),
                    None,
                    path,
                )


def _parse_json(text: str) -> tuple[Any, dict[NodePath, int]]:
    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        data = json.loads(text, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise _FileError("invalid-json", f"invalid JSON: {exc.msg}", exc.lineno) from exc
    except RecursionError as exc:
        raise _FileError("too-deep", f"nesting deeper than {MAX_DEPTH} levels") from exc
    except ValueError:  # NaN or Infinity: the scanner below reports it with its line
        data = json.loads(text)
    scanner = _JsonLineScanner(text)
    try:
        scanner.value((), 0)
    except TreeError as exc:
        exc.partial = data
        raise
    return data, scanner.lines


def _expand(paths: Sequence[Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        try:
            path.stat()
        except OSError as exc:  # e.g. a name too long: a problem of the input, not a crash
            if not isinstance(exc, FileNotFoundError | NotADirectoryError):
                problems.append(Problem(str(path), f"cannot read: {exc.strerror or exc}",
                                        code="unreadable"))
                continue
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
            if not found:
                problems.append(
                    Problem(str(path), "no .yaml, .yml or .json files", code="no-files")
                )
            files += found
        elif not path.exists():
            problems.append(Problem(str(path), "no such file or directory", code="not-found"))
        elif path.suffix not in SUFFIXES:
            problems.append(Problem(str(path), "not a .yaml, .yml or .json file", code="file-type"))
        else:
            files.append(path)
    return files


def _read_text(path: Path, max_file_bytes: int) -> str:
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise _FileError("too-large", f"file is {size} bytes, over the {max_file_bytes} limit")
        with path.open("rb") as handle:
            data = handle.read(max_file_bytes + 1)
    except OSError as exc:
        raise _FileError("unreadable", f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_file_bytes:  # it grew between stat and read
        raise _FileError("too-large", f"file is over the {max_file_bytes} byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _FileError("encoding", "file is not valid UTF-8", line) from exc
    if not text.strip():
        raise _FileError("empty", "file is empty", 1)
    return text


def _enclosing_id(data: Any, loc: Sequence[str | int]) -> str | None:
    """``ws`` or ``ws/step`` for a location inside ``workstreams[i](.steps[j])``."""
    if not (isinstance(data, dict) and len(loc) >= 2 and loc[0] == "workstreams"):
        return None
    wss = data.get("workstreams")
    if not (isinstance(wss, list) and isinstance(loc[1], int) and loc[1] < len(wss)):
        return None
    ws = wss[loc[1]]
    ws_id = ws.get("id") if isinstance(ws, dict) else None
    if not isinstance(ws_id, str):
        return None
    steps = ws.get("steps") if isinstance(ws, dict) else None
    if len(loc) >= 4 and loc[2] == "steps" and isinstance(steps, list):
        index = loc[3]
        if isinstance(index, int) and index < len(steps) and isinstance(steps[index], dict):
            step_id = steps[index].get("id")
            if isinstance(step_id, str):
                return f"{ws_id}/{step_id}"
    return ws_id


def _data_loc(data: Any, loc: Sequence[str | int], *, keep_last: bool) -> NodePath:
    """Drop the union-member names pydantic puts into ``loc`` (``'str'``, ``'Check'``).

    ``keep_last`` keeps a final key that is absent from the data (a missing key).
    """
    result: list[str | int] = []
    node = data
    for position, part in enumerate(loc):
        found = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if found:
            node = node[part]
            result.append(part)
        elif keep_last and position == len(loc) - 1:
            result.append(part)
    return tuple(result)


def _model_problems(
    name: str, data: Any, lines: SourceMap, error: pydantic.ValidationError
) -> list[Problem]:
    merged: dict[tuple[str | int, ...], tuple[str, list[str]]] = {}
    for err in error.errors(include_url=False):
        kind = err["type"]
        loc = _data_loc(data, err["loc"], keep_last=kind == "missing")
        if kind == "extra_forbidden":
            code, message = "unknown-key", f"unknown key {loc[-1]!r}" if loc else "unknown key"
        elif kind == "missing":
            code, message = "missing-key", f"missing required key {loc[-1]!r}"
            loc = loc[:-1] + (("__missing__",) if loc else ())
        elif loc == ("version",):
            code, message = "version", f"unsupported version {data.get('version')!r} (use 1)"
        else:
            keys = [p for p in loc if isinstance(p, str)]
            msg = err["msg"].removeprefix("Value error, ")
            code, message = "type", f"{keys[-1]}: {msg}" if keys else msg
        _, messages = merged.setdefault(loc, (code, []))
        if message not in messages:
            messages.append(message)
    problems = []
    for loc, (code, messages) in merged.items():
        problems.append(
            Problem(
                file=name,
                message=" or ".join(messages),
                line=lines.line(*loc),
                id=_enclosing_id(data, loc),
                code=code,
            )
        )
    return problems


def parse_file(path: Path, *, max_file_bytes: int = 1_048_576) -> WorkstreamFile:
    """Read and validate one workstream file, without the plan-wide checks.

    Raises:
        ValidationError: the file is unsafe, malformed or does not fit the model.
    """
    problems: list[Problem] = []
    parsed = _parse_one(path, max_file_bytes, problems)
    if parsed is None:
        raise ValidationError(problems)
    return parsed[0]


def _parse_one(
    path: Path, max_file_bytes: int, problems: list[Problem]
) -> tuple[WorkstreamFile, SourceMap] | None:
    name = str(path)
    data: Any = None
    try:
        text = _read_text(path, max_file_bytes)
        if path.suffix == ".json":
            data, lines = _parse_json(text)
        else:
            data, lines = build_yaml_tree(text)
    except _FileError as exc:
        problems.append(Problem(name, exc.message, exc.line, code=exc.code))
        return None
    except TreeError as exc:
        ident = _enclosing_id(exc.partial, exc.path)
        problems.append(Problem(name, exc.message, exc.line, ident, exc.code))
        return None
    source = SourceMap(name, lines)
    if data is None:
        problems.append(Problem(name, "file is empty", 1, code="empty"))
        return None
    if not isinstance(data, dict):
        problems.append(
            Problem(
                name,
                "a workstream file is a mapping with 'version' and 'workstreams'",
                source.line(),
                code="type",
            )
        )
        return None
    try:
        model = WorkstreamFile.model_validate(data)
    except pydantic.ValidationError as exc:
        problems += _model_problems(name, data, source, exc)
        return None
    return model, source


def _inline_prompts(
    item: SourcedWorkstream, repo: Path | None, max_file_bytes: int, problems: list[Problem]
) -> SourcedWorkstream:
    """Read each safe ``prompt_file`` into ``prompt`` (unsafe ones were reported already);
    ``repo`` is resolved."""
    steps = list(item.ws.steps)
    for i, step in enumerate(steps):
        name = step.prompt_file
        if name is None or item.base_dir is None:
            continue
        if check_path(name, repo=repo, base=item.base_dir, resolved=True) is not None:
            continue
        target = item.base_dir / name
        try:
            if not target.is_file():
                raise _FileError("missing-file", "does not exist")
            text = _read_text(target, max_file_bytes)
        except _FileError as exc:
            ident = f"{item.ws.id}/{step.id}"
            message = f"prompt_file {name!r} {exc.message}"
            problems.append(item.problem(exc.code, message, "steps", i, "prompt_file", id=ident))
            continue
        # The text replaces the reference: the plan is self-contained (see Plan), and a step
        # carries one prompt.
        steps[i] = step.model_copy(update={"prompt": text, "prompt_file": None})
    if steps == list(item.ws.steps):
        return item
    ws = item.ws.model_copy(update={"steps": steps})
    return SourcedWorkstream(ws, item.source, item.index, item.base_dir)


def load_plan(
    paths: Sequence[Path], *, repo: Path | None = None, max_file_bytes: int = 1_048_576
) -> Plan:
    """Load, check and combine workstream files into one self-contained plan.

    Args:
        paths: files (``.yaml``, ``.yml``, ``.json``) and directories (their such files,
            sorted, not recursive). Problems name files as given here.
        repo: the repository root; when given, paths must resolve inside it.
        max_file_bytes: the size limit of each file (and of each ``prompt_file``).

    Returns:
        The :class:`Plan`, workstreams in file order, with ``prompt_file`` read into ``prompt``
        (``prompt_file`` is kept as written) and ``sources`` giving each id's ``file:line``.

    Raises:
        ValidationError: with every problem of every file; nothing has been written.
    """
    problems: list[Problem] = []
    items: list[SourcedWorkstream] = []
    files = _expand(paths, problems)
    all_parsed = not problems
    for path in files:
        parsed = _parse_one(path, max_file_bytes, problems)
        if parsed is None:
            all_parsed = False
            continue
        model, source = parsed
        items += [
            SourcedWorkstream(ws, source, i, path.parent) for i, ws in enumerate(model.workstreams)
        ]
    root = repo.resolve() if repo is not None else None  # once, not per path checked
    for item in items:
        problems += check_workstream(item, repo=root)
    if all_parsed:  # with a file missing, cross-file problems would be mostly noise
        problems += check_plan(items)
    items = [_inline_prompts(item, root, max_file_bytes, problems) for item in items]
    if problems:
        file_order = {str(path): i for i, path in enumerate(files)}
        problems.sort(key=lambda p: (file_order.get(p.file, -1), p.line or 0))
        raise ValidationError(problems)
    return Plan(
        workstreams=tuple(item.ws for item in items),
        sources={item.ws.id: item.where() for item in items},
        locations=_locations(items),
    )


_WS_FIELDS = ("base", "merge", "env")
_STEP_FIELDS = ("tool", "capability", "env", "fix")


def _locations(items: Sequence[SourcedWorkstream]) -> dict[str, tuple[str, int | None]]:
    """``(file, line)`` of each workstream, step and checked field (see :class:`Plan`)."""
    found: dict[str, tuple[str, int | None]] = {}
    for item in items:
        file, lines = item.source.file, item.source.lines
        at = ("workstreams", item.index)
        found[item.ws.id] = (file, item.line("id"))
        found.update({f"{item.ws.id}:{name}": (file, lines[(*at, name)])
                      for name in _WS_FIELDS if (*at, name) in lines})
        for i, step in enumerate(item.ws.steps):
            node = f"{item.ws.id}/{step.id}"
            found[node] = (file, item.line("steps", i, "id"))
            found.update({f"{node}:{name}": (file, lines[(*at, "steps", i, name)])
                          for name in _STEP_FIELDS if (*at, "steps", i, name) in lines})
    return found
