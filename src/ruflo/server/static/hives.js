// The hives page: every hive with its task counts, and the form that starts one (swarm with a
// number of agents, or a company from an indented org chart). Talks only to /api/v2/hives.
"use strict";

(function () {
  const { api, el, toast, loadModels, fillModels, when, boot } = window.ruflo;
  const $ = (id) => document.getElementById(id);
  let page = 0;

  function counts(tasks) {
    const parts = [];
    for (const [state, n] of Object.entries(tasks || {})) if (n) parts.push(n + " " + state);
    return parts.join(", ") || "none";
  }

  async function loadHives(reset) {
    if (reset) { page = 0; $("hives-body").textContent = ""; }
    try {
      const answer = await api("GET", "/api/v2/hives?p=" + page);
      for (const hive of answer.hives) {
        $("hives-body").append(el("tr", {},
          el("td", {}, el("a", { href: "/hives/" + hive.id, text: hive.name }),
            hive.damage ? el("span", { class: "damage", title: hive.damage, text: " damaged" }) : null),
          el("td", { text: hive.mode }),
          el("td", {}, el("span", { class: "status status-" + hive.status, text: hive.status })),
          el("td", { text: counts(hive.tasks) }),
          el("td", { text: hive.owner }),
          el("td", { text: when(hive.created_at) })));
      }
      const any = $("hives-body").children.length > 0;
      $("hives-table").hidden = !any;
      $("hives-empty").hidden = any;
      $("more-hives").hidden = !answer.hasMore;
    } catch (error) { toast(error.message); }
  }

  // "name (title): capabilities", indented under the manager.
  function parseOrg(text) {
    const agents = [];
    const stack = [];
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].replace(/\t/g, "  ");
      if (!line.trim()) continue;
      const indent = line.length - line.trimStart().length;
      const match = line.trim().match(/^([^\s:()]+)\s*(?:\(([^)]*)\))?\s*(?::\s*(.*))?$/);
      if (!match) throw new Error("org chart line " + (i + 1) + " should read: name (title): what they can do");
      while (stack.length && stack[stack.length - 1].indent >= indent) stack.pop();
      const boss = stack.length ? stack[stack.length - 1].name : null;
      const agent = { name: match[1], title: (match[2] || "").trim(), capabilities: (match[3] || "").trim(),
                      role: "worker" };
      if (boss) agent.reports_to = boss;
      agents.push(agent);
      stack.push({ indent: indent, name: agent.name });
    }
    const managers = new Set(agents.map((a) => a.reports_to).filter(Boolean));
    for (const a of agents) if (managers.has(a.name)) a.role = "manager";
    return agents;
  }

  function showMode() {
    const company = $("mode").value === "company";
    $("org-field").hidden = !company;
    $("agents-field").hidden = company;
    $("agents").required = !company;
    if ($("mode").value === "solo") $("agents").value = 1;
  }

  async function startHive(event) {
    event.preventDefault();
    const error = $("start-error");
    error.hidden = true;
    const body = { objective: $("objective").value.trim(), mode: $("mode").value };
    try {
      if (body.mode === "company") body.org = parseOrg($("org").value);
      else body.agents = Number($("agents").value);
      const tasks = $("tasks").value.split("\n").map((t) => t.trim()).filter(Boolean);
      if (tasks.length) body.tasks = tasks.map((title) => ({ title: title }));
      if ($("hive-model").value) body.model = $("hive-model").value;
      if ($("max-cost").value) body.budget = { max_cost: Number($("max-cost").value) };
      $("start").disabled = true;
      const hive = await api("POST", "/api/v2/hives", body);
      window.location.assign("/hives/" + hive.id);
    } catch (failure) {
      error.textContent = "The hive was not started: " + failure.message;
      error.hidden = false;
      error.focus();
    } finally {
      $("start").disabled = false;
    }
  }

  async function start() {
    $("mode").addEventListener("change", showMode);
    $("start-hive").addEventListener("submit", startHive);
    $("more-hives").addEventListener("click", () => { page += 1; loadHives(false); });
    showMode();
    if (boot.auth === "token" && !boot.signedIn) return;
    loadModels().then((models) => fillModels($("hive-model"), models, "", "server default (" + boot.defaultModel + ")"));
    await loadHives(true);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
