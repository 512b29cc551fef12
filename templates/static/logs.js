// Logs: stored log events filtered by partition, level, text and time
// (GET /api/logs), paged back in time; new events appended live while
// "follow" is on (when they match the filters).
"use strict";
(function () {
  const {el, clear, fillSelect} = ADMIN;
  const $ = (id) => document.getElementById(id);
  const LEVELS = ["debug", "info", "warn", "error", "critical"];
  let oldest = null;   // the oldest event shown: {time, id} (the cursor for "older")
  let shown = 0;

  const seconds = ADMIN.inputSeconds;

  function query(cursor) {
    const params = new URLSearchParams();
    for (const [name, value] of [["partition", $("logs-partition").value], ["level", $("logs-level").value],
                                 ["q", $("logs-q").value.trim()], ["since", seconds($("logs-since"))],
                                 ["until", cursor ? String(cursor.time) : seconds($("logs-until"))],
                                 ["before_id", cursor ? String(cursor.id) : null],
                                 ["limit", $("logs-limit").value || "200"]]) {
      if (value) params.set(name, value);
    }
    return "/api/logs?" + params.toString();
  }

  function row(e) {
    return el("tr", {class: "log-" + e.level},
      el("td", {class: "time", text: ADMIN.time(e.time)}),
      el("td", {class: e.level === "error" || e.level === "critical" ? "error" : "", text: e.level}),
      el("td", {text: e.partition || "—"}), el("td", {text: e.source}), el("td", {class: "message", text: e.message}));
  }

  async function load(older) {
    const limit = Number($("logs-limit").value || 200);
    const r = await ECS.api("GET", query(older ? oldest : null));
    if (!r.ok) { ECS.showReply("Loading the logs", r); return; }
    const body = $("logs").tBodies[0];
    if (!older) { clear(body); shown = 0; }
    // Newest first from the API: the table shows newest at the top.
    for (const e of r.data) body.append(row(e));
    shown += r.data.length;
    if (r.data.length) {
      const last = r.data[r.data.length - 1];
      oldest = {time: last.time, id: last.id};
    }
    $("logs-older").disabled = r.data.length < limit;
    $("logs-count").textContent = shown + " events shown" + (r.data.length < limit ? " (all that match)" : "");
  }

  function matches(e) {
    const p = $("logs-partition").value;
    const level = $("logs-level").value;
    const q = $("logs-q").value.trim().toLowerCase();
    const since = seconds($("logs-since"));
    const until = seconds($("logs-until"));
    return (!p || e.partition === p) && (!level || LEVELS.indexOf(e.level) >= LEVELS.indexOf(level)) &&
      (!q || (e.message || "").toLowerCase().includes(q)) && (!since || e.time >= Number(since)) &&
      (!until || e.time < Number(until));
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const params = new URLSearchParams(location.search);
    fillSelect($("logs-partition"), (await ADMIN.partitions()).map((p) => p.id), "all");
    for (const name of ["partition", "level", "q"]) if (params.get(name)) $("logs-" + name).value = params.get(name);
    $("logs-filter").addEventListener("submit", (e) => { e.preventDefault(); load(false); });
    $("logs-older").addEventListener("click", () => load(true));
    await load(false);
    ECS.events(null, {
      log: (e) => {
        if (!$("logs-follow").checked || !matches(e)) return;
        const body = $("logs").tBodies[0];
        body.insertBefore(row(e), body.firstChild);
        shown += 1;
        $("logs-count").textContent = shown + " events shown";
      },
      reload: () => load(false),
    });
  });
})();
