// One hive, live: the board by task state, agents, approvals, spend, the event log and a
// timeline of who worked on what. Follows the hive's SSE stream (resuming from the last event
// seen) and re-reads the hive from the API when events say something changed.
"use strict";

(function () {
  const { api, request, readEvents, el, toast, when, money, boot } = window.ruflo;
  const $ = (id) => document.getElementById(id);
  const hiveId = boot.hiveId;
  const STATES = ["open", "claimed", "blocked", "done", "failed", "cancelled"];
  const ENDS = new Set(["task_done", "task_failed", "task_released", "lease_expired", "task_cancelled"]);
  const LOG_SHOWN = 300;

  const state = {
    hive: null, tasks: new Map(), agents: new Map(), events: [], lastSeq: 0,
    open: new Map(), spans: [], calls: new Map(), refreshing: false, again: false, timer: null, gone: false,
  };

  function agentName(id) {
    if (!id) return null;
    const agent = state.agents.get(id);
    return agent ? agent.name : id.slice(0, 8);
  }

  function taskTitle(id) {
    if (!id) return null;
    const task = state.tasks.get(id);
    return task ? task.title : id.slice(0, 8);
  }

  // -- reading the hive -----------------------------------------------------------------------
  function scheduleRefresh() {
    if (state.timer) return;
    state.timer = setTimeout(() => { state.timer = null; refresh(); }, 150);
  }

  async function refresh() {
    if (state.refreshing) { state.again = true; return; }
    state.refreshing = true;
    try {
      const [hive, tasks, actions] = await Promise.all([
        api("GET", "/api/v2/hives/" + hiveId),
        api("GET", "/api/v2/hives/" + hiveId + "/tasks?limit=1000"),
        api("GET", "/api/v2/hives/" + hiveId + "/actions"),
      ]);
      state.hive = hive;
      state.actions = actions;
      state.agents = new Map(hive.agents.map((a) => [a.id, a]));
      state.tasks = new Map(tasks.tasks.map((t) => [t.id, t]));
      renderHive();
      renderBoard(tasks.hasMore);
      renderAgents();
      renderApprovals();
      renderActions();
      renderSpend();
      renderLog();
      renderTranscripts();
      renderTimeline();
    } catch (error) {
      if (error.status === 404) {
        state.gone = true;
        $("hive-name").textContent = "No such hive";
        $("live-state").textContent = "There is no hive " + hiveId + ".";
      } else {
        toast("Could not read the hive: " + error.message);
      }
    } finally {
      state.refreshing = false;
      if (state.again) { state.again = false; scheduleRefresh(); }
    }
  }

  // The owner and operators may steer; the API refuses others, this only spares them the buttons.
  function mayChange() {
    return Boolean(boot.operator) || (state.hive !== null && state.hive.owner === boot.user);
  }

  // What the API's `isolation` says, as a line of text (engine/isolation.py isolation_summary).
  function isolationText(isolation) {
    if (!isolation) return "unknown";
    if (isolation.isolation !== "git") return "none: the agents share the workspace folder";
    const start = String(isolation.start_commit || "").slice(0, 12);
    return "git worktrees, branch " + (isolation.branch || "?") + " from " + (start || "?");
  }

  function renderHive() {
    const hive = state.hive;
    $("hive-owner").textContent = hive.owner;
    $("hive-read-only").hidden = mayChange();
    $("hive-controls").hidden = !mayChange();
    $("hive-name").textContent = hive.name;
    document.title = hive.name + " · ruflo";
    $("hive-mode").textContent = hive.mode + " mode";
    const status = $("hive-status");
    status.textContent = hive.status;
    status.className = "status status-" + hive.status;
    $("hive-reason").textContent = hive.status === "paused" && hive.pause_reason ? "— " + hive.pause_reason : "";
    $("hive-objective").textContent = hive.objective;
    $("hive-isolation").textContent = isolationText(hive.isolation);
    // A stored row that can't be read whole: say what is shown in its stead (the API's note).
    $("hive-damage").textContent = hive.damage || "";
    $("hive-damage").hidden = !hive.damage;
    const over = ["done", "failed", "cancelled"].includes(hive.status);
    $("pause").disabled = hive.status !== "running";
    $("resume").disabled = hive.status !== "paused";
    $("cancel").disabled = over;
    $("agents-role-head").textContent = hive.mode === "company" ? "Role" : "Threshold";
  }

  function renderBoard(truncated) {
    const columns = Object.fromEntries(STATES.map((s) => [s, []]));
    for (const task of state.tasks.values()) (columns[task.state] || columns.open).push(task);
    for (const s of STATES) {
      const list = $("tasks-" + s);
      list.textContent = "";
      columns[s].sort((a, b) => (b.priority - a.priority) || a.created_at.localeCompare(b.created_at));
      for (const task of columns[s]) {
        const who = agentName(task.assignee);
        const card = el("li", { class: "task", "data-task-id": task.id, "data-state": task.state },
          el("span", { class: "task-title", text: task.title }),
          who ? el("span", { class: "task-who", text: (s === "claimed" ? "with " : "by ") + who }) : null,
          task.attempts > 1 ? el("span", { class: "task-note", text: "attempt " + task.attempts }) : null,
          task.blocked_on ? el("span", { class: "task-note", text: "waits on " + (taskTitle(task.blocked_on)) }) : null,
          task.verified === false ? el("span", { class: "task-note bad", text: "verify failed" }) : null,
          el("button", { type: "button", class: "task-open link", text: "changes",
                         "aria-label": "Show the changes of " + task.title, onclick: () => showChanges(task.id) }));
        if (task.result) card.title = task.result.slice(0, 500);
        list.append(card);
      }
      $("count-" + s).textContent = String(columns[s].length);
    }
    if (truncated) toast("The board shows the first 1000 tasks.");
  }

  // A task's branch, commit, merge state and diff: text only (textContent), and control
  // characters (terminal escapes, NULs) shown as "?" so a hostile file name or patch stays inert.
  function inert(text) {
    return String(text || "").replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, "?");
  }

  async function showChanges(taskId) {
    const section = $("changes-section");
    section.hidden = false;
    $("changes-title").textContent = "Changes of “" + taskTitle(taskId) + "”";
    $("changes-meta").textContent = "loading…";
    $("changes-stat").textContent = "";
    $("changes-patch").textContent = "";
    try {
      const task = await api("GET", "/api/v2/hives/" + hiveId + "/tasks/" + encodeURIComponent(taskId));
      const git = task.git;
      if (!git) {
        $("changes-meta").textContent = "No commit: this task has not changed the repository (or the hive shares its folder).";
        return;
      }
      $("changes-meta").textContent = inert("branch " + git.branch + " · commit " + String(git.commit).slice(0, 12) +
        " · " + (git.merged ? "merged" : "not merged"));
      $("changes-stat").textContent = inert(git.diff === null ? "(the repository no longer has these commits)" : git.diff);
      $("changes-patch").textContent = inert(git.patch || "") +
        (git.patch_truncated ? "\n… cut; see it all with git diff " + inert(git.base) + " " + inert(git.commit) : "");
    } catch (error) {
      $("changes-meta").textContent = "Could not read the task: " + inert(error.message);
    }
  }

  function thresholdText(agent) {
    const entries = Object.entries(agent.thresholds || {});
    if (!entries.length) return agent.skills && agent.skills.length ? agent.skills.join(", ") : "—";
    return entries.sort().map(([skill, theta]) => skill + " θ " + Number(theta).toFixed(2)).join(", ");
  }

  function roleText(agent) {
    const role = agent.title || agent.role;
    const boss = agent.reports_to ? " · reports to " + agentName(agent.reports_to) : "";
    return role + boss;
  }

  function renderAgents() {
    const body = $("agents");
    body.textContent = "";
    const company = state.hive.mode === "company";
    for (const agent of state.agents.values()) {
      body.append(el("tr", { "data-agent-id": agent.id },
        el("th", { scope: "row", text: agent.name }),
        el("td", {}, el("span", { class: "status status-" + agent.status, text: agent.status })),
        el("td", { text: agent.current_task ? taskTitle(agent.current_task) : "—" }),
        el("td", { text: company ? roleText(agent) : thresholdText(agent) }),
        el("td", { text: money(agent.spent_cost) + " · " + agent.spent_tokens.toLocaleString() + " tokens" })));
    }
  }

  function renderApprovals() {
    const pending = state.hive.approvals || [];
    const list = $("approvals");
    list.textContent = "";
    $("approvals-section").hidden = pending.length === 0;
    for (const approval of pending) {
      const by = agentName(approval.agent_id);
      const action = approval.kind === "action";
      const data = approval.data || {};
      const details = !action && Object.keys(data).length ? JSON.stringify(data) : "";
      const reason = el("input", { type: "text", class: "approval-reason", maxlength: "2000",
                                   placeholder: "Why (the agent reads it if you reject)",
                                   "aria-label": "Reason for: " + approval.subject });
      list.append(el("li", { class: "approval", "data-approval-id": approval.id },
        el("p", {}, el("strong", { text: approval.subject })),
        el("p", { class: "muted", text: approval.kind.replace(/_/g, " ") + (by ? " · asked by " + by : "") +
                  (action && data.turn != null ? " · waits at turn " + data.turn + " of task " + taskTitle(data.task_id) : "") +
                  " · " + when(approval.created_at) }),
        action ? el("pre", { class: "approval-action", text: data.tool + ": " + data.subject }) : null,
        action && data.diff ? el("pre", { class: "diff approval-diff", tabindex: "0", "aria-label": "The change", text: data.diff }) : null,
        details ? el("p", { class: "approval-data", text: details }) : null,
        !mayChange() ? el("p", { class: "muted", text: "Waiting for the hive's owner or an operator to decide." }) :
        el("div", { class: "row" },
          reason,
          el("button", { type: "button", class: "primary", "aria-label": "Approve: " + approval.subject,
                         onclick: () => decide(approval, "approved", reason.value) }, "Approve"),
          el("button", { type: "button", class: "danger", "aria-label": "Reject: " + approval.subject,
                         onclick: () => decide(approval, "rejected", reason.value) }, "Reject"))));
    }
  }

  // What each action does in this hive: the hive's policy, each agent's, and the safe defaults.
  function renderActions() {
    const actions = state.actions;
    const list = $("actions");
    list.textContent = "";
    const rows = [["hive", actions.actions]].concat(Object.entries(actions.agents));
    for (const [who, policy] of rows) {
      const entries = Object.entries(policy || {});
      const text = entries.length ? entries.map(([name, rule]) => name + ": " + (typeof rule === "string" ? rule : JSON.stringify(rule))).join(" · ") : "defaults";
      list.append(el("li", {}, el("strong", { text: who === "hive" ? "Hive" : who }), " — " + text));
    }
    $("safe-defaults").textContent = "Ask first, unless a policy's own rule says otherwise: " +
      actions.safe_defaults.map((r) => r.why.split(":")[0]).join(", ") + ".";
  }

  function renderSpend() {
    const spend = state.hive.spend;
    const budget = state.hive.budget || {};
    let fraction = null;
    const parts = [money(spend.cost) + " spent"];
    if (budget.max_cost !== null && budget.max_cost !== undefined) {
      parts[0] += " of " + money(budget.max_cost);
      fraction = budget.max_cost > 0 ? spend.cost / budget.max_cost : 1;
    }
    let tokens = spend.tokens.toLocaleString() + " tokens";
    if (budget.max_tokens !== null && budget.max_tokens !== undefined) {
      tokens += " of " + budget.max_tokens.toLocaleString();
      const f = budget.max_tokens > 0 ? spend.tokens / budget.max_tokens : 1;
      fraction = fraction === null ? f : Math.max(fraction, f);
    }
    parts.push(tokens, spend.calls + " gateway calls");
    if (spend.unknown_cost_calls) parts.push(spend.unknown_cost_calls + " with unknown cost (not counted)");
    if (fraction === null) parts.push("no budget cap");
    $("cost-text").textContent = parts.join(" · ");
    const fill = $("cost-fill");
    $("cost-meter").hidden = fraction === null;
    if (fraction !== null) {
      fill.style.width = Math.min(100, fraction * 100).toFixed(1) + "%";
      fill.classList.toggle("warn", fraction >= 0.8);
    }
  }

  // -- events -------------------------------------------------------------------------------
  function describe(event) {
    const who = agentName(event.agent_id);
    const what = event.task_id ? "“" + taskTitle(event.task_id) + "”" : "";
    const data = event.data || {};
    // A failed notification says which sender and what the provider answered.
    const why = data.reason || (event.kind === "notify_failed"
      ? [data.sender, data.description].filter(Boolean).join(": ") : "");
    const reason = why ? " (" + why + ")" : "";
    // An agent's transcript (the built-in agent's or an agent CLI's) names the tool it used.
    const tool = (event.kind === "tool_call" || event.kind === "tool_result") && toolName(data)
      ? toolName(data) + (event.kind === "tool_result" && data.ok === false ? " (failed)" : "") : "";
    const text = event.kind.replace(/_/g, " ") + (tool ? " " + tool : "");
    return [who, text, what].filter(Boolean).join(" ") + reason;
  }

  function renderLog() {
    const list = $("events");
    list.textContent = "";
    const shown = state.events.slice(-LOG_SHOWN).reverse();
    for (const event of shown) {
      list.append(el("li", { value: String(event.seq), "data-kind": event.kind },
        el("time", { datetime: event.ts, text: new Date(event.ts).toLocaleTimeString() }), " ", describe(event)));
    }
  }

  // Each agent's transcript: its turns, tool calls and results and how its tasks went, under
  // its name; text only, every detail cut short and control characters made inert.
  const TRANSCRIPT = new Set(["task_claimed", "agent_turn", "tool_call", "tool_result", "process_exited",
    "task_done", "task_verified", "task_failed", "task_released", "lease_expired"]);
  const DETAIL_SHOWN = 240;

  function short(value) {
    const text = inert(typeof value === "string" ? value : JSON.stringify(value));
    return text.length > DETAIL_SHOWN ? text.slice(0, DETAIL_SHOWN) + "…" : text;
  }

  // A tool result's tool: its own name, else its call's (Claude Code's results carry only the id).
  function toolName(data) {
    return data.name || state.calls.get(data.call_id) || "";
  }

  function transcriptEntry(event) {
    const data = event.data || {};
    const turn = data.turn != null ? "turn " + data.turn + " · " : "";
    const task = event.task_id ? " (" + taskTitle(event.task_id) + ")" : "";
    if (event.kind === "tool_call") {
      return [turn + "tool call " + inert(data.name), short(data.arguments || {})];
    }
    if (event.kind === "tool_result") {
      return [turn + "tool result " + inert(toolName(data) || "(unknown call)") + (data.ok === false ? " (failed)" : ""), short(data.content || "")];
    }
    if (event.kind === "agent_turn") {
      const calls = (data.tool_calls || []).map((c) => inert(c.name)).join(", ");
      return [turn + "agent turn" + (calls ? ", calls " + calls : ""), short(data.content || "")];
    }
    if (event.kind === "process_exited") {
      return ["process exited " + inert(String(data.exit_code)) + task, short(data.final || data.reason || "")];
    }
    return [event.kind.replace(/_/g, " ") + task, data.reason ? short(data.reason) : ""];
  }

  function renderTranscripts() {
    const box = $("transcripts");
    box.textContent = "";
    for (const agent of state.agents.values()) {
      const mine = state.events.filter((e) => e.agent_id === agent.id && TRANSCRIPT.has(e.kind));
      const list = el("ol", { class: "events transcript-events", tabindex: "0",
                              "aria-label": "Transcript of " + agent.name });
      for (const event of mine) {
        const [head, detail] = transcriptEntry(event);
        list.append(el("li", { value: String(event.seq), "data-kind": event.kind },
          el("span", { class: "transcript-head", text: head }),
          detail ? el("span", { class: "transcript-detail", text: detail }) : null));
      }
      box.append(el("section", { class: "transcript", "data-agent-id": agent.id, "aria-label": agent.name },
        el("h3", { text: agent.name + " · " + agent.adapter }),
        mine.length ? list : el("p", { class: "muted", text: "Nothing yet." })));
    }
  }

  function track(event) {
    const data = event.data || {};
    if (event.kind === "tool_call" && data.call_id && data.name) state.calls.set(data.call_id, String(data.name));
    if (event.kind === "task_claimed" && event.task_id) {
      state.open.set(event.task_id, { agent: event.agent_id, task: event.task_id, start: Date.parse(event.ts), end: null, outcome: null });
    } else if (ENDS.has(event.kind) && event.task_id && state.open.has(event.task_id)) {
      const span = state.open.get(event.task_id);
      state.open.delete(event.task_id);
      span.end = Date.parse(event.ts);
      span.outcome = event.kind.replace("task_", "").replace("_", " ");
      state.spans.push(span);
    }
  }

  function renderTimeline() {
    const spans = state.spans.concat(Array.from(state.open.values()));
    const box = $("timeline");
    box.textContent = "";
    $("timeline-empty").hidden = spans.length > 0;
    if (!spans.length) return;
    const t0 = Math.min(...spans.map((s) => s.start));
    const last = state.events.length ? Date.parse(state.events[state.events.length - 1].ts) : t0;
    const running = state.hive && state.hive.status === "running";
    const t1 = Math.max(last, running ? Date.now() : last, ...spans.map((s) => s.end || 0), t0 + 1);
    const byAgent = new Map();
    for (const span of spans) {
      if (!byAgent.has(span.agent)) byAgent.set(span.agent, []);
      byAgent.get(span.agent).push(span);
    }
    for (const [agent, list] of byAgent) {
      const lane = el("ul", { class: "lane", "aria-label": agentName(agent) });
      for (const span of list) {
        const end = span.end || t1;
        const seconds = ((end - span.start) / 1000).toFixed(1);
        const label = taskTitle(span.task) + ": " + seconds + " s, " + (span.outcome || "in progress");
        const bar = el("li", { class: "bar " + (span.outcome || "working").replace(" ", "-"), title: label },
          el("span", { class: "visually-hidden", text: label }));
        bar.style.left = ((span.start - t0) / (t1 - t0) * 100).toFixed(2) + "%";
        bar.style.width = Math.max(0.6, (end - span.start) / (t1 - t0) * 100).toFixed(2) + "%";
        lane.append(bar);
      }
      box.append(el("div", { class: "lane-row" }, el("span", { class: "lane-name", text: agentName(agent) }), lane));
    }
  }

  async function follow() {
    for (;;) {
      if (state.gone) return;
      try {
        const headers = state.lastSeq ? { "Last-Event-ID": String(state.lastSeq) } : {};
        const response = await fetch("/api/v2/hives/" + hiveId + "/stream", { headers: Object.assign(window.ruflo.headers(), headers) });
        if (!response.ok) {
          if (response.status === 404) { state.gone = true; refresh(); return; }
          throw new Error("the event stream answered " + response.status);
        }
        $("live-state").textContent = "Live: changes appear as they happen.";
        await readEvents(response, (frame) => {
          const event = frame.data;
          if (!event || typeof event.seq !== "number" || event.seq <= state.lastSeq) return;
          state.lastSeq = event.seq;
          state.events.push(event);
          if (state.events.length > 5000) state.events.splice(0, state.events.length - 5000);
          track(event);
          scheduleRefresh();
        });
      } catch (error) {
        /* a dropped connection: reconnect below, resuming after the last event seen */
      }
      $("live-state").textContent = "Connection lost; reconnecting…";
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  // -- steering -----------------------------------------------------------------------------
  async function steer(action) {
    if (action === "cancel" && !window.confirm("Cancel this hive? Every unfinished task is cancelled.")) return;
    try {
      await api("POST", "/api/v2/hives/" + hiveId + "/" + action, action === "pause" ? { reason: "paused from the web page" } : undefined);
      toast("Hive " + (action === "pause" ? "paused" : action === "resume" ? "resumed" : "cancelled") + ".");
    } catch (error) { toast(error.message); }
    refresh();
  }

  async function decide(approval, decision, reason) {
    const body = { decision: decision };
    if (reason && reason.trim()) body.reason = reason.trim();
    try {
      await api("POST", "/api/v2/hives/" + hiveId + "/approvals/" + approval.id, body);
      toast((decision === "approved" ? "Approved: " : "Rejected: ") + approval.subject);
    } catch (error) { toast(error.message); }
    refresh();
  }

  function start() {
    $("pause").addEventListener("click", () => steer("pause"));
    $("resume").addEventListener("click", () => steer("resume"));
    $("cancel").addEventListener("click", () => steer("cancel"));
    if (boot.auth === "token" && !boot.signedIn) return;
    refresh();
    follow();
    setInterval(() => { if (state.hive && state.hive.status === "running") renderTimeline(); }, 2000);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
