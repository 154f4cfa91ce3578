"""An OpenSpec change as workstreams (``--change ID`` of ``aidp plan`` and ``aidp run``).

The change is compiled (:func:`aidp.specs.bridge.change_to_workstreams`: one step per open task,
its prompt carrying the requirement text and scenarios) into ``.aidp/changes/ID.yaml``, which
then goes through the same validation as any workstream file. ``aidp run --change`` runs only a
change whose proposal is approved (``[specs] require_approval = false`` lifts that), moves the
proposal to ``in_progress`` when the run starts and to ``applied`` when it completes: those
moves are :func:`aidp.app.start_change` and :func:`aidp.app.finish_change`. It may not touch the
store: compiling writes only the workstream file.
"""

from __future__ import annotations

from pathlib import Path

from aidp.config import Settings
from aidp.exceptions import InputError, StateError, ValidationError

__all__ = ["compile_change"]


def compile_change(repo: Path, settings: Settings, change_id: str, tool: str | None, *,
                   into: Path | None = None, split: str | None = None) -> Path:
    """Write the workstream file of ``change_id`` into ``into`` (default ``.aidp/changes/``)
    and return its path.

    ``split`` (default ``[specs] split``) is ``change`` (one workstream) or ``sections`` (one
    per numbered tasks.md section, chained). Tests under ``[specs] test_paths`` tagged with a
    scenario of the change become acceptance checks (``[specs] test_command``); a tag naming
    no known scenario is a ValidationError (exit 2) naming its file and line.
    """
    import yaml

    from aidp.specs.bridge import change_to_workstreams
    from aidp.specs.coverage import collect_tests, map_tests
    from aidp.specs.project import load_project

    project = load_project(repo)
    try:
        tagged = map_tests(project, collect_tests(repo, settings.specs.test_paths))
    except ValidationError as exc:
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        raise InputError(exc.problems[0].render() + more,
                         hint="`aidp specs coverage` lists every bad scenario tag") from None
    document = change_to_workstreams(
        project, change_id, tool=tool or settings.specs.tool,
        checks=list(settings.specs.checks), split=split or settings.specs.split,  # type: ignore[arg-type]
        tests={key: [t.nodeid for t in tests] for key, tests in tagged.items()},
        test_command=settings.specs.test_command)
    if not document.get("workstreams"):
        raise StateError(f"change {change_id!r} has no open task and no delta: nothing to run")
    path = (into or repo / ".aidp" / "changes") / f"{change_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# compiled by aidp from openspec/changes/{change_id}/\n"
                    + yaml.safe_dump(document, sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
    return path
