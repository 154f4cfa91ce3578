"""Drawing a 1,000-step plan's DAG in headless Chromium: cytoscape + dagre against mermaid, then
the dashboard's own run page under a stream of events.

Run: ``.venv/bin/python bench/bench_dag.py [--layers 10] [--width 10] [--steps 10] [--reps 3]
[--no-dashboard | --no-libraries] [--watch-s 10] [--out FILE]``; prints a table and JSON.

**Libraries** (issue 20: "measure cytoscape + dagre against mermaid on a 1,000-node plan, and
choose"). The plan is ``layers x width`` workstreams of ``steps`` chained steps (default
10 x 10 x 10 = 1,000 steps); every workstream of layer *k > 0* depends on two of layer *k - 1*
(an edge from their last step to its first): 900 chain edges + 180 cross edges. Two static
harness pages, served from 127.0.0.1 by this script with the libraries of ``bench/web/``
(``npm ci`` there is run here when ``node_modules`` is missing; setup never installs mermaid),
each draw the same graph, top to bottom, in a fresh page of Debian's headless chromium
(Playwright, ``executable_path=/usr/bin/chromium``):

* **cytoscape**: ``cytoscape({elements, layout: {name: "dagre"}})`` (cytoscape-dagre), time
  from the call to ``layoutstop`` plus two animation frames (the canvas painted);
* **mermaid**: ``mermaid.render`` of a ``flowchart TD`` text (its own dagre layout, SVG), the
  SVG inserted, plus two animation frames.

Each time is ``performance.now()`` inside the page, scripts already loaded; the page's load
(parse of the library) is reported beside it. Median of ``--reps`` fresh pages.

**Dashboard** (the issue's target: "a 1,000-step plan renders its DAG in < 2 s and stays
responsive while 100 events/s arrive"): on a generated repository, ``aidp serve --port 0`` runs
the same plan behind one ``manual`` gate through ``POST /runs`` (steps ``--command``, by
default a one-line append to the workstream's file, ``--parallel`` at once, default 4); the
signed-in browser opens ``/runs/{id}`` at once and measures

* ``dag_ms``: navigation start to the DAG drawn -- the page's ``#dag`` says it drew every step
  (``data-drawn``, set by ``run.js`` after the layout) and holds cytoscape's canvas -- then two
  frames;
* then the gate is approved (through the API) and, during ``--watch-s`` seconds of the run:
  the events the server journaled per second (from ``GET /runs/{id}/events``), the
  ``data-state`` changes seen in the page per second, the longest main-thread task
  (``PerformanceObserver`` ``longtask``: tasks over 50 ms), the total time in long tasks, and
  the largest gap between animation frames (what a user feels as jank: an input waits at most
  that long for paint).

Figures, never asserted; the target is printed beside them.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import serving

ROOT = Path(__file__).resolve().parent.parent
WEB = Path(__file__).resolve().parent / "web"
CHROMIUM = os.environ.get("AIDP_CHROMIUM", "/usr/bin/chromium")
AIDP = str(Path(sys.executable).with_name("aidp"))
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
TARGET_DAG_MS = 2000.0


# -- the plan ----------------------------------------------------------------------------------


def plan(layers: int, width: int, steps: int, command: str = "true",
         gate: bool = False) -> dict[str, Any]:
    """A workstream file (JSON) of ``layers x width`` workstreams of ``steps`` chained steps;
    ``command`` may name ``{ws}`` and ``{step}``. With ``gate``, a first workstream ``gate`` of
    one ``manual`` step holds the whole plan until it is approved."""
    items: list[dict[str, Any]] = []
    if gate:
        items.append({"id": "gate", "scope": ["gate/**"],
                      "steps": [{"id": "gate", "tool": "manual", "prompt": "Go."}]})
    for layer in range(layers):
        for i in range(width):
            name = f"l{layer}w{i}"
            ws: dict[str, Any] = {
                "id": name, "scope": [f"{name}/**"],
                "steps": [{"id": f"s{j}", "run": command.format(ws=name, step=f"s{j}"),
                           **({"depends_on": [f"s{j - 1}"]} if j else {})}
                          for j in range(steps)]}
            if layer:
                ws["depends_on"] = sorted({f"l{layer - 1}w{i}", f"l{layer - 1}w{(i + 3) % width}"})
            elif gate:
                ws["depends_on"] = ["gate"]
            items.append(ws)
    return {"version": 1, "workstreams": items}


def graph(spec: dict[str, Any]) -> dict[str, list[Any]]:
    """Nodes ``ws/step`` and edges of the plan's step DAG (a cross edge: last step -> first)."""
    nodes: list[str] = []
    edges: list[list[str]] = []
    for ws in spec["workstreams"]:
        ids = [f"{ws['id']}/{s['id']}" for s in ws["steps"]]
        nodes += ids
        edges += [[a, b] for a, b in itertools.pairwise(ids)]
        for dep in ws.get("depends_on", []):
            last = next(w for w in spec["workstreams"] if w["id"] == dep)["steps"][-1]["id"]
            edges.append([f"{dep}/{last}", ids[0]])
    return {"nodes": nodes, "edges": edges}


