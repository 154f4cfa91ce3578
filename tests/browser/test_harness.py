"""The browser harness itself: Debian's chromium answers, and a watched page reports what the
dashboard tests must fail on (console errors, uncaught errors) and keeps numbered screenshots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import CHROMIUM, Browse

ROOT = Path(__file__).resolve().parents[2]

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser


def test_the_browser_is_debians_chromium(chromium: Browser) -> None:
    """The tests drive /usr/bin/chromium (no Playwright download), headless."""
    assert CHROMIUM.exists()
    page = chromium.new_page()
    try:
        assert "HeadlessChrome" in page.evaluate("navigator.userAgent")
    finally:
        page.close()


def test_a_watched_page_reports_console_and_page_errors(chromium: Browser,
                                                        tmp_path: Path) -> None:
    """console.error and an uncaught exception are recorded; console.log is not."""
    context = chromium.new_context()
    try:
        watched = Browse(context, "http://127.0.0.1:1", tmp_path)
        page = watched.new_page()
        page.set_content("<p>quiet</p><script>console.log('fine')</script>")
        assert watched.problems == []
        page.set_content("<script>console.error('boom-console')</script>"
                         "<script>throw new Error('boom-uncaught')</script>")
        page.wait_for_function("true")
        text = "\n".join(watched.problems)
        assert "boom-console" in text and "boom-uncaught" in text, text
        first, second = watched.shot("a step"), watched.shot("a step")
        assert [first.name, second.name] == ["01-a_step.png", "02-a_step.png"]
        assert first.stat().st_size > 0
    finally:
        context.close()


def _harness_without_browser(require: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIDP_CHROMIUM": "/nonexistent/chromium"}
    env.pop("AIDP_REQUIRE_BROWSER", None)
    if require:
        env["AIDP_REQUIRE_BROWSER"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-rs", f"{__file__}::test_the_browser_is_debians_chromium"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110)


@pytest.mark.slow  # two child pytest runs
def test_a_missing_browser_skips_or_fails_when_required() -> None:
    """Without chromium the browser tests skip saying why; AIDP_REQUIRE_BROWSER=1 fails them."""
    skipped = _harness_without_browser(require=False)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "1 skipped" in skipped.stdout and "/nonexistent/chromium is missing" in skipped.stdout
    required = _harness_without_browser(require=True)
    assert required.returncode == 1, required.stdout + required.stderr
    assert "AIDP_REQUIRE_BROWSER=1" in required.stdout
