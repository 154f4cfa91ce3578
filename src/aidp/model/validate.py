"""Semantic validation of parsed workstreams: everything a single pydantic model cannot see.

Checks: duplicate ids, unknown or self dependencies and conflicts, dependency cycles, unsafe
paths, branch names, command placeholders, shell steps without a command, ``select`` without a
capability, and overlapping scopes of workstreams that may run in parallel. Every check is a
pure function of the models plus a :class:`SourceMap` (the line of every node), returning
:class:`~aidp.exceptions.Problem` objects; only the inside-the-repository check resolves paths
on disk.
"""

from __future__ import annotations

import os
import stat
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from aidp.core.dag import all_descendants, find_cycle
from aidp.exceptions import Problem
from aidp.model.refname import check_ref_name
from aidp.model.scope import glob_literal_prefix, globs_overlap
from aidp.model.workstream import MergeStrategy, Workstream

__all__ = [
    "PLACEHOLDERS",
    "SAMPLE_RUN_ID",
    "SourceMap",
    "SourcedWorkstream",
    "check_path",
    "check_placeholders",
    "check_plan",
    "check_workstream",
    "validate_workstreams",
]

#: What a command template may name (the executor fills in each, for every attempt).
PLACEHOLDERS = frozenset(
    {"worktree", "prompt_file", "run_id", "workstream", "step", "attempt", "repo", "context_files",
     "attempt_kind", "findings_file", "candidate"}
)
#: What an integration check of a merge queue (``merge.checks``) may name: it runs in a scratch
#: worktree holding the merged tree, for no one workstream or step.
MERGE_PLACEHOLDERS = frozenset({"worktree", "run_id", "repo"})
SAMPLE_RUN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # a ULID, as in generated branch names
_MAX_CYCLES = 20

NodePath = tuple[str | int, ...]


@dataclass(frozen=True)
class SourceMap:
    """Where each node of one parsed file starts: a path of keys/indexes -> 1-based line."""

    file: str
    lines: Mapping[NodePath, int] = field(default_factory=dict)

    def line(self, *path: str | int) -> int | None:
        """The line of the node at ``path``, or of its nearest located ancestor."""
        node = tuple(path)
        while node:
            if node in self.lines:
                return self.lines[node]
            node = node[:-1]
        return self.lines.get((), None)


@dataclass(frozen=True)
class SourcedWorkstream:
    """A parsed workstream with its file, its index in that file and the file's directory."""

    ws: Workstream
    source: SourceMap
    index: int
    base_dir: Path | None = None

    def line(self, *path: str | int) -> int | None:
        """The line of a node of this workstream (``line("steps", 0, "run")``)."""
        return self.source.line("workstreams", self.index, *path)

    def where(self) -> str:
        """``file:line`` of the workstream's declaration."""
        line = self.line("id")
        return self.source.file if line is None else f"{self.source.file}:{line}"

    def problem(self, code: str, message: str, *path: str | int, id: str | None = None) -> Problem:
        """A Problem located at ``path`` inside this workstream (id defaults to the ws id)."""
        return Problem(
            file=self.source.file,
            message=message,
            line=self.line(*path),
            id=id or self.ws.id,
            code=code,
        )


def check_path(value: str, *, repo: Path | None = None, base: Path | None = None,
               resolved: bool = False) -> str | None:
    """Check that a path (or glob) from a workstream file stays inside the repository.

    Args:
        value: the path as written (POSIX separators).
        repo: the repository root; when given, the path resolved from ``base`` (symlinks
            followed) must lie inside it.
        base: the directory the path is relative to (default: ``repo``).
        resolved: ``repo`` is already resolved (saves its resolution when checking many paths).

    Returns:
        None when safe, else the reason (absolute, ``..`` segment, NUL byte, outside the repo).
    """
    if not value.strip():
        return "is empty"
    if "\0" in value:
        return "contains a NUL byte"
    if value.startswith(("/", "\\", "~")) or (len(value) > 1 and value[1] == ":"):
        return "is absolute"
    if ".." in PurePosixPath(value.replace("\\", "/")).parts:
        return "contains a '..' segment"
    if repo is not None:
        root = repo if resolved else repo.resolve()
        prefix = glob_literal_prefix(value)
        if base is None and not _may_link(root, prefix):
            return None
        target = ((base or root) / prefix).resolve()
        if target != root and root not in target.parents:
            return f"resolves outside the repository ({target})"
    return None


