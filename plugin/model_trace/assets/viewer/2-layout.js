/* model-trace, layout: where every box, port and edge of the current state goes.
 *
 * 1. What is drawn: the root, and the children of every open group. Each flow (a tensor
 *    from one leaf to another, see view_tree.py) runs from the drawn item that shows its
 *    producer to the one that shows its consumer. Where it leaves an open box it passes a
 *    port on the box's bottom border, `<box>:out:<key>`; where it enters one, a port on the
 *    top border, `<box>:in:<key>` (as ELK's hierarchical layouts draw it). So inside every
 *    open group the flow is a small graph: its children, its own ports, and links between.
 * 2. Each open group is laid out on its own, deepest first (a group's size is known before
 *    its parent is laid out), as a layered graph (Sugiyama): ranks by longest path, with a
 *    rank between two rows of boxes for the shape labels; dummy nodes on long links; orders
 *    by barycentre sweeps, keeping the one with fewest crossings; positions along a rank by
 *    repeated weighted least squares under the ordering constraints (pool-adjacent-
 *    violators), which draws chains straight; labels are laid out like boxes, so they never
 *    overlap. An edge runs straight across each rank it passes and bends only in the gaps
 *    between ranks, so no curve runs through a label or a box. Group layouts are cached by
 *    their input: opening a box lays out that box and its ancestors, and equal groups
 *    (repeated layers) are laid out once.
 * 3. Positions are composed top-down into absolute coordinates.
 * Directions: "TB" (top to bottom) and "LR" (left to right: the same algorithm on swapped
 * axes). Runs in the browser and, at build time, in an embedded V8.
 */
