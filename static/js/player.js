// The take player: frame-accurate stepping, J/K/L, loop in/out, speed and an HH:MM:SS:FF
// time code at the clip's own frame rate. It enhances every `.player` on the page, including
// ones htmx swaps in later, by listening once on the document.
(function () {
  "use strict";

  function fpsOf(player) {
    return parseFloat(player.dataset.fps) || 24;
  }

  // The frame on screen: frame n spans [n/fps, (n+1)/fps). A hair of slack absorbs float error.
  function frameAt(player, time) {
    return Math.floor(time * fpsOf(player) + 1e-3);
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function timecode(player, time) {
    var fps = Math.round(fpsOf(player));
    var frame = frameAt(player, time);
    var seconds = Math.floor(frame / fps);
    return pad(Math.floor(seconds / 3600)) + ":" + pad(Math.floor(seconds / 60) % 60) + ":" +
      pad(seconds % 60) + ":" + pad(frame % fps);
  }

  // Seek to the middle of a frame, so rounding never lands on its neighbour.
  function showFrame(player, frame) {
    var video = player.querySelector("video");
    var last = video.duration ? Math.max(0, Math.ceil(video.duration * fpsOf(player)) - 1) : frame;
    frame = Math.max(0, Math.min(last, frame));
    video.pause();
    video.currentTime = (frame + 0.5) / fpsOf(player);
  }

  function update(player) {
    var video = player.querySelector("video");
    var code = player.querySelector(".timecode");
    if (code) code.textContent = timecode(player, video.currentTime);
    var play = player.querySelector("[data-act=play]");
    if (play) play.textContent = video.paused ? "Play" : "Pause";
    player.dataset.frame = frameAt(player, video.currentTime);
    var loop = player.querySelector(".player-loop");
    if (loop && video.duration) {
      var a = parseFloat(player.dataset.loopIn), b = parseFloat(player.dataset.loopOut);
      loop.hidden = isNaN(a) && isNaN(b);
      a = isNaN(a) ? 0 : a; b = isNaN(b) ? video.duration : b;
      loop.style.left = (100 * a / video.duration) + "%";
      loop.style.width = (100 * Math.max(0, b - a) / video.duration) + "%";
    }
  }

  function keepInLoop(player) {
    var video = player.querySelector("video");
    var a = parseFloat(player.dataset.loopIn), b = parseFloat(player.dataset.loopOut);
    if (!isNaN(b) && video.currentTime >= b) video.currentTime = isNaN(a) ? 0 : a;
  }

  function act(player, what, shift) {
    var video = player.querySelector("video");
    var frame = frameAt(player, video.currentTime);
    var second = Math.round(fpsOf(player));
    switch (what) {
      case "play":
        if (video.paused) video.play(); else video.pause();
        break;
      case "back": showFrame(player, frame - (shift ? second : 1)); break;
      case "fwd": showFrame(player, frame + (shift ? second : 1)); break;
      case "pause": video.pause(); break;
      case "forward":
        // L again while playing doubles the speed, up to 4×.
        video.playbackRate = video.paused ? 1 : Math.min(4, video.playbackRate * 2);
        video.play();
        break;
      case "rewind":
        // Browsers cannot play backwards: J jumps back a second each press.
        video.pause();
        showFrame(player, frame - second);
        break;
      case "in": player.dataset.loopIn = (frame / fpsOf(player)).toString(); break;
      case "out": player.dataset.loopOut = ((frame + 1) / fpsOf(player)).toString(); break;
      case "clear": delete player.dataset.loopIn; delete player.dataset.loopOut; break;
      default: return false;
    }
    update(player);
    return true;
  }

  var KEYS = { " ": "play", ArrowLeft: "back", ArrowRight: "fwd", j: "rewind", k: "pause",
               l: "forward", i: "in", o: "out", "\\": "clear" };

  document.addEventListener("keydown", function (event) {
    var player = event.target.closest && event.target.closest(".player");
    if (!player || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.matches("select, input, textarea")) return;
    var what = KEYS[event.key] || KEYS[event.key.toLowerCase()];
    if (what && act(player, what, event.shiftKey)) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".player [data-act]");
    if (!button || button.tagName === "SELECT") return;
    act(button.closest(".player"), button.dataset.act, event.shiftKey);
  });

  document.addEventListener("change", function (event) {
    if (!event.target.matches(".player select[data-act=speed]")) return;
    event.target.closest(".player").querySelector("video").playbackRate =
      parseFloat(event.target.value) || 1;
  });

  // While playing, follow every frame (where the browser can say when one is shown): the
  // time code stays exact and a loop turns at its out point, not up to 250 ms later.
  function follow(player) {
    var video = player.querySelector("video");
    if (!video.requestVideoFrameCallback) return;
    var tick = function () {
      keepInLoop(player);
      update(player);
      if (!video.paused) video.requestVideoFrameCallback(tick);
    };
    video.requestVideoFrameCallback(tick);
  }

  // Media events do not bubble; listening in the capture phase sees every video's.
  ["timeupdate", "seeked", "play", "pause", "loadedmetadata"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      var player = event.target.closest && event.target.closest(".player");
      if (!player) return;
      if (name === "timeupdate") keepInLoop(player);
      if (name === "play") follow(player);
      update(player);
    }, true);
  });

  // Other scripts (comments, review sessions) seek through this.
  window.storyboardPlayer = { showFrame: showFrame, frameAt: frameAt, timecode: timecode };
})();
