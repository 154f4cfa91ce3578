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

  function graphStyle() {
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
      { selector: "edge", style: { "width": 1.5, "curve-style": "bezier",
        "target-arrow-shape": "triangle", "line-color": colour("skipped"),
        "target-arrow-color": colour("skipped") } },
      { selector: "node:selected", style: { "border-color": colour("running"),
        "border-opacity": 1 } }
    ];
    STATES.forEach(function (s) {
      rules.push({ selector: "node[state = \"" + s + "\"]",
        style: { "background-color": colour(s) } });
      rules.push({ selector: ":parent[state = \"" + s + "\"]",
        style: { "border-color": colour(s), "background-color": colour(s) } });
    });
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

  // Layout. A small plan is laid out by dagre as one compound graph. A large one (dagre's
  // compound layout takes seconds from a few hundred nodes on) in two levels: each
  // workstream's steps in columns by their longest path from the workstream's first steps
  // (linear time), then the workstreams as boxes by dagre (a graph of tens of nodes).
  var NODE = 22, GAP_X = 40, GAP_Y = 14, PAD = 16, LABEL = 18, WHOLE_DAGRE_MAX = 150;

  function columns(ids, edges) {
    var preds = {}, succs = {}, rank = {}, indeg = {};
    ids.forEach(function (id) { preds[id] = []; succs[id] = []; indeg[id] = 0; rank[id] = 0; });
    edges.forEach(function (e) {
      if (preds[e[1]] && succs[e[0]]) { preds[e[1]].push(e[0]); succs[e[0]].push(e[1]); indeg[e[1]] += 1; }
    });
    var queue = ids.filter(function (id) { return indeg[id] === 0; });
    var order = [];
    while (queue.length) {
      var id = queue.shift();
      order.push(id);
      succs[id].forEach(function (next) {
        rank[next] = Math.max(rank[next], rank[id] + 1);
        indeg[next] -= 1;
        if (indeg[next] === 0) { queue.push(next); }
      });
    }
    var byRank = [], slot = {};
    order.forEach(function (id) {
      (byRank[rank[id]] = byRank[rank[id]] || []).push(id);
    });
    byRank.forEach(function (col) {  // one barycentre pass: a step beside its predecessors
      col.forEach(function (id, i) {
        var p = preds[id].map(function (q) { return slot[q]; });
        slot[id] = p.length ? p.reduce(function (a, b) { return a + b; }, 0) / p.length : i;
      });
      col.sort(function (a, b) { return slot[a] - slot[b]; });
      col.forEach(function (id, i) { slot[id] = i; });
    });
    var tallest = Math.max.apply(null, byRank.map(function (c) { return c.length; }).concat([1]));
    var positions = {};
    byRank.forEach(function (col, r) {
      var offset = (tallest - col.length) * (NODE + GAP_Y) / 2;
      col.forEach(function (id, i) {
        positions[id] = { x: r * (NODE + GAP_X) + NODE / 2, y: offset + i * (NODE + GAP_Y) + NODE / 2 };
      });
    });
    return { positions: positions, width: Math.max(1, byRank.length) * (NODE + GAP_X) - GAP_X,
      height: tallest * (NODE + GAP_Y) - GAP_Y };
  }

  function twoLevel(data) {
    var byWs = {}, wsOf = {};
    data.steps.forEach(function (s) { (byWs[s.ws] = byWs[s.ws] || []).push(s.id); wsOf[s.id] = s.ws; });
    var inner = {};
    Object.keys(byWs).forEach(function (ws) {
      inner[ws] = columns(byWs[ws], data.edges.filter(function (e) {
        return wsOf[e[0]] === ws && wsOf[e[1]] === ws;
      }));
    });
    var placed = {};
    var outer = window.dagre ? new window.dagre.graphlib.Graph({ multigraph: true }) : null;
    if (outer) {
      outer.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 48 });
      outer.setDefaultEdgeLabel(function () { return {}; });
      Object.keys(inner).forEach(function (ws) {
        outer.setNode(ws, { width: inner[ws].width + 2 * PAD, height: inner[ws].height + 2 * PAD + LABEL });
      });
      data.edges.forEach(function (e) {
        var a = wsOf[e[0]], b = wsOf[e[1]];
        if (a && b && a !== b) { outer.setEdge(a, b, {}, a + ">" + b); }
      });
      window.dagre.layout(outer);
      Object.keys(inner).forEach(function (ws) {
        var box = outer.node(ws);
        placed[ws] = { x: box.x - box.width / 2 + PAD, y: box.y - box.height / 2 + PAD + LABEL };
      });
    } else {  // no dagre: the workstreams in one column
      var y = 0;
      Object.keys(inner).forEach(function (ws) {
        placed[ws] = { x: 0, y: y };
        y += inner[ws].height + 2 * PAD + LABEL + 24;
      });
    }
    var positions = {};
    Object.keys(inner).forEach(function (ws) {
      Object.keys(inner[ws].positions).forEach(function (id) {
        var p = inner[ws].positions[id];
        positions[id] = { x: placed[ws].x + p.x, y: placed[ws].y + p.y };
      });
    });
    return positions;
  }

  function draw(data) {
    if (!window.cytoscape || !document.getElementById("dag")) { return; }
    var started = window.performance ? window.performance.now() : 0;
    if (window.cytoscapeDagre && !draw.registered) {
      window.cytoscape.use(window.cytoscapeDagre);
      draw.registered = true;
    }
    var whole = draw.registered && data.steps.length <= WHOLE_DAGRE_MAX;
    var positions = whole ? {} : twoLevel(data);
    var elements = [];
    data.workstreams.forEach(function (ws) {
      elements.push({ group: "nodes", data: { id: "ws:" + ws.id, label: ws.id, state: ws.state } });
    });
    data.steps.forEach(function (s) {
      var node = { group: "nodes", data: { id: s.id, label: s.step, state: s.state,
        parent: "ws:" + s.ws } };
      if (positions[s.id]) { node.position = positions[s.id]; }
      elements.push(node);
    });
    data.edges.forEach(function (e, i) {
      elements.push({ group: "edges", data: { id: "e" + i, source: e[0], target: e[1] } });
    });
    var many = data.steps.length > 300;
    cy = window.cytoscape({
      container: document.getElementById("dag"), elements: elements, style: graphStyle(),
      layout: whole ? { name: "dagre", rankDir: "LR", nodeSep: 12, rankSep: 40, animate: false }
        : { name: "preset", fit: true, padding: 20 },
      textureOnViewport: many, hideEdgesOnViewport: many, hideLabelsOnViewport: many,
      pixelRatio: many ? 1 : "auto", minZoom: 0.02, maxZoom: 1.5
    });
    cy.on("tap", "node", function (event) {
      var node = event.target;
      if (!node.isParent()) {
        var parts = node.id().split("/");
        window.location.href = base + "/steps/" + encodeURIComponent(parts[0]) + "/" +
          encodeURIComponent(parts.slice(1).join("/"));
      }
    });
    data.steps.forEach(function (s) { mirrorNode(s.id, s.state); });
    holder.setAttribute("data-drawn", String(data.steps.length));
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

  function apply(data) {
    var changed = document.body.getAttribute("data-run-state") !== data.state;
    var index = rows();
    large = data.steps.length > 300;
    setBadge(document.getElementById("run-state"), data.state);
    var summary = document.getElementById("summary-state");
    if (summary) { summary.textContent = data.state; }
    if (cy) { cy.startBatch(); }
    data.workstreams.forEach(function (ws) {
      var row = index.ws[ws.id];
      if (row && row.getAttribute("data-state") !== ws.state) {
        row.setAttribute("data-state", ws.state);
        setBadge(row.querySelector(".state"), ws.state);
      }
      if (cy) { cy.getElementById("ws:" + ws.id).data("state", ws.state); }
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
      if (cy) {
        var node = cy.getElementById(s.id);
        if (node && node.data("state") !== s.state) { node.data("state", s.state); }
        mirrorNode(s.id, s.state);
      }
    });
    if (cy) { cy.endBatch(); }
    document.body.setAttribute("data-run-state", data.state);
    if (changed) { sectionsChanged(); }
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
        if (first) { draw(data); }
        apply(data);
      })
      .catch(function (err) { say("Could not read the run's state (" + err.message + ")"); })
      .then(function () {
        refreshing = false;
        if (again) { again = false; schedule(); }
      });
  }

  function schedule() {
    if (refreshTimer !== null) { return; }
    refreshTimer = window.setTimeout(function () { refreshTimer = null; load(false); }, 250);
  }

  function note(doc) {
    if (!eventsList) { return; }
    var item = document.createElement("li");
    var kind = String(doc.type || "").replace(/^dev\.aidp\./, "");
    item.textContent = (doc.time || "").replace("T", " ").slice(0, 19) + "  " + kind +
      (doc.subject ? "  " + doc.subject : "");
    item.setAttribute("data-kind", kind);
    eventsList.insertBefore(item, eventsList.firstChild);
    while (eventsList.children.length > 50) { eventsList.removeChild(eventsList.lastChild); }
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
        if (cy) { cy.style(graphStyle()); }
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
