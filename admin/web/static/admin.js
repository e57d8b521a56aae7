// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Confirm dangerous buttons.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var btn = ev.submitter || form.querySelector("button[data-confirm]");
    if (btn && btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) {
      ev.preventDefault();
      return;
    }
    // Forms that change money are sent once; the server is idempotent anyway.
    if (form.hasAttribute("data-once")) {
      if (form.dataset.sent) { ev.preventDefault(); return; }
      form.dataset.sent = "1";
      form.querySelectorAll("button[type=submit]").forEach(function (b) {
        setTimeout(function () { b.disabled = true; b.textContent = "Recording…"; }, 0);
      });
    }
  });
  // "/" focuses the search box, like many tools do.
  document.addEventListener("keydown", function (ev) {
    var t = ev.target.tagName;
    if (ev.key === "/" && t !== "INPUT" && t !== "TEXTAREA" && t !== "SELECT") {
      var q = document.getElementById("q") || document.getElementById("quick-q");
      if (q) { ev.preventDefault(); q.focus(); }
    }
  });
  // Client-side sort of already-loaded rows for tables marked .sortable.
  document.querySelectorAll("table.sortable thead th").forEach(function (th, idx) {
    th.tabIndex = 0;
    th.setAttribute("role", "button");
    var sort = function () {
      var body = th.closest("table").tBodies[0];
      var asc = th.dataset.dir !== "asc";
      th.dataset.dir = asc ? "asc" : "desc";
      Array.from(body.rows).sort(function (a, b) {
        var x = a.cells[idx].textContent.trim(), y = b.cells[idx].textContent.trim();
        return (asc ? 1 : -1) * x.localeCompare(y, undefined, { numeric: true });
      }).forEach(function (r) { body.appendChild(r); });
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") sort(); });
  });
})();
