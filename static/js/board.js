// Board behaviour: drag-and-drop ordering (SortableJS) and the live-connection indicator.
// Everything else is plain htmx; this file only adds what htmx has no attribute for.
(function () {
  "use strict";

  function boardOrder(board) {
    var items = [];
    board.querySelectorAll(".shot-list").forEach(function (list) {
      list.querySelectorAll(":scope > .shot-card").forEach(function (card) {
        items.push((list.dataset.scene || "") + ":" + card.dataset.shot);
      });
    });
    return items;
  }

  function saveOrder() {
    var board = document.getElementById("board");
    if (!board) return;
    htmx.ajax("POST", board.dataset.reorderUrl, {
      values: { item: boardOrder(board) },
      target: "#board",
      swap: "outerHTML",
    });
  }

  function initSortable(root) {
    if (!document.body.classList.contains("may-edit") || typeof Sortable === "undefined") return;
    var lists = root.matches && root.matches(".shot-list") ? [root] : root.querySelectorAll(".shot-list");
    lists.forEach(function (list) {
      if (list.dataset.sortable) return;
      list.dataset.sortable = "1";
      Sortable.create(list, {
        group: "shots",
        animation: 150,
        // Mouse-event emulation behaves the same in every browser and under test automation.
        forceFallback: true,
        fallbackTolerance: 4,
        filter: ".shot-actions, a, button, input",
        preventOnFilter: false,
        draggable: ".shot-card",
        ghostClass: "is-ghost",
        chosenClass: "is-chosen",
        onEnd: function (event) {
          if (event.from === event.to && event.oldIndex === event.newIndex) return;
          saveOrder();
        },
      });
    });
  }

  htmx.onLoad(initSortable);

  // Show whether live updates are flowing, so nobody trusts a stale board.
  function setLive(state) {
    var el = document.getElementById("live-state");
    if (!el) return;
    el.textContent = state;
    el.dataset.state = state;
  }
  document.body.addEventListener("htmx:wsOpen", function () { setLive("live"); });
  document.body.addEventListener("htmx:wsClose", function () { setLive("offline"); });
})();
