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
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
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
    }};
    const base = "/api/events" + (partition ? "?partition=" + encodeURIComponent(partition) : "");
    const indicator = document.getElementById("connection");
    const mark = (text, cls) => { if (indicator) { indicator.textContent = text; indicator.className = "connection " + cls; } };
    let source = null, lastId = null, closed = false, timer = null, delay = 1000;

    function open() {
      timer = null;
      const url = lastId === null ? base : base + (partition ? "&" : "?") + "last_event_id=" + encodeURIComponent(lastId);
      source = new EventSource(url, {withCredentials: true});
      source.onopen = () => { delay = 1000; mark("live", "ok"); if (handlers.open) handlers.open(); };
      source.onerror = async () => {
        mark("reconnecting…", "bad");
        if (handlers.error) handlers.error();
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

  // The colour class of a state (red / yellow / green as the original).
  const RED = new Set(["Idle", "Unconfigured", "Error", "Connection Problem", "Disconnected"]);
  const GREEN = new Set(["Active", "QA_Active", "Recording"]);
  function stateClass(state) {
    if (!state) return "state-unknown";
    if (RED.has(state)) return "state-red";
    if (GREEN.has(state)) return "state-green";
    return "state-yellow";
  }
  // Put a state (dot + text, so colour is never the only cue) into element el.
  function showState(el, state) {
    const text = state || "unknown";
    if (el.dataset.state === text) return;
    el.dataset.state = text;
    el.className = "state " + stateClass(state);
    el.textContent = text;
  }

  // Show the answer of a command in #reply (or el): success or the refusal.
  // command: the answer of a partition command, which the PCA accepted with
  // the partition's state; the operation goes on, its progress is on the page.
  function showReply(what, result, el, command) {
    const box = el || document.getElementById("reply");
    if (!box) return;
    box.hidden = false;
    box.className = "reply " + (result.ok ? "reply-ok" : "reply-error");
    const state = command && result.data && typeof result.data.state === "string" ? result.data.state : null;
    const done = state ? "accepted, state " + state : "done";
    const reason = result.ok ? done : (result.data && (result.data.reason || result.data.error)) || "failed";
    box.textContent = what + ": " + (result.ok ? "" : result.status + " ") + reason;
  }

  function banner(text) {
    const box = document.getElementById("banner");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  const user = () => document.body.dataset.user;
  const hasRole = (role) => {
    const order = ["viewer", "operator", "expert", "admin"];
    const mine = (document.body.dataset.roles || "").split(" ");
    return mine.some((r) => order.indexOf(r) >= order.indexOf(role));
  };

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
      if (!confirm("Log out? Your controls are released.")) return;
      await api("POST", "/api/logout");
      location.assign("/login?logged_out=1");
    });
  });

  return {api, events, stateClass, showState, showReply, banner, user, hasRole, csrf};
})();
