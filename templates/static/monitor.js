// The partition monitor: the live tables (live.js), the log, and the
// control panel.  A button is enabled only when the partition allows the
// command, the user holds control and has the role; a disabled one says
// why (its title, and the list under the panel).  Every reply is shown;
// losing control through force or inactivity raises the banner.  The
// server checks all of this again: the page is only a view.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const $ = (id) => document.getElementById(id);
  const pid = document.body.dataset.partition;
  const me = ECS.user();
  const LABELS = {configure: "Configure", start: "Start", stop: "Stop", abort: "Abort", reset: "Reset"};
  let view = null;
  let selection = null;  // {tag} or {configs: [ids]}
  let busy = false;  // a command of ours is on its way

  // Why `command` cannot be sent now, or null.
  function why(command) {
    if (!ECS.hasRole("operator")) return "needs role operator";
    if (!view) return "loading";
    const info = view.info;
    if (!info.connected) return "the PCA is not connected";
    if (!info.controller) return "not in control";
    if (info.controller !== me) return "held by " + info.controller;
    if (!view.allowed.includes(command)) {
      if (info.locked) return "locked by a move";
      if (info.operation) return "busy: " + info.operation;
      return "not allowed in state " + view.shownState();
    }
    if (command === "configure" && !selection) return "select a configuration first";
    if (busy) return "waiting for the last reply";
    return null;
  }

  function decorate(button, command) {
    const reason = why(command);
    button.disabled = !!reason;
    button.title = reason ? LABELS[command] + ": " + reason : "";
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
    showProgress();
  }

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

  async function send(what, method, path, body) {
    busy = true;
    update();
    const result = await ECS.api(method, path, body);
    busy = false;
    ECS.showReply(what, result, undefined, !/\/control(\?|$)/.test(path));
    update();
    return result;
  }

  const base = "/api/partitions/" + encodeURIComponent(pid);
  const live = new LIVE.Live({
    partition: pid,
    container: $("partitions"),
    log: $("log"),
    heading: false,
    withAction: true,
    decorateReset: (button) => decorate(button, "reset"),
    onChange: (v) => { view = v; update(); },
    onControl,
  });
  window.ECS_LIVE = live;  // for the browser tests

  $("take-control").addEventListener("click", () => send("Take control", "POST", base + "/control"));
  $("force-control").addEventListener("click", () => {
    if (confirm("Take control of " + pid + " from " + view.info.controller + "?")) send("Take control by force", "POST", base + "/control?force=1");
  });
  $("release-control").addEventListener("click", () => send("Give up control", "DELETE", base + "/control"));
  $("cmd-configure").addEventListener("click", () => {
    if (!selection) { ECS.showReply("Configure", {ok: false, status: "", data: {reason: "select a configuration first"}}); return; }
    send("Configure", "POST", base + "/configure", {...selection, auto: $("auto-configure").checked});
  });
  $("cmd-start").addEventListener("click", () => send("Start", "POST", base + "/start"));
  $("cmd-stop").addEventListener("click", () => send("Stop", "POST", base + "/stop"));
  const confirmAbort = $("confirm-abort");
  $("cmd-abort").addEventListener("click", () => confirmAbort.showModal());
  confirmAbort.addEventListener("close", () => {
    if (confirmAbort.returnValue === "abort") send("Abort", "POST", base + "/abort");
    confirmAbort.returnValue = "";
  });
  $("partitions").addEventListener("click", (event) => {
    const button = event.target.closest("button.reset");
    if (button) send("Reset " + button.dataset.system, "POST", base + "/reset", {system: button.dataset.system});
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
});
