/* model-trace viewer: hydrates the static SVG of every figure.model-trace on the page.
 *
 * Four parts, kept apart as in Model Explorer:
 *   ViewModel  - the view data decoded: items (modules, chunks, ops), their tree and links;
 *   ViewState  - what the reader chose: expanded groups, selection, overlay; its URL form;
 *   Layouts    - one layout per expanded group: build-time seeds, dagre for new groups,
 *                "make room" when a child grows, so nothing else moves needlessly;
 *   render*    - SVG markup with the same classes and attributes as the static SVG.
 * Viewer ties them to the page: pan and zoom, toolbar, tooltip, side panel, search, keys.
 * Everything is served from this site; dagre (vendor/dagre.min.js, MIT) is loaded from next
 * to this file the first time a group needs a new layout.
 */
(function () {
  "use strict";
  if (window.modelTraceViewer) return;

  var SCRIPT_URL = document.currentScript ? document.currentScript.src : "";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var HIDDEN_KINDS = { constant: true, parameter: true };
  var OVERLAYS = [["none", "Colour: op kind"], ["flops", "Colour: FLOPs"],
                  ["params", "Colour: params"], ["memory", "Colour: memory"],
                  ["time", "Colour: est. time"]];
  // Roofline estimate for the "time" overlay when the trace has no measured time:
  // one H100 SXM, dense bf16 tensor cores and HBM3 bandwidth.
  var PEAK_FLOPS = 989e12, PEAK_BYTES = 3.35e12;
  var MIN_ZOOM = 0.03, MAX_ZOOM = 4;

  // ------------------------------------------------------------------ helpers
  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function codePoints(text) { var n = 0; for (var _c of text) n++; return n; }  // like len()
  // A module's name below its box's (view_tree.relative_name), and a run of numbered
  // siblings as "layers.3\u201360" (view_tree.numbered_run): the labels must match Python's.
  function relativeName(path, parentPath) {
    if (!parentPath) return path;
    if (path.indexOf(parentPath + ".") === 0) return path.slice(parentPath.length + 1);
    return path.slice(path.lastIndexOf(".") + 1);
  }
  function numberedRun(names) {
    var dot = names[0].lastIndexOf("."), prefix = names[0].slice(0, dot + 1);
    var first = names[0].slice(dot + 1);
    if (names.length < 2 || !/^[0-9]+$/.test(first)) return null;
    var start = +first;
    for (var i = 0; i < names.length; i++) {
      if (names[i] !== prefix + (start + i)) return null;
    }
    return names[0] + "\u2013" + (start + names.length - 1);
  }
  function num(v) { return String(Math.round(v * 10) / 10); }
  function short(value) {
    var units = [["T", 1e12], ["G", 1e9], ["M", 1e6], ["k", 1e3]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(value) >= units[i][1]) {
        return (value / units[i][1]).toPrecision(3).replace(/\.?0+$/, "") + " " + units[i][0];
      }
    }
    return String(Math.round(value * 1000) / 1000);
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function idList(ids, count) {
    if (typeof ids !== "string") return ids;
    var prefix = ids.slice(0, -1), out = new Array(count);
    for (var i = 0; i < count; i++) out[i] = prefix + i;
    return out;
  }

  // ------------------------------------------------------------------ ViewModel
  function ViewModel(data) {
    var S = data.strings, mods = data.modules, nodes = data.nodes, view = data.view;
    var M = mods.parent.length, N = nodes.parent.length, C = view.chunks.length;
    var T = M + N + C, i, j, G = 0;
    for (var r in mods.repeat) G += Math.max(0, mods.repeat[r][1].length - 1);
    var size = T + G;  // folded members ("ghosts") come after the real items
    this.data = data; this.S = S; this.M = M; this.N = N; this.T = T; this.size = size;
    this.L = data.layout;
    this.root = data.root;
    this.ids = idList(mods.id, M).concat(idList(nodes.id, N));
    this.kind = new Array(size); this.label = new Array(size); this.category = new Array(size);
    this.plainLabel = new Array(size);  // without the ×N of a folded repeat
    this.parent = new Int32Array(size).fill(-1);
    this.children = new Array(size);
    this.hidden = new Uint8Array(size);
    for (j = 0; j < N; j++) {
      var nodeKind = S[nodes.kind[j]];
      this.kind[M + j] = nodeKind;
      this.label[M + j] = S[nodes.name[j]];
      this.category[M + j] = S[nodes.category[j]];
      this.parent[M + j] = nodes.parent[j];
      this.children[M + j] = [];
      if (!view.show_constants && HIDDEN_KINDS[nodeKind]) this.hidden[M + j] = 1;
    }
    for (i = 0; i < M; i++) {
      var path = S[mods.path[i]], cls = S[mods.cls[i]];
      var parentPath = mods.parent[i] >= 0 ? S[mods.path[mods.parent[i]]] : "";
      var name = path ? relativeName(path, parentPath) + ": " + cls : cls;
      var repeat = mods.repeat[String(i)];
      this.kind[i] = "module";
      this.plainLabel[i] = name;
      var run = repeat && path ? numberedRun(repeat[1].map(function (m) {
        return relativeName(S[m], parentPath);
      })) : null;
      this.label[i] = repeat ? (run ? run + ": " + cls : name) + " \u00d7" + repeat[0] : name;
      this.category[i] = "module";
      this.parent[i] = mods.parent[i];
      var hidden = this.hidden;
      this.children[i] = mods.children[i].filter(function (c) { return !hidden[c]; });
    }
    var chunksOf = {}, chunkCount = {};
    for (var k = 0; k < C; k++) {
      var chunk = view.chunks[k], ref = M + N + k, owner = chunk[0];
      chunkCount[owner] = (chunkCount[owner] || 0) + 1;
      this.ids.push(chunk.length > 3 ? S[chunk[3]] : this.ids[owner] + "/" + (chunkCount[owner] - 1));
      this.kind[ref] = "chunk"; this.label[ref] = S[chunk[1]];
      this.category[ref] = chunk.length > 4 ? S[chunk[4]] : "chunk";
      this.parent[ref] = owner; this.children[ref] = chunk[2];
      for (j = 0; j < chunk[2].length; j++) this.parent[chunk[2][j]] = ref;
      (chunksOf[owner] = chunksOf[owner] || []).push(ref);
    }
    // a group keeps the children no synthetic group took, then its synthetic groups
    for (var key in chunksOf) {
      var group = +key, parent = this.parent;
      var kept = this.children[group].filter(function (c) { return parent[c] === group; });
      chunksOf[key].forEach(function (c) { if (kept.indexOf(c) < 0) kept.push(c); });
      this.children[group] = kept;
    }
    for (i = M; i < T; i++) this.plainLabel[i] = this.label[i];
    // the folded members of every repeat, drawn after it when the reader unfolds it
    this.ghosts = new Map();
    this.ghostOf = new Map();
    var next = T;
    for (i = 0; i < M; i++) {
      var rep = mods.repeat[String(i)];
      if (!rep || rep[1].length < 2) continue;
      var refs = [];
      for (j = 1; j < rep[1].length; j++) {
        var member = S[rep[1][j]], cls2 = S[mods.cls[i]];
        var memberParent = mods.parent[i] >= 0 ? S[mods.path[mods.parent[i]]] : "";
        this.ids.push(this.ids[i] + "~" + j);
        this.kind[next] = "member"; this.category[next] = "member";
        this.label[next] = this.plainLabel[next] =
          relativeName(member, memberParent) + ": " + cls2;
        this.parent[next] = this.parent[i]; this.children[next] = [];
        this.ghostOf.set(next, [i, j]);
        refs.push(next++);
      }
      this.ghosts.set(i, refs);
    }
    this.byId = new Map();
    for (i = 0; i < size; i++) this.byId.set(this.ids[i], i);
    // depth in the view tree (chunks count, as in view_tree.depth_of), and module levels
    this.depth = new Int32Array(size); this.level = new Int32Array(size);
    this.order = [];
    var stack = [this.root];
    while (stack.length) {
      var item = stack.pop();
      this.order.push(item);
      var kids = this.children[item];
      for (j = kids.length - 1; j >= 0; j--) {
        var child = kids[j];
        this.depth[child] = this.depth[item] + 1;
        this.level[child] = this.level[item] + (this.isPart(child) ? 0 : 1);
        stack.push(child);
      }
    }
    this.ghostOf.forEach(function (owner, ghost) {
      this.depth[ghost] = this.depth[owner[0]]; this.level[ghost] = this.level[owner[0]];
    }, this);
    this.maxLevel = 0;
    for (i = 0; i < this.order.length; i++) {
      var it = this.order[i];
      if (this.isGroup(it) && this.children[it].length && this.level[it] + 1 > this.maxLevel) {
        this.maxLevel = this.level[it] + 1;
      }
    }
    this.statFields = data.stat_fields;
    this.links = this.liftEdges();
    this.statCache = new Map();
  }

  ViewModel.prototype.isGroup = function (ref) {
    return this.kind[ref] === "module" || this.kind[ref] === "chunk";
  };
  // A chunk of a large module is not a level of its own; the group of idle modules is.
  ViewModel.prototype.isPart = function (ref) {
    return this.kind[ref] === "chunk" && this.category[ref] !== "idle";
  };
  ViewModel.prototype.repeatOf = function (ref) {
    return ref < this.M ? this.data.modules.repeat[String(ref)] : undefined;
  };

  // The tree as drawn with the repeats in `unfolded` unfolded: each such repeat is followed
  // by its members, chained, and its outgoing links leave from the last member.
  ViewModel.prototype.view = function (unfolded) {
    var model = this, kidsCache = new Map(), linksCache = new Map();
    var open = unfolded && unfolded.size ? unfolded : null;
    function kids(ref) {
      var base = model.children[ref];
      if (!open || !model.isGroup(ref)) return base;
      if (!kidsCache.has(ref)) {
        var out = [];
        base.forEach(function (c) {
          out.push(c);
          if (open.has(c) && model.ghosts.has(c)) out.push.apply(out, model.ghosts.get(c));
        });
        kidsCache.set(ref, out);
      }
      return kidsCache.get(ref);
    }
    function links(ref) {
      var base = model.links.get(ref) || [];
      if (!open) return base;
      if (!linksCache.has(ref)) {
        var last = new Map(), extra = [];
        model.children[ref].forEach(function (c) {
          if (!open.has(c) || !model.ghosts.has(c)) return;
          var members = model.ghosts.get(c), chain = [c].concat(members);
          var out = base.filter(function (l) { return l.s === c; })[0];
          var into = base.filter(function (l) { return l.d === c; })[0];
          var tensors = out ? out.tensors : into ? into.tensors : [];
          for (var k = 1; k < chain.length; k++) {
            extra.push({ s: chain[k - 1], d: chain[k], tensors: tensors });
          }
          last.set(c, members[members.length - 1]);
        });
        linksCache.set(ref, base.map(function (l) {
          return last.has(l.s) ? { s: last.get(l.s), d: l.d, tensors: l.tensors } : l;
        }).concat(extra));
      }
      return linksCache.get(ref);
    }
    function label(ref) {
      return open && open.has(ref) ? model.plainLabel[ref] : model.label[ref];
    }
    return { kids: kids, links: links, label: label,
             key: open ? Array.from(open).sort().join(",") : "" };
  };

  // Edges lifted to the lowest common group: the links of every group (view_tree._lift_edges).
  ViewModel.prototype.liftEdges = function () {
    var edges = this.data.edges, M = this.M, links = new Map(), pairs = new Map();
    for (var e = 0; e < edges.length; e += 3) {
      var src = M + edges[e], dst = M + edges[e + 1], tensor = edges[e + 2];
      if (this.hidden[src] || this.hidden[dst]) continue;
      while (this.depth[src] > this.depth[dst]) src = this.parent[src];
      while (this.depth[dst] > this.depth[src]) dst = this.parent[dst];
      while (this.parent[src] !== this.parent[dst]) { src = this.parent[src]; dst = this.parent[dst]; }
      if (src === dst) continue;
      var key = src * this.T + dst, link = pairs.get(key);
      if (!link) {
        link = { s: src, d: dst, tensors: [] };
        pairs.set(key, link);
        var group = this.parent[src];
        if (!links.has(group)) links.set(group, []);
        links.get(group).push(link);
      }
      if (link.tensors.indexOf(tensor) < 0) link.tensors.push(tensor);
    }
    return links;
  };

  ViewModel.prototype.shapeLabel = function (tensor) {
    return "(" + this.data.shapes[this.data.tensors.shape[tensor]].join(", ") + ")";
  };
  ViewModel.prototype.tensorText = function (tensor) {
    return this.shapeLabel(tensor) + " " + this.S[this.data.tensors.dtype[tensor]];
  };
  ViewModel.prototype.linkLabel = function (link) {
    var label = this.shapeLabel(link.tensors[0]);
    return link.tensors.length > 1 ? label + " +" + (link.tensors.length - 1) : label;
  };

  // A stat of an item: modules and ops carry their own, chunks sum their parts.
  ViewModel.prototype.stat = function (ref, field) {
    if (field === "time") return this.time(ref);
    if (this.statFields.indexOf(field) < 0) return 0;
    if (this.ghostOf.has(ref)) {
      var owner = this.ghostOf.get(ref), columns = this.repeatOf(owner[0])[2];
      return columns[field] ? columns[field][owner[1]] : 0;
    }
    if (ref < this.M) return this.data.modules.stats[field][ref];
    if (ref < this.M + this.N) return this.data.nodes.stats[field][ref - this.M];
    var key = field + ref;
    if (!this.statCache.has(key)) {
      var total = 0, kids = this.children[ref];
      for (var i = 0; i < kids.length; i++) total += this.stat(kids[i], field);
      this.statCache.set(key, total);
    }
    return this.statCache.get(key);
  };
  ViewModel.prototype.time = function (ref) {
    var extra = ref < this.M ? this.data.modules.extra[String(ref)] : null;
    if (extra && extra.measured) return extra.measured.wall_time_s;
    return Math.max(this.stat(ref, "flops") / PEAK_FLOPS,
                    this.stat(ref, "activation_bytes") / PEAK_BYTES);
  };
  ViewModel.prototype.metric = function (overlay, ref) {
    var field = { flops: "flops", params: "params", memory: "activation_bytes", time: "time" };
    return this.stat(ref, field[overlay]);
  };

  ViewModel.prototype.moduleInfo = function (ref) {
    var mods = this.data.modules, S = this.S;
    return { path: S[mods.path[ref]], cls: S[mods.cls[ref]], extra: S[mods.extra_repr[ref]],
             source: mods.source[ref], repeat: mods.repeat[String(ref)] };
  };
  // What the tracer assumed at a node, or could not count (Node.assumed, uncounted_flops),
  // in the words of graph.meta.assumptions.
  ViewModel.prototype.caveats = function (ref) {
    var extra = ref >= this.M && ref < this.M + this.N
      ? this.data.nodes.extra[String(ref - this.M)] : null, lines = [];
    if (!extra) return lines;
    if (extra.assumed) {
      var entry = (this.data.meta.assumptions || []).filter(function (a) {
        return a.kind === extra.assumed; })[0];
      lines.push("assumed (" + extra.assumed + ")" + (entry ? ": " + entry.detail : ""));
    }
    if (extra.uncounted_flops) {
      lines.push("FLOPs not counted (no formula): " + extra.uncounted_flops.join(", "));
    }
    return lines;
  };
  ViewModel.prototype.nodeInfo = function (ref) {
    var nodes = this.data.nodes, j = ref - this.M;
    return { name: this.S[nodes.name[j]], kind: this.kind[ref], category: this.category[ref],
             inputs: nodes.inputs[j], outputs: nodes.outputs[j], args: nodes.args[j],
             source: nodes.source[j] };
  };
  // Text the search looks in: label, module path and class.
  ViewModel.prototype.haystack = function (ref) {
    if (!this.hay) this.hay = new Array(this.T);
    if (this.hay[ref] === undefined) {
      var text = this.label[ref];
      if (ref < this.M) text += " " + this.S[this.data.modules.path[ref]];
      this.hay[ref] = text.toLowerCase();
    }
    return this.hay[ref];
  };

  // The Graph JSON, byte for byte what Graph.to_json() gives (sorted keys, ASCII escapes).
  ViewModel.prototype.graphJSON = function () {
    var d = this.data, S = this.S, M = this.M, N = this.N;
    var mods = d.modules, nodes = d.nodes, tens = d.tensors;
    var moduleIds = this.ids.slice(0, M), nodeIds = this.ids.slice(M, M + N);
    var tensorIds = idList(tens.id, tens.shape.length);
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
  };
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

  // ------------------------------------------------------------------ ViewState
  // What the reader chose; small and serialisable: it is also the URL hash entry.
  function ViewState(expanded, selected, overlay, unfolded) {
    this.expanded = expanded;   // Set of group refs (ancestors of a visible one are expanded)
    this.selected = selected;   // item ref or -1
    this.overlay = overlay;     // one of OVERLAYS
    this.unfolded = unfolded || new Set();  // refs of repeats shown member by member
  }
  ViewState.prototype.copy = function () {
    return new ViewState(new Set(this.expanded), this.selected, this.overlay,
                         new Set(this.unfolded));
  };
  // Groups opened by "depth N": the rule of view_tree.expanded_groups.
  ViewState.atDepth = function (model, depth) {
    var open = new Set();
    for (var i = 0; i < model.order.length; i++) {
      var ref = model.order[i];
      if (model.isGroup(ref) && model.level[ref] <= depth &&
          (model.category[ref] !== "idle" || depth === Infinity)) open.add(ref);
    }
    return open;
  };
  ViewState.prototype.visibleOpen = function (model) {
    var out = [], stack = [model.root];
    while (stack.length) {
      var ref = stack.pop();
      if (!this.expanded.has(ref) || !model.children[ref].length) continue;
      out.push(ref);
      var kids = model.children[ref];
      for (var i = kids.length - 1; i >= 0; i--) if (model.isGroup(kids[i])) stack.push(kids[i]);
    }
    return out;
  };
  ViewState.prototype.encode = function (model) {
    var open = this.visibleOpen(model), openSet = new Set(open);
    var deepest = open.filter(function (ref) {
      return !model.children[ref].some(function (c) { return openSet.has(c); });
    });
    var parts = ["e:" + deepest.map(function (r) { return model.ids[r]; }).join(",")];
    if (this.selected >= 0) parts.push("s:" + model.ids[this.selected]);
    if (this.overlay !== "none") parts.push("o:" + this.overlay);
    if (this.unfolded.size) {
      parts.push("u:" + Array.from(this.unfolded).sort(function (a, b) { return a - b; })
        .map(function (r) { return model.ids[r]; }).join(","));
    }
    return parts.join(";");
  };
  ViewState.decode = function (model, text, fallback) {
    var state = fallback.copy();
    text.split(";").forEach(function (part) {
      var key = part.slice(0, 2), value = part.slice(2);
      if (key === "e:") {
        state.expanded = new Set();
        value.split(",").filter(Boolean).forEach(function (id) {
          var ref = model.byId.get(id);
          while (ref !== undefined && ref >= 0) { state.expanded.add(ref); ref = model.parent[ref]; }
        });
      } else if (key === "s:" && model.byId.has(value)) {
        state.selected = model.byId.get(value);
      } else if (key === "o:" && OVERLAYS.some(function (o) { return o[0] === value; })) {
        state.overlay = value;
      } else if (key === "u:") {
        state.unfolded = new Set(value.split(",").map(function (id) { return model.byId.get(id); })
          .filter(function (ref) { return ref !== undefined && model.ghosts.has(ref); }));
      }
    });
    return state;
  };

  // ------------------------------------------------------------------ Layouts
  var NEEDS_DAGRE = {};
  var dagrePromise = null;
  function loadDagre() {
    if (window.dagre) return Promise.resolve(window.dagre);
    if (!dagrePromise) {
      dagrePromise = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = new URL("vendor/dagre.min.js", SCRIPT_URL || location.href).href;
        script.onload = function () { resolve(window.dagre); };
        script.onerror = function () { dagrePromise = null; reject(new Error("dagre did not load")); };
        document.head.appendChild(script);
      });
    }
    return dagrePromise;
  }

  // One group's children placed relative to its inner area; sw/sh are the sizes it assumed,
  // kids the children it placed (a repeat unfolded adds members).
  function GroupLayout(w, h, cx, cy, sw, sh, routes, kids) {
    this.w = w; this.h = h; this.cx = cx; this.cy = cy; this.sw = sw; this.sh = sh;
    this.routes = routes;  // {s, d: child positions, pts: [[x, y]...], bez, lx, ly}
    this.kids = kids;
    this.key = kids.join(",");
    this.sig = sizeSignature(sw, sh);
  }
  function sizeSignature(sw, sh) {
    var parts = new Array(sw.length);
    for (var i = 0; i < sw.length; i++) parts[i] = num(sw[i]) + "x" + num(sh[i]);
    return parts.join(",");
  }

  function Layouts(model) {
    this.model = model;
    this.tree = model.view(null);
    this.current = new Map();   // group ref -> the GroupLayout last shown
    this.history = new Map();   // group ref -> Map(children + sizes -> GroupLayout)
    this.byInput = new Map();   // layout input (sizes, links) -> GroupLayout, see inputKey
    this.dagreRuns = 0;
    this.seed();
  }

  Layouts.prototype.textWidth = function (ref) {
    var L = this.model.L;
    return codePoints(this.tree.label(ref)) * L.charWidth + L.labelPadding;
  };
  Layouts.prototype.size = function (ref, laid) {
    var L = this.model.L, text = this.textWidth(ref), inner = laid.get(ref);
    if (inner) return [Math.max(inner.w + 2 * L.groupPadding, text),
                       inner.h + 2 * L.groupPadding + L.groupTitle];
    var boxy = this.model.isGroup(ref) || this.model.kind[ref] === "member";
    return [Math.max(text, L.minWidth), boxy ? L.moduleHeight : L.nodeHeight];
  };
  Layouts.prototype.remember = function (ref, layout) {
    this.current.set(ref, layout);
    if (!this.history.has(ref)) this.history.set(ref, new Map());
    this.history.get(ref).set(layout.key + "|" + layout.sig, layout);
  };

  // The build-time layouts, with the child sizes they were made for.
  Layouts.prototype.seed = function () {
    var model = this.model, seeds = model.data.view.seeds, byGroup = new Map(), laid = new Map();
    seeds.forEach(function (s) { byGroup.set(s[0], s); });
    for (var i = model.order.length - 1; i >= 0; i--) {
      var ref = model.order[i], s = byGroup.get(ref);
      if (!s) continue;
      var kids = model.children[ref], n = kids.length;
      var cx = new Array(n), cy = new Array(n), sw = new Array(n), sh = new Array(n);
      for (var k = 0; k < n; k++) {
        var size = this.size(kids[k], laid);
        cx[k] = s[3][2 * k]; cy[k] = s[3][2 * k + 1]; sw[k] = size[0]; sh[k] = size[1];
      }
      var routes = s[4].map(function (r) {
        var count = r[2], pts = [];
        for (var p = 0; p < count; p++) pts.push([r[3 + 2 * p], r[4 + 2 * p]]);
        var rest = r.length - 3 - 2 * count;
        return { s: r[0], d: r[1], pts: pts, bez: true,
                 lx: rest === 2 ? r[r.length - 2] : null, ly: rest === 2 ? r[r.length - 1] : null };
      });
      var layout = new GroupLayout(s[1], s[2], cx, cy, sw, sh, routes, kids);
      laid.set(ref, layout);
      this.remember(ref, layout);
      this.byInput.set(this.inputKey(kids, this.tree.links(ref), sw, sh), layout);
    }
  };

  // Lay out every visible open group, children first; throws NEEDS_DAGRE when a group needs
  // a new layout and dagre is not loaded yet.
  Layouts.prototype.update = function (state, fresh) {
    var model = this.model, open = state.visibleOpen(model), laid = new Map();
    this.tree = model.view(state.unfolded);
    for (var i = open.length - 1; i >= 0; i--) {
      var ref = open[i], kids = this.tree.kids(ref), n = kids.length;
      var sw = new Array(n), sh = new Array(n);
      for (var k = 0; k < n; k++) {
        var size = this.size(kids[k], laid);
        sw[k] = size[0]; sh[k] = size[1];
      }
      var key = kids.join(","), sig = sizeSignature(sw, sh), cur = this.current.get(ref);
      var known = this.history.get(ref), layout;
      var same = cur && cur.key === key;
      if (fresh) layout = this.place(ref, kids, sw, sh);
      else if (same && cur.sig === sig) layout = cur;
      else if (known && known.has(key + "|" + sig)) layout = known.get(key + "|" + sig);
      else if (same && grows(cur, sw, sh)) layout = makeRoom(cur, sw, sh);
      else layout = this.place(ref, kids, sw, sh);
      this.remember(ref, layout);
      laid.set(ref, layout);
    }
    return this.compose(laid);
  };

  function grows(layout, sw, sh) {
    for (var i = 0; i < sw.length; i++) {
      if (sw[i] < layout.sw[i] - 0.05 || sh[i] < layout.sh[i] - 0.05) return false;
    }
    return true;
  }

  // Give grown children room without reordering anything. For each grown box, everything
  // below its top moves down (boxes beside it by half, to stay centred on it) and, within
  // its rank's band, everything right of its left edge moves right; both maps are monotone,
  // so boxes that did not overlap cannot overlap. Edges follow the same maps. Boxes above
  // and to the left do not move; nothing moves by more than the growth.
  function makeRoom(layout, sw, sh) {
    var n = sw.length, cx = layout.cx.slice(), cy = layout.cy.slice();
    var w = layout.w, h = layout.h, curW = layout.sw.slice(), curH = layout.sh.slice();
    var routes = layout.routes.map(function (r) {
      return { s: r.s, d: r.d, pts: r.pts.map(function (p) { return [p[0], p[1]]; }),
               bez: r.bez, lx: r.lx, ly: r.ly };
    });
    for (var i = 0; i < n; i++) {
      var dw = sw[i] - curW[i], dh = sh[i] - curH[i];
      if (Math.abs(dw) < 0.05 && Math.abs(dh) < 0.05) continue;
      var x0 = cx[i] - curW[i] / 2, x1 = cx[i] + curW[i] / 2;
      var y0 = cy[i] - curH[i] / 2, y1 = cy[i] + curH[i] / 2;
      var fx = stretch(x0, x1, dw), fy = stretch(y0, y1, dh);
      var inBand = bandTest(y0, y1);
      for (var k = 0; k < n; k++) {
        if (k === i) continue;
        if (inBand(cy[k])) cx[k] = fx(cx[k]);
        cy[k] = fy(cy[k]);
      }
      cx[i] = x0 + sw[i] / 2; cy[i] = y0 + sh[i] / 2;
      curW[i] = sw[i]; curH[i] = sh[i];
      routes.forEach(moveRoute(fx, fy, inBand));
      h += dh;
      for (k = 0; k < n; k++) w = Math.max(w, cx[k] + curW[k] / 2);
    }
    return new GroupLayout(w, h, cx, cy, sw.slice(), sh.slice(), routes, layout.kids);
  }
  function bandTest(y0, y1) {
    return function (y) { return y >= y0 - 0.5 && y <= y1 + 0.5; };
  }
  function moveRoute(fx, fy, inBand) {
    return function (r) {
      r.pts.forEach(function (p) { if (inBand(p[1])) p[0] = fx(p[0]); p[1] = fy(p[1]); });
      if (r.lx !== null) { if (inBand(r.ly)) r.lx = fx(r.lx); r.ly = fy(r.ly); }
    };
  }
  function stretch(a, b, grow) {
    var scale = b > a ? (b - a + grow) / (b - a) : 1;
    return function (v) { return v <= a ? v : v >= b ? v + grow : a + (v - a) * scale; };
  }

  // A new layout: a grid for many boxes without links (layout.grid_layout), else dagre.
  // Groups with the same layout input (experts, repeated layers) share one layout, as
  // groups with the same dot input do at build time; a build-time one is used first.
  Layouts.prototype.place = function (ref, kids, sw, sh) {
    var links = this.tree.links(ref);
    if (!links.length && kids.length >= this.model.L.gridMin) return gridLayout(kids, sw, sh,
                                                                              this.model.L);
    var key = this.inputKey(kids, links, sw, sh), known = this.byInput.get(key);
    if (known) {
      return new GroupLayout(known.w, known.h, known.cx, known.cy, known.sw, known.sh,
                             known.routes, kids);
    }
    var layout = this.runDagre(kids, links, sw, sh);
    this.byInput.set(key, layout);
    return layout;
  };
  // What a layout depends on: the boxes' sizes and the links between positions, with the
  // lengths of their shape labels.
  Layouts.prototype.inputKey = function (kids, links, sw, sh) {
    var model = this.model, position = new Map();
    for (var i = 0; i < kids.length; i++) position.set(kids[i], i);
    return sizeSignature(sw, sh) + "|" + links.map(function (link) {
      return position.get(link.s) + ">" + position.get(link.d) + ":" +
             model.linkLabel(link).length;
    }).join(",");
  };
  function gridLayout(kids, sw, sh, L) {
    var n = kids.length, columns = Math.max(1, Math.ceil(Math.sqrt(n / 2)));
    var rows = Math.ceil(n / columns), widths = [], heights = [], i;
    for (i = 0; i < columns; i++) widths.push(0);
    for (i = 0; i < rows; i++) heights.push(0);
    for (i = 0; i < n; i++) {
      widths[i % columns] = Math.max(widths[i % columns], sw[i]);
      heights[Math.floor(i / columns)] = Math.max(heights[Math.floor(i / columns)], sh[i]);
    }
    var lefts = [0], tops = [0];
    for (i = 1; i < columns; i++) lefts.push(lefts[i - 1] + widths[i - 1] + L.nodeSep);
    for (i = 1; i < rows; i++) tops.push(tops[i - 1] + heights[i - 1] + L.rankSep);
    var cx = [], cy = [];
    for (i = 0; i < n; i++) {
      cx.push(lefts[i % columns] + widths[i % columns] / 2);
      cy.push(tops[Math.floor(i / columns)] + heights[Math.floor(i / columns)] / 2);
    }
    return new GroupLayout(lefts[columns - 1] + widths[columns - 1],
                           tops[rows - 1] + heights[rows - 1], cx, cy, sw.slice(), sh.slice(),
                           [], kids);
  }

  Layouts.prototype.runDagre = function (kids, links, sw, sh) {
    var dagre = window.dagre;
    if (!dagre) throw NEEDS_DAGRE;
    var model = this.model, L = model.L, position = new Map(), i;
    for (i = 0; i < kids.length; i++) position.set(kids[i], i);
    var g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "TB", nodesep: L.nodeSep, ranksep: L.rankSep, edgesep: 8,
                 marginx: 0, marginy: 0 });
    g.setDefaultEdgeLabel(function () { return {}; });
    for (i = 0; i < kids.length; i++) g.setNode(String(i), { width: sw[i], height: sh[i] });
    links.forEach(function (link) {
      var label = model.linkLabel(link);
      g.setEdge(String(position.get(link.s)), String(position.get(link.d)), {
        width: label.length * L.edgeLabelSize * 0.6 + 4, height: L.edgeLabelSize + 4,
        labelpos: "c" });
    });
    dagre.layout(g);
    this.dagreRuns++;
    var cx = new Array(kids.length), cy = new Array(kids.length);
    for (i = 0; i < kids.length; i++) {
      var node = g.node(String(i));
      cx[i] = node.x; cy[i] = node.y;
    }
    var routes = links.map(function (link) {
      var s = position.get(link.s), d = position.get(link.d);
      var edge = g.edge(String(s), String(d));
      return { s: s, d: d, pts: edge.points.map(function (p) { return [p.x, p.y]; }), bez: false,
               lx: edge.x === undefined ? null : edge.x, ly: edge.y === undefined ? null : edge.y };
    });
    var graph = g.graph();
    return new GroupLayout(graph.width || 0, graph.height || 0, cx, cy, sw.slice(), sh.slice(),
                           routes, kids);
  };

  // Absolute boxes and routes: children centred under their group's title (layout._compose).
  Layouts.prototype.compose = function (laid) {
    var model = this.model, tree = this.tree, L = model.L, root = model.root;
    var rootSize = this.size(root, laid);
    var boxes = new Map(), routes = [], order = [root];
    boxes.set(root, { x: 0, y: 0, w: rootSize[0], h: rootSize[1], open: laid.has(root) });
    var stack = [root];
    while (stack.length) {
      var ref = stack.pop(), layout = laid.get(ref);
      if (!layout) continue;
      var outer = boxes.get(ref), kids = layout.kids;
      var left = outer.x + (outer.w - layout.w) / 2, top = outer.y + L.groupPadding + L.groupTitle;
      for (var i = 0; i < kids.length; i++) {
        boxes.set(kids[i], { x: left + layout.cx[i] - layout.sw[i] / 2,
                             y: top + layout.cy[i] - layout.sh[i] / 2,
                             w: layout.sw[i], h: layout.sh[i], open: laid.has(kids[i]) });
        order.push(kids[i]);
      }
      var byPair = new Map();
      tree.links(ref).forEach(function (link) { byPair.set(link.s * model.size + link.d, link); });
      layout.routes.forEach(function (r) {
        var s = kids[r.s], d = kids[r.d];
        routes.push({
          s: s, d: d, link: byPair.get(s * model.size + d), bez: r.bez,
          pts: r.pts.map(function (p) { return [left + p[0], top + p[1]]; }),
          lx: r.lx === null ? null : left + r.lx, ly: r.ly === null ? null : top + r.ly
        });
      });
      for (var j = kids.length - 1; j >= 0; j--) if (laid.has(kids[j])) stack.push(kids[j]);
    }
    return { boxes: boxes, order: order, routes: routes, width: rootSize[0], height: rootSize[1],
             tree: tree };
  };

  // ------------------------------------------------------------------ render
  var FALLBACK = { text: "#1f2328", moduleStroke: "#9aa3ad", nodeStroke: "#6e7781",
                   edge: "#7a7f87", edgeText: "#57606a", modules: ["#f6f8fa", "#eef2f7"],
                   chunk: "#fbfbfc",
                   categories: { linear: "#cfe2ff", matmul: "#d9d2f7", norm: "#d3f0e0",
                                 activation: "#ffe5b4", elementwise: "#eef0f2", reduce: "#fbd5d5",
                                 index: "#f7d9ef", shape: "#f4f4f4", quant: "#ffd8a8",
                                 collective: "#ffc9c9", io: "#ffffff", other: "#eceff3",
                                 member: "#f6f8fa" } };

  function routePath(route) {
    var p = route.pts;
    if (!p.length) return "";
    var d = "M" + num(p[0][0]) + "," + num(p[0][1]), i;
    if (route.bez) {
      for (i = 1; i + 2 < p.length; i += 3) {
        d += " C" + num(p[i][0]) + "," + num(p[i][1]) + " " + num(p[i + 1][0]) + "," +
             num(p[i + 1][1]) + " " + num(p[i + 2][0]) + "," + num(p[i + 2][1]);
      }
      return d;
    }
    // dagre's polyline, smoothed: quadratic curves through the midpoints
    for (i = 1; i < p.length - 1; i++) {
      var mx = (p[i][0] + p[i + 1][0]) / 2, my = (p[i][1] + p[i + 1][1]) / 2;
      d += " Q" + num(p[i][0]) + "," + num(p[i][1]) + " " + num(mx) + "," + num(my);
    }
    var last = p[p.length - 1];
    return d + " L" + num(last[0]) + "," + num(last[1]);
  }

  // SVG markup of a composed layout; `decor` adds search/selection/overlay classes and fills,
  // `titles` adds <title> tooltips (the downloaded SVG has them; the live one has a tooltip).
  function renderSVGContent(model, placed, prefix, decor, titles) {
    var out = [], nodes = [], i, ref, b, label = placed.tree.label;
    for (i = 0; i < placed.order.length; i++) {
      ref = placed.order[i];
      b = placed.boxes.get(ref);
      if (!model.isGroup(ref)) { nodes.push(ref); continue; }
      var chunk = model.kind[ref] === "chunk";
      var folded = model.repeatOf(ref) && label(ref) !== model.plainLabel[ref];
      var cls = "mt-module" + (chunk ? " mt-chunk" : "") + (b.open ? " mt-open" : "") +
                (folded ? " mt-folded" : "") + decor.classes(ref);
      var heat = decor.fill(ref, b.open);
      var fill = heat || (chunk ? FALLBACK.chunk : FALLBACK.modules[model.depth[ref] % 2]);
      var path = ref < model.M ? model.S[model.data.modules.path[ref]] : "";
      out.push('<g class="' + cls + '" data-id="' + esc(model.ids[ref]) + '"' +
               (path ? ' data-path="' + esc(path) + '"' : "") +
               ' tabindex="0" role="button" aria-expanded="' + b.open + '" aria-label="' +
               esc(label(ref)) + '">' +
               (titles ? "<title>" + esc(decor.title(ref)) + "</title>" : "") +
               '<rect x="' + num(b.x) + '" y="' + num(b.y) + '" width="' + num(b.w) +
               '" height="' + num(b.h) + '" rx="6" fill="' + fill + '"' +
               (heat ? ' style="fill:' + heat + '"' : "") + ' stroke="' +
               FALLBACK.moduleStroke + '"/><text x="' + num(b.open ? b.x + 8 : b.x + b.w / 2) +
               '" y="' + num(b.open ? b.y + model.L.groupTitle - 4 : b.y + b.h / 2 + 4) + '"' +
               (b.open ? "" : ' text-anchor="middle"') + ' fill="' + FALLBACK.text + '">' +
               esc(label(ref)) + "</text></g>");
    }
    for (i = 0; i < placed.routes.length; i++) {
      var r = placed.routes[i], shape = r.link ? model.linkLabel(r.link) : "";
      out.push('<g class="mt-edge' + decor.edgeClasses(r) + '" data-src="' + esc(model.ids[r.s]) +
               '" data-dst="' + esc(model.ids[r.d]) + '" data-k="' + i + '">' +
               (titles && r.link ? "<title>" + esc(r.link.tensors.map(model.tensorText, model)
                 .join("\n")) + "</title>" : "") +
               '<path d="' + routePath(r) + '" fill="none" stroke="' + FALLBACK.edge +
               '" marker-end="url(#' + esc(prefix) + '-arrow)"/>' +
               (r.lx !== null ? '<text class="mt-shape" x="' + num(r.lx) + '" y="' +
                 num(r.ly + 3) + '" text-anchor="middle" font-size="10" fill="' +
                 FALLBACK.edgeText + '">' + esc(shape) + "</text>" : "") + "</g>");
    }
    for (i = 0; i < nodes.length; i++) {
      ref = nodes[i];
      b = placed.boxes.get(ref);
      var kind = model.kind[ref], cat = model.category[ref];
      var nodeHeat = decor.fill(ref, false);
      var nodeFill = nodeHeat || FALLBACK.categories[cat] || FALLBACK.categories.other;
      var io = kind === "input" || kind === "output";
      out.push('<g class="mt-node mt-cat-' + esc(cat) + " mt-kind-" + esc(kind) +
               (model.caveats(ref).length ? " mt-caveat" : "") +
               decor.classes(ref) + '" data-id="' + esc(model.ids[ref]) +
               '" tabindex="0" role="button" aria-label="' + esc(label(ref)) + '">' +
               (titles ? "<title>" + esc(decor.title(ref)) + "</title>" : "") +
               '<rect x="' + num(b.x) + '" y="' + num(b.y) + '" width="' + num(b.w) +
               '" height="' + num(b.h) + '" rx="' + (io ? 14 : 4) + '" fill="' + nodeFill + '"' +
               (nodeHeat ? ' style="fill:' + nodeHeat + '"' : "") + ' stroke="' + FALLBACK.nodeStroke + '"/><text x="' + num(b.x + b.w / 2) +
               '" y="' + num(b.y + b.h / 2 + 4) + '" text-anchor="middle" fill="' +
               FALLBACK.text + '">' + esc(label(ref)) + "</text></g>");
    }
    return out.join("");
  }

  // Sequential colour scale for overlays (light yellow to dark red), on a log axis.
  var RAMP = [[255, 247, 188], [254, 196, 79], [236, 112, 20], [153, 52, 4], [82, 20, 2]];
  function rampColor(t) {
    t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    var i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i, a = RAMP[i], b = RAMP[i + 1];
    return "rgb(" + [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * f); })
      .join(",") + ")";
  }
  function rampGradient() {
    return "linear-gradient(to right, " + RAMP.map(function (_c, i) {
      return rampColor(i / (RAMP.length - 1));
    }).join(", ") + ")";
  }

  // ------------------------------------------------------------------ Viewer
  var viewers = [];

  function Viewer(figure) {
    this.figure = figure;
    this.id = figure.id;
    // A <template>, not a <script>: Material's instant navigation re-runs every script of
    // the new page as JavaScript, its type dropped.
    var data = figure.querySelector("template.mt-data");
    this.model = new ViewModel(JSON.parse(data.content.textContent));
    this.layouts = new Layouts(this.model);
    this.svg = figure.querySelector("svg.mt-svg");
    this.canvas = figure.querySelector(".mt-canvas");
    var depth = parseInt(figure.getAttribute("data-depth") || "1", 10);
    var overlay = figure.getAttribute("data-overlay") || "none";
    var opened = new Set(this.model.data.view.open);
    if (!opened.size) opened = ViewState.atDepth(this.model, depth);
    this.initial = new ViewState(opened, -1, overlay === "" ? "none" : overlay);
    this.depth = depth;
    this.state = this.initial.copy();
    this.query = "";
    this.matches = [];
    this.matchIndex = -1;
    this.view = { k: 1, x: 0, y: 0 };
    this.busy = null;
    this.buildChrome();
    this.bindPointer();
    this.bindKeys();
    var fromHash = readHash()[this.id];
    if (fromHash !== undefined) this.state = ViewState.decode(this.model, fromHash, this.initial);
    this.apply(this.state, { keepView: fromHash === undefined, writeHash: false,
                             reveal: this.state.selected });
    figure.setAttribute("data-mt-ready", "");
    viewers.push(this);
  }

  Viewer.prototype.buildChrome = function () {
    var figure = this.figure, self = this, model = this.model;
    figure.classList.add("mt-live");
    var bar = el("div", { class: "mt-toolbar", role: "toolbar",
                          "aria-label": "Graph controls" });
    function button(text, title, action, extra) {
      var b = el("button", Object.assign({ type: "button", class: "mt-btn", title: title,
                                           "aria-label": title }, extra || {}), text);
      b.addEventListener("click", function (event) { event.stopPropagation(); action(); });
      bar.appendChild(b);
      return b;
    }
    button("\u2212", "Zoom out (-)", function () { self.zoomBy(1 / 1.25); });
    button("+", "Zoom in (+)", function () { self.zoomBy(1.25); });
    button("Fit", "Fit to view (0)", function () { self.fit(); });
    button("Full screen", "Full screen", function () { self.toggleFullscreen(); });
    var depth = el("select", { class: "mt-depth", "aria-label": "Depth", title: "Open modules " +
                               "down to this depth" });
    for (var d = 0; d <= model.maxLevel; d++) {
      depth.appendChild(el("option", { value: String(d) }, "Depth " + d));
    }
    depth.value = String(Math.min(this.depth, model.maxLevel));
    depth.addEventListener("change", function () {
      self.update({ expanded: ViewState.atDepth(model, parseInt(depth.value, 10)) });
    });
    bar.appendChild(depth);
    this.depthSelect = depth;
    button("Expand all", "Expand every module", function () {
      self.update({ expanded: ViewState.atDepth(model, Infinity) });
    });
    button("Collapse all", "Collapse to the model's own box", function () {
      self.update({ expanded: new Set([model.root]) });
    });
    if (model.ghosts.size) {
      this.foldButton = button("Unfold", "Show every repeated layer (\u00d7N) one by one " +
                               "(Alt+click or U on one repeat)", function () {
                                 self.toggleAllFolds();
                               });
    }
    button("Tidy", "Lay out every open module afresh", function () { self.tidy(); });
    var overlay = el("select", { class: "mt-overlay", "aria-label": "Colour by" });
    OVERLAYS.forEach(function (o) { overlay.appendChild(el("option", { value: o[0] }, o[1])); });
    overlay.addEventListener("change", function () { self.update({ overlay: overlay.value }); });
    bar.appendChild(overlay);
    this.overlaySelect = overlay;
    var search = el("input", { type: "search", class: "mt-search", placeholder: "Search ( / )",
                               "aria-label": "Search modules and ops by name" });
    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { self.search(search.value); }, 120);
    });
    search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        clearTimeout(timer);
        if (search.value !== self.query) self.search(search.value);
        self.nextMatch(event.shiftKey ? -1 : 1);
      } else if (event.key === "Escape") {
        search.value = "";
        self.search("");
      }
    });
    bar.appendChild(search);
    this.searchInput = search;
    this.searchCount = el("span", { class: "mt-count", "aria-live": "polite" });
    bar.appendChild(this.searchCount);
    if (figure.getAttribute("data-downloads") !== "off") {
      button("SVG", "Download the current view as SVG", function () { self.downloadSVG(); });
      button("PNG", "Download the current view as PNG", function () { self.downloadPNG(); });
      button("JSON", "Download the graph as JSON", function () { self.downloadJSON(); });
    }
    figure.insertBefore(bar, this.canvas);
    this.legend = el("div", { class: "mt-legend", hidden: "" });
    this.canvas.appendChild(this.legend);
    this.tooltip = el("div", { class: "mt-tooltip", role: "tooltip", hidden: "" });
    this.canvas.appendChild(this.tooltip);
    this.panel = el("aside", { class: "mt-panel", hidden: "", "aria-label": "Details" });
    this.canvas.appendChild(this.panel);
    this.svg.removeAttribute("width");
    this.svg.removeAttribute("height");
    this.svg.removeAttribute("viewBox");
    this.svg.setAttribute("tabindex", "-1");
    this.viewport = this.svg.querySelector(".mt-viewport");
    if (!this.viewport) {
      this.viewport = document.createElementNS(SVG_NS, "g");
      this.viewport.setAttribute("class", "mt-viewport");
      this.svg.appendChild(this.viewport);
    }
  };

  // Apply a new state: lay out (loading dagre if a group needs it), render, remember in URL.
  Viewer.prototype.update = function (changes, options) {
    var next = this.state.copy();
    for (var key in changes) next[key] = changes[key];
    return this.apply(next, Object.assign({ keepView: true, writeHash: true }, options || {}));
  };

  Viewer.prototype.apply = function (next, options) {
    var self = this, placed;
    try {
      placed = this.layouts.update(next, options.fresh);
    } catch (error) {
      if (error !== NEEDS_DAGRE) throw error;
      this.figure.classList.add("mt-busy");
      return loadDagre().then(function () {
        self.figure.classList.remove("mt-busy");
        return self.apply(next, options);
      }, function (loadError) {
        self.figure.classList.remove("mt-busy");
        self.showMessage("The layout library could not be loaded: " + loadError.message);
      });
    }
    var anchor = options.anchor !== undefined ? options.anchor : -1;
    var before = anchor >= 0 && this.placed ? this.placed.boxes.get(anchor) : null;
    this.state = next;
    this.placed = placed;
    this.render();
    if (before) {  // keep the clicked box where it was on screen
      var after = placed.boxes.get(anchor);
      this.view.x -= (after.x - before.x) * this.view.k;
      this.view.y -= (after.y - before.y) * this.view.k;
    }
    this.growCanvas();
    if (!options.keepView && options.reveal >= 0) this.centerOn(options.reveal);
    this.applyView();
    if (options.writeHash) writeHash(this.id, this.state.encode(this.model));
    this.depthSelect.value = String(this.currentDepth());
    this.overlaySelect.value = this.state.overlay;
    if (this.foldButton) this.foldButton.textContent = this.state.unfolded.size ? "Fold" : "Unfold";
    if (this.state.selected >= 0) this.showPanel(this.state.selected);
    else this.hidePanel();
    return Promise.resolve();
  };

  Viewer.prototype.currentDepth = function () {
    var model = this.model, open = this.state.visibleOpen(model), deepest = 0;
    open.forEach(function (ref) { deepest = Math.max(deepest, model.level[ref] + 1); });
    return Math.min(Math.max(deepest - 1, 0), model.maxLevel);
  };

  Viewer.prototype.render = function () {
    var self = this, model = this.model, state = this.state, overlay = state.overlay;
    var matched = new Set(this.matches), holders = new Set();
    this.matches.forEach(function (ref) {
      var p = model.parent[ref];
      while (p >= 0) {
        if (self.placed.boxes.has(p) && !self.placed.boxes.get(p).open) holders.add(p);
        p = model.parent[p];
      }
    });
    var top = 0;
    if (overlay !== "none") {
      this.placed.boxes.forEach(function (b, ref) {
        if (!b.open) top = Math.max(top, model.metric(overlay, ref));
      });
    }
    var scale = top > 0 ? Math.log1p(top) : 1;
    var decor = {
      classes: function (ref) {
        return (matched.has(ref) ? " mt-match" : "") + (holders.has(ref) ? " mt-holds-match" : "") +
               (ref === state.selected ? " mt-selected" : "") +
               (overlay !== "none" && !self.placed.boxes.get(ref).open ? " mt-heat" : "");
      },
      edgeClasses: function (r) {
        return state.selected >= 0 && (r.s === state.selected || r.d === state.selected)
          ? " mt-related" : "";
      },
      fill: function (ref, open) {
        if (overlay === "none" || open) return null;
        return rampColor(Math.log1p(model.metric(overlay, ref)) / scale);
      },
      title: function (ref) { return self.describe(ref).join("\n"); }
    };
    this.decor = decor;
    this.viewport.innerHTML = renderSVGContent(model, this.placed, this.id, decor, false);
    this.showLegend(overlay, top);
  };

  Viewer.prototype.showLegend = function (overlay, top) {
    var legend = this.legend;
    legend.textContent = "";
    if (overlay === "none") { legend.hidden = true; return; }
    var name = OVERLAYS.filter(function (o) { return o[0] === overlay; })[0][1].slice(8);
    var unit = overlay === "time" ? " s" : overlay === "memory" ? "B" : "";
    legend.appendChild(el("span", { class: "mt-legend-name" }, name));
    legend.appendChild(el("span", {}, "0"));
    var bar = el("span", { class: "mt-legend-bar" });
    bar.style.background = rampGradient();
    legend.appendChild(bar);
    legend.appendChild(el("span", {}, short(top) + unit + " (log scale)"));
    legend.hidden = false;
  };

  Viewer.prototype.growCanvas = function () {
    var max = parseFloat(getComputedStyle(this.figure).getPropertyValue("--mt-height")) || 640;
    var want = Math.min(max, this.placed.height * this.view.k + 8);
    var current = this.canvas.getBoundingClientRect().height;
    if (want > current + 1 || !this.canvas.style.height) {
      this.canvas.style.height = Math.max(want, 160) + "px";
    }
  };

  // -- pan and zoom
  Viewer.prototype.applyView = function () {
    var v = this.view;
    this.viewport.setAttribute("transform", "translate(" + num(v.x) + "," + num(v.y) +
                               ") scale(" + Math.round(v.k * 10000) / 10000 + ")");
  };
  Viewer.prototype.zoomBy = function (factor, cx, cy) {
    var rect = this.svg.getBoundingClientRect(), v = this.view;
    if (cx === undefined) { cx = rect.width / 2; cy = rect.height / 2; }
    var k = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, v.k * factor));
    v.x = cx - (cx - v.x) * (k / v.k);
    v.y = cy - (cy - v.y) * (k / v.k);
    v.k = k;
    this.applyView();
  };
  var PAN_KEYS = { ArrowLeft: [1, 0], ArrowRight: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
  Viewer.prototype.panBy = function (direction, step) {
    this.view.x += direction[0] * step;
    this.view.y += direction[1] * step;
    this.applyView();
  };
  Viewer.prototype.fit = function () {
    var rect = this.svg.getBoundingClientRect(), p = this.placed, v = this.view;
    var k = Math.min((rect.width - 16) / p.width, (rect.height - 16) / p.height, 1.5);
    v.k = Math.max(MIN_ZOOM, k);
    v.x = (rect.width - p.width * v.k) / 2;
    v.y = Math.max(8, (rect.height - p.height * v.k) / 2);
    this.applyView();
  };
  Viewer.prototype.centerOn = function (ref) {
    var b = this.placed.boxes.get(ref);
    if (!b) return;
    var rect = this.svg.getBoundingClientRect(), v = this.view;
    v.x = rect.width / 2 - (b.x + b.w / 2) * v.k;
    v.y = rect.height / 2 - (b.y + b.h / 2) * v.k;
    this.applyView();
  };
  Viewer.prototype.toGraph = function (clientX, clientY) {
    var rect = this.svg.getBoundingClientRect(), v = this.view;
    return [(clientX - rect.left - v.x) / v.k, (clientY - rect.top - v.y) / v.k];
  };
  Viewer.prototype.toggleFullscreen = function () {
    var figure = this.figure, self = this;
    if (document.fullscreenElement === figure) {
      document.exitFullscreen();
    } else if (figure.classList.contains("mt-maximized")) {
      figure.classList.remove("mt-maximized");
      this.fit();
    } else if (figure.requestFullscreen) {
      figure.requestFullscreen().then(function () { self.fit(); }, function () {
        figure.classList.add("mt-maximized");
        self.fit();
      });
    } else {
      figure.classList.add("mt-maximized");
      this.fit();
    }
  };

  Viewer.prototype.bindPointer = function () {
    var self = this, svg = this.svg, drag = null;
    svg.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      drag = { x: event.clientX, y: event.clientY, vx: self.view.x, vy: self.view.y,
               moved: false, target: event.target };
    });
    svg.addEventListener("pointermove", function (event) {
      if (drag && (drag.moved || Math.abs(event.clientX - drag.x) +
                   Math.abs(event.clientY - drag.y) > 4)) {
        if (!drag.moved) {
          drag.moved = true;
          svg.setPointerCapture(event.pointerId);
          svg.classList.add("mt-panning");
          self.hideTooltip();
        }
        self.view.x = drag.vx + event.clientX - drag.x;
        self.view.y = drag.vy + event.clientY - drag.y;
        self.applyView();
        return;
      }
      self.hover(event);
    });
    svg.addEventListener("pointerup", function (event) {
      var was = drag;
      drag = null;
      svg.classList.remove("mt-panning");
      if (was && !was.moved) self.click(was.target, event);
    });
    svg.addEventListener("pointerleave", function () { self.hideTooltip(); });
    svg.addEventListener("wheel", function (event) {
      if (!event.ctrlKey && !event.metaKey) return;  // plain wheel scrolls the page
      event.preventDefault();
      var rect = svg.getBoundingClientRect();
      self.zoomBy(Math.exp(-event.deltaY * 0.002), event.clientX - rect.left,
                  event.clientY - rect.top);
    }, { passive: false });
  };

  Viewer.prototype.itemOf = function (target) {
    var g = target && target.closest ? target.closest("[data-id]") : null;
    return g && this.svg.contains(g) ? this.model.byId.get(g.getAttribute("data-id")) : undefined;
  };

  // The clicked item keeps the focus through the redraw, so the keys go on working.
  Viewer.prototype.click = function (target, event) {
    var ref = this.itemOf(target);
    if (ref === undefined) return;
    var model = this.model, self = this, done;
    if ((event.altKey || event.shiftKey) && model.repeatOf(ref)) {
      done = this.toggleFold(ref);
    } else if (model.isGroup(ref)) {
      var box = this.placed.boxes.get(ref);
      if (box.open) {  // an open group toggles from its title bar only
        var at = this.toGraph(event.clientX, event.clientY);
        if (at[1] - box.y > model.L.groupPadding + model.L.groupTitle) return;
      }
      done = this.toggle(ref);
    } else {
      done = this.select(ref === this.state.selected ? -1 : ref);
    }
    var id = model.ids[ref];
    done.then(function () { self.focusItem(id); });
  };

  Viewer.prototype.toggle = function (ref) {
    var expanded = new Set(this.state.expanded);
    if (this.placed.boxes.get(ref).open) expanded.delete(ref); else expanded.add(ref);
    return this.update({ expanded: expanded }, { anchor: ref });
  };
  Viewer.prototype.toggleFold = function (ref) {
    var unfolded = new Set(this.state.unfolded);
    if (unfolded.has(ref)) unfolded.delete(ref); else unfolded.add(ref);
    var selected = this.state.selected;
    if (this.model.ghostOf.has(selected) && !unfolded.has(this.model.ghostOf.get(selected)[0])) {
      selected = -1;
    }
    return this.update({ unfolded: unfolded, selected: selected }, { anchor: ref });
  };
  Viewer.prototype.toggleAllFolds = function () {
    var model = this.model, unfolded = new Set();
    if (!this.state.unfolded.size) model.ghosts.forEach(function (_g, ref) { unfolded.add(ref); });
    return this.update({ unfolded: unfolded,
                         selected: model.ghostOf.has(this.state.selected) ? -1
                           : this.state.selected });
  };
  Viewer.prototype.select = function (ref) {
    return this.update({ selected: ref });
  };
  Viewer.prototype.tidy = function () {
    return this.update({}, { fresh: true });
  };

  // -- tooltip and side panel
  Viewer.prototype.describe = function (ref) {
    var model = this.model, lines = [], info, k;
    if (model.kind[ref] === "module") {
      info = model.moduleInfo(ref);
      lines.push((info.path || "<root>") + ": " + info.cls);
      if (info.repeat) {
        var note = model.S[info.repeat[3]];
        lines.push("\u00d7" + info.repeat[0] + (note ? " \u2014 " + note : "") +
                   " (figures below: this one; Alt+click or U to " +
                   (this.state.unfolded.has(ref) ? "fold)" : "unfold)"));
      }
    } else if (model.kind[ref] === "member") {
      var owner = model.ghostOf.get(ref), rep = model.repeatOf(owner[0]);
      lines.push(model.S[rep[1][owner[1]]] + ": " + model.moduleInfo(owner[0]).cls);
      lines.push("member " + (owner[1] + 1) + " of " + rep[1].length + ", folded into " +
                 (model.moduleInfo(owner[0]).path || "<root>"));
    } else if (model.kind[ref] === "chunk") {
      lines.push(model.label[ref]);
    } else {
      info = model.nodeInfo(ref);
      lines.push(info.name + "  [" + info.category + "]");
      if (info.inputs.length) {
        lines.push("in:  " + info.inputs.map(model.tensorText, model).join(", "));
      }
      if (info.outputs.length) {
        lines.push("out: " + info.outputs.map(model.tensorText, model).join(", "));
      }
      for (k = 0; k < info.args.length; k += 2) {
        lines.push(model.S[info.args[k]] + " = " + model.S[info.args[k + 1]]);
      }
    }
    var params = model.stat(ref, "params"), flops = model.stat(ref, "flops");
    var bytes = model.stat(ref, "activation_bytes");
    if (params) lines.push("params " + short(params));
    if (flops) lines.push("FLOPs " + short(flops));
    if (bytes) lines.push("memory " + short(bytes) + "B");
    return lines.concat(model.caveats(ref));
  };

  Viewer.prototype.hover = function (event) {
    var target = event.target, model = this.model, lines = null;
    var edge = target.closest ? target.closest(".mt-edge") : null;
    if (edge && this.svg.contains(edge)) {
      var route = this.placed.routes[+edge.getAttribute("data-k")];
      if (route && route.link) lines = route.link.tensors.map(model.tensorText, model);
    } else {
      var ref = this.itemOf(target);
      if (ref !== undefined) lines = this.describe(ref);
    }
    if (!lines) { this.hideTooltip(); return; }
    var tip = this.tooltip;
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    var rect = this.canvas.getBoundingClientRect();
    var x = event.clientX - rect.left + 14, y = event.clientY - rect.top + 14;
    x = Math.min(x, rect.width - tip.offsetWidth - 4);
    if (y + tip.offsetHeight > rect.height) y = event.clientY - rect.top - tip.offsetHeight - 10;
    tip.style.left = Math.max(4, x) + "px";
    tip.style.top = Math.max(4, y) + "px";
  };
  Viewer.prototype.hideTooltip = function () { this.tooltip.hidden = true; };

  Viewer.prototype.showPanel = function (ref) {
    var model = this.model, panel = this.panel, self = this, info, src;
    panel.textContent = "";
    var close = el("button", { type: "button", class: "mt-btn mt-close", "aria-label": "Close" },
                   "\u00d7");
    close.addEventListener("click", function (event) {
      event.stopPropagation();
      self.select(-1);
    });
    panel.appendChild(close);
    panel.appendChild(el("h4", {}, model.label[ref]));
    var list = el("dl");
    function row(name, value) {
      list.appendChild(el("dt", {}, name));
      list.appendChild(el("dd", {}, value));
    }
    if (model.kind[ref] === "module") {
      info = model.moduleInfo(ref);
      row("path", info.path || "<root>");
      row("class", info.cls);
      if (info.extra) row("config", info.extra);
      if (info.repeat) {
        row("repeat", "\u00d7" + info.repeat[0] + ": " + info.repeat[1].slice(0, 8)
          .map(function (m) { return model.S[m]; }).join(", ") +
          (info.repeat[1].length > 8 ? ", \u2026" : ""));
        if (model.S[info.repeat[3]]) row("note", model.S[info.repeat[3]]);
      }
      src = info.source;
      if (src) row("source", model.S[src[0]] + ":" + src[1] + "\u2013" + src[2]);
    } else if (model.kind[ref] === "member") {
      var owner = model.ghostOf.get(ref), rep = model.repeatOf(owner[0]);
      row("path", model.S[rep[1][owner[1]]]);
      row("class", model.moduleInfo(owner[0]).cls);
      row("repeat", "member " + (owner[1] + 1) + " of " + rep[1].length + "; its internals are " +
          "those of " + (model.moduleInfo(owner[0]).path || "<root>"));
    } else if (model.kind[ref] !== "chunk") {
      info = model.nodeInfo(ref);
      row("op", info.name);
      row("kind", info.kind + " \u00b7 " + info.category);
      info.inputs.forEach(function (t, k) { row("input " + k, model.tensorText(t)); });
      info.outputs.forEach(function (t, k) { row("output " + k, model.tensorText(t)); });
      for (var k = 0; k < info.args.length; k += 2) {
        row(model.S[info.args[k]], model.S[info.args[k + 1]]);
      }
      src = info.source;
    }
    ["params", "flops", "activation_bytes"].forEach(function (field) {
      var value = model.stat(ref, field);
      if (value) row(field === "activation_bytes" ? "memory" : field,
                     value.toLocaleString("en-US") + (field === "activation_bytes" ? " B" : ""));
    });
    panel.appendChild(list);
    if (src && model.kind[ref] !== "module") {
      panel.appendChild(el("p", { class: "mt-source" }, model.S[src[0]] + ":" + src[1]));
      var pre = el("pre"), code = el("code", {}, model.S[src[2]]);
      pre.appendChild(code);
      panel.appendChild(pre);
    }
    panel.hidden = false;
  };
  Viewer.prototype.hidePanel = function () { this.panel.hidden = true; };
  Viewer.prototype.showMessage = function (text) {
    this.panel.textContent = "";
    this.panel.appendChild(el("p", {}, text));
    this.panel.hidden = false;
  };

  // -- search
  Viewer.prototype.search = function (query) {
    var model = this.model, q = query.trim().toLowerCase();
    this.query = query;
    this.matches = [];
    this.matchIndex = -1;
    if (q) {
      for (var i = 0; i < model.order.length; i++) {
        var ref = model.order[i];
        if (ref !== model.root && model.haystack(ref).indexOf(q) >= 0) this.matches.push(ref);
      }
    }
    this.searchCount.textContent = q ? this.matches.length + " found" : "";
    this.render();
  };
  Viewer.prototype.nextMatch = function (step) {
    if (!this.matches.length) return;
    var n = this.matches.length;
    this.matchIndex = ((this.matchIndex + step) % n + n) % n;
    var ref = this.matches[this.matchIndex], model = this.model;
    var expanded = new Set(this.state.expanded), p = model.parent[ref];
    while (p >= 0) { expanded.add(p); p = model.parent[p]; }
    this.searchCount.textContent = (this.matchIndex + 1) + " of " + n;
    var self = this;
    return this.update({ expanded: expanded, selected: ref }).then(function () {
      self.centerOn(ref);
    });
  };

  // -- keyboard
  Viewer.prototype.bindKeys = function () {
    var self = this;
    this.figure.addEventListener("keydown", function (event) {
      var target = event.target, tag = target.tagName;
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
      var handled = true;
      var ref = self.itemOf(target);
      if ((event.key === "Enter" || event.key === " ") && ref !== undefined) {
        var id = self.model.ids[ref];
        if (self.model.isGroup(ref)) {
          self.toggle(ref).then(function () { self.focusItem(id); });
        } else {
          self.select(ref === self.state.selected ? -1 : ref).then(function () {
            self.focusItem(id);
          });
        }
      } else if ((event.key === "u" || event.key === "U") && ref !== undefined &&
                 self.model.repeatOf(ref)) {
        var fid = self.model.ids[ref];
        self.toggleFold(ref).then(function () { self.focusItem(fid); });
      } else if (event.key === "+" || event.key === "=") self.zoomBy(1.25);
      else if (event.key === "-" || event.key === "_") self.zoomBy(1 / 1.25);
      else if (event.key === "0") self.fit();
      else if (PAN_KEYS[event.key]) self.panBy(PAN_KEYS[event.key], event.shiftKey ? 200 : 40);
      else if (event.key === "f" || event.key === "F") self.toggleFullscreen();
      else if (event.key === "/") self.searchInput.focus();
      else if (event.key === "Escape") {
        if (self.figure.classList.contains("mt-maximized")) self.toggleFullscreen();
        else self.select(-1);
      } else handled = false;
      if (handled) { event.preventDefault(); event.stopPropagation(); }
    });
    this.figure.addEventListener("focusin", function (event) {
      var ref = self.itemOf(event.target);
      if (ref === undefined) return;
      var b = self.placed.boxes.get(ref), rect = self.svg.getBoundingClientRect(), v = self.view;
      var x = b.x * v.k + v.x, y = b.y * v.k + v.y;
      if (x < 0 || y < 0 || x + b.w * v.k > rect.width || y + b.h * v.k > rect.height) {
        self.centerOn(ref);
      }
    });
  };
  Viewer.prototype.focusItem = function (id) {
    var g = this.viewport.querySelector('[data-id="' + CSS.escape(id) + '"]');
    if (g) g.focus({ preventScroll: true });
  };

  // -- printing: the whole current view at the page's width, without pan or zoom
  Viewer.prototype.printView = function (printing) {
    var svg = this.svg, p = this.placed;
    if (!p) return;  // still waiting for its first layout
    if (printing) {
      svg.setAttribute("viewBox", "0 0 " + num(p.width) + " " + num(p.height));
      svg.setAttribute("width", num(p.width));
      svg.setAttribute("height", num(p.height));
      this.viewport.removeAttribute("transform");
    } else {
      svg.removeAttribute("viewBox");
      svg.removeAttribute("width");
      svg.removeAttribute("height");
      this.applyView();
    }
  };
  function printAll(printing) {
    viewers.forEach(function (v) { if (v.figure.isConnected) v.printView(printing); });
  }
  window.addEventListener("beforeprint", function () { printAll(true); });
  window.addEventListener("afterprint", function () { printAll(false); });
  var printMedia = window.matchMedia ? window.matchMedia("print") : null;
  if (printMedia && printMedia.addEventListener) {  // print previews, emulated print media
    printMedia.addEventListener("change", function (event) { printAll(event.matches); });
  }

  // -- downloads
  Viewer.prototype.standaloneSVG = function () {
    var p = this.placed, pad = 8;
    var body = renderSVGContent(this.model, p, this.id, this.decor, true);
    var live = this.viewport.querySelectorAll("rect, text, path");
    var doc = new DOMParser().parseFromString(
      '<svg xmlns="' + SVG_NS + '"><g>' + body + "</g></svg>", "image/svg+xml");
    var copies = doc.querySelectorAll("rect, text, path");
    // what the reader sees (theme, overlay) becomes plain attributes
    for (var i = 0; i < copies.length && i < live.length; i++) {
      var style = getComputedStyle(live[i]);
      copies[i].setAttribute("fill", style.fill);
      if (style.stroke && style.stroke !== "none") copies[i].setAttribute("stroke", style.stroke);
    }
    var bg = getComputedStyle(this.canvas).backgroundColor;
    var inner = new XMLSerializer().serializeToString(doc.documentElement.firstChild);
    var arrow = getComputedStyle(this.svg.querySelector(".mt-arrow") || this.svg).fill;
    return '<svg xmlns="' + SVG_NS + '" width="' + num(p.width + 2 * pad) + '" height="' +
      num(p.height + 2 * pad) + '" viewBox="' + -pad + " " + -pad + " " + num(p.width + 2 * pad) +
      " " + num(p.height + 2 * pad) + '" font-family="Helvetica, Arial, sans-serif" ' +
      'font-size="12"><title>' + esc(this.svg.querySelector("title").textContent) + "</title>" +
      '<defs><marker id="' + esc(this.id) + '-arrow" viewBox="0 0 8 8" refX="7" refY="4" ' +
      'markerWidth="7" markerHeight="7" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="' +
      arrow + '"/></marker></defs>' +
      (bg && bg !== "rgba(0, 0, 0, 0)" ? '<rect x="' + -pad + '" y="' + -pad + '" width="100%"' +
        ' height="100%" fill="' + bg + '"/>' : "") + inner + "</svg>";
  };
  Viewer.prototype.fileName = function (ext) {
    var name = this.model.label[this.model.root].replace(/[^A-Za-z0-9_.-]+/g, "_");
    return name + "." + ext;
  };
  Viewer.prototype.downloadSVG = function () {
    save(new Blob([this.standaloneSVG()], { type: "image/svg+xml" }), this.fileName("svg"));
  };
  Viewer.prototype.downloadJSON = function () {
    save(new Blob([this.model.graphJSON()], { type: "application/json" }),
         this.fileName("json"));
  };
  Viewer.prototype.downloadPNG = function () {
    var self = this, p = this.placed;
    return this.pngBlob(p).then(function (blob) { save(blob, self.fileName("png")); });
  };
  // The current view rasterised by the browser: the standalone SVG drawn on a canvas.
  Viewer.prototype.pngBlob = function () {
    var p = this.placed, svgText = this.standaloneSVG();
    var width = p.width + 16, height = p.height + 16;
    var scale = Math.min(2, 16384 / Math.max(width, height), Math.sqrt(1.6e8 / (width * height)));
    var url = URL.createObjectURL(new Blob([svgText], { type: "image/svg+xml" }));
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
        canvas.toBlob(function (blob) { if (blob) resolve(blob); else reject(new Error("PNG")); },
                      "image/png");
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

  // ------------------------------------------------------------------ URL hash
  // "#<figure id>=e:<deepest open ids>;s:<selected>;o:<overlay>&<other figure>=..."
  function readHash() {
    var entries = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var at = part.indexOf("=");
      if (at > 0) {
        try { entries[decodeURIComponent(part.slice(0, at))] = decodeURIComponent(part.slice(at + 1)); }
        catch (_error) { /* not ours */ }
      }
    });
    return entries;
  }
  function writeHash(id, value) {
    var entries = readHash();
    entries[id] = value;
    var text = Object.keys(entries).map(function (key) {
      return encodeURIComponent(key) + "=" + encodeURIComponent(entries[key])
        .replace(/%2C/g, ",").replace(/%3A/g, ":").replace(/%3B/g, ";").replace(/%2F/g, "/");
    }).join("&");
    history.replaceState(history.state, "", "#" + text);
  }
  window.addEventListener("hashchange", function () {
    var entries = readHash();
    viewers = viewers.filter(function (v) { return v.figure.isConnected; });
    viewers.forEach(function (v) {
      if (entries[v.id] !== undefined && entries[v.id] !== v.state.encode(v.model)) {
        var state = ViewState.decode(v.model, entries[v.id], v.initial);
        v.apply(state, { keepView: false, writeHash: false, reveal: state.selected });
      }
    });
  });

  // ------------------------------------------------------------------ start
  function hydrate(root) {
    viewers = viewers.filter(function (v) { return v.figure.isConnected; });
    var figures = root.querySelectorAll("figure.model-trace:not([data-mt-ready])");
    if (!figures.length) return;
    figures.forEach(function (figure) {
      try {
        new Viewer(figure);
      } catch (error) {
        figure.setAttribute("data-mt-ready", "failed");
        console.warn("model-trace: this graph stays static:", error);  // eslint-disable-line
      }
    });
    var warm = function () { loadDagre().catch(function () {}); };
    if (window.requestIdleCallback) window.requestIdleCallback(warm, { timeout: 2000 });
    else setTimeout(warm, 300);
  }

  window.modelTraceViewer = { hydrate: hydrate, viewers: function () { return viewers; },
                              ViewModel: ViewModel, ViewState: ViewState, Layouts: Layouts };
  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(function () { hydrate(document); });  // Material instant nav
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { hydrate(document); });
  } else {
    hydrate(document);
  }
})();
