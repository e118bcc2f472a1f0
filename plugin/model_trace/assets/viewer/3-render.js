/* model-trace, render: the SVG markup of a laid-out state.
 *
 * The same function draws the figure a page ships (at build time, in V8), every state the
 * viewer shows, and the SVG a reader or a fence exports, so they never differ. Colours are
 * plain hex presentation attributes (cairosvg, rsvg-convert and feed readers understand
 * them); the page's stylesheet overrides them through classes to follow its theme. Items
 * come in reading order (a group, its edges, then its children top to bottom, left to right),
 * which is also the order of the keyboard's Tab.
 */
(function (MT) {
  "use strict";
  var C = MT.LAYOUT;
  var FONTS = "Helvetica, Arial, sans-serif";
  var CATEGORIES = { linear: "#2f7cf6", matmul: "#7c5ce6", norm: "#22a566", activation: "#f59f00",
                     elementwise: "#8a94a6", reduce: "#e5484d", index: "#d6409f", shape: "#a0a7b4",
                     quant: "#f76707", collective: "#f03e3e", saved: "#0a7d86", other: "#9aa3b2" };
  // corner radii: modules, ops, and the pills of tensors entering and leaving (half their height)
  var CORNERS = { module: 6, op: 4, pill: 13 };
  function hex(rgb) {
    return "#" + rgb.map(function (v) { return Math.round(v).toString(16).padStart(2, "0"); }).join("");
  }
  function parse(colour) {
    return [1, 3, 5].map(function (i) { return parseInt(colour.slice(i, i + 2), 16); });
  }
  function mix(colour, background, share) {
    var a = parse(colour), b = parse(background);
    return hex(a.map(function (v, i) { return v * share + b[i] * (1 - share); }));
  }
  function palette(dark) {
    var bg = dark ? "#161b22" : "#ffffff", fg = dark ? "#e6edf3" : "#1f2328";
    var categories = {};
    for (var name in CATEGORIES) categories[name] = mix(CATEGORIES[name], bg, dark ? 0.42 : 0.3);
    categories.io = bg;
    return {
      bg: bg, text: fg, muted: dark ? "#9198a1" : "#57606a",
      modules: [mix(fg, bg, 0.04), mix(fg, bg, 0.08)], open: mix(fg, bg, 0.025),
      chunk: mix(fg, bg, 0.02), idle: mix(fg, bg, 0.06), idleText: dark ? "#9198a1" : "#57606a",
      moduleStroke: mix(fg, bg, 0.4), nodeStroke: mix(fg, bg, 0.5), edge: dark ? "#8b949e" : "#6e7781",
      edgeText: dark ? "#9198a1" : "#57606a", input: dark ? "#4493f8" : "#0969da",
      output: dark ? "#f0883e" : "#bc4c00", caveat: "#e5484d", categories: categories
    };
  }
  MT.PALETTES = { light: palette(false), dark: palette(true) };

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  MT.esc = esc;
  function num(v) { return String(Math.round(v * 10) / 10); }
  MT.num = num;

  // Overlay colours: a sequential ramp (light yellow to dark red) on a log axis.
  var RAMP = [[255, 247, 188], [254, 196, 79], [236, 112, 20], [153, 52, 4], [82, 20, 2]];
  function rampColour(t) {
    t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    var i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i, a = RAMP[i], b = RAMP[i + 1];
    return hex([0, 1, 2].map(function (k) { return a[k] + (b[k] - a[k]) * f; }));
  }
  MT.rampColour = rampColour;
  MT.RAMP_STOPS = RAMP.map(function (_c, i) { return rampColour(i / (RAMP.length - 1)); });
  function luminance(colour) {
    var c = parse(colour).map(function (v) {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }
  // Black or white text, whichever contrasts more with the fill (always above 4.5:1).
  function textOn(fill) {
    var l = luminance(fill);
    return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#111111" : "#ffffff";
  }
  MT.contrast = function (a, b) {
    var x = luminance(a), y = luminance(b);
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  };
  MT.textOn = textOn;

  // What the state adds to the plain drawing: overlay colours, selection, search matches.
  function decorate(model, placed, state, extra) {
    var overlay = state.overlay, heat = new Map(), top = -1, topValue = 0;
    if (overlay !== "none") {
      placed.boxes.forEach(function (b, ref) {
        if (b.open) return;
        var value = model.overlay[overlay][ref];
        if (value > topValue) { topValue = value; top = ref; }
      });
      var scale = topValue > 0 ? Math.log1p(topValue * scaleOf(overlay)) : 1;
      placed.boxes.forEach(function (b, ref) {
        if (!b.open) heat.set(ref, rampColour(Math.log1p(model.overlay[overlay][ref] * scaleOf(overlay)) / scale));
      });
    }
    var selected = state.selected, related = [];
    if (selected >= 0 && placed.boxes.has(selected)) {
      placed.routes.forEach(function (r, i) {
        var into = false, from = false;
        r.pairs.forEach(function (p) {
          var a = model.inside(p[0], selected), b = model.inside(p[1], selected);
          if (b && !a) into = true;
          if (a && !b) from = true;
        });
        related[i] = into ? "in" : from ? "out" : "";
      });
    }
    return { overlay: overlay, heat: heat, top: top, selected: selected, related: related,
             matches: (extra && extra.matches) || new Set(),
             holders: (extra && extra.holders) || new Set() };
  }
  // Seconds are tiny: the log axis works on microseconds.
  function scaleOf(overlay) { return overlay === "time" ? 1e6 : 1; }
  MT.decorate = decorate;

  // Path data through route points: cubic pieces that leave and reach every point along
  // the rank axis, straight where two points line up.
  function routePath(pts, lr) {
    var d = "M" + num(pts[0][0]) + "," + num(pts[0][1]);
    for (var i = 1; i < pts.length; i++) {
      var a = pts[i - 1], b = pts[i];
      if (lr ? Math.abs(a[1] - b[1]) < 0.05 : Math.abs(a[0] - b[0]) < 0.05) {
        d += " L" + num(b[0]) + "," + num(b[1]);
      } else if (lr) {
        var mx = (a[0] + b[0]) / 2;
        d += " C" + num(mx) + "," + num(a[1]) + " " + num(mx) + "," + num(b[1]) + " " +
             num(b[0]) + "," + num(b[1]);
      } else {
        var my = (a[1] + b[1]) / 2;
        d += " C" + num(a[0]) + "," + num(my) + " " + num(b[0]) + "," + num(my) + " " +
             num(b[0]) + "," + num(b[1]);
      }
    }
    return d;
  }
  MT.routePath = routePath;

  // The items and edges of a placed state, in reading order.
  function renderContent(model, placed, state, options) {
    var o = options || {}, P = o.palette || MT.PALETTES.light, decor = o.decor ||
      decorate(model, placed, state), prefix = o.prefix, bars = !!o.bars, out = [];
    var lr = placed.direction === "LR", byGroup = new Map();
    placed.routes.forEach(function (r, i) {
      if (!byGroup.has(r.group)) byGroup.set(r.group, []);
      byGroup.get(r.group).push(i);
    });
    var labelsBy = new Map();
    placed.labels.forEach(function (l) {
      if (!labelsBy.has(l.group)) labelsBy.set(l.group, []);
      labelsBy.get(l.group).push(l);
    });
    placed.order.forEach(function (ref) {
      var b = placed.boxes.get(ref);
      out.push(model.isGroup(ref) || model.kind[ref] === "member" ? group(ref, b) : node(ref, b));
      if (!b.open) return;
      (byGroup.get(ref) || []).forEach(function (i) { out.push(edge(placed.routes[i], i)); });
      (labelsBy.get(ref) || []).forEach(function (l) {
        out.push('<text class="mt-shape" x="' + num(l.x) + '" y="' + num(l.y) +
                 '" font-size="' + C.edgeFont + '" fill="' + P.edgeText + '">' +
                 (bars ? "" : esc(l.text)) + "</text>");
      });
    });
    return out.join("");

    function classes(ref) {
      return (decor.matches.has(ref) ? " mt-match" : "") +
             (decor.holders.has(ref) ? " mt-holds-match" : "") +
             (ref === decor.selected ? " mt-selected" : "") + (decor.heat.has(ref) ? " mt-heat" : "");
    }
    function label(ref, x, y, anchor, colour, bold, width) {
      if (bars) {  // zoomed out: a bar where the text would be
        var w = Math.max(8, Math.min(width, MT.textWidth(model.label[ref], C.font, bold)));
        var x0 = anchor === "middle" ? x - w / 2 : x;
        return '<rect class="mt-bar" x="' + num(x0) + '" y="' + num(y - 8) + '" width="' + num(w) +
               '" height="8" rx="2" fill="' + colour + '" fill-opacity="0.45"/>';
      }
      return '<text x="' + num(x) + '" y="' + num(y) + '"' +
             (anchor === "middle" ? ' text-anchor="middle"' : "") +
             (bold ? ' font-weight="bold"' : "") + ' fill="' + colour + '">' +
             esc(model.label[ref]) + "</text>";
    }
    function title(ref) {
      return "<title>" + esc(model.tooltip(ref)) + "</title>";
    }
    function group(ref, b) {
      var kind = model.kind[ref], idle = model.category[ref] === "idle";
      var folded = model.members.has(ref) && !state.unfolded.has(ref);
      var cls = "mt-module" + (kind === "chunk" ? " mt-chunk" : "") + (idle ? " mt-idle" : "") +
                (kind === "member" ? " mt-kind-member" : "") + (b.open ? " mt-open" : "") +
                (folded ? " mt-folded" : "") + classes(ref);
      var heat = decor.heat.get(ref), muted = idle || kind === "member";  // as the stylesheet
      var fill = heat || (b.open ? P.open : muted ? P.idle : kind === "chunk" ? P.chunk :
                 P.modules[model.depth[ref] % 2]);
      var text = heat ? textOn(heat) : muted ? P.idleText : P.text;
      var dash = muted || kind === "chunk" ? ' stroke-dasharray="4 3"' : "";
      var path = model.path[ref];
      return '<g class="' + cls + '" data-id="' + esc(model.ids[ref]) + '"' +
             (path && kind === "module" ? ' data-path="' + esc(path) + '"' : "") +
             ' tabindex="0" role="button"' + (kind === "member" ? "" : ' aria-expanded="' + b.open + '"') +
             ' aria-label="' + esc(model.label[ref]) + '">' + title(ref) +
             '<rect x="' + num(b.x) + '" y="' + num(b.y) + '" width="' + num(b.w) + '" height="' +
             num(b.h) + '" rx="' + CORNERS.module + '" fill="' + fill + '" stroke="' + P.moduleStroke +
             '"' + dash + "/>" +
             (b.open ? label(ref, b.title[0], b.title[1] + 10, "start", text, true, b.w)
                     : label(ref, b.x + b.w / 2, b.y + b.h / 2 + 4, "middle", text, false, b.w - 8)) +
             MT.markSVG(model, placed, ref, b, CORNERS.module) + "</g>";
    }
    function node(ref, b) {
      var kind = model.kind[ref], cat = model.category[ref], heat = decor.heat.get(ref);
      var fill = heat || P.categories[cat] || P.categories.other;
      var io = kind === "input" || kind === "output" || kind === "shared";
      var corner = io ? CORNERS.pill : CORNERS.op;
      var caveat = model.caveat.has(ref);
      return '<g class="mt-node mt-cat-' + esc(cat) + " mt-kind-" + esc(kind) +
             (caveat ? " mt-caveat" : "") + classes(ref) +
             '" data-id="' + esc(model.ids[ref]) + '" tabindex="0" role="button" aria-label="' +
             esc(model.label[ref]) + '">' + title(ref) +
             '<rect x="' + num(b.x) + '" y="' + num(b.y) + '" width="' + num(b.w) + '" height="' +
             num(b.h) + '" rx="' + corner + '" fill="' + fill + '" stroke="' +
             (caveat ? P.caveat + '" stroke-dasharray="3 2" stroke-width="1.5' : P.nodeStroke) +
             '"/>' + label(ref, b.x + b.w / 2, b.y + b.h / 2 + 4, "middle",
                           heat ? textOn(heat) : P.text, false, b.w - 8) +
             MT.markSVG(model, placed, ref, b, corner) + "</g>";
    }
    function edge(r, i) {
      var rel = decor.related[i] || "", param = r.keys.length && r.keys[0] >= 0 &&
        model.keyParam[r.keys[0]] === 1;
      var colour = rel === "in" ? P.input : rel === "out" ? P.output : P.edge;
      var toPort = r.dst.indexOf(":") >= 0, end = r.pts[r.pts.length - 1];
      var tip = r.keys[0] < 0 ? "" : r.keys.map(function (k) { return model.keyTip[k]; }).join("\n");
      return '<g class="mt-edge' + (param ? " mt-param" : "") + (rel ? " mt-" + rel : "") +
             '" data-src="' + esc(r.src) + '" data-dst="' + esc(r.dst) + '">' +
             (tip ? "<title>" + esc(tip) + "</title>" : "") +
             '<path d="' + routePath(r.pts, lr) + '" fill="none" stroke="' + colour + '"' +
             (rel ? ' stroke-width="2"' : "") + (param ? ' stroke-dasharray="4 3"' : "") +
             (toPort ? "" : ' marker-end="url(#' + esc(prefix) + "-arrow" + (rel ? "-" + rel : "") + ')"') +
             "/>" + (toPort ? '<circle cx="' + num(end[0]) + '" cy="' + num(end[1]) +
                              '" r="2.5" fill="' + colour + '"/>' : "") + "</g>";
    }
  }
  MT.renderContent = renderContent;

  function markers(prefix, P) {
    return "<defs>" + [["", P.edge], ["-in", P.input], ["-out", P.output]].map(function (m) {
      return '<marker id="' + esc(prefix) + "-arrow" + m[0] + '" viewBox="0 0 8 8" refX="7" ' +
             'refY="4" markerWidth="7" markerHeight="7" markerUnits="userSpaceOnUse" ' +
             'orient="auto"><path d="M0,0 L8,4 L0,8 z" class="mt-arrow" fill="' + m[1] + '"/></marker>';
    }).join("") + "</defs>";
  }
  MT.markers = markers;

  // The <svg> a page ships: sized to the graph, at most its natural width and at least the
  // width at which 12 px labels still read as 8 px (the stylesheet makes it fill the column).
  MT.pageSVG = function (model, placed, state, prefix) {
    var P = MT.PALETTES.light, w = num(placed.width), h = num(placed.height);
    return '<svg xmlns="http://www.w3.org/2000/svg" class="mt-svg" id="' + esc(prefix) +
      '-svg" viewBox="0 0 ' + w + " " + h + '" width="' + w + '" height="' + h +
      '" style="max-width:' + w + "px;min-width:" + num(placed.width * MT.READABLE / C.font) +
      'px" role="group" aria-labelledby="' + esc(prefix) + '-title" font-family="' + FONTS +
      '" font-size="' + C.font + '"><title id="' + esc(prefix) + '-title">' + esc(model.title) +
      "</title>" + markers(prefix, P) + '<g class="mt-viewport">' +
      renderContent(model, placed, state, { prefix: prefix, palette: P }) + "</g></svg>";
  };
  MT.READABLE = 8;  // px: the smallest text size the first view allows

  // A standalone SVG file of a state: a margin, the background, the overlay's legend.
  MT.standaloneSVG = function (model, placed, state, options) {
    var o = options || {}, P = o.palette || MT.PALETTES.light, pad = 8, prefix = o.prefix || "model-trace";
    var decor = decorate(model, placed, state, o.extra);
    var legend = state.overlay !== "none" && decor.top >= 0 && o.legend !== false;
    var w = placed.width + 2 * pad, h = placed.height + 2 * pad + (legend ? 28 : 0);
    var body = renderContent(model, placed, state, { prefix: prefix, palette: P, decor: decor });
    return '<svg xmlns="http://www.w3.org/2000/svg" width="' + num(w) + '" height="' + num(h) +
      '" viewBox="' + -pad + " " + -pad + " " + num(w) + " " + num(h) + '" font-family="' + FONTS +
      '" font-size="' + C.font + '"><title>' + esc(model.title) + "</title>" + markers(prefix, P) +
      '<rect x="' + -pad + '" y="' + -pad + '" width="' + num(w) + '" height="' + num(h) +
      '" fill="' + P.bg + '"/>' + body +
      (legend ? legendSVG(model, decor, state.overlay, placed.height + 12, prefix, P) : "") + "</svg>";
  };
  function legendSVG(model, decor, overlay, y, prefix, P) {
    var stops = MT.RAMP_STOPS.map(function (c, i) {
      return '<stop offset="' + i / (MT.RAMP_STOPS.length - 1) + '" stop-color="' + c + '"/>';
    }).join("");
    var name = model.overlayName[overlay], x = MT.textWidth(name, 11, true) + 8;
    return '<g class="mt-legend-svg" font-size="11"><defs><linearGradient id="' + esc(prefix) +
      '-ramp">' + stops + '</linearGradient></defs><text x="0" y="' + num(y + 9) +
      '" font-weight="bold" fill="' + P.text + '">' + esc(name) + '</text><text x="' + num(x) +
      '" y="' + num(y + 9) + '" fill="' + P.text + '">0</text><rect x="' + num(x + 12) + '" y="' +
      num(y) + '" width="120" height="10" rx="2" fill="url(#' + esc(prefix) + '-ramp)"/><text x="' +
      num(x + 138) + '" y="' + num(y + 9) + '" fill="' + P.text + '">' +
      esc(model.S[model.overlayText[overlay][decor.top]]) + " (log scale)</text></g>";
  }

  // Build time: the figure's first view, as the page ships it (called from engine.py).
  MT.drawFigure = function (data, options) {
    var model = new MT.ViewModel(typeof data === "string" ? JSON.parse(data) : data);
    var state = MT.initialState(model, options);
    var placed = new MT.Layout(model).run(state);
    var result = { width: placed.width, height: placed.height };
    if (options.standalone) {
      result.svg = MT.standaloneSVG(model, placed, state, {
        prefix: options.prefix, palette: MT.PALETTES[options.theme === "dark" ? "dark" : "light"],
        legend: options.legend !== false });
    } else {
      result.svg = MT.pageSVG(model, placed, state, options.prefix);
    }
    return result;
  };
  // The state a figure opens in: `depth` levels open, the fence's overlay and direction;
  // or any state the reader can reach, encoded as the page's address encodes it.
  MT.initialState = function (model, options) {
    var depth = options.depth < 0 ? Infinity : options.depth;
    var state = new MT.ViewState(MT.ViewState.atDepth(model, depth), -1,
                                 options.overlay || "none", new Set(), options.direction || "TB");
    return options.state ? MT.ViewState.decode(model, options.state, state) : state;
  };
})(globalThis.modelTrace = globalThis.modelTrace || {});
