// The step page: follow the running attempt's log (poll the dashboard's log route for the
// bytes after the offset the page was rendered at; the server renders them as inert HTML).
(function () {
  "use strict";
  var log = document.getElementById("step-log");
  if (!log || log.getAttribute("data-follow") !== "yes") { return; }
  var box = document.getElementById("log-follow");
  var status = document.getElementById("log-status");
  var url = log.getAttribute("data-log-url");
  var offset = parseInt(log.getAttribute("data-offset") || "0", 10) || 0;
  var timer = null;

  function following() { return !box || box.checked; }

  function poll() {
    timer = null;
    fetch(url + "?after=" + offset, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        return answer.json();
      })
      .then(function (doc) {
        if (doc.html) {
          var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
          log.insertAdjacentHTML("beforeend", doc.html);
          if (atEnd && following()) { log.scrollTop = log.scrollHeight; }
        }
        offset = doc.offset;
        if (doc.finished) {
          if (status) { status.textContent = "The attempt ended; reload to see its outcome."; }
          return;
        }
        timer = window.setTimeout(poll, 1000);
      })
      .catch(function () {
        if (status) { status.textContent = "Lost the log; reload to try again."; }
      });
  }

  if (box) {
    box.addEventListener("change", function () {
      if (box.checked) { log.scrollTop = log.scrollHeight; }
    });
  }
  log.scrollTop = log.scrollHeight;
  timer = window.setTimeout(poll, 1000);
})();
