// Click (or Enter on) a figure of the book to see it at its natural size in an
// overlay; click again, or press Escape, to close it. The page itself shows a
// figure at most as wide as the text column (see css/cnnbook.css). No library,
// no network: the book is read offline.
(function () {
  "use strict";
  var SELECTOR = "main .cell_output img, main figure img, main img.cnnbook-zoomable";
  var overlay = null;
  var opener = null;

  function close() {
    if (!overlay) return;
    overlay.remove();
    overlay = null;
    document.documentElement.classList.remove("cnnbook-lightbox-open");
    if (opener) opener.focus();
  }

  function open(img) {
    close();
    opener = img;
    overlay = document.createElement("div");
    overlay.className = "cnnbook-lightbox";
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-modal", "true");
    overlay.setAttribute("aria-label", (img.alt || "figure") + " (full size; click or press Escape to close)");
    overlay.tabIndex = -1;
    var large = document.createElement("img");
    large.src = img.currentSrc || img.src;
    large.alt = img.alt || "";
    // the natural size, even when the window is narrower: the overlay scrolls
    large.width = img.naturalWidth;
    large.height = img.naturalHeight;
    overlay.appendChild(large);
    overlay.addEventListener("click", close);
    document.body.appendChild(overlay);
    document.documentElement.classList.add("cnnbook-lightbox-open");
    overlay.focus();
  }

  function zoomable(target) {
    var img = target && target.closest ? target.closest(SELECTOR) : null;
    return img && img.tagName === "IMG" && !img.closest(".cnnbook-lightbox") ? img : null;
  }

  function prepare() {
    document.querySelectorAll(SELECTOR).forEach(function (img) {
      img.classList.add("cnnbook-zoomable");
      if (!img.hasAttribute("tabindex")) img.tabIndex = 0;
      if (!img.title) img.title = "Click to see the figure at full size";
    });
  }

  document.addEventListener("click", function (event) {
    var img = zoomable(event.target);
    if (img && !img.closest("a")) {
      event.preventDefault();
      open(img);
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      close();
    } else if ((event.key === "Enter" || event.key === " ") && zoomable(event.target) === event.target) {
      event.preventDefault();
      open(event.target);
    }
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", prepare);
  } else {
    prepare();
  }
})();
