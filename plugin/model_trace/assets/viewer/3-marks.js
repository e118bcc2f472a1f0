/* model-trace, marks: what an author (`highlight`, `notes`) or a comparison (`compare`) put
 * on items, drawn over the plain figure.
 *
 * The view data's `view.marks` lists [item, outline colour, note numbers, diff status]
 * (annotate.py, compare.py). In a drawn state each mark is shown on the item that shows its
 * item: itself, or the closed box that holds it, where an outline turns thin and dashed (the
 * mark is inside) and the note numbers gather. A diff status outlines in fixed colours: green
 * for "only in this variant", amber dashed for "changed", amber dotted for a closed box with a
 * difference inside. Runs at build time in V8 and in the browser (where a click on a note
 * listed under the figure opens the figure at its item: 5-interaction.js).
 */
(function (MT) {
  "use strict";
  MT.DIFF_COLOURS = { only: "#1a7f37", changed: "#bf8700", holds: "#bf8700" };
  var NOTE = "#0969da";
  // a note's badge: a circle hung on the box's top border (centre `drop` below it), the first
  // `inset` in from the right corner, each next one `step` further left; its number `baseline`
  // below the centre puts 10 px digits (about 7 px tall) in the middle
  var BADGE = { r: 7.5, inset: 4, step: 17, drop: 1, font: 10, baseline: 3.5 };

  // ref -> {colour, notes, diff} from the view data (empty without marks).
  MT.readMarks = function (view) {
    var marks = new Map();
    (view.marks || []).forEach(function (m) {
      marks.set(m[0], { colour: m[1], notes: m[2], diff: m[3] });
    });
    return marks;
  };

  // The marks of a placed state by the drawn item that shows them (cached on the state).
  function shownMarks(model, placed) {
    if (placed.marks) return placed.marks;
    var shown = new Map();
    model.marks.forEach(function (mark, ref) {
      var at = placed.scene.visible(ref);
      if (!placed.boxes.has(at)) return;
      var entry = shown.get(at);
      if (!entry) { entry = { colour: "", held: false, notes: [], diff: "" }; shown.set(at, entry); }
      if (mark.colour && (!entry.colour || at === ref)) {
        entry.colour = mark.colour;
        entry.held = at !== ref;
      }
      entry.notes = entry.notes.concat(mark.notes);
      if (mark.diff) entry.diff = at === ref ? mark.diff : entry.diff || "holds";
    });
    shown.forEach(function (entry) { entry.notes.sort(function (a, b) { return a - b; }); });
    placed.marks = shown;
    return shown;
  }

  // A rect `gap` px around the box, its corners concentric with the box's (radius `rx`).
  function outline(b, rx, gap, colour, width, dash) {
    return '<rect class="mt-mark" x="' + MT.num(b.x - gap) + '" y="' + MT.num(b.y - gap) +
      '" width="' + MT.num(b.w + 2 * gap) + '" height="' + MT.num(b.h + 2 * gap) + '" rx="' +
      (rx + gap) + '" fill="none" stroke="' + colour + '" stroke-width="' + width + '"' +
      (dash ? ' stroke-dasharray="' + dash + '"' : "") + "/>";
  }

  // The SVG a mark adds inside an item's <g>, after its box (corner radius `rx`) and label
  // (the box stays the item's first rect, which the integrity checker reads).
  MT.markSVG = function (model, placed, ref, b, rx) {
    if (!model.marks.size) return "";
    var mark = shownMarks(model, placed).get(ref), out = "";
    if (!mark) return "";
    if (mark.diff) {
      out += outline(b, rx, 2.5, MT.DIFF_COLOURS[mark.diff], mark.diff === "only" ? 2.5 : 2,
                     mark.diff === "changed" ? "6 3" : mark.diff === "holds" ? "2 3" : "");
    }
    if (mark.colour) {
      out += outline(b, rx, mark.diff ? 5.5 : 2.5, mark.colour, mark.held ? 1.5 : 2.5,
                     mark.held ? "5 3" : "");
    }
    var notes = mark.notes.length > 4 ? mark.notes.slice(0, 3).concat(["\u2026"]) : mark.notes;
    notes.forEach(function (number, i) {
      var cx = b.x + b.w - BADGE.inset - i * BADGE.step, cy = b.y + BADGE.drop;
      out += '<g class="mt-note-badge"><circle cx="' + MT.num(cx) + '" cy="' + MT.num(cy) +
        '" r="' + BADGE.r + '" fill="' + NOTE + '" stroke="#ffffff" stroke-width="1"/><text x="' +
        MT.num(cx) + '" y="' + MT.num(cy + BADGE.baseline) + '" text-anchor="middle" font-size="' +
        BADGE.font + '" font-weight="bold" fill="#ffffff">' + MT.esc(String(number)) + "</text></g>";
    });
    // in a group of its own: the stylesheet's rules for an item's own box and text
    // (`.mt-node > rect`) leave these alone
    return '<g class="mt-marks">' + out + "</g>";
  };
})(globalThis.modelTrace = globalThis.modelTrace || {});