(function (MT) {
  "use strict";
  var C = MT.LAYOUT = {
    font: 12, titleFont: 12, edgeFont: 10,
    nodeHeight: 26, moduleHeight: 30, padX: 10, minWidth: 44,
    pad: 8, titleHeight: 14,
    nodeSep: 14, thinSep: 5, boxToLine: 9, gridMin: 9, rankGap: 6, labelHeight: 11, emptyLabelRank: 8, endSpread: 9
  };

  // ------------------------------------------------------------------ what is drawn
  // The drawn tree of a state: open groups, the children each shows (members of an unfolded
  // repeat right after it), and the visible stand-in of every item.
  function Scene(model, state) {
    this.model = model;
    this.state = state;
    this.open = new Set(state.visibleOpen(model));
    this.kids = new Map();
    var self = this;
    this.open.forEach(function (ref) {
      var out = [];
      model.children[ref].forEach(function (c) {
        out.push(c);
        if (state.unfolded.has(c) && model.members.has(c)) {
          out.push.apply(out, model.members.get(c));
        }
      });
      self.kids.set(ref, out);
    });
    this.shown = new Map();  // item -> the drawn item that shows it
  }
  Scene.prototype.visible = function (ref) {
    var found = this.shown.get(ref);
    if (found !== undefined) return found;
    var parent = this.model.parent[ref];
    found = parent < 0 || this.open.has(parent) ? ref : this.visible(parent);
    this.shown.set(ref, found);
    return found;
  };

  // The links of every open group: {from, to} ends are "c<child>" or "c<child>:<key>" (a
  // port of an open child) or "i:<key>"/"o:<key>" (the group's own ports); keys are the
  // flows' keys (tensors, weights), pairs the (producer, consumer) stand-ins they carry.
  function routeFlows(scene) {
    var model = scene.model, flows = model.flows, groups = new Map();
    function group(ref) {
      var g = groups.get(ref);
      if (!g) {
        g = { links: [], byEnds: new Map(), ins: [], outs: [], inSet: new Set(),
              outSet: new Set() };
        groups.set(ref, g);
      }
      return g;
    }
    function link(ref, from, to, key, pair) {
      var g = group(ref), ends = from + ">" + to, l = g.byEnds.get(ends);
      if (!l) {
        l = { from: from, to: to, keys: [], pairs: [], pairSet: new Set() };
        g.byEnds.set(ends, l);
        g.links.push(l);
      }
      if (l.keys.indexOf(key) < 0) l.keys.push(key);
      var pk = pair[0] + "," + pair[1];
      if (!l.pairSet.has(pk)) { l.pairSet.add(pk); l.pairs.push(pair); }
    }
    function port(ref, side, key) {
      var g = group(ref), set = side === "i" ? g.inSet : g.outSet;
      if (!set.has(key)) { set.add(key); (side === "i" ? g.ins : g.outs).push(key); }
    }
    function end(child, key) { return scene.open.has(child) ? "c" + child + ":" + key : "c" + child; }
    // an unfolded repeat is a chain: the representative, then each member; what leaves the
    // representative goes into its first member, and leaves the last one for the consumer
    var unfolded = new Map(), leaving = new Set();
    scene.state.unfolded.forEach(function (rep) {
      if (model.members.has(rep) && scene.open.has(model.parent[rep])) {
        unfolded.set(rep, model.members.get(rep));
      }
    });
    for (var f = 0; f < flows.length; f += 3) {
      var a = scene.visible(flows[f]), b = scene.visible(flows[f + 1]), key = flows[f + 2];
      if (a === b) continue;
      var rep = outerRep(model, a, unfolded);
      if (rep >= 0 && !model.inside(b, rep)) {
        var members = unfolded.get(rep);
        route(a, members[0], key);
        route(members[members.length - 1], b, key);
        leaving.add(rep);
      } else {
        route(a, b, key);
      }
    }
    unfolded.forEach(function (members, rep) {
      var chain = leaving.has(rep) ? members : [rep].concat(members);
      for (var c = 1; c < chain.length; c++) {
        link(model.parent[rep], "c" + chain[c - 1], "c" + chain[c], -1, [chain[c - 1], chain[c]]);
      }
    });
    function route(a, b, key) {
      var pair = [a, b], x = a, y = b, up = [], down = [];
      while (model.depth[x] > model.depth[y]) { up.push(x); x = parentOf(model, x); }
      while (model.depth[y] > model.depth[x]) { down.push(y); y = parentOf(model, y); }
      while (parentOf(model, x) !== parentOf(model, y)) {
        up.push(x); down.push(y); x = parentOf(model, x); y = parentOf(model, y);
      }
      if (x === y) return;
      // producer side: out of every open box between the producer and the common group
      var from = "c" + a;
      for (var i = 0; i < up.length; i++) {
        var g = parentOf(model, up[i]);
        port(g, "o", key);
        link(g, from, "o:" + key, key, pair);
        from = "c" + g + ":" + key;
      }
      var lca = parentOf(model, x), toEnd = down.length ? end(y, key) : "c" + b;
      link(lca, up.length ? "c" + x + ":" + key : "c" + a, toEnd, key, pair);
      // consumer side: into every open box down to the consumer
      for (var j = down.length - 1; j >= 0; j--) {
        var h = parentOf(model, down[j]);
        port(h, "i", key);
        link(h, "i:" + key, j > 0 ? end(down[j], key) : "c" + b, key, pair);
      }
    }
    return groups;
  }
  function parentOf(model, ref) {
    return model.memberOf.has(ref) ? model.parent[model.memberOf.get(ref)] : model.parent[ref];
  }
  // The unfolded repeat a drawn item lies in (or is), else -1.
  function outerRep(model, ref, unfolded) {
    for (var r = ref; r >= 0; r = model.parent[r]) if (unfolded.has(r)) return r;
    return -1;
  }

  // ------------------------------------------------------------------ sizes
  function boxSize(model, ref) {
    var group = model.isGroup(ref) || model.kind[ref] === "member";
    var w = Math.max(C.minWidth, Math.ceil(MT.textWidth(model.label[ref], C.font, false)) +
                     2 * C.padX);
    return [w, group ? C.moduleHeight : C.nodeHeight];
  }
  function keyLabel(model, keys) {
    if (keys[0] < 0) return "";
    var text = model.keyLabel[keys[0]];
    return keys.length > 1 ? text + " +" + (keys.length - 1) : text;
  }
  MT.keyLabel = keyLabel;

  // ------------------------------------------------------------------ one group
  // Lays out one open group: `kids` with their sizes (and port offsets for open ones),
  // its own ports, its links. Returns positions in the group's own frame (0, 0 at its
  // top-left corner). "along" is the axis a rank spreads on (x in TB), "across" the axis
  // ranks follow (y in TB).
  function layoutGroup(input) {
    if (!input.links.length && input.kids.length >= C.gridMin) return gridGroup(input);
    var lr = input.direction === "LR", nodes = [], edges = [], i;
    function add(node) {
      node.id = nodes.length; node.ins = []; node.outs = []; nodes.push(node);
      return node;
    }
    function edge(a, b, offA, offB, minlen) {
      var e = { a: a, b: b, offA: offA, offB: offB, minlen: minlen };
      a.outs.push(e); b.ins.push(e); edges.push(e);
      return e;
    }
    input.kids.forEach(function (kid, k) {
      var along = lr ? kid.h : kid.w, across = lr ? kid.w : kid.h;
      add({ type: "box", kid: k, lu: along / 2, ru: along / 2, size: across, key0: k });
    });
    var title = lr ? null : add({ type: "title", lu: 0, ru: input.titleWidth,
                                  size: C.titleHeight, key0: -1e9 });
    var inPort = new Map(), outPort = new Map();
    input.ins.forEach(function (key) {
      inPort.set(key, add({ type: "in", key: key, lu: 3, ru: 3, size: 0 }));
    });
    input.outs.forEach(function (key) {
      outPort.set(key, add({ type: "out", key: key, lu: 3, ru: 3, size: 0 }));
    });
    function endOf(e, side) {
      if (e[0] === "i") return { node: inPort.get(+e.slice(2)), off: 0, plain: false };
      if (e[0] === "o") return { node: outPort.get(+e.slice(2)), off: 0, plain: false };
      var colon = e.indexOf(":"), kid = +(colon < 0 ? e.slice(1) : e.slice(1, colon));
      if (colon < 0) return { node: nodes[kid], off: 0, plain: true };
      return { node: nodes[kid], off: portOffset(input.kids[kid], side, +e.slice(colon + 1), lr),
               plain: false };
    }
    var fans = new Map(), backs = backLinks(input.links, input.kids.length);
    input.links.forEach(function (l, index) {
      var s = endOf(l.from, "out"), t = endOf(l.to, "in");
      var back = backs.has(index);
      var info = { s: s, t: t, back: back, fan: null, edge: null };
      if (l.label && s.plain && !back) {
        var fanKey = s.node.id + "|" + l.label + "|" + l.keys.join(",");
        var fan = fans.get(fanKey);
        if (!fan) {
          var tw = Math.ceil(MT.textWidth(l.label, C.edgeFont, false));
          fan = add(lr ? { type: "label", text: l.label, lu: C.labelHeight + 2, ru: 3,
                           size: tw + 8, textWidth: tw }
                       : { type: "label", text: l.label, lu: 3, ru: tw + 6,
                           size: C.labelHeight, textWidth: tw });
          fan.fanEdge = edge(s.node, fan, 0, 0, 1);
          fans.set(fanKey, fan);
        }
        info.fan = fan;
        info.edge = edge(fan, t.node, 0, t.off, 1);
      } else if (back) {
        info.edge = edge(t.node, s.node, t.off, s.off, 2);
      } else {
        info.edge = edge(s.node, t.node, s.off, t.off, 2);
      }
      l.info = info;
    });
    // -- ranks: longest path (boxes on even ranks, their labels on the odd rank below)
    var topo = topological(nodes);
    nodes.forEach(function (nd) { nd.rank = nd.type === "box" || nd.type === "label" ? 2 : 0; });
    topo.forEach(function (nd) {
      nd.ins.forEach(function (e) { nd.rank = Math.max(nd.rank, e.a.rank + e.minlen); });
    });
    for (i = topo.length - 1; i >= 0; i--) {  // a source moves down to its first consumer
      var nd = topo[i];
      if (nd.type !== "box" || nd.ins.length || !nd.outs.length) continue;
      var lowest = Infinity;
      nd.outs.forEach(function (e) {
        if (e.b.type === "label") {
          e.b.outs.forEach(function (f) { lowest = Math.min(lowest, f.b.rank - 2); });
        } else {
          lowest = Math.min(lowest, e.b.rank - e.minlen);
        }
      });
      if (lowest < Infinity && lowest > nd.rank) {
        nd.rank = lowest;
        nd.outs.forEach(function (e) { if (e.b.type === "label") e.b.rank = lowest + 1; });
      }
    }
    var maxRank = 2;
    nodes.forEach(function (n) { if (n.type === "box") maxRank = Math.max(maxRank, n.rank); });
    nodes.forEach(function (n) {  // boxes with no link at all wait at the bottom
      if (n.type === "box" && !n.ins.length && !n.outs.length) n.rank = maxRank;
    });
    var last = maxRank + (outPort.size ? 2 : 0);
    outPort.forEach(function (n) { n.rank = last; });
    // -- dummies, so every segment joins consecutive ranks
    edges.forEach(function (e) {
      e.chain = [e.a];
      for (var r = e.a.rank + 1; r < e.b.rank; r++) {
        e.chain.push(add({ type: "dummy", lu: 1, ru: 1, size: 0, rank: r }));
      }
      e.chain.push(e.b);
    });
    var up = nodes.map(function () { return []; }), down = nodes.map(function () { return []; });
    edges.forEach(function (e) {
      for (var k = 0; k + 1 < e.chain.length; k++) {
        var a = e.chain[k], b = e.chain[k + 1];
        var w = a.type === "dummy" && b.type === "dummy" ? 8 : 2;  // long links pull hardest
        var seg = { a: a, b: b, w: w, offA: k === 0 ? e.offA : 0,
                    offB: k + 2 === e.chain.length ? e.offB : 0 };
        down[a.id].push(seg); up[b.id].push(seg);
      }
    });
    // -- orders: from the call order, then barycentre sweeps; the fewest crossings win
    var layers = [];
    for (i = 0; i <= last; i++) layers.push([]);
    nodes.forEach(function (n) { layers[n.rank].push(n); });
    inPort.forEach(function (n) {
      var first = Infinity;
      n.outs.forEach(function (e) { first = Math.min(first, e.b.key0 === undefined ? Infinity : e.b.key0); });
      n.key0 = (isFinite(first) ? first : 0) - 0.5;
    });
    outPort.forEach(function (n) {
      var lastKid = -1;
      n.ins.forEach(function (e) { lastKid = Math.max(lastKid, e.a.key0 === undefined ? -1 : e.a.key0); });
      n.key0 = lastKid + 0.5;
    });
    fans.forEach(function (fan) { fan.key0 = fan.fanEdge.a.key0 + 0.5; });
    edges.forEach(function (e) {
      for (var k = 1; k + 1 < e.chain.length; k++) e.chain[k].key0 = (e.a.key0 + e.b.key0) / 2;
    });
    layers.forEach(function (layer) {
      layer.sort(function (a, b) { return a.key0 - b.key0 || a.id - b.id; });
      layer.forEach(function (n, k) { n.pos = k; });
    });
    var best = layers.map(function (l) { return l.slice(); }), fewest = crossings(layers, down);
    for (var sweep = 0; sweep < 8 && fewest > 0; sweep++) {
      var downward = sweep % 2 === 0;
      for (var r0 = 1; r0 <= last; r0++) {
        var layer = layers[downward ? r0 : last - r0], near = downward ? up : down;
        layer.forEach(function (n) {
          var segs = near[n.id];
          if (n.type === "title") { n.bary = -1; return; }
          if (!segs.length) { n.bary = n.pos; return; }
          var sum = 0;
          segs.forEach(function (sg) { sum += (downward ? sg.a : sg.b).pos; });
          n.bary = sum / segs.length;
        });
        layer.sort(function (a, b) { return a.bary - b.bary || a.pos - b.pos; });
        layer.forEach(function (n, k) { n.pos = k; });
      }
      var count = crossings(layers, down);
      if (count < fewest) { fewest = count; best = layers.map(function (l) { return l.slice(); }); }
    }
    layers = best;
    layers.forEach(function (l) { l.forEach(function (n, k) { n.pos = k; }); });
    // -- positions along each rank
    layers.forEach(function (l) {
      var at = 0;
      l.forEach(function (n, k) {
        if (k) at += l[k - 1].ru + gap(l[k - 1], n) + n.lu;
        n.u = at;
      });
    });
    // the title is the group's left wall: nothing goes left of it, ports go right of it
    var wall = title ? 0 : null;
    for (var pass = 0; pass < 8; pass++) {
      var goingDown = pass % 2 === 0;
      for (var q = 0; q <= last; q++) {
        var row = layers[goingDown ? q : last - q];
        place(row, goingDown ? up : null, goingDown ? null : down, title, wall);
      }
    }
    layers.forEach(function (l) { place(l, up, down, title, wall); });
    straighten(edges, layers);
    if (title) closeUp(nodes, title);
    // -- the group's frame
    var minU = Infinity, maxU = -Infinity;
    nodes.forEach(function (n) {
      minU = Math.min(minU, n.u - n.lu);
      maxU = Math.max(maxU, n.u + n.ru);
    });
    if (!isFinite(minU)) { minU = 0; maxU = 0; }
    var thickness = [], start = [], v = C.pad;
    for (i = 0; i <= last; i++) {
      var t = 0;
      layers[i].forEach(function (n) { t = Math.max(t, n.size); });
      if (i % 2 === 1 && i > 1 && i < last) t = Math.max(t, C.emptyLabelRank);
      thickness.push(t);
      start.push(v);
      v += t + (i < last ? C.rankGap : 0);
    }
    if (!layers[last].some(function (n) { return n.type === "box"; }) && outPort.size === 0) {
      v -= C.rankGap;
    }
    var titleBand = lr ? C.titleHeight + C.rankGap : 0;
    var acrossSize = v + C.pad, alongOffset = C.pad - minU + titleBand;
    var alongSize = maxU - minU + 2 * C.pad + titleBand;
    function at(n, across, off) {
      var a = n.u + alongOffset + (off || 0);
      return lr ? [across, a] : [a, across];
    }
    var width = Math.max(lr ? acrossSize : alongSize, input.titleWidth + 2 * C.pad);
    var height = lr ? alongSize : acrossSize;
    var out = { w: round(width), h: round(height), kids: [], ins: {}, outs: {}, routes: [],
                labels: [], title: null };
    nodes.forEach(function (n) {
      if (n.type === "box") {
        var kid = input.kids[n.kid], p = at(n, start[n.rank]);
        out.kids[n.kid] = lr ? [round(p[0]), round(p[1] - kid.h / 2)]
          : [round(p[0] - kid.w / 2), round(p[1])];
      } else if (n.type === "in") {
        out.ins[n.key] = round(n.u + alongOffset);
      } else if (n.type === "out") {
        out.outs[n.key] = round(n.u + alongOffset);
      }
    });
    out.title = lr ? [C.pad, C.pad] : [round(title.u + alongOffset), C.pad];
    // -- routes: from the producer's border (or port), through its label and dummies
    input.links.forEach(function (l) {
      var info = l.info, hops;
      if (info.fan) hops = info.fan.fanEdge.chain.slice(1).concat(info.edge.chain.slice(1, -1));
      else hops = info.edge.chain.slice(1, -1);
      if (info.back) hops.reverse();
      info.hops = hops;
    });
    var startOff = spread(input.links, true), endOff = spread(input.links, false);
    input.links.forEach(function (l, index) {
      var info = l.info, pts = [];
      var so = startOff.has(index) ? startOff.get(index) : info.s.off;
      var eo = endOff.has(index) ? endOff.get(index) : info.t.off;
      pts.push(endPoint(info.s.node, so, info.back ? "top" : "bottom"));
      var source = info.s.node;  // a box shorter than its rank: straight down past the rank
      if (!info.back && source.type === "box" && source.size < thickness[source.rank] - 1) {
        pts.push(at(source, start[source.rank] + thickness[source.rank], so));
      }
      // a link runs straight across every rank it passes, past boxes and beside labels, and
      // bends only in the gaps between ranks, where no box or label is
      info.hops.forEach(function (n) {
        var ends = [start[n.rank], start[n.rank] + thickness[n.rank]];
        if (info.back) ends.reverse();
        pts.push(at(n, ends[0]), at(n, ends[1]));
      });
      pts.push(endPoint(info.t.node, eo, info.back ? "bottom" : "top"));
      out.routes.push({ link: index, pts: pts.map(function (p) { return [round(p[0]), round(p[1])]; }) });
    });
    function endPoint(n, off, side) {
      var across;
      if (n.type === "in") across = 0;
      else if (n.type === "out") across = lr ? width : acrossSize;  // the box's far border
      else across = side === "top" ? start[n.rank] : start[n.rank] + n.size;
      return at(n, across, off);
    }
    fans.forEach(function (fan) {
      var p = at(fan, start[fan.rank] + thickness[fan.rank] / 2);
      out.labels.push({ text: fan.text, x: round(lr ? p[0] - fan.size / 2 + 4 : p[0] + 4),
                        y: round(lr ? p[1] - 4 : p[1] + 3.5) });
    });
    return out;
  }
  // Many boxes and no links (modules that never ran): rows under the title, about twice as
  // many columns as rows, not one rank as wide as all of them.
  function gridGroup(input) {
    var n = input.kids.length, columns = Math.ceil(Math.sqrt(2 * n)), rows = Math.ceil(n / columns);
    var widths = [], heights = [], k;
    for (k = 0; k < n; k++) {
      var c = k % columns, r = Math.floor(k / columns);
      widths[c] = Math.max(widths[c] || 0, input.kids[k].w);
      heights[r] = Math.max(heights[r] || 0, input.kids[k].h);
    }
    var lefts = [C.pad], tops = [C.pad + C.titleHeight + C.rankGap];
    for (k = 1; k < columns; k++) lefts.push(lefts[k - 1] + widths[k - 1] + C.nodeSep);
    for (k = 1; k < rows; k++) tops.push(tops[k - 1] + heights[k - 1] + C.rankGap);
    var out = { w: 0, h: round(tops[rows - 1] + heights[rows - 1] + C.pad), kids: [], ins: {},
                outs: {}, routes: [], labels: [], title: [C.pad, C.pad] };
    for (k = 0; k < n; k++) {
      var col = k % columns, row = Math.floor(k / columns);
      out.kids.push([round(lefts[col] + (widths[col] - input.kids[k].w) / 2), round(tops[row])]);
    }
    out.w = round(Math.max(lefts[columns - 1] + widths[columns - 1] + C.pad,
                           input.titleWidth + 2 * C.pad));
    return out;
  }
  // Links leaving (or entering) one plain box from the same point pile up: spread their
  // ends along its border, in the order of where they go next.
  function spread(links, outgoing) {
    var byNode = new Map(), offsets = new Map();
    links.forEach(function (l, index) {
      var info = l.info, end = outgoing ? info.s : info.t;
      if (!end.plain || info.back) return;
      var hop = outgoing ? (info.hops[0] || info.t.node) : (info.hops[info.hops.length - 1] || info.s.node);
      if (!byNode.has(end.node.id)) byNode.set(end.node.id, { node: end.node, items: [] });
      byNode.get(end.node.id).items.push([hop, index]);
    });
    byNode.forEach(function (entry) {
      var distinct = [];
      entry.items.sort(function (a, b) { return a[0].u - b[0].u || a[1] - b[1]; });
      entry.items.forEach(function (it) { if (distinct.indexOf(it[0]) < 0) distinct.push(it[0]); });
      var n = distinct.length;
      if (n < 2) return;
      var half = (entry.node.lu + entry.node.ru) / 2 - 6;
      var step = Math.min(C.endSpread, 2 * half / (n - 1));
      entry.items.forEach(function (it) {
        offsets.set(it[1], (distinct.indexOf(it[0]) - (n - 1) / 2) * step);
      });
    });
    return offsets;
  }
  // Links that close a cycle between children (never in a forward pass, but a folded loop
  // can make one): found by a depth-first search in call order, drawn against the flow.
  function backLinks(links, count) {
    var next = [], state = new Uint8Array(count), back = new Set(), k;
    for (k = 0; k < count; k++) next.push([]);
    links.forEach(function (l, index) {
      if (l.from[0] === "c" && l.to[0] === "c") {
        next[+l.from.slice(1).split(":")[0]].push([+l.to.slice(1).split(":")[0], index]);
      }
    });
    for (k = 0; k < count; k++) {
      if (state[k]) continue;
      var stack = [[k, 0]];
      state[k] = 1;
      while (stack.length) {
        var top = stack[stack.length - 1], edges = next[top[0]];
        if (top[1] >= edges.length) { state[top[0]] = 2; stack.pop(); continue; }
        var e = edges[top[1]++];
        if (state[e[0]] === 1) back.add(e[1]);
        else if (state[e[0]] === 0) { state[e[0]] = 1; stack.push([e[0], 0]); }
      }
    }
    return back;
  }
  function portOffset(kid, side, key, lr) {
    var ports = side === "in" ? kid.ins : kid.outs, at = ports ? ports[key] : undefined;
    return at === undefined ? 0 : at - (lr ? kid.h : kid.w) / 2;
  }
  function gap(a, b) {
    var boxA = a.type === "box" || a.type === "title", boxB = b.type === "box" || b.type === "title";
    return boxA && boxB ? C.nodeSep : boxA || boxB ? C.boxToLine : C.thinSep;
  }
  function round(v) { return Math.round(v * 10) / 10; }
  function topological(nodes) {
    var indeg = nodes.map(function (nd) { return nd.ins.length; }), ready = [], out = [];
    nodes.forEach(function (nd) { if (!indeg[nd.id]) ready.push(nd); });
    var head = 0;
    while (head < ready.length) {
      var nd = ready[head++];
      out.push(nd);
      nd.outs.forEach(function (e) { if (--indeg[e.b.id] === 0) ready.push(e.b); });
    }
    if (out.length < nodes.length) {  // a cycle (never from a trace): keep the rest in order
      nodes.forEach(function (nd) { if (indeg[nd.id] > 0) out.push(nd); });
    }
    return out;
  }
  // Crossings between consecutive ranks (each pair of segments that swap order).
  function crossings(layers, down) {
    var total = 0;
    for (var r = 0; r + 1 < layers.length; r++) {
      var pairs = [];
      layers[r].forEach(function (nd) {
        down[nd.id].forEach(function (l) { pairs.push([l.a.pos, l.b.pos]); });
      });
      pairs.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
      var seq = pairs.map(function (p) { return p[1]; });
      total += inversions(seq);
    }
    return total;
  }
  function inversions(seq) {
    if (seq.length < 2) return 0;
    var mid = seq.length >> 1, left = seq.slice(0, mid), right = seq.slice(mid);
    var count = inversions(left) + inversions(right), i = 0, j = 0, k = 0;
    while (i < left.length && j < right.length) {
      if (left[i] <= right[j]) seq[k++] = left[i++];
      else { seq[k++] = right[j++]; count += left.length - i; }
    }
    while (i < left.length) seq[k++] = left[i++];
    while (j < right.length) seq[k++] = right[j++];
    return count;
  }
  // Positions of one rank, as close as they may be (weighted least squares) to where their
  // neighbours pull them: those on the rank above (`up`), below (`down`), or both.
  function place(layer, up, down, title, wall) {
    var n = layer.length;
    if (!n) return;
    var target = new Array(n), weight = new Array(n);
    layer.forEach(function (nd, k) {
      if (nd === title) { target[k] = 0; weight[k] = 1e6; return; }
      var sw = 0, sum = 0;
      if (up) up[nd.id].forEach(function (l) { sum += l.w * (l.a.u + l.offA - l.offB); sw += l.w; });
      if (down) down[nd.id].forEach(function (l) { sum += l.w * (l.b.u + l.offB - l.offA); sw += l.w; });
      target[k] = sw ? sum / sw : nd.u;
      weight[k] = sw || 0.01;
    });
    solve(layer, target, weight, wall);
  }
  // The wall only stops content going left of the title; nothing pulls it there, so a group
  // could keep an empty band down its left side (every rank packed right of a wide title
  // rank). Move all of it left, as one piece, until something touches the wall or the title.
  function closeUp(nodes, title) {
    var slack = Infinity;
    nodes.forEach(function (n) {
      if (n === title) return;
      var floor = n.rank === title.rank ? title.u + title.ru + gap(title, n) : 0;
      slack = Math.min(slack, n.u - n.lu - floor);
    });
    if (slack > 0 && isFinite(slack)) {
      nodes.forEach(function (n) { if (n !== title) n.u -= slack; });
    }
  }
  // A long link's dummies may still jog by a few pixels from rank to rank: put each run of
  // them on one line where its neighbours on every rank leave room.
  function straighten(edges, layers) {
    edges.forEach(function (e) {
      var run = [];
      for (var k = 1; k < e.chain.length; k++) {
        var n = e.chain[k];
        if (n.type === "dummy" && k < e.chain.length - 1) { run.push(n); continue; }
        if (run.length > 1) align(run, layers);
        run = [];
      }
    });
  }
  function align(run, layers) {
    var xs = run.map(function (n) { return n.u; }).sort(function (a, b) { return a - b; });
    var candidates = [xs[Math.floor(xs.length / 2)], run[0].u, run[run.length - 1].u];
    for (var c = 0; c < candidates.length; c++) {
      var x = candidates[c];
      var fits = run.every(function (n) {
        var layer = layers[n.rank], left = layer[n.pos - 1], right = layer[n.pos + 1];
        return (!left || x - n.lu >= left.u + left.ru + gap(left, n) - 0.01) &&
               (!right || x + n.ru <= right.u - right.lu - gap(n, right) + 0.01);
      });
      if (fits) { run.forEach(function (n) { n.u = x; }); return; }
    }
  }
  // Pool adjacent violators: minimise sum w (u - target)^2 with u[k+1] >= u[k] + sep[k]
  // (and, given a wall, u[0] - lu[0] >= wall: a first block fixed there that can only merge).
  function solve(layer, target, weight, wall) {
    var n = layer.length, shift = new Array(n), k;
    shift[0] = 0;
    for (k = 1; k < n; k++) shift[k] = shift[k - 1] + layer[k - 1].ru + gap(layer[k - 1], layer[k]) + layer[k].lu;
    var blocks = [];  // [mean, weight, count]
    if (wall !== null && wall !== undefined && layer[0].type !== "title") {
      blocks.push([wall + layer[0].lu, 1e9, 0]);
    }
    for (k = 0; k < n; k++) {
      var block = [target[k] - shift[k], weight[k], 1];
      while (blocks.length && blocks[blocks.length - 1][0] > block[0]) {
        var prev = blocks.pop(), w = prev[1] + block[1];
        block = [(prev[0] * prev[1] + block[0] * block[1]) / w, w, prev[2] + block[2]];
      }
      blocks.push(block);
    }
    k = 0;
    blocks.forEach(function (b) {
      for (var c = 0; c < b[2]; c++, k++) layer[k].u = b[0] + shift[k];
    });
  }
  MT.layoutGroup = layoutGroup;
  MT.crossings = crossings;  // what the order sweeps minimise (its tests count by brute force)

  // ------------------------------------------------------------------ the whole state
  function Layout(model) {
    this.model = model;
    this.cache = new Map();
    this.runs = 0;  // groups laid out afresh (not from the cache)
  }
  // Boxes, ports, routes and labels of `state`, in absolute coordinates.
  Layout.prototype.run = function (state) {
    var model = this.model, scene = new Scene(model, state), lr = state.direction === "LR";
    var flows = routeFlows(scene), laid = new Map(), self = this;
    var opened = Array.from(scene.open);
    for (var i = opened.length - 1; i >= 0; i--) {  // children before parents
      var ref = opened[i], g = flows.get(ref) || { links: [], ins: [], outs: [] };
      var kids = scene.kids.get(ref), index = new Map(), keys = new Map();
      kids.forEach(function (c, k) { index.set(c, k); });
      // keys are numbered inside the group, so equal groups make equal inputs
      var localKey = function (key) {
        if (!keys.has(key)) keys.set(key, keys.size);
        return keys.get(key);
      };
      var ins = g.ins.map(localKey), outs = g.outs.map(localKey);
      var links = g.links.map(function (l) {
        l.keys.forEach(localKey);
        return { from: local(l.from, index, localKey), to: local(l.to, index, localKey),
                 keys: l.keys.map(localKey), label: localLabel(model, l) };
      });
      var input = {
        direction: state.direction,
        titleWidth: Math.ceil(MT.textWidth(model.label[ref], C.titleFont, true)),
        kids: kids.map(function (c) {
          var sub = laid.get(c);
          if (sub) return { w: sub.w, h: sub.h, ins: ports(sub.ins, keys), outs: ports(sub.outs, keys) };
          var size = boxSize(model, c);
          return { w: size[0], h: size[1] };
        }),
        ins: ins, outs: outs, links: links
      };
      var cacheKey = JSON.stringify(input), result = this.cache.get(cacheKey);
      if (!result) {
        result = layoutGroup(JSON.parse(cacheKey));
        this.cache.set(cacheKey, result);
        this.runs++;
      }
      laid.set(ref, { w: result.w, h: result.h, ins: global(result.ins, g.ins, keys),
                      outs: global(result.outs, g.outs, keys), result: result, kids: kids,
                      links: g.links });
    }
    return compose(model, scene, laid, lr, self);
  };
  // A link end relative to its group: child refs become child positions, keys local ones.
  function local(end, index, localKey) {
    if (end[0] !== "c") return end.slice(0, 2) + localKey(+end.slice(2));
    var colon = end.indexOf(":"), ref = +(colon < 0 ? end.slice(1) : end.slice(1, colon));
    return "c" + index.get(ref) + (colon < 0 ? "" : ":" + localKey(+end.slice(colon + 1)));
  }
  // A child's ports ({global key: position}) in the parent's local keys.
  function ports(byKey, keys) {
    var out = {};
    for (var key in byKey) if (keys.has(+key)) out[keys.get(+key)] = byKey[key];
    return out;
  }
  // A group's own ports ({local key: position}) back in global keys.
  function global(byLocal, globalKeys, keys) {
    var out = {};
    globalKeys.forEach(function (key) { out[key] = byLocal[keys.get(key)]; });
    return out;
  }
  function localLabel(model, l) {
    if (l.from[0] !== "c" || l.from.indexOf(":") >= 0) return "";  // ports carry no label
    return keyLabel(model, l.keys);
  }

  function compose(model, scene, laid, lr) {
    var root = model.root, boxes = new Map(), routes = [], labels = [], order = [];
    var rootLaid = laid.get(root);
    var rootSize = rootLaid ? [rootLaid.w, rootLaid.h] : boxSize(model, root);
    boxes.set(root, { x: 0, y: 0, w: rootSize[0], h: rootSize[1], open: !!rootLaid, title: rootLaid ? rootLaid.result.title : null });
    var stack = [root];
    while (stack.length) {
      var ref = stack.pop(), g = laid.get(ref);
      order.push(ref);
      if (!g) continue;
      var outer = boxes.get(ref), res = g.result;
      outer.title = [outer.x + res.title[0], outer.y + res.title[1]];
      g.kids.forEach(function (c, k) {
        var sub = laid.get(c), size = sub ? [sub.w, sub.h] : boxSize(model, c);
        boxes.set(c, { x: round(outer.x + res.kids[k][0]), y: round(outer.y + res.kids[k][1]),
                       w: size[0], h: size[1], open: !!sub, parent: ref });
      });
      res.routes.forEach(function (r) {
        var l = g.links[r.link];
        routes.push({ group: ref, src: endId(model, ref, l.from, "out"),
                      dst: endId(model, ref, l.to, "in"),
                      keys: l.keys, pairs: l.pairs,
                      pts: r.pts.map(function (p) { return [round(outer.x + p[0]), round(outer.y + p[1])]; }) });
      });
      res.labels.forEach(function (lab) {
        labels.push({ group: ref, text: lab.text, x: round(outer.x + lab.x), y: round(outer.y + lab.y) });
      });
      // children in reading order: top to bottom, then left to right
      var kids = g.kids.slice().sort(function (a, b) {
        var A = boxes.get(a), B = boxes.get(b);
        return lr ? (A.x - B.x || A.y - B.y) : (A.y - B.y || A.x - B.x);
      });
      for (var j = kids.length - 1; j >= 0; j--) stack.push(kids[j]);
    }
    return { boxes: boxes, order: order, routes: routes, labels: labels, width: rootSize[0],
             height: rootSize[1], direction: lr ? "LR" : "TB", scene: scene };
  }
  // An end as the SVG names it: an item id, or a port `<box id>:in:<key>` / `:out:`; a
  // link leaves an open child by its out-port and enters one by its in-port.
  function endId(model, group, end, side) {
    if (end[0] === "i") return model.ids[group] + ":in:" + model.keyId[+end.slice(2)];
    if (end[0] === "o") return model.ids[group] + ":out:" + model.keyId[+end.slice(2)];
    var colon = end.indexOf(":");
    if (colon < 0) return model.ids[+end.slice(1)];
    return model.ids[+end.slice(1, colon)] + ":" + side + ":" + model.keyId[+end.slice(colon + 1)];
  }
  MT.Layout = Layout;
  MT.boxSize = boxSize;
})(globalThis.modelTrace = globalThis.modelTrace || {});
(function (MT) {
  "use strict";
  // Build time and tests: the placed state of a figure as plain data.
  MT.placeFigure = function (data, options) {
    var model = new MT.ViewModel(typeof data === "string" ? JSON.parse(data) : data);
    var state = MT.initialState(model, options), layout = new MT.Layout(model);
    var placed = layout.run(state), boxes = {};
    placed.boxes.forEach(function (b, ref) {
      boxes[model.ids[ref]] = { x: b.x, y: b.y, w: b.w, h: b.h, open: b.open,
                                label: model.label[ref],
                                parent: b.parent === undefined ? null : model.ids[b.parent] };
    });
    var widths = {};  // what each box's label needs: its text and the box's padding
    placed.boxes.forEach(function (b, ref) {
      widths[model.ids[ref]] = b.open
        ? MT.textWidth(model.label[ref], MT.LAYOUT.titleFont, true) + 2 * MT.LAYOUT.pad
        : MT.textWidth(model.label[ref], MT.LAYOUT.font, false) + 8;
    });
    return {
      width: placed.width, height: placed.height, boxes: boxes, runs: layout.runs,
      text_widths: widths,
      order: placed.order.map(function (r) { return model.ids[r]; }),
      routes: placed.routes.map(function (r) {
        return { src: r.src, dst: r.dst, pts: r.pts,
                 keys: r.keys.map(function (k) { return k < 0 ? null : model.keyId[k]; }) };
      }),
      labels: placed.labels.map(function (l) {
        return { text: l.text, x: l.x, y: l.y,
                 width: MT.textWidth(l.text, MT.LAYOUT.edgeFont, false) };
      })
    };
  };
})(globalThis.modelTrace = globalThis.modelTrace || {});
