"""The bad-file corpus: every file is rejected by the real CLI with file, line, id and code."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from aidp.exceptions import ValidationError
from aidp.model.loader import load_plan
from tests.helpers import Cli, CliResult, git, init_repo
from tests.model._helpers import assert_untouched

CORPUS = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Case:
    """What the CLI must say about one corpus entry (a file, or a directory of files)."""

    file: str
    line: int | None
    id: str | None
    code: str
    words: str = ""


CASES: dict[str, Case] = {
    "unknown_key.yaml": Case("unknown_key.yaml", 7, "ws-a/build", "unknown-key", "'retries'"),
    "unknown_key.json": Case("unknown_key.json", 7, "ws-a", "unknown-key", "'stepz'"),
    "wrong_type.yaml": Case("wrong_type.yaml", 7, "ws-a/build", "type", "timeout"),
    "duplicate_workstream_id.yaml": Case(
        "duplicate_workstream_id.yaml", 8, "ws-a", "duplicate-id", "first at"
    ),
    "duplicate_id_across_files": Case(
        "duplicate_id_across_files/b.yaml", 8, "shared", "duplicate-id", "a.yaml:3"
    ),
    "duplicate_step_id.yaml": Case("duplicate_step_id.yaml", 7, "ws-a/build", "duplicate-id"),
    "unknown_workstream_dependency.yaml": Case(
        "unknown_workstream_dependency.yaml", 5, "ws-a", "unknown-dependency", "ws-missing"
    ),
    "unknown_step_dependency.yaml": Case(
        "unknown_step_dependency.yaml", 8, "ws-a/test", "unknown-dependency", "biuld"
    ),
    "workstream_cycle.yaml": Case(
        "workstream_cycle.yaml", 4, "ws-a", "cycle", "ws-a -> ws-c -> ws-b -> ws-a"
    ),
    "step_cycle.yaml": Case("step_cycle.yaml", 6, "ws-a/one", "cycle", "one -> two -> one"),
    "scope_conflict.yaml": Case(
        "scope_conflict.yaml", 7, "ws-cli", "scope-conflict", "'src/**' ~ 'src/cli/main.py'"
    ),
    "absolute_scope.yaml": Case("absolute_scope.yaml", 5, "ws-a", "unsafe-path", "absolute"),
    "dotdot_context.yaml": Case("dotdot_context.yaml", 9, "ws-a/read", "unsafe-path", "'..'"),
    "prompt_file_outside_repo.yaml": Case(
        "prompt_file_outside_repo.yaml", 7, "ws-a/ask", "unsafe-path", "prompt_file"
    ),
    "invalid_base.yaml": Case("invalid_base.yaml", 4, "ws-a", "branch-name", "'..'"),
    "invalid_merge_into.yaml": Case("invalid_merge_into.yaml", 5, "ws-a", "branch-name", ".lock"),
    "merge_into_generated.yaml": Case(
        "merge_into_generated.yaml", 4, "ws-a", "branch-name", "reserved"
    ),
    "invalid_workstream_id_branch.yaml": Case(
        "invalid_workstream_id_branch.yaml", 3, "ws.lock", "branch-name", ".lock"
    ),
    "alias_bomb.yaml": Case("alias_bomb.yaml", 7, "ws-bomb/s", "yaml-alias", "&a"),
    "python_tag.yaml": Case(
        "python_tag.yaml", 6, "ws-a/pwn", "yaml-tag", "!!python/object/apply:os.system"
    ),
    "custom_tag.yaml": Case("custom_tag.yaml", 6, "ws-a/inc", "yaml-tag", "!include"),
    "duplicate_key.yaml": Case(
        "duplicate_key.yaml", 8, "ws-a/build", "duplicate-key", "'run' (first at line 6)"
    ),
    "duplicate_key.json": Case("duplicate_key.json", 9, "ws-b", "duplicate-key", "'id'"),
    "too_deep.yaml": Case("too_deep.yaml", 7, "ws-a/deep", "too-deep", "64"),
    "unknown_placeholder.yaml": Case(
        "unknown_placeholder.yaml", 6, "ws-a/build", "placeholder", "{output_dir}"
    ),
    "malformed_braces.yaml": Case(
        "malformed_braces.yaml", 8, "ws-a/build", "placeholder", "malformed braces"
    ),
    "shell_without_run.yaml": Case("shell_without_run.yaml", 5, "ws-a/build", "missing-run", "run"),
    "wrong_version.yaml": Case("wrong_version.yaml", 1, None, "version", "version 2"),
    "empty.yaml": Case("empty.yaml", 1, None, "empty", "empty"),
    "invalid.json": Case("invalid.json", 4, None, "invalid-json", "invalid JSON"),
    "nan.json": Case("nan.json", 1, "ws-a/s", "invalid-json", "NaN"),
    "multiple_documents.yaml": Case(
        "multiple_documents.yaml", 5, None, "multiple-documents", "one YAML document"
    ),
}


def test_every_corpus_entry_has_a_case() -> None:
    """Each file or directory in tests/model/corpus has an expectation, and vice versa."""
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(CASES)


def _repo_with(tmp_path: Path, entry: str) -> Path:
    repo = init_repo(tmp_path / "repo")
    source = CORPUS / entry
    target = repo / "plans" / entry
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "plans")
    return repo


def run_aidp(repo: Path, *args: str) -> CliResult:
    """``aidp *args`` in ``repo``, in this process (validation needs no separate process)."""
    return Cli(repo, in_process=True)(*args)


def _check(repo: Path, arg: str, case: Case) -> None:
    done = run_aidp(repo, "validate", arg)
    assert done.returncode == 2, done.stderr
    where = f"plans/{case.file}" + (f":{case.line}:" if case.line else ":")
    ident = f" [{case.id}] " if case.id else " "
    lines = [line for line in done.stderr.splitlines() if line.startswith(where + ident)]
    assert lines, f"no line starting with {where + ident!r} in:\n{done.stderr}"
    assert any(case.words in line for line in lines), done.stderr
    assert "Traceback" not in done.stderr
    assert_untouched(repo)


@pytest.mark.parametrize("entry", sorted(CASES))
def test_corpus_file_is_rejected_with_location(tmp_path: Path, entry: str) -> None:
    """The CLI exits 2 naming file, line and id; nothing is written; the code is the
    expected one."""
    case = CASES[entry]
    repo = _repo_with(tmp_path, entry)
    _check(repo, f"plans/{entry}", case)
    with pytest.raises(ValidationError) as info:
        load_plan([repo / "plans" / entry], repo=repo)
    codes = {p.code for p in info.value.problems}
    assert case.code in codes


def test_too_large_file_is_rejected_before_reading(tmp_path: Path) -> None:
    """A file over the size limit is refused with code too-large, by the CLI too."""
    body = "version: 1\nworkstreams:\n" + "# padding\n" * 110_000
    repo = init_repo(tmp_path / "repo", {"plans/big.yaml": body})
    _check(repo, "plans/big.yaml", Case("big.yaml", None, None, "too-large", "limit"))
    with pytest.raises(ValidationError) as info:
        load_plan([repo / "plans" / "big.yaml"], max_file_bytes=1000)
    assert [p.code for p in info.value.problems] == ["too-large"]


def test_non_utf8_file_is_rejected(tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused with the line of the first bad byte."""
    body = "version: 1\nworkstreams:\n  - id: caf\xe9\n".encode("latin-1")
    repo = init_repo(tmp_path / "repo", {"plans/latin1.yaml": body})
    _check(repo, "plans/latin1.yaml", Case("latin1.yaml", 3, None, "encoding", "UTF-8"))


