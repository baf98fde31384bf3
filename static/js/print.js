// The print view's Print button (no inline handlers: the page runs under a strict CSP).
document.addEventListener("click", function (event) {
  if (event.target.closest && event.target.closest("[data-print]")) window.print();
});
