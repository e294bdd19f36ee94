// Refreshes the /status page in place from /api/status once a second.
(function () {
  "use strict";
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const num = (n) => Number(n).toLocaleString("en-US");
  const set = (id, v) => { const el = document.getElementById(id); if (el) el.textContent = v; };

  function poolHtml(p) {
    const total = p.workers.reduce((a, w) => a + w.statements, 0);
    const rows = p.workers.map((w) =>
      `<tr><td>${w.pid}</td><td><span class="state ${esc(w.state)}">${esc(w.state)}</span></td>` +
      `<td class="num">${num(w.statements)}</td><td class="num">${w.errors}</td>` +
      `<td class="barcell"><span class="bar"><span style="width: ${total ? 100 * w.statements / total : 0}%"></span></span></td></tr>`).join("");
    return `<section class="card pool"><h2>Pool <code>${esc(p.database)}</code></h2><div class="poolstats">` +
      `<span><b>${p.size}</b> workers</span><span><b class="busy">${p.busy}</b> busy</span>` +
      `<span><b>${p.idle}</b> idle</span><span><b>${p.waiting}</b> waiting</span>` +
      `<span>writer <b>${p.writer_busy ? "busy" : "free"}</b>, <b>${p.writer_waiting}</b> queued</span>` +
      `<span><b>${num(p.statements)}</b> statements</span><span><b>${num(p.errors)}</b> errors</span>` +
      `<span><b>${p.restarts}</b> restarts</span></div>` +
      `<table class="list compact workers"><thead><tr><th>PID</th><th>State</th><th class="num">Statements</th>` +
      `<th class="num">Errors</th><th>Share</th></tr></thead><tbody>${rows}</tbody></table></section>`;
  }

  async function refresh() {
    const live = document.getElementById("live");
    try {
      const res = await fetch("/api/status", {cache: "no-store"});
      const s = await res.json();
      set("req-total", num(s.requests.total));
      set("req-inflight", s.requests.in_flight);
      set("req-errors", num(s.requests.errors));
      set("threads", s.server.threads);
      set("uptime", s.server.uptime_s);
      set("sa-pool", s.sqlalchemy_pool);
      if (s.uses_mpsqlite) {
        const err = s.pool_error ? `<div class="alert">${esc(s.pool_error)}</div>` : "";
        const pools = s.pools.length ? s.pools.map(poolHtml).join("")
          : '<section class="card"><p class="muted">No live mpsqlite pool in this process yet.</p></section>';
        document.getElementById("pools").innerHTML = err + pools;
      }
      live.classList.remove("stale");
    } catch (e) {
      live.classList.add("stale");
    }
  }
  setInterval(refresh, 1000);
})();
