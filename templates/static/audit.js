// The audit trail: who did what, with its outcome (GET /api/audit, experts),
// newest first, filtered by user, action and time, paged back with
// "Older entries" (?before= the oldest id shown).
"use strict";
(function () {
  const {el, clear} = ADMIN;
  const $ = (id) => document.getElementById(id);
  const seconds = ADMIN.inputSeconds;
  let oldest = null;  // the id of the oldest entry shown (the cursor for "older")
  let shown = 0;

  function query(before) {
    const params = new URLSearchParams();
    for (const [name, value] of [["user", $("audit-user").value.trim()], ["action", $("audit-action").value.trim()],
                                 ["since", seconds($("audit-since"))], ["until", seconds($("audit-until"))],
                                 ["before", before ? String(before) : null], ["limit", $("audit-limit").value || "100"]]) {
      if (value) params.set(name, value);
    }
    return "/api/audit?" + params.toString();
  }

  async function load(older) {
    const limit = Number($("audit-limit").value || 100);
    const r = await ECS.api("GET", query(older ? oldest : null));
    if (!r.ok) { ECS.showReply("Loading the audit trail", r); return; }
    const body = $("audit").tBodies[0];
    if (!older) { clear(body); shown = 0; }
    for (const a of r.data) {
      const failed = a.outcome !== "ok" && a.outcome !== "pending";
      body.append(el("tr", {dataset: {id: a.id}},
        el("td", {text: a.id}), el("td", {class: "time", text: ADMIN.time(a.time)}), el("td", {text: a.user || "—"}),
        el("td", {class: "action", text: a.action}), el("td", {class: "arguments", text: JSON.stringify(a.arguments || {})}),
        el("td", {class: failed ? "error" : "", text: a.outcome})));
    }
    shown += r.data.length;
    if (r.data.length) oldest = r.data[r.data.length - 1].id;
    $("audit-older").disabled = r.data.length < limit;
    $("audit-count").textContent = shown + " entries shown" + (r.data.length < limit ? " (all that match)" : "");
  }

  document.addEventListener("DOMContentLoaded", () => {
    const params = new URLSearchParams(location.search);
    if (params.get("user")) $("audit-user").value = params.get("user");
    if (params.get("action")) $("audit-action").value = params.get("action");
    $("audit-filter").addEventListener("submit", (e) => { e.preventDefault(); load(false); });
    $("audit-older").addEventListener("click", () => load(true));
    load(false);
  });
})();
