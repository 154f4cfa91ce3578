"""The exported JSON Schema: in sync with the models, and the examples conform to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from aidp.model.loader import load_plan
from aidp.model.schema import render_schema, workstream_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schema" / "workstream.schema.json"


def test_committed_schema_is_current() -> None:
    """schema/workstream.schema.json equals a fresh export of the models."""
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_schema(), (
        "schema/workstream.schema.json is stale: run `python -m aidp.model.schema` and commit it"
    )


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The schema itself validates against the 2020-12 meta-schema and names itself."""
    schema = workstream_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"]


def _example_files() -> list[Path]:
    found = []
    for path in sorted((ROOT / "examples").rglob("*")):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if isinstance(data, dict) and "version" in data and "workstreams" in data:
            found.append(path)
    return found


EXAMPLES = _example_files()


def test_there_are_examples() -> None:
    """At least the two schema examples exist, so the next test checks something."""
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_conforms_to_schema_and_loads(path: Path) -> None:
    """Every example workstream file validates against the schema and loads as a plan."""
    text = path.read_text(encoding="utf-8")
    data: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    jsonschema.Draft202012Validator(workstream_schema()).validate(data)
    assert load_plan([path], repo=ROOT).workstreams


@pytest.mark.parametrize(
    "data",
    [
        {"version": 2, "workstreams": [{"id": "a", "steps": [{"id": "s"}]}]},
        {"version": 1, "workstreams": [{"id": "a", "steps": [{"id": "s", "bogus": 1}]}]},
        {"version": 1},
        {"version": 1, "workstreams": [{"id": "-bad", "steps": [{"id": "s"}]}]},
    ],
    ids=["version", "unknown-key", "no-workstreams-key", "bad-id"],
)
def test_schema_rejects_what_the_models_reject(data: dict[str, Any]) -> None:
    """The schema catches shape errors an editor should underline."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(workstream_schema()).validate(data)
