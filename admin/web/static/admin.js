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
  // Typeahead: inputs with data-suggest fill their <datalist> from the search endpoint;
  // picking a suggestion opens that user.
  document.querySelectorAll("input[data-suggest]").forEach(function (input) {
    var list = document.getElementById(input.getAttribute("list"));
    if (!list) { return; }
    var timer = null, last = "", urls = {};
    input.addEventListener("input", function (ev) {
      var q = input.value.trim();
      var picked = !ev.inputType || ev.inputType === "insertReplacementText";
      if (picked && urls[input.value]) { window.location.href = urls[input.value]; return; }
      clearTimeout(timer);
      if (q.length < 2 || q === last) { return; }
      timer = setTimeout(function () {
        last = q;
        fetch(input.dataset.suggest + "?q=" + encodeURIComponent(q), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : { hits: [] }; })
          .then(function (data) {
            list.textContent = "";
            urls = {};
            data.hits.forEach(function (h) {
              var opt = document.createElement("option");
              opt.value = h.user_id;
              opt.label = h.label + " (" + h.state + ")";
              opt.textContent = h.label;
              urls[h.user_id] = h.url;
              list.appendChild(opt);
            });
          })
          .catch(function () { /* typeahead is optional: the form still submits */ });
      }, 150);
    });
  });
})();
