"""The YAML half of the loader: a tree of plain data built from PyYAML's safe events, with the
line of every node, refusing anchors, aliases, non-standard tags, non-string or duplicate keys,
nesting deeper than :data:`~aidp.model.loader.MAX_DEPTH` and several documents.

A module of its own so that plans in JSON never import PyYAML (a start-up cost of ~8 ms).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml

from aidp.model.loader import MAX_DEPTH, NodePath, TreeError

__all__ = ["Yaml12Loader", "Yaml12Resolver", "YamlTreeBuilder", "load_yaml"]

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_STD}{name}" for name in ("str", "int", "float", "bool", "null")}
_COLLECTION_TAGS = {None, "!", f"{_STD}map", f"{_STD}seq"}
_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NO_KEY = object()
_BOOL = f"{_STD}bool"


def _yaml12_booleans(resolvers: dict[Any, list[tuple[str, Any]]]) -> dict[Any, list[Any]]:
    """PyYAML's implicit resolvers with YAML 1.1's booleans (``yes``, ``on``, ``no`` ...)
    replaced by YAML 1.2's (``true`` / ``false``)."""
    table = {key: [(tag, rx) for tag, rx in entries if tag != _BOOL]
             for key, entries in resolvers.items()}
    pattern = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
    for first in "tTfF":
        table.setdefault(first, []).append((_BOOL, pattern))
    return table


class Yaml12Resolver(yaml.resolver.Resolver):
    """PyYAML's resolver with YAML 1.2 booleans: every YAML aidp reads (workstream files,
    OpenSpec configs, CCPM frontmatter) agrees that ``yes`` and ``no`` are strings, as the
    reference OpenSpec CLI's ``yaml`` package and JSON Schema tools read them."""

    yaml_implicit_resolvers = _yaml12_booleans(yaml.resolver.Resolver.yaml_implicit_resolvers)


class Yaml12Loader(yaml.SafeLoader):
    """A safe loader with :class:`Yaml12Resolver`'s booleans."""

    yaml_implicit_resolvers = Yaml12Resolver.yaml_implicit_resolvers


def load_yaml(text: str) -> object:
    """Parse YAML safely with YAML 1.2 booleans.

    Raises:
        yaml.YAMLError: the text is not valid YAML.
    """
    return yaml.load(text, Loader=Yaml12Loader)


def _show_tag(tag: str | None) -> str:
    return (tag or "").replace(_STD, "!!")


@dataclass
class _Frame:
    container: dict[str, Any] | list[Any]
    path: NodePath
    key: Any = _NO_KEY
    seen: dict[str, int] = field(default_factory=dict)

    def child_path(self) -> NodePath:
        if isinstance(self.container, list):
            return (*self.path, len(self.container))
        return self.path if self.key is _NO_KEY else (*self.path, self.key)


class YamlTreeBuilder:
    """Builds plain dicts/lists/scalars from PyYAML events, recording each node's line."""

    def __init__(self) -> None:
        self.resolver = Yaml12Resolver()
        self.constructor = yaml.constructor.SafeConstructor()
        self.lines: dict[NodePath, int] = {}
        self.stack: list[_Frame] = []
        self.root: Any = None
        self.documents = 0

    def fail(self, code: str, message: str, line: int | None) -> NoReturn:
        path = self.stack[-1].child_path() if self.stack else ()
        raise TreeError(code, message, line, self.root, path)

    def scalar(self, event: yaml.ScalarEvent, line: int) -> Any:
        explicit = event.tag not in (None, "!")
        resolve: Callable[..., str] = self.resolver.resolve
        tag = event.tag if explicit else resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag not in _SCALAR_TAGS:
            if explicit:
                self.fail("yaml-tag", f"tag {_show_tag(event.tag)} is not allowed", line)
            return event.value  # implicit timestamps and the like stay strings
        node = yaml.ScalarNode(tag, event.value)
        try:
            return self.constructor.construct_object(node, deep=True)
        except (ValueError, yaml.YAMLError) as exc:
            self.fail(
                "yaml-tag", f"{event.value!r} is not a valid {tag.rsplit(':', 1)[-1]}: {exc}", line
            )

    def place(self, value: Any, line: int, is_scalar: bool) -> None:
        if not self.stack:
            self.root = value
            self.lines[()] = line
            return
        frame = self.stack[-1]
        if isinstance(frame.container, list):
            self.lines[(*frame.path, len(frame.container))] = line
            frame.container.append(value)
        elif frame.key is _NO_KEY:
            if not is_scalar or not isinstance(value, str):
                shown = "a collection" if not is_scalar else repr(value)
                self.fail("yaml-key", f"mapping key {shown} is not a string (quote it)", line)
            if value in frame.seen:
                self.fail(
                    "duplicate-key",
                    f"duplicate key {value!r} (first at line {frame.seen[value]})",
                    line,
                )
            frame.seen[value] = line
            frame.key = value
            self.lines[(*frame.path, value)] = line
        else:
            frame.container[frame.key] = value
            frame.key = _NO_KEY

    def build(self, text: str) -> tuple[Any, dict[NodePath, int]]:
        try:
            for event in yaml.parse(text, Loader=_YamlLoader):
                self.feed(event)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = None if mark is None else mark.line + 1
            self.fail("yaml-syntax", f"invalid YAML: {exc.problem or exc.context}", line)
        except yaml.YAMLError as exc:
            self.fail("yaml-syntax", f"invalid YAML: {exc}", None)
        return self.root, self.lines

    def feed(self, event: yaml.Event) -> None:
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                self.fail("multiple-documents", "only one YAML document per file", line)
        elif isinstance(event, yaml.AliasEvent):
            self.fail("yaml-alias", f"alias *{event.anchor}: aliases are not allowed", line)
        elif isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            self.fail("yaml-alias", f"anchor &{event.anchor}: anchors are not allowed", line)
        elif isinstance(event, yaml.ScalarEvent):
            self.place(self.scalar(event, line), line, is_scalar=True)
        elif isinstance(event, yaml.CollectionStartEvent):
            if event.tag not in _COLLECTION_TAGS:
                self.fail("yaml-tag", f"tag {_show_tag(event.tag)} is not allowed", line)
            container: dict[str, Any] | list[Any] = (
                {} if isinstance(event, yaml.MappingStartEvent) else []
            )
            path = self.stack[-1].child_path() if self.stack else ()
            self.place(container, line, is_scalar=False)
            self.stack.append(_Frame(container, path))
            if len(self.stack) > MAX_DEPTH:
                self.fail("too-deep", f"nesting deeper than {MAX_DEPTH} levels", line)
        elif isinstance(event, yaml.CollectionEndEvent):
            self.stack.pop()
