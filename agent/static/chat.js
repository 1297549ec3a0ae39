// The chat page's only script besides htmx. No inline handlers: the CSP forbids them.
(function () {
  "use strict";

  function scrollToEnd() {
    var log = document.getElementById("log");
    if (log) { window.scrollTo(0, document.body.scrollHeight); }
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