def _may_link(root: Path, relative: str) -> bool:
    """Whether ``root/relative`` may pass through a symbolic link: False once a component is
    missing (nothing below it exists), True at the first link. ``root`` is resolved."""
    current = str(root)
    for part in relative.split("/"):
        if part in ("", "."):
            continue
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            return False
        if stat.S_ISLNK(mode):
            return True
    return False


def check_placeholders(template: str, known_names: frozenset[str] = PLACEHOLDERS) -> list[str]:
    """Check a command template's ``{placeholders}`` (``{{`` and ``}}`` are literal braces)
    against ``known_names`` (a step's commands by default).

    Returns:
        One message per problem: malformed braces, or an unknown / indexed / formatted field.
    """
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template)]
    except ValueError as exc:
        return [f"malformed braces in command ({exc}); write {{{{ and }}}} for literal braces"]
    problems = []
    known = ", ".join("{" + p + "}" for p in sorted(known_names))
    for name, spec, conv in parsed:
        if name is None:
            continue
        if name not in known_names:
            problems.append(
                f"unknown placeholder {{{name}}} (known: {known}; write {{{{ and }}}} for a "
                "literal brace)"
            )
        elif spec or conv:
            problems.append(f"placeholder {{{name}}} takes no conversion or format spec")
    return problems


def _templates(command: str | list[str] | None) -> list[str]:
    if command is None:
        return []
    return [command] if isinstance(command, str) else list(command)


def _check_graph(
    item: SourcedWorkstream,
    nodes: Sequence[str],
    edges: Mapping[str, Sequence[str]],
    what: str,
    locate: Mapping[str, tuple[NodePath, str]],
) -> list[Problem]:
    """Unknown, self and cyclic dependencies among ``nodes`` (steps of one workstream)."""
    problems = []
    known = set(nodes)
    for node in nodes:
        path, ident = locate[node]
        for k, dep in enumerate(edges[node]):
            if dep == node:
                problems.append(
                    item.problem(
                        "self-dependency",
                        f"{what} {node!r} depends on itself",
                        *path,
                        "depends_on",
                        k,
                        id=ident,
                    )
                )
            elif dep not in known:
                problems.append(
                    item.problem(
                        "unknown-dependency",
                        f"{what} {node!r} depends on unknown {what} {dep!r}",
                        *path,
                        "depends_on",
                        k,
                        id=ident,
                    )
                )
    problems += _cycles(
        {n: [d for d in edges[n] if d in known and d != n] for n in nodes},
        what,
        lambda n: item.problem("cycle", "", *locate[n][0], "depends_on", id=locate[n][1]),
    )
    return problems


def _cycles(edges: dict[str, list[str]], what: str, at: Callable[[str], Problem]) -> list[Problem]:
    problems = []
    for _ in range(_MAX_CYCLES):
        cycle = find_cycle(edges)
        if cycle is None:
            break
        where = at(cycle[0])
        problems.append(
            Problem(
                file=where.file,
                line=where.line,
                id=where.id,
                code="cycle",
                message=f"{what} dependency cycle: {' -> '.join(cycle)}",
            )
        )
        edges[cycle[-2]] = [d for d in edges[cycle[-2]] if d != cycle[-1]]
    return problems


