// The login form: POST /api/login (JSON), then go where we came from.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const note = document.getElementById("logged-out");
  if (params.has("logged_out")) note.hidden = false;
  // Why the last session ended, when a newer login elsewhere ended it.
  const reason = params.get("reason") || "";
  if (reason.startsWith("signed out:")) { note.textContent = reason.charAt(0).toUpperCase() + reason.slice(1); note.hidden = false; }
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const body = {
      username: document.getElementById("username").value,
      password: document.getElementById("password").value,
    };
    let answer;
    try {
      answer = await fetch("/api/login", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (e) {
      error.textContent = "Cannot reach the ECA: " + e;
      error.hidden = false;
      return;
    }
    if (answer.ok) {
      let next = params.get("next") || "/";
      if (!next.startsWith("/") || next.startsWith("//")) next = "/";  // no open redirect
      location.assign(next);
      return;
    }
    let reason = answer.status + " " + answer.statusText;
    try { reason = (await answer.json()).reason || reason; } catch (e) { /* keep the status */ }
    error.textContent = answer.status === 429 ? "Too many failed logins: " + reason : "Login refused: " + reason;
    error.hidden = false;
  });
})();
