// Users (admin): list with roles, add, change roles or password, delete.
"use strict";
(function () {
  const {el, clear} = ADMIN;
  const $ = (id) => document.getElementById(id);
  const ROLES = ["viewer", "operator", "expert", "admin"];
  const enc = encodeURIComponent;

  function roleBoxes(container, chosen, prefix) {
    for (const role of ROLES) {
      container.append(el("label", {class: "role"}, el("input", {type: "checkbox", value: role, checked: chosen.includes(role),
                                                                 "aria-label": prefix + role}), " " + role));
    }
  }
  const checkedRoles = (container) => [...container.querySelectorAll("input[type=checkbox]:checked")].map((i) => i.value);

  function row(user) {
    const roles = el("td", {class: "roles"});
    roleBoxes(roles, user.roles || [], user.name + " ");
    const password = el("input", {type: "password", minlength: "8", autocomplete: "new-password", "aria-label": "new password for " + user.name});
    const me = user.name === ECS.user();
    return el("tr", {dataset: {user: user.name}},
      el("td", {}, el("strong", {text: user.name}), me ? el("span", {class: "note", text: " (you)"}) : null),
      roles,
      el("td", {text: ADMIN.time(user.created)}),
      el("td", {}, password),
      el("td", {class: "actions"},
        el("button", {type: "button", text: "Save changes", on: {click: () => update(user, roles, password)}}),
        el("button", {type: "button", class: "danger", text: "Delete…", disabled: me,
                      title: me ? "you cannot delete yourself" : null, on: {click: () => remove(user.name)}})));
  }

  async function load() {
    const r = await ECS.api("GET", "/api/users");
    if (!r.ok) { ECS.showReply("Loading the users", r); return; }
    const body = clear($("users").tBodies[0]);
    for (const user of r.data) body.append(row(user));
  }

  async function update(user, rolesCell, passwordInput) {
    const body = {};
    const roles = checkedRoles(rolesCell);
    if (roles.join(" ") !== (user.roles || []).join(" ")) body.roles = roles;
    if (passwordInput.value) body.password = passwordInput.value;
    if (!Object.keys(body).length) { ECS.showReply("Change " + user.name, {ok: false, status: "", data: {reason: "nothing changed"}}); return; }
    const r = await ECS.api("PUT", "/api/users/" + enc(user.name), body);
    ECS.showReply("Change " + user.name + (body.password ? " (password: their sessions end)" : ""), r);
    if (r.ok) await load();
  }

  async function remove(name) {
    if (!await ECS.confirm("Delete user " + name + "? Their sessions end.", "Delete")) return;
    const r = await ECS.api("DELETE", "/api/users/" + enc(name));
    ECS.showReply("Delete " + name, r);
    if (r.ok) await load();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    roleBoxes($("new-roles"), ["viewer"], "new user ");
    $("add-user").addEventListener("submit", async (event) => {
      event.preventDefault();
      const username = $("new-username").value.trim();
      const body = {username, password: $("new-password").value, roles: checkedRoles($("new-roles"))};
      const r = await ECS.api("POST", "/api/users", body);
      ECS.showReply("Add user " + username, r);
      if (!r.ok) return;
      $("new-username").value = "";
      $("new-password").value = "";
      await load();
    });
    await load();
    ECS.events(null, {reload: load});  // the connection indicator stays honest
  });
})();
