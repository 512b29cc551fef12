// State machines: each table drawn (SVG from graphviz, or DOT text), with
// the current state of the chosen partition, system or supervised agent
// (the agent lifecycle table) lit, live.
"use strict";
(function () {
  const {el, clear} = ADMIN;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const svg = document.body.dataset.svg === "1";
  let systems = null;
  let subjects = new Map();  // option value -> {table, partition?, system?, unassigned?, agent?, label}
  let shownKey = null;
  let pending = null;

  function tableOf(partitionDetail, systemId) {
    if (systemId in systems.global_systems) return systems.global_systems[systemId].table;
    const det = systems.detectors.find((d) => d.id === systemId);
    const type = det && systems.detector_types[det.type];
    return type ? type.table : null;
  }

  async function buildSubjects() {
    systems = await ADMIN.systems();
    if (!systems) return;
    subjects = new Map();
    const select = clear($("fsm-subject"));
    const partitions = await ADMIN.partitions();
    const pg = el("optgroup", {label: "Partitions (the partition machine)"});
    for (const p of partitions) {
      subjects.set("p:" + p.id, {table: systems.partition_table, partition: p.id, label: "partition " + p.id});
      pg.append(el("option", {value: "p:" + p.id, text: p.id}));
    }
    select.append(pg);
    for (const p of partitions) {
      const r = await ECS.api("GET", "/api/partitions/" + enc(p.id));
      if (!r.ok) continue;
      const g = el("optgroup", {label: "Systems of " + p.id});
      for (const s of r.data.systems || []) {
        const table = tableOf(r.data, s.id);
        if (!table) continue;
        subjects.set("s:" + p.id + ":" + s.id, {table, partition: p.id, system: s.id, label: s.id + " in " + p.id});
        g.append(el("option", {value: "s:" + p.id + ":" + s.id, text: s.id + " (" + table + ")"}));
      }
      select.append(g);
    }
    const unassigned = systems.detectors.filter((d) => d.partition === null);
    if (unassigned.length) {
      const g = el("optgroup", {label: "Unassigned detectors"});
      for (const d of unassigned) {
        const table = tableOf(null, d.id);
        if (!table) continue;
        subjects.set("u:" + d.id, {table, unassigned: d.id, label: d.id + " (unassigned)"});
        g.append(el("option", {value: "u:" + d.id, text: d.id}));
      }
      select.append(g);
    }
    if (systems.agent_table) {
      const r = await ECS.api("GET", "/api/agents");
      if (r.ok && Array.isArray(r.data) && r.data.length) {
        const g = el("optgroup", {label: "Agents (the agent lifecycle)"});
        for (const a of r.data) {
          subjects.set("a:" + a.agent, {table: systems.agent_table, agent: a.agent, label: "agent " + a.agent});
          g.append(el("option", {value: "a:" + a.agent, text: a.agent}));
        }
        select.append(g);
      }
    }
    const tg = el("optgroup", {label: "Tables"});
    for (const key of Object.keys(systems.tables)) {
      subjects.set("t:" + key, {table: key, label: "table " + key});
      tg.append(el("option", {value: "t:" + key, text: key}));
    }
    select.append(tg);
    const wanted = new URLSearchParams(location.search).get("show");
    if (wanted && subjects.has(wanted)) select.value = wanted;
  }

  async function currentState(subject) {
    if (subject.system) {
      const r = await ECS.api("GET", "/api/partitions/" + enc(subject.partition));
      const s = r.ok ? (r.data.systems || []).find((x) => x.id === subject.system) : null;
      return s ? {state: s.raw_state, note: s.connected === false ? "not connected: last known state" : ""} : {state: null, note: "unknown"};
    }
    if (subject.partition) {
      const r = await ECS.api("GET", "/api/partitions/" + enc(subject.partition));
      if (!r.ok) return {state: null, note: ADMIN.reason(r)};
      return r.data.connected ? {state: r.data.state, note: ""} : {state: null, note: "Connection Problem: state unknown"};
    }
    if (subject.unassigned) {
      const r = await ECS.api("GET", "/api/detectors/unassigned");
      const d = r.ok ? r.data.find((x) => x.id === subject.unassigned) : null;
      return d && d.connected ? {state: d.raw_state, note: ""} : {state: null, note: "not connected: state unknown"};
    }
    if (subject.agent) {
      const r = await ECS.api("GET", "/api/agents/" + enc(subject.agent));
      if (!r.ok) return {state: null, note: ADMIN.reason(r)};
      const supervision = r.data.supervision || {};
      return {state: supervision.state || null, note: supervision.reason || ""};
    }
    return {state: null, note: ""};
  }

  async function draw() {
    const subject = subjects.get($("fsm-subject").value);
    if (!subject) return;
    history.replaceState(null, "", "?show=" + enc($("fsm-subject").value));
    const {state, note} = await currentState(subject);
    const table = systems.tables[subject.table];
    const lit = state && table && state in table.states ? state : null;
    $("fsm-current").textContent = subject.label + ": " + (lit ? "current state " + lit : "no current state") + (note ? " (" + note + ")" : "");
    const key = subject.table + "\n" + (lit || "");
    if (key === shownKey) return;
    shownKey = key;
    const path = "/fsm/" + (svg ? "draw" : "dot") + "/" + enc(subject.table) + (lit ? "?state=" + enc(lit) : "");
    $("fsm-caption").textContent = "Table " + subject.table + (lit ? ", " + lit + " lit" : "");
    if (svg) {
      $("fsm-svg").hidden = false;
      $("fsm-svg").alt = "state machine " + subject.table + (lit ? " with " + lit + " lit" : "");
      $("fsm-svg").src = path;
    } else {
      $("fsm-missing").hidden = false;
      const answer = await fetch(path, {credentials: "same-origin"});
      $("fsm-dot").hidden = false;
      $("fsm-dot").textContent = await answer.text();
    }
    const body = clear($("fsm-rows").tBodies[0]);
    for (const [from, input, to] of table.rows) {
      body.append(el("tr", {class: from === lit ? "lit" : ""}, el("td", {text: from}), el("td", {text: input}), el("td", {text: to})));
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    await buildSubjects();
    $("fsm-subject").addEventListener("change", draw);
    await draw();
    const later = () => { clearTimeout(pending); pending = setTimeout(draw, 250); };
    ECS.events(null, {
      state: later,
      agent: later,
      reload: async () => { await buildSubjects(); shownKey = null; await draw(); },
    });
  });
})();
