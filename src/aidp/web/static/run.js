// The run page, live: draws the DAG (cytoscape + dagre, when installed), follows the run's
// events (server-sent events on the session cookie, resumed with Last-Event-ID by the
// browser) and, at most a few times a second, reads /runs/ID/state to recolour the graph's
// nodes and update the table's rows (data-state) and badges without a reload.
// Every text from the server goes in through textContent: nothing is parsed as HTML.
(function () {
  "use strict";
  var holder = document.getElementById("dag") || document.getElementById("dag-missing");
  if (!holder) { return; }
  var runId = holder.getAttribute("data-run");
  var after = holder.getAttribute("data-after") || "";
  var status = document.getElementById("live-status");
  var eventsList = document.getElementById("live-events");
  var mirror = document.getElementById("dag-nodes");
  var base = "/runs/" + encodeURIComponent(runId);
  var STATES = ["pending", "running", "validating", "completed", "failed", "retrying",
    "circuit_open", "timeout", "skipped", "cancelled", "awaiting_approval", "interrupted"];
  var ENDED = { completed: true, failed: true, cancelled: true };
  var cy = null;
  var refreshTimer = null;
  var refreshing = false;
  var again = false;

  function say(text) { if (status) { status.textContent = text; } }

  // Colours of the states, read from the CSS once per theme (reading computed styles
  // between DOM changes would force a style recalculation each time).
  var colours = {};

  function colour(state) {
    if (!colours[state]) {
      var value = getComputedStyle(document.documentElement).getPropertyValue("--s-" + state);
      colours[state] = (value || "").trim() || "#8c959f";
    }
    return colours[state];
  }

  // The style. `lean` (large plans): straight edges without arrows (haystack: no per-edge
  // curve or arrow geometry), labels only when legible (min-zoomed-font-size: a 1,000-step
  // plan fitted into the page is zoomed too far out for any), workstream label nodes.
  var lean = false;

  function graphStyle(isLean) {
    if (isLean !== undefined) { lean = isLean; }
    var fg = getComputedStyle(document.body).color;
    var rules = [
      { selector: "node", style: { "label": "data(label)", "font-size": 11, "color": fg,
        "text-valign": "bottom", "text-margin-y": 4, "width": 22, "height": 22,
        "min-zoomed-font-size": 8,
        "background-color": colour("pending"), "border-width": 2,
        "border-opacity": 0 } },
      { selector: ":parent", style: { "background-opacity": 0.06, "border-width": 1,
        "border-color": colour("pending"), "text-valign": "top", "font-weight": "bold",
        "shape": "round-rectangle", "padding": 12 } },
      { selector: "edge", style: lean
        ? { "width": 1, "curve-style": "haystack", "haystack-radius": 0,
          "line-color": colour("skipped") }
        : { "width": 1.5, "curve-style": "bezier",
          "target-arrow-shape": "triangle", "line-color": colour("skipped"),
          "target-arrow-color": colour("skipped") } },
      { selector: "node:selected", style: { "border-color": colour("running"),
        "border-opacity": 1 } }
    ];
    STATES.forEach(function (s) {
      rules.push({ selector: "node[state = \"" + s + "\"]",
        style: { "background-color": colour(s) } });
      if (!lean) {
        rules.push({ selector: ":parent[state = \"" + s + "\"]",
          style: { "border-color": colour(s), "background-color": colour(s) } });
      }
    });
    if (lean) {
      rules.push({ selector: "node.ws-label", style: { "background-opacity": 0, "width": 1,
        "height": 1, "text-valign": "center", "text-halign": "right", "text-margin-y": 0,
        "font-weight": "bold", "font-size": 16, "events": "no" } });
    }
    return rules;
  }

  var mirrorIndex = {};

  function mirrorNode(id, state) {
    if (!mirror) { return; }
    var item = mirrorIndex[id];
    if (!item) {
      item = document.createElement("li");
      item.setAttribute("data-step", id);
      item.textContent = id;
      mirror.appendChild(item);
      mirrorIndex[id] = item;
    } else if (item.getAttribute("data-state") === state) {
      return;
    }
    item.setAttribute("data-state", state);
    item.setAttribute("data-color", colour(state));
  }

  // Layout. A small plan is laid out by dagre as one compound graph (a box per workstream).
  // A large one (dagre takes seconds from a few hundred nodes on, most of it ordering nodes
  // to avoid crossings) is placed here in linear time and drawn with cytoscape's `preset`
  // layout: a step's column is its longest path from a root over every edge (cross-workstream
  // ones included); each workstream keeps a band of rows, bands reused once a workstream's
  // columns are over; no parent boxes (a label node at each band's start instead).
  var NODE = 22, GAP_X = 40, GAP_Y = 14, WHOLE_DAGRE_MAX = 100;

  function layered(data) {
    var n = data.steps.length, index = {}, rank = new Array(n), indeg = new Array(n);
    var succs = new Array(n), i;
    for (i = 0; i < n; i += 1) { index[data.steps[i].id] = i; rank[i] = 0; indeg[i] = 0; succs[i] = []; }
    data.edges.forEach(function (e) {
      var a = index[e[0]], b = index[e[1]];
      if (a !== undefined && b !== undefined) { succs[a].push(b); indeg[b] += 1; }
    });
    var queue = [], head = 0;
    for (i = 0; i < n; i += 1) { if (indeg[i] === 0) { queue.push(i); } }
    while (head < queue.length) {  // Kahn's order: O(V + E); a cycle's nodes keep rank 0
      var at = queue[head];
      head += 1;
      succs[at].forEach(function (next) {
        if (rank[at] + 1 > rank[next]) { rank[next] = rank[at] + 1; }
        indeg[next] -= 1;
        if (indeg[next] === 0) { queue.push(next); }
      });
    }
    // Per workstream (in the plan's order): its columns, and its steps' rows within a column
    // (in the plan's step order).
    var bands = [], bandOf = {}, row = new Array(n);
    for (i = 0; i < n; i += 1) {
      var ws = data.steps[i].ws, band = bandOf[ws];
      if (!band) { band = bandOf[ws] = { ws: ws, first: rank[i], last: rank[i], count: {}, height: 1 }; bands.push(band); }
      if (rank[i] < band.first) { band.first = rank[i]; }
      if (rank[i] > band.last) { band.last = rank[i]; }
      row[i] = band.count[rank[i]] || 0;
      band.count[rank[i]] = row[i] + 1;
      if (row[i] + 1 > band.height) { band.height = row[i] + 1; }
    }
    // Bands by their first column; a lane is reused when its last workstream ended two
    // columns before (room for the label) and it is tall enough.
    var lanes = [], top = 0;
    bands.slice().sort(function (a, b) { return a.first - b.first; }).forEach(function (band) {
      var lane = null;
      for (var k = 0; k < lanes.length; k += 1) {
        if (lanes[k].free < band.first - 1 && lanes[k].height >= band.height) { lane = lanes[k]; break; }
      }
      if (!lane) {
        lane = { top: top, height: band.height, free: -2 };
        lanes.push(lane);
        top += band.height + 1;
      }
      lane.free = band.last;
      band.top = lane.top;
    });
    var positions = {}, labels = {}, cols = {};
    var STEP_X = NODE + GAP_X, STEP_Y = NODE + GAP_Y;
    for (i = 0; i < n; i += 1) {
      var b = bandOf[data.steps[i].ws];
      positions[data.steps[i].id] = { x: rank[i] * STEP_X, y: (b.top + row[i]) * STEP_Y };
      cols[data.steps[i].id] = rank[i];
    }
    bands.forEach(function (band) {
      labels[band.ws] = { x: band.first * STEP_X - STEP_X / 2, y: band.top * STEP_Y - STEP_Y / 2 };
    });
    return { positions: positions, labels: labels, cols: cols };
  }

  function draw(data) {
    if (!window.cytoscape || !document.getElementById("dag")) { return; }
    var started = window.performance ? window.performance.now() : 0;
    if (window.cytoscapeDagre && !draw.registered) {
      window.cytoscape.use(window.cytoscapeDagre);
      draw.registered = true;
    }
    var whole = draw.registered && data.steps.length <= WHOLE_DAGRE_MAX;
    var placed = whole ? null : layered(data);
    var elements = [];
    data.workstreams.forEach(function (ws) {
      var node = { group: "nodes", data: { id: "ws:" + ws.id, label: ws.id, state: ws.state } };
      if (placed) {
        node.classes = "ws-label";
        node.position = placed.labels[ws.id] || { x: 0, y: 0 };
        node.selectable = false;
        node.grabbable = false;
      }
      elements.push(node);
    });
    data.steps.forEach(function (s) {
      var node = { group: "nodes", data: { id: s.id, label: s.step, state: s.state } };
      if (placed) { node.position = placed.positions[s.id]; } else { node.data.parent = "ws:" + s.ws; }
      elements.push(node);
    });
    data.edges.forEach(function (e, i) {
      elements.push({ group: "edges", data: { id: "e" + i, source: e[0], target: e[1] } });
    });
    var many = !whole;
    cy = window.cytoscape({
      container: document.getElementById("dag"), elements: elements, style: graphStyle(many),
      layout: whole ? { name: "dagre", rankDir: "LR", nodeSep: 12, rankSep: 40, animate: false }
        : { name: "preset", fit: true, padding: 20 },
      textureOnViewport: many, hideEdgesOnViewport: many, hideLabelsOnViewport: many,
      motionBlur: false, pixelRatio: many ? 1 : "auto", minZoom: 0.02, maxZoom: 1.5
    });
    cy.on("tap", "node", function (event) {
      var node = event.target;
      if (!node.isParent() && node.id().indexOf("ws:") !== 0) {
        var parts = node.id().split("/");
        window.location.href = base + "/steps/" + encodeURIComponent(parts[0]) + "/" +
          encodeURIComponent(parts.slice(1).join("/"));
      }
    });
    data.workstreams.forEach(function (ws) { shownState["ws:" + ws.id] = ws.state; });
    data.steps.forEach(function (s) {
      shownState[s.id] = s.state;
      mirrorNode(s.id, s.state);
      if (placed && mirrorIndex[s.id]) { mirrorIndex[s.id].setAttribute("data-col", String(placed.cols[s.id])); }
    });
    holder.setAttribute("data-drawn", String(data.steps.length));
    holder.setAttribute("data-layout", whole ? "dagre" : "layered");
    if (started) {
      holder.setAttribute("data-draw-ms", String(Math.round(window.performance.now() - started)));
    }
  }

  function setBadge(el, state) {
    if (!el) { return; }
    el.setAttribute("data-state", state);
    el.textContent = state;
  }

  // The server-rendered sections (summary, controls, steps, timeline) are read again when
  // something changed, at most every SECTIONS_MS, and swapped in -- unless the keyboard focus
  // is inside one (it would be lost). The HTML is the server's own, escaped already; nodes
  // parsed by DOMParser run no script.
  // On a large run the bulky sections (every step, every attempt) are not swapped: their rows'
  // states are updated in place, the rest shows on reload.
  var SECTIONS_MS = 3000;
  var large = false;
  var sectionsDue = false;
  var sectionsTimer = null;
  var lastSections = 0;

  function refreshSections() {
    sectionsTimer = null;
    if (!sectionsDue) { return; }
    sectionsDue = false;
    lastSections = Date.now();
    fetch(window.location.pathname + (large ? "?part=head" : ""), { credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        Array.prototype.forEach.call(document.querySelectorAll("[data-live-section]"), function (old) {
          var next = fresh.getElementById(old.id);
          if (!next || old.contains(document.activeElement)) { return; }
          if (large && old.getAttribute("data-live-section") === "bulk") { return; }
          old.replaceWith(document.importNode(next, true));
        });
        rowIndex = null;
      })
      .catch(function () { /* the next change tries again */ });
  }

  function sectionsChanged() {
    sectionsDue = true;
    if (sectionsTimer === null) {
      var wait = Math.max(0, SECTIONS_MS - (Date.now() - lastSections));
      sectionsTimer = window.setTimeout(refreshSections, wait);
    }
  }

  // The table's rows by data-step / data-ws, found once (and again after a section swap).
  var rowIndex = null;

  function rows() {
    if (rowIndex === null) {
      rowIndex = { steps: {}, ws: {} };
      Array.prototype.forEach.call(document.querySelectorAll("tr[data-step]"), function (tr) {
        rowIndex.steps[tr.getAttribute("data-step")] = tr;
      });
      Array.prototype.forEach.call(document.querySelectorAll("tr.ws-row[data-ws]"), function (tr) {
        rowIndex.ws[tr.getAttribute("data-ws")] = tr;
      });
    }
    return rowIndex;
  }

  // What the graph shows, by node id: the nodes whose state did not change are not touched
  // (no cytoscape lookup, no style recalculation).
  var shownState = {};

  function apply(data) {
    var changed = document.body.getAttribute("data-run-state") !== data.state;
    var index = rows();
    large = data.steps.length > 300;
    stepCount = data.steps.length;
    setBadge(document.getElementById("run-state"), data.state);
    var summary = document.getElementById("summary-state");
    if (summary) { summary.textContent = data.state; }
    var moved = [];
    data.workstreams.forEach(function (ws) {
      var row = index.ws[ws.id];
      if (row && row.getAttribute("data-state") !== ws.state) {
        row.setAttribute("data-state", ws.state);
        setBadge(row.querySelector(".state"), ws.state);
      }
      if (shownState["ws:" + ws.id] !== ws.state) { moved.push(["ws:" + ws.id, ws.state]); }
    });
    data.steps.forEach(function (s) {
      var row = index.steps[s.id];
      if (row && row.getAttribute("data-state") !== s.state) {
        changed = true;
        row.setAttribute("data-state", s.state);
        setBadge(row.querySelector(".state"), s.state);
        var attempts = row.querySelector(".attempts");
        if (attempts) { attempts.textContent = String(s.attempts); }
      }
      if (shownState[s.id] !== s.state) { moved.push([s.id, s.state]); mirrorNode(s.id, s.state); }
    });
    if (cy && moved.length) {
      cy.batch(function () {  // one style pass for every node that changed
        moved.forEach(function (m) {
          var node = cy.getElementById(m[0]);
          if (node.nonempty()) { node.data("state", m[1]); }
        });
      });
    }
    moved.forEach(function (m) { shownState[m[0]] = m[1]; });
    document.body.setAttribute("data-run-state", data.state);
    if (changed) { sectionsChanged(); }
  }

  // Live updates are painted at most once per animation frame: the newest state read wins,
  // and the events' list gets every line noted since the last frame in one change.
  var pendingState = null;
  var pendingNotes = [];
  var frameAsked = false;

  function frame() {
    frameAsked = false;
    if (pendingState) {
      var data = pendingState;
      pendingState = null;
      apply(data);
    }
    if (pendingNotes.length && eventsList) {
      var batch = document.createDocumentFragment();
      pendingNotes.slice(-50).reverse().forEach(function (item) { batch.appendChild(item); });
      pendingNotes = [];
      eventsList.insertBefore(batch, eventsList.firstChild);
      while (eventsList.children.length > 50) { eventsList.removeChild(eventsList.lastChild); }
    }
  }

  function repaint() {
    if (frameAsked) { return; }
    frameAsked = true;
    if (window.requestAnimationFrame && !document.hidden) {
      window.requestAnimationFrame(frame);
    } else {
      window.setTimeout(frame, 16);
    }
  }

  function load(first) {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(base + "/state", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("state " + answer.status); }
        return answer.json();
      })
      .then(function (data) {
        if (first) { draw(data); apply(data); return; }
        pendingState = data;
        repaint();
      })
      .catch(function (err) { say("Could not read the run's state (" + err.message + ")"); })
      .then(function () {
        refreshing = false;
        if (again) { again = false; schedule(); }
      });
  }

  // How often the states are read (and so the graph repainted) while events arrive: every
  // 250 ms, or a millisecond per step past 250 steps up to once a second. A repaint of a
  // 1,000-step graph takes 50-100 ms of the main thread on an idle machine and 200-300 ms
  // at load 7 (bench/README.md), so 100 events/s on such a plan repaint it once a second.
  var stepCount = 0;

  function schedule() {
    if (refreshTimer !== null) { return; }
    var wait = Math.min(1000, Math.max(250, stepCount));
    refreshTimer = window.setTimeout(function () { refreshTimer = null; load(false); }, wait);
  }

  function note(doc) {
    if (!eventsList) { return; }
    var item = document.createElement("li");
    var kind = String(doc.type || "").replace(/^dev\.aidp\./, "");
    item.textContent = (doc.time || "").replace("T", " ").slice(0, 19) + "  " + kind +
      (doc.subject ? "  " + doc.subject : "");
    item.setAttribute("data-kind", kind);
    pendingNotes.push(item);
    if (pendingNotes.length > 50) { pendingNotes.shift(); }
    repaint();
  }

  function follow() {
    if (!window.EventSource) { say("This browser cannot follow live events; reload to refresh."); return; }
    var source = new EventSource(base + "/live" + (after ? "?after=" + encodeURIComponent(after) : ""));
    source.onopen = function () { say("Live: following the run's events."); };
    source.onmessage = function (message) {
      var doc = null;
      try { doc = JSON.parse(message.data); } catch (e) { return; }
      note(doc);
      schedule();
    };
    source.onerror = function () {
      say(source.readyState === EventSource.CLOSED ? "Live updates stopped; reload to refresh."
        : "Reconnecting…");
    };
  }

  var toggle = document.getElementById("theme-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      window.setTimeout(function () {
        colours = {};
        if (cy) { cy.style(graphStyle(lean)); }
        Object.keys(mirrorIndex).forEach(function (id) {
          var item = mirrorIndex[id];
          item.setAttribute("data-color", colour(item.getAttribute("data-state")));
        });
      }, 0);
    });
  }
  var shown = document.getElementById("run-state");
  if (shown) { document.body.setAttribute("data-run-state", shown.getAttribute("data-state")); }
  var initial = null;
  try { initial = JSON.parse(holder.getAttribute("data-initial") || "null"); } catch (e) { initial = null; }
  if (initial) {  // the states the page was rendered with: no second request to draw
    draw(initial);
    apply(initial);
  } else {
    load(true);
  }
  follow();
})();
