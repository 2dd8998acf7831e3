// chainwatch serve: refresh the overview's latest alerts every 30 seconds (same origin only).
// The page works without this file: the "Refresh" link reloads it. The server renders and
// escapes the fragment; it is parsed as inert HTML and swapped in, never run.
(function () {
  "use strict";
  var PERIOD = 30000;
  var state = document.getElementById("refresh-state");
  function refresh() {
    fetch("/overview/alerts", { credentials: "same-origin", redirect: "error", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("latest-alerts");
        var old = document.getElementById("latest-alerts");
        if (fresh && old) {
          old.replaceWith(document.importNode(fresh, true));
        }
        if (state) { state.textContent = "(refreshed " + new Date().toLocaleTimeString() + ")"; }
      })
      .catch(function () {
        if (state) { state.textContent = "(could not refresh: reload the page)"; }
      });
  }
  setInterval(refresh, PERIOD);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { refresh(); }
  });
})();
