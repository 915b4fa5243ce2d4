// charter UI: small enhancements on top of htmx. Everything works without
// this file; it only moves focus after a page swap and says when the
// server cannot be reached.
(function () {
  "use strict";

  // The browser keeps nothing but the session cookie: htmx notes the
  // current path in sessionStorage after every navigation; drop it (htmx
  // falls back to the address bar, which holds the same path).
  function forget() {
    try {
      sessionStorage.removeItem("htmx-current-path-for-history");
      sessionStorage.removeItem("htmx-history-cache");
    } catch (e) {
      // Storage disabled: nothing was kept.
    }
  }
  forget();
  ["htmx:load", "htmx:pushedIntoHistory", "htmx:replacedInHistory", "htmx:historyRestore", "htmx:afterSettle"].forEach(function (name) {
    document.addEventListener(name, forget);
  });

  // After htmx swaps in a new page, put the keyboard focus where the page
  // asks for it (the first field with an error), else on the main region.
  document.addEventListener("htmx:afterSettle", function () {
    var target = document.querySelector("[autofocus]") || document.getElementById("main");
    if (target && typeof target.focus === "function") {
      target.focus({ preventScroll: false });
    }
  });

  function say(text) {
    var main = document.getElementById("main");
    if (!main) return;
    var old = document.getElementById("network-error");
    if (old) old.remove();
    var box = document.createElement("div");
    box.id = "network-error";
    box.className = "alert";
    box.setAttribute("role", "alert");
    box.textContent = text;
    main.insertBefore(box, main.firstChild);
  }

  document.addEventListener("htmx:sendError", function () {
    say("The server could not be reached. Check your connection and try again; nothing was lost.");
  });
  document.addEventListener("htmx:timeout", function () {
    say("The server is taking too long to answer. Try again in a moment.");
  });
})();
