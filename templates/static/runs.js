// Runs: the run records, newest first, filtered by partition, type and
// start time, with their type, crew, comments and conditions; the export
// links give the same selection as CSV or JSON (GET /api/runs?format=).
// Updated when a run starts or ends (log events of the ECA).
"use strict";
(function () {
  const {el, clear, fillSelect} = ADMIN;
  const $ = (id) => document.getElementById(id);
  const seconds = ADMIN.inputSeconds;

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

  function crewCell(run) {
    const crew = run.crew || {};
    const names = {started_by: "started by", control_holder: "in control", ecs_control: "ECS control"};
    const parts = Object.entries(crew).filter(([, user]) => user).map(([role, user]) => (names[role] || role) + ": " + user);
    return el("td", {class: "crew", text: parts.length ? parts.join("; ") : run.operator});
  }

  function commentsCell(run) {
    const cell = el("td", {class: "comments"});
    if (run.start_comment) cell.append(el("div", {class: "start-comment", text: "start: " + run.start_comment}));
    if (run.end_comment) cell.append(el("div", {class: "end-comment", text: "end: " + run.end_comment}));
    if (!run.start_comment && !run.end_comment) cell.append(el("span", {class: "note", text: "—"}));
    return cell;
  }

  function conditionsCell(conditions) {
    const entries = Object.entries(conditions || {});
    return el("td", {class: "conditions", text: entries.length ? entries.map(([k, v]) => k + "=" + JSON.stringify(v)).join(", ") : "—"});
  }

  function query(format) {
    const params = new URLSearchParams();
    for (const [name, value] of [["partition", $("runs-partition").value], ["type", $("runs-type").value],
                                 ["since", seconds($("runs-since"))], ["until", seconds($("runs-until"))],
                                 ["limit", $("runs-limit").value || "100"], ["format", format]]) {
      if (value) params.set(name, value);
    }
    return "/api/runs?" + params.toString();
  }

  async function load() {
    $("runs-csv").href = query("csv");
    $("runs-json").href = query("json");
    const r = await ECS.api("GET", query(null));
    if (!r.ok) { ECS.showReply("Loading the runs", r); return; }
    const body = clear($("runs").tBodies[0]);
    if (!r.data.length) body.append(el("tr", {}, el("td", {colspan: 11, class: "note", text: "no runs"})));
    for (const run of r.data) {
      const outcome = run.outcome || (run.ended ? "" : "running");
      body.append(el("tr", {dataset: {run: run.number}},
        el("td", {text: run.number}), el("td", {text: run.partition}), el("td", {class: "run-type", text: run.type || "—"}),
        el("td", {text: run.tag || "custom"}), configsCell(run.configs), crewCell(run),
        el("td", {text: ADMIN.time(run.started)}), el("td", {text: run.ended ? ADMIN.time(run.ended) : "—"}),
        el("td", {class: outcome === "running" ? "state state-green" : outcome === "stopped" ? "" : "error", text: outcome}),
        commentsCell(run), conditionsCell(run.conditions)));
    }
  }

  let pending = null;
  document.addEventListener("DOMContentLoaded", async () => {
    const params = new URLSearchParams(location.search);
    fillSelect($("runs-partition"), (await ADMIN.partitions()).map((p) => p.id), "all");
    fillSelect($("runs-type"), (document.body.dataset.runtypes || "").split(",").filter((t) => t), "all");
    if (params.get("partition")) $("runs-partition").value = params.get("partition");
    if (params.get("type")) $("runs-type").value = params.get("type");
    $("runs-filter").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    $("runs-partition").addEventListener("change", load);
    $("runs-type").addEventListener("change", load);
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
