"""``aidp specs``: read, validate, index and resolve OpenSpec specs and changes.

Subcommands find the ``openspec/`` directory at or above ``--repo`` (default: the current
directory); no git repository or database is needed. ``--format openspec`` prints the JSON the
``openspec`` CLI prints for the same command; ``--json`` prints aidp's own shape, where every
issue names its file and line. Bad input is reported as ``file:line: [id] message`` lines and a
non-zero exit (2 for aidp's formats; 1 for ``--format openspec``, as ``openspec`` exits).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from aidp.cli.common import echo_json
from aidp.exceptions import AidpError, InputError, NotFoundError

__all__ = ["specs"]

F = TypeVar("F", bound=Callable[..., Any])


def _root_option(func: F) -> F:
    return click.option(
        "--repo", type=click.Path(path_type=Path, file_okay=False), default=None,
        help="Directory holding openspec/ (default: the nearest one above the current directory).",
    )(func)


def _format_option(*choices: str) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        func = click.option("--json", "as_json", is_flag=True,
                            help="Print aidp's JSON (same as --format json).")(func)
        return click.option("--format", "output", type=click.Choice(list(choices)),
                            default="text", show_default=True,
                            help="text, json (aidp's shape) or openspec (the openspec CLI's)."
                            )(func)
    return decorate


def _openspec_errors(output: str) -> Any:
    """In ``--format openspec``, print an error as the reference CLI does (a ``status`` JSON
    document on stdout, exit 1); otherwise let the one-line aidp handler report it."""
    import contextlib

    @contextlib.contextmanager
    def guard() -> Any:
        try:
            yield
        except AidpError as exc:
            if output != "openspec":
                raise
            from aidp.specs.compat import ShowError

            if isinstance(exc, ShowError):
                code, message = exc.code, exc.reference
            elif isinstance(exc, NotFoundError):
                code, message = "unknown_item", exc.message
            else:
                code, message = "error", exc.message
            echo_json({"status": [{"severity": "error", "code": code, "message": message}]})
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(1)

    return guard()


def _root(repo: Path | None) -> Path:
    from aidp.app.specs import spec_root

    return spec_root(repo if repo is not None else Path.cwd())


def _bulk_root(repo: Path | None, output: str) -> Path:
    """The root for validating everything: as the reference's bulk commands, the nearest
    ``openspec/`` holding specs/, changes/ or config.yaml. Without one, ``--format openspec``
    prints the reference's ``no_openspec_root`` status (exit 1); aidp's formats exit 3."""
    from aidp.specs.compat import no_root_document
    from aidp.specs.project import find_qualifying_root

    start = repo if repo is not None else Path.cwd()
    found = find_qualifying_root(start)
    if found is not None:
        return found
    if output == "openspec":
        echo_json(no_root_document())
        click.echo("error: no OpenSpec root (openspec/ with specs/, changes/ or config.yaml) at "
                   f"or above {start.resolve()}", err=True)
        sys.exit(1)
    bare = _root(repo)  # no openspec/ at all: the usual error
    raise NotFoundError(f"no OpenSpec root: {bare / 'openspec'} holds no specs/, changes/ or "
                        "config.yaml, so there is nothing to validate",
                        hint="run `openspec init` or add openspec/specs/ or openspec/changes/")


def _kind_of(root: Path, item: str, wanted: str | None) -> str:
    from aidp.app.specs import kind_of

    return kind_of(root, item, wanted)


@click.group()
def specs() -> None:
    """Read, validate, index and resolve OpenSpec specs and changes."""


@specs.command()
@click.argument("item", metavar="[ID]", required=False)
@click.option("--type", "kind", type=click.Choice(["change", "spec"]), default=None,
              help="What ID names (default: whichever exists).")
@click.option("--strict", is_flag=True, help="Warnings fail too.")
@click.option("--all", "all_items", is_flag=True,
              help="Every change and spec (the default without ID; as `openspec validate --all`).")
@_format_option("text", "json", "openspec")
@_root_option
def validate(item: str | None, kind: str | None, strict: bool, all_items: bool, output: str,
             as_json: bool, repo: Path | None) -> None:
    """Validate one change or spec, or every one, with the rules of `openspec validate`."""
    from aidp.app.specs import validate_items, validation_dict, validation_targets
    from aidp.specs.compat import validation_document

    output = "json" if as_json and output == "text" else output
    if all_items and item is not None:
        raise InputError("--all validates every item: give it no ID")
    root = _root(repo) if item is not None else _bulk_root(repo, output)
    targets: list[tuple[str, str]] = []
    if item is not None:
        with _openspec_errors(output):
            targets.append((_kind_of(root, item, kind), item))
    else:
        targets = validation_targets(root, kind)
    reports = validate_items(root, targets, strict=strict)
    valid = all(report.valid for report, _ in reports)
    if output == "openspec":
        types = (targets[0][0],) if item is not None else \
            tuple(t for t in ("change", "spec") if kind in (None, t))
        echo_json(validation_document(root, reports, types))
        sys.exit(0 if valid else 1)
    if output == "json":
        echo_json(validation_dict(reports))
    else:
        for report, _ in reports:
            for issue in report.issues:
                click.echo(issue.render(), err=True)
        passed = sum(1 for r, _ in reports if r.valid)
        line = f"{passed} of {len(reports)} valid" + (" (strict)" if strict else "")
        click.secho(line, fg="green" if valid else "red", err=not valid)
    sys.exit(0 if valid else 2)


@specs.command()
@click.argument("item", metavar="ID")
@click.option("--type", "kind", type=click.Choice(["change", "spec"]), default=None,
              help="What ID names (default: whichever exists).")
@_format_option("text", "json", "openspec")
@_root_option
def show(item: str, kind: str | None, output: str, as_json: bool, repo: Path | None) -> None:
    """Show a change or a spec (--format openspec mirrors `openspec show --json`)."""
    from aidp.app.specs import show_item
    from aidp.specs.compat import show_change, show_spec

    output = "json" if as_json and output == "text" else output
    root = _root(repo)
    with _openspec_errors(output):
        resolved = _kind_of(root, item, kind)
        if output == "openspec":
            echo_json(show_change(root, item) if resolved == "change" else show_spec(root, item))
            return
    data = show_item(root, item, resolved)
    if output == "json":
        echo_json(data)
        return
    click.echo(f"{data['type']} {item}: {data['title']}")
    if resolved == "spec":
        for req in data["requirements"]:
            click.echo(f"  {req['key']}  ({len(req['scenarios'])} scenarios, line {req['line']})")
    else:
        click.echo(f"  tasks {data['tasks']['done']}/{data['tasks']['total']}")
        for delta in data["deltas"]:
            extra = f" -> {delta['renamed_to']}" if delta["renamed_to"] else ""
            click.echo(f"  {delta['op']:<8} {delta['key']}{extra}  "
                       f"({delta['file']}:{delta['line']})")


@specs.command(name="list")
@click.option("--specs", "list_specs_flag", is_flag=True, help="List specs instead of changes.")
@_format_option("text", "json", "openspec")
@_root_option
def list_command(list_specs_flag: bool, output: str, as_json: bool, repo: Path | None) -> None:
    """List active changes (or specs); --format openspec mirrors `openspec list --json`."""
    from aidp.app.specs import list_items

    output = "json" if as_json and output == "text" else output
    root = _root(repo)
    document = list_items(root, specs=list_specs_flag)
    if output in ("openspec", "json"):
        echo_json(document)
        return
    if list_specs_flag:
        for spec in document["specs"]:
            click.echo(f"{spec['id']}  {spec['requirementCount']} requirements")
    else:
        for change in document["changes"]:
            click.echo(f"{change['name']}  {change['completedTasks']}/{change['totalTasks']} "
                       f"tasks  {change['status']}")


@specs.command(name="index")
@click.option("--rebuild", is_flag=True, help="Forget the index and build it from scratch.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_root_option
def index_command(rebuild: bool, as_json: bool, repo: Path | None) -> None:
    """Update the spec index (.aidp/specs-index.db), reparsing only files that changed."""
    from aidp.specs.index import SpecIndex

    root = _root(repo)
    started = time.perf_counter()
    with SpecIndex.for_root(root) as index:
        stats = index.rebuild(root) if rebuild else index.update(root)
        counts = index.counts()
        fts5 = index.fts5
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    data = {"index": str(root / ".aidp" / "specs-index.db"), "files_seen": stats.files_seen,
            "files_changed": stats.files_changed, "files_removed": stats.files_removed,
            "rows_written": stats.rows_written, "generation": stats.generation,
            "fts5": fts5, "elapsed_ms": elapsed_ms, "rows": counts}
    if as_json:
        echo_json(data)
        return
    click.echo(f"indexed {stats.files_seen} files: {stats.files_changed} reparsed, "
               f"{stats.files_removed} dropped, {stats.rows_written} rows written "
               f"in {elapsed_ms} ms")
    click.echo("  " + ", ".join(f"{table} {count}" for table, count in counts.items()))


@specs.command()
@click.argument("text")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_root_option
def search(text: str, limit: int, as_json: bool, repo: Path | None) -> None:
    """Find requirements by words in their name, text or scenarios (updates the index first)."""
    from aidp.specs.index import SpecIndex

    root = _root(repo)
    with SpecIndex.for_root(root) as index:
        index.update(root)
        found = [index.requirement(key) for key in index.search(text, limit)]
    rows = [{"key": r.key, "file": r.file, "line": r.line, "text": r.text}
            for r in found if r is not None]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['key']}  ({row['file']}:{row['line']})")


@specs.command()
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_root_option
def resolve(uri: str, as_json: bool, repo: Path | None) -> None:
    """Resolve a spec:// URI to a capability, requirement or scenario.

    URI is spec://<capability>[/<requirement>][#<scenario>][@<version>]; version is current,
    an active change id, or an archive date YYYY-MM-DD. Old names of renamed requirements
    resolve to the new ones, with a notice on stderr.
    """
    from aidp.specs.project import load_project
    from aidp.specs.resolver import resolve as resolve_uri

    root = _root(repo)
    found = resolve_uri(load_project(root), uri)
    req, scen = found.requirement, found.scenario
    data: dict[str, Any] = {
        "uri": uri, "capability": found.capability, "version": found.version,
        "file": found.spec.position.file if req is None else req.position.file,
        "notices": list(found.notices),
        "requirement": None if req is None else {
            "key": req.key, "name": req.name, "text": req.text, "line": req.position.line,
            "scenarios": [{"name": s.name, "text": s.text, "line": s.position.line}
                          for s in req.scenarios]},
        "scenario": None if scen is None else {"name": scen.name, "text": scen.text,
                                               "line": scen.position.line},
        "requirements": [r.key for r in found.spec.requirements] if req is None else None,
    }
    for notice in found.notices:
        click.echo(f"notice: {notice}", err=True)
    if as_json:
        echo_json(data)
        return
    if scen is not None:
        click.echo(f"{req.key if req else ''}#{scen.name} ({found.version})\n{scen.text}")
    elif req is not None:
        click.echo(f"{req.key} ({found.version}, {req.position})\n{req.text}")
        for s in req.scenarios:
            click.echo(f"  #### Scenario: {s.name}")
    else:
        click.echo(f"{found.capability} ({found.version}): {len(found.spec.requirements)} "
                   "requirements")
        for r in found.spec.requirements:
            click.echo(f"  {r.key}")


@specs.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_root_option
def conflicts(as_json: bool, repo: Path | None) -> None:
    """Requirements claimed by two or more active changes; exit 1 when there are any."""
    from aidp.specs.project import load_project
    from aidp.specs.resolver import find_conflicts

    found = find_conflicts(load_project(_root(repo)))
    if as_json:
        echo_json([{"key": c.key, "claims": [{"change": cl.change, "op": cl.op.value,
                                              "file": cl.file, "line": cl.line}
                                             for cl in c.claims]} for c in found])
    else:
        for conflict in found:
            click.echo(conflict.render())
        if not found:
            click.echo("no conflicts between active changes")
    sys.exit(1 if found else 0)


@specs.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_root_option
def refs(as_json: bool, repo: Path | None) -> None:
    """Resolve every spec:// reference in the specs; exit 2 on missing targets or cycles."""
    from aidp.specs.project import load_project
    from aidp.specs.resolver import reference_graph

    graph = reference_graph(load_project(_root(repo)))
    errors = [p for p in graph.problems if p.code != "notice"]
    if as_json:
        echo_json({"ok": not errors, "edges": {k: list(v) for k, v in graph.edges.items() if v},
                   "problems": [p.to_dict() for p in graph.problems]})
    else:
        for source, targets in sorted(graph.edges.items()):
            for target in targets:
                click.echo(f"{source} -> {target}")
        for problem in graph.problems:
            click.echo(problem.render(), err=True)
    sys.exit(2 if errors else 0)


