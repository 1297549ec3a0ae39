// The chat page's only script besides htmx, for what htmx cannot do: the theme toggle,
// Enter to send, copy buttons, keeping the newest answer in view, and filtering the
// palette in place (a server round trip would replace the forms and their results).
// No inline handlers: the page's CSP forbids them.
(function () {
  "use strict";
  var root = document.documentElement;

  // Theme: follows prefers-color-scheme until the toggle is used, then remembered.
  // This runs in <head>, before the body is drawn, so a stored theme never flashes.
  var stored = null;
  try { stored = localStorage.getItem("theme"); } catch (e) { /* storage off */ }
  if (stored === "dark" || stored === "light") { root.dataset.theme = stored; }
  var systemDark = window.matchMedia("(prefers-color-scheme: dark)");
  function isDark() { return (root.dataset.theme || (systemDark.matches ? "dark" : "light")) === "dark"; }
  function showTheme() {
    var toggle = document.getElementById("theme-toggle");
    if (toggle) { toggle.setAttribute("aria-pressed", String(isDark())); }
  }
  systemDark.addEventListener("change", showTheme);

  function copyText(text, button) {
    function done() {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
      return;
    }
    // Plain http over the tailnet is not a secure context: no Clipboard API there.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    done();
  }

  document.addEventListener("click", function (evt) {
    var target = evt.target instanceof Element ? evt.target : null;
    var copy = target && target.closest("[data-copy]");
    if (copy) {
      var box = copy.closest(".code, .cmdline");
      var source = box && box.querySelector("pre, code.cmd");
      if (source) { copyText(source.textContent, copy); }
      return;
    }
    if (target && target.closest("#theme-toggle")) {
      var next = isDark() ? "light" : "dark";
      root.dataset.theme = next;
      try { localStorage.setItem("theme", next); } catch (e) { /* storage off */ }
      showTheme();
    }
  });

  // Keep the newest answer in view while it grows, unless the reader scrolled away from
  // the end of the conversation (on a phone the hosts and commands follow it).
  var followLog = true;
  window.addEventListener("scroll", function () {
    var log = document.getElementById("log");
    followLog = !!log && log.getBoundingClientRect().bottom <= window.innerHeight + 200;
  }, {passive: true});
  function scrollToEnd(evt) {
    var log = document.getElementById("log");
    if (!log || !(evt.target instanceof Node) || !log.contains(evt.target) || !followLog) { return; }
    var last = log.lastElementChild;
    if (last) { last.scrollIntoView({block: "end"}); }
  }
  document.addEventListener("htmx:afterSwap", scrollToEnd);
  // Something asked from elsewhere (an example, a runbook) is followed to the log's end.
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var target = evt.detail && evt.detail.target;
    if (target instanceof Element && target.id === "log") { followLog = true; }
  });
  // A palette result lands under its form: bring it into view with the smallest move.
  document.addEventListener("htmx:afterSwap", function (evt) {
    var target = evt.detail && evt.detail.target;
    if (target instanceof Element && target.classList.contains("results") && target.firstElementChild) {
      target.firstElementChild.scrollIntoView({block: "nearest"});
    }
  });
  document.addEventListener("htmx:sseMessage", scrollToEnd);

  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt;
    if (form && form.id === "ask" && evt.detail.successful) {
      form.reset();
      followLog = true;
    }
  });

  // Enter sends, Shift+Enter starts a new line.
  document.addEventListener("keydown", function (evt) {
    var target = evt.target;
    if (evt.key === "Enter" && !evt.shiftKey && !evt.isComposing &&
        target && target.id === "question" && target.form) {
      evt.preventDefault();
      target.form.requestSubmit();
    }
  });

  function filterPalette(query) {
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    document.querySelectorAll("#palette-list .category").forEach(function (category) {
      var any = false;
      category.querySelectorAll("details.cmd").forEach(function (cmd) {
        var text = cmd.dataset.search || "";
        var match = words.every(function (w) { return text.indexOf(w) !== -1; });
        cmd.hidden = !match;
        any = any || match;
        shown += match ? 1 : 0;
      });
      category.hidden = !any;
    });
    var count = document.getElementById("palette-matches");
    if (count) {
      count.textContent = !words.length ? "" :
        shown === 0 ? "No command matches." : shown + (shown === 1 ? " command matches." : " commands match.");
    }
  }
  document.addEventListener("input", function (evt) {
    if (evt.target && evt.target.id === "palette-q") { filterPalette(evt.target.value); }
  });

  document.addEventListener("DOMContentLoaded", showTheme);
})();
