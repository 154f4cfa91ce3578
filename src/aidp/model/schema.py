"""JSON Schema export of workstream files, generated from :class:`WorkstreamFile`.

``python -m aidp.model.schema [PATH]`` writes ``schema/workstream.schema.json`` (or ``PATH``);
a test keeps the committed file equal to a fresh export. The schema covers the shape only:
cycles, unknown dependencies, scope conflicts and the like are checked by ``aidp validate``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aidp.model.workstream import WorkstreamFile

__all__ = ["SCHEMA_ID", "default_schema_path", "render_schema", "workstream_schema", "write_schema"]

SCHEMA_ID = "https://aidp.dev/schema/workstream.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def workstream_schema() -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of a workstream file, with ``$schema``, ``$id``, title."""
    schema = WorkstreamFile.model_json_schema()
    schema["$schema"] = DRAFT
    schema["$id"] = SCHEMA_ID
    schema["title"] = "aidp workstream file"
    return schema


def render_schema() -> str:
    """The schema as committed: sorted keys, indent 2, trailing newline."""
    return json.dumps(workstream_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def default_schema_path() -> Path:
    """``schema/workstream.schema.json`` of the source checkout (or of the current directory)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file():
        root = Path.cwd()
    return root / "schema" / "workstream.schema.json"


def write_schema(path: Path | None = None) -> Path:
    """Write :func:`render_schema` to ``path`` (default :func:`default_schema_path`).

    Returns:
        The path written.
    """
    target = path or default_schema_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_schema(), encoding="utf-8")
    return target


if __name__ == "__main__":
    written = write_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(f"wrote {written}")
