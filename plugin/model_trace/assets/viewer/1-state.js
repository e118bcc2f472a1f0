/* model-trace, state: the view data decoded (ViewModel) and what the reader chose (ViewState).
 *
 * The view data is written by view_data.py: every label, tooltip line and formatted figure
 * comes from Python; this file only indexes it. ViewState is small and serialisable, as in
 * Model Explorer: the deepest open boxes, the selection, the overlay, the unfolded repeats,
 * the direction and the pan/zoom; it is also the figure's entry in the URL hash.
 * Runs in the browser and, at build time, in an embedded V8 (no DOM here).
 */
(function (MT) {
  "use strict";
  var GROUP = { module: true, chunk: true, idle: true };

  function idList(ids, count) {
    if (typeof ids !== "string") return ids;
    var prefix = ids.slice(0, -1), out = new Array(count);
    for (var i = 0; i < count; i++) out[i] = prefix + i;
    return out;
  }
  MT.idList = idList;

  // ------------------------------------------------------------------ ViewModel
  function ViewModel(data) {
    var S = data.strings, v = data.view, items = v.items, n = items.kind.length, i;
    this.data = data;
    this.S = S;
    this.n = n;
    this.root = v.root;
    this.title = S[v.title];
    this.ids = items.id.map(function (k) { return S[k]; });
    this.kind = items.kind.map(function (k) { return S[k]; });
    this.label = items.label.map(function (k) { return S[k]; });
    this.category = items.category.map(function (k) { return S[k]; });
    this.path = items.path.map(function (k) { return S[k]; });
    this.parent = Int32Array.from(items.parent);
    this.level = Int32Array.from(items.level);
    this.children = items.children;
    this.text = items.text;
    this.caveat = new Set(items.caveat);  // values assumed here, or FLOPs without a formula
    this.marks = MT.readMarks(v);  // highlights, notes, differences (3-marks.js)
    this.overlay = items.overlay;
    this.overlayText = items.overlay_text;
    // what boxes can be coloured by ("none": op kinds), in menu order, with the legend's words
    this.overlays = ["none"].concat(Object.keys(items.overlay_name));
    this.overlayName = {};
    for (var o in items.overlay_name) this.overlayName[o] = S[items.overlay_name[o]];
    this.members = new Map();
    this.memberOf = new Map();
    for (var rep in v.members) {
      this.members.set(+rep, v.members[rep]);
      v.members[rep].forEach(function (m) { this.memberOf.set(m, +rep); }, this);
    }
    this.flows = v.flows;
    this.keyId = v.keys.id.map(function (k) { return S[k]; });
    this.keyLabel = v.keys.label.map(function (k) { return S[k]; });
    this.keyTip = v.keys.tip.map(function (k) { return S[k]; });
    this.keyParam = v.keys.param;
    this.byId = new Map();
    for (i = 0; i < n; i++) this.byId.set(this.ids[i], i);
    // depth in the tree (members sit beside their representative) and pre-order
    this.depth = new Int32Array(n);
    this.order = [];
    var stack = [this.root];
    while (stack.length) {
      var item = stack.pop(), kids = this.children[item];
      this.order.push(item);
      for (var k = kids.length - 1; k >= 0; k--) {
        this.depth[kids[k]] = this.depth[item] + 1;
        stack.push(kids[k]);
      }
    }
    this.memberOf.forEach(function (rep, member) { this.depth[member] = this.depth[rep]; }, this);
    this.maxLevel = 0;
    for (i = 0; i < n; i++) {
      if (this.isGroup(i) && this.children[i].length && this.category[i] !== "idle") {
        this.maxLevel = Math.max(this.maxLevel, this.level[i] + 1);
      }
    }
    this.maxLevel = Math.max(0, this.maxLevel - 1);
  }
  ViewModel.prototype.isGroup = function (ref) { return GROUP[this.kind[ref]] === true; };
  ViewModel.prototype.isOpenable = function (ref) {
    return this.isGroup(ref) && this.children[ref].length > 0;
  };
  // The heading, rows and code line written by details.py.
  ViewModel.prototype.details = function (ref) {
    var t = this.text[ref], S = this.S, rows = [];
    for (var k = 2; k < t.length; k += 2) rows.push([S[t[k]], S[t[k + 1]]]);
    return { heading: S[t[0]], code: S[t[1]], rows: rows };
  };
  ViewModel.prototype.tooltip = function (ref) {
    var d = this.details(ref);
    return [d.heading].concat(d.rows.map(function (r) { return r[0] + ": " + r[1]; }))
      .concat(d.code ? [d.code] : []).join("\n");
  };
  ViewModel.prototype.inside = function (ref, group) {
    while (ref >= 0) {
      if (ref === group) return true;
      ref = this.memberOf.has(ref) ? this.parent[this.memberOf.get(ref)] : this.parent[ref];
    }
    return false;
  };
  // Text the search looks in: the label and the module path.
  ViewModel.prototype.haystack = function (ref) {
    if (!this.hay) this.hay = new Array(this.n);
    if (this.hay[ref] === undefined) {
      this.hay[ref] = (this.label[ref] + " " + this.path[ref]).toLowerCase();
    }
    return this.hay[ref];
  };
  MT.ViewModel = ViewModel;

  // ------------------------------------------------------------------ ViewState
  function ViewState(expanded, selected, overlay, unfolded, direction, view) {
    this.expanded = expanded;            // Set of group refs the reader opened
    this.selected = selected;            // item ref or -1
    this.overlay = overlay;              // one of the model's overlays
    this.unfolded = unfolded || new Set();  // repeats shown member by member
    this.direction = direction || "TB";  // "TB" or "LR"
    this.view = view || null;            // {x, y, k} pan and zoom, null: the first view
  }
  ViewState.prototype.copy = function () {
    return new ViewState(new Set(this.expanded), this.selected, this.overlay,
                         new Set(this.unfolded), this.direction,
                         this.view ? { x: this.view.x, y: this.view.y, k: this.view.k } : null);
  };
  // The groups a fence's `depth: N` opens (levels come from view_tree.py); "Expand all"
  // (Infinity) opens the groups of idle modules too.
  ViewState.atDepth = function (model, depth) {
    var open = new Set();
    for (var i = 0; i < model.order.length; i++) {
      var ref = model.order[i];
      if (model.isGroup(ref) && model.level[ref] <= depth &&
          (model.category[ref] !== "idle" || depth === Infinity)) open.add(ref);
    }
    return open;
  };
  // Open groups that are drawn: open, with children, inside open groups; parents first.
  ViewState.prototype.visibleOpen = function (model) {
    var out = [], stack = [model.root];
    while (stack.length) {
      var ref = stack.pop();
      if (!this.expanded.has(ref) || !model.isOpenable(ref)) continue;
      out.push(ref);
      var kids = model.children[ref];
      for (var i = kids.length - 1; i >= 0; i--) if (model.isGroup(kids[i])) stack.push(kids[i]);
    }
    return out;
  };
  function num(v) { return String(Math.round(v * 10) / 10); }
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
    if (this.direction !== "TB") parts.push("d:" + this.direction);
    if (this.view) {
      parts.push("v:" + num(this.view.x) + "," + num(this.view.y) + "," +
                 Math.round(this.view.k * 1000) / 1000);
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
      } else if (key === "o:" && model.overlays.indexOf(value) >= 0) {
        state.overlay = value;
      } else if (key === "u:") {
        state.unfolded = new Set(value.split(",").map(function (id) { return model.byId.get(id); })
          .filter(function (ref) { return ref !== undefined && model.members.has(ref); }));
      } else if (key === "d:" && (value === "LR" || value === "TB")) {
        state.direction = value;
      } else if (key === "v:") {
        var v = value.split(",").map(Number);
        if (v.length === 3 && v.every(isFinite) && v[2] > 0) state.view = { x: v[0], y: v[1], k: v[2] };
      }
    });
    return state;
  };
  MT.ViewState = ViewState;
})(globalThis.modelTrace = globalThis.modelTrace || {});
