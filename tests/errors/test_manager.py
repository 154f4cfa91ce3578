"""DetectorManager: built-ins, entry-point plugins (a real installed-looking distribution on
PYTHONPATH, in a real subprocess), crash isolation, dedup, order, the cached default."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import aidp.errors
from aidp.errors import (
    ENTRY_POINT_GROUP,
    CheckEvidence,
    Detection,
    DetectorFailure,
    DetectorManager,
    FailureClass,
    Finding,
    default_manager,
    hookimpl,
)
from aidp.errors.detectors import BUILTIN

from .conftest import ROOT, attempt, tool_env

CONFLICT = "CONFLICT (content): Merge conflict in a.txt\n"


def _check(output: str) -> CheckEvidence:
    return CheckEvidence(name="c", command="make", exit_code=1, signal=None, timed_out=False,
                         output=output)


def test_default_manager_has_every_builtin_in_order() -> None:
    """The default manager registers every built-in detector, in BUILTIN order, first."""
    manager = default_manager()
    assert manager.detectors[: len(BUILTIN)] == tuple(BUILTIN)
    assert manager.load_failures == ()


def test_default_manager_is_one_object_across_threads() -> None:
    """default_manager() is built once, even when many threads ask at the same moment."""
    import aidp.errors.manager as module

    module._default = None
    seen: list[DetectorManager] = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        seen.append(default_manager())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and all(m is seen[0] for m in seen)


class _Raises:
    @hookimpl
    def aidp_detect_check(self, evidence: CheckEvidence) -> list[Finding]:
        raise RuntimeError("detector bug")

    @hookimpl
    def aidp_detect_attempt(self, evidence: object) -> list[Finding]:
        raise KeyError("also broken")


class _Echo:
    """Reports one finding per call, and a duplicate of it."""

    @hookimpl
    def aidp_detect_check(self, evidence: CheckEvidence) -> list[Finding]:
        finding = Finding("echo", "echoed", FailureClass.TRANSIENT, code="echo")
        return [finding, Finding("echo", "echoed", FailureClass.TRANSIENT, code="echo")]


@pytest.mark.parametrize("returned, problem", [
    pytest.param("text", "returned str, not a list of findings", id="string"),
    pytest.param(42, "returned int, not a list of findings", id="number"),
    pytest.param({"a": 1}, "returned dict, not a list of findings", id="mapping"),
    pytest.param([1, Finding("bad", "kept", FailureClass.PERMANENT)],
                 "returned a int among its findings (ignored)", id="mixed-list"),
])
def test_bad_return_values_are_reported(returned: object, problem: str) -> None:
    """A detector returning something other than a list of findings is reported; any real
    findings in it are kept."""
    plugin = SimpleNamespace(aidp_detect_check=hookimpl(lambda evidence: returned))
    manager = DetectorManager({}, entry_points=False, plugins={"odd": plugin})
    detection = manager.detect_check(_check(""))
    assert detection.failures == (DetectorFailure("odd", f"aidp_detect_check {problem}"),)
    kept = [f.message for f in detection.findings]
    assert kept == (["kept"] if isinstance(returned, list) else [])


def test_none_means_no_findings() -> None:
    """A detector returning None found nothing; that is not a failure."""
    plugin = SimpleNamespace(aidp_detect_check=hookimpl(lambda evidence: None))
    manager = DetectorManager({}, entry_points=False, plugins={"quiet": plugin})
    assert manager.detect_check(_check("")) == Detection()


def test_a_raising_detector_is_reported_and_the_others_still_run() -> None:
    """One detector's exception becomes a DetectorFailure; detectors before and after it
    still report their findings."""
    manager = DetectorManager({"git-conflict": BUILTIN["git-conflict"]}, entry_points=False,
                              plugins={"raises": _Raises(), "echo": _Echo()})
    detection = manager.detect_check(_check(CONFLICT))
    assert [f.detector for f in detection.findings] == ["git-conflict", "echo"]
    assert detection.failures == (
        DetectorFailure("raises", "aidp_detect_check raised RuntimeError: detector bug"),)
    on_attempt = manager.detect_attempt(attempt(CONFLICT))
    assert [f.detector for f in on_attempt.findings] == ["git-conflict"]
    assert on_attempt.failures[0].message == "aidp_detect_attempt raised KeyError: 'also broken'"


def test_findings_are_deduped_by_fingerprint_in_order() -> None:
    """Equal fingerprints collapse to the first finding; the order is the detectors' order."""
    manager = DetectorManager({"git-conflict": BUILTIN["git-conflict"]}, entry_points=False,
                              plugins={"echo": _Echo()})
    detection = manager.detect_check(_check(CONFLICT * 3))
    assert [(f.detector, f.code) for f in detection.findings] == [
        ("git-conflict", "conflict-content"), ("echo", "echo")]
    assert detection.failure_class is FailureClass.PERMANENT
    assert detection.retry_after is None
    assert json.loads(json.dumps(detection.to_dict()))["class"] == "permanent"


