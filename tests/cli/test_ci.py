"""``aidp ci``: a plan run in batch mode, its JUnit XML (valid against ``tests/data/junit.xsd``)
and Markdown reports, ``$GITHUB_STEP_SUMMARY``, and a test runner's exit codes."""

from __future__ import annotations

import json
import shutil
import signal
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aidp.app.reports import Verdict, build_report, junit_xml, markdown_summary, xml_safe
from aidp.app.views import AttemptView, FindingView, RunView, StepView, WorkstreamView
from tests.helpers import Cli, init_repo

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
SCHEMA = xmlschema.XMLSchema(ROOT / "tests" / "data" / "junit.xsd")

GREEN_PLAN = """\
version: 1
workstreams:
  - id: notes
    scope: ["notes/**"]
    steps:
      - id: write
        run: "mkdir -p notes && echo hello > notes/a.txt"
        checks: ["grep -q hello notes/a.txt"]
      - id: append
        depends_on: [write]
        run: "echo again >> notes/a.txt"
  - id: other
    scope: ["other/**"]
    steps:
      - id: only
        run: "mkdir -p other && touch other/x"
"""


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests never append to the summary of a real GitHub Actions job running them."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def _cases(xml_text: str) -> dict[str, ET.Element]:
    """The test cases of a JUnit document by ``classname/name``."""
    root = ET.fromstring(xml_text)
    return {f"{c.get('classname')}/{c.get('name')}": c for c in root.iter("testcase")}


def _quickstart(tmp_path: Path) -> Cli:
    repo = tmp_path / "qs"
    shutil.copytree(QUICKSTART / "repo", repo)
    init_repo(repo, {})
    return Cli(repo)


def test_quickstart_failure_and_skip_in_valid_junit(tmp_path: Path) -> None:
    """On the quickstart, aidp ci exits 1 and writes XSD-valid JUnit: the failing check's step
    a <failure> naming the check and its findings as `aidp findings` shows them, the dependant
    <skipped> with the reason, every other step passed."""
    cli = _quickstart(tmp_path)
    junit, summary = tmp_path / "out" / "junit.xml", tmp_path / "out" / "summary.md"
    result = cli("ci", "-p", "3", str(QUICKSTART / "workstreams.yaml"), "--junit", str(junit),
                 "--summary", str(summary))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    text = junit.read_text(encoding="utf-8")
    SCHEMA.validate(text)
    root = ET.fromstring(text)
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("7", "1", "1")
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"docs", "lib", "release", "broken", "after-broken"}
    assert suites["broken"].get("failures") == "1"
    props = {p.get("name"): p.get("value") for p in suites["broken"].iter("property")}
    run_id = props["aidp.run_id"]
    assert props["aidp.branch"] == f"aidp/{run_id}/broken" and props["aidp.attempts"] == "1"

    cases = _cases(text)
    failure = cases["broken/attempt"].find("failure")
    assert failure is not None and failure.get("type") == "failed_permanent"
    assert "grep -q 'fully done' broken/out.txt" in (failure.get("message") or "")
    body = failure.text or ""
    assert "failing check: grep -q 'fully done' broken/out.txt" in body
    findings = cli("findings", run_id, check=True).stdout.splitlines()
    assert findings and all(line in body for line in findings)
    skipped = cases["after-broken/never"].find("skipped")
    assert skipped is not None and skipped.get("message") == "dependency broken failed"
    passed = [k for k, c in cases.items() if len(c) == 0]
    assert sorted(passed) == ["docs/draft", "docs/link-check", "lib/greet-version",
                              "lib/version", "release/notes"]
    assert all(float(c.get("time") or -1) >= 0 for c in cases.values())

    markdown = summary.read_text(encoding="utf-8")
    assert markdown.startswith("## ❌ aidp: 5 passed, 1 failed, 1 skipped")
    assert f"Run `{run_id}` failed" in markdown
    assert "| broken | attempt | ❌ failed (failed_permanent) | 1 |" in markdown
    assert "### ❌ broken/attempt: failed_permanent" in markdown
    assert "- after-broken/never: dependency broken failed" in markdown


