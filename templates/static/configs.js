// Configurations editor: pick a system, a configuration and a version;
// edit name, system and parameter rows; save a new version; delete.
"use strict";
(function () {
  const {el, clear, fillSelect} = ADMIN;
  const $ = (id) => document.getElementById(id);
  let systems = null;
  let configs = [];

  // Parameter values: JSON when the text is JSON, text otherwise (and
  // shown back so that they read back the same).
  function parseValue(text) {
    try { return JSON.parse(text); } catch (e) { return text; }
  }
  function showValue(value) {
    if (typeof value === "string") {
      try { JSON.parse(value); } catch (e) { return value; }
    }
    return JSON.stringify(value);
  }

  function addRow(name, value) {
    const row = el("tr", {class: "param-row"},
      el("td", {}, el("input", {class: "param-name", "aria-label": "parameter name", value: name || ""})),
      el("td", {}, el("input", {class: "param-value", "aria-label": "parameter value", value: value === undefined ? "" : showValue(value)})),
      el("td", {}, el("button", {type: "button", class: "remove", title: "remove this parameter", text: "×",
                                 on: {click: () => { row.remove(); if (!rows().length) addRow(); }}})));
    $("cfg-params").tBodies[0].append(row);
    return row;
  }
  const rows = () => [...$("cfg-params").tBodies[0].rows];

  function systemOptions(select, placeholder) {
    clear(select);
    if (placeholder !== undefined) select.append(el("option", {value: "", text: placeholder}));
    const detectors = el("optgroup", {label: "Detectors"});
    for (const d of systems.detectors.map((x) => x.id).sort()) detectors.append(el("option", {value: d, text: d}));
    const globals = el("optgroup", {label: "Global systems"});
    for (const g of Object.keys(systems.global_systems)) globals.append(el("option", {value: g, text: g}));
    select.append(detectors, globals);
  }

  async function loadList(selectId) {
    const system = $("cfg-system").value;
    const r = await ECS.api("GET", "/api/configs" + (system ? "?system=" + encodeURIComponent(system) : ""));
    if (!r.ok) { ECS.showReply("Loading the configurations", r); return; }
    configs = r.data;
    fillSelect($("cfg-list"), configs.map((c) => [c.config_id, c.config_id + " (" + c.system + ", v" + c.version + ")"]));
    if (selectId) $("cfg-list").value = selectId;
    await loadVersions();
  }

  async function loadVersions() {
    const id = $("cfg-list").value;
    clear($("cfg-version"));
    if (!id) return;
    const r = await ECS.api("GET", "/api/configs/" + encodeURIComponent(id));
    if (!r.ok) { ECS.showReply("Loading " + id, r); return; }
    fillSelect($("cfg-version"), [...r.data.versions].reverse().map((v) => [String(v), "version " + v]));
    $("cfg-version").value = String(r.data.version);
  }

  function fillEditor(config) {
    $("cfg-id").value = config.config_id;
    $("cfg-form-system").value = config.system;
    rows().forEach((r) => r.remove());
    const entries = Object.entries(config.parameters || {});
    if (!entries.length) addRow();
    for (const [k, v] of entries) addRow(k, v);
    $("cfg-info").textContent = "Editing " + config.config_id + ", version " + config.version +
      (config.author ? " by " + config.author : "") + (config.created ? " (" + ADMIN.time(config.created) + ")" : "") +
      ". Saving makes a new version.";
  }

  async function edit() {
    const id = $("cfg-list").value;
    if (!id) return;
    const version = $("cfg-version").value;
    const r = await ECS.api("GET", "/api/configs/" + encodeURIComponent(id) + (version ? "?version=" + encodeURIComponent(version) : ""));
    if (!r.ok) { ECS.showReply("Loading " + id, r); return; }
    fillEditor(r.data);
  }

  function problems(list) {
    const box = $("cfg-problems");
    clear(box);
    box.hidden = !list.length;
    for (const p of list) box.append(el("li", {text: p}));
  }

  async function save(event) {
    event.preventDefault();
    const id = $("cfg-id").value.trim();
    const system = $("cfg-form-system").value;
    const parameters = {};
    const found = [];
    rows().forEach((row, i) => {
      const name = row.querySelector(".param-name").value.trim();
      const text = row.querySelector(".param-value").value;
      if (!name && !text) return;  // an empty row is ignored
      if (!name) { found.push("row " + (i + 1) + ": the parameter needs a name"); return; }
      if (name in parameters) { found.push("row " + (i + 1) + ": parameter " + name + " given twice"); return; }
      parameters[name] = parseValue(text);
    });
    if (!id) found.push("the configuration needs a name");
    if (!system) found.push("choose the system");
    problems(found);
    if (found.length) return;
    const r = await ECS.api("PUT", "/api/configs/" + encodeURIComponent(id), {system, parameters});
    ECS.showReply("Save " + id, r);
    if (!r.ok) { problems([ADMIN.reason(r)]); return; }
    const box = $("reply");
    box.textContent = "Saved " + r.data.config_id + " as version " + r.data.version + ".";
    fillEditor(r.data);
    if ($("cfg-system").value && $("cfg-system").value !== system) $("cfg-system").value = "";
    await loadList(id);
  }

  async function remove() {
    const id = $("cfg-list").value;
    if (!id) return;
    if (!confirm("Delete configuration " + id + "? Its versions stay readable for past runs; a tag using it blocks this.")) return;
    const r = await ECS.api("DELETE", "/api/configs/" + encodeURIComponent(id));
    ECS.showReply("Delete " + id, r);
    if (r.ok) await loadList();
  }

  function blank() {
    $("cfg-id").value = "";
    rows().forEach((r) => r.remove());
    addRow();
    $("cfg-info").textContent = "New configuration.";
    problems([]);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    systems = await ADMIN.systems();
    if (!systems) return;
    systemOptions($("cfg-system"), "all systems");
    systemOptions($("cfg-form-system"), "choose…");
    addRow();
    $("cfg-system").addEventListener("change", () => loadList());
    $("cfg-list").addEventListener("change", loadVersions);
    $("cfg-edit").addEventListener("click", edit);
    $("cfg-new").addEventListener("click", blank);
    $("cfg-delete").addEventListener("click", remove);
    $("cfg-add-row").addEventListener("click", () => addRow().querySelector("input").focus());
    $("cfg-form").addEventListener("submit", save);
    await loadList();
    ECS.events(null, {reload: () => loadList()});  // the connection indicator stays honest
  });
})();
