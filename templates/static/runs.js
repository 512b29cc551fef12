// Runs: the run records, newest first, filtered by partition; updated
// when a run starts or ends (log events of the ECA).
"use strict";
(function () {
  const {el, clear, fillSelect} = ADMIN;
  const $ = (id) => document.getElementById(id);

  function configsCell(configs) {
    const cell = el("td", {class: "configs"});
    const entries = Object.entries(configs || {});
    if (!entries.length) return el("td", {class: "note", text: "—"});
    for (const [system, c] of entries) {
      const details = el("details", {}, el("summary", {text: system + ": " + c.config_id + " v" + c.version}),
                         el("pre", {text: JSON.stringify(c.parameters || {}, null, 2)}));
      cell.append(details);
    }
    return cell;
  }

  async function load() {
    const p = $("runs-partition").value;
    const limit = $("runs-limit").value || "100";
    const r = await ECS.api("GET", "/api/runs?limit=" + encodeURIComponent(limit) + (p ? "&partition=" + encodeURIComponent(p) : ""));
    if (!r.ok) { ECS.showReply("Loading the runs", r); return; }
    const body = clear($("runs").tBodies[0]);
    if (!r.data.length) body.append(el("tr", {}, el("td", {colspan: 8, class: "note", text: "no runs"})));
    for (const run of r.data) {
      const outcome = run.outcome || (run.ended ? "" : "running");
      body.append(el("tr", {dataset: {run: run.number}},
        el("td", {text: run.number}), el("td", {text: run.partition}), el("td", {text: run.tag || "custom"}),
        configsCell(run.configs), el("td", {text: run.operator}), el("td", {text: ADMIN.time(run.started)}),
        el("td", {text: run.ended ? ADMIN.time(run.ended) : "—"}),
        el("td", {class: outcome === "running" ? "state state-green" : outcome === "stopped" ? "" : "error", text: outcome})));
    }
  }

  let pending = null;
  document.addEventListener("DOMContentLoaded", async () => {
    const params = new URLSearchParams(location.search);
    fillSelect($("runs-partition"), (await ADMIN.partitions()).map((p) => p.id), "all");
    if (params.get("partition")) $("runs-partition").value = params.get("partition");
    $("runs-filter").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    $("runs-partition").addEventListener("change", load);
    await load();
    ECS.events(null, {
      log: (data) => {
        if (!/^run \d+/.test(data.message || "")) return;
        clearTimeout(pending);
        pending = setTimeout(load, 300);
      },
      reload: load,
    });
  });
})();
