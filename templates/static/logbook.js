// The electronic logbook (GET/POST /api/logbook): entries newest first,
// filtered by text, partition, run, author and time, paged back with
// "Older entries" (?before= the oldest id shown); a form to write one
// (operators; files sent as base64).  Nothing is changed or deleted: a
// correction is a new entry, and a corrected entry is marked with the ids
// of its corrections.
//
// Live: "logbook" events (one per stored entry, as GET returns it) put a
// new entry at the top when it matches the filters of the entries shown,
// matched as the ECA matches them (see matches()); each id is shown once.
// When the match cannot be decided here (a search text that is not ASCII:
// the ECA lower-cases it with Python's rules and the entries with SQLite's,
// which only knows A-Z), or events were missed, a notice offers to
// refresh instead.  Events that come while the entries are being fetched
// wait for the answer, so an entry is neither lost nor shown twice.
"use strict";
(function () {
  const {el, clear} = ADMIN;
  const $ = (id) => document.getElementById(id);
  const seconds = ADMIN.inputSeconds;
  let oldest = null;      // the id of the oldest entry shown (the cursor for "older")
  let filter = null;      // the filters of the entries shown (null: nothing loaded yet)
  const entries = new Map();  // id -> entry, of the entries shown
  let fetching = 0;       // fresh loads under way: live entries wait for them
  let held = [];

  // The filters as the form says now (the query's values, as sent).
  function formFilter() {
    return {text: $("logbook-q").value.trim(), partition: $("logbook-fpartition").value.trim(),
            run: $("logbook-frun").value, author: $("logbook-author").value.trim(),
            since: seconds($("logbook-since")), until: seconds($("logbook-until"))};
  }

  function query(f, before) {
    const params = new URLSearchParams();
    for (const [name, value] of [...Object.entries(f), ["before", before ? String(before) : null],
                                 ["limit", $("logbook-limit").value || "100"]]) {
      if (value) params.set(name, value);
    }
    return "/api/logbook?" + params.toString();
  }

  // Whether the ECA would list entry e under filters f: true, false, or
  // null when it cannot be told here.  The ECA: instr(lower(text), ?) with
  // the search lower-cased by Python (SQLite's lower() changes A-Z only),
  // partition, run and author equal, since <= time < until.
  const ascii = /^[\x00-\x7f]*$/;
  const lowerAZ = (s) => s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
  function matches(f, e) {
    if (f.partition && e.partition !== f.partition) return false;
    if (f.run && e.run !== Number(f.run)) return false;
    if (f.author && e.author !== f.author) return false;
    if (f.since && !(e.time >= Number(f.since))) return false;
    if (f.until && !(e.time < Number(f.until))) return false;
    if (!f.text) return true;
    if (!ascii.test(f.text)) return null;
    return lowerAZ(e.text).includes(f.text.toLowerCase());
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

  function row(e) {
    return el("tr", {dataset: {id: e.id}, class: e.automatic ? "automatic" : ""},
      el("td", {text: e.id}), el("td", {class: "time", text: ADMIN.time(e.time)}), el("td", {text: e.author}),
      el("td", {text: e.partition || "—"}), el("td", {text: e.run || "—"}), textCell(e));
  }

  function count(all) {
    $("logbook-count").textContent = entries.size + " entries shown" + (all ? " (all that match)" : "");
  }

  function notice(show) {
    $("logbook-new").hidden = !show;
  }

  async function load(older) {
    const limit = Number($("logbook-limit").value || 100);
    const f = older ? filter : formFilter();
    if (!older) fetching += 1;
    let r;
    try {
      r = await ECS.api("GET", query(f, older ? oldest : null));
      if (!r.ok) { ECS.showReply("Loading the logbook", r); return; }
      const body = $("logbook").tBodies[0];
      if (!older) { clear(body); entries.clear(); filter = f; oldest = null; notice(false); }
      for (const e of r.data) {
        if (entries.has(e.id)) continue;
        entries.set(e.id, e);
        body.append(row(e));
      }
      if (r.data.length) oldest = r.data[r.data.length - 1].id;
      $("logbook-older").disabled = r.data.length < limit;
      count(r.data.length < limit);
    } finally {
      if (!older) fetching -= 1;
      if (!fetching) { const waiting = held; held = []; waiting.forEach(live); }
    }
  }

  // A new entry (an event, or the answer to our own write).
  function live(e) {
    if (!e || typeof e.id !== "number") return;
    if (fetching || filter === null) { held.push(e); return; }
    const fixed = e.corrects ? entries.get(e.corrects) : undefined;
    if (fixed && !(fixed.corrected_by || []).includes(e.id)) {
      fixed.corrected_by = [...(fixed.corrected_by || []), e.id];
      const tr = $("logbook").querySelector('tr[data-id="' + fixed.id + '"]');
      if (tr) tr.replaceChild(textCell(fixed), tr.lastChild);
    }
    if (entries.has(e.id)) return;
    const match = matches(filter, e);
    if (match === null) { notice(true); return; }
    if (!match) return;
    entries.set(e.id, e);
    const body = $("logbook").tBodies[0];
    let before = body.firstChild;  // newest first: above the first older entry
    while (before && Number(before.dataset.id) > e.id) before = before.nextSibling;
    body.insertBefore(row(e), before);
    if (oldest === null) oldest = e.id;
    count(false);
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
    if (r.ok) { $("logbook-add").reset(); live(r.data); }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const params = new URLSearchParams(location.search);
    for (const [name, input] of [["partition", "logbook-fpartition"], ["run", "logbook-frun"], ["author", "logbook-author"]]) {
      if (params.get(name)) $(input).value = params.get(name);
    }
    if (!ECS.hasRole("operator")) $("logbook-add").hidden = true;  // the API refuses viewers anyway
    $("logbook-filter").addEventListener("submit", (e) => { e.preventDefault(); load(false); });
    $("logbook-add").addEventListener("submit", (e) => { e.preventDefault(); write(); });
    $("logbook-older").addEventListener("click", () => load(true));
    $("logbook-refresh").addEventListener("click", () => load(false));
    // Follow first, then fetch (once the stream is open, or after 3 s
    // without it): an entry written in between is held, not lost.
    let opened;
    const open = new Promise((resolve) => { opened = resolve; setTimeout(resolve, 3000); });
    ECS.events(null, {open: () => opened(), logbook: live, reload: () => notice(true)});
    await open;
    load(false);
  });
})();
