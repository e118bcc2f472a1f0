// model-trace viewer: hydrates every static graph figure on the page.
(function () {
  "use strict";
  function hydrate(root) {
    root.querySelectorAll("figure.model-trace:not([data-mt-ready])").forEach(function (figure) {
      figure.setAttribute("data-mt-ready", "");
    });
  }
  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    window.document$.subscribe(function () { hydrate(document); });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { hydrate(document); });
  } else {
    hydrate(document);
  }
})();