def test_json_output_lists_every_problem(tmp_path: Path) -> None:
    """With --json, problems go to stdout as a document with file, line, id, code."""
    repo = _repo_with(tmp_path, "duplicate_step_id.yaml")
    done = run_aidp(repo, "validate", "--json", "plans/duplicate_step_id.yaml")
    assert done.returncode == 2
    document = json.loads(done.stdout)
    assert document["ok"] is False
    assert document["problems"] == [
        {
            "file": "plans/duplicate_step_id.yaml",
            "line": 7,
            "id": "ws-a/build",
            "code": "duplicate-id",
            "message": "duplicate step id 'build' (first at line 5)",
        }
    ]
    assert_untouched(repo)


def test_alias_bomb_is_refused_without_expansion(tmp_path: Path) -> None:
    """The billion-laughs file is refused at its first anchor, not expanded."""
    with pytest.raises(ValidationError) as info:
        load_plan([CORPUS / "alias_bomb.yaml"])
    assert [p.code for p in info.value.problems] == ["yaml-alias"]


def test_python_tag_runs_nothing(tmp_path: Path) -> None:
    """A !!python/object/apply tag is rejected and the command in it never runs."""
    repo = _repo_with(tmp_path, "python_tag.yaml")
    run_aidp(repo, "validate", "plans/python_tag.yaml")
    assert not (repo / "pwned").exists()
    assert_untouched(repo)
