/* model-trace: text widths for laying out labels (written by tools/font_metrics.py from
   Liberation Sans and DejaVu Sans: the widest of the two per character, in 1/1000 em). */
(function (MT) {
  "use strict";
  var CHARS = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~×–—…µ·›‹≤≥→←°±²³éèüöäß·∑";
  var WIDTHS = {
    regular: [318,401,460,838,636,950,780,275,390,390,500,838,318,361,318,337,636,636,636,636,636,636,636,636,636,636,337,337,838,838,838,556,1015,684,686,722,770,667,611,778,752,295,500,667,557,863,748,787,667,787,722,667,611,732,684,989,685,667,685,390,337,390,838,556,500,613,635,550,635,615,352,635,634,278,278,579,278,974,634,612,635,635,411,521,392,634,592,818,592,592,525,636,337,636,838,838,556,1000,1000,636,318,400,400,838,838,1000,1000,500,838,401,401,615,615,634,612,613,630,318,713],
    bold: [348,456,521,838,696,1002,872,306,457,457,523,838,380,415,380,365,696,696,696,696,696,696,696,696,696,696,400,400,838,838,838,611,1000,774,762,734,830,683,683,821,837,372,556,775,637,995,837,850,733,850,770,720,682,812,774,1103,771,724,725,457,365,457,838,556,500,675,716,593,716,678,435,716,712,343,343,665,343,1042,712,687,716,716,493,595,478,712,652,924,645,652,582,712,365,712,838,838,556,1000,1000,736,380,412,412,838,838,1000,1000,500,838,438,438,678,678,712,687,675,719,380,718]
  };
  var INDEX = {};
  for (var i = 0; i < CHARS.length; i++) INDEX[CHARS[i]] = i;
  var M = INDEX.M;
  // Width in px of `text` at `size` px; bold for group titles.
  MT.textWidth = function (text, size, bold) {
    var table = bold ? WIDTHS.bold : WIDTHS.regular, total = 0;
    for (var k = 0; k < text.length; k++) {
      var at = INDEX[text[k]];
      total += table[at === undefined ? M : at];
    }
    return total * size / 1000;
  };
})(globalThis.modelTrace = globalThis.modelTrace || {});
