// Site-wide: turn failed htmx requests into a readable message instead of silence.
(function () {
  "use strict";
  var timer = null;

  function toast(text) {
    var el = document.getElementById("toast");
    if (!el) return;
    el.textContent = text;
    el.hidden = false;
    clearTimeout(timer);
    timer = setTimeout(function () { el.hidden = true; }, 6000);
  }

  document.body.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = xhr.getResponseHeader("Content-Type") || "";
    var message = xhr.status === 403 ? "You do not have permission to do that — your role may have changed."
      : xhr.status === 404 ? "That item no longer exists. Reload to see the current state."
      : xhr.status >= 500 ? "Something went wrong on the server. Nothing was changed; try again."
      : "The request was refused (" + xhr.status + ").";
    if (text.indexOf("text/plain") === 0 && xhr.responseText) message = xhr.responseText;
    toast(message);
  });
  // Refusals the server explains itself (HX-Trigger: {"showMessage": "..."}).
  document.body.addEventListener("showMessage", function (event) { toast(event.detail.value); });
  document.body.addEventListener("htmx:sendError", function () {
    toast("Cannot reach the server. Check your connection; nothing was saved.");
  });
})();