@specs.command()
@click.argument("change_id", metavar="CHANGE")
@_format_option("text", "json", "openspec")
@_root_option
def archive(change_id: str, output: str, as_json: bool, repo: Path | None) -> None:
    """Merge a change's deltas into the specs and move it to changes/archive/ (as
    `openspec archive CHANGE --yes`); refuses, writing nothing, if it would not validate."""
    from aidp.specs.archive import archive_change
    from aidp.specs.compat import root_document

    output = "json" if as_json and output == "text" else output
    root = _root(repo)
    with _openspec_errors(output):
        result = archive_change(root, change_id)
    if output in ("openspec", "json"):
        echo_json({"archive": result.to_openspec(), "root": root_document(root)})
        return
    click.echo(f"archived {change_id} as {result.archived_as}: +{result.added} "
               f"~{result.modified} -{result.removed} renamed {result.renamed}")


from aidp.cli.specs_coverage import coverage as _coverage  # noqa: E402
from aidp.cli.specs_export import export_epic  # noqa: E402
from aidp.cli.specs_github import gh_sync  # noqa: E402
from aidp.cli.specs_workstreams import epic_command, plan_command, sync_command  # noqa: E402

specs.add_command(_coverage)
specs.add_command(export_epic)
specs.add_command(gh_sync)
for _command in (plan_command, epic_command, sync_command):
    specs.add_command(_command)
