// costwarden console: the controls page follows the control stream (server-sent events; the
// session cookie authenticates it) and re-reads its table from the server on every change.
(function () {
  "use strict";
  if (document.body.dataset.page !== "controls" || !window.EventSource) return;
  var live = document.getElementById("live");
  var pending = null, first = true;

  function state(s, text) { if (live) { live.dataset.state = s; live.textContent = text; } }

  function typed(root) {  // what a person has typed into the release / extend forms, by form and field
    var out = {};
    root.querySelectorAll("form.act input:not([type=hidden])").forEach(function (i) {
      var k = i.form.getAttribute("action") + " " + i.name;
      out[k] = {value: i.value, focus: i === document.activeElement, open: !!i.closest("details[open]")};
    });
    return out;
  }

  function keep(fresh, was) {
    fresh.querySelectorAll("form.act input:not([type=hidden])").forEach(function (i) {
      var w = was[i.form.getAttribute("action") + " " + i.name];
      if (!w) return;
      i.value = w.value;
      if (w.open && i.closest("details")) i.closest("details").open = true;
      if (w.focus) setTimeout(function () { i.focus(); }, 0);
    });
  }

  function refresh() {
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      fetch("/ui/controls/table", {headers: {"X-Console-Fragment": "1"}, credentials: "same-origin"})
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          var old = document.getElementById("controls-table");
          if (html === null || !old) return;
          var box = document.createElement("div");
          box.innerHTML = html;
          var fresh = box.querySelector("#controls-table");
          if (!fresh) return;
          keep(fresh, typed(old));
          old.replaceWith(fresh);
        })
        .catch(function () { state("down", "reconnecting…"); });
    }, 100);
  }

  var es = new EventSource("/v1/controls/stream");
  es.addEventListener("open", function () { state("live", "live"); });
  es.addEventListener("error", function () { state("down", "reconnecting…"); });
  es.addEventListener("snapshot", function (e) {
    // the first snapshot: re-read only if something changed since the page was rendered
    var table = document.getElementById("controls-table");
    var version = null;
    try { version = String(JSON.parse(e.data).version); } catch (err) { version = null; }
    if (!first || !table || table.dataset.version !== version) refresh();
    first = false;
  });
  es.addEventListener("control", refresh);
  window.addEventListener("pagehide", function () { es.close(); });
})();
