// Comments beside the player: a new comment takes the player's frame (or its loop), clicking
// a comment's time code shows that frame, markers on the player's track show where comments
// are, Reply threads under a comment, and @ suggests the team's people.
(function () {
  "use strict";

  function viewerOf(el) {
    return el && el.closest && el.closest(".viewer");
  }

  function playerIn(viewer) {
    return viewer && viewer.querySelector(".player");
  }

  // The frame fields are filled from the player the moment the form is sent.
  document.body.addEventListener("htmx:configRequest", function (event) {
    var form = event.detail.elt;
    if (!form.matches || !form.matches("form.comment-form")) return;
    var player = playerIn(viewerOf(form));
    var params = event.detail.parameters;
    var at = params.get ? params.get("at") : params.at;
    var frame = "", end = "";
    if (player && at !== "take" && !(params.get ? params.get("parent") : params.parent)) {
      frame = player.dataset.frame || "0";
      var fps = parseFloat(player.dataset.fps) || 24;
      if (at === "loop" && player.dataset.loopIn !== undefined) {
        frame = String(Math.round(parseFloat(player.dataset.loopIn) * fps));
        if (player.dataset.loopOut !== undefined) {
          end = String(Math.round(parseFloat(player.dataset.loopOut) * fps) - 1);
        }
      }
    }
    if (params.set) { params.set("frame", frame); params.set("frame_end", end); }
    else { params.frame = frame; params.frame_end = end; }
  });

  function markers(viewer) {
    var player = playerIn(viewer);
    if (!player) return;
    var video = player.querySelector("video");
    var track = player.querySelector(".player-track");
    if (!video.duration || !track) return;
    var count = video.duration * (parseFloat(player.dataset.fps) || 24);
    track.querySelectorAll(".player-mark").forEach(function (m) { m.remove(); });
    viewer.querySelectorAll(".comment[data-frame]").forEach(function (comment) {
      var mark = document.createElement("a");
      mark.className = "player-mark" + (comment.classList.contains("is-resolved") ? " is-resolved" : "");
      mark.href = "#" + comment.id;
      mark.dataset.frame = comment.dataset.frame;
      mark.style.left = (100 * parseInt(comment.dataset.frame, 10) / count) + "%";
      mark.title = (comment.querySelector(".comment-body") || comment).textContent.trim().slice(0, 80);
      track.appendChild(mark);
    });
  }

  function refresh() {
    document.querySelectorAll(".viewer").forEach(markers);
  }
  document.addEventListener("loadedmetadata", function (event) {
    var viewer = viewerOf(event.target);
    if (viewer) markers(viewer);
  }, true);
  document.body.addEventListener("htmx:afterSettle", refresh);
  document.addEventListener("DOMContentLoaded", refresh);

  document.addEventListener("click", function (event) {
    var seek = event.target.closest && event.target.closest(".viewer [data-frame]:is(a)");
    if (seek) {
      var player = playerIn(viewerOf(seek));
      if (player && window.storyboardPlayer) {
        event.preventDefault();
        window.storyboardPlayer.showFrame(player, parseInt(seek.dataset.frame, 10));
        if (seek.classList.contains("player-mark")) {
          var target = document.getElementById(seek.getAttribute("href").slice(1));
          if (target) target.scrollIntoView({ block: "nearest" });
        }
      }
      return;
    }
    var reply = event.target.closest && event.target.closest(".viewer [data-reply]");
    if (reply) {
      var form = viewerOf(reply).querySelector("form.comment-form");
      if (!form) return;
      form.querySelector("[name=parent]").value = reply.dataset.reply;
      var note = form.querySelector(".replying");
      note.hidden = !reply.dataset.reply;
      note.querySelector("span").textContent = reply.dataset.replyTo || "";
      form.querySelector("select[name=at]").hidden = !!reply.dataset.reply;
      if (reply.dataset.reply) form.querySelector("textarea").focus();
    }
  });
  document.body.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (event.detail.successful && form.matches && form.matches("form.comment-form")) {
      form.querySelector(".replying").hidden = true;
      form.querySelector("select[name=at]").hidden = false;
    }
  });

  // @mentions: suggest the team's usernames (only theirs; anything else stays plain text).
  function mentionAt(textarea) {
    var before = textarea.value.slice(0, textarea.selectionStart);
    var match = /(^|[^\w@])@([\w.+-]*)$/.exec(before);
    return match ? match[2] : null;
  }

  document.addEventListener("input", function (event) {
    var textarea = event.target;
    if (!textarea.matches || !textarea.matches("form.comment-form textarea")) return;
    var form = textarea.form, list = form.querySelector(".mention-list");
    var prefix = mentionAt(textarea);
    var names = (form.dataset.team || "").split(" ").filter(function (name) {
      return prefix !== null && name && name.toLowerCase().indexOf(prefix.toLowerCase()) === 0;
    });
    list.replaceChildren.apply(list, names.slice(0, 6).map(function (name) {
      var item = document.createElement("li");
      item.setAttribute("role", "option");
      item.dataset.name = name;
      item.textContent = "@" + name;
      return item;
    }));
    list.hidden = names.length === 0;
  });

  document.addEventListener("mousedown", function (event) {
    var item = event.target.closest && event.target.closest(".mention-list li");
    if (!item) return;
    event.preventDefault();
    var form = item.closest("form"), textarea = form.querySelector("textarea");
    var start = textarea.selectionStart, prefix = mentionAt(textarea) || "";
    textarea.value = textarea.value.slice(0, start - prefix.length) + item.dataset.name + " " +
      textarea.value.slice(start);
    var caret = start - prefix.length + item.dataset.name.length + 1;
    textarea.setSelectionRange(caret, caret);
    form.querySelector(".mention-list").hidden = true;
    textarea.focus();
  });
})();
