// A review session (storyboard/sessions.py): the presenter's page reports its player over the
// project socket; every other page follows it.
//
// Clocks: each page measures its offset to the server's clock (the lowest-latency of a few
// round trips, as NTP does), so a report's `at` means the same instant on every page. While
// the presenter plays, a follower's target is t + (now - at) × rate; it corrects toward it
// continuously — a seek when far off, a slightly faster or slower rate when close — so the two
// stay within a frame or two without stutter (Syncplay's approach).
(function () {
  "use strict";
  var root = document.getElementById("session");
  if (!root) return;

  var id = parseInt(root.dataset.session, 10);
  var me = parseInt(root.dataset.me, 10);
  var presenter = parseInt(root.dataset.presenter, 10) || null;
  var live = root.dataset.live === "1";
  var url = root.dataset.url;
  var socket = null;
  var offset = 0, bestRtt = Infinity;
  var state = null;          // the presenter's last report (followers)
  var loading = null;        // the stage being fetched, as "item|take|compare|mode"
  var sound = false;
  var beat = null;

  // Far off: seek (a little ahead, since the seek itself takes time). Close: change the rate
  // by up to this fraction until caught up. Within half a frame: play at the presenter's rate.
  var SEEK_BEYOND = 0.5, SEEK_LEAD = 0.04, MAX_NUDGE = 0.25, BEAT_MS = 500;

  function serverNow() { return Date.now() + offset; }

  function send(message) {
    if (!socket) return;
    message.session = id;
    socket.send(JSON.stringify(message));
  }

  function stage() { return document.getElementById("session-stage"); }

  function mainVideo() {
    var s = stage();
    return s && (s.querySelector(".compare-a video") || s.querySelector(".player video"));
  }

  function fps() {
    var player = stage() && stage().querySelector(".player");
    return player ? parseFloat(player.dataset.fps) || 24 : 24;
  }

  function presenting() { return presenter === me; }

  // --- the page's own controls, by who presents ------------------------------------------
  function showRole() {
    root.querySelectorAll("[data-show]").forEach(function (el) {
      el.hidden = !live || (el.dataset.show === "presenter") !== presenting();
    });
    var ask = root.querySelector("[data-session-act=ask]");
    if (ask && presenting()) ask.textContent = "Ask for control";
    root.querySelectorAll("[data-presenter-only]").forEach(function (el) {
      el.disabled = !presenting();
    });
    var you = document.getElementById("session-you");
    if (you) you.textContent = presenting() ? "you present: everyone follows your player"
      : "your player follows theirs";
    var mute = !presenting() && !sound;
    root.querySelectorAll("video").forEach(function (v) {
      if (!v.closest(".compare-b")) v.muted = mute;
    });
    if (presenting()) startBeat(); else stopBeat();
  }

  function setPresenter(who, name) {
    presenter = who;
    var label = document.getElementById("session-presenter");
    if (label && name) {
      label.textContent = "Presented by ";
      var strong = document.createElement("strong");
      strong.textContent = name;
      label.appendChild(strong);
    }
    showRole();
    if (presenting()) report(true);
    else follow();
  }

  // --- presenter: report the player ------------------------------------------------------
  function snapshot() {
    var s = stage(), video = mainVideo();
    return {
      item: parseInt(s.dataset.item, 10) || 0, take: s.dataset.take || "",
      compare: s.dataset.compare || "", mode: s.dataset.mode || "side",
      t: video ? video.currentTime : 0, playing: video ? !video.paused && !video.ended : false,
      rate: video ? video.playbackRate : 1, at: Math.round(serverNow()),
    };
  }

  function report(store) {
    if (!presenting() || !live || !stage()) return;
    send({ op: store ? "state" : "beat", state: snapshot() });
  }

  function startBeat() {
    if (beat) return;
    beat = setInterval(function () {
      var video = mainVideo();
      if (video && !video.paused) report(false);
    }, BEAT_MS);
  }

  function stopBeat() {
    if (beat) clearInterval(beat);
    beat = null;
  }

  ["play", "playing", "pause", "seeked", "ratechange", "ended"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      if (!presenting() || event.target !== mainVideo()) return;
      report(true);
    }, true);
  });

  // --- followers: follow the presenter ---------------------------------------------------
  function key(s) { return [s.item, s.take, s.compare || "", s.compare ? s.mode : ""].join("|"); }

  function shown() {
    var s = stage();
    return s ? key({ item: s.dataset.item, take: s.dataset.take, compare: s.dataset.compare,
                     mode: s.dataset.mode }) : "";
  }

  function follow() {
    if (!state || presenting()) return;
    var wanted = key(state);
    if (wanted !== shown()) {
      if (loading === wanted) return;
      loading = wanted;
      var query = "?item=" + state.item + "&take=" + encodeURIComponent(state.take) +
        "&compare=" + encodeURIComponent(state.compare || "") + "&mode=" + state.mode;
      htmx.ajax("GET", url + query, { target: "#session-stage", swap: "outerHTML" })
        .then(function () { loading = null; showRole(); follow(); });
      return;
    }
    sync();
  }

  function target() {
    var t = state.t;
    if (state.playing) t += (serverNow() - state.at) / 1000 * state.rate;
    return t;
  }

  function sync() {
    var video = mainVideo();
    if (!state || presenting() || !video) return;
    if (video.readyState < 1) {
      video.addEventListener("loadedmetadata", sync, { once: true });
      return;
    }
    var want = Math.min(target(), video.duration || Infinity);
    var frame = 1 / fps();
    if (!state.playing) {
      if (!video.paused) video.pause();
      video.playbackRate = state.rate;
      if (Math.abs(video.currentTime - want) > frame / 4) video.currentTime = want;
      return;
    }
    if (want >= video.duration) return;
    var ahead = want - video.currentTime;  // > 0: the presenter is ahead of this page
    if (video.paused || Math.abs(ahead) > SEEK_BEYOND) {
      video.currentTime = Math.min(want + SEEK_LEAD, video.duration);
      video.playbackRate = state.rate;
      if (video.paused) video.play().catch(function () {});
      return;
    }
    if (Math.abs(ahead) > frame / 2) {
      var nudge = Math.max(-MAX_NUDGE, Math.min(MAX_NUDGE, ahead * 2));
      video.playbackRate = state.rate * (1 + nudge);
    } else if (video.playbackRate !== state.rate) {
      video.playbackRate = state.rate;
    }
  }

  setInterval(function () { if (state && state.playing) sync(); }, 100);

  // --- the socket ------------------------------------------------------------------------
  function clockPing() { send({ op: "clock", c: Date.now() }); }

  // The offset is only as good as the quickest round trip seen (its error is at most half of
  // it), and a busy server or network makes early ones slow: keep asking, often at first, and
  // keep the quickest recent answer.
  var pings = 0;
  function keepPinging() {
    clockPing();
    pings += 1;
    setTimeout(keepPinging, pings < 20 ? 250 : 5000);
  }

  document.body.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    bestRtt = Infinity;
    send({ op: "join" });
    if (!pings) keepPinging();
  });

  document.body.addEventListener("htmx:wsClose", function () { socket = null; });

  document.body.addEventListener("htmx:wsBeforeMessage", function (event) {
    var text = event.detail.message;
    if (typeof text !== "string" || text.charAt(0) !== "{") return;
    event.preventDefault();
    var message;
    try { message = JSON.parse(text); } catch (error) { return; }
    if (message.session !== id) return;
    handle(message);
  });

  function handle(message) {
    switch (message.op) {
      case "clock":
        var now = Date.now(), rtt = now - message.c;
        // An old best slowly loses its weight, so a clock that drifts is followed.
        bestRtt += 1;
        if (rtt >= 0 && rtt < bestRtt) {
          bestRtt = rtt;
          offset = message.s - (message.c + rtt / 2);
        }
        break;
      case "state":
      case "beat":
        if (message.presenter !== undefined) {
          // The answer to "join": who presents, and where.
          if (message.ended) ended();
          presenter = message.presenter ? message.presenter.id : null;
          setPresenter(presenter, message.presenter && message.presenter.name);
          if (presenting()) { adopt(message.state); break; }
        }
        if (presenting()) break;
        state = message.state;
        follow();
        break;
      case "presenter":
        setPresenter(message.id, message.name);
        break;
      case "ask":
        if (presenting() && message.id !== me) asked(message.id, message.name);
        break;
      case "ended":
        ended();
        break;
      case "refused":
        toast(message.message);
        break;
    }
  }

  // The presenter's own page, reloaded: it opened on the stored item; carry on from the
  // stored time (paused: a reloaded page may not start playing by itself).
  function adopt(saved) {
    var video = mainVideo();
    if (!saved || !video || key(saved) !== shown()) return;
    var go = function () { video.currentTime = saved.t; };
    if (video.readyState < 1) video.addEventListener("loadedmetadata", go, { once: true });
    else go();
  }

  function asked(who, name) {
    var box = document.getElementById("session-asks");
    var template = document.getElementById("ask-template");
    if (!box || !template || box.querySelector('[data-asker="' + who + '"]')) return;
    var form = template.content.firstElementChild.cloneNode(true);
    form.dataset.asker = who;
    form.querySelector("[name=to]").value = who;
    form.querySelector(".who").textContent = name;
    box.appendChild(form);
    htmx.process(form);
  }

  function ended() {
    live = false;
    stopBeat();
    showRole();
    toast("The presenter ended this session.");
  }

  function toast(text) {
    var el = document.getElementById("toast");
    if (!el) return;
    el.textContent = text;
    el.hidden = false;
  }

  // --- clicks ----------------------------------------------------------------------------
  root.addEventListener("click", function (event) {
    var act = event.target.closest("[data-session-act]");
    if (act && act.dataset.sessionAct === "ask") {
      send({ op: "ask" });
      act.textContent = "Asked — waiting for the presenter";
    } else if (act && act.dataset.sessionAct === "sound") {
      sound = !sound;
      act.setAttribute("aria-pressed", sound ? "true" : "false");
      act.textContent = sound ? "Sound off" : "Sound on";
      showRole();
    }
    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) dismiss.closest("form").remove();
    var item = event.target.closest(".playlist-item");
    if (item) {
      event.preventDefault();
      if (!presenting()) return;
      htmx.ajax("GET", url + "?item=" + item.dataset.item,
                { target: "#session-stage", swap: "outerHTML" });
    }
  });

  // A new stage: mark the playlist, set the controls for this person, and (presenting) tell
  // everyone what is on it now.
  // Another take or compare view of the same shot keeps the presenter's place in it.
  var carry = null;
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var video = mainVideo();
    carry = presenting() && video && event.detail.target === stage()
      ? { item: stage().dataset.item, t: video.currentTime } : null;
  });

  var lastStage = shown();
  document.body.addEventListener("htmx:afterSettle", function () {
    showRole();
    var now = shown();
    if (!now || now === lastStage) return;
    lastStage = now;
    var s = stage();
    root.querySelectorAll(".playlist-item").forEach(function (a) {
      a.classList.toggle("is-current", a.dataset.item === s.dataset.item);
    });
    if (!presenting()) return;
    report(true);
    var video = mainVideo();
    if (carry && video && carry.item === s.dataset.item && carry.t > 0) {
      var t = carry.t;
      var go = function () { video.currentTime = Math.min(t, video.duration || t); };
      if (video.readyState < 1) video.addEventListener("loadedmetadata", go, { once: true });
      else go();
    }
    carry = null;
  });

  showRole();
})();
