// The dashboard's behaviour on every page: the theme toggle and the confirmation of actions.
// No inline handlers anywhere (the Content-Security-Policy forbids them): everything is bound here.
(function () {
  "use strict";

  function systemDark() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  var toggle = document.getElementById("theme-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var root = document.documentElement;
      var now = root.getAttribute("data-theme");
      var dark = now === "dark" || (now === "auto" && systemDark());
      var next = dark ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { window.localStorage.setItem("aidp-theme", next); } catch (e) { /* private mode */ }
    });
  }

  // A form with data-confirm="..." asks before it is sent.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);

  // Auto-submit selects marked data-autosubmit (the filters of the runs page); the form
  // works without this (it has a submit button).
  Array.prototype.forEach.call(document.querySelectorAll("select[data-autosubmit]"), function (el) {
    el.addEventListener("change", function () { if (el.form) { el.form.requestSubmit(); } });
  });
})();
