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

  function colour(state) {
    var value = getComputedStyle(document.documentElement).getPropertyValue("--s-" + state);
    return (value || "").trim() || "#8c959f";
  }

  function graphStyle() {
    var fg = getComputedStyle(document.body).color;
    var rules = [
      { selector: "node", style: { "label": "data(label)", "font-size": 11, "color": fg,
        "text-valign": "bottom", "text-margin-y": 4, "width": 22, "height": 22,
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

  function mirrorNode(id, state) {
    if (!mirror) { return; }
    var item = mirror.querySelector("li[data-step=\"" + CSS.escape(id) + "\"]");
    if (!item) {
      item = document.createElement("li");
      item.setAttribute("data-step", id);
      item.textContent = id;
      mirror.appendChild(item);
    }
    item.setAttribute("data-state", state);
    item.setAttribute("data-color", colour(state));
  }

  function draw(data) {
    if (!window.cytoscape || !document.getElementById("dag")) { return; }
    if (window.cytoscapeDagre && !draw.registered) {
      window.cytoscape.use(window.cytoscapeDagre);
      draw.registered = true;
    }
    var elements = [];
    data.workstreams.forEach(function (ws) {
      elements.push({ group: "nodes", data: { id: "ws:" + ws.id, label: ws.id, state: ws.state } });
    });
    data.steps.forEach(function (s) {
      elements.push({ group: "nodes", data: { id: s.id, label: s.step, state: s.state,
        parent: "ws:" + s.ws } });
    });
    data.edges.forEach(function (e, i) {
      elements.push({ group: "edges", data: { id: "e" + i, source: e[0], target: e[1] } });
    });
    var many = data.steps.length > 300;
    cy = window.cytoscape({
      container: document.getElementById("dag"), elements: elements, style: graphStyle(),
      layout: draw.registered ? { name: "dagre", rankDir: "LR", nodeSep: 12, rankSep: 40,
        animate: false } : { name: "breadthfirst", directed: true },
      textureOnViewport: many, hideEdgesOnViewport: many, hideLabelsOnViewport: many,
      minZoom: 0.05, maxZoom: 1.5
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
  var SECTIONS_MS = 3000;
  var sectionsDue = false;
  var sectionsTimer = null;
  var lastSections = 0;

  function refreshSections() {
    sectionsTimer = null;
    if (!sectionsDue) { return; }
    sectionsDue = false;
    lastSections = Date.now();
    fetch(window.location.pathname, { credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        Array.prototype.forEach.call(document.querySelectorAll("[data-live-section]"), function (old) {
          var next = fresh.getElementById(old.id);
          if (!next || old.contains(document.activeElement)) { return; }
          old.replaceWith(document.importNode(next, true));
        });
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

  function apply(data) {
    var changed = document.body.getAttribute("data-run-state") !== data.state;
    setBadge(document.getElementById("run-state"), data.state);
    var summary = document.getElementById("summary-state");
    if (summary) { summary.textContent = data.state; }
    data.workstreams.forEach(function (ws) {
      var row = document.querySelector("tr.ws-row[data-ws=\"" + CSS.escape(ws.id) + "\"]");
      if (row && row.getAttribute("data-state") !== ws.state) {
        row.setAttribute("data-state", ws.state);
        setBadge(row.querySelector(".state"), ws.state);
      }
      if (cy) { cy.getElementById("ws:" + ws.id).data("state", ws.state); }
    });
    data.steps.forEach(function (s) {
      var row = document.querySelector("tr[data-step=\"" + CSS.escape(s.id) + "\"]");
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
      window.setTimeout(function () { if (cy) { cy.style(graphStyle()); } }, 0);
    });
  }
  var shown = document.getElementById("run-state");
  if (shown) { document.body.setAttribute("data-run-state", shown.getAttribute("data-state")); }
  load(true);
  follow();
})();
