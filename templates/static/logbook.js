// The electronic logbook (GET/POST /api/logbook): entries newest first,
// filtered by text, partition, run, author and time, paged back with
// "Older entries" (?before= the oldest id shown); a form to write one
// (operators; files sent as base64).  Nothing is changed or deleted: a
// correction is a new entry, and a corrected entry is marked with the ids
// of its corrections.
"use strict";
(function () {
  const {el, clear} = ADMIN;
  const $ = (id) => document.getElementById(id);
  const seconds = (input) => input.value ? String(new Date(input.value).getTime() / 1000) : null;
  let oldest = null;  // the id of the oldest entry shown (the cursor for "older")
  let shown = 0;

  function query(before) {
    const params = new URLSearchParams();
    for (const [name, value] of [["text", $("logbook-q").value.trim()], ["partition", $("logbook-fpartition").value.trim()],
                                 ["run", $("logbook-frun").value], ["author", $("logbook-author").value.trim()],
                                 ["since", seconds($("logbook-since"))], ["until", seconds($("logbook-until"))],
                                 ["before", before ? String(before) : null], ["limit", $("logbook-limit").value || "100"]]) {
      if (value) params.set(name, value);
    }
    return "/api/logbook?" + params.toString();
  }

  function textCell(e) {
    const cell = el("td", {class: "text"}, el("span", {text: e.text}));
    if (e.corrects) cell.append(" ", el("span", {class: "note", text: "(corrects #" + e.corrects + ")"}));
    if (e.corrected_by && e.corrected_by.length) {
      cell.classList.add("corrected");
      cell.append(" ", el("span", {class: "warning", text: "corrected by " + e.corrected_by.map((i) => "#" + i).join(", ")}));
    }
    for (const a of e.attachments || []) {
      cell.append(" ", el("a", {href: "/api/logbook/" + e.id + "/attachments/" + a.n, text: a.name + " (" + a.size + " B)"}));
    }
    return cell;
  }

  async function load(older) {
    const limit = Number($("logbook-limit").value || 100);
    const r = await ECS.api("GET", query(older ? oldest : null));
    if (!r.ok) { ECS.showReply("Loading the logbook", r); return; }
    const body = $("logbook").tBodies[0];
    if (!older) { clear(body); shown = 0; }
    for (const e of r.data) {
      body.append(el("tr", {dataset: {id: e.id}, class: e.automatic ? "automatic" : ""},
        el("td", {text: e.id}), el("td", {class: "time", text: ADMIN.time(e.time)}), el("td", {text: e.author}),
        el("td", {text: e.partition || "—"}), el("td", {text: e.run || "—"}), textCell(e)));
    }
    shown += r.data.length;
    if (r.data.length) oldest = r.data[r.data.length - 1].id;
    $("logbook-older").disabled = r.data.length < limit;
    $("logbook-count").textContent = shown + " entries shown" + (r.data.length < limit ? " (all that match)" : "");
  }

  function base64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  async function write() {
    const body = {text: $("logbook-text").value};
    const partition = $("logbook-partition").value.trim();
    if (partition) body.partition = partition;
    for (const [field, input] of [["run", "logbook-run"], ["corrects", "logbook-corrects"]]) {
      if ($(input).value) body[field] = Number($(input).value);
    }
    const files = Array.from($("logbook-files").files || []);
    if (files.length) {
      body.attachments = await Promise.all(files.map(async (f) => ({
        name: f.name, content_type: f.type || "application/octet-stream", data: await base64(f)})));
    }
    const r = await ECS.api("POST", "/api/logbook", body);
    ECS.showReply("Writing the entry", r);
    if (r.ok) { $("logbook-add").reset(); load(false); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const params = new URLSearchParams(location.search);
    for (const [name, input] of [["partition", "logbook-fpartition"], ["run", "logbook-frun"], ["author", "logbook-author"]]) {
      if (params.get(name)) $(input).value = params.get(name);
    }
    if (!ECS.hasRole("operator")) $("logbook-add").hidden = true;  // the API refuses viewers anyway
    $("logbook-filter").addEventListener("submit", (e) => { e.preventDefault(); load(false); });
    $("logbook-add").addEventListener("submit", (e) => { e.preventDefault(); write(); });
    $("logbook-older").addEventListener("click", () => load(true));
    load(false);
  });
})();
