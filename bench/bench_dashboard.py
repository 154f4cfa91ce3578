"""The dashboard's run page on a large plan, in Debian's headless Chromium (Playwright).

Measures, for a generated plan of ``--steps`` steps (``--per-ws`` per workstream, workstreams
chained five wide):

* ``drawn_s``: from navigation to the DAG drawn (``#dag[data-drawn]``), and ``draw_ms``, the
  graph's own layout + first render (``#dag[data-draw-ms]``); the floor is the page's first
  contentful paint (the same HTML without the graph), measured in the same load.
* under a storm of ``--rate`` journal events a second for ``--seconds`` (each moving one step to
  another state, written straight into the run's journal as the engine does): the longest gap
  between animation frames (``max_frame_gap_ms``: the page stays responsive when it stays well
  under a few hundred ms), and how long after the storm every node shows its final state
  (``settled_s``).

Usage: ``.venv/bin/python bench/bench_dashboard.py [--steps 1000] [--rate 100] [--seconds 5]``
(needs ``scripts/setup_web.sh`` for the graph library and Chromium at ``/usr/bin/chromium`` or
``$AIDP_CHROMIUM``). Prints and writes JSON (``--out``, default
``bench/results/dashboard.json``). Targets (issue 20): drawn < 2 s for 1,000 steps; responsive
at 100 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import serving

ROOT = Path(__file__).resolve().parents[1]
STATES = ("running", "validating", "completed")


def _plan(steps: int, per_ws: int) -> str:
    lines = ["version: 1", "workstreams:"]
    for w in range(max(1, steps // per_ws)):
        lines += [f"  - id: w{w}", f"    scope: [\"w{w}/**\"]"]
        if w >= 5:
            lines.append(f"    depends_on: [w{w - 5}]")
        lines.append("    steps:")
        for s in range(per_ws):
            dep = f", depends_on: [s{s - 1}]" if s else ""
            lines.append(f"      - {{id: s{s}, run: \"true\"{dep}}}")
    return "\n".join(lines) + "\n"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
                        "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"})


def _setup(repo: Path, steps: int, per_ws: int) -> tuple[str, str]:
    from aidp.app import commands
    from aidp.app.context import AppContext
    from aidp.app.tokens import create_token
    from aidp.model.loader import load_plan

    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "plan.yaml").write_text(_plan(steps, per_ws))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "plan")
    with AppContext.open(repo) as ctx:
        ctx.ensure_aidp_dir()
        plan = load_plan([repo / "plan.yaml"], repo=repo)
        run_id = commands.create_run(ctx, plan, parallel=4, by="bench")
        token = create_token(ctx, "bench", "read").token
    return run_id, token


def _storm(repo: Path, run_id: str, rate: float, seconds: float,
           final: dict[str, str]) -> None:
    """Move steps through states, ``rate`` journal events a second, for ``seconds``."""
    from aidp.app.context import AppContext

    with AppContext.open(repo) as ctx:
        store = ctx.store()
        rows = [(r.ws_id, r.step_id) for r in store.steps(run_id)]
        start = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate)
            while n < due:
                ws, step = rows[n % len(rows)]
                state = STATES[(n // len(rows)) % len(STATES)]
                with store.write() as tx:
                    tx.update_step(run_id, ws, step, status=state)
                    tx.event(run_id, f"step.{'started' if state == 'running' else state}",
                             ws, step)
                final[f"{ws}/{step}"] = state
                n += 1
            time.sleep(0.002)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--per-ws", type=int, default=20)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dashboard.json")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        run_id, token = _setup(repo, args.steps, args.per_ws)
        serve, api = serving.start(
            [sys.executable, "-c", "import sys; from aidp.cli.main import main; "
             "main(sys.argv[1:])", "serve", "--port", "0"], repo, None, Path(tmp) / "serve.log")
        try:
            result = _measure(sync_playwright, api.removesuffix("/api/v1"), token, run_id,
                              repo, args)
        finally:
            serving.stop(serve)
    result.update(steps=args.steps, per_ws=args.per_ws, rate=args.rate, seconds=args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def _measure(sync_playwright: Any, base: str, token: str, run_id: str, repo: Path,
             args: argparse.Namespace) -> dict[str, Any]:
    chromium = os.environ.get("AIDP_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url("**/runs")
        page.goto(f"{base}/runs/{run_id}", wait_until="commit")
        page.wait_for_selector("#dag[data-drawn]", timeout=120_000)
        drawn_ms = page.evaluate("performance.now()")
        fcp = page.evaluate("(performance.getEntriesByType('paint').find("
                            "e => e.name === 'first-contentful-paint') || {}).startTime || null")
        draw_ms = float(page.get_attribute("#dag", "data-draw-ms") or "nan")
        page.evaluate("""() => { window.__gaps = []; let last = performance.now();
            const tick = (t) => { window.__gaps.push(t - last); last = t;
              requestAnimationFrame(tick); }; requestAnimationFrame(tick); }""")
        final: dict[str, str] = {}
        storm = threading.Thread(target=_storm, args=(repo, run_id, args.rate, args.seconds,
                                                      final))
        storm.start()
        while storm.is_alive():
            page.wait_for_timeout(100)
        storm.join()
        ended = time.monotonic()
        expected = json.dumps(final)
        page.wait_for_function("""(want) => { want = JSON.parse(want);
            return Object.keys(want).every(id => { const el = document.querySelector(
              '#dag-nodes li[data-step="' + CSS.escape(id) + '"]');
              return el && el.dataset.state === want[id]; }); }""", arg=expected,
            timeout=60_000)
        settled = time.monotonic() - ended
        gaps = page.evaluate("window.__gaps")
        browser.close()
    return {"drawn_s": round(drawn_ms / 1000, 3), "draw_ms": draw_ms,
            "floor_first_paint_s": round(fcp / 1000, 3) if fcp else None,
            "max_frame_gap_ms": round(max(gaps), 1) if gaps else None,
            "p95_frame_gap_ms": round(sorted(gaps)[int(len(gaps) * 0.95)], 1) if gaps else None,
            "settled_s": round(settled, 3), "console_errors": errors,
            "events": len(final) and int(args.rate * args.seconds)}


if __name__ == "__main__":
    sys.exit(main())
