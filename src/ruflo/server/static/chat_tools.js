// Tool calls in the chat thread: each call as a block (what is called, with which arguments,
// its status and result), Allow/Deny buttons when a call waits for the person, a live card for
// each hive a call touched (board counts, spend, a link; kept up to date from the hive's event
// stream while the page is open), and the per-tool policies in settings. Talks only to /api/v2.
"use strict";

(function () {
  const { api, readEvents, el, toast, money } = window.ruflo;
  const TERMINAL = new Set(["done", "failed", "cancelled"]);
  const STATUS_WORDS = {
    asking: "waits for you", running: "running…", done: "done", error: "failed",
    denied: "declined", off: "not offered",
  };
  const followers = new Map();  // hive id -> AbortController of its card's event stream

  function stopFollowing() {
    for (const controller of followers.values()) controller.abort();
    followers.clear();
  }

  // -- hive cards ---------------------------------------------------------------------------
  function countsText(tasks) {
    const parts = Object.entries(tasks || {}).filter(([, n]) => n > 0).map(([state, n]) => n + " " + state);
    return parts.length ? parts.join(", ") : "no tasks yet";
  }

  function fillCard(card, hive) {
    card.querySelector(".hive-card-status").textContent = hive.status;
    card.querySelector(".hive-card-tasks").textContent = countsText(hive.tasks);
    const spend = hive.spend || {};
    card.querySelector(".hive-card-spend").textContent =
      (spend.tokens || 0) + " tokens, " + money(spend.cost);
    card.dataset.status = hive.status;
  }

  function hiveCard(hive) {
    const card = el("section", { class: "hive-card", "aria-label": "Hive " + hive.name, "data-hive": hive.id },
      el("h3", {}, el("a", { href: "/hives/" + hive.id, text: hive.name })),
      el("dl", {},
        el("dt", { text: "Status" }), el("dd", { class: "hive-card-status" }),
        el("dt", { text: "Tasks" }), el("dd", { class: "hive-card-tasks" }),
        el("dt", { text: "Spend" }), el("dd", { class: "hive-card-spend" })));
    fillCard(card, hive);
    follow(card, hive.id);
    return card;
  }

  // The card follows the hive's event stream and reads the hive again after news (at most
  // a few times a second), until the hive ends or the card leaves the page.
  function follow(card, hiveId) {
    if (followers.has(hiveId)) followers.get(hiveId).abort();
    const controller = new AbortController();
    followers.set(hiveId, controller);
    let pending = null;
    let lastSeq = null;
    const refresh = () => {
      if (pending) return;
      pending = setTimeout(async () => {
        pending = null;
        try {
          const hive = await api("GET", "/api/v2/hives/" + hiveId);
          for (const shown of document.querySelectorAll(".hive-card[data-hive='" + hiveId + "']")) fillCard(shown, hive);
          if (TERMINAL.has(hive.status)) controller.abort();
        } catch (error) { /* the next event tries again */ }
      }, 250);
    };
    (async () => {
      refresh();
      while (!controller.signal.aborted) {
        try {
          const resume = lastSeq ? { "Last-Event-ID": lastSeq } : {};
          const response = await fetch("/api/v2/hives/" + hiveId + "/stream",
            { headers: window.ruflo.headers(resume), signal: controller.signal });
          if (!response.ok) return;
          await readEvents(response, (frame) => {
            if (frame.id) lastSeq = frame.id;
            refresh();
          });
        } catch (error) {
          if (controller.signal.aborted) return;
        }
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    })();
  }

  // -- tool call blocks -----------------------------------------------------------------------
  function argumentsText(args) {
    if (typeof args === "string") return args;
    return JSON.stringify(args, null, 2);
  }

  function block(call) {
    const node = el("div", { class: "tool-call", "data-call": call.id, role: "group",
                             "aria-label": "Tool call: " + (call.title || call.name) });
    fillBlock(node, call, null);
    return node;
  }

  function fillBlock(node, call, decide) {
    node.textContent = "";
    node.dataset.status = call.status;
    const status = STATUS_WORDS[call.status] || call.status;
    node.append(el("p", { class: "tool-call-head" },
      el("strong", { text: call.title || call.name }),
      " ", el("span", { class: "tool-call-status", text: "(" + status + ")" })));
    const details = el("details", {}, el("summary", { text: "Arguments" }),
                       el("pre", { text: argumentsText(call.arguments), tabindex: "0" }));
    node.append(details);
    if (call.status === "asking" && decide) {
      const allow = el("button", { type: "button", class: "primary", text: "Allow",
                                   "aria-label": "Allow " + (call.title || call.name) });
      const deny = el("button", { type: "button", text: "Deny",
                                  "aria-label": "Deny " + (call.title || call.name) });
      const answer = async (decision) => {
        allow.disabled = true;
        deny.disabled = true;
        try { await decide(call.id, decision); } catch (error) {
          toast(error.message);
          allow.disabled = false;
          deny.disabled = false;
        }
      };
      allow.addEventListener("click", () => answer("allow"));
      deny.addEventListener("click", () => answer("deny"));
      node.append(el("p", { class: "tool-call-question", text: "Run this?" }), el("div", { class: "composer-row" }, allow, deny));
    } else if (call.status === "asking") {
      node.append(el("p", { class: "note", text: "not decided: the answer ended first" }));
    }
    if (call.error) node.append(el("p", { class: "error", text: call.error }));
    const hive = call.result && call.result.hive;
    if (hive && hive.id) node.append(hiveCard(hive));
  }

  // Shows a call's news in an answer's bubble (`decide` answers an ask; absent for stored calls).
  function showCall(bubble, call, decide) {
    let box = bubble.querySelector(".tool-calls");
    if (!box) {
      box = el("div", { class: "tool-calls" });
      bubble.querySelector(".message-body").before(box);
    }
    let node = box.querySelector("[data-call='" + CSS.escape(call.id) + "']");
    if (!node) { node = block(call); box.append(node); }
    fillBlock(node, call, decide);
  }

  // -- settings: a policy per tool --------------------------------------------------------------
  async function fillSettings(container) {
    container.textContent = "";
    let tools;
    try { tools = (await api("GET", "/api/v2/tools")).tools; }
    catch (error) { container.append(el("p", { class: "error", text: "Tools could not be read: " + error.message })); return; }
    for (const tool of tools) {
      const id = "tool-policy-" + tool.name;
      const select = el("select", { id: id, "data-tool": tool.name });
      for (const policy of ["allow", "ask", "off"]) {
        select.append(el("option", { value: policy, text: policy, selected: policy === tool.policy }));
      }
      container.append(el("p", { class: "tool-policy" },
        el("label", { for: id, text: tool.title + (tool.changes ? " (changes things)" : "") }), " ", select));
    }
  }

  function chosenPolicies(container) {
    const policies = {};
    for (const select of container.querySelectorAll("select[data-tool]")) policies[select.dataset.tool] = select.value;
    return policies;
  }

  // -- settings: MCP servers ------------------------------------------------------------------
  function serverState(server) {
    if (server.state === "ok") return server.tools.length + " tools";
    if (server.state === "error") return "error: " + server.error;
    return "connecting…";
  }

  async function fillServers(list, policies) {
    list.textContent = "";
    let servers;
    try { servers = (await api("GET", "/api/v2/mcp-servers")).servers; }
    catch (error) { list.append(el("li", { class: "error", text: error.message })); return; }
    for (const server of servers) {
      const check = el("button", { type: "button", class: "small", text: "Check", "aria-label": "Check " + server.name });
      const remove = el("button", { type: "button", class: "small", text: "Remove", "aria-label": "Remove " + server.name });
      const state = el("span", { class: server.state === "error" ? "error mcp-state" : "mcp-state", text: serverState(server) });
      check.addEventListener("click", async () => {
        state.textContent = "connecting…";
        try {
          const checked = await api("POST", "/api/v2/mcp-servers/" + encodeURIComponent(server.name) + "/check");
          state.textContent = serverState(checked);
          state.className = checked.state === "error" ? "error mcp-state" : "mcp-state";
          await fillSettings(policies);
        } catch (error) { state.textContent = "error: " + error.message; }
      });
      remove.addEventListener("click", async () => {
        try { await api("DELETE", "/api/v2/mcp-servers/" + encodeURIComponent(server.name)); }
        catch (error) { toast(error.message); }
        await fillServers(list, policies);
        await fillSettings(policies);
      });
      list.append(el("li", { "data-server": server.name }, el("strong", { text: server.name }), " ",
                     el("span", { class: "muted", text: server.url || (server.command || []).join(" ") }), " ",
                     state, " ", check, " ", remove));
    }
  }

  async function addServer(fields, list, policies) {
    const body = { name: fields.name.value.trim() };
    const command = fields.command.value.trim();
    if (command) body.command = command.split(/\s+/);
    else body.url = fields.url.value.trim();
    const headers = {};
    for (const line of fields.headers.value.split("\n")) {
      const at = line.indexOf(":");
      if (at > 0) headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    if (Object.keys(headers).length) body.headers = headers;
    try {
      await api("POST", "/api/v2/mcp-servers", body);
      for (const field of Object.values(fields)) field.value = "";
      await api("POST", "/api/v2/mcp-servers/" + encodeURIComponent(body.name) + "/check");
    } catch (error) { toast(error.message); return; }
    await fillServers(list, policies);
    await fillSettings(policies);
  }

  window.rufloChatTools = { showCall, stopFollowing, fillSettings, chosenPolicies, fillServers, addServer };
})();
