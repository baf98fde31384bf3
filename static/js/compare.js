// Compare two takes: the right player follows the left (play, pause, rate, seeks), and in
// wipe mode the right take is laid over the left and revealed up to the slider.
(function () {
  "use strict";
  var box = document.getElementById("compare");
  if (!box) return;
  var a = box.querySelector(".compare-a video"), b = box.querySelector(".compare-b video");

  function follow() {
    if (Math.abs(b.currentTime - a.currentTime) > 0.5 / 24) b.currentTime = a.currentTime;
    b.playbackRate = a.playbackRate;
  }
  a.addEventListener("play", function () { follow(); b.play(); });
  a.addEventListener("pause", function () { b.pause(); follow(); });
  a.addEventListener("seeked", follow);
  a.addEventListener("ratechange", follow);
  // While both play, keep the right within a frame of the left.
  a.addEventListener("timeupdate", function () { if (!a.paused) follow(); });
  b.muted = true;

  var wipe = document.getElementById("wipe");
  if (wipe) {
    var apply = function () {
      box.style.setProperty("--wipe", wipe.value + "%");
    };
    wipe.addEventListener("input", apply);
    apply();
  }
})();
