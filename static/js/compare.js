// Compare two takes: the right player follows the left (play, pause, rate, seeks), and in
// wipe mode the right take is laid over the left and revealed up to the slider. Works on the
// compare page and on a review session's stage, which htmx swaps in.
(function () {
  "use strict";

  function init(box) {
    if (box.dataset.compareReady) return;
    box.dataset.compareReady = "1";
    var a = box.querySelector(".compare-a video"), b = box.querySelector(".compare-b video");
    if (!a || !b) return;

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

    var wipe = box.querySelector("#wipe");
    if (wipe) {
      var apply = function () {
        box.style.setProperty("--wipe", wipe.value + "%");
      };
      wipe.addEventListener("input", apply);
      apply();
    }
  }

  var box = document.getElementById("compare");
  if (box) init(box);
  if (window.htmx) {
    htmx.onLoad(function (el) {
      var found = el.id === "compare" ? el : el.querySelector && el.querySelector("#compare");
      if (found) init(found);
    });
  }
})();
