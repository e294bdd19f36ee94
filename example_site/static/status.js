// The /status page, live. Once a second:
// - the page is fetched again and its live parts swapped in, so the numbers are always
//   rendered by the same template as the first time;
// - /api/status is polled and the charts of the last 3 minutes redrawn from the differences
//   between mpsqlite's totals (which never go back), on plain canvases.
(function () {
  "use strict";
  const LIVE = ["req-total", "req-inflight", "req-errors", "threads", "uptime", "sa-pool", "pools"];
  const SPAN = 180; // seconds of history kept; the x axis grows to it from MIN_SPAN
  const MIN_SPAN = 30;
  const charts = document.getElementById("charts");
  const database = charts ? charts.dataset.database : null;
  const points = [];
  let last = null; // the previous raw sample: {t, totals}

  const per = (d, dt) => (dt > 0 ? d / dt : null);
  const SERIES = {
    statements: [["caller reads", "#8a3b12", (p) => p.callerReads],
                 ["caller writes", "#e0a458", (p) => p.callerWrites],
                 ["worker reads", "#4b3bb0", (p) => p.workerReads]],
    queue: [["writers waiting", "#b7791f", (p) => p.queue]],
    wait: [["ms per transaction", "#b42318", (p) => p.waitMs]],
    commits: [["commits/s", "#1f7a4d", (p) => p.commits],
              ["fsyncs/s", "#6b7280", (p) => p.fsyncs]],
    batch: [["commits per fsync", "#1f7a4d", (p) => p.batch]],
    workers: [["busy", "#b7791f", (p) => p.busy], ["running", "#4b3bb0", (p) => p.alive]],
  };

  function point(t, c) {
    const p = {t: t, queue: c.writer_queue, busy: c.workers_busy, alive: c.workers_alive};
    if (last === null) return p;
    const o = last.totals, dt = t - last.t;
    p.callerReads = per(c.caller_reads - o.caller_reads, dt);
    p.callerWrites = per(c.caller_writes - o.caller_writes, dt);
    p.workerReads = per(c.worker_reads - o.worker_reads, dt);
    p.commits = per(c.commits - o.commits, dt);
    p.fsyncs = per(c.fsyncs - o.fsyncs, dt);
    const grants = c.writer_grants - o.writer_grants, fsyncs = c.fsyncs - o.fsyncs;
    p.waitMs = grants > 0 ? 1000 * (c.writer_wait_seconds - o.writer_wait_seconds) / grants : null;
    p.batch = fsyncs > 0 ? (c.commits - o.commits) / fsyncs : null;
    return p;
  }

  function nice(max) {
    if (!(max > 0)) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(max)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= max) return m * step;
    return 10 * step;
  }

  const fmt = (v) => (v === null || v === undefined ? "—"
    : v >= 100 ? Math.round(v).toLocaleString() : (Math.round(v * 10) / 10).toString());

  function draw(canvas, series, now, span) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const left = 44, right = 8, top = 8, bottom = 18;
    const pw = w - left - right, ph = h - top - bottom;
    let max = 0;
    for (const [, , get] of series) for (const p of points) {
      const v = get(p);
      if (v !== null && v !== undefined && v > max) max = v;
    }
    max = nice(max);
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#6b7280";
    g.strokeStyle = "#e4e0d8";
    g.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = top + ph * (1 - f) + 0.5;
      g.beginPath(); g.moveTo(left, y); g.lineTo(left + pw, y); g.stroke();
      g.textAlign = "right"; g.textBaseline = "middle";
      g.fillText(fmt(max * f), left - 6, y);
    }
    g.textAlign = "left"; g.textBaseline = "top";
    g.fillText(span >= 120 ? `-${Math.round(span / 60)} min` : `-${Math.round(span)} s`,
               left, top + ph + 4);
    g.textAlign = "right";
    g.fillText("now", left + pw, top + ph + 4);
    const x = (t) => left + pw * (1 - (now - t) / span);
    const y = (v) => top + ph * (1 - v / max);
    let drawn = 0;
    for (const [, color, get] of series) {
      g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
      let pen = false;
      for (const p of points) {
        const v = get(p);
        if (v === null || v === undefined) { pen = false; continue; }
        if (pen) g.lineTo(x(p.t), y(v)); else g.moveTo(x(p.t), y(v));
        pen = true; drawn += 1;
      }
      g.stroke();
    }
    canvas.dataset.points = String(drawn);
  }

  function legend(key, series) {
    const box = charts.querySelector(`[data-legend="${key}"]`);
    const latest = points[points.length - 1];
    box.innerHTML = series.map(([name, color, get]) =>
      `<span><i style="background:${color}"></i>${name} <b>${fmt(latest ? get(latest) : null)}</b></span>`
    ).join("");
    const now = charts.querySelector(`[data-now="${key}"]`);
    if (now) now.textContent = latest ? fmt(series[0][2](latest)) : "";
  }

  async function poll() {
    try {
      const res = await fetch("/api/status", {cache: "no-store"});
      if (!res.ok) throw new Error(res.status);
      const data = await res.json();
      const pool = data.pools.find((p) => p.database === database);
      if (!pool || !pool.totals) return;
      const t = data.time;
      points.push(point(t, pool.totals));
      last = {t: t, totals: pool.totals};
      while (points.length && points[0].t < t - SPAN) points.shift();
      const span = Math.min(SPAN, Math.max(MIN_SPAN, t - points[0].t));
      for (const [key, series] of Object.entries(SERIES)) {
        const canvas = charts.querySelector(`canvas[data-chart="${key}"]`);
        if (canvas) { draw(canvas, series, t, span); legend(key, series); }
      }
    } catch (e) {
      document.getElementById("live").classList.add("stale");
    }
  }

  async function refresh() {
    const live = document.getElementById("live");
    try {
      const res = await fetch("/status", {cache: "no-store"});
      if (!res.ok) throw new Error(res.status);
      const fresh = new DOMParser().parseFromString(await res.text(), "text/html");
      for (const id of LIVE) {
        const now = document.getElementById(id);
        const next = fresh.getElementById(id);
        if (now && next) now.innerHTML = next.innerHTML;
      }
      live.classList.remove("stale");
    } catch (e) {
      live.classList.add("stale");
    }
  }
  setInterval(refresh, 1000);
  if (charts) { poll(); setInterval(poll, 1000); }
})();
