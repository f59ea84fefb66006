"""``--format html``: one self-contained page with an interactive flame graph.

The page carries its data as JSON inside the page and draws the graph with a
few lines of its own script into inline SVG: no network access, no external
file (its Content-Security-Policy forbids both). The graph is drawn top-down
(the outermost frame at the top), one box per frame whose width is its share
of the chosen value (outstanding bytes by default, or outstanding blocks,
allocations, allocated bytes). Click a box to zoom into it, click the top
bar or "reset" to zoom out; the search box highlights matching frames (a
substring, case-insensitive) and totals what they hold. The address fragment
sets the starting state: ``#search=TEXT&value=N&zoom=OUTER;INNER``.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from audit.export.model import SHOWN_ORDER, TITLES, Frame, exact

PAGE_MAX = 10**308  # below the largest double (1.8e308), with room for rounding

UNITS = {"inuse_space": "bytes", "inuse_objects": "blocks", "alloc_objects": "allocations",
         "alloc_space": "bytes"}


def page_data(table: Any) -> dict[str, Any]:
    from audit.export import profile_of

    prof = profile_of(table)
    # Frames with the same text are one box: with --by function, every call site
    # in main is "main".
    frames, numbered, indexes = prof.frame_table(
        lambda frame: (frame.label(prof.by), frame.kind),
        lambda key: {"n": key[0], "k": key[1]})

    known = {name: i for i, name, _ in prof.value_types()}
    metrics = [name for name in SHOWN_ORDER if name in known]
    stacks, values = [], []
    # The script adds values as doubles: past about 1.8e308 a sum is Infinity and every
    # box NaN wide. The positive values of each metric are saturated so that their total
    # stays within PAGE_MAX (what the page draws is then cut, and says so).
    totals: list[int | float] = [0] * len(metrics)
    cut = False
    for sample, numbers in zip(prof.samples, numbered):
        row: list[int | float] = [round(sample.values[known[m]], 3) for m in metrics]
        if not any(v > 0 for v in row):
            continue
        for n, v in enumerate(row):
            if v > 0:
                if v > PAGE_MAX - totals[n]:
                    v, cut = PAGE_MAX - totals[n], True
                totals[n] += v
                row[n] = v
        stacks.append(indexes(numbers))
        values.append([exact(v) for v in row])
    note = ("exact counts" if prof.sample_rate is None
            else f"estimates from sampling at {prof.sample_rate:g} per byte")
    if cut:
        note += f"; values cut to {PAGE_MAX:g} in total, past what the page can add up"
    return {
        "title": prof.name,
        "note": note,
        "metrics": [{"name": TITLES[m], "unit": UNITS[m]} for m in metrics],
        "frames": frames,
        "stacks": stacks,
        "values": values,
    }


class HtmlFormatter:
    def render(self, table: Any) -> str:
        data = page_data(table)
        # "<" never appears raw inside the script element, so no "</script>" can end it early.
        payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace("&", "\\u0026")
        parts = {"TITLE": html.escape(f"{data['title']}: flame graph"), "DATA": payload,
                 "STYLE": _STYLE, "SCRIPT": _SCRIPT}
        # One pass: a name holding "@SCRIPT@" or "@DATA@" stays text, never a slot.
        return re.sub(r"@(TITLE|DATA|STYLE|SCRIPT)@", lambda m: parts[m[1]], _PAGE)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>@STYLE@</style>
</head>
<body>
<header>
<h1 id="title">@TITLE@</h1>
<div class="controls">
<label>value <select id="metric"></select></label>
<label>search <input id="search" type="search" placeholder="frame name" autocomplete="off"></label>
<button id="reset" type="button">reset zoom</button>
</div>
<p id="summary"></p>
<p id="status">&nbsp;</p>
</header>
<div id="chart"><svg id="flame" xmlns="http://www.w3.org/2000/svg" role="img"></svg></div>
<noscript><p>This flame graph is drawn by the page's own script; enable JavaScript to see it.</p></noscript>
<script type="application/json" id="profile-data">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""

_STYLE = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 0 12px 12px; color: #222; background: #fff; }
header { position: sticky; top: 0; background: #fff; padding: 8px 0 4px; z-index: 1; }
h1 { font-size: 17px; margin: 0 0 6px; }
.controls { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
#summary, #status { margin: 4px 0; color: #444; }
#status { font-family: ui-monospace, monospace; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#flame { display: block; width: 100%; }
#flame g.frame { cursor: pointer; }
#flame g.frame rect { stroke: #fff; stroke-width: 0.5; }
#flame g.frame text { font: 11px ui-monospace, monospace; fill: #000; pointer-events: none; }
#flame g.frame.match rect { fill: #e040e0; }
#flame g.frame.ancestor rect { fill-opacity: 0.45; }
#flame g.frame:hover rect { stroke: #000; stroke-width: 1; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("profile-data").textContent);
  var svg = document.getElementById("flame");
  var NS = "http://www.w3.org/2000/svg";
  var ROW = 18, CHAR = 6.7;
  var state = { metric: 0, query: "", zoom: null };
  var root = null;

  function build(metric) {
    var top = { name: "all", kind: "root", value: 0, children: [], byFrame: {}, parent: null };
    data.stacks.forEach(function (stack, i) {
      var v = data.values[i][metric];
      if (!(v > 0)) { return; }
      var node = top;
      top.value += v;
      stack.forEach(function (f) {
        var child = node.byFrame[f];
        if (!child) {
          child = { name: data.frames[f].n, kind: data.frames[f].k, value: 0, children: [],
                    byFrame: {}, parent: node };
          node.byFrame[f] = child;
          node.children.push(child);
        }
        child.value += v;
        node = child;
      });
    });
    // Loops, not recursion, over the tree: a stack may be deeper than the script's call stack.
    var todo = [top];
    while (todo.length) {
      var n = todo.pop();
      n.children.sort(function (a, b) { return b.value - a.value || (a.name < b.name ? -1 : 1); });
      n.children.forEach(function (c) { todo.push(c); });
    }
    return top;
  }

  function unit() { return data.metrics.length ? data.metrics[state.metric].unit : ""; }

  function human(v) {
    var text = (Math.round(v * 1000) / 1000).toLocaleString("en-US");
    if (unit() !== "bytes" || v < 1024) { return text + " " + unit(); }
    var units = ["KiB", "MiB", "GiB", "TiB"], x = v, i = -1;
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
    return x.toFixed(1) + " " + units[i] + " (" + text + " bytes)";
  }

  function pct(v) { return root.value ? (100 * v / root.value).toFixed(1) + "%" : "0%"; }

  function path(node) {
    var names = [];
    for (var n = node; n && n.parent; n = n.parent) { names.unshift(n.name); }
    return names;
  }

  function matches(node) {
    return state.query !== "" && node.name.toLowerCase().indexOf(state.query) >= 0;
  }

  function color(node) {
    if (node.kind === "root") { return "#c8c8c8"; }
    if (node.kind === "pool") { return "#8fb8de"; }
    var h = 0;
    for (var i = 0; i < node.name.length; i++) { h = (h * 31 + node.name.charCodeAt(i)) >>> 0; }
    if (node.kind === "tag") { return "hsl(" + (20 + h % 25) + ",85%," + (62 + h % 12) + "%)"; }
    return "hsl(" + (h % 55) + ",80%," + (55 + (h >> 8) % 15) + "%)";
  }

  function box(node, x, y, w, cls) {
    var g = document.createElementNS(NS, "g");
    g.setAttribute("class", "frame" + (cls ? " " + cls : "") + (matches(node) ? " match" : ""));
    g.setAttribute("data-name", node.name);
    g.setAttribute("data-value", String(node.value));
    g.setAttribute("data-depth", String(y / ROW));
    var title = document.createElementNS(NS, "title");
    title.textContent = node.name + "\n" + human(node.value) + ", " + pct(node.value);
    var rect = document.createElementNS(NS, "rect");
    rect.setAttribute("x", x.toFixed(2));
    rect.setAttribute("y", String(y));
    rect.setAttribute("width", Math.max(w, 0.5).toFixed(2));
    rect.setAttribute("height", String(ROW - 1));
    rect.setAttribute("fill", color(node));
    g.appendChild(title);
    g.appendChild(rect);
    var room = Math.floor((w - 6) / CHAR);
    if (room >= 3) {
      var text = document.createElementNS(NS, "text");
      text.setAttribute("x", (x + 3).toFixed(2));
      text.setAttribute("y", String(y + ROW - 5));
      text.textContent = node.name.length <= room ? node.name : node.name.slice(0, room - 2) + "..";
      g.appendChild(text);
    }
    g.addEventListener("click", function () { zoomTo(node === state.zoom ? node.parent : node); });
    g.addEventListener("mouseover", function () {
      document.getElementById("status").textContent = node.name + ": " + human(node.value) + ", " + pct(node.value);
    });
    svg.appendChild(g);
  }

  function render() {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var width = Math.max(svg.getBoundingClientRect().width || 0, 600);
    var zoom = state.zoom || root;
    var chain = [];
    for (var a = zoom.parent; a; a = a.parent) { chain.unshift(a); }
    var depth = 0, maxDepth = 0;
    chain.forEach(function (n) { box(n, 0, depth * ROW, width, "ancestor"); depth += 1; });
    var scale = zoom.value ? width / zoom.value : 0;
    var todo = [[zoom, 0, depth]];
    while (todo.length) {
      var item = todo.pop(), node = item[0], x = item[1], d = item[2];
      var w = node.value * scale;
      if (w < 0.3) { continue; }
      box(node, x, d * ROW, w, node === zoom && zoom !== root ? "zoomed" : "");
      maxDepth = Math.max(maxDepth, d);
      var cx = x, kids = [];
      node.children.forEach(function (c) { kids.push([c, cx, d + 1]); cx += c.value * scale; });
      while (kids.length) { todo.push(kids.pop()); }   // drawn in order, first child first
    }
    svg.setAttribute("height", String((maxDepth + 1) * ROW));
    svg.setAttribute("viewBox", "0 0 " + width + " " + (maxDepth + 1) * ROW);
    summarize();
  }

  function summarize() {
    var text = human(root.value) + " in total (" + data.note + ")";
    if (state.zoom && state.zoom !== root) {
      text += "; zoomed into " + path(state.zoom).join(" > ") + ": " + pct(state.zoom.value);
    }
    if (state.query !== "") {
      var found = 0, todo = [root];
      while (todo.length) {
        var n = todo.pop();
        if (n !== root && matches(n)) { found += n.value; continue; }
        n.children.forEach(function (c) { todo.push(c); });
      }
      text += "; matching \u201c" + state.query + "\u201d: " + human(found) + ", " + pct(found);
    }
    document.getElementById("summary").textContent = text;
  }

  function zoomTo(node) {
    state.zoom = node && node !== root ? node : null;
    render();
  }

  function find(names) {
    var node = root;
    for (var i = 0; i < names.length && node; i++) {
      node = node.children.filter(function (c) { return c.name === names[i]; })[0] || null;
    }
    return node;
  }

  function setMetric(m) {
    var names = state.zoom ? path(state.zoom) : [];
    state.metric = m;
    root = build(m);
    state.zoom = names.length ? find(names) : null;
    render();
  }

  var select = document.getElementById("metric");
  data.metrics.forEach(function (m, i) {
    var opt = document.createElement("option");
    opt.value = String(i);
    opt.textContent = m.name;
    select.appendChild(opt);
  });
  select.addEventListener("change", function () { setMetric(Number(select.value)); });
  var search = document.getElementById("search");
  search.addEventListener("input", function () { state.query = search.value.trim().toLowerCase(); render(); });
  document.getElementById("reset").addEventListener("click", function () { zoomTo(null); });
  window.addEventListener("resize", render);

  // Each value is percent-decoded; zoom's names are split at ";" first, so a name that
  // holds ";" (or "&") is given as %3B (%26): zoom=a%3Bb;c is the frame c under "a;b".
  var params = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var at = kv.indexOf("=");
    if (at <= 0) { return; }
    var key = kv.slice(0, at), raw = kv.slice(at + 1);
    try {
      params[key] = key === "zoom" ? raw.split(";").map(decodeURIComponent) : decodeURIComponent(raw);
    } catch (e) { /* malformed: ignored */ }
  });
  var m = Number(params.value || 0);
  state.metric = m >= 0 && m < data.metrics.length ? m : 0;
  select.value = String(state.metric);
  if (params.search) { search.value = params.search; state.query = params.search.trim().toLowerCase(); }
  root = build(state.metric);
  if (params.zoom) { state.zoom = find(params.zoom); }
  render();
  document.body.setAttribute("data-rendered", "yes");
})();
"""
