// ECS common client code, loaded by every page before the page's own script.
// window.ECS: api() for the JSON API (CSRF header added), events() for the
// SSE stream, state colours, the command reply box, the banner, logout.
"use strict";
window.ECS = (function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Call the API.  Resolves to {ok, status, data} (data: the JSON answer or
  // {error, reason}); never rejects: a network failure is status 0.
  async function api(method, path, body) {
    const options = {method, credentials: "same-origin", headers: {}};
    if (method !== "GET" && method !== "HEAD") options.headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let answer;
    try {
      answer = await fetch(path, options);
    } catch (e) {
      return {ok: false, status: 0, data: {error: "unreachable", reason: "cannot reach the ECA (" + e + ")"}};
    }
    let data = null;
    try { data = await answer.json(); } catch (e) { data = {error: "bad_answer", reason: answer.statusText}; }
    if (answer.status === 401) {
      // The reason goes along: "signed out: you signed in elsewhere at ... from ..."
      const reason = data && typeof data.reason === "string" ? "&reason=" + encodeURIComponent(data.reason) : "";
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search) + reason);
    }
    return {ok: answer.ok, status: answer.status, data};
  }

  // Follow /api/events.  handlers: {eventType: fn(data, id)}; the special
  // "reload" handler is called when events were missed (fetch everything
  // again); "open"/"error" for the connection indicator.  Returns {close()}.
  //
  // The browser reconnects by itself after a network error, but gives up
  // for good when the server answers with an error status (the session
  // ended: 401; a proxy's 502).  Then we ask the API (a 401 sends the page
  // to the login) and open the stream again, resuming after the last event
  // seen (?last_event_id=), with a back-off of 1 s doubling to 30 s.
  function events(partition, pageHandlers) {
    // every page also keeps the agents alarm (below) up to date
    const handlers = {...pageHandlers, agent: (data, id) => {
      noteAgent(data);
      if (pageHandlers.agent) pageHandlers.agent(data, id);
    }, alarm: (data, id) => {
      ALARMS.note(data);
      if (pageHandlers.alarm) pageHandlers.alarm(data, id);
    }};
    const base = "/api/events" + (partition ? "?partition=" + encodeURIComponent(partition) : "");
    const indicator = document.getElementById("connection");
    const mark = (text, cls) => { if (indicator) { indicator.textContent = text; indicator.className = "connection " + cls; } };
    let source = null, lastId = null, closed = false, timer = null, delay = 1000;

    // The session ended because the user signed in elsewhere (one session
    // per user): say so on this page and stop following; the next request
    // goes to the login page with the same reason.
    handlers.session_ended = (data) => {
      closed = true;
      if (timer) clearTimeout(timer);
      if (source) source.close();
      mark("signed out", "bad");
      setLink("down");
      signedOut(typeof data.reason === "string" ? data.reason : "signed out: this session has ended");
    };

    function open() {
      timer = null;
      const url = lastId === null ? base : base + (partition ? "&" : "?") + "last_event_id=" + encodeURIComponent(lastId);
      source = new EventSource(url, {withCredentials: true});
      source.onopen = () => {
        delay = 1000;
        mark("live", "ok");
        setLink("live");
        if (handlers.open) handlers.open();
      };
      source.onerror = async () => {
        mark("reconnecting…", "bad");
        setLink("reconnecting");
        if (handlers.error) handlers.error();
        // Is the ECA there at all?  Say so rather than blame a partition.
        const alive = await fetch("/api/health", {credentials: "same-origin"}).then(() => true, () => false);
        if (!alive && source.readyState !== EventSource.OPEN) { mark("ECA not reachable", "bad"); setLink("down"); }
        if (closed || source.readyState !== EventSource.CLOSED || timer) return;
        await api("GET", "/api/partitions");  // 401: off to the login page
        if (!closed && !timer) timer = setTimeout(open, delay);
        delay = Math.min(delay * 2, 30000);
      };
      for (const [type, fn] of Object.entries(handlers)) {
        if (type === "open" || type === "error") continue;
        source.addEventListener(type, (event) => {
          if (event.lastEventId) lastId = event.lastEventId;
          let data = {};
          try { data = JSON.parse(event.data); } catch (e) { return; }
          fn(data, event.lastEventId);
        });
      }
    }

    open();
    return {close() { closed = true; if (timer) clearTimeout(timer); source.close(); }};
  }

  // The link to the ECA as the event stream sees it: "connecting", "live",
  // "reconnecting" or "down" (the ECA does not answer at all).
  let linkState = "connecting";
  const linkWatchers = [];
  function setLink(state) {
    if (state === linkState) return;
    linkState = state;
    for (const fn of linkWatchers) fn(state);
  }
  const link = () => linkState;
  const onLink = (fn) => { linkWatchers.push(fn); };

  // Alarms (GET /api/alarms, then "alarm" events): the top bar's button with
  // the count of alarms that need a person (active, not acknowledged, not
  // shelved), the tab title's "(n)", and the panel with acknowledge
  // (operator) and shelve (expert).  An ECA without the alarm routes (404)
  // simply has none.
  const ALARMS = (function () {
    const byId = new Map();
    const watchers = [];
    const now = () => Date.now() / 1000;
    const shelved = (a) => typeof a.shelved_until === "number" && a.shelved_until > now();
    const active = (a) => !a.cleared_at || !a.acknowledged_by;
    const needsPerson = (a) => active(a) && !a.acknowledged_by && !shelved(a);
    const list = () => [...byId.values()].filter(active)
      .sort((a, b) => (needsPerson(b) - needsPerson(a)) || (b.raised_at - a.raised_at));
    const forPartition = (pid) => list().filter((a) => a.partition === pid || a.partition === null);
    let baseTitle = null;

    function changed() {
      for (const fn of watchers) fn();
      render();
    }
    function note(alarm) {
      if (!alarm || typeof alarm.id !== "number") return;
      const {change, ...plain} = alarm;  // eslint-disable-line no-unused-vars
      if (!active(plain)) byId.delete(plain.id); else byId.set(plain.id, plain);
      changed();
    }
    async function load() {
      const r = await api("GET", "/api/alarms");
      if (!r.ok || !Array.isArray(r.data)) return;  // 404: an ECA without alarms
      byId.clear();
      for (const a of r.data) if (a && typeof a.id === "number") byId.set(a.id, a);
      changed();
    }
    function render() {
      const open = list();
      const waiting = open.filter(needsPerson);
      if (baseTitle === null) baseTitle = document.title;
      document.title = (waiting.length ? "(" + waiting.length + ") " : "") + baseTitle;
      const button = document.getElementById("alarm-button");
      if (button) {
        button.textContent = waiting.length ? waiting.length + (waiting.length === 1 ? " alarm" : " alarms")
          : open.length ? open.length + " acknowledged" : "No alarms";
        button.className = "alarm-button " + (waiting.length ? "alarm-on" : open.length ? "alarm-seen" : "alarm-none");
        button.setAttribute("aria-label", button.textContent + ": open the alarm list");
      }
      const panel = document.getElementById("alarm-list");
      if (panel) renderList(panel, open);
    }
    function renderList(box, open) {
      box.replaceChildren();
      if (!open.length) {
        const p = document.createElement("p");
        p.className = "note";
        p.textContent = "No active alarms.";
        box.appendChild(p);
        return;
      }
      for (const a of open) box.appendChild(item(a));
    }
    function item(a) {
      const li = document.createElement("li");
      li.className = "alarm alarm-" + String(a.severity).replace(/[^a-z]/g, "") + (needsPerson(a) ? "" : " alarm-quiet");
      li.dataset.alarm = a.id;
      const head = li.appendChild(document.createElement("div"));
      head.className = "alarm-head";
      const sev = head.appendChild(document.createElement("span"));
      sev.className = "severity";
      sev.textContent = a.severity;
      const text = head.appendChild(document.createElement("strong"));
      text.className = "alarm-text";
      text.textContent = (a.partition ? a.partition + ": " : "") + a.text;
      if (a.action) {
        const action = li.appendChild(document.createElement("div"));
        action.className = "alarm-action";
        action.textContent = "To clear: " + a.action;
      }
      const meta = li.appendChild(document.createElement("div"));
      meta.className = "alarm-meta";
      const bits = [a.source, "raised " + clock(a.raised_at)];
      if (a.cleared_at) bits.push("cleared " + clock(a.cleared_at));
      if (a.acknowledged_by) bits.push("acknowledged by " + a.acknowledged_by);
      if (shelved(a)) bits.push("shelved by " + (a.shelved_by || "?") + " until " + clock(a.shelved_until) +
                                (a.shelve_reason ? " (" + a.shelve_reason + ")" : ""));
      meta.textContent = bits.join(" · ");
      const buttons = li.appendChild(document.createElement("div"));
      buttons.className = "alarm-buttons";
      if (!a.acknowledged_by) {
        const ack = buttons.appendChild(document.createElement("button"));
        ack.type = "button";
        ack.className = "alarm-ack";
        ack.textContent = "Acknowledge";
        ack.dataset.alarm = a.id;
        if (!hasRole("operator")) disable(ack, "needs role operator");
      }
      if (!a.cleared_at && !shelved(a)) {
        const shelve = buttons.appendChild(document.createElement("button"));
        shelve.type = "button";
        shelve.className = "alarm-shelve";
        shelve.textContent = "Shelve";
        shelve.dataset.alarm = a.id;
        if (!hasRole("expert")) disable(shelve, "needs role expert");
      }
      return li;
    }
    // A disabled button with its reason beside it, as text the keyboard and screen readers reach.
    function disable(button, reason) {
      button.disabled = true;
      button.title = reason;
      const note = document.createElement("span");
      note.className = "note";
      note.id = "why-" + button.className + "-" + button.dataset.alarm;
      note.textContent = " (" + button.textContent.toLowerCase() + ": " + reason + ")";
      button.setAttribute("aria-describedby", note.id);
      button.after(note);
    }
    async function acknowledge(id) {
      const r = await api("POST", "/api/alarms/" + encodeURIComponent(id) + "/ack");
      if (r.ok) note(r.data);
      return r;
    }
    async function shelve(id, seconds, reason) {
      const r = await api("POST", "/api/alarms/" + encodeURIComponent(id) + "/shelve", {until: seconds, reason});
      if (r.ok) note(r.data);
      return r;
    }
    return {list, forPartition, needsPerson, note, load, render, acknowledge, shelve,
            onChange: (fn) => { watchers.push(fn); }};
  })();

  // Agents that need a person, on every page: flapping (the supervisor gave
  // up restarting them) or failed (their launcher could not start them).
  const troubled = new Map();
  function showAlarms() {
    const box = document.getElementById("alarms");
    if (!box) return;
    const names = [...troubled.keys()].sort();
    box.hidden = names.length === 0;
    box.textContent = names.length === 0 ? "" : "Alarm: " + names.length +
      (names.length === 1 ? " agent needs attention: " : " agents need attention: ") +
      names.slice(0, 3).join(", ") + (names.length > 3 ? ", …" : "");
    box.title = names.map((n) => n + ": " + troubled.get(n)).join("\n");
  }
  function noteAgent(agent) {
    const supervision = (agent && agent.supervision) || {};
    if (!agent || typeof agent.agent !== "string") return;
    if (supervision.state === "flapping" || supervision.state === "failed") {
      troubled.set(agent.agent, supervision.state + (supervision.reason ? ": " + supervision.reason : ""));
    } else {
      troubled.delete(agent.agent);
    }
    showAlarms();
  }

  // What a state means to an operator, so that colour is never the only
  // cue: resting (Idle, Unconfigured: nothing to do), working (Configuring…,
  // an operation on its way), ready (Active, *_Active), recording, fault
  // (Error, Connection Problem).  ecs.css gives each its colour (>= 3:1
  // against the page) and its own shape (hollow circle, half circle, filled
  // circle, ringed dot, cross), and the state's name is always beside it.
  const FAULT = new Set(["Error", "Connection Problem", "Disconnected", "ECA not reachable", "Unknown"]);
  function category(state) {
    if (!state) return "unknown";
    if (state === "Excluded") return "excluded";  // left out of the partition's runs: its faults do not count
    if (FAULT.has(state)) return "fault";
    if (state === "Recording" || state === "Running") return "recording";
    if (/^Configuring|ing$/.test(state)) return "working";
    if (state === "Active" || state === "Ready" || /_Active$/.test(state)) return "ready";
    return "resting";
  }
  const stateClass = (state) => "state-" + category(state);
  // Put a state (shape + text, so colour is never the only cue) into element el.
  function showState(el, state) {
    const text = state || "unknown";
    if (el.dataset.state === text) return;
    el.dataset.state = text;
    el.className = "state " + stateClass(state);
    el.textContent = text;
  }

  // Local time of a unix time (seconds), 24 h.
  const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString([], {hour12: false});

  // Show the answer of a command in #reply (or el), with the time it came:
  // success or the refusal.  A partition command's reply says "accepted";
  // the page then quotes the state it caused (see monitor.js), never the
  // state it was sent in.
  function showReply(what, result, el, command) {
    const box = el || document.getElementById("reply");
    if (!box) return;
    box.hidden = false;
    box.className = "reply " + (result.ok ? "reply-ok" : "reply-error");
    const reason = result.ok ? (command ? "accepted" : "done") : (result.data && (result.data.reason || result.data.error)) || "failed";
    box.textContent = clock(Date.now() / 1000) + " · " + what + ": " + (result.ok ? "" : result.status + " ") + reason;
  }

  // A confirmation in the page's own dialog (#confirm in base.html): resolves
  // to true when the person pressed the OK button.
  function confirmDialog(text, okLabel) {
    const dialog = document.getElementById("confirm");
    if (!dialog) return Promise.resolve(window.confirm(text));
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = okLabel || "OK";
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
      dialog.showModal();
      document.getElementById("confirm-cancel").focus();
    });
  }

  let signedOutText = null;  // once set, the banner keeps saying it
  function banner(text) {
    const box = document.getElementById("banner");
    if (!box || (signedOutText !== null && text !== signedOutText)) return;
    box.textContent = text;
    box.hidden = !text;
  }
  function signedOut(reason) {
    banner(reason);
    signedOutText = reason;
    document.body.classList.add("signed-out");
    document.body.dataset.signedOut = reason;
  }

  const user = () => document.body.dataset.user;
  const hasRole = (role) => {
    const order = ["viewer", "operator", "expert", "admin"];
    const mine = (document.body.dataset.roles || "").split(" ");
    return mine.some((r) => order.indexOf(r) >= order.indexOf(role));
  };

  // The alarm panel: opened from the top bar; acknowledge and shelve.
  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("alarm-button");
    const panel = document.getElementById("alarm-panel");
    if (!button || !panel) return;
    const reply = document.getElementById("alarm-reply");
    const say = (what, r) => {
      reply.hidden = r.ok;
      reply.textContent = r.ok ? "" : what + ": " + (r.status || "") + " " + ((r.data && (r.data.reason || r.data.error)) || "failed");
    };
    const toggle = (open) => {
      panel.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
      if (open) (panel.querySelector("button:not([disabled])") || panel).focus();
    };
    button.addEventListener("click", () => toggle(panel.hidden));
    document.getElementById("alarm-close").addEventListener("click", () => { toggle(false); button.focus(); });
    panel.addEventListener("keydown", (event) => { if (event.key === "Escape") { toggle(false); button.focus(); } });
    panel.addEventListener("click", async (event) => {
      const ack = event.target.closest("button.alarm-ack");
      const shelve = event.target.closest("button.alarm-shelve");
      if (ack) say("Acknowledge", await ALARMS.acknowledge(ack.dataset.alarm));
      if (shelve) {
        const reason = document.getElementById("shelve-reason").value.trim();
        if (!reason) { say("Shelve", {ok: false, status: "", data: {reason: "give a reason first"}}); return; }
        const seconds = parseInt(document.getElementById("shelve-for").value, 10);
        say("Shelve", await ALARMS.shelve(shelve.dataset.alarm, seconds, reason));
      }
    });
    ALARMS.render();
    ALARMS.load();
    setInterval(() => ALARMS.render(), 30000);  // shelving ends by the clock
  });

  document.addEventListener("DOMContentLoaded", async () => {
    const alarms = document.getElementById("alarms");
    if (alarms) {
      if (!hasRole("expert")) alarms.href = "/logs?level=error";  // the clients page is for experts
      const r = await api("GET", "/api/agents");
      if (r.ok && Array.isArray(r.data)) r.data.forEach(noteAgent);
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    const logout = document.getElementById("logout");
    if (logout) logout.addEventListener("click", async () => {
      if (!await confirmDialog("Log out? Your controls are released.", "Log out")) return;
      await api("POST", "/api/logout");
      location.assign("/login?logged_out=1");
    });
  });

  return {api, events, category, stateClass, showState, showReply, confirm: confirmDialog, clock, banner, user, hasRole, csrf,
          link, onLink, alarms: ALARMS};
})();
