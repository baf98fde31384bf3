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

  // Drawings: rectangles, arrows and freehand lines on the paused frame, in picture
  // coordinates (0–1), sent with the comment; shown again whenever the player is on a frame
  // a comment with a drawing is about.
  var SVG = "http://www.w3.org/2000/svg";

  function svgEl(name, attrs) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { el.setAttribute(key, attrs[key]); });
    return el;
  }

  function drawShape(svg, shape) {
    var p = shape.points;
    if (shape.tool === "rect") {
      svg.appendChild(svgEl("rect", { x: Math.min(p[0][0], p[1][0]), y: Math.min(p[0][1], p[1][1]),
        width: Math.abs(p[1][0] - p[0][0]), height: Math.abs(p[1][1] - p[0][1]) }));
    } else if (shape.tool === "arrow") {
      svg.appendChild(svgEl("line", { x1: p[0][0], y1: p[0][1], x2: p[1][0], y2: p[1][1] }));
      var angle = Math.atan2(p[1][1] - p[0][1], p[1][0] - p[0][0]), size = 0.03;
      var head = [0.5, -0.5].map(function (turn) {
        return [p[1][0] - size * Math.cos(angle + turn), p[1][1] - size * Math.sin(angle + turn)];
      });
      svg.appendChild(svgEl("polygon", { "class": "arrow-head",
        points: [p[1]].concat(head).map(function (q) { return q.join(","); }).join(" ") }));
    } else {
      svg.appendChild(svgEl("polyline", { points: p.map(function (q) { return q.join(","); }).join(" ") }));
    }
  }

  function formOf(viewer) {
    return viewer && viewer.querySelector("form.comment-form");
  }

  function drafted(viewer) {
    var form = formOf(viewer);
    try { return form && form.drawing.value ? JSON.parse(form.drawing.value) : []; }
    catch (error) { return []; }
  }

  // What the picture shows: the drawing being made, else the drawings of comments on this frame.
  function showMarks(viewer) {
    var player = playerIn(viewer);
    var svg = player && player.querySelector(".player-marks");
    if (!svg) return;
    svg.replaceChildren();
    var shapes = drafted(viewer);
    if (!shapes.length && !svg.classList.contains("is-drawing")) {
      var frame = parseInt(player.dataset.frame || "0", 10);
      viewer.querySelectorAll(".comment[data-drawing]").forEach(function (comment) {
        var first = parseInt(comment.dataset.frame, 10);
        var last = comment.dataset.frameEnd ? parseInt(comment.dataset.frameEnd, 10) : first;
        if (frame >= first && frame <= last) {
          try { shapes = shapes.concat(JSON.parse(comment.dataset.drawing)); } catch (error) { /* skip */ }
        }
      });
    }
    shapes.forEach(function (shape) { drawShape(svg, shape); });
  }

  ["seeked", "timeupdate", "pause"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      var viewer = viewerOf(event.target);
      if (viewer) showMarks(viewer);
    }, true);
  });
  document.body.addEventListener("htmx:afterSettle", function () {
    document.querySelectorAll(".viewer").forEach(showMarks);
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".viewer .draw-tools button");
    if (!button) return;
    var viewer = viewerOf(button), player = playerIn(viewer), form = formOf(viewer);
    var svg = player && player.querySelector(".player-marks");
    if (!svg) return;
    var tool = button.dataset.tool;
    viewer.querySelectorAll(".draw-tools button").forEach(function (b) {
      b.setAttribute("aria-pressed", b === button && tool ? "true" : "false");
    });
    if (!tool) form.drawing.value = "";
    player.querySelector("video").pause();
    svg.classList.toggle("is-drawing", !!tool);
    svg.dataset.tool = tool;
    showMarks(viewer);
  });

  function at(svg, event) {
    var box = svg.getBoundingClientRect();
    var clamp = function (v) { return Math.round(Math.max(0, Math.min(1, v)) * 10000) / 10000; };
    return [clamp((event.clientX - box.left) / box.width), clamp((event.clientY - box.top) / box.height)];
  }

  var stroke = null;
  document.addEventListener("pointerdown", function (event) {
    var svg = event.target.closest && event.target.closest(".player-marks.is-drawing");
    if (!svg) return;
    event.preventDefault();
    svg.setPointerCapture(event.pointerId);
    var point = at(svg, event);
    stroke = { svg: svg, shape: { tool: svg.dataset.tool, points: [point, point] } };
  });
  document.addEventListener("pointermove", function (event) {
    if (!stroke) return;
    var point = at(stroke.svg, event), points = stroke.shape.points;
    if (stroke.shape.tool === "free") { if (points.length < 500) points.push(point); }
    else points[1] = point;
    var viewer = viewerOf(stroke.svg);
    showMarks(viewer);
    drawShape(stroke.svg, stroke.shape);
  });
  document.addEventListener("pointerup", function () {
    if (!stroke) return;
    var viewer = viewerOf(stroke.svg), form = formOf(viewer);
    var shapes = drafted(viewer);
    shapes.push(stroke.shape);
    form.drawing.value = JSON.stringify(shapes);
    stroke = null;
    showMarks(viewer);
  });
  // Sent: the drawing now belongs to the comment.
  document.body.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (event.detail.successful && form.matches && form.matches("form.comment-form")) {
      form.drawing.value = "";
      var viewer = viewerOf(form), svg = playerIn(viewer) && playerIn(viewer).querySelector(".player-marks");
      if (svg) svg.classList.remove("is-drawing");
      viewer.querySelectorAll(".draw-tools button").forEach(function (b) { b.setAttribute("aria-pressed", "false"); });
    }
  });
})();
