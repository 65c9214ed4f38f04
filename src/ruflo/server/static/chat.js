// The chat page: conversations, the message thread, the composer with streamed answers, stop,
// rename/delete, the model picker and settings. Talks only to /api/v2.
"use strict";

(function () {
  const { api, request, readEvents, el, toast, loadModels, fillModels, boot } = window.ruflo;
  const $ = (id) => document.getElementById(id);

  const state = {
    conversations: [], page: 0, current: null, messages: [], models: [], settings: {},
    generating: false, choice: new Map(), attached: [],
  };

  function setTitle(text) {
    $("thread-title").textContent = text;
    document.title = text + " · ruflo";
  }

  // -- conversation list ----------------------------------------------------------------
  async function loadConversations(reset) {
    if (reset) { state.page = 0; state.conversations = []; }
    const answer = await api("GET", "/api/v2/conversations?p=" + state.page);
    state.conversations = state.conversations.concat(answer.conversations);
    $("more-conversations").hidden = !answer.hasMore;
    renderConversations();
  }

  function renderConversations() {
    const list = $("conversation-list");
    list.textContent = "";
    for (const c of state.conversations) {
      const link = el("a", { href: "/conversation/" + c.id, text: c.title,
                             "aria-current": state.current === c.id ? "page" : null });
      link.addEventListener("click", (event) => {
        event.preventDefault();
        openConversation(c.id, true);
        closeDrawer();
      });
      list.append(el("li", {}, link));
    }
    $("conversation-empty").hidden = state.conversations.length > 0;
  }

  // -- thread -----------------------------------------------------------------------------
  // The message tree: an edit or a retry adds a sibling. The branch shown follows, from the
  // root, the child chosen at each fork (state.choice) or else the newest one.
  function childrenByParent(messages) {
    const byParent = new Map();
    for (const m of messages) {
      if (m.parentId === null || m.parentId === undefined) continue;
      if (!byParent.has(m.parentId)) byParent.set(m.parentId, []);
      byParent.get(m.parentId).push(m);
    }
    return byParent;
  }

  function branch(messages) {
    const byParent = childrenByParent(messages);
    const path = [];
    let node = messages.find((m) => m.parentId === null || m.parentId === undefined);
    const seen = new Set();
    while (node && !seen.has(node.id)) {
      seen.add(node.id);
      path.push(node);
      const kids = byParent.get(node.id) || [];
      const chosen = state.choice.get(node.id);
      node = kids.find((k) => k.id === chosen) || kids[kids.length - 1];
    }
    return path;
  }

  // "‹ 2 / 3 ›" under a message that has siblings: moves to another branch at that fork.
  function versions(m, siblings) {
    const at = siblings.findIndex((s) => s.id === m.id);
    const go = (step) => () => {
      state.choice.set(m.parentId, siblings[at + step].id);
      renderThread();
    };
    const previous = el("button", { type: "button", class: "small", text: "‹", "aria-label": "Previous version",
                                    disabled: at === 0 || state.generating });
    const next = el("button", { type: "button", class: "small", text: "›", "aria-label": "Next version",
                                disabled: at === siblings.length - 1 || state.generating });
    previous.addEventListener("click", go(-1));
    next.addEventListener("click", go(1));
    return el("span", { class: "versions" }, previous,
      el("span", { class: "version-count", text: (at + 1) + " / " + siblings.length }), next);
  }

  function messageTools(m, node, siblings) {
    const bar = el("div", { class: "message-tools" });
    if (siblings.length > 1) bar.append(versions(m, siblings));
    if (m.from === "user") {
      const edit = el("button", { type: "button", class: "small", text: "Edit", "aria-label": "Edit this message" });
      edit.addEventListener("click", () => startEdit(m, node));
      bar.append(edit);
    } else if (m.from === "assistant") {
      const retry = el("button", { type: "button", class: "small", text: "Retry", "aria-label": "Retry this answer" });
      retry.addEventListener("click", () => { if (!state.generating) send(null, { retry: m.parentId }); });
      bar.append(retry);
    }
    return bar;
  }

  // Editing a sent message writes a new one beside it (a new branch); the old one stays.
  function startEdit(m, node) {
    if (state.generating) return;
    const body = node.querySelector(".message-body");
    const area = el("textarea", { rows: "3", "aria-label": "Edit your message" });
    area.value = m.content;
    const save = el("button", { type: "submit", class: "primary", text: "Send the edit" });
    const cancel = el("button", { type: "button", text: "Cancel" });
    const form = el("form", { class: "edit-form" }, area, el("div", { class: "composer-row end" }, cancel, save));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (area.value.trim()) send(area.value, { parent: m.parentId });
    });
    cancel.addEventListener("click", () => renderThread());
    body.replaceWith(form);
    area.focus();
  }

  // Assistant answers arrive as HTML the server rendered from Markdown and sanitized
  // (server/chat_markdown.py); a person's own words are shown as typed.
  function showHtml(body, html) {
    body.innerHTML = html;
    for (const code of body.querySelectorAll("pre > code")) {
      code.parentElement.tabIndex = 0;  // a long line scrolls: keyboard users can too
      const copy = el("button", { type: "button", class: "copy-code", text: "Copy",
                                  "aria-label": "Copy the code" });
      copy.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(code.textContent);
          copy.textContent = "Copied";
        } catch (error) { toast("Could not copy: " + error.message); }
      });
      code.parentElement.before(el("div", { class: "code-tools" }, copy));
    }
  }

  function bubble(role, text, options) {
    const opts = options || {};
    const who = role === "user" ? "You" : role === "assistant" ? (opts.model || "Assistant") : "System";
    const body = el("div", { class: "message-body" + (opts.html === undefined ? " plain" : " markdown") });
    if (opts.html !== undefined) showHtml(body, opts.html); else body.textContent = text;
    const node = el("article", { class: "message " + role, "aria-label": "Message from " + who },
      el("header", { class: "message-from", text: who }), body);
    for (const call of opts.tools || []) window.rufloChatTools.showCall(node, call, null);
    if (opts.interrupted) node.append(el("p", { class: "note", text: "stopped before the end" }));
    if (opts.error) node.append(el("p", { class: "error", role: "alert", text: opts.error }));
    return node;
  }

  // The branch shown; `upTo` (a message id) cuts it after that message (an edit or retry is
  // being written below it).
  function renderThread(upTo) {
    window.rufloChatTools.stopFollowing();
    const thread = $("thread");
    thread.textContent = "";
    let path = branch(state.messages);
    if (upTo) path = path.slice(0, path.findIndex((m) => m.id === upTo) + 1);
    const byParent = childrenByParent(state.messages);
    const shown = path.filter((m) => m.from !== "system" || m.content);
    if (!shown.length) {
      thread.append(el("p", { id: "thread-empty", class: "muted",
        text: "Ask anything. Answers stream from the model chosen below." }));
    }
    for (const m of shown) {
      const node = bubble(m.from, m.content, { model: m.model, html: m.from === "assistant" ? m.html : undefined, tools: m.tools,
                                               interrupted: m.interrupted && m.from === "assistant", error: m.error });
      if (m.files && m.files.length) node.append(fileList(m.files));
      if (m.from !== "system" && !state.generating) node.append(messageTools(m, node, byParent.get(m.parentId) || [m]));
      thread.append(node);
    }
    thread.scrollTop = thread.scrollHeight;
  }

  async function openConversation(id, push) {
    try {
      const conversation = await api("GET", "/api/v2/conversations/" + id);
      state.current = conversation.id;
      state.messages = conversation.messages;
      state.choice = new Map();
      setTitle(conversation.title);
      fillModels($("model"), state.models, conversation.model);
      if (push) history.pushState({ id: id }, "", "/conversation/" + id);
      $("rename").disabled = false;
      $("delete").disabled = false;
      renderThread();
      renderConversations();
    } catch (error) {
      toast(error.status === 404 ? "That conversation does not exist (or is not yours)." : error.message);
      newChat(true);
    }
  }

  function newChat(push) {
    state.current = null;
    state.messages = [];
    state.choice = new Map();
    setTitle("New chat");
    $("rename").disabled = true;
    $("delete").disabled = true;
    fillModels($("model"), state.models, state.settings.activeModel || boot.defaultModel);
    if (push) history.pushState({}, "", "/");
    renderThread();
    renderConversations();
    $("prompt").focus();
  }

  // -- sending and streaming ------------------------------------------------------------
  function setGenerating(on) {
    state.generating = on;
    $("stop").hidden = !on;
    $("send").disabled = on;
    $("thread").setAttribute("aria-busy", on ? "true" : "false");
  }

  // Send a message (below the branch shown, or below `how.parent`: an edit), or answer the user
  // message `how.retry` again. Either way the new messages become the branch shown.
  async function send(text, how) {
    const opts = how || {};
    if (state.generating || (!opts.retry && !text.trim())) return;
    const model = $("model").value || state.settings.activeModel || boot.defaultModel;
    setGenerating(true);
    $("chat-status").textContent = "Sending…";
    try {
      if (!state.current) {
        const preprompt = (state.settings.customPrompts || {})[model];
        const body = { model: model };
        if (preprompt) body.preprompt = preprompt;
        const created = await api("POST", "/api/v2/conversations", body);
        state.current = created.conversationId;
        history.pushState({ id: state.current }, "", "/conversation/" + state.current);
        $("rename").disabled = false;
        $("delete").disabled = false;
        state.conversations.unshift({ id: state.current, title: "New Chat", model: model });
        renderConversations();
      }
      const shownPath = branch(state.messages);
      const parent = opts.retry || opts.parent || (shownPath.length ? shownPath[shownPath.length - 1].id : null);
      if (parent) state.choice.delete(parent);
      if (opts.retry || opts.parent) renderThread(parent);
      const thread = $("thread");
      for (const tools of thread.querySelectorAll(".message-tools")) tools.remove();
      const empty = $("thread-empty");
      if (empty) empty.remove();
      if (!opts.retry) {
        const question = bubble("user", text);
        if (opts.files && opts.files.length) question.append(fileList(opts.files));
        thread.append(question);
      }
      const answer = bubble("assistant", "", { model: model, html: "" });
      answer.classList.add("streaming");
      thread.append(answer);
      thread.scrollTop = thread.scrollHeight;
      const body = answer.querySelector(".message-body");
      const buffered = Boolean(state.settings.disableStream);
      let written = "";
      let painting = false;
      // The last HTML the server rendered, then the raw text that came after it: new tokens
      // only grow the tail, and each render replaces both at once, so nothing flickers.
      const rendered = el("div", { class: "rendered" });
      const tail = el("span", { class: "tail" });
      body.append(rendered, tail);
      let renderedLength = 0;
      // Tokens can come faster than frames: paint once per frame, not per token.
      const paint = () => {
        painting = false;
        tail.textContent = written.slice(renderedLength);
        thread.scrollTop = thread.scrollHeight;
      };
      const message = opts.retry ? { id: opts.retry, is_retry: true } : { inputs: text };
      if (!opts.retry && opts.files && opts.files.length) message.files = opts.files;
      if (!opts.retry && parent) message.id = parent;
      const response = await request("POST", "/api/v2/conversations/" + state.current + "/messages", message);
      $("chat-status").textContent = "The answer is being written.";
      await readEvents(response, (frame) => {
        const update = frame.data;
        if (update.type === "stream") {
          written += update.token;
          if (!buffered && !painting) { painting = true; window.requestAnimationFrame(paint); }
        } else if (update.type === "rendered") {
          if (!buffered) {
            rendered.innerHTML = update.html;
            renderedLength = update.length;
            if (!painting) { painting = true; window.requestAnimationFrame(paint); }
          }
        } else if (update.type === "finalAnswer") {
          written = update.text;
          body.textContent = "";
          showHtml(body, update.html);
          if (update.interrupted) answer.append(el("p", { class: "note", text: "stopped before the end" }));
        } else if (update.type === "tool") {
          window.rufloChatTools.showCall(answer, update.call, decideCall);
        } else if (update.type === "status" && update.status === "error") {
          answer.append(el("p", { class: "error", role: "alert", text: update.message }));
        } else if (update.type === "title") {
          setTitle(update.title);
          const item = state.conversations.find((c) => c.id === state.current);
          if (item) item.title = update.title;
          renderConversations();
        }
      });
      answer.classList.remove("streaming");
      $("chat-status").textContent = "The answer is complete.";
    } catch (error) {
      toast(error.message);
      $("chat-status").textContent = "The message could not be sent: " + error.message;
    } finally {
      setGenerating(false);
    }
    if (state.current) await refreshThread();
  }

  // -- attachments: text files read in the page, sent with the next message ----------------
  const MAX_FILE_CHARS = 100000;
  const MAX_FILES = 5;

  async function attachFiles() {
    for (const file of $("attach").files) {
      if (state.attached.length >= MAX_FILES) { toast("At most " + MAX_FILES + " files a message."); break; }
      const text = await file.text();
      if (text.length > MAX_FILE_CHARS) { toast(file.name + " is too big (at most " + MAX_FILE_CHARS + " characters)."); continue; }
      if (text.includes("\u0000")) { toast(file.name + " is not a text file."); continue; }
      state.attached.push({ name: file.name, mime: file.type || "text/plain", content: text });
    }
    $("attach").value = "";
    showAttached();
  }

  function showAttached() {
    const list = $("attached");
    list.textContent = "";
    state.attached.forEach((file, index) => {
      const remove = el("button", { type: "button", class: "small", text: "×", "aria-label": "Remove " + file.name });
      remove.addEventListener("click", () => { state.attached.splice(index, 1); showAttached(); });
      list.append(el("li", {}, file.name + " ", remove));
    });
  }

  function fileList(files) {
    return el("ul", { class: "message-files", "aria-label": "Attached files" },
      ...files.map((f) => el("li", { text: f.name + " (" + f.content.length + " characters)" })));
  }

  // The person's answer to a tool call that waits for it.
  async function decideCall(callId, decision) {
    await api("POST", "/api/v2/conversations/" + state.current + "/tool-calls/" + encodeURIComponent(callId),
              { decision: decision });
  }

  // The thread again from the store (after an answer: its tree, versions and tools), keeping
  // the hive cards of an answer that did not change.
  async function refreshThread() {
    try {
      const fresh = await api("GET", "/api/v2/conversations/" + state.current);
      state.messages = fresh.messages;
      renderThread();
    } catch (error) { toast(error.message); }
  }

  async function stop() {
    if (!state.current) return;
    try { await api("POST", "/api/v2/conversations/" + state.current + "/stop-generating"); }
    catch (error) { toast(error.message); }
  }

  // -- rename, delete, model --------------------------------------------------------------
  function startRename() {
    $("rename-form").hidden = false;
    $("rename-input").value = $("thread-title").textContent;
    $("rename-input").focus();
    $("rename-input").select();
  }

  async function rename(event) {
    event.preventDefault();
    const title = $("rename-input").value.trim();
    if (!title || !state.current) return;
    try {
      const updated = await api("PATCH", "/api/v2/conversations/" + state.current, { title: title });
      setTitle(updated.title);
      const item = state.conversations.find((c) => c.id === state.current);
      if (item) item.title = updated.title;
      renderConversations();
      $("rename-form").hidden = true;
      $("rename").focus();
    } catch (error) { toast(error.message); }
  }

  async function remove() {
    if (!state.current) return;
    if (!window.confirm("Delete this conversation? This can't be undone.")) return;
    try {
      await api("DELETE", "/api/v2/conversations/" + state.current);
      state.conversations = state.conversations.filter((c) => c.id !== state.current);
      toast("Conversation deleted.");
      newChat(true);
    } catch (error) { toast(error.message); }
  }

  async function switchModel() {
    if (!state.current || !$("model").value) return;
    try { await api("PATCH", "/api/v2/conversations/" + state.current, { model: $("model").value }); }
    catch (error) { toast(error.message); }
  }

  // -- settings ---------------------------------------------------------------------------
  function openSettings() {
    const s = state.settings;
    const model = s.activeModel || boot.defaultModel;
    fillModels($("settings-model"), state.models, model);
    $("settings-prompt").value = (s.customPrompts || {})[model] || "";
    $("settings-nostream").checked = Boolean(s.disableStream);
    $("settings").showModal();
    window.rufloChatTools.fillSettings($("tool-policies"));
    window.rufloChatTools.fillServers($("mcp-servers"), $("tool-policies"));
  }

  async function saveSettings(event) {
    event.preventDefault();
    const model = $("settings-model").value;
    const prompts = Object.assign({}, state.settings.customPrompts || {});
    const prompt = $("settings-prompt").value.trim();
    if (prompt) prompts[model] = prompt; else delete prompts[model];
    try {
      state.settings = await api("POST", "/api/v2/user/settings", {
        activeModel: model, customPrompts: prompts, disableStream: $("settings-nostream").checked,
        toolPolicies: window.rufloChatTools.chosenPolicies($("tool-policies")) });
      $("settings").close();
      if (!state.current) fillModels($("model"), state.models, state.settings.activeModel);
      toast("Settings saved.");
    } catch (error) { toast(error.message); }
  }

  async function deleteAll() {
    if (!window.confirm("Delete all your conversations? This can't be undone.")) return;
    try {
      const answer = await api("DELETE", "/api/v2/conversations");
      $("settings").close();
      toast(answer.deleted + " conversations deleted.");
      await loadConversations(true);
      newChat(true);
    } catch (error) { toast(error.message); }
  }

  async function exportData(event) {
    event.preventDefault();
    try {
      const data = await api("GET", "/api/v2/export");
      const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
      const link = el("a", { href: URL.createObjectURL(blob), download: "ruflo-export.json" });
      document.body.append(link);
      link.click();
      link.remove();
    } catch (error) { toast(error.message); }
  }

  // -- narrow screens ---------------------------------------------------------------------
  function closeDrawer() {
    $("conversations").classList.remove("open");
    $("toggle-conversations").setAttribute("aria-expanded", "false");
  }

  function toggleDrawer() {
    const open = $("conversations").classList.toggle("open");
    $("toggle-conversations").setAttribute("aria-expanded", open ? "true" : "false");
  }

  // -- wiring -------------------------------------------------------------------------------
  function bind() {
    const prompt = $("prompt");
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = prompt.value;
      if (!text.trim() || state.generating) return;
      prompt.value = "";
      const files = state.attached;
      state.attached = [];
      showAttached();
      send(text, { files: files });
    });
    $("attach").addEventListener("change", attachFiles);
    prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("stop").addEventListener("click", stop);
    $("new-chat").addEventListener("click", () => { newChat(true); closeDrawer(); });
    $("more-conversations").addEventListener("click", () => { state.page += 1; loadConversations(false); });
    $("rename").addEventListener("click", startRename);
    $("rename-form").addEventListener("submit", rename);
    $("rename-cancel").addEventListener("click", () => { $("rename-form").hidden = true; $("rename").focus(); });
    $("delete").addEventListener("click", remove);
    $("model").addEventListener("change", switchModel);
    $("open-settings").addEventListener("click", openSettings);
    $("settings-form").addEventListener("submit", saveSettings);
    $("settings-cancel").addEventListener("click", () => $("settings").close());
    $("delete-all").addEventListener("click", deleteAll);
    $("mcp-add").addEventListener("click", () => window.rufloChatTools.addServer(
      { name: $("mcp-name"), url: $("mcp-url"), headers: $("mcp-headers"), command: $("mcp-command") },
      $("mcp-servers"), $("tool-policies")));
    document.querySelector(".settings-links a").addEventListener("click", exportData);
    $("toggle-conversations").addEventListener("click", toggleDrawer);
    window.addEventListener("popstate", () => {
      const match = window.location.pathname.match(/^\/conversation\/([0-9a-f]{24})$/);
      if (match) openConversation(match[1], false); else newChat(false);
    });
  }

  async function start() {
    bind();
    if (boot.auth === "token" && !boot.signedIn) return;
    fillModels($("model"), [], boot.defaultModel);
    // The page is already shown; the gateway is asked only now, and never holds it up.
    const models = loadModels().then((found) => {
      state.models = found;
      const chosen = $("model").value || state.settings.activeModel || boot.defaultModel;
      fillModels($("model"), found, chosen);
      $("model-note").textContent = found.length ? "" : "the gateway offers no models right now";
    });
    try {
      state.settings = await api("GET", "/api/v2/user/settings");
      if (!boot.conversationId) fillModels($("model"), state.models, state.settings.activeModel);
      await loadConversations(true);
    } catch (error) { toast(error.message); }
    if (boot.conversationId) await openConversation(boot.conversationId, false);
    await models;
  }

  document.addEventListener("DOMContentLoaded", start);
})();
