// The review queue from the keyboard: j/k move between shots, a approves the current one,
// c puts the cursor in its note (sending back needs one). Typing in a note is never a shortcut.
(function () {
  "use strict";
  var items = Array.prototype.slice.call(document.querySelectorAll(".queue-item"));
  if (!items.length) return;
  var at = 0;

  function focus(index) {
    at = Math.max(0, Math.min(items.length - 1, index));
    items.forEach(function (item, i) { item.classList.toggle("is-current", i === at); });
    items[at].focus();
    items[at].scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "input" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j") focus(at + 1);
    else if (event.key === "k") focus(at - 1);
    else if (event.key === "a") {
      var approve = items[at].querySelector("button[data-key=a]");
      if (approve) approve.click();
    } else if (event.key === "c") {
      var note = items[at].querySelector("textarea");
      if (note) { event.preventDefault(); note.focus(); }
    } else return;
  });
  focus(0);
})();
