// The chat page's only script besides htmx. No inline handlers: the CSP forbids them.
(function () {
  "use strict";

  // Keep the newest answer or card in view (the palette sits below the log).
  function scrollToEnd() {
    var log = document.getElementById("log");
    var last = log && log.lastElementChild;
    if (last) { last.scrollIntoView({block: "end"}); }
  }

  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt;
    if (form && form.id === "ask" && evt.detail.successful) {
      form.reset();
    }
  });
  document.addEventListener("htmx:afterSwap", scrollToEnd);
  document.addEventListener("htmx:sseMessage", scrollToEnd);

  // Enter sends, Shift+Enter starts a new line.
  document.addEventListener("keydown", function (evt) {
    var target = evt.target;
    if (evt.key === "Enter" && !evt.shiftKey && !evt.isComposing &&
        target && target.name === "message" && target.form && target.form.id === "ask") {
      evt.preventDefault();
      target.form.requestSubmit();
    }
  });
})();
