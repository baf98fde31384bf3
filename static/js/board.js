// Board behaviour: drag-and-drop ordering (SortableJS), the live-connection indicator and
// re-syncing after a reconnect.
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
      swap: "none",
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

  // The board as it is now (the same GET htmx makes for the board region), for a board that
  // missed pushes: its socket was closed meanwhile, or the server saw a numbered push go
  // missing (live.js). The shot editor is left alone: it may hold someone's unsaved typing.
  function resync() {
    var board = document.getElementById("board");
    if (board) htmx.ajax("GET", board.dataset.boardUrl, { target: "#board", swap: "outerHTML" });
  }

  document.body.addEventListener("live:resync", resync);

  // Cards past the first screenful arrive as placeholders (.is-lazy, with a real link to the
  // shot); fetch the whole cards of those near the viewport, in one request per batch. The
  // answer swaps each card in by its id, as a pushed card would.
  var pending = new Set();
  var asked = new Set();
  var flushing = false;
  // One request at a time: htmx keeps only the last of the requests queued behind one in
  // flight from the same element, so a fast scroll would lose batches. What comes into view
  // meanwhile waits in `pending` and goes in the next batch.
  var inFlight = false;

  function flushLazy() {
    flushing = false;
    var board = document.getElementById("board");
    if (!board || !pending.size || inFlight) return;
    var ids = Array.from(pending).slice(0, 60);
    ids.forEach(function (id) { pending.delete(id); asked.add(id); });
    var query = ids.map(function (id) { return "shot=" + encodeURIComponent(id); }).join("&");
    inFlight = true;
    htmx.ajax("GET", board.dataset.cardsUrl + "?" + query, { source: board, swap: "none" })
      .finally(function () {
        inFlight = false;
        // A card still a placeholder after its answer (deleted meanwhile) is not asked again
        // until the board is fetched anew; the rest of the queue goes next.
        if (pending.size) scheduleLazy();
      });
  }

  function scheduleLazy() {
    if (flushing) return;
    flushing = true;
    window.requestAnimationFrame(flushLazy);
  }

  // A fetched card fills a placeholder only. If a pushed card replaced the placeholder while
  // the request was on its way, the pushed one is as new or newer: keep it. (A response is
  // swapped in one go, between its beforeSwap and afterRequest; pushes swap in tasks of their
  // own, never in between.)
  var filling = false;
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var board = document.getElementById("board");
    var path = event.detail.requestConfig && event.detail.requestConfig.path;
    filling = !!(board && path && path.indexOf(board.dataset.cardsUrl) === 0);
  });
  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    if (filling && !event.detail.target.classList.contains("is-lazy")) {
      event.detail.shouldSwap = false;
    }
  });
  document.body.addEventListener("htmx:afterRequest", function () { filling = false; });

  var lazyObserver = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (!entry.isIntersecting) return;
      lazyObserver.unobserve(entry.target);
      var id = entry.target.dataset.shot;
      if (entry.target.classList.contains("is-lazy") && !asked.has(id)) pending.add(id);
    });
    scheduleLazy();
  }, { rootMargin: "800px 0px" }) : null;

  htmx.onLoad(function (root) {
    if (!lazyObserver || !root.querySelectorAll) return;
    if (root.id === "board") asked.clear();  // a fresh board: its placeholders are new
    var cards = root.matches && root.matches(".shot-card.is-lazy") ? [root]
      : root.querySelectorAll(".shot-card.is-lazy");
    cards.forEach(function (card) { lazyObserver.observe(card); });
  });

  // A board change arrives as its new order (pushed, or in the answer to one's own request):
  // #board-order carries [[scene id or null, [shot ids…]], …] and any card or scene heading the
  // board does not have yet. Existing cards are moved, never re-rendered; numbers follow by CSS.
  var lastStamp = 0;

  function placeAfter(node, cursor, parent) {
    var next = cursor ? cursor.nextSibling : parent.firstChild;
    if (node !== next) parent.insertBefore(node, next);
    return node;
  }

  function shotList(board, sceneId) {
    var key = sceneId === null ? "" : String(sceneId);
    var list = board.querySelector('.shot-list[data-scene="' + key + '"]');
    if (list) return list;
    list = document.createElement("div");
    list.className = "shot-list";
    list.dataset.scene = key;
    var empty = document.createElement("p");
    empty.className = "empty-list muted";
    empty.textContent = key ? "No shots in this scene yet." : "No shots yet.";
    list.appendChild(empty);
    return list;
  }

  function applyOrder(holder) {
    var board = document.getElementById("board");
    var order = holder.dataset.order;
    var stamp = Number(holder.dataset.stamp || 0);
    var incoming = {};
    Array.prototype.forEach.call(holder.children, function (el) { incoming[el.id] = el; });
    holder.replaceChildren();
    if (!board || !order || stamp < lastStamp) return;
    lastStamp = stamp;
    var find = function (id) { return board.querySelector("#" + id) || incoming[id] || null; };
    var keep = new Set();
    var missing = false;
    var cursor = document.getElementById("board-summary");
    JSON.parse(order).forEach(function (group) {
      var sceneId = group[0];
      var shots = group[1];
      if (sceneId !== null) {
        var heading = find("scene-" + sceneId);
        if (!heading) { missing = true; return; }
        cursor = placeAfter(heading, cursor, board);
        keep.add(heading);
        var count = heading.querySelector("[data-shot-count]");
        if (count) count.textContent = shots.length + " shot" + (shots.length === 1 ? "" : "s");
      }
      var list = shotList(board, sceneId);
      cursor = placeAfter(list, cursor, board);
      keep.add(list);
      var previous = null;
      shots.forEach(function (id) {
        var card = find("shot-" + id);
        if (!card) { missing = true; return; }
        previous = placeAfter(card, previous, list);
        keep.add(card);
      });
      initSortable(list);
    });
    board.querySelectorAll(".scene-heading, .shot-list, .shot-card").forEach(function (el) {
      if (!keep.has(el)) el.remove();
    });
    // A card or heading this board never received (a message lost on the way): fetch it all.
    if (missing) resync();
  }

  htmx.onLoad(function (el) {
    if (el.id === "board-order") applyOrder(el);
  });

  // On a narrow screen the side panel sits below the whole board, so opening a shot there
  // would fill a panel nobody sees: follow the link's real href to the shot's own page instead.
  function editorBesideBoard(editor) {
    var column = document.querySelector(".board-column");
    if (!column) return true;
    return editor.getBoundingClientRect().top < column.getBoundingClientRect().bottom - 1 &&
      editor.getBoundingClientRect().left > column.getBoundingClientRect().left;
  }

  document.addEventListener("htmx:confirm", function (event) {
    var elt = event.detail.elt;
    var target = event.detail.target;
    if (!target || target.id !== "editor" || elt.tagName !== "A" || !elt.href) return;
    if (!document.querySelector(".board-column") || editorBesideBoard(target)) return;
    event.preventDefault();
    window.location.assign(elt.href);
  });

  // Show whether live updates are flowing, so nobody trusts a stale board.
  function setLive(state) {
    var el = document.getElementById("live-state");
    if (!el) return;
    el.textContent = state;
    el.dataset.state = state;
  }


  // Close codes the server uses to shut a socket out on purpose (4403: no longer allowed).
  function refused(code) { return code >= 4000 && code < 5000; }

  // A socket that opens again re-syncs only if pushes went out meanwhile: its server compares
  // what the page had seen with what was sent (consumers.py) and says so (#live-resync).
  document.body.addEventListener("htmx:wsOpen", function () {
    setLive("live");
  });
  document.body.addEventListener("htmx:wsClose", function (event) {
    setLive("offline");
    var code = event.detail.event.code;
    // The ws extension retries only after abnormal closes (1006, 1011-1013). A server that
    // closes cleanly (Daphne after a day, a restart) would leave the board offline for good;
    // reconnect after a pause, unless the server shut this socket out or the board is gone
    // (the extension closes the socket of an element that left the page).
    var retried = [1006, 1011, 1012, 1013].indexOf(code) >= 0;
    if (!retried && !refused(code) && document.body.contains(event.target)) {
      var socket = event.detail.socketWrapper;
      setTimeout(function () { socket.reconnect(); }, 1000 + Math.random() * 4000);
    }
  });

  // Review filter: the links work as plain links (the server marks the board); here they
  // switch at once, and cards pushed later hide or show themselves by the same CSS rule.
  document.body.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest(".review-filter a[data-filter]");
    var board = document.getElementById("board");
    if (!link || !board || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    var value = link.dataset.filter;
    if (value) board.dataset.filter = value;
    else delete board.dataset.filter;
    link.parentNode.querySelectorAll("a").forEach(function (a) {
      if (a === link) a.setAttribute("aria-current", "true");
      else a.removeAttribute("aria-current");
    });
    history.replaceState(null, "", link.getAttribute("href"));
  });
})();
