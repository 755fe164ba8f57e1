// magstat web app: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  // Print: open every expandable section first, so that the printout shows the basis of each
  // finding, and close the ones that were closed afterwards.
  var reopened = [];
  window.addEventListener("beforeprint", function () {
    reopened = [];
    document.querySelectorAll("details:not([open])").forEach(function (d) {
      d.open = true;
      reopened.push(d);
    });
  });
  window.addEventListener("afterprint", function () {
    reopened.forEach(function (d) { d.open = false; });
    reopened = [];
  });

  function ready() {
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { window.print(); });
    });

    // "Add another row": copy the last row of a repeating group with the next row number.
    document.querySelectorAll("[data-add-row]").forEach(function (button) {
      var body = document.getElementById(button.getAttribute("data-add-row"));
      if (!body) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        var rows = body.querySelectorAll("[data-row]");
        var last = rows[rows.length - 1];
        var next = rows.length;
        var copy = last.cloneNode(true);
        var old = last.getAttribute("data-row");
        copy.setAttribute("data-row", String(next));
        copy.querySelectorAll("[name],[id],[for],[aria-describedby]").forEach(function (el) {
          ["name", "id", "for"].forEach(function (attr) {
            var v = el.getAttribute(attr);
            if (v) { el.setAttribute(attr, v.replace("-" + old + "-", "-" + next + "-")); }
          });
          el.removeAttribute("aria-describedby");
          el.removeAttribute("aria-invalid");
          if (el.matches("input[type=checkbox]")) { el.checked = false; }
          else if (el.matches("input")) { el.value = ""; }
          else if (el.matches("select")) { el.selectedIndex = 0; }
        });
        copy.querySelectorAll(".error").forEach(function (e) { e.remove(); });
        copy.querySelectorAll(".has-error").forEach(function (e) { e.classList.remove("has-error"); });
        // Labels say which row they belong to ("Medication 6: name"): renumber them.
        var number = new RegExp("\\b" + (Number(old) + 1) + "\\b");
        copy.querySelectorAll("label").forEach(function (label) {
          label.childNodes.forEach(function (node) {
            if (node.nodeType === Node.TEXT_NODE) { node.textContent = node.textContent.replace(number, String(next + 1)); }
          });
          label.querySelectorAll(".vh").forEach(function (span) {
            span.textContent = span.textContent.replace(number, String(next + 1));
          });
        });
        copy.querySelectorAll("[data-row-number]").forEach(function (e) { e.textContent = String(next + 1); });
        body.appendChild(copy);
        var first = copy.querySelector("input,select");
        if (first) { first.focus(); }
      });
    });

    // Typing into a list marks the list as known, so that an entry is never read as "unknown".
    document.querySelectorAll("[data-known]").forEach(function (group) {
      var radio = document.getElementById(group.getAttribute("data-known"));
      if (!radio) { return; }
      group.addEventListener("input", function () { radio.checked = true; });
    });

    // After a refused submission, bring the list of problems into view for keyboard users.
    // The page is reached at a fragment (#enter), whose scrolling after "load" would take the
    // focus back to the body: focus the list again once the page has loaded.
    var summary = document.querySelector(".error-summary");
    if (summary) {
      summary.focus();
      window.addEventListener("load", function () {
        window.requestAnimationFrame(function () { summary.focus(); });
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
