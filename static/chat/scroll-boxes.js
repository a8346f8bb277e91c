// A table or code block wider than its box scrolls sideways in it (chat.css, transcript.css),
// not the page. One that does is made a tab stop, so that the keyboard can scroll it too; one
// that fits is not (a stop that does nothing). Boxes change as replies stream and settle, and
// with the window's width, so those changes check them again, once per animation frame: a
// streamed frame checks only the replies being written (and those that were, at the last
// check: the frame that ends one), since a check reads the layout and a long conversation has
// hundreds of boxes.
(function () {
  var BOXES = [
    ".markdown table", ".tail-table", ".markdown pre", ".streaming-tail pre",
    ".tool-call pre", ".tool-result", "pre.t-content", ".t-message details pre",
  ].join(", ");
  var STREAMING = "#messages article.status-pending, #messages article.status-streaming";

  function checkBoxes(root) {
    Array.prototype.forEach.call(root.querySelectorAll(BOXES), function (box) {
      var scrolls = box.scrollWidth > box.clientWidth;
      if (scrolls === (box.getAttribute("tabindex") === "0")) { return; }
      if (scrolls) {
        box.setAttribute("tabindex", "0");
      } else {
        box.removeAttribute("tabindex");
      }
    });
  }

  var scheduled = null; // "all", or "streaming": what the next animation frame checks
  var streamingIds = []; // the replies being written at the last check

  function check() {
    var scope = scheduled;
    scheduled = null;
    var ids = Array.prototype.map.call(document.querySelectorAll(STREAMING), function (article) {
      return article.id;
    });
    if (scope === "all") {
      checkBoxes(document);
    } else {
      streamingIds.concat(ids).forEach(function (id) {
        var article = document.getElementById(id);
        if (article) { checkBoxes(article); }
      });
    }
    streamingIds = ids;
  }

  function schedule(scope) {
    if (scheduled === "all" || scheduled === scope) { return; }
    if (scheduled === null) { requestAnimationFrame(check); }
    scheduled = scope;
  }

  document.addEventListener("DOMContentLoaded", function () { schedule("all"); });
  document.addEventListener("htmx:afterSettle", function () { schedule("all"); });
  document.addEventListener("htmx:wsAfterMessage", function () { schedule("streaming"); });
  window.addEventListener("resize", function () { schedule("all"); });
  // So does the text's size (a reader's setting, the page's width unchanged): a box an em
  // wide, out of sight, grows with it.
  if (window.ResizeObserver) {
    document.addEventListener("DOMContentLoaded", function () {
      var em = document.createElement("div");
      em.setAttribute("aria-hidden", "true");
      em.className = "visually-hidden";
      em.style.width = "1em";
      em.style.top = em.style.left = "0"; // (not below the page, which would then scroll)
      document.body.appendChild(em);
      var first = true; // (an observer reports its box once at the start)
      new ResizeObserver(function () {
        if (!first) { schedule("all"); }
        first = false;
      }).observe(em);
    });
  }
  // A box in a <details> (thinking, a tool's result) is laid out when it opens.
  document.addEventListener("toggle", function () { schedule("all"); }, true);
})();
