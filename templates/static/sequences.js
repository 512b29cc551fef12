// The run sequences panel of the partition monitor (#sequence-panel):
// window.SEQUENCES.Panel.
//
// It lists the declared sequences (GET /api/sequences), runs one on the
// partition (POST /api/sequences/{name}/run), shows the running or last
// sequence with its progress (GET /api/partitions/{id}/sequence, then the
// `sequence` events of the partition's stream, which carry the same status
// and the message of what just happened), and pauses, resumes or aborts it
// (POST /api/partitions/{id}/sequence/pause|resume|abort; abort asks first:
// it aborts the partition too).  A disabled button says why (its title, and
// the #sequence-why list it names with aria-describedby, which takes the
// keyboard focus), as the control panel's do.  The ECA checks everything
// again: the panel is only a view.
"use strict";
window.SEQUENCES = (function () {
  const $ = (id) => document.getElementById(id);
  const ENDED = ["done", "failed", "aborted", "interrupted"];

  // What the status says, in one line.
  function describe(s) {
    if (!s || s.state === "none") return "No sequence has run on this partition since the ECA started.";
    const by = s.user ? " (run by " + s.user + ")" : "";
    const step = "step " + s.step + " of " + s.total + (s.description ? ": " + s.description : "");
    if (s.state === "running") return s.sequence + " running" + by + ", " + step + (s.pause_wanted ? " (pausing after this step)" : "");
    if (s.state === "paused") return s.sequence + " paused" + by + " after step " + s.step + " of " + s.total;
    if (s.state === "done") return s.sequence + " done" + by + ": all " + s.total + " steps";
    if (s.state === "failed") return s.sequence + " failed" + by + " in step " + (s.failed_step || s.step) + ": " + (s.error || "");
    if (s.state === "aborted") return s.sequence + " aborted" + by + " in step " + s.step + " of " + s.total;
    if (s.state === "interrupted") return s.sequence + " interrupted in step " + s.step + " of " + s.total + " (the ECA stopped)";
    return s.sequence + " " + s.state + ", " + step;
  }

  // Whether status s is at least as new as the one shown (another run, or a
  // version of this one no older: a reply can arrive after an event that
  // already told more, e.g. the pause taking effect).
  function newer(s, shown) {
    return !shown || shown.started_at !== s.started_at || shown.sequence !== s.sequence
      || (s.version || 0) >= (shown.version || 0);
  }

  // Steps finished, for the progress bar.
  function finished(s) {
    if (s.state === "done") return s.total;
    if (s.state === "paused") return s.step;
    return Math.max(0, s.step - 1);
  }

  // options: {partition, controlWhy() -> reason or null (role, link, control),
  // replied() (a reply of ours replaced the command reply)}.
  class Panel {
    constructor(options) {
      this.pid = options.partition;
      this.controlWhy = options.controlWhy;
      this.replied = options.replied || (() => {});
      this.base = "/api/partitions/" + encodeURIComponent(this.pid) + "/sequence";
      this.declared = null;  // [{name, description, total, steps}] once loaded
      this.status = null;
      this.busy = false;
      this.events = 0;  // sequence events seen: a status fetched meanwhile is older
      $("sequence-select").addEventListener("change", () => this.render());
      $("sequence-run").addEventListener("click", () => this.run());
      $("sequence-pause").addEventListener("click", () => this.act("pause", "Pause sequence"));
      $("sequence-resume").addEventListener("click", () => this.act("resume", "Resume sequence"));
      $("sequence-abort").addEventListener("click", () => this.abort());
    }

    // Everything again (first load, or events were missed).
    async load() {
      const seen = this.events;
      const [list, status] = await Promise.all([
        this.declared ? null : ECS.api("GET", "/api/sequences"),
        ECS.api("GET", this.base),
      ]);
      if (list) {
        if (list.ok && Array.isArray(list.data)) this.fill(list.data);
        else ECS.showReply("Loading run sequences", list);
      }
      if (status.ok && (this.events === seen || newer(status.data, this.status))) this.status = status.data;
      this.render();
    }

    fill(declared) {
      this.declared = declared;
      const select = $("sequence-select");
      select.replaceChildren();
      for (const d of declared) select.append(new Option(d.name + " (" + d.total + " steps)", d.name));
    }

    // A `sequence` event of the partition: the status, and what just happened.
    event(data) {
      if (!data || data.partition !== this.pid) return;
      this.events += 1;
      const {message, ...status} = data;
      if (!newer(status, this.status)) return;
      this.status = status;
      $("sequence-message").textContent = message ? ECS.clock(Date.now() / 1000) + " · " + message : "";
      this.render();
    }

    active() {
      return !!this.status && this.status.state !== "none" && !ENDED.includes(this.status.state);
    }

    // Why each button is disabled now (null: enabled).
    reasons() {
      const control = this.controlWhy();
      const s = this.status || {};
      const running = this.active();
      const reasons = {};
      reasons.run = this.declared === null ? "loading" : !this.declared.length ? "no sequence is declared (etc/sequences/)"
        : running ? "sequence " + s.sequence + " is " + s.state : control;
      reasons.pause = !running ? "no sequence runs" : s.state === "paused" ? "the sequence is paused"
        : s.pause_wanted ? "pausing after the current step" : control;
      reasons.resume = !running ? "no sequence runs" : s.state !== "paused" && !s.pause_wanted ? "the sequence is not paused" : control;
      reasons.abort = !running ? "no sequence runs" : control;
      for (const key of Object.keys(reasons)) if (!reasons[key] && this.busy) reasons[key] = "waiting for the last reply";
      return reasons;
    }

    render() {
      const s = this.status;
      const chosen = (this.declared || []).find((d) => d.name === $("sequence-select").value);
      $("sequence-description").textContent = chosen ? chosen.description || "" : "";
      $("sequence-status").textContent = describe(s);
      const box = $("sequence-progress-box");
      box.hidden = !s || s.state === "none";
      if (!box.hidden) {
        const bar = $("sequence-progress");
        bar.max = Math.max(1, s.total);
        bar.value = finished(s);
        bar.setAttribute("aria-label", "sequence progress: " + finished(s) + " of " + s.total + " steps done");
        $("sequence-state").dataset.state = s.state;
        $("sequence-state").textContent = s.state;
      }
      const labels = {run: "Run", pause: "Pause", resume: "Resume", abort: "Abort sequence"};
      const reasons = this.reasons();
      const why = $("sequence-why");
      why.replaceChildren();
      const grouped = new Map();
      for (const [key, reason] of Object.entries(reasons)) {
        const button = $("sequence-" + key);
        button.disabled = !!reason;
        button.title = reason ? labels[key] + ": " + reason : "";
        if (reason) button.setAttribute("aria-describedby", "sequence-why");
        else button.removeAttribute("aria-describedby");
        if (reason) grouped.set(reason, [...(grouped.get(reason) || []), labels[key]]);
      }
      for (const [reason, buttons] of grouped) {
        const li = document.createElement("li");
        li.textContent = buttons.join(", ") + ": " + reason;
        why.append(li);
      }
    }

    // Send, show the reply as the control panel shows a command's, take the answered status.
    async send(what, method, path, body, accepted) {
      this.busy = true;
      this.render();
      const result = await ECS.api(method, path, body);
      this.busy = false;
      this.replied();
      ECS.showReply(what, result, undefined, accepted);
      if (result.ok && result.data && result.data.state) {
        // an event may already have told more: keep the newer status
        if (newer(result.data, this.status)) {
          const {abort_refused: refused, ...status} = result.data;
          this.status = status;
          if (refused) ECS.showReply(what, {ok: false, status: "", data: {reason: "sequence aborted; the partition's abort was refused: " + refused}});
        }
      }
      this.render();
      return result;
    }

    run() {
      const name = $("sequence-select").value;
      if (!name) return;
      this.send("Run sequence " + name, "POST", "/api/sequences/" + encodeURIComponent(name) + "/run", {partition: this.pid}, true);
    }

    act(action, what) {
      this.send(what, "POST", this.base + "/" + action, undefined, false);
    }

    async abort() {
      const s = this.status || {};
      const text = "Abort sequence " + s.sequence + " on " + this.pid + "? It stops at once, in step " + s.step + " of " + s.total +
        ", and the partition is aborted too: every system goes back to its idle state and a running run ends as aborted.";
      if (await ECS.confirm(text, "Abort sequence")) this.act("abort", "Abort sequence");
    }
  }

  return {Panel, describe};
})();