def test_all_green_plan_exits_0(tmp_path: Path) -> None:
    """A plan whose steps all complete: exit 0, zero failures and skips, --json says so."""
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "plan.yaml": GREEN_PLAN})
    junit = tmp_path / "junit.xml"
    result = Cli(repo)("ci", "plan.yaml", "--junit", str(junit), "--summary",
                       str(tmp_path / "summary.md"), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert (data["ok"], data["tests"], data["passed"], data["failures"], data["skipped"]) == (
        True, 3, 3, 0, 0)
    assert data["junit"] == str(junit)
    text = junit.read_text(encoding="utf-8")
    SCHEMA.validate(text)
    root = ET.fromstring(text)
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("3", "0", "0")
    assert all(len(c) == 0 for c in root.iter("testcase"))
    assert "step.completed" in result.stderr  # progress lines go to stderr with --json
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").startswith(
        "## ✅ aidp: 3 passed, 0 failed, 0 skipped")


@pytest.mark.parametrize(("plan", "where"), [
    ("version: 1\nworkstreams:\n  - id: a\n    steps:\n      - id: s\n        run: 'true'\n"
     "      - id: s\n        run: 'true'\n", "plan.yaml:7: [a/s] duplicate step id"),
    ("version: 1\nworkstreams:\n  - id: a\n    steps:\n      - id: s\n        tool: nosuch\n"
     "        prompt: hi\n", "plan.yaml:6: [a/s] unknown tool profile 'nosuch'"),
], ids=["file", "settings"])
def test_invalid_plan_exits_2_and_writes_nothing(tmp_path: Path, plan: str, where: str) -> None:
    """An invalid plan (in the file, or against aidp.toml): exit 2, the problem with file, line
    and id, no report written and no run recorded."""
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "plan.yaml": plan})
    result = Cli(repo)("ci", "plan.yaml", "--junit", "junit.xml", "--summary", "summary.md")
    assert result.returncode == 2, result.stdout + result.stderr
    assert where in result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo / "junit.xml").exists() and not (repo / "summary.md").exists()
    assert not (repo / ".aidp" / "aidp.db").exists()


def test_files_or_report_only(tmp_path: Path) -> None:
    """aidp ci needs FILES or --report-only RUN, not both: exit 2 with one error line."""
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "plan.yaml": GREEN_PLAN})
    for args in ((), ("plan.yaml", "--report-only", "01ABC")):
        result = Cli(repo, in_process=True)("ci", *args)
        assert result.returncode == 2 and "one of the two" in result.stderr, args


