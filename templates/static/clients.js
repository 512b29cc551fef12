// Clients: every agent's placement, process and supervision, live through
// the "agent" SSE events; start/stop/restart, output tail, placement.
"use strict";
(function () {
  const {el, clear} = ADMIN;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const rows = new Map();  // agent name -> <tr>
  let current = null;      // the agent of the open dialog

  function unavailable(show) {
    $("clients-unavailable").hidden = !show;
    $("clients").hidden = show;
  }

  function supervisionCell(s) {
    const state = (s && s.state) || "unknown";
    const alarm = state === "flapping" || state === "failed";
    const cell = el("td", {class: "supervision" + (alarm ? " alarm" : "")},
      el("span", {class: "state " + (alarm ? "state-red" : state === "running" ? "state-green" : "state-yellow"),
                  text: alarm ? state.toUpperCase() : state}));
    if (s && s.restarts) cell.append(" (" + s.restarts + " restarts)");
    if (s && s.next_restart) cell.append(el("div", {class: "note", text: "next restart " + ADMIN.time(s.next_restart)}));
    if (s && s.reason) cell.append(el("div", {class: alarm ? "error" : "note", text: s.reason}));
    return cell;
  }

  function render(agent) {
    const st = agent.status || {};
    const running = Boolean(st.running);
    const name = agent.agent;
    const actions = el("td", {class: "actions"},
      button("Start", () => command(name, "start"), running),
      button("Stop", async () => { if (await ECS.confirm("Stop " + name + "?", "Stop")) command(name, "stop"); }, !running),
      button("Restart", async () => { if (await ECS.confirm("Restart " + name + "?", "Restart")) command(name, "restart"); }, false),
      button("Output", () => output(name), false),
      placementButton(agent));
    const row = el("tr", {dataset: {agent: name}, class: running ? "running" : "stopped"},
      el("td", {}, el("strong", {text: name})),
      el("td", {text: agent.host || "—"}),
      el("td", {text: agent.launcher || "—"}),
      el("td", {text: st.pid ? "pid " + st.pid : st.job_id ? "job " + st.job_id : "—"}),
      el("td", {class: agent.registered ? "yes" : "no", text: agent.registered ? "registered" : "not registered"}),
      el("td", {}, el("span", {class: "state " + (running ? "state-green" : "state-red"),
                               text: running ? "running" : "not running" + (st.exit_code !== null && st.exit_code !== undefined ? " (exit " + st.exit_code + ")" : "")}),
               st.detail ? el("div", {class: "note", text: st.detail}) : null),
      supervisionCell(agent.supervision),
      actions);
    return row;
  }

  function button(label, fn, disabled) {
    return el("button", {type: "button", text: label, disabled, on: {click: fn}});
  }

  // Placing says which program runs where: admins only (the server checks too).
  function placementButton(agent) {
    const b = button("Placement…", () => place(agent), !ECS.hasRole("admin"));
    if (b.disabled) b.title = "changing a placement needs role admin";
    return b;
  }

  function show(agent) {
    const row = render(agent);
    const old = rows.get(agent.agent);
    if (old) old.replaceWith(row);
    else {
      const body = $("clients").tBodies[0];
      const after = [...rows.keys()].sort().find((n) => n > agent.agent);
      if (after) body.insertBefore(row, rows.get(after)); else body.append(row);
    }
    rows.set(agent.agent, row);
  }

  async function load() {
    const r = await ECS.api("GET", "/api/agents");
    if (r.status === 404 && r.data && r.data.reason === "no such resource") { unavailable(true); return; }
    if (!r.ok) { ECS.showReply("Loading the agents", r); if (r.status === 503) unavailable(true); return; }
    unavailable(false);
    clear($("clients").tBodies[0]);
    rows.clear();
    if (!r.data.length) $("clients").tBodies[0].append(el("tr", {}, el("td", {colspan: 8, class: "note", text: "no agents placed"})));
    for (const agent of r.data) show(agent);
  }

  async function command(name, what) {
    const r = await ECS.api("POST", "/api/agents/" + enc(name) + "/" + what);
    ECS.showReply(what[0].toUpperCase() + what.slice(1) + " " + name, r);
    if (r.ok && r.data && r.data.agent) show(r.data);
  }

  async function output(name) {
    current = name;
    $("output-title").textContent = "Output of " + name;
    $("output-text").textContent = "loading…";
    if (!$("output-dialog").open) $("output-dialog").showModal();
    const r = await ECS.api("GET", "/api/agents/" + enc(name) + "/output?lines=200");
    $("output-text").textContent = r.ok ? (r.data.text || "(no output)") : ADMIN.reason(r);
  }

  function place(agent) {
    current = agent.agent;
    $("place-title").textContent = "Placement of " + agent.agent;
    $("place-host").value = agent.host || "";
    $("place-launcher").value = agent.launcher || "local";
    $("place-options").value = JSON.stringify(agent.options || {}, null, 2);
    $("place-autostart").checked = Boolean(agent.autostart);
    $("place-error").hidden = true;
    $("place-dialog").showModal();
  }

  async function savePlacement() {
    let options;
    const error = $("place-error");
    try {
      options = JSON.parse($("place-options").value || "{}");
      if (options === null || typeof options !== "object" || Array.isArray(options)) throw new Error("not an object");
    } catch (e) {
      error.textContent = "Options must be a JSON object: " + e.message;
      error.hidden = false;
      return;
    }
    const body = {host: $("place-host").value.trim(), launcher: $("place-launcher").value, options, autostart: $("place-autostart").checked};
    const r = await ECS.api("PUT", "/api/agents/" + enc(current), body);
    ECS.showReply("Placement of " + current, r);
    if (!r.ok) { error.textContent = ADMIN.reason(r); error.hidden = false; return; }
    $("place-dialog").close();
    if (r.data && r.data.agent) show(r.data);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("output-refresh").addEventListener("click", () => output(current));
    $("place-save").addEventListener("click", savePlacement);
    $("place-cancel").addEventListener("click", () => $("place-dialog").close());
    await load();
    ECS.events(null, {
      agent: (data) => { if (data && data.agent) { unavailable(false); show(data); } },
      reload: load,
    });
  });
})();
