// The partition headline (overview and monitor): window.HEADLINE.
//
// - sequence(systems): the partition sequence's stages, in configure order,
//   from GET /api/systems (the partition table's rows: Idle -configure->
//   Configuring_X -success-> X_Active -configure-> ...) or from a
//   partition's own "stages" field when the API gives one.
// - diagnose(context): what the page says at the top: the tile (state,
//   category, a line under it) and one sentence naming what is wrong and the
//   next action, with that action's command.  Derived from the partition
//   record, its systems and the alarms; nothing is stored.
// - Headline: the DOM of it, updated in place (textContent only).
"use strict";
window.HEADLINE = (function () {
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  };
  const setText = (node, text) => { if (node.textContent !== text) node.textContent = text; };

  // {idle, stages: [{name, configuring, active, systems: [ids] | null (the detectors)}], recording, top}
  function sequence(systems, stages) {
    const globals = new Set(Object.keys((systems && systems.global_systems) || {}));
    const seq = {idle: "Idle", stages: [], recording: "Recording", top: null};
    if (Array.isArray(stages) && stages.length) {
      for (const s of stages) {
        const ids = (s.systems || []).filter((x) => x !== "detectors");
        seq.stages.push({name: s.name, configuring: s.configuring, active: s.active,
                         systems: (s.systems || []).includes("detectors") ? null : ids});
      }
    } else {
      const table = systems && systems.tables && systems.tables[systems.partition_table];
      if (!table) return seq;
      seq.idle = table.initial || "Idle";
      const next = (state, input) => {
        const row = (table.rows || []).find((r) => r[0] === state && r[1] === input);
        return row ? row[2] : null;
      };
      const seen = new Set([seq.idle]);
      let state = seq.idle;
      for (;;) {
        const configuring = next(state, "configure");
        const active = configuring && next(configuring, "success");
        if (!active || seen.has(active)) break;
        seen.add(active);
        const name = configuring.replace(/^Configuring_/, "");
        const ids = name.split("_and_").filter((x) => globals.has(x));
        seq.stages.push({name, configuring, active, systems: ids.length ? ids : null});
        state = active;
      }
      seq.recording = next(state, "start") || null;
    }
    seq.top = seq.stages.length ? seq.stages[seq.stages.length - 1].active : null;
    return seq;
  }

  // The position of every state of the sequence (Idle 0, Configuring_TFC 1, ...).
  function positions(seq) {
    const order = [seq.idle];
    for (const s of seq.stages) order.push(s.configuring, s.active);
    if (seq.recording) order.push(seq.recording);
    return new Map(order.map((name, i) => [name, i]));
  }

  const READY = new Set(["Active", "Recording"]);
  const names = (ids) => ids.slice(0, 3).join(", ") + (ids.length > 3 ? " and " + (ids.length - 3) + " more" : "");

  // Per stage: {name, status: done|current|pending, ready, total}.
  function stageProgress(seq, state, systems) {
    const pos = positions(seq);
    const here = pos.has(state) ? pos.get(state) : -1;
    const counts = seq.stages.map(() => [0, 0]);
    const index = new Map();
    let detectorStage = -1;
    seq.stages.forEach((s, i) => {
      if (s.systems === null) detectorStage = i;
      else for (const id of s.systems) index.set(id, i);
    });
    for (const r of systems) {
      const i = r.kind === "detector" ? detectorStage : (index.has(r.id) ? index.get(r.id) : -1);
      if (i < 0) continue;
      counts[i][1] += 1;
      if (r.live && READY.has(r.state)) counts[i][0] += 1;
    }
    return seq.stages.map((s, i) => ({
      name: s.name,
      status: state === s.configuring ? "current" : here >= pos.get(s.active) ? "done" : "pending",
      ready: counts[i][0],
      total: counts[i][1],
    }));
  }

  // context: {pid, link, info: {state, connected, operation, locked}, systems: [{id, kind, state, live}],
  //           alarms: [alarm], seq, progress, run}
  // -> {state, category, sub, line, lineCategory, action: {command, label, systems?, alarm?} | null}
  function diagnose(c) {
    const info = c.info;
    const seq = c.seq;
    const state = info.state || "unknown";
    if (c.link === "down") {
      return {state: "ECA not reachable", category: "fault", sub: "nothing shown is live",
              line: "ECA not reachable: this page reconnects by itself once it answers", lineCategory: "fault", action: null};
    }
    if (!info.connected) {
      return {state: "Connection Problem", category: "fault", sub: "PCA not answering",
              line: "The PCA of " + c.pid + " does not answer: its supervision restarts it; if it stays, see the agents (Clients)",
              lineCategory: "fault", action: null};
    }
    const errors = c.systems.filter((s) => s.live && s.state === "Error").map((s) => s.id);
    const lost = c.systems.filter((s) => !s.live).map((s) => s.id);
    const mine = c.alarms.filter((a) => ECS.alarms.needsPerson(a));
    // The newest alarm that needs a person and that the main line does not already say.
    const inError = new Set(errors);
    // Still there before over, then the most severe, then the newest.
    const weight = (a) => (a.cleared_at ? 0 : 10) + ({critical: 3, error: 2, warning: 1}[a.severity] || 0);
    const alarm = mine.filter((a) => !(a.kind === "system_error" && inError.has(a.source)))
      .sort((a, b) => weight(b) - weight(a) || b.raised_at - a.raised_at)[0] || null;
    const base = {state, category: info.operation ? "working" : ECS.category(state), sub: "", action: null, alarm};
    if (seq.recording && state === seq.recording) {
      base.category = "recording";
      base.sub = c.run ? "run " + c.run.number + " · since " + ECS.clock(c.run.started) : "run starting";
    }
    if (errors.length) {
      const alarm = errors.length === 1 && mine.find((a) => a.source === errors[0] && a.action);
      const action = alarm ? alarm.action : "reset " + (errors.length === 1 ? errors[0] : "them") + ", then Configure";
      return {...base, category: "fault", sub: errors.length + " in Error",
              line: names(errors) + " in Error: " + action, lineCategory: "fault",
              action: {command: "reset", systems: errors, label: errors.length === 1 ? "Reset " + errors[0] : "Reset " + errors.length + " systems"}};
    }
    if (lost.length) {
      return {...base, category: "fault", sub: lost.length + " not answering",
              line: names(lost) + (lost.length === 1 ? " does" : " do") + " not answer (Connection Problem): the supervision restarts " +
                    (lost.length === 1 ? "it" : "them") + "; then Configure",
              lineCategory: "fault", action: null};
    }
    const open = mine.find((a) => !a.cleared_at);
    if (open) {
      // A condition still there (a DCS alarm, an agent flapping): it is the line.
      return {...base, alarm: alarm === open ? null : alarm, line: open.text + (open.action ? ": " + open.action : ""),
              lineCategory: open.severity === "warning" ? "working" : "fault",
              action: {command: "ack", alarm: open.id, label: "Acknowledge"}};
    }
    if (info.locked) return {...base, line: "Locked while detectors move: wait for the move to end", lineCategory: "working"};
    if (info.operation) {
      const p = c.progress;
      const what = info.operation.charAt(0).toUpperCase() + info.operation.slice(1);
      const detail = p && p.total ? ": " + p.ready + " of " + p.total + " ready" : "";
      base.sub = p && p.total ? p.stage + " " + p.ready + "/" + p.total : info.operation;
      return {...base, line: what + detail + "; wait, or Abort", lineCategory: "working"};
    }
    if (seq.recording && state === seq.recording) {
      return {...base, line: "Recording" + (c.run ? " run " + c.run.number : "") + ": Stop ends the run", lineCategory: "recording",
              action: {command: "stop", label: "Stop"}};
    }
    if (seq.top && state === seq.top) {
      return {...base, line: "Configured and ready: Start a run", lineCategory: "ready", action: {command: "start", label: "Start"}};
    }
    if (state === seq.idle) {
      return {...base, sub: "not configured", line: "Not configured: choose a configuration, then Configure", lineCategory: "resting",
              action: {command: "configure", label: "Configure"}};
    }
    if (seq.stages.some((s) => s.active === state)) {
      return {...base, category: "resting", line: "Configured up to " + state + ": Configure brings it to " + seq.top,
              lineCategory: "resting", action: {command: "configure", label: "Configure"}};
    }
    return {...base, line: state, lineCategory: ECS.category(state)};
  }

  const MARK = {done: "✓", current: "◐", pending: "○"};

  // The headline's DOM.  options: {pid, compact, onAction(action, button), decorate(button, command)}
  class Headline {
    constructor(options) {
      this.options = options;
      this.root = el("div", "headline" + (options.compact ? " compact" : ""));
      this.root.dataset.partition = options.pid;
      this.tile = this.root.appendChild(el("div", "tile tile-unknown"));
      this.tile.setAttribute("role", "status");
      if (options.compact) {
        const a = this.tile.appendChild(el("a", "tile-name", options.pid));
        a.href = "/partitions/" + encodeURIComponent(options.pid);
      }
      this.tileState = this.tile.appendChild(el("div", "tile-state"));
      this.tileSub = this.tile.appendChild(el("div", "tile-sub"));
      this.tileElapsed = this.tile.appendChild(el("div", "tile-elapsed"));
      const right = this.root.appendChild(el("div", "headline-right"));
      this.line = right.appendChild(el("p", "headline-line"));
      this.line.setAttribute("aria-live", "polite");
      this.lineText = this.line.appendChild(el("span", "headline-text"));
      if (options.compact) {
        this.go = this.line.appendChild(el("a", "headline-go", "Open"));
        this.go.href = "/partitions/" + encodeURIComponent(options.pid);
      } else {
        this.button = this.line.appendChild(el("button", "headline-action"));
        this.button.type = "button";
        this.button.id = "headline-action";
        this.button.hidden = true;
        this.button.addEventListener("click", () => { if (this.action) options.onAction(this.action, this.button); });
      }
      this.alarmLine = right.appendChild(el("p", "headline-alarm"));
      this.alarmLine.hidden = true;
      this.alarmText = this.alarmLine.appendChild(el("span", "headline-alarm-text"));
      if (!options.compact) {
        this.ackButton = this.alarmLine.appendChild(el("button", "headline-ack", "Acknowledge"));
        this.ackButton.type = "button";
        this.ackButton.addEventListener("click", () => {
          if (this.alarm) options.onAction({command: "ack", alarm: this.alarm.id, label: "Acknowledge"}, this.ackButton);
        });
      }
      this.stages = right.appendChild(el("ol", "stages"));
      this.stages.setAttribute("aria-label", "Sequence");
      this.extra = right;  // the counts and search go here (live.js)
      this.run = null;
      this.recording = false;
    }

    render(result, stages) {
      const category = result.category;
      const tileClass = "tile tile-" + category;
      if (this.tile.className !== tileClass) this.tile.className = tileClass;
      this.tile.dataset.category = category;
      if (this.tileState.textContent !== result.state) {
        // Long state names break after their underscores, never inside a word.
        this.tileState.replaceChildren();
        result.state.split("_").forEach((part, i, parts) => {
          this.tileState.appendChild(document.createTextNode(part + (i < parts.length - 1 ? "_" : "")));
          if (i < parts.length - 1) this.tileState.appendChild(el("wbr"));
        });
      }
      this.tileState.classList.toggle("long", result.state.length > 16);
      setText(this.tileSub, result.sub || "");
      this.tile.setAttribute("aria-label", "Partition " + this.options.pid + ": " + result.state + (result.sub ? ", " + result.sub : ""));
      const lineClass = "headline-line line-" + result.lineCategory;
      if (this.line.className !== lineClass) this.line.className = lineClass;
      setText(this.lineText, result.line);
      this.action = result.action;
      if (this.button) {
        this.button.hidden = !result.action;
        if (result.action) {
          setText(this.button, result.action.label);
          this.button.dataset.command = result.action.command;
          this.button.className = "headline-action " + (result.action.command === "reset" ? "primary-fault" : "primary");
          if (this.options.decorate) this.options.decorate(this.button, result.action.command);
        }
      }
      const a = result.alarm;
      this.alarm = a;
      this.alarmLine.hidden = !a;
      if (a) {
        this.alarmLine.className = "headline-alarm alarm-" + String(a.severity).replace(/[^a-z]/g, "");
        setText(this.alarmText, "Alarm" + (a.cleared_at ? " (over, not yet acknowledged)" : "") + ": " + a.text +
                (a.action ? " (" + a.action + ")" : "") + " · " + ECS.clock(a.raised_at));
        if (this.ackButton && this.options.decorate) this.options.decorate(this.ackButton, "ack");
      }
      this.renderStages(stages);
      this.tick();
    }

    renderStages(stages) {
      const items = this.stages.children;
      stages.forEach((s, i) => {
        let li = items[i];
        if (!li) {
          li = this.stages.appendChild(el("li"));
          li.appendChild(el("span", "stage-mark"));
          li.appendChild(el("span", "stage-name", s.name));
          li.appendChild(el("span", "stage-count"));
        }
        li.className = "stage stage-" + s.status;
        li.dataset.stage = s.name;
        setText(li.children[0], MARK[s.status]);
        setText(li.children[1], s.name);
        setText(li.children[2], s.total ? s.ready + "/" + s.total : "");
        li.title = s.name + ": " + s.status + (s.total ? ", " + s.ready + " of " + s.total + " ready" : "");
      });
      while (this.stages.children.length > stages.length) this.stages.lastElementChild.remove();
    }

    // The elapsed time of a run (called every second while recording).
    tick() {
      const run = this.run;
      setText(this.tileElapsed, run && this.recording ? elapsed(Date.now() / 1000 - run.started) : "");
    }
  }

  function elapsed(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const two = (n) => String(n).padStart(2, "0");
    return two(Math.floor(s / 3600)) + ":" + two(Math.floor(s / 60) % 60) + ":" + two(s % 60) + " elapsed";
  }

  return {sequence, diagnose, stageProgress, Headline, elapsed};
})();
