// Live partition tables for the overview and the monitor: window.LIVE.
//
// Rules (issue 5):
// - The page fetches /api/partitions/{id} (and /api/detectors/unassigned,
//   /api/logs) once, then follows /api/events; a "reload" event (events
//   were missed) fetches everything again.
// - Events are queued and applied once per animation frame; a row is keyed
//   by (partition, system), created on first sight, updated in place (only
//   the cells that changed), removed when its record goes away.  The table
//   is never rebuilt per event.
// - Every event carries the stream's id: a row remembers the id of what it
//   shows and ignores anything older (a replay, or an event that arrived
//   before the snapshot it was already part of).
// - A disconnected PCA or system shows "Connection Problem", never its stale
//   state.
// - Everything is built with createElement/textContent: data is never HTML.
//
// Scale (issue 13): each partition has its headline (headline.js: the
// state tile, what is wrong and the next action, the sequence's stages),
// counts by state that filter when pressed, a search box, and a heat map
// (one square per system, its state as title and aria-label, its category
// as colour and shape) beside the tables.  Table rows are kept problems
// first (Error, Connection Problem, working, the rest), global systems in
// the sequence's configure order; the heat map keeps a fixed order so a
// square never moves.  The overview's cards (options.compact) fold the
// tables away: three partitions of 300 detectors fit a 1366x768 screen.
"use strict";
window.LIVE = (function () {
  const CP = "Connection Problem";
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  };
  const setText = (node, text) => { if (node.textContent !== text) node.textContent = text; };

  // One system row: (partition, system) -> <tr>, updated in place.
  class Row {
    constructor(id, withAction) {
      this.id = id;
      this.seen = -1;
      this.record = null;
      this.tr = el("tr");
      this.tr.dataset.system = id;
      this.tr.setAttribute("role", "row");
      rowOf.set(this.tr, this);
      this.cells = {};
      for (const name of ["id", "state", "raw", "tag", "comment", "connected"].concat(withAction ? ["action"] : [])) {
        const td = this.cells[name] = this.tr.appendChild(el("td", "col-" + name));
        td.setAttribute("role", "cell");
      }
      this.cells.id.textContent = id;
      this.stateEl = this.cells.state.appendChild(el("span", "state"));
      this.rank = 3;
      this.group = 0;
      this.shown = null;  // the state shown (Connection Problem when not live)
      // The system's square in the heat map (beside the table).
      this.cell = el("span", "cell cell-unknown");
      this.cell.dataset.system = id;
      this.cell.setAttribute("role", "img");
    }

    render(pcaConnected, decorate) {
      const r = this.record || {};
      const live = pcaConnected && r.connected !== false;
      // An excluded system shows Excluded even when it does not answer (its faults do not count).
      const shown = pcaConnected && r.excluded ? "Excluded" : live ? (r.state || "unknown") : CP;
      this.live = live;
      if (shown !== this.shown) {
        this.shown = shown;
        this.cell.className = "cell cell-" + ECS.category(shown);
        this.cell.title = this.id + ": " + shown;
        this.cell.setAttribute("aria-label", this.id + ": " + shown);
        // Problems first: Error, Connection Problem, then working, then the rest.
        this.rank = shown === "Error" ? 0 : !live ? 1 : ECS.category(shown) === "working" ? 2 : 3;
      }
      ECS.showState(this.stateEl, shown);
      setText(this.cells.raw, live ? (r.raw_state || "") : "—");
      // The configuration and, when the ECA sent it, its version ("sts-default v3").
      setText(this.cells.tag, r.tag ? r.tag + (r.config_version ? " v" + r.config_version : "") : "");
      setText(this.cells.comment, r.comment || "");
      this.cells.comment.title = r.comment || "";
      setText(this.cells.connected, live ? "yes" : "no");
      this.tr.classList.toggle("disconnected", !live);
      if (this.cells.action) {
        const error = live && r.state === "Error";
        let button = this.cells.action.querySelector("button.reset");
        if (error && !button) {
          button = el("button", "reset", "reset");
          button.type = "button";
          button.dataset.system = this.id;
          this.cells.action.prepend(button);
        } else if (!error && button) {
          this.cells.action.removeChild(button);
          button = null;
        }
        if (button && decorate) decorate(button);
        // Exclude (or include again) the system.  One the sequence never
        // excludes (never_excluded, the recording systems) has no button
        // but a note saying so, with the ECA's reason (the record's
        // exclusion_refused, decided as the PCA decides it) as its title.
        let exclusion = this.cells.action.querySelector(".exclusion");
        const action = r.excluded ? "include" : "exclude";
        const never = action === "exclude" && r.excludable === false;
        if (exclusion && (exclusion.tagName === "BUTTON") === never) {
          exclusion.remove();
          exclusion = null;
        }
        if (!exclusion) {
          exclusion = never ? el("span", "exclusion note", "never excluded") : el("button", "exclusion", action);
          if (!never) exclusion.type = "button";
          exclusion.dataset.system = this.id;
          this.cells.action.appendChild(exclusion);
        }
        if (never) {
          exclusion.title = r.exclusion_refused || this.id + " may never be excluded";
        } else {
          exclusion.dataset.action = action;
          setText(exclusion, action);
          if (decorate) decorate(exclusion);
        }
      }
    }
  }

  // A systems table.  ecs.css lays it out as grid rows (a table re-lays out
  // all its rows for one changed cell), so the elements are given their
  // table roles explicitly.
  function systemsTable(caption, withAction) {
    const table = el("table", withAction ? "systems with-action" : "systems");
    table.setAttribute("role", "table");
    table.setAttribute("aria-label", caption);
    table.appendChild(el("caption", null, caption));
    const thead = table.appendChild(el("thead"));
    thead.setAttribute("role", "rowgroup");
    const head = thead.appendChild(el("tr"));
    head.setAttribute("role", "row");
    const columns = ["System", "State", "Raw state", "Tag", "Comment", "Connected"];
    if (withAction) columns.push("Action");
    for (const name of columns) head.appendChild(el("th", null, name)).setAttribute("role", "columnheader");
    table.appendChild(el("tbody")).setAttribute("role", "rowgroup");
    return table;
  }

  // Ids in natural order (sim2 before sim10).
  const collator = new Intl.Collator(undefined, {numeric: true});
  const byId = (a, b) => collator.compare(a.id, b.id);

  // Table order: problems first (Row.rank), then the group (a global
  // system's stage in the configure order), then the id.
  const before = (a, b) => a.rank - b.rank || a.group - b.group || collator.compare(a.id, b.id);
  const rowOf = new WeakMap();

  // Put row at its place in tbody (kept in that order): a binary search over
  // the rows, so that a configure of 1,000 detectors (each moving to
  // "working" and back) costs O(log n) comparisons per row.  The row must not
  // be in tbody (see PartitionView.render: rows that move are taken out first).
  function insertSorted(tbody, row, order) {
    const cmp = order || before;
    const rows = tbody.children;
    let lo = 0;
    let hi = rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(rowOf.get(rows[mid]), row) > 0) hi = mid;
      else lo = mid + 1;
    }
    tbody.insertBefore(row.tr, rows[lo] || null);
  }

  // One partition: summary, detectors and global systems.
  class PartitionView {
    constructor(pid, parent, options) {
      this.pid = pid;
      this.options = options;
      this.info = {state: null, tag: null, controller: null, connected: false, locked: false, operation: null};
      this.seen = {record: -1, connected: -1, control: -1, allowed: -1, progress: -1};
      this.allowed = [];
      this.progress = null;
      this.rows = new Map();
      this.dirtyRows = new Set();
      this.dirtyAll = true;
      this.root = el("section", "partition" + (options.compact ? " compact" : ""));
      this.root.dataset.partition = pid;
      this.root.setAttribute("aria-label", "Partition " + pid);
      this.seq = options.seq || HEADLINE.sequence(null);
      this.run = null;
      this.runAsked = false;
      this.filter = {state: null, text: ""};
      this.headline = new HEADLINE.Headline({pid, compact: !!options.compact, onAction: options.onAction,
                                             decorate: options.decorateAction});
      (options.headlineInto || this.root).appendChild(this.headline.root);
      // Counts by state (a button each: filters the table and the map), the
      // search box; on the overview's cards the summary shares their row.
      const tools = (options.compact ? this.headline.extra : this.root).appendChild(el("div", "tools"));
      const dl = el("dl", "summary");
      const item = (label, cls, pair) => {
        dl.appendChild(el("dt", pair, label));
        return dl.appendChild(el("dd", cls + (pair ? " " + pair : "")));
      };
      this.stateEl = item("State", "partition-state", "state-pair").appendChild(el("span", "state"));
      this.tagEl = item("Tag", "partition-tag");
      this.controllerEl = item("Controller", "partition-controller");
      this.connectedEl = item("PCA", "partition-connected");
      this.operationEl = item("Operation", "partition-operation", "state-pair");
      this.counts = tools.appendChild(el("div", "counts"));
      this.counts.setAttribute("role", "group");
      this.counts.setAttribute("aria-label", "Systems by state (press to filter)");
      this.counts.addEventListener("click", (event) => {
        const b = event.target.closest("button[data-state]");
        if (!b) return;
        this.filter.state = this.filter.state === b.dataset.state ? null : b.dataset.state;
        this.applyFilter();
      });
      const label = tools.appendChild(el("label", "search"));
      label.appendChild(el("span", "visually-hidden", "Search systems of " + pid));
      this.search = label.appendChild(el("input"));
      this.search.type = "search";
      this.search.placeholder = "Search systems…";
      this.search.className = "system-search";
      this.search.addEventListener("input", () => { this.filter.text = this.search.value.trim().toLowerCase(); this.applyFilter(); });
      this.shownCount = tools.appendChild(el("span", "shown-count note"));
      if (options.compact) tools.appendChild(dl);
      else this.root.insertBefore(dl, tools);
      // The heat map (one square per system) beside the tables.
      const board = this.root.appendChild(el("div", "board"));
      this.heat = el("div", "heatmap");
      this.heat.setAttribute("role", "group");
      this.heat.setAttribute("aria-label", "All systems of " + pid + " by state");
      this.heatGlobals = this.heat.appendChild(el("div", "heat-group heat-globals"));
      this.heatDetectors = this.heat.appendChild(el("div", "heat-group heat-detectors"));
      this.heat.addEventListener("click", (event) => {
        const c = event.target.closest(".cell");
        if (!c) return;
        this.search.value = c.dataset.system;
        this.filter.text = c.dataset.system.toLowerCase();
        this.applyFilter();
      });
      let tables = board;
      if (options.compact) {
        board.appendChild(this.heat);
        const details = board.appendChild(el("details", "tables"));
        details.open = !!options.openTables;
        this.tablesSummary = details.appendChild(el("summary", null, "Systems table"));
        tables = details;
      } else {
        tables = board.appendChild(el("div", "tables"));
        board.appendChild(this.heat);
      }
      this.detectors = tables.appendChild(systemsTable("Detectors", options.withAction));
      this.globals = tables.appendChild(systemsTable("Global systems", options.withAction));
      this.countsDirty = true;
      parent.appendChild(this.root);
    }

    // Show only the rows (and light only the squares) that match the filter.
    applyFilter() {
      for (const b of this.counts.children) b.setAttribute("aria-pressed", String(b.dataset.state === this.filter.state));
      let shown = 0;
      for (const row of this.rows.values()) if (this.filterRow(row)) shown += 1;
      const filtered = this.filter.state || this.filter.text;
      setText(this.shownCount, filtered ? shown + " of " + this.rows.size + " shown" : "");
    }

    filterRow(row) {
      const f = this.filter;
      const match = (!f.state || row.shown === f.state) && (!f.text || row.id.toLowerCase().includes(f.text));
      if (row.tr.hidden === match) row.tr.hidden = !match;
      row.cell.classList.toggle("dim", !match);
      return match;
    }

    // The count buttons, in the order problems first.
    renderCounts() {
      const counts = new Map();
      for (const row of this.rows.values()) counts.set(row.shown, (counts.get(row.shown) || 0) + 1);
      const rank = (state) => state === "Error" ? 0 : state === CP ? 1 : ECS.category(state) === "working" ? 2 : 3;
      const states = [...counts.keys()].filter((x) => x !== null).sort((a, b) => rank(a) - rank(b) || collator.compare(a, b));
      const existing = new Map([...this.counts.children].map((b) => [b.dataset.state, b]));
      let i = 0;
      for (const state of states) {
        let b = existing.get(state);
        if (!b) {
          b = el("button", "count");
          b.type = "button";
          b.dataset.state = state;
          b.appendChild(el("span", "state"));
          b.appendChild(el("span", "count-n"));
        }
        existing.delete(state);
        ECS.showState(b.firstChild, state);
        setText(b.lastChild, String(counts.get(state)));
        b.setAttribute("aria-pressed", String(state === this.filter.state));
        b.title = counts.get(state) + " in " + state + " (press to show only these)";
        if (this.counts.children[i] !== b) this.counts.insertBefore(b, this.counts.children[i] || null);
        i += 1;
      }
      for (const b of existing.values()) b.remove();
      if (this.filter.state && !counts.has(this.filter.state)) this.filter.state = null;
      if (this.tablesSummary) setText(this.tablesSummary, "Systems table (" + this.rows.size + ")");
    }

    // The whole picture from GET /api/partitions/{id}; older than any
    // event received after `since` (the last event id before the fetch).
    load(details, since) {
      // A part already updated by a newer event keeps that event's value.
      const info = this.info;
      const fresh = (key) => {
        if (this.seen[key] > since) return false;
        this.seen[key] = since;
        return true;
      };
      if (fresh("connected")) info.connected = !!details.connected;
      if (fresh("record")) {
        info.state = details.connected ? details.state : null;
        info.tag = details.tag;
        info.locked = !!details.locked;
        info.operation = details.operation;
      }
      if (fresh("control")) info.controller = details.controller;
      if (fresh("allowed")) this.allowed = details.allowed || [];
      if (fresh("progress")) this.progress = details.progress;
      const present = new Set();
      for (const system of (details.systems || []).slice().sort(byId)) {
        present.add(system.id);
        this.setSystem(system.id, system, since, true);
      }
      for (const id of [...this.rows.keys()]) if (!present.has(id)) this.setSystem(id, null, since, true);
      this.dirtyAll = true;
    }

    setSystem(id, value, eventId, force) {
      let row = this.rows.get(id);
      // Older than what is shown (a snapshot is as new as its `since`).
      if (row && (force ? eventId < row.seen : eventId <= row.seen)) return;
      if (value === null) {
        if (row) {
          row.tr.remove();
          row.cell.remove();
          this.rows.delete(id);
          this.dirtyRows.delete(row);
          this.countsDirty = true;
        }
        return;
      }
      if (!row) {
        row = new Row(id, this.options.withAction);
        row.group = this.groupOf(id, value.kind);
        this.rows.set(id, row);
        row.tbody = (value.kind === "detector" ? this.detectors : this.globals).tBodies[0];
        insertSorted(row.tbody, row);
        this.placeCell(row, value.kind === "detector" ? this.heatDetectors : this.heatGlobals);
      }
      row.seen = eventId;
      row.record = value;
      this.dirtyRows.add(row);
    }

    // A global system's stage in the configure order (detectors: 0).
    groupOf(id, kind) {
      if (kind === "detector") return 0;
      const i = this.seq.stages.findIndex((st) => st.systems && st.systems.includes(id));
      return i < 0 ? this.seq.stages.length : i;
    }

    // The heat map keeps the table's first order (group, id), so a square never moves.
    placeCell(row, box) {
      let next = null;
      const last = box.lastElementChild;
      const key = (id) => this.rows.get(id);
      if (last && before({...key(last.dataset.system), rank: 0}, {...row, rank: 0}) > 0) {
        for (const c of box.children) {
          if (before({...key(c.dataset.system), rank: 0}, {id: row.id, group: row.group, rank: 0}) > 0) { next = c; break; }
        }
      }
      box.insertBefore(row.cell, next);
    }

    // A `state` event of this partition.
    state(data, id) {
      const key = data.key;
      if (key === "partition") {
        if (id <= this.seen.record) return;
        this.seen.record = id;
        const v = data.value || {};
        this.info.state = v.state || null;
        this.info.tag = v.tag || null;
        this.info.locked = !!v.locked;
        this.info.operation = v.operation || null;
        if (!v.operation) this.progress = null;
      } else if (key === "connected") {
        if (id <= this.seen.connected) return;
        this.seen.connected = id;
        this.info.connected = !!(data.value && data.value.connected);
        for (const row of this.rows.values()) this.dirtyRows.add(row);
      } else if (key === "reset") {
        return "refetch";
      } else if (typeof key === "string" && key.startsWith("system/")) {
        this.setSystem(key.slice(7), data.value, id, false);
        return;
      }
      this.dirtyAll = true;
    }

    control(data, id) {
      if (id <= this.seen.control) return;
      this.seen.control = id;
      this.info.controller = data.holder || null;
      this.dirtyAll = true;
    }

    setAllowed(data, id) {
      if (id <= this.seen.allowed) return;
      this.seen.allowed = id;
      this.allowed = data.allowed || [];
      this.dirtyAll = true;
    }

    setProgress(data, id) {
      if (id <= this.seen.progress) return;
      this.seen.progress = id;
      this.progress = data;
      this.dirtyAll = true;
    }

    shownState() {
      return this.info.connected ? (this.info.state || "unknown") : CP;
    }

    render() {
      const decorate = this.options.decorateReset;
      if (this.dirtyAll) {
        const info = this.info;
        ECS.showState(this.stateEl, this.shownState());
        setText(this.tagEl, info.tag || "No configuration tag");
        setText(this.controllerEl, info.controller || "nobody");
        setText(this.connectedEl, info.connected ? "connected" : "not connected");
        setText(this.operationEl, info.locked ? "locked by a move" : (info.operation || "none"));
        if (decorate) for (const b of this.root.querySelectorAll("button.reset")) decorate(b);
      }
      const rowsChanged = this.dirtyRows.size > 0;
      const moved = [];
      for (const row of this.dirtyRows) {
        const rank = row.rank;
        row.render(this.info.connected, decorate);
        if (row.rank !== rank) moved.push(row);
        this.filterRow(row);
      }
      this.dirtyRows.clear();
      // Take every row whose rank changed out, then put each at its place.
      for (const row of moved) row.tr.remove();
      for (const row of moved) insertSorted(row.tbody, row);
      if (rowsChanged || this.countsDirty) {
        this.renderCounts();
        this.countsDirty = false;
        if (this.filter.state || this.filter.text) this.applyFilter();
      }
      const changed = this.dirtyAll;
      if (changed || rowsChanged || this.headlineDirty) this.renderHeadline();
      this.dirtyAll = false;
      this.headlineDirty = false;
      return changed;
    }

    // The headline from what the view knows now (see headline.js).
    renderHeadline() {
      const systems = [];
      for (const row of this.rows.values()) {
        const r = row.record || {};
        systems.push({id: row.id, kind: r.kind, state: r.state, live: !!row.live});
      }
      const state = this.info.state;
      const recording = !!this.seq.recording && state === this.seq.recording && this.info.connected;
      if (recording && !this.runAsked) this.fetchRun();
      if (!recording) { this.run = null; this.runAsked = false; }
      this.headline.run = this.run;
      this.headline.recording = recording;
      const context = {pid: this.pid, link: ECS.link(), info: this.info, systems,
                       alarms: ECS.alarms.forPartition(this.pid), seq: this.seq, progress: this.progress, run: this.run};
      this.headline.render(HEADLINE.diagnose(context), HEADLINE.stageProgress(this.seq, state, systems));
    }

    // The open run of the partition (number, start time) for the recording tile.
    async fetchRun() {
      this.runAsked = true;
      const r = await ECS.api("GET", "/api/runs?limit=1&partition=" + encodeURIComponent(this.pid));
      if (!r.ok || !Array.isArray(r.data) || !r.data.length || r.data[0].ended) {
        setTimeout(() => { this.runAsked = false; this.headlineDirty = true; if (this.options.schedule) this.options.schedule(); }, 1000);
        return;
      }
      this.run = r.data[0];
      this.headlineDirty = true;
      if (this.options.schedule) this.options.schedule();
    }
  }

  // The unassigned detectors table (overview).
  class UnassignedView {
    constructor(parent) {
      this.rows = new Map();
      this.dirty = new Set();
      this.table = parent.appendChild(systemsTable("Unassigned detectors", false));
      this.table.id = "unassigned";
      this.empty = parent.appendChild(el("p", "empty", "No unassigned detectors."));
    }
    load(list, since) {
      const present = new Set();
      for (const r of list.slice().sort(byId)) { present.add(r.id); this.set(r.id, r, since, true); }
      for (const id of [...this.rows.keys()]) if (!present.has(id)) this.set(id, null, since, true);
    }
    set(id, value, eventId, force) {
      let row = this.rows.get(id);
      if (row && (force ? eventId < row.seen : eventId <= row.seen)) return;
      if (value === null) {
        if (row) { row.tr.remove(); this.rows.delete(id); this.dirty.delete(row); }
        return;
      }
      if (!row) {
        row = new Row(id, false);
        this.rows.set(id, row);
        insertSorted(this.table.tBodies[0], row, (a, b) => collator.compare(a.id, b.id));
      }
      row.seen = eventId;
      row.record = value;
      this.dirty.add(row);
    }
    render() {
      for (const row of this.dirty) row.render(true, null);
      this.dirty.clear();
      this.empty.hidden = this.rows.size > 0;
      this.table.hidden = this.rows.size === 0;
    }
  }

  // The log tail: newest at the bottom, at most `max` lines.  The box is a
  // flex column-reverse (ecs.css): its first child is shown at the bottom and
  // it stays scrolled to the end by itself, so the page never reads the
  // layout (a forced layout of a 1,000-row table costs hundreds of ms).
  class LogView {
    constructor(box, withPartition, max) {
      this.box = box;
      this.withPartition = withPartition;
      this.max = max || 500;
      this.pending = [];
    }
    line(entry) {
      const when = new Date((entry.time || 0) * 1000);
      const div = el("div", "log-line level-" + String(entry.level || "info").replace(/[^a-z]/g, ""));
      const prefix = when.toLocaleTimeString([], {hour12: false}) + " " + String(entry.level || "").toUpperCase() + " ";
      const where = this.withPartition && entry.partition ? entry.partition + ": " : "";
      div.textContent = prefix + where + (entry.source ? entry.source + ": " : "") + entry.message;
      return div;
    }
    load(entries) {  // newest first, as the API answers
      this.box.replaceChildren();
      this.pending = entries.slice().reverse();
    }
    add(entry) { this.pending.push(entry); }
    render() {
      if (!this.pending.length) return;
      const fragment = document.createDocumentFragment();
      const lines = this.pending.slice(-this.max);
      for (let i = lines.length - 1; i >= 0; i--) fragment.appendChild(this.line(lines[i]));
      this.pending = [];
      this.box.prepend(fragment);
      while (this.box.childElementCount > this.max) this.box.lastElementChild.remove();
    }
  }

  // The page's live picture.  options: {partition (one, or null for all),
  // container, unassigned (element or null), log (element or null),
  // withAction, compact (the overview's cards), headlineInto (element), decorateReset(button),
  // decorateAction(button, command), onAction(action, button), onChange(view),
  // onSequence(data) (the `sequence` events), onReload() (events were missed)}.
  class Live {
    constructor(options) {
      this.options = options;
      this.views = new Map();
      this.queue = [];
      this.lastId = 0;
      this.loading = null;
      this.frame = 0;
      this.unassigned = options.unassigned ? new UnassignedView(options.unassigned) : null;
      this.log = options.log ? new LogView(options.log, !options.partition) : null;
      this.refetch = new Set();
      this.systems = null;  // GET /api/systems, for the sequence's stages
      this.options.schedule = () => this.schedule();
      const touch = () => { for (const v of this.views.values()) v.headlineDirty = true; this.schedule(); };
      ECS.alarms.onChange(touch);
      ECS.onLink(touch);
      setInterval(() => { for (const v of this.views.values()) v.headline.tick(); }, 1000);
    }

    start() {
      const handle = (type) => (data, id) => this.push(type, data, id);
      this.source = ECS.events(this.options.partition, {
        state: handle("state"),
        progress: handle("progress"),
        log: handle("log"),
        control: handle("control"),
        allowed: handle("allowed"),
        // Run sequences are the page's own panel (sequences.js), not a table's.
        sequence: (data) => { if (this.options.onSequence) this.options.onSequence(data); },
        reload: () => { this.reload(); if (this.options.onReload) this.options.onReload(); },
      });
      return this.reload();
    }

    push(type, data, id) {
      const number = parseInt(id, 10);
      if (Number.isFinite(number) && number > this.lastId) this.lastId = number;
      this.queue.push([type, data, Number.isFinite(number) ? number : this.lastId]);
      this.schedule();
    }

    schedule() {
      if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.flush(); });
    }

    // Fetch everything again (first load, or after a `reload` event).
    reload() {
      if (this.loading) { this.reloadAgain = true; return this.loading; }
      this.loading = this._load().finally(() => {
        this.loading = null;
        this.schedule();
        if (this.reloadAgain) { this.reloadAgain = false; this.reload(); }
      });
      return this.loading;
    }

    async _load() {
      const since = this.lastId;
      const jobs = [];
      let ids;
      if (this.options.partition) {
        ids = [this.options.partition];
      } else {
        const list = await ECS.api("GET", "/api/partitions");
        if (!list.ok) { ECS.showReply("Loading partitions", list); return; }
        ids = list.data.map((p) => p.id);
      }
      for (const [pid, view] of this.views) {
        if (!ids.includes(pid)) { view.root.remove(); this.views.delete(pid); }
      }
      if (!this.systems) {
        const r = await ECS.api("GET", "/api/systems");
        if (r.ok) this.systems = r.data;
      }
      for (const pid of ids) jobs.push(this._loadPartition(pid, since));
      if (this.unassigned) {
        jobs.push(ECS.api("GET", "/api/detectors/unassigned").then((r) => { if (r.ok) this.unassigned.load(r.data, since); }));
      }
      if (this.log) {
        const q = this.options.partition ? "?limit=100&partition=" + encodeURIComponent(this.options.partition) : "?limit=100";
        jobs.push(ECS.api("GET", "/api/logs" + q).then((r) => { if (r.ok) this.log.load(r.data); }));
      }
      await Promise.all(jobs);
      const loading = this.options.container.querySelector(".loading");
      if (loading) loading.remove();
      const empty = this.options.container.querySelector(".no-partitions");
      if (empty) empty.hidden = this.views.size > 0;
    }

    async _loadPartition(pid, since) {
      const answer = await ECS.api("GET", "/api/partitions/" + encodeURIComponent(pid));
      if (!answer.ok) { ECS.showReply("Loading partition " + pid, answer); return; }
      let view = this.views.get(pid);
      if (!view) {
        const seq = HEADLINE.sequence(this.systems, answer.data.stages);
        const openTables = (answer.data.systems || []).length <= 20;
        view = new PartitionView(pid, this.options.container, {...this.options, seq, openTables});
        this.views.set(pid, view);
      }
      view.load(answer.data, since);
    }

    flush() {
      if (this.loading) return;  // applied once the snapshot is in (ids keep order)
      const queue = this.queue;
      this.queue = [];
      let refetch = false;
      for (const [type, data, id] of queue) {
        const pid = data.partition !== undefined ? data.partition : data.scope;
        const view = this.views.get(pid);
        if (type === "log") {
          if (this.log) this.log.add(data);
        } else if (type === "state") {
          if (data.partition === null && typeof data.key === "string" && data.key.startsWith("unassigned/")) {
            if (this.unassigned) this.unassigned.set(data.key.slice(11), data.value, id, false);
          } else if (view) {
            if (view.state(data, id) === "refetch") this.refetch.add(pid);
          } else if (!this.options.partition && data.partition) {
            refetch = true;  // a partition we do not know yet
          }
        } else if (type === "control") {
          if (view) view.control(data, id);
          if (data.reason === "partition deleted" && !this.options.partition) refetch = true;
          if (this.options.onControl) this.options.onControl(data);
        } else if (type === "allowed") {
          if (view) view.setAllowed(data, id);
        } else if (type === "progress") {
          if (view) view.setProgress(data, id);
        }
      }
      for (const view of this.views.values()) {
        if (view.render() && this.options.onChange) this.options.onChange(view);
      }
      if (this.unassigned) this.unassigned.render();
      if (this.log) this.log.render();
      if (refetch) this.reload();
      else if (this.refetch.size) {
        const since = this.lastId;
        const pids = [...this.refetch];
        this.refetch.clear();
        for (const pid of pids) this._loadPartition(pid, since).then(() => this.schedule());
      }
    }
  }

  return {Live, PartitionView, CP, collator};
})();
