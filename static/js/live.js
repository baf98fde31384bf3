// Live pages (the board and the shot page): pushes for regions this page lacks are dropped
// quietly, typing in the shot editor survives others' pushed edits, and the editor tells the
// others which field this person is in.
(function () {
  "use strict";

  function oobSelector(el) {
    var spec = el.getAttribute("hx-swap-oob") || el.getAttribute("data-hx-swap-oob") || "true";
    var colon = spec.indexOf(":");
    return colon > 0 ? spec.slice(colon + 1) : "#" + CSS.escape(el.id);
  }

  function present(selector) {
    try {
      return document.querySelector(selector) !== null;
    } catch (error) {
      return false;
    }
  }

  // One push serves every page of the project (board cards, an open editor's takes, the
  // presence list); keep what this page has, drop the rest without htmx's oobErrorNoTarget.
  // A websocket message (no xhr) swaps each top-level element out of band; a response swaps
  // the elements marked hx-swap-oob.
  htmx.defineExtension("present-targets", {
    transformResponse: function (text, xhr) {
      var socket = !xhr;
      if (!socket && text.indexOf("hx-swap-oob") === -1) return text;
      var template = document.createElement("template");
      template.innerHTML = text;
      var candidates = socket ? template.content.children
        : template.content.querySelectorAll("[hx-swap-oob], [data-hx-swap-oob]");
      var dropped = false;
      Array.prototype.slice.call(candidates).forEach(function (el) {
        if (!present(oobSelector(el))) {
          el.remove();
          dropped = true;
        }
      });
      return dropped ? template.innerHTML : text;
    },
  });

  // Numbered pushes (consumers.py): the server tells a page that it missed some. The board
  // fetches itself (board.js); every region marked data-live-url (a shot's takes and history,
  // the asset grid) fetches its current self. Typing in the editor's fields is left alone.
  htmx.onLoad(function (el) {
    if (el.id !== "live-resync" || !el.hasAttribute("data-resync")) return;
    el.removeAttribute("data-resync");
    document.body.dispatchEvent(new CustomEvent("live:resync"));
  });

  document.body.addEventListener("live:resync", function () {
    document.querySelectorAll("[data-live-url][id]").forEach(function (region) {
      var selector = "#" + CSS.escape(region.id);
      htmx.ajax("GET", region.dataset.liveUrl, { target: selector, select: selector, swap: "outerHTML" });
    });
  });

  function isDirty(root) {
    return Array.prototype.some.call(root.querySelectorAll("input, textarea, select"), function (el) {
      if (el === document.activeElement) return true;
      if (el.type === "checkbox" || el.type === "radio") return el.checked !== el.defaultChecked;
      if (el.tagName === "SELECT") {
        return Array.prototype.some.call(el.options, function (o) { return o.selected !== o.defaultSelected; });
      }
      return el.value !== el.defaultValue;
    });
  }

  // Someone else saved a field of the open shot: show it, unless this person is in that field
  // or has typed in it. Their typing stays; saving then shows both versions to choose from.
  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    // A review panel with a note being written waits too: the decision it is about is checked
    // when it is sent, and the person is told if someone else decided first.
    var keeps = target.hasAttribute("data-editor-field") || target.hasAttribute("data-keeps-typing");
    if (keeps && isDirty(target)) {
      event.detail.shouldSwap = false;
      target.classList.add("changed-elsewhere");
    }
  });

  // Who is editing which field: the editor's small ws-send form carries it over the socket.
  var editing = null;

  function signal(field) {
    var form = document.querySelector("#shot-editor form.editing-signal");
    if (!form || field === editing) return;
    editing = field;
    form.querySelector("[name=editing]").value = field || "";
    htmx.trigger(form, "editing");
  }

  function fieldOf(el) {
    var field = el && el.closest && el.closest("form.shot-form [data-editor-field]");
    return field ? field.getAttribute("data-editor-field") : null;
  }

  document.body.addEventListener("focusin", function (event) {
    var field = fieldOf(event.target);
    if (field) signal(field);
  });
  document.body.addEventListener("focusout", function (event) {
    // Moving to another field says so itself; leaving the form says "stopped".
    if (fieldOf(event.target) && !fieldOf(event.relatedTarget)) signal(null);
  });
  // A swapped-in editor has no focused field (removing one fires no focusout).
  document.body.addEventListener("htmx:afterSwap", function () {
    if (editing && !fieldOf(document.activeElement)) signal(null);
  });

  // Typing while one's own save is on its way: the answer re-renders the editor, so whatever was
  // typed after the form was sent is carried into the new form (and the field keeps focus and
  // caret), instead of being replaced by the values that were saved.
  var saving = null;
  var TYPED = "input:not([type=hidden]):not([type=checkbox]):not([type=radio]):not([type=file]), textarea";

  function typedValues(form) {
    var values = {};
    form.querySelectorAll(TYPED).forEach(function (el) { if (el.name) values[el.name] = el.value; });
    return values;
  }

  document.body.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (!form.matches || !form.matches("form.shot-form")) return;
    saving = { xhr: event.detail.xhr, shot: form.dataset.shot, sent: typedValues(form), later: null,
      again: false };
  });

  // htmx drops a second submit while the first is on its way; remember it and send the new
  // form once the first answer is in, so "Save" pressed twice saves what was typed in between.
  document.body.addEventListener("submit", function (event) {
    var form = event.target;
    if (saving && form.matches && form.matches("form.shot-form") && form.dataset.shot === saving.shot) {
      saving.again = true;
    }
  }, true);

  document.body.addEventListener("htmx:beforeSwap", function (event) {
    if (!saving || event.detail.xhr !== saving.xhr) return;
    var form = document.querySelector("form.shot-form[data-shot='" + saving.shot + "']");
    if (!form) return;
    var now = typedValues(form);
    var later = {};
    Object.keys(now).forEach(function (name) {
      if (name in saving.sent && now[name] !== saving.sent[name]) later[name] = now[name];
    });
    var active = document.activeElement;
    saving.later = later;
    saving.focus = active && form.contains(active) && active.name ? {
      name: active.name, start: active.selectionStart, end: active.selectionEnd } : null;
  });

  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (!saving || event.detail.xhr !== saving.xhr) return;
    var done = saving;
    saving = null;
    var form = document.querySelector("form.shot-form[data-shot='" + done.shot + "']");
    if (!form || !done.later) return;
    Object.keys(done.later).forEach(function (name) {
      var field = form.elements.namedItem(name);
      if (field && "value" in field) field.value = done.later[name];  // defaultValue stays: it reads as unsaved
    });
    var focused = done.focus && form.elements.namedItem(done.focus.name);
    if (focused && focused.focus) {
      focused.focus();
      if (focused.setSelectionRange && done.focus.start !== null) {
        try { focused.setSelectionRange(done.focus.start, done.focus.end); } catch (error) { /* not a text field */ }
      }
    }
    // Saved, not refused or in conflict: the press that htmx dropped is sent once the new form
    // is settled (before that htmx has not taken it over, and the browser would post it itself).
    if (done.again && event.detail.xhr.status < 300 && !form.querySelector("#conflicts")) {
      resend = { xhr: event.detail.xhr, form: form };
    }
  });

  var resend = null;
  document.body.addEventListener("htmx:afterSettle", function (event) {
    if (!resend || event.detail.xhr !== resend.xhr) return;
    var form = resend.form;
    resend = null;
    if (form.isConnected) form.requestSubmit();
  });
})();
