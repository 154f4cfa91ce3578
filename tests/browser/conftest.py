"""Real Chromium (Debian's, through Playwright) against the real ``aidp serve``.

* ``chromium``: one headless browser per test process (session scope; each xdist worker has
  its own), launched from ``/usr/bin/chromium`` (or ``$AIDP_CHROMIUM``) -- Playwright's own
  browsers are never downloaded. Without it the tests skip with the reason, or fail when
  ``AIDP_REQUIRE_BROWSER=1`` (``.ci/run`` sets it). ``scripts/setup_browser.sh`` installs it.
* ``dashboard``: ``aidp serve --port 0`` in a scratch git repository (SQLite), with a token per
  scope (the API tests' :func:`tests.api.conftest.start_served`); one per test module.
* ``browse``: a fresh browser context (no cookies) whose pages are all watched: every console
  error, uncaught page error and failed request of a page served by aidp fails the test at its
  end. ``browse.shot(label)`` keeps a screenshot of the current page, numbered by step, under
  ``$AIDP_TEST_ARTIFACTS/<test>/`` (else under the test's ``tmp_path``); one more is taken at
  the end of every test.
* ``signed_in``: a page of ``browse`` signed in through ``/login`` with the operate token.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.api.conftest import Served, start_served
from tests.helpers import Cli, init_repo

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

# Debian's chromium; $AIDP_CHROMIUM names another build (as bench/ reads it).
CHROMIUM = Path(os.environ.get("AIDP_CHROMIUM", "/usr/bin/chromium"))
# Playwright's default is 30 s; a page of this dashboard that needs more than 15 is broken.
ACTION_TIMEOUT_MS = 15_000


def _unavailable() -> str | None:
    """None if Playwright and Debian's chromium are here, else why not."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (the dev extra)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: run scripts/setup_browser.sh"
    return None


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Headless Debian chromium through Playwright's sync API."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("AIDP_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (AIDP_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Dashboard:
    """A running ``aidp serve``: its origin (``http://127.0.0.1:PORT``), the API and the CLI."""

    served: Served

    @property
    def origin(self) -> str:
        return self.served.url.split("/api/", 1)[0]

    @property
    def cli(self) -> Cli:
        return self.served.cli

    def token(self, scope: str) -> str:
        return self.served.tokens[scope]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """``aidp serve`` on a scratch repository with aidp's default database (SQLite in
    ``.aidp/``), shared by the tests of a module (starting it and making the tokens costs
    5-8 s here); each test commits its own workstream file and runs it."""
    repo = init_repo(tmp_path_factory.mktemp("dashboard") / "repo")
    # The tokens are made in this process (a CLI start each costs seconds on a loaded box);
    # the service itself is the real `aidp serve` process.
    server = start_served(Cli(repo, in_process=True))
    try:
        yield Dashboard(server)
    finally:
        server.stop()


def _artifact_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    root = os.environ.get("AIDP_TEST_ARTIFACTS")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
    where = Path(root) / name if root else tmp_path / "screenshots"
    shutil.rmtree(where, ignore_errors=True)  # the screenshots of this run of the test only
    where.mkdir(parents=True)
    return where


@dataclass
class Browse:
    """A watched browser context: pages, console errors, screenshots."""

    context: BrowserContext
    origin: str
    shots_dir: Path
    problems: list[str] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)
    page: Page | None = None

    def watch(self, page: Page) -> Page:
        """Record the console errors, page errors and failed requests of ``page``."""
        def on_console(message: Any) -> None:
            if message.type != "error":
                return
            where = (message.location or {}).get("url", "")
            # Chromium logs a page's own error status (a 401 login answer, a 404 page) as
            # "Failed to load resource": the test asserts that status itself.
            if message.text.startswith("Failed to load resource") and where == page.url:
                return
            self.problems.append(f"console error on {page.url}: {message.text} ({where})")

        def on_page_error(error: Any) -> None:
            self.problems.append(f"uncaught error on {page.url}: {error}")

        def on_failed(request: Any) -> None:
            # A page left while its event stream is open aborts that request: not a fault.
            if request.url.startswith(self.origin) and "ERR_ABORTED" not in (
                    request.failure or ""):
                self.problems.append(f"request failed: {request.url}: {request.failure}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        page.on("requestfailed", on_failed)
        page.set_default_timeout(ACTION_TIMEOUT_MS)
        return page

    def new_page(self) -> Page:
        """A new watched page; the last one opened is ``self.page``."""
        self.page = self.watch(self.context.new_page())
        return self.page

    def shot(self, label: str, page: Page | None = None) -> Path:
        """Keep a full-page screenshot named ``NN-label.png``; returns its path."""
        target = page or self.page
        assert target is not None, "no page open"
        safe = re.sub(r"[^\w.-]+", "_", label)
        path = self.shots_dir / f"{len(self.shots) + 1:02d}-{safe}.png"
        target.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path


@pytest.fixture
def browse(chromium: Browser, dashboard: Dashboard, request: pytest.FixtureRequest,
           tmp_path: Path) -> Iterator[Browse]:
    """A fresh context on ``dashboard``; fails the test on any console or page error."""
    context = chromium.new_context(base_url=dashboard.origin, viewport={"width": 1280,
                                                                        "height": 900})
    watched = Browse(context, dashboard.origin, _artifact_dir(request, tmp_path))
    try:
        yield watched
        if watched.page is not None and not watched.page.is_closed():
            watched.shot("end")
    finally:
        context.close()
    if watched.problems:
        pytest.fail("the browser reported:\n" + "\n".join(watched.problems), pytrace=False)


def sign_in(page: Page, token: str) -> None:
    """Sign in through the login form (field ``token``); waits until it has left ``/login``."""
    page.goto("/login")
    page.fill("input[name=token]", token)
    with page.expect_navigation():
        page.locator("form").filter(has=page.locator("input[name=token]")).locator(
            "[type=submit]").click()
    assert "/login" not in page.url, f"sign-in failed: still on {page.url}"


@pytest.fixture
def signed_in(browse: Browse, dashboard: Dashboard) -> Page:
    """A watched page signed in with the operate token."""
    page = browse.new_page()
    sign_in(page, dashboard.token("operate"))
    return page
