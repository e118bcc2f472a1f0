/* model-trace, data views: behaviour for the attention, embeddings and experts figures.
 *
 * Each figure is drawn at build time in Python (dataviews/draw_*.py) as a static SVG that
 * reads without script; this adds behaviour to the elements it finds, from the numbers the
 * figure carries in its <template class="mt-dv-data"> (weights in thousandths, the heat
 * level of each cell, as Python computed them; the class of a level colours it in the page's
 * scheme, dataviews/palette.py): a readout under the figure for what the
 * pointer is on, a click on a thumbnail to show that map large, on a token to highlight its
 * row and column, on a legend entry to single out a group, on an expert to open it in the
 * graph figure of the same page. No drawing here: only attributes and classes change.
 */
(function () {
  "use strict";
  if (typeof document === "undefined" || window.modelTraceDataViews) return;

  function svgPoint(svg, event) {
    var point = svg.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    return point.matrixTransform(svg.getScreenCTM().inverse());
  }
  function on(root, selector, type, handler) {
    root.addEventListener(type, function (event) {
      var target = event.target.closest ? event.target.closest(selector) : null;
      if (target && root.contains(target)) handler(target, event);
    });
  }
  function activate(root, selector, handler) {  // click, and Enter or Space for the keyboard
    on(root, selector, "click", handler);
    on(root, selector, "keydown", function (target, event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); handler(target, event); }
    });
  }

  // ------------------------------------------------------------------ attention
  function attention(figure, svg, data, say) {
    var n = data.tokens.length, current = 0, focus = -1;
    var cells = svg.querySelectorAll(".mt-cell"), values = svg.querySelectorAll(".mt-val");
    function weight(q, k) { return data.maps[current].w[q * n + k] / 1000; }
    function show(index) {
      var map = data.maps[index], lv = map.lv, texts = map.t ? map.t.split(",") : [];
      current = index;
      cells.forEach(function (cell, i) {
        var q = +cell.getAttribute("data-q"), k = +cell.getAttribute("data-k");
        var level = parseInt(lv[q * n + k], 16), dim = cell.classList.contains("mt-dim");
        cell.setAttribute("class", "mt-cell mt-h" + level + (dim ? " mt-dim" : ""));
        cell.setAttribute("fill", data.palette[level]);
        var title = cell.querySelector("title");
        if (title) title.textContent = data.tokens[q] + " → " + data.tokens[k] + ": " + weight(q, k).toFixed(3);
        var value = values[i];
        if (value) {
          value.setAttribute("class", "mt-val mt-v" + level + (dim ? " mt-dim" : ""));
          value.setAttribute("fill", data.ink[level]);
          value.textContent = texts[q * n + k];
        }
      });
      svg.querySelector(".mt-dv-heading").textContent = map.label;
      svg.querySelectorAll(".mt-thumb").forEach(function (thumb) {
        thumb.classList.toggle("mt-current", +thumb.getAttribute("data-map") === index);
      });
      figure.setAttribute("data-map", String(index));
      say(map.label);
    }
    function highlight(token) {
      focus = focus === token ? -1 : token;
      cells.forEach(function (cell, i) {
        var q = +cell.getAttribute("data-q"), k = +cell.getAttribute("data-k");
        var dim = focus >= 0 && q !== focus && k !== focus;
        cell.classList.toggle("mt-dim", dim);
        if (values[i]) values[i].classList.toggle("mt-dim", dim);
      });
      svg.querySelectorAll(".mt-tok").forEach(function (label) {
        label.classList.toggle("mt-hl", +label.getAttribute("data-t") === focus);
      });
      figure.setAttribute("data-token", String(focus));
      say(focus >= 0 ? "row and column of “" + data.tokens[focus] + "”" : "");
    }
    on(svg, ".mt-cell", "mouseover", function (cell) {
      var q = +cell.getAttribute("data-q"), k = +cell.getAttribute("data-k");
      say(data.tokens[q] + " → " + data.tokens[k] + ": " + weight(q, k).toFixed(3) +
          " (" + data.maps[current].label + ")");
    });
    activate(svg, ".mt-thumb", function (thumb) { show(+thumb.getAttribute("data-map")); });
    activate(svg, ".mt-tok", function (label) { highlight(+label.getAttribute("data-t")); });
    svg.querySelectorAll(".mt-tok").forEach(function (label) {
      label.setAttribute("tabindex", "0");
      label.setAttribute("role", "button");
    });
  }

  // ------------------------------------------------------------------ embeddings
  function embeddings(figure, svg, data, say) {
    var chosen = -1;
    on(svg, ".mt-dot", "mouseover", function (dot) {
      var i = +dot.getAttribute("data-i");
      say(data.texts[i] + " (" + data.groups[data.group[i]] + ")");
    });
    activate(svg, ".mt-group", function (entry) {
      var group = +entry.getAttribute("data-g");
      chosen = chosen === group ? -1 : group;
      svg.querySelectorAll(".mt-dot").forEach(function (dot) {
        dot.classList.toggle("mt-dim", chosen >= 0 && +dot.getAttribute("data-g") !== chosen);
      });
      figure.setAttribute("data-group", String(chosen));
    });
  }

  // ------------------------------------------------------------------ experts
  function expertAt(svg, data, event) {
    var p = svgPoint(svg, event), g = data.grid.map(Number);
    var layer = Math.floor((p.y - g[1]) / g[3]), expert = Math.floor((p.x - g[0]) / g[2]);
    if (layer < 0 || layer >= data.counts.length || expert < 0 ||
        expert >= data.counts[layer].length) return null;
    return { layer: layer, expert: expert, path: data.containers[layer] + "." + expert,
             tokens: data.counts[layer][expert] };
  }
  // The graph figure on the page that draws this expert: its item of that path, else the
  // deepest item whose path leads to it. A layer folded into a run (`layers.3–60: Block ×58`)
  // is drawn by the run's first member: its expert of the same number stands for it.
  function candidates(viewer, path) {
    var out = [path], model = viewer.model;
    model.members.forEach(function (_members, rep) {
      var first = model.path[rep], cut = first.lastIndexOf(".") + 1;
      if (!cut || path.slice(0, cut) !== first.slice(0, cut)) return;
      var rest = path.slice(cut), dot = rest.indexOf(".");
      if (/^\d+$/.test(dot < 0 ? rest : rest.slice(0, dot))) out.push(first + (dot < 0 ? "" : rest.slice(dot)));
    });
    return out;
  }
  function openInGraph(path) {
    var api = window.modelTraceViewer;
    if (!api) return false;
    var best = null;
    api.viewers().forEach(function (viewer) {
      candidates(viewer, path).forEach(function (wanted) {
        var paths = viewer.model.path;
        for (var ref = 0; ref < paths.length; ref++) {
          var p = paths[ref];
          if (p && (p === wanted || wanted.indexOf(p + ".") === 0) && (!best || p.length > best.length)) {
            best = { viewer: viewer, ref: ref, length: p.length };
          }
        }
      });
    });
    if (!best) return false;
    best.viewer.figure.scrollIntoView({ block: "center" });
    best.viewer.reveal(best.ref);
    return true;
  }
  function experts(figure, svg, data, say) {
    var hit = svg.querySelector(".mt-hit");
    hit.addEventListener("mousemove", function (event) {
      var cell = expertAt(svg, data, event);
      if (cell) say(cell.path + ": " + cell.tokens + " tokens");
    });
    hit.style.cursor = "pointer";
    hit.addEventListener("click", function (event) {
      var cell = expertAt(svg, data, event);
      if (!cell) return;
      figure.setAttribute("data-opened", cell.path);
      if (!openInGraph(cell.path)) say(cell.path + ": no graph figure of this model on the page");
    });
  }

  // ------------------------------------------------------------------ start
  var VIEWS = { attention: attention, embeddings: embeddings, experts: experts };
  function hydrate(root) {
    root.querySelectorAll("figure.model-trace-view:not([data-dv-ready])").forEach(function (figure) {
      var readout = figure.querySelector(".mt-dv-readout");
      function say(text) { readout.textContent = text; }
      try {
        var data = JSON.parse(figure.querySelector("template.mt-dv-data").content.textContent);
        VIEWS[figure.getAttribute("data-view")](figure, figure.querySelector("svg"), data, say);
        figure.setAttribute("data-dv-ready", "");
      } catch (error) {
        figure.setAttribute("data-dv-ready", "failed");
        console.warn("model-trace: this figure stays static:", error);  // eslint-disable-line
      }
    });
  }
  window.modelTraceDataViews = { hydrate: hydrate };
  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(function () { hydrate(document); });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { hydrate(document); });
  } else {
    hydrate(document);
  }
})();
