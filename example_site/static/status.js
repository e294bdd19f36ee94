// Reloads the numbers of the /status page in place once a second. The page itself is
// fetched again and its live parts swapped in, so the numbers are always rendered by the
// same template as the first time.
(function () {
  "use strict";
  const LIVE = ["req-total", "req-inflight", "req-errors", "threads", "uptime", "sa-pool", "pools"];

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
})();
