// Preference centre: lists this visitor's recorded choices with links to their signed receipts.
(function () {
  "use strict";
  function cell(row, text) { var td = document.createElement("td"); td.textContent = text; row.appendChild(td); return td; }
  function label(box, key) {
    var labels = {};
    try { labels = JSON.parse(box.dataset.labels || "{}"); } catch (e) { labels = {}; }
    return labels[key] || key;
  }
  function render(box, events, visitor) {
    box.textContent = "";
    if (!events.length) { var p = document.createElement("p"); p.textContent = box.dataset.empty; box.appendChild(p); return; }
    var table = document.createElement("table"), head = table.createTHead().insertRow(), body = table.createTBody();
    [box.dataset.date, box.dataset.method, box.dataset.choices, box.dataset.receipt].forEach(function (h) {
      var th = document.createElement("th"); th.scope = "col"; th.textContent = h; head.appendChild(th);
    });
    events.slice().reverse().forEach(function (e) {
      var row = body.insertRow();
      cell(row, new Date(e.timestamp).toLocaleString(document.documentElement.lang));
      cell(row, label(box, e.method));
      cell(row, Object.keys(e.choices).map(function (k) { return label(box, k) + ": " + label(box, e.choices[k]); }).join(", "));
      var a = document.createElement("a");
      a.href = "/api/consent/" + encodeURIComponent(visitor) + "/receipts/" + encodeURIComponent(e.receipt_id);
      a.textContent = box.dataset.download; a.setAttribute("download", "consent-receipt-" + e.receipt_id + ".json");
      cell(row, "").appendChild(a);
    });
    box.appendChild(table);
  }
  function load() {
    var box = document.getElementById("troth-history");
    if (!box || !window.troth) return;
    var visitor = window.troth.visitor();
    if (!visitor) { render(box, [], ""); return; }
    fetch("/api/consent/" + encodeURIComponent(visitor) + "/history", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : { events: [] }; })
      .then(function (d) { render(box, d.events || [], visitor); })
      .catch(function () { render(box, [], visitor); });
  }
  document.addEventListener("DOMContentLoaded", load);
  document.addEventListener("troth:consent", function () { setTimeout(load, 300); });
})();
