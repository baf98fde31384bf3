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

// Small behaviours that would otherwise be inline handlers, which the Content-Security-Policy
// forbids (no inline script, no hx-on: htmx runs those through eval).
(function () {
  "use strict";
  // <form data-reset-on-success>: empty the form once htmx got a 2xx for it.
  document.body.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (event.detail.successful && form.matches && form.matches("form[data-reset-on-success]")) {
      form.reset();
    }
  });
  // Invitation links select themselves on click, ready to copy.
  document.body.addEventListener("click", function (event) {
    if (event.target.matches && event.target.matches("input.invite-url")) event.target.select();
  });
})();

// The shot editor offers only what the chosen Seedance endpoint accepts: options it does not
// take are disabled, and a value that stopped being valid moves to the endpoint's default.
(function () {
  "use strict";

  function specs() {
    var el = document.getElementById("endpoint-options");
    return el ? JSON.parse(el.textContent) : null;
  }

  function allow(select, values, fallback) {
    if (!select) return;
    Array.prototype.forEach.call(select.options, function (option) {
      option.disabled = values.indexOf(option.value) === -1;
    });
    if (select.selectedOptions[0] && select.selectedOptions[0].disabled) {
      select.value = values.indexOf(fallback) !== -1 ? fallback : values[0];
      // Let the live price (and anything else listening) follow the corrected value.
      select.dispatchEvent(new Event("change", {bubbles: true}));
    }
  }

  function constrain() {
    var all = specs();
    var endpoint = document.getElementById("id_endpoint");
    var mode = document.getElementById("id_mode");
    if (!all || !endpoint) return;
    if (mode) {
      Array.prototype.forEach.call(endpoint.options, function (option) {
        option.disabled = all[option.value] && all[option.value].mode !== mode.value;
      });
      if (endpoint.selectedOptions[0] && endpoint.selectedOptions[0].disabled) {
        var first = Array.prototype.find.call(endpoint.options, function (o) { return !o.disabled; });
        if (first) {
          endpoint.value = first.value;
          endpoint.dispatchEvent(new Event("change", {bubbles: true}));
        }
      }
    }
    var spec = all[endpoint.value];
    if (!spec) return;
    allow(document.getElementById("id_resolution"), spec.resolutions, "720p");
    allow(document.getElementById("id_duration"), spec.durations, spec.default_duration);
    var frames = document.getElementById("id_num_frames");
    if (frames) frames.disabled = spec.extra.indexOf("num_frames") === -1;
  }

  document.body.addEventListener("change", function (event) {
    if (event.target.id === "id_endpoint" || event.target.id === "id_mode") constrain();
  });
  htmx.onLoad(constrain);
})();

// Menus (<details class="menu">) close when the person clicks elsewhere or presses Escape,
// as menus do everywhere else; a native <details> alone stays open.
(function () {
  "use strict";
  function closeMenus(except) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (menu !== except) menu.open = false;
    });
  }
  document.addEventListener("click", function (event) {
    closeMenus(event.target.closest ? event.target.closest("details.menu") : null);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") closeMenus(null);
  });
})();
