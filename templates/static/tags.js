// Tag editor: a name, one configuration per global system, detector rows
// (a detector chosen in one row is not offered in the others); save, delete.
"use strict";
(function () {
  const {el, clear, fillSelect} = ADMIN;
  const $ = (id) => document.getElementById(id);
  let systems = null;
  let bySystem = {};  // system -> [config ids]

  function configSelect(system, chosen) {
    const select = el("select", {class: "tag-config", "aria-label": "configuration for " + (system || "the detector")});
    const ids = bySystem[system] || [];
    fillSelect(select, ids, ids.length ? "choose…" : "no configuration for " + (system || "this detector"));
    if (chosen) select.value = chosen;
    return select;
  }

  function globalRows(chosen) {
    const body = clear($("tag-globals").tBodies[0]);
    for (const system of Object.keys(systems.global_systems)) {
      body.append(el("tr", {dataset: {system}}, el("th", {text: system}), el("td", {}, configSelect(system, chosen[system]))));
    }
  }

  const detectorRows = () => [...$("tag-detectors").tBodies[0].rows];
  const allDetectors = () => systems.detectors.map((d) => d.id).sort();

  // Offer each row only the detectors no other row uses.
  function refreshDetectorChoices() {
    const used = new Set(detectorRows().map((r) => r.querySelector(".tag-detector").value).filter(Boolean));
    for (const row of detectorRows()) {
      const select = row.querySelector(".tag-detector");
      const mine = select.value;
      fillSelect(select, allDetectors().filter((d) => d === mine || !used.has(d)), "choose…");
      select.value = mine;
    }
    $("tag-add-detector").disabled = used.size >= allDetectors().length || detectorRows().length >= allDetectors().length;
  }

  function addDetectorRow(detector, config) {
    const select = el("select", {class: "tag-detector", "aria-label": "detector"});
    const cell = el("td");
    const row = el("tr", {}, el("td", {}, select), cell,
      el("td", {}, el("button", {type: "button", class: "remove", title: "remove this detector", text: "×",
                                 on: {click: () => { row.remove(); refreshDetectorChoices(); }}})));
    $("tag-detectors").tBodies[0].append(row);
    fillSelect(select, allDetectors(), "choose…");
    if (detector) select.value = detector;
    cell.append(configSelect(detector, config));
    select.addEventListener("change", () => {
      clear(cell).append(configSelect(select.value));
      refreshDetectorChoices();
    });
    refreshDetectorChoices();
    return row;
  }

  function fillEditor(tag) {
    $("tag-name").value = tag ? tag.name : "";
    const configs = tag ? tag.configs : {};
    globalRows(configs);
    clear($("tag-detectors").tBodies[0]);
    for (const [system, id] of Object.entries(configs)) {
      if (!(system in systems.global_systems)) addDetectorRow(system, id);
    }
    refreshDetectorChoices();
    $("tag-info").textContent = tag ? "Editing tag " + tag.name + (tag.author ? " (last saved by " + tag.author + ", " + ADMIN.time(tag.updated) + ")" : "") + "." : "New tag.";
    problems([]);
  }

  function problems(list) {
    const box = $("tag-problems");
    clear(box);
    box.hidden = !list.length;
    for (const p of list) box.append(el("li", {text: p}));
  }

  async function loadTags(select) {
    const r = await ECS.api("GET", "/api/tags");
    if (!r.ok) { ECS.showReply("Loading the tags", r); return; }
    fillSelect($("tag-list"), r.data.map((t) => t.name));
    if (select) $("tag-list").value = select;
  }

  async function loadConfigs() {
    const r = await ECS.api("GET", "/api/configs");
    if (!r.ok) { ECS.showReply("Loading the configurations", r); return; }
    bySystem = {};
    for (const c of r.data) (bySystem[c.system] = bySystem[c.system] || []).push(c.config_id);
  }

  async function edit() {
    const name = $("tag-list").value;
    if (!name) return;
    const r = await ECS.api("GET", "/api/tags/" + encodeURIComponent(name));
    if (!r.ok) { ECS.showReply("Loading tag " + name, r); return; }
    fillEditor(r.data);
  }

  async function save(event) {
    event.preventDefault();
    const name = $("tag-name").value.trim();
    const ids = [];
    const found = [];
    if (!name) found.push("the tag needs a name");
    for (const row of [...$("tag-globals").tBodies[0].rows]) {
      const id = row.querySelector(".tag-config").value;
      if (!id) found.push(row.dataset.system + ": choose a configuration");
      else ids.push(id);
    }
    detectorRows().forEach((row, i) => {
      const detector = row.querySelector(".tag-detector").value;
      const id = row.querySelector(".tag-config").value;
      if (!detector) found.push("detector row " + (i + 1) + ": choose a detector");
      else if (!id) found.push(detector + ": choose a configuration");
      else ids.push(id);
    });
    problems(found);
    if (found.length) return;
    const r = await ECS.api("PUT", "/api/tags/" + encodeURIComponent(name), {configs: ids});
    ECS.showReply("Save tag " + name, r);
    if (!r.ok) {
      // "tag T: problem; problem": one line per problem.
      const text = (r.data && r.data.reason) || ADMIN.reason(r);
      problems(text.replace(/^tag [^:]*: /, "").split("; "));
      return;
    }
    await loadTags(name);
    fillEditor(r.data);
  }

  async function remove() {
    const name = $("tag-list").value;
    if (!name || !await ECS.confirm("Delete tag " + name + "?", "Delete")) return;
    const r = await ECS.api("DELETE", "/api/tags/" + encodeURIComponent(name));
    ECS.showReply("Delete tag " + name, r);
    if (r.ok) await loadTags();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    systems = await ADMIN.systems();
    if (!systems) return;
    await loadConfigs();
    await loadTags();
    fillEditor(null);
    $("tag-edit").addEventListener("click", edit);
    $("tag-new").addEventListener("click", () => fillEditor(null));
    $("tag-delete").addEventListener("click", remove);
    $("tag-add-detector").addEventListener("click", () => addDetectorRow());
    $("tag-form").addEventListener("submit", save);
    ECS.events(null, {reload: async () => { await loadConfigs(); await loadTags($("tag-list").value); }});
  });
})();