def test_a_plugin_that_cannot_register_is_reported() -> None:
    """A plugin whose hookimpl does not fit the spec (or whose name is taken) is a load
    failure, reported in every detection; the rest work."""
    bad = SimpleNamespace(aidp_detect_check=hookimpl(lambda wrong_name: []))
    manager = DetectorManager({"git-conflict": BUILTIN["git-conflict"]}, entry_points=False,
                              plugins={"bad": bad, "git-conflict": _Echo()})
    names = [f.detector for f in manager.load_failures]
    assert names == ["bad", "git-conflict"]
    assert "already registered" in manager.load_failures[1].message
    detection = manager.detect_check(_check(CONFLICT))
    assert [f.detector for f in detection.findings] == ["git-conflict"]
    assert detection.failures == manager.load_failures


def test_hook_wrappers_are_refused() -> None:
    """A wrapper hookimpl cannot be called on its own: it is reported, not run."""
    class Wrapper:
        @hookimpl(wrapper=True)
        def aidp_detect_check(self, evidence: CheckEvidence) -> object:
            return (yield)

    manager = DetectorManager({}, entry_points=False, plugins={"wrap": Wrapper()})
    assert manager.detect_check(_check("")).failures == (
        DetectorFailure("wrap", "hook wrappers are not supported"),)


# -- entry points, in a real subprocess --------------------------------------------------------

def _distribution(site: Path, name: str, module_source: str) -> None:
    """A minimal installed distribution: a module plus its dist-info with an entry point."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {name}\n")


PROBE = """
import json, sys
from aidp.errors import AttemptEvidence, default_manager
ev = AttemptEvidence(tool="t", adapter="shell", exit_code=1, signal=None, timed_out=False,
                     duration_s=0.1, output=sys.argv[1])
d = default_manager().detect_attempt(ev)
print(json.dumps({"detectors": default_manager().detectors,
                  "findings": [f.to_dict() for f in d.findings],
                  "failures": [x.to_dict() for x in d.failures]}))
"""


def _probe(site: Path, output: str) -> dict[str, Any]:
    env = tool_env()
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-c", PROBE, output], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60, check=True)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_entry_point_plugin_findings_are_returned(tmp_path: Path) -> None:
    """A third-party detector declared under ``aidp.detectors`` is loaded by default_manager()
    and its findings come back, after the built-ins'."""
    site = tmp_path / "site"
    site.mkdir()
    _distribution(site, "quota_detector", """
        from aidp.errors import FailureClass, Finding, hookimpl

        @hookimpl
        def aidp_detect_attempt(evidence):
            if "quota exhausted" in evidence.output:
                return [Finding("quota_detector", "the team's quota is exhausted",
                                FailureClass.PERMANENT, code="team-quota")]
            return []
        """)
    result = _probe(site, "CONFLICT (content): Merge conflict in a.txt\nquota exhausted\n")
    assert result["detectors"][-1] == "quota_detector"
    assert [(f["detector"], f["code"], f["class"]) for f in result["findings"]] == [
        ("git-conflict", "conflict-content", "permanent"),
        ("quota_detector", "team-quota", "permanent")]
    assert result["failures"] == []


def test_raising_and_unimportable_plugins_are_skipped(tmp_path: Path) -> None:
    """A plugin that raises, and one that cannot even be imported, are reported; the
    built-ins' findings still come back."""
    site = tmp_path / "site"
    site.mkdir()
    _distribution(site, "crashy", """
        from aidp.errors import hookimpl

        @hookimpl
        def aidp_detect_attempt(evidence):
            raise ZeroDivisionError("plugin bug")
        """)
    _distribution(site, "broken", "import module_that_does_not_exist\n")
    result = _probe(site, "CONFLICT (content): Merge conflict in a.txt\n")
    assert [f["detector"] for f in result["findings"]] == ["git-conflict"]
    failures = {f["detector"]: f["message"] for f in result["failures"]}
    assert failures == {
        "broken": "not loaded: ModuleNotFoundError: No module named "
                  "'module_that_does_not_exist'",
        "crashy": "aidp_detect_attempt raised ZeroDivisionError: plugin bug",
    }


def test_importing_the_package_is_cheap() -> None:
    """``import aidp.errors`` (and the manager module) imports neither pluggy nor a detector;
    the CLI's --help therefore never pays for them."""
    code = ("import sys, aidp.errors, aidp.errors.manager; "
            "print(sorted(m for m in sys.modules if m == 'pluggy' or '.detectors' in m))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, env=tool_env())
    assert proc.stdout.strip() == "[]"


def test_public_door() -> None:
    """The package's __all__ is its public API, and every name in it resolves."""
    assert sorted(aidp.errors.__all__) == sorted([
        "ENTRY_POINT_GROUP", "AttemptEvidence", "CheckEvidence", "Detection", "DetectorFailure",
        "DetectorManager", "FailureClass", "Finding", "Severity", "classify", "default_manager",
        "fingerprint_of", "hookimpl", "retry_after"])
    for name in aidp.errors.__all__:
        assert getattr(aidp.errors, name) is not None
    with pytest.raises(AttributeError):
        aidp.errors.no_such_name  # noqa: B018
