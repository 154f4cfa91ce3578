"""CCPM epics as real projects write them: zero-padded task numbers, ``title:``, a heading
above the front matter, and ``parallel: true`` tasks without aidp's ``scope:``."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidp.exceptions import ValidationError
from aidp.model.yaml_tree import load_yaml
from aidp.specs.ccpm import epic_to_workstreams, load_epic
from tests.specs.test_ccpm import make_epic


def front(name: str, depends: str = "[]", parallel: str = "true", extra: str = "") -> str:
    return (f"---\nname: {name}\nstatus: open\ndepends_on: {depends}\nparallel: {parallel}\n"
            f"conflicts_with: []\n{extra}---\n## Description\nDo {name}.\n")


def nineteen(**overrides: str) -> dict[str, str]:
    """Tasks 001-019 named ``t1``..``t19``, no dependencies unless overridden."""
    files = {f"{n:03d}.md": front(f"t{n}") for n in range(1, 20)}
    files.update(overrides)
    return files


def shape(root: Path, files: dict[str, str]) -> dict[str, tuple[list[str], list[str]]]:
    document = epic_to_workstreams(load_epic(make_epic(root, files), root))
    return {w["id"]: (w.get("depends_on", []), w.get("conflicts_with", []))
            for w in document["workstreams"]}


@pytest.mark.parametrize("depends", [
    "[010, 012]",
    "\n  - 010\n  - 012",
    '["010", "012"]',
    "010, 012",
    '"010, 012"',
], ids=["flow", "block", "quoted-list", "scalar", "quoted-scalar"])
def test_zero_padded_task_numbers_are_decimal(tmp_path: Path, depends: str) -> None:
    """Task references are decimal digits: 010 is task 010, never octal 8, in any CCPM style."""
    files = nineteen(**{"011.md": front("t11", "[010]"),
                        "013.md": front("t13", depends),
                        "019.md": front("t19", "[018, 017]"),
                        "009.md": front("t9", "[008]")})
    got = shape(tmp_path, files)
    assert got["t11"][0] == ["t10"]
    assert got["t13"][0] == ["t10", "t12"]
    assert got["t19"][0] == ["t17", "t18"]
    assert got["t9"][0] == ["t8"]
    assert load_yaml("a: 010") == {"a": 8}  # the rest of aidp's YAML is unchanged


def test_bare_number_matches_a_zero_padded_task(tmp_path: Path) -> None:
    """A bare number (10) matches the task of that numeric value (010.md); an unknown one is
    an error naming file and line."""
    assert shape(tmp_path, nineteen(**{"014.md": front("t14", "[10, 3]")}))["t14"][0] == \
        ["t10", "t3"]
    with pytest.raises(ValidationError) as caught:
        load_epic(make_epic(tmp_path, {"020.md": front("t20", "[20, 21]")}), tmp_path)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (".claude/epics/auth/020.md", 4)
    assert "depends_on: no task 21" in problem.message
