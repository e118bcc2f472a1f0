/* model-trace, interaction: the Viewer that hydrates every figure.model-trace of a page.
 *
 * The page already shows the first view (drawn at build time by this same engine), so
 * hydrating lays out the initial state (to know where things are) without redrawing it.
 * Then: the first view fits the column while labels stay at least 8 px, else it shows them
 * at 8 px centred on the graph's entry, with a minimap; the frame grows to the graph's
 * height up to the fence's `height`. A plain wheel and a touch swipe scroll the page until
 * the reader activates the figure (click, tap, full screen); Ctrl/Cmd+wheel and pinch zoom.
 * Every change of state lays out again (only the groups that changed, see the layout's
 * cache), redraws, and writes the state to the URL hash, so a link reopens the same view.
 */
(function (MT) {
  "use strict";
  if (typeof document === "undefined" || window.modelTraceViewer) return;
  var el = MT.el, num = MT.num;
  var MIN_ZOOM = 0.02, MAX_ZOOM = 4;
  var PAN_KEYS = { ArrowLeft: [1, 0], ArrowRight: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
  var viewers = [];

  function Viewer(figure) {
    this.figure = figure;
    this.id = figure.id;
    // A <template>, not a <script>: Material's instant navigation re-runs every script of
    // the new page as JavaScript, its type dropped.
    var data = JSON.parse(figure.querySelector("template.mt-data").content.textContent);
    this.model = new MT.ViewModel(data);
    this.layout = new MT.Layout(this.model);
    this.svg = figure.querySelector("svg.mt-svg");
    this.canvas = figure.querySelector(".mt-canvas");
    this.viewport = this.svg.querySelector(".mt-viewport");
    this.initial = MT.initialState(this.model, {
      depth: parseInt(figure.getAttribute("data-depth") || "1", 10),
      overlay: figure.getAttribute("data-overlay") || "none",
      direction: figure.getAttribute("data-direction") || "TB" });
    this.state = this.initial.copy();
    this.query = "";
    this.matches = [];
    this.matchIndex = -1;
    this.view = { k: 1, x: 0, y: 0 };
    this.active = false;
    this.pointers = new Map();
    this.buildChrome();
    this.bindPointer();
    this.bindKeys();
    var fromHash = readHash()[this.id];
    if (fromHash !== undefined) this.state = MT.ViewState.decode(this.model, fromHash, this.initial);
    this.apply(this.state, { firstView: true, writeHash: false, drawn: fromHash === undefined });
    figure.setAttribute("data-mt-ready", "");
    viewers.push(this);
  }

  Viewer.prototype.buildChrome = function () {
    var figure = this.figure;
    figure.classList.add("mt-live");
    figure.insertBefore(MT.buildToolbar(this), this.canvas);
    this.legend = el("div", { class: "mt-legend", hidden: "" });
    this.tooltip = el("div", { class: "mt-tooltip", role: "tooltip", hidden: "" });
    this.panel = el("aside", { class: "mt-panel", hidden: "", "aria-label": "Details" });
    this.hint = el("div", { class: "mt-hint", hidden: "" });
    this.minimap = MT.buildMinimap(this);
    [this.legend, this.tooltip, this.panel, this.hint, this.minimap].forEach(function (part) {
      this.canvas.appendChild(part);
    }, this);
    this.svg.removeAttribute("width");
    this.svg.removeAttribute("height");
    this.svg.removeAttribute("viewBox");
    this.svg.removeAttribute("style");
    this.svg.setAttribute("tabindex", "-1");
  };

  // ------------------------------------------------------------------ state
  Viewer.prototype.update = function (changes, options) {
    var next = this.state.copy();
    for (var key in changes) next[key] = changes[key];
    return this.apply(next, Object.assign({ writeHash: true }, options || {}));
  };

  // Lay out and draw `next`; keep the `anchor` box where it was on the screen.
  Viewer.prototype.apply = function (next, options) {
    var before = options.anchor >= 0 && this.placed ? this.placed.boxes.get(options.anchor) : null;
    this.state = next;
    this.placed = this.layout.run(next);
    if (options.drawn) {  // the page's markup is this state already (drawn by the same code)
      this.decor = MT.decorate(this.model, this.placed, next, this.searchDecor());
      this.bars = false;
    } else {
      this.render();
    }
    MT.drawMinimap(this);
    if (options.firstView) this.firstView();
    else if (before) {
      var after = this.placed.boxes.get(options.anchor), v = this.view;
      v.x -= (after.x - before.x) * v.k;
      v.y -= (after.y - before.y) * v.k;
      this.keepInSight(options.anchor);
    }
    if (options.reveal >= 0) this.centerOn(options.reveal);
    this.applyView();
    if (options.writeHash) this.writeHash();
    MT.syncToolbar(this);
    MT.showLegend(this, this.decor);
    if (this.state.selected >= 0 && this.placed.boxes.has(this.state.selected)) {
      MT.showPanel(this, this.state.selected);
    } else {
      this.panel.hidden = true;
    }
    return Promise.resolve();
  };

  Viewer.prototype.searchDecor = function () {
    var model = this.model, placed = this.placed, matched = new Set(this.matches), holders = new Set();
    this.matches.forEach(function (ref) {
      for (var p = model.parent[ref]; p >= 0; p = model.parent[p]) {
        if (placed && placed.boxes.has(p) && !placed.boxes.get(p).open) holders.add(p);
      }
    });
    return { matches: matched, holders: holders };
  };

  Viewer.prototype.render = function () {
    this.decor = MT.decorate(this.model, this.placed, this.state, this.searchDecor());
    this.bars = this.view.k * MT.LAYOUT.font < MT.READABLE - 0.01;
    this.viewport.innerHTML = MT.renderContent(this.model, this.placed, this.state, {
      prefix: this.id, decor: this.decor, bars: this.bars });
  };

  Viewer.prototype.currentDepth = function () {
    var model = this.model, deepest = 0;
    this.state.visibleOpen(model).forEach(function (ref) {
      if (model.category[ref] !== "idle") deepest = Math.max(deepest, model.level[ref]);
    });
    return Math.min(deepest, model.maxLevel);
  };

  // ------------------------------------------------------------------ the view
  // The first view: the whole width when its labels stay readable, else readable labels
  // centred on the graph's entry; the frame as tall as the graph, up to its limit.
  Viewer.prototype.firstView = function () {
    var p = this.placed, width = this.canvas.clientWidth || 600;
    var k = Math.min(1, width / p.width);
    k = Math.max(k, MT.READABLE / MT.LAYOUT.font);
    this.fitFrame(p.height * k);
    var v = this.view;
    if (this.state.view) {  // a link names its view
      v.x = this.state.view.x; v.y = this.state.view.y; v.k = this.state.view.k;
      return;
    }
    v.k = k;
    v.y = 0;
    if (p.width * k <= width) {
      v.x = (width - p.width * k) / 2;
    } else {
      var entry = this.entry(), b = p.boxes.get(entry);
      v.x = Math.min(0, Math.max(width - p.width * k, width / 2 - (b.x + b.w / 2) * k));
    }
  };
  // The frame grows with the graph up to the fence's height (640 px by default).
  Viewer.prototype.fitFrame = function (graphHeight) {
    var limit = parseFloat(getComputedStyle(this.figure).getPropertyValue("--mt-height")) || 640;
    if (!this.figure.classList.contains("mt-maximized") && document.fullscreenElement !== this.figure) {
      this.canvas.style.height = Math.round(Math.max(120, Math.min(limit, graphHeight))) + "px";
    }
  };
  // Where the data comes in: the first input, else the first item in reading order.
  Viewer.prototype.entry = function () {
    var model = this.model, order = this.placed.order;
    for (var i = 0; i < order.length; i++) if (model.kind[order[i]] === "input") return order[i];
    return order.length > 1 ? order[1] : order[0];
  };
  Viewer.prototype.applyView = function () {
    var v = this.view;
    this.viewport.setAttribute("transform", "translate(" + num(v.x) + "," + num(v.y) +
                               ") scale(" + Math.round(v.k * 10000) / 10000 + ")");
    var bars = v.k * MT.LAYOUT.font < MT.READABLE - 0.01;
    if (bars !== this.bars) this.render();
    var r = this.svg.getBoundingClientRect(), p = this.placed;
    var hidden = p.width * v.k > r.width + 1 || p.height * v.k > r.height + 1 ||
      v.x < -1 || v.y < -1 || v.x + p.width * v.k > r.width + 1 || v.y + p.height * v.k > r.height + 1;
    MT.frameMinimap(this, hidden);
    this.figure.classList.toggle("mt-cut", hidden);
  };
  Viewer.prototype.zoomBy = function (factor, cx, cy) {
    var rect = this.svg.getBoundingClientRect(), v = this.view;
    if (cx === undefined) { cx = rect.width / 2; cy = rect.height / 2; }
    var k = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, v.k * factor));
    v.x = cx - (cx - v.x) * (k / v.k);
    v.y = cy - (cy - v.y) * (k / v.k);
    v.k = k;
    this.applyView();
    this.viewChanged();
  };
  Viewer.prototype.panBy = function (dx, dy) {
    this.view.x += dx;
    this.view.y += dy;
    this.applyView();
    this.viewChanged();
  };
  Viewer.prototype.fit = function () {
    var rect = this.svg.getBoundingClientRect(), p = this.placed, v = this.view;
    v.k = Math.max(MIN_ZOOM, Math.min((rect.width - 16) / p.width, (rect.height - 16) / p.height, 1.5));
    v.x = (rect.width - p.width * v.k) / 2;
    v.y = Math.max(8, (rect.height - p.height * v.k) / 2);
    this.applyView();
    this.viewChanged();
  };
  Viewer.prototype.centerAt = function (x, y) {
    var rect = this.svg.getBoundingClientRect(), v = this.view;
    v.x = rect.width / 2 - x * v.k;
    v.y = rect.height / 2 - y * v.k;
    this.applyView();
    this.viewChanged();
  };
  Viewer.prototype.centerOn = function (ref) {
    var b = this.placed.boxes.get(ref);
    if (b) this.centerAt(b.x + b.w / 2, b.y + Math.min(b.h, 200) / 2);
  };
  // After opening a box: its title and the edges coming into it stay on screen.
  Viewer.prototype.keepInSight = function (ref) {
    var b = this.placed.boxes.get(ref), rect = this.svg.getBoundingClientRect(), v = this.view;
    if (!b) return;
    var top = b.y * v.k + v.y, left = b.x * v.k + v.x;
    if (top < 24) v.y += 24 - top;
    if (left < 8) v.x += 8 - left;
    if (top > rect.height - 60) v.y -= top - (rect.height - 60);
  };
  // The pan and zoom go to the URL a moment after they stop changing.
  Viewer.prototype.viewChanged = function () {
    var self = this;
    clearTimeout(this.viewTimer);
    this.viewTimer = setTimeout(function () { self.writeHash(); }, 250);
  };
  Viewer.prototype.toGraph = function (clientX, clientY) {
    var rect = this.svg.getBoundingClientRect(), v = this.view;
    return [(clientX - rect.left - v.x) / v.k, (clientY - rect.top - v.y) / v.k];
  };
  Viewer.prototype.toggleFullscreen = function () {
    var figure = this.figure, self = this;
    function done() { self.activate(true); self.fit(); }
    if (document.fullscreenElement === figure) {
      document.exitFullscreen();
    } else if (figure.classList.contains("mt-maximized")) {
      figure.classList.remove("mt-maximized");
      this.fitFrame(this.placed.height * this.view.k);
      this.fit();
    } else if (figure.requestFullscreen) {
      figure.requestFullscreen().then(done, function () { figure.classList.add("mt-maximized"); done(); });
    } else {
      figure.classList.add("mt-maximized");
      done();
    }
  };

  // ------------------------------------------------------------------ activation
  // Until the reader activates a figure, the wheel and touch scroll the page over it.
  Viewer.prototype.activate = function (on) {
    if (this.active === on) return;
    this.active = on;
    this.figure.classList.toggle("mt-active", on);
    this.hint.hidden = true;
  };
  document.addEventListener("pointerdown", function (event) {
    viewers.forEach(function (v) { if (!v.figure.contains(event.target)) v.activate(false); });
  }, true);

  Viewer.prototype.bindPointer = function () {
    var self = this, svg = this.svg, drag = null;
    svg.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      self.pointers.set(event.pointerId, [event.clientX, event.clientY]);
      if (self.pointers.size === 2 && self.active) {
        var pts = Array.from(self.pointers.values());
        self.pinch = { d: Math.hypot(pts[0][0] - pts[1][0], pts[0][1] - pts[1][1]), k: self.view.k };
        drag = null;
        return;
      }
      drag = { x: event.clientX, y: event.clientY, vx: self.view.x, vy: self.view.y,
               moved: false, target: event.target, touch: event.pointerType === "touch" };
    });
    svg.addEventListener("pointermove", function (event) {
      if (self.pointers.has(event.pointerId)) self.pointers.set(event.pointerId, [event.clientX, event.clientY]);
      if (self.pinch && self.pointers.size === 2) {
        var pts = Array.from(self.pointers.values()), rect = svg.getBoundingClientRect();
        var d = Math.hypot(pts[0][0] - pts[1][0], pts[0][1] - pts[1][1]);
        self.zoomBy(self.pinch.k * d / self.pinch.d / self.view.k,
                    (pts[0][0] + pts[1][0]) / 2 - rect.left, (pts[0][1] + pts[1][1]) / 2 - rect.top);
        return;
      }
      if (drag && drag.touch && !self.active) return;  // the page scrolls
      if (drag && (drag.moved || Math.abs(event.clientX - drag.x) + Math.abs(event.clientY - drag.y) > 4)) {
        if (!drag.moved) {
          drag.moved = true;
          svg.setPointerCapture(event.pointerId);
          svg.classList.add("mt-panning");
          self.tooltip.hidden = true;
        }
        self.view.x = drag.vx + event.clientX - drag.x;
        self.view.y = drag.vy + event.clientY - drag.y;
        self.applyView();
        self.viewChanged();
        return;
      }
      if (event.pointerType !== "touch") self.hover(event);
    });
    function release(event) {
      self.pointers.delete(event.pointerId);
      if (self.pointers.size < 2) self.pinch = null;
      var was = drag;
      drag = null;
      svg.classList.remove("mt-panning");
      if (event.type !== "pointerup" || !was || was.moved) return;
      if (was.touch && !self.active) {  // a first tap activates the figure
        self.activate(true);
        self.showHint("Drag to pan, pinch to zoom; tap outside to scroll the page");
        return;
      }
      self.activate(true);
      self.click(was.target, event);
    }
    svg.addEventListener("pointerup", release);
    svg.addEventListener("pointercancel", release);
    svg.addEventListener("pointerleave", function () { self.tooltip.hidden = true; self.restoreTitle(); });
    svg.addEventListener("wheel", function (event) {
      var rect = svg.getBoundingClientRect();
      if (event.ctrlKey || event.metaKey) {  // also a trackpad's pinch
        event.preventDefault();
        self.zoomBy(Math.exp(-event.deltaY * 0.002), event.clientX - rect.left, event.clientY - rect.top);
      } else if (self.active) {
        event.preventDefault();
        self.panBy(-event.deltaX, -event.deltaY);
      } else if (!self.hintShown) {
        self.hintShown = true;
        self.showHint("Click the graph to scroll it with the wheel; Ctrl+wheel zooms");
      }
    }, { passive: false });
  };
  Viewer.prototype.showHint = function (text) {
    var hint = this.hint;
    hint.textContent = text;
    hint.hidden = false;
    clearTimeout(this.hintTimer);
    this.hintTimer = setTimeout(function () { hint.hidden = true; }, 2500);
  };

  Viewer.prototype.itemOf = function (target) {
    var g = target && target.closest ? target.closest("[data-id]") : null;
    return g && this.svg.contains(g) ? this.model.byId.get(g.getAttribute("data-id")) : undefined;
  };

  // A closed box opens, an open box's title bar closes it; Shift+click (or Space) selects a
  // box, a click selects an op; Alt+click unfolds a repeat.
  Viewer.prototype.click = function (target, event) {
    var ref = this.itemOf(target), model = this.model, self = this, done;
    if (ref === undefined) return;
    if (event.altKey && model.members.has(ref)) {
      done = this.toggleFold(ref);
    } else if (model.isOpenable(ref) && !event.shiftKey) {
      var box = this.placed.boxes.get(ref);
      if (box.open) {  // an open group toggles from its title bar only
        var at = this.toGraph(event.clientX, event.clientY);
        if (at[1] - box.y > MT.LAYOUT.pad + MT.LAYOUT.titleHeight + 4) return;
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
    var unfolded = new Set(this.state.unfolded), model = this.model;
    if (unfolded.has(ref)) unfolded.delete(ref); else unfolded.add(ref);
    var selected = this.state.selected;
    if (model.memberOf.has(selected) && !unfolded.has(model.memberOf.get(selected))) selected = -1;
    return this.update({ unfolded: unfolded, selected: selected }, { anchor: ref });
  };
  Viewer.prototype.toggleAllFolds = function () {
    var model = this.model, unfolded = new Set();
    if (!this.state.unfolded.size) model.members.forEach(function (_m, ref) { unfolded.add(ref); });
    return this.update({ unfolded: unfolded,
                         selected: model.memberOf.has(this.state.selected) ? -1 : this.state.selected });
  };
  Viewer.prototype.select = function (ref) { return this.update({ selected: ref }); };
  // Open every box around an item, select it and bring it to the middle of the view.
  Viewer.prototype.reveal = function (ref) {
    var expanded = new Set(this.state.expanded), model = this.model;
    for (var p = model.parent[ref]; p >= 0; p = model.parent[p]) expanded.add(p);
    var self = this;
    return this.update({ expanded: expanded, selected: ref }, { reveal: ref }).then(function () {
      self.focusItem(model.ids[ref]);
    });
  };

  // A note listed under a figure (3-marks.js numbers them on the items): a click opens the
  // figure at the item it points at.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".mt-note-ref") : null;
    if (!button) return;
    var figure = button.closest("figure.model-trace");
    var viewer = viewers.filter(function (v) { return v.figure === figure; })[0];
    var ref = viewer ? viewer.model.byId.get(button.getAttribute("data-item")) : undefined;
    if (ref === undefined) return;
    viewer.canvas.scrollIntoView({ block: "nearest" });
    viewer.reveal(ref);
  });

  // ------------------------------------------------------------------ tooltip
  // The SVG's <title>s are the tooltips without script; while the pointer is on an item the
  // viewer shows its own tooltip and puts the <title> aside, so the browser shows only one.
  Viewer.prototype.hover = function (event) {
    var target = event.target, model = this.model, text = null, holder = null;
    var edge = target.closest ? target.closest(".mt-edge") : null;
    if (edge && this.svg.contains(edge)) holder = edge;
    else {
      var ref = this.itemOf(target);
      if (ref !== undefined) { holder = target.closest("[data-id]"); text = model.tooltip(ref); }
    }
    if (holder !== this.titled) {
      this.restoreTitle();
      var title = holder ? holder.querySelector(":scope > title") : null;
      if (title) { this.titled = holder; this.stashed = title; title.remove(); }
    }
    if (holder && text === null && this.stashed) text = this.stashed.textContent;
    if (!text) { this.tooltip.hidden = true; return; }
    MT.showTooltip(this, text, event);
  };
  Viewer.prototype.restoreTitle = function () {
    if (this.titled && this.stashed && this.titled.isConnected) {
      this.titled.insertBefore(this.stashed, this.titled.firstChild);
    }
    this.titled = null;
    this.stashed = null;
  };

  // ------------------------------------------------------------------ search
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
    if (!this.matches.length) return Promise.resolve();
    var n = this.matches.length;
    this.matchIndex = ((this.matchIndex + step) % n + n) % n;
    this.searchCount.textContent = (this.matchIndex + 1) + " of " + n;
    return this.reveal(this.matches[this.matchIndex]);
  };

  // ------------------------------------------------------------------ keyboard
  Viewer.prototype.bindKeys = function () {
    var self = this;
    this.figure.addEventListener("keydown", function (event) {
      var tag = event.target.tagName;
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || tag === "BUTTON") return;
      var handled = true, ref = self.itemOf(event.target), model = self.model;
      if (event.key === "Enter" && ref !== undefined) {
        var id = model.ids[ref];
        (model.isOpenable(ref) ? self.toggle(ref) : self.select(ref === self.state.selected ? -1 : ref))
          .then(function () { self.focusItem(id); });
      } else if (event.key === " " && ref !== undefined) {
        var sid = model.ids[ref];
        self.select(ref === self.state.selected ? -1 : ref).then(function () { self.focusItem(sid); });
      } else if ((event.key === "u" || event.key === "U") && ref !== undefined && model.members.has(ref)) {
        var fid = model.ids[ref];
        self.toggleFold(ref).then(function () { self.focusItem(fid); });
      } else if (event.key === "+" || event.key === "=") self.zoomBy(1.25);
      else if (event.key === "-" || event.key === "_") self.zoomBy(1 / 1.25);
      else if (event.key === "0") self.fit();
      else if (PAN_KEYS[event.key]) {
        var step = event.shiftKey ? 200 : 40;
        self.panBy(PAN_KEYS[event.key][0] * step, PAN_KEYS[event.key][1] * step);
      } else if (event.key === "f" || event.key === "F") self.toggleFullscreen();
      else if (event.key === "/") self.searchInput.focus();
      else if (event.key === "Escape") {
        if (self.figure.classList.contains("mt-maximized")) self.toggleFullscreen();
        else if (self.state.selected >= 0) self.select(-1);
        else self.activate(false);
      } else handled = false;
      if (handled) { event.preventDefault(); event.stopPropagation(); }
    });
    // A focused item is moved into view: inside the frame, and below a sticky page header.
    this.figure.addEventListener("focusin", function (event) {
      var ref = self.itemOf(event.target);
      if (ref === undefined) return;
      var b = self.placed.boxes.get(ref), rect = self.svg.getBoundingClientRect(), v = self.view;
      var x = b.x * v.k + v.x, y = b.y * v.k + v.y;
      var w = Math.min(b.w, 400) * v.k, h = Math.min(b.h, 60) * v.k;
      if (x < 0 || y < 0 || x + w > rect.width || y + h > rect.height) {
        v.x = Math.min(Math.max(v.x, -x + v.x + 16), rect.width - 16 - w - x + v.x);
        v.y = Math.min(Math.max(v.y, -y + v.y + 16), rect.height - 16 - h - y + v.y);
        self.applyView();
      }
      var top = rect.top + Math.max(0, b.y * v.k + v.y), header = document.querySelector(".md-header");
      var clear = header ? header.getBoundingClientRect().bottom + 8 : 8;
      if (top < clear) window.scrollBy(0, top - clear - 8);
      else if (top + h > window.innerHeight - 8) window.scrollBy(0, top + h - window.innerHeight + 24);
    });
  };
  Viewer.prototype.focusItem = function (id) {
    var g = this.viewport.querySelector('[data-id="' + CSS.escape(id) + '"]');
    if (g) g.focus({ preventScroll: true });
  };

  // ------------------------------------------------------------------ printing
  // Printed, the figure is the whole current view at the page's width, without pan or zoom.
  Viewer.prototype.printView = function (printing) {
    var svg = this.svg, p = this.placed;
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
  if (printMedia && printMedia.addEventListener) {
    printMedia.addEventListener("change", function (event) { printAll(event.matches); });
  }

  // ------------------------------------------------------------------ URL hash
  // "#<figure id>=e:<deepest open ids>;s:<selected>;o:<overlay>;v:<x,y,k>&<other figure>=..."
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
  Viewer.prototype.writeHash = function () {
    var entries = readHash(), state = this.state.copy();
    state.view = { x: this.view.x, y: this.view.y, k: this.view.k };
    entries[this.id] = state.encode(this.model);
    var text = Object.keys(entries).map(function (key) {
      return encodeURIComponent(key) + "=" + encodeURIComponent(entries[key])
        .replace(/%2C/g, ",").replace(/%3A/g, ":").replace(/%3B/g, ";").replace(/%2F/g, "/");
    }).join("&");
    history.replaceState(history.state, "", "#" + text);
  };
  window.addEventListener("hashchange", function () {
    var entries = readHash();
    viewers = viewers.filter(function (v) { return v.figure.isConnected; });
    viewers.forEach(function (v) {
      if (entries[v.id] === undefined) return;
      var state = MT.ViewState.decode(v.model, entries[v.id], v.initial);
      v.apply(state, { firstView: true, writeHash: false });
    });
  });

  // ------------------------------------------------------------------ start
  function hydrate(root) {
    viewers = viewers.filter(function (v) { return v.figure.isConnected; });
    root.querySelectorAll("figure.model-trace:not([data-mt-ready])").forEach(function (figure) {
      try {
        new Viewer(figure);
      } catch (error) {
        figure.setAttribute("data-mt-ready", "failed");
        console.warn("model-trace: this graph stays static:", error);  // eslint-disable-line
      }
    });
  }
  window.modelTraceViewer = { hydrate: hydrate, viewers: function () { return viewers; },
                              Viewer: Viewer };
  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(function () { hydrate(document); });  // Material instant nav
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { hydrate(document); });
  } else {
    hydrate(document);
  }
})(globalThis.modelTrace = globalThis.modelTrace || {});
