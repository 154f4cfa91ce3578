// The colour theme, set before the page paints: "light", "dark", or "auto" (the system's).
(function () {
  "use strict";
  var theme = "auto";
  try { theme = window.localStorage.getItem("aidp-theme") || "auto"; } catch (e) { /* private mode */ }
  document.documentElement.setAttribute("data-theme", theme);
})();
