// Seam wipe: the upstream's last frame over this take's first, cut at the slider's position.
// Delegated from the document, so wipes that arrive later (htmx swaps, websocket pushes) work
// without being set up. The position is a CSS custom property set through the CSSOM, which the
// page's Content-Security-Policy allows (no inline style attributes are written).
(function () {
  "use strict";
  document.addEventListener("input", function (event) {
    var slider = event.target;
    if (!(slider instanceof HTMLInputElement) || !slider.closest(".seam-wipe-control")) return;
    var wipe = slider.closest(".seam-wipe");
    if (wipe) wipe.style.setProperty("--wipe", slider.value + "%");
  });
})();
