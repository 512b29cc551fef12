// The partition monitor: the headline (headline.js), the live tables
// (live.js), the log, and the control panel.  A button is enabled only when
// the partition allows the command, the user holds control and has the
// role; a disabled one says why (its title, and the list under the panel,
// which the button names with aria-describedby and which takes the
// keyboard focus).  Every reply is shown with its time and then quotes the
// state the command caused; it fades once the state moves on.  Stop while
// recording and a forced take-over ask first; losing control through force
// or inactivity raises the banner.  Start asks for the run type, a
// comment and conditions (#start-dialog; the types come from the page's
// data-runtypes, the conditions' limits from data-condition-*),
// stop while recording for the run's end comment (#stop-dialog).  The run
// sequences panel is sequences.js's, fed by the same event stream.  The server checks all of this again:
// the page is only a view.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const $ = (id) => document.getElementById(id);
  const pid = document.body.dataset.partition;
  const me = ECS.user();
  const LABELS = {configure: "Configure", start: "Start", stop: "Stop", abort: "Abort", reset: "Reset",
                  exclusion: "Exclude or include"};
  let view = null;
  let selection = null;  // {tag} or {configs: [ids]}
  let busy = false;  // a command of ours is on its way

  // Why this user cannot command the partition now (role, link, control), or null.
  function controlWhy() {
    if (!ECS.hasRole("operator")) return "needs role operator";
    if (ECS.link() === "down") return "ECA not reachable";
    if (!view) return "loading";
    const info = view.info;
    if (!info.connected) return "the PCA of " + pid + " does not answer";
    if (!info.controller) return "not in control";
    if (info.controller !== me) return "held by " + info.controller;
    return null;
  }

  // Why `command` cannot be sent now, or null.
  function why(command) {
    const control = controlWhy();
    if (control) return control;
    const info = view.info;
    // Exclude and include are possible when configure is (not recording, nothing running).
    if (!view.allowed.includes(command === "exclusion" ? "configure" : command)) {
      if (info.locked) return "locked by a move";
      if (info.operation) return "busy: " + info.operation;
      return "not allowed in state " + view.shownState();
    }
    if (command === "configure" && !selection) return "select a configuration first";
    if (busy) return "waiting for the last reply";
    return null;
  }

  function decorate(button, command) {
    if (command === "ack") { button.disabled = !ECS.hasRole("operator"); button.title = button.disabled ? "needs role operator" : ""; return null; }
    const reason = why(command);
    button.disabled = !!reason;
    button.title = reason ? LABELS[command] + ": " + reason : "";
    if (reason) button.setAttribute("aria-describedby", "why");
    else button.removeAttribute("aria-describedby");
    return reason;
  }

  function showSelection() {
    const box = $("selection");
    if (!selection) box.textContent = "none selected";
    else if (selection.tag) box.textContent = "tag " + selection.tag;
    else box.textContent = "custom: " + selection.configs.length + " configurations";
  }

  function update() {
    const info = view ? view.info : {};
    const holder = info.controller;
    $("control-holder").textContent = !holder ? "nobody" : (holder === me ? "you (" + me + ")" : holder);
    const operator = ECS.hasRole("operator");
    const take = $("take-control");
    take.disabled = !operator || !view || holder === me || (!!holder);
    take.title = !operator ? "needs role operator" : holder === me ? "you hold control" : holder ? "held by " + holder : "";
    const release = $("release-control");
    release.disabled = holder !== me;
    release.title = holder !== me ? "you do not hold control" : "";
    $("force-control").hidden = !(ECS.hasRole("admin") && holder && holder !== me);
    // Until the user picks one, the partition's current tag is the selection.
    if (!selection && info.tag) { selection = {tag: info.tag}; showSelection(); }
    const reasons = new Map();
    for (const command of ["configure", "start", "stop", "abort"]) {
      const reason = decorate($("cmd-" + command), command);
      if (reason) {
        if (!reasons.has(reason)) reasons.set(reason, []);
        reasons.get(reason).push(LABELS[command]);
      }
    }
    const list = $("why");
    list.replaceChildren();
    for (const [reason, commands] of reasons) {
      const li = document.createElement("li");
      li.textContent = commands.join(", ") + ": " + reason;
      list.appendChild(li);
    }
    for (const b of document.querySelectorAll("button.reset")) decorate(b, "reset");
    for (const b of document.querySelectorAll("button.exclusion")) decorate(b, "exclusion");
    const action = $("headline-action");
    if (action && action.dataset.command) decorate(action, action.dataset.command);
    showProgress();
    followReply();
    sequences.render();
  }

  // The last command's reply quotes the state it caused: the first state
  // (of the partition, or of the reset system) other than the one it was
  // sent in; once the state moves on again the reply fades.
  let pending = null;  // {text, before, probe, quoted}
  function followReply() {
    if (!pending) return;
    const box = $("reply");
    const now = pending.probe();
    if (pending.quoted === null) {
      if (now === pending.before) return;
      pending.quoted = now;
      box.textContent = pending.text + ", now " + now;
    } else if (now !== pending.quoted) {
      box.classList.add("reply-stale");
      box.textContent = pending.text + ", then " + pending.quoted + " (earlier; the state has moved on)";
      pending = null;
    }
  }
  const partitionState = () => (view ? view.shownState() : null);
  const systemState = (id) => () => {
    const row = view && view.rows.get(id);
    return row ? row.shown : null;
  };

  function showProgress() {
    const box = $("progress-box");
    const operation = view && view.info.operation;
    if (!operation || !operation.startsWith("configuring")) { box.hidden = true; return; }
    box.hidden = false;
    const bar = $("progress");
    const p = view.progress;
    if (p && p.total > 0) {
      bar.max = p.total;
      bar.value = p.ready;
      $("progress-text").textContent = operation + ": " + p.ready + " of " + p.total + " systems ready";
    } else {
      bar.removeAttribute("value");  // indeterminate until the first progress event
      $("progress-text").textContent = operation;
    }
  }

  function onControl(data) {
    if (data.scope !== pid) return;
    if (data.previous === me && data.holder !== me) {
      if (data.reason === "force") ECS.banner("You lost control of " + pid + ": " + data.holder + " took it by force.");
      else if (data.reason === "inactivity") ECS.banner("Your control of " + pid + " was released after inactivity.");
      else if (data.reason === "partition deleted") ECS.banner("Partition " + pid + " was deleted.");
    } else if (data.holder === me) {
      ECS.banner("");
    }
  }

  async function send(what, method, path, body, probe) {
    busy = true;
    pending = null;
    update();
    const command = !/\/control(\?|$)/.test(path);
    const watch = probe || partitionState;
    const before = watch();
    const result = await ECS.api(method, path, body);
    busy = false;
    ECS.showReply(what, result, undefined, command);
    if (result.ok && command) pending = {text: $("reply").textContent, before, probe: watch, quoted: null};
    update();
    return result;
  }

  async function reset(ids) {
    for (const id of ids) await send("Reset " + id, "POST", base + "/reset", {system: id}, systemState(id));
  }

  // Stop while recording asks first, with the run's end comment (#stop-dialog).
  function stop() {
    const run = view && view.run ? "run " + view.run.number + " of " : "the run of ";
    $("stop-dialog-text").textContent = "Stop " + run + pid + "? The run ends and the partition stays configured.";
    $("stop-comment").value = "";
    $("stop-dialog").showModal();
  }
  $("stop-dialog").addEventListener("close", () => {
    const dialog = $("stop-dialog");
    if (dialog.returnValue === "stop") {
      const comment = $("stop-comment").value.trim();
      send("Stop", "POST", base + "/stop", comment ? {comment} : undefined);
    }
    dialog.returnValue = "";
  });

  const base = "/api/partitions/" + encodeURIComponent(pid);
  // The run sequences panel (sequences.js); its replies replace a command's quoting one.
  const sequences = new SEQUENCES.Panel({partition: pid, controlWhy, replied: () => { pending = null; }});
  const live = new LIVE.Live({
    partition: pid,
    container: $("partitions"),
    log: $("log"),
    heading: false,
    withAction: true,
    decorateReset: (button) => decorate(button, button.classList.contains("exclusion") ? "exclusion" : "reset"),
    headlineInto: $("headline-box"),
    decorateAction: (button, command) => decorate(button, command),
    onAction: (action) => {
      if (action.command === "reset") reset(action.systems);
      else if (action.command === "configure") $("cmd-configure").click();
      else if (action.command === "start") $("cmd-start").click();
      else if (action.command === "stop") stop();
      else if (action.command === "ack") ECS.alarms.acknowledge(action.alarm).then((r) => ECS.showReply("Acknowledge", r));
    },
    onChange: (v) => { view = v; update(); },
    onControl,
    onSequence: (data) => sequences.event(data),
    onReload: () => sequences.load(),
  });
  ECS.onLink(() => { if (view) update(); });
  window.ECS_LIVE = live;  // for the browser tests

  $("take-control").addEventListener("click", () => send("Take control", "POST", base + "/control"));
  $("force-control").addEventListener("click", async () => {
    const holder = view.info.controller;
    if (await ECS.confirm("Take control of " + pid + " from " + holder + "? " + holder + " can no longer command it.", "Take control")) {
      send("Take control by force", "POST", base + "/control?force=1");
    }
  });
  $("release-control").addEventListener("click", () => send("Give up control", "DELETE", base + "/control"));
  $("cmd-configure").addEventListener("click", async () => {
    if (!selection) { ECS.showReply("Configure", {ok: false, status: "", data: {reason: "select a configuration first"}}); return; }
    const chosen = selection;
    // A configured system that would change its configuration: show what
    // changes against what is running, and ask first.
    let diff = null;
    try {
      diff = await CONFIGDIALOG.changes(pid, chosen);
    } catch (error) {
      ECS.showReply("Configure", {ok: false, status: "", data: {reason: String(error.message || error)}});
      return;
    }
    if (diff.changed.some((c) => c.running !== null)) {
      if (!await ECS.confirm("Configure " + pid + ": " + diff.text, "Configure")) return;
    }
    send("Configure", "POST", base + "/configure", {...chosen, auto: $("auto-configure").checked});
  });
  // Start asks for the run's type (the ECA's declared ones) and a comment first.
  const startDialog = $("start-dialog");
  const runTypes = (document.body.dataset.runtypes || "").split(",").filter((t) => t);
  for (const t of runTypes) $("run-type").append(new Option(t, t));
  $("cmd-start").addEventListener("click", () => { $("run-comment").value = ""; checkConditions(); startDialog.showModal(); });
  startDialog.addEventListener("close", () => {
    if (startDialog.returnValue === "start") {
      const body = {};
      if ($("run-type").value) body.type = $("run-type").value;
      const comment = $("run-comment").value.trim();
      if (comment) body.comment = comment;
      const conditions = readConditions();
      if (Object.keys(conditions).length) body.conditions = conditions;
      send("Start", "POST", base + "/start", body);
    }
    startDialog.returnValue = "";
  });

  // The start dialog's conditions: rows of name and value, kept from one
  // start to the next (the magnet stays on).  The limits are the ECA's
  // (ecs/runinfo.py, given as the page's data-condition-*): the form refuses
  // a bad name, a name given twice, a value without a name and too long a
  // text before sending; whatever the ECA still refuses is its reply.
  const LIMITS = {
    key: document.body.dataset.conditionKey || "[A-Za-z0-9_.:-]{1,64}",
    max: parseInt(document.body.dataset.conditionMax, 10) || 32,
    text: parseInt(document.body.dataset.conditionText, 10) || 200,
  };
  // Not the input's pattern attribute: browsers compile that with the v flag, which refuses this class.
  const keyRule = new RegExp("^(?:" + LIMITS.key + ")$");
  const conditionRows = () => [...$("run-conditions").tBodies[0].rows];
  function addCondition() {
    if (conditionRows().length >= LIMITS.max) return;
    const tr = document.createElement("tr");
    const cell = (child) => { const td = document.createElement("td"); td.append(child); tr.append(td); return child; };
    const key = cell(document.createElement("input"));
    key.className = "condition-key";
    key.maxLength = 64;
    key.setAttribute("aria-label", "Condition name");
    const value = cell(document.createElement("input"));
    value.className = "condition-value";
    value.maxLength = LIMITS.text;
    value.setAttribute("aria-label", "Condition value");
    const remove = cell(document.createElement("button"));
    remove.type = "button";
    remove.className = "condition-remove";
    remove.textContent = "remove";
    remove.setAttribute("aria-label", "Remove this condition");
    remove.addEventListener("click", () => { tr.remove(); checkConditions(); $("add-condition").focus(); });
    $("run-conditions").tBodies[0].append(tr);
    checkConditions();
    key.focus();
  }
  // Mark what the ECA would refuse (the browser then keeps the dialog open and says why).
  function checkConditions() {
    const seen = new Set();
    for (const tr of conditionRows()) {
      const key = tr.querySelector(".condition-key");
      const name = key.value.trim();
      const value = tr.querySelector(".condition-value").value;
      key.setCustomValidity(!name && value ? "give this value a name"
        : name && !keyRule.test(name) ? "a condition's name is 1 to 64 letters, digits or _ . : -"
        : seen.has(name) ? "the condition " + name + " is given twice" : "");
      if (name) seen.add(name);
    }
    const full = conditionRows().length >= LIMITS.max;
    $("add-condition").disabled = full;
    $("conditions-note").textContent = full ? "at most " + LIMITS.max + " conditions" : "";
  }
  // As `ecs start --condition KEY=VALUE` reads a value (ecs.runinfo.parse_condition).
  function conditionValue(raw) {
    if (raw === "true") return true;
    if (raw === "false") return false;
    if (raw === "null") return null;
    if (/^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(raw)) {
      const number = Number(raw);
      // an integer beyond what a double holds exactly stays text, never rounded
      if (Number.isFinite(number) && (!Number.isInteger(number) || Number.isSafeInteger(number))) return number;
    }
    return raw;
  }
  function readConditions() {
    const conditions = {};
    for (const tr of conditionRows()) {
      const name = tr.querySelector(".condition-key").value.trim();
      if (name) conditions[name] = conditionValue(tr.querySelector(".condition-value").value);
    }
    return conditions;
  }
  $("add-condition").addEventListener("click", addCondition);
  $("run-conditions").addEventListener("input", checkConditions);
  $("cmd-stop").addEventListener("click", () => {
    if (view && view.seq.recording && view.info.state === view.seq.recording) stop();
    else send("Stop", "POST", base + "/stop");
  });
  const confirmAbort = $("confirm-abort");
  $("cmd-abort").addEventListener("click", () => confirmAbort.showModal());
  confirmAbort.addEventListener("close", () => {
    if (confirmAbort.returnValue === "abort") send("Abort", "POST", base + "/abort");
    confirmAbort.returnValue = "";
  });
  $("partitions").addEventListener("click", (event) => {
    const button = event.target.closest("button.reset");
    if (button) reset([button.dataset.system]);
    const exclusion = event.target.closest("button.exclusion");
    if (exclusion) {
      const action = exclusion.dataset.action;  // "exclude" or "include"
      const id = exclusion.dataset.system;
      send((action === "exclude" ? "Exclude " : "Include ") + id, "POST", base + "/" + action, {system: id}, systemState(id));
    }
  });
  $("select-config").addEventListener("click", () => {
    // Global systems first, then the detectors, each sorted by id.
    const rows = view ? [...view.rows.values()] : [];
    const detector = (r) => (r.record && r.record.kind === "detector" ? 1 : 0);
    const systems = rows.sort((a, b) => detector(a) - detector(b) || LIVE.collator.compare(a.id, b.id)).map((r) => r.id);
    CONFIGDIALOG.open({
      partition: pid,
      systems,
      selection,
      currentTag: view && view.info.tag,
      onSelect: (chosen) => { selection = chosen; showSelection(); update(); },
    });
  });
  live.start();
  sequences.load();
});