# -- the harness pages -------------------------------------------------------------------------

_COMMON = """<!doctype html><meta charset="utf-8"><title>{title}</title>
<style>html,body{{margin:0;height:100%}}#g{{width:1280px;height:900px;overflow:auto}}</style>
<div id="g"></div>
{scripts}
<script>
const frames = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
window.bench = (async () => {{
  const loaded = performance.now();
  const data = await (await fetch("graph.json")).json();
  const t0 = performance.now();
  await draw(data);
  await frames();
  return {{loaded_ms: loaded, draw_ms: performance.now() - t0}};
}})();
</script>
"""

_CYTOSCAPE = """
<script src="node_modules/cytoscape/dist/cytoscape.min.js"></script>
<script src="node_modules/dagre/dist/dagre.min.js"></script>
<script src="node_modules/cytoscape-dagre/cytoscape-dagre.js"></script>
<script>
// Longest-path layering in O(nodes + edges): rank = longest path from a source, x = order of
// arrival in the rank. No crossing minimisation (what dagre spends its time on).
function layered(data) {
  const preds = new Map(data.nodes.map(id => [id, []]));
  for (const [s, t] of data.edges) preds.get(t).push(s);
  const rank = new Map(), seen = new Map();
  const rankOf = id => {
    if (rank.has(id)) return rank.get(id);
    let r = 0;
    for (const p of preds.get(id)) r = Math.max(r, rankOf(p) + 1);
    rank.set(id, r);
    return r;
  };
  const positions = {};
  for (const id of data.nodes) {
    const r = rankOf(id), x = seen.get(r) || 0;
    seen.set(r, x + 1);
    positions[id] = {x: x * 60, y: r * 50};
  }
  return positions;
}
function draw(data) {
  return new Promise(resolve => {
    const compound = %s;  // a parent node per workstream, as the dashboard draws them
    const parents = compound ? [...new Set(data.nodes.map(id => id.split("/")[0]))] : [];
    const parentOf = id => compound ? {parent: "ws:" + id.split("/")[0]} : {};
    const elements = parents.map(id => ({data: {id: "ws:" + id, label: id}}))
      .concat(data.nodes.map(id => ({data: {id, label: id, ...parentOf(id)}})))
      .concat(data.edges.map(([s, t], i) => ({data: {id: "e" + i, source: s, target: t}})));
    const layout = %s, [NODE, EDGE] = %s;
    layout.stop = () => resolve();
    cytoscape({
      container: document.getElementById("g"), elements,
      style: [{selector: "node", style: {label: "data(label)", "font-size": 8,
                                         "background-color": "#888", ...NODE}},
              {selector: "edge", style: {width: 1, "curve-style": "bezier",
                                         "target-arrow-shape": "triangle", ...EDGE}}],
      layout,
    });
  });
}
</script>"""