def check_workstream(item: SourcedWorkstream, *, repo: Path | None = None) -> list[Problem]:
    """Checks confined to one workstream: its steps' ids and dependencies, paths, branch names,
    placeholders, and shell steps without ``run``.

    Args:
        item: the workstream and where it came from.
        repo: the repository root, resolved (the caller resolves it once for all workstreams),
            for the inside-the-repository path check (skipped if None).

    Returns:
        The problems found, in file order.
    """
    ws = item.ws
    problems: list[Problem] = []
    reason = check_ref_name(ws.base, branch=False)
    if reason:
        problems.append(item.problem("branch-name", f"base {ws.base!r} {reason}", "base"))
    generated = f"aidp/{SAMPLE_RUN_ID}/{ws.id}"
    if (reason := check_ref_name(generated)) is not None:
        problems.append(
            item.problem("branch-name", f"id makes an invalid branch {generated!r}: {reason}", "id")
        )
    if ws.merge is not None:
        into = ws.merge.into
        if (reason := check_ref_name(into)) is not None:
            problems.append(
                item.problem("branch-name", f"merge.into {into!r} {reason}", "merge", "into")
            )
        elif into.removeprefix("refs/heads/").startswith("aidp/"):
            problems.append(
                item.problem(
                    "branch-name",
                    f"merge.into {into!r} is in aidp/, reserved for generated branches",
                    "merge",
                    "into",
                )
            )
    if ws.merge is not None and ws.merge.checks:
        if ws.merge.strategy is MergeStrategy.NONE:
            problems.append(item.problem(
                "merge-checks", "merge.checks need a strategy that lands the work "
                "(merge or squash), not none", "merge", "checks"))
        for c, check in enumerate(ws.merge.checks):
            run = check if isinstance(check, str) else check.run
            for template in _templates(run):
                for message in check_placeholders(template, MERGE_PLACEHOLDERS):
                    problems.append(item.problem("placeholder", message, "merge", "checks", c))
    for k, glob in enumerate(ws.scope):
        if (reason := check_path(glob, repo=repo, resolved=True)) is not None:
            problems.append(item.problem("unsafe-path", f"scope {glob!r} {reason}", "scope", k))

    seen: dict[str, int] = {}
    for i, step in enumerate(ws.steps):
        ident = f"{ws.id}/{step.id}"
        if step.id in seen:
            first_line = item.line("steps", seen[step.id], "id")
            problems.append(
                item.problem(
                    "duplicate-id",
                    f"duplicate step id {step.id!r} (first at line {first_line})",
                    "steps",
                    i,
                    "id",
                    id=ident,
                )
            )
        else:
            seen[step.id] = i
        for k, ctx in enumerate(step.context):
            if (reason := check_path(ctx, repo=repo, resolved=True)) is not None:
                problems.append(
                    item.problem(
                        "unsafe-path",
                        f"context {ctx!r} {reason}",
                        "steps",
                        i,
                        "context",
                        k,
                        id=ident,
                    )
                )
        if step.prompt_file is not None:
            reason = check_path(step.prompt_file, repo=repo, base=item.base_dir,
                                resolved=True)
            if reason is not None:
                problems.append(
                    item.problem(
                        "unsafe-path",
                        f"prompt_file {step.prompt_file!r} {reason}",
                        "steps",
                        i,
                        "prompt_file",
                        id=ident,
                    )
                )
        own_tool = step.capability is None and not (step.best_of and step.best_of.profiles)
        if step.tool == "shell" and own_tool and not _templates(step.run):
            problems.append(
                item.problem(
                    "missing-run",
                    "a shell step needs a non-empty 'run' command",
                    "steps",
                    i,
                    id=ident,
                )
            )
        if step.select != "score" and step.capability is None:
            problems.append(
                item.problem(
                    "select-without-capability",
                    f"select: {step.select} picks among the profiles offering a capability; "
                    "give the step a 'capability' (or drop 'select')",
                    "steps",
                    i,
                    "select",
                    id=ident,
                )
            )
        commands: list[tuple[NodePath, str]] = [(("run",), t) for t in _templates(step.run)]
        for c, check in enumerate(step.checks):
            run = check if isinstance(check, str) else check.run
            commands += [(("checks", c), t) for t in _templates(run)]
        for where, template in commands:
            for message in check_placeholders(template):
                problems.append(item.problem("placeholder", message, "steps", i, *where, id=ident))

    order = list(seen)
    edges = {s.id: s.depends_on for s in ws.steps}
    locate = {sid: (("steps", idx), f"{ws.id}/{sid}") for sid, idx in seen.items()}
    problems += _check_graph(item, order, edges, "step", locate)
    return problems


def check_plan(items: Sequence[SourcedWorkstream]) -> list[Problem]:
    """Checks across workstreams: duplicate ids, unknown/self dependencies and conflicts, cycles,
    and overlapping scopes of workstreams that may run in parallel.

    Args:
        items: every workstream of the plan, in file order.

    Returns:
        The problems found.
    """
    problems: list[Problem] = []
    first: dict[str, SourcedWorkstream] = {}
    for item in items:
        if item.ws.id in first:
            earlier = first[item.ws.id]
            hint = ("" if earlier.source.file == item.source.file else
                    f"; the files given together form one plan: rename one, or validate and "
                    f"run one file at a time (aidp validate {item.source.file})")
            problems.append(
                item.problem(
                    "duplicate-id",
                    f"duplicate workstream id {item.ws.id!r} (first at {earlier.where()}){hint}",
                    "id",
                )
            )
        else:
            first[item.ws.id] = item
    for item in items:
        ws = item.ws
        for k, dep in enumerate(ws.depends_on):
            if dep == ws.id:
                problems.append(
                    item.problem("self-dependency", "workstream depends on itself", "depends_on", k)
                )
            elif dep not in first:
                problems.append(
                    item.problem(
                        "unknown-dependency",
                        f"depends on unknown workstream {dep!r}",
                        "depends_on",
                        k,
                    )
                )
        for k, other in enumerate(ws.conflicts_with):
            if other == ws.id:
                problems.append(
                    item.problem(
                        "self-conflict", "workstream conflicts with itself", "conflicts_with", k
                    )
                )
            elif other not in first:
                problems.append(
                    item.problem(
                        "unknown-conflict",
                        f"conflicts_with unknown workstream {other!r}",
                        "conflicts_with",
                        k,
                    )
                )
    edges = {
        ws_id: [d for d in it.ws.depends_on if d in first and d != ws_id]
        for ws_id, it in first.items()
    }
    cycles = _cycles(
        dict(edges), "workstream", lambda n: first[n].problem("cycle", "", "depends_on")
    )
    problems += cycles
    if not cycles:
        problems += _scope_conflicts(list(first.values()), edges)
    return problems + _queue_mismatches(list(first.values()))


