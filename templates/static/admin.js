// Helpers of the management pages (configs, tags, manage, clients, runs,
// logs, fsm, users).  DOM is built with createElement/textContent only:
// data is never parsed as HTML.
"use strict";
window.ADMIN = (function () {
  // el("td", {class: "x", text: "y", title: "z"}, child, "text", ...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "on") for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
      else if (key === "value") node.value = value;
      else if (key === "checked" || key === "disabled" || key === "selected" || key === "hidden") node[key] = Boolean(value);
      else node.setAttribute(key, value === true ? key : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  // Fill a <select> with [value, label] pairs (or strings); keep the choice if still there.
  function fillSelect(select, items, placeholder) {
    const keep = select.value;
    clear(select);
    if (placeholder !== undefined) select.append(el("option", {value: "", text: placeholder}));
    for (const item of items) {
      const [value, label] = Array.isArray(item) ? item : [item, item];
      select.append(el("option", {value, text: label}));
    }
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
    return select;
  }

  // A datetime-local input's value as seconds since the epoch (a query's since/until), or null.
  function inputSeconds(input) {
    return input.value ? String(new Date(input.value).getTime() / 1000) : null;
  }

  function time(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const d = new Date(seconds * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  // The reason of a refused API call (for lists of per-item errors).
  function reason(result) {
    if (result.ok) return "ok";
    const data = result.data || {};
    return result.status + " " + (data.reason || data.error || "failed");
  }

  // Show the reply in #reply and give it back (so callers can chain).
  function reply(what, result) {
    ECS.showReply(what, result);
    return result;
  }

  // A per-item error list: items [{item, reason}] into the <ul> list; a
  // "force" button calls retry(itemsThatFailed) when given.
  function showErrors(box, title, failures, retry, retryLabel) {
    clear(box);
    box.hidden = failures.length === 0;
    if (!failures.length) return;
    box.append(el("p", {class: "error", text: title}));
    const list = el("ul", {class: "error-list"});
    for (const f of failures) list.append(el("li", {}, el("strong", {text: f.item}), ": " + f.reason));
    box.append(list);
    if (retry) {
      box.append(el("button", {type: "button", class: "force", text: retryLabel || "Try again with force",
                               on: {click: () => retry(failures.map((f) => f.item))}}));
      box.append(" ", el("button", {type: "button", text: "Cancel", on: {click: () => showErrors(box, "", [])}}));
    }
  }

  // Partition ids, detectors and the systems (GET /api/systems).
  async function systems() {
    const r = await ECS.api("GET", "/api/systems");
    if (!r.ok) { ECS.showReply("Loading the systems", r); return null; }
    return r.data;
  }

  async function partitions() {
    const r = await ECS.api("GET", "/api/partitions");
    if (!r.ok) { ECS.showReply("Loading the partitions", r); return []; }
    return r.data;
  }

  return {el, clear, fillSelect, inputSeconds, time, reason, reply, showErrors, systems, partitions};
})();