# Style overrides (node, edge): none; or straight edges without arrows and labels drawn only
# when legible (a 1,000-node plan fitted into 1280 px is zoomed far out).
_PLAIN = "[{}, {}]"
_LEAN = ('[{"min-zoomed-font-size": 8}, '
         '{"curve-style": "haystack", "target-arrow-shape": "none"}]')

# name -> the harness page: the variants of cytoscape differ only in their layout.
VARIANTS = {
    "cytoscape": _COMMON.format(
        title="cytoscape + dagre",
        scripts=_CYTOSCAPE % ("false", '{name: "dagre", rankDir: "TB"}', _PLAIN)),
    "cytoscape-compound": _COMMON.format(
        title="cytoscape + dagre, a parent node per workstream",
        scripts=_CYTOSCAPE % ("true", '{name: "dagre", rankDir: "TB"}', _PLAIN)),
    "cytoscape-longest-path": _COMMON.format(
        title="cytoscape + dagre, longest-path ranker",
        scripts=_CYTOSCAPE % ("false", '{name: "dagre", rankDir: "TB", ranker: "longest-path"}',
                              _PLAIN)),
    "cytoscape-preset": _COMMON.format(
        title="cytoscape, layered in the page",
        scripts=_CYTOSCAPE % ("false", '{name: "preset", positions: layered(data)}', _PLAIN)),
    "cytoscape-preset-lean": _COMMON.format(
        title="cytoscape, layered in the page, lean style",
        scripts=_CYTOSCAPE % ("false", '{name: "preset", positions: layered(data)}', _LEAN)),
}

MERMAID = _COMMON.format(title="mermaid", scripts="""
<script src="node_modules/mermaid/dist/mermaid.min.js"></script>
<script>
mermaid.initialize({startOnLoad: false, maxTextSize: 10000000, maxEdges: 100000,
                    flowchart: {htmlLabels: false}, securityLevel: "strict"});
async function draw(data) {
  const key = id => id.replace(/[^A-Za-z0-9]/g, "_");
  const lines = ["flowchart TD"];
  for (const id of data.nodes) lines.push(`  ${key(id)}["${id}"]`);
  for (const [s, t] of data.edges) lines.push(`  ${key(s)} --> ${key(t)}`);
  const {svg} = await mermaid.render("dag", lines.join("\\n"));
  document.getElementById("g").innerHTML = svg;
}
</script>""")


class _Handler(http.server.SimpleHTTPRequestHandler):
    pages: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path.split("?")[0])
        if body is None:
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if self.path.endswith(".json")
                         else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def ensure_libraries() -> None:
    """``npm ci`` in ``bench/web`` when its ``node_modules`` is missing (mermaid is bench-only)."""
    if (WEB / "node_modules" / "mermaid" / "dist" / "mermaid.min.js").exists():
        return
    print("bench_dag: npm ci in bench/web (mermaid, cytoscape, dagre) ...", flush=True)
    subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=WEB, check=True)


def serve_harness(data: dict[str, Any]) -> tuple[http.server.ThreadingHTTPServer, str]:
    pages = {**VARIANTS, "mermaid": MERMAID}
    _Handler.pages = {f"/{name}.html": html.encode() for name, html in pages.items()}
    _Handler.pages["/graph.json"] = json.dumps(data).encode()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(WEB)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def measure_library(browser: Any, url: str, reps: int) -> dict[str, Any]:
    samples = []
    for _ in range(reps):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.goto(url)
        result = page.evaluate("window.bench", None)
        shown = page.evaluate("document.querySelectorAll('#g canvas, #g svg').length")
        page.close()
        if errors or not shown:
            raise SystemExit(f"{url}: nothing drawn; page errors: {errors}")
        samples.append(result)
    draw = [s["draw_ms"] for s in samples]
    return {"draw_ms": statistics.median(draw), "draw_samples_ms": draw,
            "load_ms": statistics.median(s["loaded_ms"] for s in samples)}


# -- the dashboard -----------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, **GIT_ENV})


