// The configuration selection dialog of the monitor: window.CONFIGDIALOG.
//
// Compatible tags (GET /api/tags?partition=), one select per system with
// that system's configurations (GET /api/configs), parameter details per
// selected configuration (GET /api/configs/{id}), a clear message when a
// system has none (Select disabled then), "Save as new tag" for experts
// (PUT /api/tags/{name}).  Choosing a tag fills the selects; changing a
// select switches to the custom choice.  Select hands {tag} or {configs}
// to the caller.
//
// Which tags fit is the server's answer (GET /api/tags?partition= gives
// "missing" and "extra" per tag): a tag with no missing system fits (the
// PCA ignores configurations of systems outside the partition, so extra
// ones are only noted); a tag with missing systems is listed apart, with
// them named.  The dialog opens on the caller's selection, else the
// partition's current tag, and shows per system what is running (GET
// /api/partitions/{id}: each system's "tag") and what the choice changes;
// CONFIGDIALOG.changes(partition, selection) gives the same comparison
// for a confirmation before Configure.
"use strict";
window.CONFIGDIALOG = (function () {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  };
  const NAME = /^[A-Za-z0-9_.:-]{1,200}$/;
  const details = new Map();  // config id -> the answer of GET /api/configs/{id}
  let current = null;  // {systems, tags: Map name -> tag, onSelect, selects: Map system -> select}

  function reply(text, ok) {
    const box = $("dialog-reply");
    box.hidden = !text;
    box.className = "reply " + (ok ? "reply-ok" : "reply-error");
    box.textContent = text || "";
  }

  // Whether a tag fits the partition, from the server's answer (see the top).
  function fits(tag) {
    return tag.compatible === true || (Array.isArray(tag.missing) && tag.missing.length === 0);
  }

  function listed(names) {
    return names.length > 4 ? names.slice(0, 4).join(", ") + " and " + (names.length - 4) + " more" : names.join(", ");
  }

  // The note under the tag select for the chosen tag (fits, extra, missing).
  function tagNote(tag) {
    if (!tag) return "";
    const extra = tag.extra || [];
    const missing = tag.missing || [];
    if (missing.length) {
      return "Tag " + tag.name + " has no configuration for " + listed(missing) +
        ": Configure refuses it unless those systems keep the configuration they have.";
    }
    if (extra.length) {
      return "Tag " + tag.name + " also configures " + listed(extra) +
        ", not in this partition: Configure leaves those out.";
    }
    return "";
  }

  // Per system: what is running, what the choice changes; the summary line.
  function showChanges() {
    const box = $("config-changes");
    if (!box || !current.running) return;
    const changed = [];
    let same = 0;
    for (const [system, select] of current.selects) {
      const running = current.running.get(system) || null;
      const chosenId = select.value || null;
      const tr = select.closest("tr");
      let mark = tr.querySelector(".running");
      if (!mark) {
        mark = el("div", "running note");
        select.after(mark);
      }
      const differs = chosenId !== null && chosenId !== running;
      tr.classList.toggle("config-changed", differs);
      mark.textContent = "running: " + (running || "none") + (differs ? " → " + chosenId : "");
      if (differs) changed.push(system + " " + (running || "none") + " → " + chosenId);
      else if (chosenId !== null) same += 1;
    }
    box.hidden = false;
    box.textContent = changed.length
      ? "Against what is running: " + changed.length + " system(s) change (" + listed(changed) + "); " +
        same + " keep their configuration."
      : "Against what is running: no system changes its configuration.";
  }

  function option(value, label) {
    const o = el("option", null, label);
    o.value = value;
    return o;
  }

  // The row of one system: its select (or the "no configuration" text) and details.
  function systemRow(system, ids) {
    const tr = el("tr");
    tr.dataset.system = system;
    tr.appendChild(el("td", "col-id", system));
    const cell = tr.appendChild(el("td"));
    const info = tr.appendChild(el("td", "params"));
    if (!ids.length) {
      tr.classList.add("missing");
      cell.appendChild(el("span", "error", "No configurations for " + system + ": create one"));
      if (ECS.hasRole("expert")) {
        cell.appendChild(document.createTextNode(" "));
        const a = cell.appendChild(el("a", null, "on the Configurations page"));
        a.href = "/configs";
      }
      return [tr, null];
    }
    const select = cell.appendChild(el("select", "config-select"));
    select.dataset.system = system;
    select.appendChild(option("", "— choose —"));
    for (const id of ids) select.appendChild(option(id, current.versions.has(id) ? id + " (v" + current.versions.get(id) + ")" : id));
    const button = info.appendChild(el("button", "details", "details"));
    button.type = "button";
    button.dataset.system = system;
    info.appendChild(el("dl", "param-list")).hidden = true;
    return [tr, select];
  }

  async function showDetails(system, toggle) {
    const select = current.selects.get(system);
    const cell = select.closest("tr").querySelector("td.params");
    const list = cell.querySelector("dl");
    if (toggle) list.hidden = !list.hidden;
    if (list.hidden) return;
    const id = select.value;
    list.replaceChildren();
    if (!id) { list.appendChild(el("dd", "note", "no configuration chosen")); return; }
    let answer = details.get(id);
    if (!answer) {
      const got = await ECS.api("GET", "/api/configs/" + encodeURIComponent(id));
      if (!got.ok) { list.appendChild(el("dd", "error", (got.data && got.data.reason) || "cannot load " + id)); return; }
      answer = got.data;
      details.set(id, answer);
    }
    if (select.value !== id) return;  // changed meanwhile
    list.replaceChildren();
    list.appendChild(el("dt", "version", "version"));
    list.appendChild(el("dd", null, String(answer.version) + (answer.author ? " by " + answer.author : "")));
    for (const [key, value] of Object.entries(answer.parameters || {})) {
      list.appendChild(el("dt", null, key));
      list.appendChild(el("dd", null, typeof value === "string" ? value : JSON.stringify(value)));
    }
  }

  function chooseTag(name) {
    $("tag-select").value = name;
    const tag = current.tags.get(name);
    $("tag-note").textContent = tagNote(tag);
    if (!tag) return;
    for (const [system, select] of current.selects) {
      const id = tag.configs[system] || "";
      if (id && ![...select.options].some((o) => o.value === id)) select.appendChild(option(id, id));
      select.value = id;
      refreshDetails(system);
    }
    showChanges();
  }

  function refreshDetails(system) {
    const select = current.selects.get(system);
    const list = select && select.closest("tr").querySelector("dl");
    if (list && !list.hidden) showDetails(system, false);
  }

  function chosen() {
    return [...current.selects.values()].map((s) => s.value);
  }

  function updateButtons() {
    const complete = current.missing.length === 0 && chosen().every((id) => id);
    const select = $("config-select");
    select.disabled = !complete;
    select.title = current.missing.length
      ? "No configurations for " + current.missing.join(", ")
      : (complete ? "" : "choose a configuration for every system");
    const save = $("save-tag");
    save.disabled = !complete;
  }

  async function open(options) {
    const dialog = $("config-dialog");
    current = {systems: options.systems, tags: new Map(), onSelect: options.onSelect, selects: new Map(), missing: [],
               versions: new Map(), running: null};
    let changes = $("config-changes");
    if (!changes) {
      changes = el("p", "note");
      changes.id = "config-changes";
      changes.setAttribute("role", "status");
      $("dialog-reply").before(changes);
    }
    changes.hidden = true;
    reply("");
    $("config-loading").hidden = false;
    $("config-missing").hidden = true;
    $("tag-note").textContent = "";
    const tagSelect = $("tag-select");
    tagSelect.replaceChildren();
    const tbody = $("config-table").tBodies[0];
    tbody.replaceChildren();
    $("save-tag-box").hidden = !ECS.hasRole("expert");
    $("config-select").disabled = true;
    if (!dialog.open) dialog.showModal();

    const pid = options.partition;
    const [tags, configs, partition] = await Promise.all([
      ECS.api("GET", "/api/tags?partition=" + encodeURIComponent(pid)),
      ECS.api("GET", "/api/configs"),
      ECS.api("GET", "/api/partitions/" + encodeURIComponent(pid)),
    ]);
    $("config-loading").hidden = true;
    if (!tags.ok || !configs.ok) {
      const bad = tags.ok ? configs : tags;
      reply("Cannot load the configurations: " + bad.status + " " + ((bad.data && bad.data.reason) || ""), false);
      return;
    }
    if (partition.ok && Array.isArray(partition.data.systems)) {
      current.running = new Map(partition.data.systems.map((s) => [s.id, s.tag || null]));
    }
    const bySystem = new Map();
    for (const c of configs.data) {
      current.versions.set(c.config_id, c.version);
      if (!bySystem.has(c.system)) bySystem.set(c.system, []);
      bySystem.get(c.system).push(c.config_id);
    }
    tagSelect.appendChild(option("", "custom selection"));
    const group = el("optgroup");
    group.label = "Compatible tags";
    const partial = el("optgroup");
    partial.label = "Tags missing systems of this partition";
    for (const tag of tags.data) {
      current.tags.set(tag.name, tag);
      if (fits(tag)) group.appendChild(option(tag.name, tag.name));
      else partial.appendChild(option(tag.name, tag.name + " (no configuration for " + listed(tag.missing || []) + ")"));
    }
    tagSelect.appendChild(group);
    if (partial.children.length) tagSelect.appendChild(partial);
    if (!group.children.length) {
      $("tag-note").textContent = "No compatible tag for this partition's systems: choose a custom configuration.";
    }
    const fragment = document.createDocumentFragment();
    for (const system of options.systems) {
      const ids = (bySystem.get(system) || []).slice().sort();
      const [tr, select] = systemRow(system, ids);
      fragment.appendChild(tr);
      if (select) current.selects.set(system, select);
      else current.missing.push(system);
    }
    tbody.appendChild(fragment);
    if (current.missing.length) {
      const box = $("config-missing");
      box.textContent = "No configurations for " + current.missing.join(", ") + ": create one first; Select is disabled.";
      box.hidden = false;
    }
    const selection = options.selection;
    showChanges();
    if (selection && selection.tag && current.tags.has(selection.tag)) {
      chooseTag(selection.tag);
    } else if (selection && selection.configs) {
      const wanted = new Set(selection.configs);
      for (const select of current.selects.values()) {
        const hit = [...select.options].find((o) => wanted.has(o.value));
        if (hit) select.value = hit.value;
      }
      showChanges();
    } else if (options.currentTag && current.tags.has(options.currentTag)) {
      chooseTag(options.currentTag);
    }
    updateButtons();
  }

  async function saveTag() {
    const name = $("new-tag-name").value.trim();
    if (!NAME.test(name)) {
      reply("A tag name is 1-200 letters, digits, '_', '.', ':' or '-'.", false);
      return;
    }
    const ids = chosen();
    const result = await ECS.api("PUT", "/api/tags/" + encodeURIComponent(name), {configs: ids});
    if (!result.ok) {
      reply("Save as new tag: " + result.status + " " + ((result.data && result.data.reason) || "failed"), false);
      return;
    }
    const tag = {name, configs: {}, compatible: true, missing: [], extra: []};
    for (const [system, select] of current.selects) tag.configs[system] = select.value;
    if (![...$("tag-select").options].some((o) => o.value === name)) {
      $("tag-select").querySelector("optgroup").appendChild(option(name, name));
    }
    current.tags.set(name, tag);
    $("tag-select").value = name;
    $("tag-note").textContent = "";
    reply("Tag " + name + " saved.", true);
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!$("config-dialog")) return;
    $("tag-select").addEventListener("change", (event) => {
      if (event.target.value) chooseTag(event.target.value);
      else $("tag-note").textContent = "";
      updateButtons();
    });
    const tbody = $("config-table").tBodies[0];
    tbody.addEventListener("change", (event) => {
      const select = event.target;
      if (!select.classList.contains("config-select")) return;
      $("tag-select").value = "";  // a per-system choice is a custom selection
      $("tag-note").textContent = "";
      refreshDetails(select.dataset.system);
      showChanges();
      updateButtons();
    });
    tbody.addEventListener("click", (event) => {
      const button = event.target.closest("button.details");
      if (button) showDetails(button.dataset.system, true);
    });
    $("save-tag").addEventListener("click", saveTag);
    $("config-select").addEventListener("click", () => {
      const tag = $("tag-select").value;
      const selection = tag ? {tag} : {configs: chosen()};
      $("config-dialog").close("select");
      if (current && current.onSelect) current.onSelect(selection);
    });
  });

  // What configuring partition `pid` with `selection` ({tag} or {configs})
  // changes against what is running, for a confirmation before Configure:
  // {changed: [{system, running, chosen}], same: n, text}.  Systems of the
  // partition only (a tag's extra systems are left out, as the PCA does).
  async function changes(pid, selection) {
    const [partition, configs, tag] = await Promise.all([
      ECS.api("GET", "/api/partitions/" + encodeURIComponent(pid)),
      selection.tag ? null : ECS.api("GET", "/api/configs"),
      selection.tag ? ECS.api("GET", "/api/tags/" + encodeURIComponent(selection.tag)) : null,
    ]);
    const bad = [partition, configs, tag].find((r) => r && !r.ok);
    if (bad) throw new Error("cannot compare with what is running: " + bad.status + " " + ((bad.data && bad.data.reason) || ""));
    const wanted = new Map();
    if (tag) {
      for (const [system, id] of Object.entries(tag.data.configs || {})) wanted.set(system, id);
    } else {
      const ids = new Set(selection.configs || []);
      for (const c of configs.data) if (ids.has(c.config_id)) wanted.set(c.system, c.config_id);
    }
    const changed = [];
    let same = 0;
    for (const system of partition.data.systems || []) {
      const chosen = wanted.get(system.id);
      if (chosen === undefined) continue;  // keeps what it has
      if (chosen === (system.tag || null)) same += 1;
      else changed.push({system: system.id, running: system.tag || null, chosen});
    }
    const text = changed.length
      ? changed.length + " system(s) change configuration (" +
        listed(changed.map((c) => c.system + " " + (c.running || "none") + " → " + c.chosen)) + "); " + same + " keep theirs."
      : "No system changes its configuration (" + same + " keep theirs).";
    return {changed, same, text};
  }

  return {open, changes};
})();
