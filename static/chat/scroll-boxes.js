// A table or code block wider than its box scrolls sideways in it (chat.css, transcript.css),
// not the page. One that does is made a tab stop, so that the keyboard can scroll it too; one
// that fits is not (a stop that does nothing). Replies change as they stream and settle, and
// the window's width with it, so each change checks them again: the reads come after the
// layout the page makes for the change anyway.
(function () {
  var BOXES = [
    ".markdown table", ".tail-table", ".markdown pre", ".streaming-tail pre",
    ".tool-call pre", ".tool-result", "pre.t-content",
  ].join(", ");

  function checkBoxes() {
    Array.prototype.forEach.call(document.querySelectorAll(BOXES), function (box) {
      var scrolls = box.scrollWidth > box.clientWidth;
      if (scrolls === (box.getAttribute("tabindex") === "0")) { return; }
      if (scrolls) {
        box.setAttribute("tabindex", "0");
      } else {
        box.removeAttribute("tabindex");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", checkBoxes);
  document.addEventListener("htmx:wsAfterMessage", checkBoxes);
  document.addEventListener("htmx:afterSettle", checkBoxes);
  window.addEventListener("resize", checkBoxes);
})();