class Service:
    """``aidp serve --port 0`` on a repository holding the plan, with an operate token."""

    def __init__(self, root: Path, spec: dict[str, Any]) -> None:
        self.repo = root / "repo"
        self.repo.mkdir()
        _git(self.repo, "init", "-q", "-b", "main")
        (self.repo / "workstreams").mkdir()
        (self.repo / "workstreams" / "dag.json").write_text(json.dumps(spec, indent=1))
        (self.repo / "README.md").write_text("bench\n")
        _git(self.repo, "add", "-A")
        _git(self.repo, "commit", "-q", "-m", "bench plan")
        env = {**os.environ, **GIT_ENV, "PYTHONPATH": str(ROOT / "src")}
        env.pop("AIDP_DATABASE_URL", None)
        self.env = env
        out = subprocess.run([AIDP, "tokens", "create", "bench", "--scope", "operate", "--json"],
                             cwd=self.repo, env=env, check=True, capture_output=True,
                             text=True).stdout
        self.token = str(json.loads(out)["token"])
        self.log = root / "serve.log"
        self.proc, self.api = serving.start([AIDP, "serve", "--port", "0"], self.repo, env,
                                            self.log)
        self.origin = self.api.split("/api/", 1)[0]

    def request(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        answer = httpx.request(method, self.api + path, json=body, timeout=60,
                               headers={"Authorization": f"Bearer {self.token}"})
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        serving.stop(self.proc)


_WATCH = """async (seconds) => {
  const longtasks = [];
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) longtasks.push(e.duration);
  }).observe({type: "longtask", buffered: false});
  let changes = 0;
  new MutationObserver(list => { changes += list.length; })
    .observe(document.body, {subtree: true, attributes: true, attributeFilter: ["data-state"]});
  let last = performance.now(), worst = 0, frames = 0;
  const end = last + seconds * 1000;
  await new Promise(resolve => {
    const tick = now => {
      worst = Math.max(worst, now - last); last = now; frames++;
      if (now < end) requestAnimationFrame(tick); else resolve();
    };
    requestAnimationFrame(tick);
  });
  return {state_changes: changes, frames, max_frame_gap_ms: worst,
          longtasks: longtasks.length, longest_task_ms: Math.max(0, ...longtasks),
          longtask_total_ms: longtasks.reduce((a, b) => a + b, 0)};
}"""

_DRAWN = """(steps) => {
  const dag = document.querySelector("#dag[data-drawn]");
  return !!dag && Number(dag.getAttribute("data-drawn")) >= steps
    && !!dag.querySelector("canvas");
}"""


def measure_dashboard(browser: Any, spec: dict[str, Any], watch_s: float,
                      parallel: int) -> dict[str, Any]:
    steps = sum(len(ws["steps"]) for ws in spec["workstreams"])  # the gate included
    with tempfile.TemporaryDirectory(prefix="aidp-bench-dag-") as tmp:
        service = Service(Path(tmp), spec)
        try:
            context = browser.new_context(base_url=service.origin,
                                          viewport={"width": 1280, "height": 900})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto("/login")
            page.fill("input[name=token]", service.token)
            with page.expect_navigation():
                page.locator("form").filter(has=page.locator("input[name=token]")).locator(
                    "[type=submit]").click()
            run_id = service.request("POST", "/runs", {"files": ["workstreams/dag.json"],
                                                       "parallel": parallel})["run_id"]
            page.goto(f"/runs/{run_id}", wait_until="commit")
            page.wait_for_function(_DRAWN, arg=steps, timeout=60_000, polling="raf")
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                          "requestAnimationFrame(r)))")
            dag_ms = page.evaluate("performance.now()")
            _wait_gate(service, run_id)
            service.request("POST", f"/runs/{run_id}/steps/gate/gate/approve")
            events_before = _event_count(service, run_id)
            began = time.perf_counter()
            watched = page.evaluate(_WATCH, watch_s)
            elapsed = time.perf_counter() - began
            events = _event_count(service, run_id) - events_before
            context.close()
        finally:
            service.stop()
    if errors:
        print(f"bench_dag: page errors on the run page: {errors[:3]}", file=sys.stderr)
    return {"steps": steps, "dag_ms": dag_ms, "watch_s": elapsed,
            "events_per_s": events / elapsed,
            "state_changes_per_s": watched["state_changes"] / elapsed, **watched,
            "page_errors": errors[:5]}