def test_github_step_summary_gets_the_markdown_appended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With $GITHUB_STEP_SUMMARY set, the Markdown summary is appended to that file (what was
    there stays) and is the same as the --summary file."""
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "plan.yaml": GREEN_PLAN})
    step_summary = tmp_path / "github" / "step_summary.md"
    step_summary.parent.mkdir()
    step_summary.write_text("# earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    summary = tmp_path / "summary.md"
    result = Cli(repo)("ci", "plan.yaml", "--junit", str(tmp_path / "j.xml"), "--summary",
                       str(summary))
    assert result.returncode == 0, result.stderr
    written = summary.read_text(encoding="utf-8")
    assert "| notes | write | ✅ completed | 1 |" in written
    assert step_summary.read_text(encoding="utf-8") == "# earlier step\n" + written


def test_tool_output_with_special_characters_stays_well_formed(tmp_path: Path) -> None:
    """A failing check whose name holds < & quotes and a pipe, and whose output holds NUL, an
    ANSI escape and markup: the JUnit XML is XSD-valid, the forbidden characters are visible
    escapes, the rest comes back as written; the Markdown table stays one row."""
    name = """a <b> & "c" 'd' | e"""
    plan = (
        "version: 1\nworkstreams:\n  - id: w\n    steps:\n      - id: s\n"
        "        run: \"printf 'x\\\\000y\\\\033[31m <&> ]]> \\\\n'\"\n"
        f"        checks: [{{name: {json.dumps(name)},\n"
        "                  run: \"printf 'bad\\\\001 <out> &'; exit 3\"}]\n")
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "plan.yaml": plan})
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    result = Cli(repo)("ci", "plan.yaml", "--junit", str(junit), "--summary", str(summary))
    assert result.returncode == 1, result.stdout + result.stderr
    text = junit.read_text(encoding="utf-8")
    SCHEMA.validate(text)
    case = _cases(text)["w/s"]
    failure = case.find("failure")
    assert failure is not None
    assert f"failing check: {name}" in (failure.text or "")
    assert "a <b> & \"c\"" in (failure.get("message") or "")  # the reason quotes it
    out = case.findtext("system-out") or ""
    assert "x\\x00y\\x1b[31m <&> ]]> " in out and "bad\\x01 <out> &" in out
    row = [line for line in summary.read_text(encoding="utf-8").splitlines()
           if line.startswith("| w | s |")]
    assert len(row) == 1 and row[0].count(" | ") == 5


def test_report_only_writes_the_reports_of_an_existing_run(tmp_path: Path) -> None:
    """aidp ci --report-only RUN writes the reports of a run made by aidp run, runs nothing,
    and exits as that run ended (1: it failed)."""
    cli = _quickstart(tmp_path)
    ran = cli("run", "--json", "-p", "3", str(QUICKSTART / "workstreams.yaml"))
    run_id = json.loads(ran.stdout)["run_id"]
    junit = tmp_path / "junit.xml"
    result = cli("ci", "--report-only", run_id[:10], "--junit", str(junit), "--summary",
                 str(tmp_path / "summary.md"))
    assert result.returncode == 1, result.stdout + result.stderr
    SCHEMA.validate(str(junit))
    cases = _cases(junit.read_text(encoding="utf-8"))
    assert cases["broken/attempt"].find("failure") is not None
    assert cases["after-broken/never"].find("skipped") is not None
    assert json.loads(cli("runs", "--json", check=True).stdout)[0]["run_id"] == run_id
    assert len(json.loads(cli("runs", "--json").stdout)) == 1


def test_sigterm_writes_the_reports_and_exits_143(tmp_path: Path) -> None:
    """SIGTERM (a CI job's time limit) stops aidp ci as Ctrl-C stops aidp run: exit 143, the
    run resumable, and the reports of what ran written, the stopped step <skipped>."""
    plan = ("version: 1\nworkstreams:\n  - id: w\n    steps:\n      - id: slow\n"
            "        run: \"sleep 60\"\n")
    repo = init_repo(tmp_path / "repo", {"README.md": "x\n", "plan.yaml": plan})
    junit = tmp_path / "junit.xml"
    proc = Cli(repo).popen("ci", "plan.yaml", "--junit", str(junit), "--summary",
                           str(tmp_path / "summary.md"))
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "step.started" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "aidp resume" in err and "Traceback" not in err
    text = junit.read_text(encoding="utf-8")
    SCHEMA.validate(text)
    skipped = _cases(text)["w/slow"].find("skipped")
    assert skipped is not None and "not finished" in (skipped.get("message") or "")


# -- the pure report functions ----------------------------------------------------------------

def _attempt(number: int, outcome: str | None, start: float, end: float | None,
             findings: tuple[FindingView, ...] = (), log: str | None = None,
             cost: float | None = None) -> AttemptView:
    return AttemptView(
        id=number, ws_id="w", step_id="s", number=number, kind="first", profile="model",
        adapter="openai", outcome=outcome, failure_class=None, reason=None, exit_code=0,
        signal=None, interrupted=False, started_at=start, finished_at=end, choice_reason=None,
        tool_version=None, input_tokens=100 if cost else 0, output_tokens=10 if cost else 0,
        cost_usd=cost, requests=1, diagnostics_path=None, log_path=log, findings=findings)


def _finding(message: str, code: str | None = None, source: str | None = "tool"
             ) -> FindingView:
    return FindingView(ws_id="w", step_id="s", attempt=1, source=source, detector="python",
                       file="src/a.py", line=3, column=None, code=code, message=message,
                       severity="error", failure_class="permanent", fingerprint=None,
                       retry_after=None)


def _run(status: str, steps: list[StepView]) -> RunView:
    return RunView(run_id="01RUN", status=status, live=False, holder=None, repo="/r",
                   created_at=1000.0, started_at=1000.0, finished_at=1010.0,
                   cancel_requested=status == "cancelled",
                   workstreams=(WorkstreamView(id="w", status="failed", branch="aidp/01RUN/w",
                                               base=None, head=None, merged=None, worktree=None,
                                               reason=None, steps=tuple(steps)),))


def _step(step_id: str, status: str, *, outcome: str | None = None,
          attempts: tuple[AttemptView, ...] = (), reason: str | None = None) -> StepView:
    return StepView(ws_id="w", id=step_id, status=status, attempts=len(attempts),
                    reason=reason, checkpoint=None, next_attempt_at=None, failure_class=None,
                    profile=None, outcome=outcome, attempt_list=attempts)


def test_cancelled_run_leaves_unreached_steps_skipped() -> None:
    """A cancelled run: a step that timed out is a <failure type=timed_out>, one cancelled
    mid-way and one never reached are <skipped> saying so; times and cost add up."""
    view = _run("cancelled", [
        _step("slow", "timeout", outcome="timed_out", reason="timed out after 5s",
              attempts=(_attempt(1, "timed_out", 1001.0, 1004.0, cost=0.25),
                        _attempt(2, "timed_out", 1005.0, 1008.5, cost=0.5))),
        _step("cut", "cancelled", attempts=(_attempt(1, "cancelled", 1008.0, 1009.0),)),
        _step("later", "pending"),
    ])
    report = build_report(view)
    assert [s.verdict for s in report.steps] == [Verdict.FAILED, Verdict.SKIPPED,
                                                 Verdict.SKIPPED]
    assert report.steps[0].duration_s == pytest.approx(7.5)
    assert report.steps[0].cost_usd == pytest.approx(0.75) and not report.ok
    text = junit_xml(report)
    SCHEMA.validate(text)
    cases = _cases(text)
    assert cases["w/slow"].find("failure").get("type") == "timed_out"  # type: ignore[union-attr]
    assert cases["w/cut"].find("skipped").get("message") == (  # type: ignore[union-attr]
        "cut cancelled")
    assert cases["w/later"].find("skipped").get("message") == (  # type: ignore[union-attr]
        "not run: the run ended before this step started")
    props = {p.get("name"): p.get("value") for p in ET.fromstring(text).iter("property")}
    assert props["aidp.cost_usd"] == "0.750000" and props["aidp.attempts"] == "3"
    assert "| w | slow | ❌ timeout (timed_out) | 2 | 7.5 s | $0.7500 (220 tokens) |" in (
        markdown_summary(report))


def test_xml_safe_escapes_exactly_the_forbidden_characters() -> None:
    """xml_safe writes NUL, other C0 controls, surrogates and U+FFFE/U+FFFF as visible escapes
    and keeps TAB, LF, CR, markup characters and any other text as they are."""
    assert xml_safe("a\x00b\x1b[0m\x7f\t\n\r<&>\"'é😀\ud800\ufffe") == (
        "a\\x00b\\x1b[0m\x7f\t\n\r<&>\"'é😀\\ud800\\ufffe")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=st.text(), reason=st.text(), tail=st.text(), code=st.text())
def test_any_tool_text_gives_valid_junit(message: str, reason: str, tail: str,
                                         code: str) -> None:
    """Whatever text findings, reasons and log tails hold, the JUnit XML is XSD-valid and
    the Markdown summary has one table row per step."""
    view = _run("failed", [
        _step("s", "failed", outcome="failed_permanent", reason=reason,
              attempts=(_attempt(1, "failed_permanent", 1001.0, 1002.0,
                                 findings=(_finding(message, code, source=code or None),)),)),
        _step("t", "skipped", reason=reason),
    ])
    report = build_report(view, {("w", "s"): tail})
    SCHEMA.validate(junit_xml(report))
    rows = [line for line in markdown_summary(report).splitlines()
            if line.startswith(("| w | s |", "| w | t |"))]
    assert len(rows) == 2
