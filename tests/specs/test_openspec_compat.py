"""aidp against the real ``openspec`` CLI, on a corpus of valid and broken specs and changes.

Normalised before comparing, and only these: ``durationMs`` (each tool's own timing) and, for
``list``, nothing when the files carry distinct modification times (set here with ``os.utime``).
``root.path`` is the same directory for both tools, so it is compared as is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from aidp.specs.compat import ShowError, list_changes, list_specs, show_change, show_spec
from tests.conftest import Cli
from tests.specs.conftest import Reference
from tests.specs.corpus import CHANGES, SPECS, build

ITEMS = [("change", c) for c in sorted(CHANGES)] + [("spec", s) for s in sorted(SPECS)]
SHOWN_BY_DEFAULT = {"add-valid", "rename-valid", "remove-bullet", "what-changes-only",
                    "no-proposal", "base", "crlf-bom", "non-requirement-child", "no-purpose",
                    "identity/user-auth", "metadata-only"}


def _aidp(cwd: Path, *args: str) -> tuple[int, Any]:
    proc = Cli(cwd)("specs", *args, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _items(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for item in document["items"]:
        item = dict(item)
        item.pop("durationMs")
        out[(item["type"], item["id"])] = item
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus written once into a fresh directory."""
    return build(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def verdicts(corpus: Path, reference: Reference) -> dict[str, Any]:
    """``validate --all`` (plain and strict) from both tools, run once for the module."""
    out: dict[str, Any] = {}
    for strict in (False, True):
        flags = ["--strict"] if strict else []
        ref_code, ref = reference.json(corpus, "validate", "--all", "--json", *flags)
        our_code, ours = _aidp(corpus, "validate", "--format", "openspec", *flags)
        out[f"strict={strict}"] = (ref_code, ref, our_code, ours)
    return out


@pytest.mark.parametrize("strict", [False, True], ids=["plain", "strict"])
@pytest.mark.parametrize("kind,item", ITEMS, ids=[f"{k}:{i}" for k, i in ITEMS])
def test_validate_matches_openspec(verdicts: dict[str, Any], kind: str, item: str,
                                   strict: bool) -> None:
    """Every corpus item gets the reference's verdict and exactly its ERROR/WARNING/INFO issues."""
    _, ref, _, ours = verdicts[f"strict={strict}"]
    assert _items(ours)[(kind, item)] == _items(ref)[(kind, item)]


@pytest.mark.parametrize("strict", [False, True], ids=["plain", "strict"])
def test_validate_envelope_matches_openspec(verdicts: dict[str, Any], strict: bool) -> None:
    """Summary, version, root, item order and exit status equal the reference's."""
    ref_code, ref, our_code, ours = verdicts[f"strict={strict}"]
    assert (our_code, ours["summary"], ours["version"], ours["root"]) == \
        (ref_code, ref["summary"], ref["version"], ref["root"])
    assert [i["id"] for i in ours["items"]] == [i["id"] for i in ref["items"]]


@pytest.mark.parametrize("item", ["add-valid", "modify-drops-scenario", "tasks-numbering"],
                         ids=str)
def test_validate_one_change_matches_openspec(corpus: Path, reference: Reference,
                                              item: str) -> None:
    """``validate ID`` alone: same document (bar durationMs) and exit code as the reference."""
    ref_code, ref = reference.json(corpus, "validate", item, "--json")
    our_code, ours = _aidp(corpus, "validate", item, "--format", "openspec")
    for doc in (ref, ours):
        for entry in doc["items"]:
            entry.pop("durationMs")
    assert (our_code, ours) == (ref_code, ref)


def _show_cases() -> list[Any]:
    cases = []
    for kind, item in ITEMS:
        marks = [] if item in SHOWN_BY_DEFAULT else [pytest.mark.slow]
        cases.append(pytest.param(kind, item, marks=marks, id=f"{kind}:{item}"))
    return cases


@pytest.mark.parametrize("kind,item", _show_cases())
def test_show_matches_openspec(corpus: Path, reference: Reference, kind: str, item: str) -> None:
    """``show ID --json`` equals aidp's document; where the reference refuses, aidp refuses too,
    with the same status code and message."""
    ref_code, ref = reference.json(corpus, "show", item, "--type", kind, "--json")
    try:
        ours = show_change(corpus, item) if kind == "change" else show_spec(corpus, item)
    except ShowError as exc:
        assert ref_code == 1
        assert ref["status"][0]["code"] == exc.code
        assert ref["status"][0]["message"] == exc.reference
        return
    assert ref_code == 0, ref
    assert ours == ref


def test_show_refusal_through_the_cli(corpus: Path, reference: Reference) -> None:
    """aidp specs show --format openspec on a spec without Purpose prints the reference's
    status document and exits 1 without a traceback."""
    ref_code, ref = reference.json(corpus, "show", "no-purpose", "--type", "spec", "--json")
    our_code, ours = _aidp(corpus, "show", "no-purpose", "--type", "spec", "--format", "openspec")
    assert (our_code, ours) == (ref_code, ref)


def test_list_matches_openspec(corpus: Path, reference: Reference) -> None:
    """``list --json`` and ``list --specs --json`` are equal once modification times differ."""
    changes = sorted((corpus / "openspec" / "changes").iterdir())
    for offset, change_dir in enumerate(changes):
        stamp_ns = (1_700_000_000 + offset * 61) * 10**9 + (offset % 7) * 10**6
        for path in change_dir.rglob("*"):
            os.utime(path, ns=(stamp_ns, stamp_ns))
    assert list_changes(corpus) == reference.json(corpus, "list", "--json")[1]
    assert list_specs(corpus) == reference.json(corpus, "list", "--specs", "--json")[1]
    code, ours = _aidp(corpus, "list", "--format", "openspec")
    assert code == 0 and ours == list_changes(corpus)


def test_v0_layout_matches_openspec(tmp_path: Path, reference: Reference) -> None:
    """A v0 project (project.md, no config.yaml) validates and lists the same in both tools."""
    build(tmp_path)
    (tmp_path / "openspec" / "config.yaml").unlink()
    (tmp_path / "openspec" / "project.md").write_text("# Project\n\nConventions.\n")
    ref_code, ref = reference.json(tmp_path, "validate", "--all", "--json", "--strict")
    our_code, ours = _aidp(tmp_path, "validate", "--format", "openspec", "--strict")
    assert our_code == ref_code
    assert _items(ours) == _items(ref)


ARCHIVABLE = ["add-valid", "modify-valid", "rename-valid", "remove-bullet", "add-new-capability",
              "nested-delta", "case-insensitive-sections", "crlf-delta"]


def _spec_files(root: Path) -> dict[str, bytes]:
    specs = root / "openspec" / "specs"
    return {p.relative_to(specs).as_posix(): p.read_bytes() for p in sorted(specs.rglob("*.md"))}


@pytest.mark.parametrize("item", ARCHIVABLE, ids=str)
def test_archive_matches_openspec(corpus: Path, tmp_path: Path, reference: Reference,
                                  item: str) -> None:
    """Archiving a change leaves byte-identical specs, the same archive directory name and the
    same totals as ``openspec archive ID --yes --json``."""
    import shutil

    ours_root, ref_root = tmp_path / "ours", tmp_path / "ref"
    shutil.copytree(corpus, ours_root, ignore=shutil.ignore_patterns(".aidp"))
    shutil.copytree(corpus, ref_root, ignore=shutil.ignore_patterns(".aidp"))
    ref_code, ref = reference.json(ref_root, "archive", item, "--yes", "--json")
    our_code, ours = _aidp(ours_root, "archive", item, "--format", "openspec")
    assert (our_code, ref_code) == (0, 0), (ours, ref)
    for doc, where in ((ref, ref_root), (ours, ours_root)):
        doc["archive"]["path"] = Path(doc["archive"]["path"]).relative_to(where).as_posix()
        doc.pop("root")
    assert ours == ref
    assert _spec_files(ours_root) == _spec_files(ref_root)
    assert not (ours_root / "openspec" / "changes" / item).exists()


@pytest.mark.parametrize("item", ["modify-missing", "modify-drops-scenario", "added-exists",
                                  "rename-target-exists", "modify-via-rename"], ids=str)
def test_archive_refusals_match_openspec(corpus: Path, tmp_path: Path, reference: Reference,
                                         item: str) -> None:
    """Where the reference refuses to archive, aidp refuses too and writes nothing."""
    import shutil

    ours_root, ref_root = tmp_path / "ours", tmp_path / "ref"
    shutil.copytree(corpus, ours_root, ignore=shutil.ignore_patterns(".aidp"))
    shutil.copytree(corpus, ref_root, ignore=shutil.ignore_patterns(".aidp"))
    ref_code, _ = reference.json(ref_root, "archive", item, "--yes", "--json")
    before = _spec_files(ours_root)
    proc = Cli(ours_root)("specs", "archive", item, timeout=120)
    assert ref_code != 0 and proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: openspec/changes/") and "Traceback" not in proc.stderr
    assert _spec_files(ours_root) == before == _spec_files(ref_root)
    assert (ours_root / "openspec" / "changes" / item).is_dir()


def test_list_ties_sorted_by_name_as_openspec(tmp_path: Path, reference: Reference) -> None:
    """Rule: changes with equal modification times are listed by name, as `openspec list`."""
    changes = tmp_path / "openspec" / "changes"
    names = ["zeta", "alpha", "mid", "omega", "beta", "kappa"]
    for name in names:
        (changes / name).mkdir(parents=True)
        (changes / name / "tasks.md").write_text("- [ ] 1.1 x\n")
    stamp_ns = 1_700_000_000_123 * 10**6
    for path in [*changes.rglob("*"), changes]:
        os.utime(path, ns=(stamp_ns, stamp_ns))
    ref_code, ref = reference.json(tmp_path, "list", "--json")
    assert [c["name"] for c in ref["changes"]] == sorted(names)
    assert list_changes(tmp_path) == ref
    assert _aidp(tmp_path, "list", "--format", "openspec") == (ref_code, ref)


@pytest.mark.parametrize("layout", ["instructions-only", "no-openspec"])
def test_validate_all_without_a_root_matches_openspec(tmp_path: Path, reference: Reference,
                                                      layout: str) -> None:
    """Rule: `validate --all` with no OpenSpec root (no openspec/, or one holding neither specs/,
    changes/ nor config.yaml) prints the reference's no_openspec_root status and exits 1."""
    if layout == "instructions-only":
        (tmp_path / "openspec").mkdir()
        (tmp_path / "openspec" / "AGENTS.md").write_text("# Agents\n")
        (tmp_path / "openspec" / "project.md").write_text("# Project\n")
    ref = reference.json(tmp_path, "validate", "--all", "--json")
    assert ref[0] == 1 and ref[1]["status"][0]["code"] == "no_openspec_root"
    assert _aidp(tmp_path, "validate", "--all", "--format", "openspec") == ref
    assert _aidp(tmp_path, "validate", "--format", "openspec") == ref
