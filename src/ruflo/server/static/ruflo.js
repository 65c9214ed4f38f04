// Shared by every page: API calls (with the bearer token when the server wants one), a
// server-sent-events reader over fetch (EventSource can't send headers), the gateway banner.
"use strict";

(function () {
  const boot = JSON.parse(document.getElementById("boot").textContent || "{}");
  const TOKEN_KEY = "ruflo.token";

  function token() {
    try { return window.localStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function headers(extra) {
    const out = Object.assign({}, extra || {});
    const t = token();
    if (t) out.Authorization = "Bearer " + t;
    return out;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function failure(response) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.message) message = body.message;
    } catch (e) { /* not JSON: keep the status line */ }
    if (response.status === 401 && boot.auth === "token") showSignIn();
    return new ApiError(response.status, message);
  }

  async function request(method, path, body, options) {
    const init = { method: method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
    if (body !== undefined) init.body = JSON.stringify(body);
    if (options && options.signal) init.signal = options.signal;
    const response = await fetch(path, init);
    if (!response.ok) throw await failure(response);
    return response;
  }

  async function api(method, path, body) {
    const response = await request(method, path, body);
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  // Calls onFrame({id, event, data}) for each event of a text/event-stream response body.
  async function readEvents(response, onFrame) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const frame = { id: null, event: null, data: "" };
        let hasData = false;
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (name === "data") { frame.data += (hasData ? "\n" : "") + value; hasData = true; }
          else if (name === "id") frame.id = value;
          else if (name === "event") frame.event = value;
        }
        if (hasData) {
          try { frame.data = JSON.parse(frame.data); } catch (e) { /* leave as text */ }
          onFrame(frame);
        }
      }
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  let toastTimer = null;
  function toast(message) {
    const box = document.getElementById("toast");
    box.textContent = message;
    box.classList.add("shown");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => box.classList.remove("shown"), 6000);
  }

  function showBanner(state) {
    const banner = document.getElementById("gateway-banner");
    if (!banner) return;
    if (!state || state.status === "ok") {
      banner.hidden = true;
      banner.dataset.status = state ? "ok" : "";
      return;
    }
    const advice = (boot.advice || {})[state.status] ||
      "Check the gateway; ruflo asks again on the next request.";
    banner.dataset.status = state.status;
    banner.querySelector(".banner-what").textContent = "Gateway: " + (state.message || state.status);
    banner.querySelector(".banner-todo").textContent = advice;
    banner.hidden = false;
  }

  // The gateway's model list, after the page is shown; the banner says what is wrong if
  // anything is. Never throws: an empty list is the answer on trouble.
  async function loadModels() {
    try {
      const response = await request("GET", "/api/v2/models");
      const models = await response.json();
      const status = response.headers.get("X-Gateway-Status") || "ok";
      if (status !== "ok") showBanner(await api("GET", "/api/v2/gateway"));
      else showBanner({ status: "ok" });
      return models;
    } catch (error) {
      if (error.status !== 401) showBanner({ status: "unknown", message: error.message });
      return [];
    }
  }

  function fillModels(select, models, chosen, blankLabel) {
    select.textContent = "";
    if (blankLabel !== undefined) select.append(el("option", { value: "", text: blankLabel }));
    const ids = models.map((m) => m.id);
    if (chosen && !ids.includes(chosen)) ids.unshift(chosen);
    for (const id of ids) {
      const model = models.find((m) => m.id === id);
      const label = model ? model.displayName : id + " (not offered by the gateway now)";
      select.append(el("option", { value: id, text: label }));
    }
    if (chosen) select.value = chosen;
  }

  function showSignIn() {
    const form = document.getElementById("signin-form");
    if (form) { form.querySelector("input").focus(); return; }
    toast("The server no longer accepts your token. Clear this site's data and sign in again.");
  }

  function bindSignIn() {
    const form = document.getElementById("signin-form");
    if (!form) return;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = form.querySelector("input").value.trim();
      if (!value) return;
      try { window.localStorage.setItem(TOKEN_KEY, value); } catch (e) { /* private mode */ }
      document.cookie = "ruflo_token=" + encodeURIComponent(value) + "; path=/; SameSite=Strict";
      window.location.reload();
    });
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  }

  function money(value) {
    if (value === null || value === undefined) return "unknown";
    return "$" + Number(value).toFixed(value >= 1 ? 2 : 4);
  }

  document.addEventListener("DOMContentLoaded", bindSignIn);
  window.ruflo = { boot, api, request, readEvents, el, toast, showBanner, loadModels,
                   fillModels, headers, when, money, ApiError };
})();
