// Partition and detector management: create, delete, move; every refusal
// listed per item, with a force retry; the ECS control these need.  Moving
// a configured detector (Active, or its partition recording) and deleting
// or taking the control by force ask first, naming what they undo.
"use strict";
(function () {
  const {el, clear, fillSelect} = ADMIN;
  const $ = (id) => document.getElementById(id);
  const UNASSIGNED = "";  // the "unassigned" choice in the from/to selects
  let partitions = [];
  let detectors = [];

  // The ECS control's holder, the same words whichever answer tells it (the
  // command's reply, GET /api/control or a control event): "you" for this user.
  function showHolder(name) {
    $("ecs-holder").textContent = "Holder: " + (name && name === ECS.user() ? "you" : name || "nobody") + ".";
  }

  async function refresh() {
    const [ps, sys] = await Promise.all([ADMIN.partitions(), ADMIN.systems()]);
    partitions = ps;
    if (!sys) return;
    detectors = sys.detectors;
    const types = Object.keys(sys.detector_types);
    fillSelect($("new-detector-type"), types, types.length ? "choose…" : "no detector types");
    checklist($("delete-partitions"), partitions.map((p) => [p.id, p.id + " (" + (p.state || "unknown") + ")"]), "no partitions");
    checklist($("delete-detectors"), detectors.filter((d) => d.partition === null).map((d) => [d.id, d.id + " (" + d.type + ")"]),
              "no unassigned detectors");
    const places = [[UNASSIGNED, "(unassigned)"], ...partitions.map((p) => [p.id, p.id])];
    fillSelect($("move-from"), places);
    fillSelect($("move-to"), places);
    moveList();
  }

  function checklist(list, items, empty) {
    const keep = new Set(checked(list));
    clear(list);
    if (!items.length) list.append(el("li", {class: "note", text: empty}));
    for (const [value, label] of items) {
      list.append(el("li", {}, el("label", {}, el("input", {type: "checkbox", value, checked: keep.has(value)}), " " + label)));
    }
  }
  const checked = (list) => [...list.querySelectorAll("input[type=checkbox]:checked")].map((i) => i.value);

  function moveList() {
    const from = $("move-from").value || null;
    checklist($("move-detectors"), detectors.filter((d) => d.partition === from).map((d) => [d.id, d.id + " (" + d.type + ")"]),
              "no detectors here");
  }

  // Run fn(item) for each item; list the refusals, offer a force retry.
  async function each(what, items, fn, forceFn, forceLabel) {
    const failures = [];
    for (const item of items) {
      const r = await fn(item);
      if (!r.ok) failures.push({item, reason: ADMIN.reason(r)});
    }
    const done = items.length - failures.length;
    ECS.showReply(what, failures.length ? {ok: false, status: "", data: {reason: done + " done, " + failures.length + " refused (listed below)"}} : {ok: true});
    ADMIN.showErrors($("manage-errors"), what + ": refused", failures,
      forceFn ? async (again) => { await each(what + " (forced)", again, forceFn, null); } : null, forceLabel);
    await refresh();
  }

  const enc = encodeURIComponent;

  async function takeControl(force) {
    const r = await ECS.api("POST", "/api/control" + (force ? "?force=1" : ""));
    ECS.showReply(force ? "Take the ECS control by force" : "Take the ECS control", r);
    if (r.ok) showHolder(ECS.user());
    else if (r.data && r.data.holder) showHolder(r.data.holder);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("ecs-take-force").hidden = !ECS.hasRole("admin");
    $("ecs-take").addEventListener("click", () => takeControl(false));
    $("ecs-take-force").addEventListener("click", () => {
      const held = $("ecs-holder").textContent;
      ECS.confirm("Take the ECS control from its holder? (" + held + ") They can no longer create, delete or move.",
                  "Take it").then((ok) => { if (ok) takeControl(true); });
    });
    $("ecs-release").addEventListener("click", async () => {
      const r = await ECS.api("DELETE", "/api/control");
      ECS.showReply("Give up the ECS control", r);
      if (r.ok) showHolder(null);
    });
    $("create-partition").addEventListener("submit", async (event) => {
      event.preventDefault();
      const id = $("new-partition").value.trim();
      const r = await ECS.api("POST", "/api/partitions", {id});
      ECS.showReply("Create partition " + id, r);
      ADMIN.showErrors($("manage-errors"), "", r.ok ? [] : [{item: id, reason: ADMIN.reason(r)}]);
      if (r.ok) $("new-partition").value = "";
      await refresh();
    });
    $("create-detector").addEventListener("submit", async (event) => {
      event.preventDefault();
      const id = $("new-detector").value.trim();
      const type = $("new-detector-type").value;
      const r = await ECS.api("POST", "/api/detectors", {id, type});
      ECS.showReply("Create detector " + id, r);
      ADMIN.showErrors($("manage-errors"), "", r.ok ? [] : [{item: id, reason: ADMIN.reason(r)}]);
      if (r.ok) $("new-detector").value = "";
      await refresh();
    });
    $("delete-partitions-button").addEventListener("click", async () => {
      const ids = checked($("delete-partitions"));
      if (!ids.length) return;
      const busy = partitions.filter((p) => ids.includes(p.id) && p.state && p.state !== "Idle").map((p) => p.id + " (" + p.state + ")");
      const text = "Delete partition(s) " + ids.join(", ") + "? Their detectors become unassigned." +
                   (busy.length ? " Configured now: " + busy.join(", ") + "; deleting ends their configuration." : "");
      if (!await ECS.confirm(text, "Delete")) return;
      await each("Delete partitions", ids, (id) => ECS.api("DELETE", "/api/partitions/" + enc(id)),
                 (id) => ECS.api("DELETE", "/api/partitions/" + enc(id) + "?force=1"), "Delete anyway (force)");
    });
    $("delete-detectors-button").addEventListener("click", async () => {
      const ids = checked($("delete-detectors"));
      if (!ids.length || !await ECS.confirm("Delete detector(s) " + ids.join(", ") + "?", "Delete")) return;
      await each("Delete detectors", ids, (id) => ECS.api("DELETE", "/api/detectors/" + enc(id)),
                 (id) => ECS.api("DELETE", "/api/detectors/" + enc(id) + "?force=1"), "Delete anyway (force)");
    });
    $("move-from").addEventListener("change", moveList);
    $("move-button").addEventListener("click", async () => {
      const ids = checked($("move-detectors"));
      const to = $("move-to").value || null;
      if (!ids.length) return;
      if (to === ($("move-from").value || null)) { ECS.showReply("Move", {ok: false, status: "", data: {reason: "choose another target"}}); return; }
      const from = $("move-from").value || null;
      if (from) {
        // A configured detector leaves a configured partition: say which, and ask.
        const r = await ECS.api("GET", "/api/partitions/" + enc(from));
        const systems = r.ok ? r.data.systems || [] : [];
        const active = systems.filter((x) => ids.includes(x.id) && ["Active", "Recording", "Error"].includes(x.state))
          .map((x) => x.id + " (" + x.state + ")");
        const recording = r.ok && r.data.state === "Recording";
        if (active.length || recording) {
          const text = "Move " + (active.length ? "configured detector(s) " + active.join(", ") : ids.join(", ")) + " out of " + from +
            (recording ? ", which is recording" : "") + "? " + from + " is no longer fully configured and must be configured again.";
          if (!await ECS.confirm(text, "Move")) return;
        }
      }
      const label = "Move " + ids.join(", ") + " to " + (to || "unassigned");
      await each(label, ids, (id) => ECS.api("POST", "/api/detectors/" + enc(id) + "/move", {to}),
                 (id) => ECS.api("POST", "/api/detectors/" + enc(id) + "/move", {to, force: true}), "Move anyway (force)");
    });
    const askHolder = async () => {
      const r = await ECS.api("GET", "/api/control");
      if (r.ok) showHolder(r.data.holder);
    };
    ECS.events(null, {
      control: (data) => { if (data.scope === "ecs") showHolder(data.holder); },
      reload: async () => { await askHolder(); await refresh(); },
    });
    await askHolder();
    await refresh();
  });
})();
