// Configurations editor: pick a system, a configuration and a version;
// edit name, system and typed parameter rows; see the difference against
// the latest version and confirm it before a new version is saved; delete.
//
// Every parameter row has a type: taken from the stored value (a number
// stays a number, a list a list...), or "JSON or text" for a new row.  A
// value that does not read as its type is refused before anything is sent,
// with a message naming the parameter and what was expected
// (window.CONFIGTYPES holds the pure rules, for the page and its tests).
"use strict";
window.CONFIGTYPES = (function () {
  const TYPES = {
    auto: "JSON or text",
    text: "text",
    number: "number",
    boolean: "true/false",
    list: "list",
    mapping: "mapping",
  };
  const EXPECTED = {
    number: "a number (e.g. 42 or 0.5)",
    boolean: "true or false",
    list: "a list in JSON (e.g. [3, 17] or [\"a\", \"b\"])",
    mapping: "a mapping in JSON (e.g. {\"gain\": 2})",
    auto: "valid JSON when it starts with [, { or \" (or plain text otherwise)",
  };

  // The type of a stored value.
  function typeOf(value) {
    if (typeof value === "string") return "text";
    if (typeof value === "number") return "number";
    if (typeof value === "boolean") return "boolean";
    if (Array.isArray(value)) return "list";
    if (value !== null && typeof value === "object") return "mapping";
    return "auto";
  }

  // A value shown for editing as its type reads it back.
  function show(value, type) {
    if (type === "text") return typeof value === "string" ? value : JSON.stringify(value);
    if (type === "auto" && typeof value === "string") {
      try { JSON.parse(value); } catch (e) { return value; }
    }
    return value === undefined ? "" : JSON.stringify(value);
  }

  function jsonError(text) {
    try { JSON.parse(text); return null; } catch (e) { return e.message; }
  }

  // {value} or {error} for the text of parameter `name` of type `type`.
  function parse(name, type, text) {
    const bad = (detail) => ({
      error: "parameter " + name + ": expected " + EXPECTED[type] + ", got " + JSON.stringify(text) +
        (detail ? " (" + detail + ")" : ""),
    });
    const trimmed = text.trim();
    if (type === "text") return {value: text};
    if (type === "number") {
      if (!trimmed || jsonError(trimmed) !== null) return bad();
      const value = JSON.parse(trimmed);
      return typeof value === "number" && Number.isFinite(value) ? {value} : bad();
    }
    if (type === "boolean") {
      if (trimmed === "true") return {value: true};
      if (trimmed === "false") return {value: false};
      return bad();
    }
    if (type === "list" || type === "mapping") {
      const problem = trimmed ? jsonError(trimmed) : "empty";
      if (problem !== null) return bad(problem);
      const value = JSON.parse(trimmed);
      const fits = type === "list" ? Array.isArray(value) : value !== null && typeof value === "object" && !Array.isArray(value);
      return fits ? {value} : bad("a " + typeOf(value) + " instead");
    }
    // auto: JSON when it is JSON; text otherwise, unless it looks like JSON
    // that is broken (a list or mapping or quoted text cut short).
    const problem = jsonError(trimmed);
    if (problem === null && trimmed) return {value: JSON.parse(trimmed)};
    if (/^[[{"]/.test(trimmed)) return bad(problem);
    return {value: text};
  }

  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

  // [{name, change: "added"|"removed"|"changed", before, after}] sorted by name.
  function diff(before, after) {
    const changes = [];
    const names = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])].sort();
    for (const name of names) {
      const had = Object.prototype.hasOwnProperty.call(before || {}, name);
      const has = Object.prototype.hasOwnProperty.call(after || {}, name);
      if (had && !has) changes.push({name, change: "removed", before: before[name]});
      else if (!had && has) changes.push({name, change: "added", after: after[name]});
      else if (!same(before[name], after[name])) {
        changes.push({name, change: "changed", before: before[name], after: after[name]});
      }
    }
    return changes;
  }

  return {TYPES, typeOf, show, parse, diff};
})();

(function () {
  const {el, clear, fillSelect} = ADMIN;
  const T = window.CONFIGTYPES;
  const $ = (id) => document.getElementById(id);
  let systems = null;
  let configs = [];
  let pending = null;  // {id, system, parameters}: shown in the diff, waiting for Confirm

  function typeSelect(type) {
    const select = el("select", {class: "param-type", "aria-label": "parameter type"});
    for (const [value, label] of Object.entries(T.TYPES)) select.append(el("option", {value, text: label}));
    select.value = type;
    return select;
  }

  function addRow(name, value) {
    const type = value === undefined ? "auto" : T.typeOf(value);
    const row = el("tr", {class: "param-row"},
      el("td", {}, el("input", {class: "param-name", "aria-label": "parameter name", value: name || ""})),
      el("td", {}, typeSelect(type)),
      el("td", {}, el("input", {class: "param-value", "aria-label": "parameter value",
                                 value: value === undefined ? "" : T.show(value, type)})),
      el("td", {}, el("button", {type: "button", class: "remove", title: "remove this parameter", text: "×",
                                 on: {click: () => { row.remove(); if (!rows().length) addRow(); }}})));
    $("cfg-params").tBodies[0].append(row);
    row.addEventListener("input", hideDiff);
    row.addEventListener("change", hideDiff);
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
    const latest = r.data.version;
    fillSelect($("cfg-version"), [...r.data.versions].reverse().map(
      (v) => [String(v), "version " + v + (v === latest ? " (latest)" : "")]));
    $("cfg-version").value = String(latest);
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
    $("cfg-info").dataset.version = String(config.version);
    hideDiff();
    problems([]);
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

  // The parameters of the form, or the problems found (nothing is sent then).
  function readForm() {
    const parameters = {};
    const found = [];
    rows().forEach((row, i) => {
      const name = row.querySelector(".param-name").value.trim();
      const text = row.querySelector(".param-value").value;
      const type = row.querySelector(".param-type").value;
      if (!name && !text) return;  // an empty row is ignored
      if (!name) { found.push("row " + (i + 1) + ": the parameter needs a name"); return; }
      if (Object.prototype.hasOwnProperty.call(parameters, name)) {
        found.push("row " + (i + 1) + ": parameter " + name + " given twice");
        return;
      }
      const parsed = T.parse(name, type, text);
      if (parsed.error) { found.push(parsed.error); row.querySelector(".param-value").setAttribute("aria-invalid", "true"); return; }
      row.querySelector(".param-value").removeAttribute("aria-invalid");
      parameters[name] = parsed.value;
    });
    return {parameters, found};
  }

  function hideDiff() {
    pending = null;
    $("cfg-diff").hidden = true;
  }

  const showJSON = (v) => (v === undefined ? "" : JSON.stringify(v));

  function showDiff(previous, id, system, parameters) {
    const box = $("cfg-diff");
    const changes = T.diff(previous.parameters, parameters);
    for (const old of [...$("cfg-diff-table").tBodies]) old.remove();
    const table = $("cfg-diff-table").appendChild(el("tbody"));
    if (previous.system !== system) {
      table.append(el("tr", {class: "diff-changed"}, el("th", {text: "system"}), el("td", {text: "changed"}),
                      el("td", {text: previous.system}), el("td", {text: system})));
    }
    for (const c of changes) {
      table.append(el("tr", {class: "diff-" + c.change, dataset: {param: c.name}},
        el("th", {text: c.name}), el("td", {text: c.change}),
        el("td", {text: showJSON(c.before)}), el("td", {text: showJSON(c.after)})));
    }
    const edited = $("cfg-info").dataset.version;
    const note = edited && edited !== String(previous.version)
      ? " (you edited version " + edited + "; this compares with the latest)" : "";
    const nothing = !changes.length && previous.system === system;
    $("cfg-diff-title").textContent = nothing
      ? "No change against version " + previous.version + " of " + id + ": nothing to save."
      : "Changes against version " + previous.version + " of " + id + note + ": saving makes version " +
        (previous.version + 1) + ".";
    $("cfg-diff-table").hidden = nothing;
    $("cfg-confirm").hidden = nothing;
    box.hidden = false;
    pending = nothing ? null : {id, system, parameters};
    (nothing ? $("cfg-diff-cancel") : $("cfg-confirm")).focus();
  }

  async function save(event) {
    event.preventDefault();
    hideDiff();
    const id = $("cfg-id").value.trim();
    const system = $("cfg-form-system").value;
    const {parameters, found} = readForm();
    if (!id) found.push("the configuration needs a name");
    if (!system) found.push("choose the system");
    problems(found);
    if (found.length) {
      const box = $("reply");
      box.hidden = false;
      box.className = "reply reply-error";
      box.textContent = "Not saved: " + found.join("; ");
      return;
    }
    // The difference against the latest version; a new configuration has none.
    const previous = await ECS.api("GET", "/api/configs/" + encodeURIComponent(id));
    if (previous.ok) { showDiff(previous.data, id, system, parameters); return; }
    if (previous.status !== 404) { ECS.showReply("Loading " + id, previous); return; }
    await put({id, system, parameters});
  }

  async function put(what) {
    const {id, system, parameters} = what;
    const r = await ECS.api("PUT", "/api/configs/" + encodeURIComponent(id), {system, parameters});
    ECS.showReply("Save " + id, r);
    if (!r.ok) { problems([ADMIN.reason(r)]); return; }
    const box = $("reply");
    box.textContent = "Saved " + r.data.config_id + " as version " + r.data.version + ".";
    fillEditor(r.data);
    if ($("cfg-system").value && $("cfg-system").value !== system) $("cfg-system").value = "";
    await loadList(id);
  }

  async function confirmSave() {
    if (!pending) return;
    const what = pending;
    hideDiff();
    await put(what);
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
    delete $("cfg-info").dataset.version;
    problems([]);
    hideDiff();
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
    $("cfg-id").addEventListener("input", hideDiff);
    $("cfg-form-system").addEventListener("change", hideDiff);
    $("cfg-confirm").addEventListener("click", confirmSave);
    $("cfg-diff-cancel").addEventListener("click", () => { hideDiff(); $("cfg-save").focus(); });
    await loadList();
    ECS.events(null, {reload: () => loadList()});  // the connection indicator stays honest
  });
})();