def _wait_gate(service: Service, run_id: str) -> None:
    """Wait until the run stops at its gate (the plan does not move before that)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        step = service.request("GET", f"/runs/{run_id}/steps/gate/gate")
        if step.get("status", step.get("state")) == "awaiting_approval":
            return
        time.sleep(0.2)
    raise SystemExit(f"run {run_id} never reached its gate: {step}")


def _event_count(service: Service, run_id: str) -> int:
    """How many events the run has journaled so far (paging through ``/runs/{id}/events``)."""
    count, after = 0, 0
    while True:
        items = service.request("GET", f"/runs/{run_id}/events?limit=1000&after={after}")
        count += len(items)
        if len(items) < 1000:
            return count
        after = int(items[-1]["id"])


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--watch-s", type=float, default=10.0)
    parser.add_argument("--no-dashboard", action="store_true",
                        help="only the two libraries on the harness pages")
    parser.add_argument("--command", default="mkdir -p {ws} && echo {step} >> {ws}/log.txt",
                        help="what each step of the dashboard's run does")
    parser.add_argument("--parallel", type=int, default=4,
                        help="steps at once in the dashboard's run (events per second)")
    parser.add_argument("--only", action="append", choices=sorted(VARIANTS),
                        help="only these cytoscape variants (and mermaid); repeatable")
    parser.add_argument("--no-libraries", action="store_true",
                        help="only the dashboard's run page")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    ensure_libraries()
    spec = plan(args.layers, args.width, args.steps)
    data = graph(spec)
    report: dict[str, Any] = {"nodes": len(data["nodes"]), "edges": len(data["edges"]),
                              "loadavg_before": os.getloadavg()[0]}
    server, base = serve_harness(data)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        report["chromium"] = browser.version
        try:
            for name in () if args.no_libraries else (*(args.only or VARIANTS), "mermaid"):
                result = measure_library(browser, f"{base}/{name}.html", args.reps)
                report[name] = result
                print(f"{name:22} {len(data['nodes'])} nodes, {len(data['edges'])} edges: "
                      f"draw {result['draw_ms']:.0f} ms (median of {args.reps}: "
                      f"{', '.join(f'{s:.0f}' for s in result['draw_samples_ms'])}); "
                      f"scripts loaded at {result['load_ms']:.0f} ms", flush=True)
            if not args.no_libraries:
                report["mermaid_over_cytoscape"] = (report["mermaid"]["draw_ms"]
                                                    / report["cytoscape"]["draw_ms"])
                print(f"mermaid / cytoscape: x{report['mermaid_over_cytoscape']:.2f}",
                      flush=True)
            if not args.no_dashboard:
                spec_run = plan(args.layers, args.width, args.steps, command=args.command,
                                gate=True)
                dash = measure_dashboard(browser, spec_run, args.watch_s, args.parallel)
                report["dashboard"] = dash
                print(f"dashboard  /runs/{{id}} of {dash['steps']} steps: DAG drawn "
                      f"{dash['dag_ms']:.0f} ms after navigation "
                      f"(x{dash['dag_ms'] / TARGET_DAG_MS:.2f} of the 2 s target); "
                      f"over {dash['watch_s']:.1f} s: "
                      f"{dash['events_per_s']:.0f} events/s journaled, "
                      f"{dash['state_changes_per_s']:.0f} data-state changes/s in the page, "
                      f"{dash['longtasks']} long tasks (longest {dash['longest_task_ms']:.0f} ms, "
                      f"total {dash['longtask_total_ms']:.0f} ms), largest frame gap "
                      f"{dash['max_frame_gap_ms']:.0f} ms", flush=True)
        finally:
            browser.close()
            server.shutdown()
    report["loadavg_after"] = os.getloadavg()[0]
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