def _queue_mismatches(items: list[SourcedWorkstream]) -> list[Problem]:
    """Workstreams landing on one branch whose ``merge.checks`` or ``merge.batch`` differ from
    the first one's: a branch has one merge queue, and an unchecked merge would put an
    untested tree on a branch whose other merges are checked."""
    problems = []
    first: dict[str, SourcedWorkstream] = {}
    for item in items:
        merge = item.ws.merge
        if merge is None or merge.strategy is MergeStrategy.NONE:
            continue
        earlier = first.setdefault(merge.into, item)
        other = earlier.ws.merge
        assert other is not None
        if merge.checks == other.checks and (not merge.checks or merge.batch == other.batch):
            continue
        problems.append(item.problem(
            "merge-checks",
            f"merge.checks/batch differ from those of workstream {earlier.ws.id!r} "
            f"({earlier.where()}), which also merges into {merge.into!r}: every workstream "
            "merging into one branch goes through its one merge queue and declares the same "
            "checks and batch", "merge"))
    return problems


def _scope_conflicts(
    items: list[SourcedWorkstream], edges: Mapping[str, Iterable[str]]
) -> list[Problem]:
    problems = []
    below = all_descendants(edges)
    declared = {frozenset((it.ws.id, o)) for it in items for o in it.ws.conflicts_with}
    # Two globs can only overlap when the first segments of their literal prefixes are equal
    # (see globs_overlap), so only workstreams sharing such a segment -- or holding a glob
    # without one -- are compared: near-linear for scopes in separate directories.
    by_head: dict[str, list[int]] = {}
    open_ended: list[int] = []
    for index, item in enumerate(items):
        heads = {glob_literal_prefix(glob).split("/", 1)[0] for glob in item.ws.scope}
        if "" in heads:
            open_ended.append(index)
        for head in heads - {""}:
            by_head.setdefault(head, []).append(index)
    open_set = set(open_ended)
    for j, later in enumerate(items):
        if j in open_set:
            candidates: Iterable[int] = range(j)
        else:
            found = {i for i in open_ended if i < j}
            for glob in later.ws.scope:
                found.update(i for i in by_head[glob_literal_prefix(glob).split("/", 1)[0]]
                             if i < j)
            candidates = sorted(found)
        for i in candidates:
            earlier = items[i]
            a, b = earlier.ws.id, later.ws.id
            if b in below[a] or a in below[b] or frozenset((a, b)) in declared:
                continue
            if "allow" in (earlier.ws.scope_overlap, later.ws.scope_overlap):
                continue  # declared to run beside overlapping work; merges catch clashes
            pairs = [
                f"{ga!r} ~ {gb!r}"
                for ga in earlier.ws.scope
                for gb in later.ws.scope
                if globs_overlap(ga, gb)
            ]
            if pairs:
                problems.append(
                    later.problem(
                        "scope-conflict",
                        f"scope overlaps workstream {a!r} ({earlier.where()}), which may run in "
                        f"parallel: {', '.join(pairs)}; add {a!r} to conflicts_with, or "
                        f"depends_on, or narrow the scopes",
                        "scope",
                    )
                )
    return problems


def validate_workstreams(
    items: Sequence[SourcedWorkstream], *, repo: Path | None = None
) -> list[Problem]:
    """Run :func:`check_workstream` on each item, then :func:`check_plan` on all of them."""
    root = repo.resolve() if repo is not None else None
    problems = [p for item in items for p in check_workstream(item, repo=root)]
    return problems + check_plan(items)
