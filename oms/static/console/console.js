// The action panel: htmx loads an action's form into #panel-body; show it as a modal dialog.
(function () {
  "use strict";
  const panel = () => document.getElementById("panel");
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target.id === "panel-body" && !panel().open) panel().showModal();
  });
  document.addEventListener("click", (event) => {
    const closer = event.target.closest("[data-close-panel]");
    if (closer && panel().open) {
      event.preventDefault();
      panel().close();
    }
  });
})();
