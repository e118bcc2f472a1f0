/* model-trace, panels: what sits around and over the drawing in a page: the toolbar, the side
 * panel (an item's details, its inputs and outputs, each with a button that reveals it), the
 * tooltip, the overlay's legend, the minimap, and the downloads (SVG and PNG of the current
 * view drawn by the engine, the graph's JSON byte for byte). Browser only.
 */
(function (MT) {
  "use strict";
  if (typeof document === "undefined") return;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var FULL_SCREEN_ICON = '<svg viewBox="0 0 16 16" width="12" height="12" aria-hidden="true">' +
    '<path d="M1 6V1h5M10 1h5v5M15 10v5h-5M6 15H1v-5" fill="none" stroke="currentColor" ' +
    'stroke-width="2"/></svg>';

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  MT.el = el;

  // ------------------------------------------------------------------ toolbar
  MT.buildToolbar = function (viewer) {
    var model = viewer.model, bar = el("div", { class: "mt-toolbar", role: "toolbar",
                                               "aria-label": "Graph controls" });
    function button(text, title, action) {
      var b = el("button", { type: "button", class: "mt-btn", title: title, "aria-label": title }, text);
      b.addEventListener("click", function (event) { event.stopPropagation(); action(); });
      bar.appendChild(b);
      return b;
    }
    button("\u2212", "Zoom out (-)", function () { viewer.zoomBy(1 / 1.25); });
    button("+", "Zoom in (+)", function () { viewer.zoomBy(1.25); });
    button("Fit", "Fit to view (0)", function () { viewer.fit(); });
    button("", "Full screen (F)", function () { viewer.toggleFullscreen(); }).innerHTML =
      FULL_SCREEN_ICON;
    var depth = el("select", { class: "mt-depth", "aria-label": "Depth",
                               title: "Open modules down to this depth" });
    for (var d = 0; d <= model.maxLevel; d++) {
      depth.appendChild(el("option", { value: String(d) }, "Depth " + d));
    }
    depth.addEventListener("change", function () {
      viewer.update({ expanded: MT.ViewState.atDepth(model, parseInt(depth.value, 10)) });
    });
    bar.appendChild(depth);
    viewer.depthSelect = depth;
    button("Open all", "Expand every module", function () {
      viewer.update({ expanded: MT.ViewState.atDepth(model, Infinity) });
    });
    button("Close all", "Collapse to the model's own box", function () {
      viewer.update({ expanded: new Set([model.root]) });
    });
    if (model.members.size) {
      viewer.foldButton = button("Unfold", "Show every repeated layer (\u00d7N) one by one " +
                                 "(Alt+click or U on one repeat)", function () { viewer.toggleAllFolds(); });
    }
    viewer.directionButton = button("\u2192", "Lay the graph out left to right " +
                                    "or top to bottom", function () {
      viewer.update({ direction: viewer.state.direction === "TB" ? "LR" : "TB" });
    });
    var overlay = el("select", { class: "mt-overlay", "aria-label": "Colour boxes by",
                                 title: "Colour boxes by" });
    model.overlays.forEach(function (o) {
      overlay.appendChild(el("option", { value: o }, "By " + (model.overlayName[o] || "kind")));
    });
    overlay.addEventListener("change", function () { viewer.update({ overlay: overlay.value }); });
    bar.appendChild(overlay);
    viewer.overlaySelect = overlay;
    var search = el("input", { type: "search", class: "mt-search", placeholder: "Search /",
                               "aria-label": "Search modules and ops by name (key: /)" });
    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { viewer.search(search.value); }, 120);
    });
    search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        clearTimeout(timer);
        if (search.value !== viewer.query) viewer.search(search.value);
        viewer.nextMatch(event.shiftKey ? -1 : 1);
      } else if (event.key === "Escape") {
        search.value = "";
        viewer.search("");
      }
    });
    bar.appendChild(search);
    viewer.searchInput = search;
    viewer.searchCount = el("span", { class: "mt-count", "aria-live": "polite" });
    bar.appendChild(viewer.searchCount);
    if (viewer.figure.getAttribute("data-downloads") !== "off") {
      var save = el("select", { class: "mt-save", "aria-label": "Download",
                                title: "Download the current view, or the graph" });
      [["", "Save\u2026"], ["svg", "SVG of this view"], ["png", "PNG of this view"],
       ["json", "Graph as JSON"]].forEach(function (o) {
        save.appendChild(el("option", { value: o[0] }, o[1]));
      });
      save.addEventListener("change", function () {
        var kind = save.value;
        save.value = "";
        if (kind === "svg") MT.downloadSVG(viewer);
        else if (kind === "png") MT.downloadPNG(viewer);
        else if (kind === "json") MT.downloadJSON(viewer);
      });
      bar.appendChild(save);
    }
    return bar;
  };
  MT.syncToolbar = function (viewer) {
    var state = viewer.state;
    viewer.depthSelect.value = String(viewer.currentDepth());
    viewer.overlaySelect.value = state.overlay;
    if (viewer.foldButton) viewer.foldButton.textContent = state.unfolded.size ? "Fold" : "Unfold";
    viewer.directionButton.textContent = state.direction === "TB" ? "\u2192" : "\u2193";
  };

  // ------------------------------------------------------------------ side panel
  // Flows into and out of an item: [leaf producer or consumer, key], each once.
  function connections(model, ref) {
    var ins = [], outs = [], seen = new Set(), flows = model.flows;
    for (var f = 0; f < flows.length; f += 3) {
      var a = model.inside(flows[f], ref), b = model.inside(flows[f + 1], ref);
      if (a === b) continue;
      var other = a ? flows[f + 1] : flows[f], key = flows[f + 2], id = (a ? "o" : "i") + other + ":" + key;
      if (seen.has(id)) continue;
      seen.add(id);
      (a ? outs : ins).push([other, key]);
    }
    return { ins: ins, outs: outs };
  }
  MT.connections = connections;

  MT.showPanel = function (viewer, ref) {
    var model = viewer.model, panel = viewer.panel, d = model.details(ref);
    panel.textContent = "";
    var close = el("button", { type: "button", class: "mt-btn mt-close", "aria-label": "Close" }, "\u00d7");
    close.addEventListener("click", function (event) { event.stopPropagation(); viewer.select(-1); });
    panel.appendChild(close);
    panel.appendChild(el("h4", {}, model.label[ref]));
    if (d.heading !== model.label[ref]) panel.appendChild(el("p", { class: "mt-heading" }, d.heading));
    var list = el("dl");
    d.rows.forEach(function (row) {
      list.appendChild(el("dt", {}, row[0]));
      list.appendChild(el("dd", {}, row[1]));
    });
    panel.appendChild(list);
    if (d.code) {
      var pre = el("pre");
      pre.appendChild(el("code", {}, d.code));
      panel.appendChild(pre);
    }
    var links = connections(model, ref);
    [["Inputs", links.ins, "mt-in"], ["Outputs", links.outs, "mt-out"]].forEach(function (part) {
      if (!part[1].length) return;
      panel.appendChild(el("h5", { class: part[2] }, part[0] + " (" + part[1].length + ")"));
      var ul = el("ul", { class: "mt-links" });
      part[1].slice(0, 60).forEach(function (item) {
        var li = el("li"), other = item[0], key = item[1];
        var show = el("button", { type: "button", class: "mt-btn mt-reveal",
                                  "aria-label": "Show " + model.label[other] }, model.label[other]);
        show.addEventListener("click", function (event) {
          event.stopPropagation();
          viewer.reveal(other);
        });
        li.appendChild(show);
        li.appendChild(el("span", { class: "mt-shape-text" }, " " + model.keyTip[key]));
        ul.appendChild(li);
      });
      if (part[1].length > 60) ul.appendChild(el("li", {}, "\u2026 " + (part[1].length - 60) + " more"));
      panel.appendChild(ul);
    });
    panel.hidden = false;
  };

  // ------------------------------------------------------------------ tooltip
  MT.showTooltip = function (viewer, text, event) {
    var tip = viewer.tooltip;
    tip.textContent = text;
    tip.hidden = false;
    var rect = viewer.canvas.getBoundingClientRect();
    var x = event.clientX - rect.left + 14, y = event.clientY - rect.top + 14;
    x = Math.min(x, rect.width - tip.offsetWidth - 4);
    if (y + tip.offsetHeight > rect.height) y = event.clientY - rect.top - tip.offsetHeight - 10;
    tip.style.left = Math.max(4, x) + "px";
    tip.style.top = Math.max(4, y) + "px";
  };

  // ------------------------------------------------------------------ legend
  MT.showLegend = function (viewer, decor) {
    var legend = viewer.legend, overlay = viewer.state.overlay, model = viewer.model;
    legend.textContent = "";
    viewer.figure.classList.toggle("mt-legend-room", overlay !== "none");
    if (overlay === "none" || decor.top < 0) { legend.hidden = true; return; }
    legend.appendChild(el("span", { class: "mt-legend-name" }, model.overlayName[overlay]));
    legend.appendChild(el("span", {}, "0"));
    var bar = el("span", { class: "mt-legend-bar" });
    bar.style.background = "linear-gradient(to right, " + MT.RAMP_STOPS.join(", ") + ")";
    legend.appendChild(bar);
    legend.appendChild(el("span", {}, model.S[model.overlayText[overlay][decor.top]] + " (log scale)"));
    legend.hidden = false;
  };

  // ------------------------------------------------------------------ minimap
  // The whole graph small, with the part on screen framed; clicking or dragging in it
  // moves the view there.
  MT.buildMinimap = function (viewer) {
    var map = document.createElementNS(SVG_NS, "svg");
    map.setAttribute("class", "mt-minimap");
    map.setAttribute("aria-hidden", "true");
    var drag = false;
    function go(event) {
      var r = map.getBoundingClientRect(), p = viewer.placed, s = Math.max(p.width / r.width, p.height / r.height);
      viewer.centerAt((event.clientX - r.left) * s, (event.clientY - r.top) * s);
    }
    map.addEventListener("pointerdown", function (event) {
      event.stopPropagation();
      drag = true;
      map.setPointerCapture(event.pointerId);
      go(event);
    });
    map.addEventListener("pointermove", function (event) { if (drag) go(event); });
    map.addEventListener("pointerup", function () { drag = false; });
    return map;
  };
  MT.drawMinimap = function (viewer) {
    var map = viewer.minimap, p = viewer.placed, parts = [];
    map.setAttribute("viewBox", "0 0 " + MT.num(p.width) + " " + MT.num(p.height));
    p.order.forEach(function (ref) {
      var b = p.boxes.get(ref);
      parts.push('<rect x="' + MT.num(b.x) + '" y="' + MT.num(b.y) + '" width="' + MT.num(b.w) +
                 '" height="' + MT.num(b.h) + '" class="' + (b.open ? "mt-mini-group" : "mt-mini-box") + '"/>');
    });
    map.innerHTML = parts.join("") + '<rect class="mt-mini-view"/>';
    viewer.miniView = map.lastChild;
  };
  MT.frameMinimap = function (viewer, visible) {
    var map = viewer.minimap;
    map.style.display = visible ? "" : "none";
    if (!visible || !viewer.miniView) return;
    var v = viewer.view, r = viewer.svg.getBoundingClientRect(), f = viewer.miniView;
    f.setAttribute("x", MT.num(-v.x / v.k));
    f.setAttribute("y", MT.num(-v.y / v.k));
    f.setAttribute("width", MT.num(r.width / v.k));
    f.setAttribute("height", MT.num(r.height / v.k));
  };

  // ------------------------------------------------------------------ downloads
  function luminance(css) {
    var parts = (css.match(/[\d.]+/g) || ["255", "255", "255"]).slice(0, 3).map(Number);
    var scale = css.indexOf("color(") === 0 ? 1 : 255;
    return (0.2126 * parts[0] + 0.7152 * parts[1] + 0.0722 * parts[2]) / scale;
  }
  // The palette of the page's current theme: what the reader sees, in plain colours.
  MT.pagePalette = function (viewer) {
    var bg = getComputedStyle(viewer.canvas).backgroundColor;
    return luminance(bg) < 0.4 ? MT.PALETTES.dark : MT.PALETTES.light;
  };
  MT.exportSVG = function (viewer) {
    return MT.standaloneSVG(viewer.model, viewer.placed, viewer.state, {
      prefix: viewer.id, palette: MT.pagePalette(viewer), extra: viewer.searchDecor() });
  };
  function fileName(viewer, ext) {
    return viewer.model.label[viewer.model.root].replace(/[^A-Za-z0-9_.-]+/g, "_") + "." + ext;
  }
  MT.downloadSVG = function (viewer) {
    save(new Blob([MT.exportSVG(viewer)], { type: "image/svg+xml" }), fileName(viewer, "svg"));
  };
  MT.downloadJSON = function (viewer) {
    save(new Blob([graphJSON(viewer.model.data)], { type: "application/json" }), fileName(viewer, "json"));
  };
  MT.downloadPNG = function (viewer) {
    return MT.pngBlob(viewer).then(function (blob) { save(blob, fileName(viewer, "png")); });
  };
  // The exported SVG rasterised by the browser, twice its size (less for huge graphs).
  MT.pngBlob = function (viewer) {
    var text = MT.exportSVG(viewer), size = text.match(/width="([\d.]+)" height="([\d.]+)"/);
    var width = +size[1], height = +size[2];
    var scale = Math.min(2, 16384 / Math.max(width, height), Math.sqrt(1.6e8 / (width * height)));
    var url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
    return new Promise(function (resolve, reject) {
      var image = new Image();
      image.onload = function () {
        var canvas = document.createElement("canvas");
        canvas.width = Math.max(1, Math.round(width * scale));
        canvas.height = Math.max(1, Math.round(height * scale));
        var context = canvas.getContext("2d");
        context.scale(scale, scale);
        context.drawImage(image, 0, 0, width, height);
        URL.revokeObjectURL(url);
        canvas.toBlob(function (blob) { if (blob) resolve(blob); else reject(new Error("PNG")); }, "image/png");
      };
      image.onerror = function () { URL.revokeObjectURL(url); reject(new Error("SVG image")); };
      image.src = url;
    });
  };
  function save(blob, name) {
    var url = URL.createObjectURL(blob), a = el("a", { href: url, download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  // The Graph JSON rebuilt from the view data's columns: the bytes Graph.to_json() writes
  // (sorted keys, ASCII escapes), so the download is the file the CLI would write.
  function graphJSON(d) {
    var S = d.strings, mods = d.modules, nodes = d.nodes, tens = d.tensors;
    var moduleIds = MT.idList(mods.id, mods.parent.length), M = moduleIds.length;
    var nodeIds = MT.idList(nodes.id, nodes.parent.length);
    var tensorIds = MT.idList(tens.id, tens.shape.length);
    function stats(columns, index) {
      var out = {};
      for (var f in columns) out[f] = columns[f][index];
      return out;
    }
    function extra(target, extras, index) {
      var more = extras[String(index)] || {};
      for (var key in more) target[key] = more[key];
      return target;
    }
    var modules = moduleIds.map(function (id, i) {
      var rep = mods.repeat[String(i)], src = mods.source[i];
      return extra({
        id: id, path: S[mods.path[i]], cls: S[mods.cls[i]],
        parent: mods.parent[i] >= 0 ? moduleIds[mods.parent[i]] : null,
        children: mods.children[i].map(function (c) { return c < M ? moduleIds[c] : nodeIds[c - M]; }),
        call_index: mods.call[i], extra_repr: S[mods.extra_repr[i]],
        source: src ? { file: S[src[0]], start: src[1], end: src[2] } : null,
        stats: stats(mods.stats, i),
        repeat: rep ? {
          count: rep[0], members: rep[1].map(function (m) { return S[m]; }),
          member_stats: rep[1].map(function (_m, k) { return stats(rep[2], k); }),
          note: S[rep[3]] } : null
      }, mods.extra, i);
    });
    var graphNodes = nodeIds.map(function (id, j) {
      var args = {}, a = nodes.args[j], src = nodes.source[j];
      for (var k = 0; k < a.length; k += 2) args[S[a[k]]] = S[a[k + 1]];
      return extra({
        id: id, kind: S[nodes.kind[j]], name: S[nodes.name[j]],
        category: S[nodes.category[j]], parent: moduleIds[nodes.parent[j]],
        inputs: nodes.inputs[j].map(function (t) { return tensorIds[t]; }),
        outputs: nodes.outputs[j].map(function (t) { return tensorIds[t]; }),
        args: args,
        source: src ? { file: S[src[0]], line: src[1], code: S[src[2]] } : null,
        stats: stats(nodes.stats, j)
      }, nodes.extra, j);
    });
    var tensors = tensorIds.map(function (id, t) {
      return extra({
        id: id, shape: d.shapes[tens.shape[t]], dtype: S[tens.dtype[t]],
        device: S[tens.device[t]],
        producer: tens.producer[t] >= 0 ? nodeIds[tens.producer[t]] : null
      }, tens.extra, t);
    });
    var edges = [];
    for (var e = 0; e < d.edges.length; e += 3) {
      edges.push({ src: nodeIds[d.edges[e]], dst: nodeIds[d.edges[e + 1]],
                   tensor: tensorIds[d.edges[e + 2]] });
    }
    return sortedJSON({ schema_version: d.schema_version, root: moduleIds[d.root], meta: d.meta,
                        modules: modules, nodes: graphNodes, tensors: tensors, edges: edges });
  }
  MT.graphJSON = graphJSON;
  function sortedJSON(value) {
    if (Array.isArray(value)) return "[" + value.map(sortedJSON).join(",") + "]";
    if (value && typeof value === "object") {
      return "{" + Object.keys(value).sort().map(function (key) {
        return asciiJSON(key) + ":" + sortedJSON(value[key]);
      }).join(",") + "}";
    }
    return typeof value === "string" ? asciiJSON(value) : JSON.stringify(value);
  }
  function asciiJSON(text) {
    return JSON.stringify(text).replace(/[\u0080-\uffff]/g, function (c) {
      return "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");
    });
  }
})(globalThis.modelTrace = globalThis.modelTrace || {});
