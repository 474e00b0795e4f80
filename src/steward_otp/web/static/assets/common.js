// Shared by every page: API calls with the session's CSRF token, DOM building, streams.
"use strict";

const steward = (() => {
  let sessionInfo = null;

  async function check(response) {
    if (response.status === 401) {
      const here = location.pathname + location.search;
      location.href = "/login?next=" + encodeURIComponent(here);
      throw new Error("not logged in");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error || response.status + " " + response.statusText);
      error.body = body;
      throw error;
    }
    return body;
  }

  async function getJSON(url) {
    return check(await fetch(url, { credentials: "same-origin" }));
  }

  async function session() {
    if (sessionInfo === null) sessionInfo = await getJSON("/api/session");
    return sessionInfo;
  }

  async function postJSON(url, data) {
    const { csrf } = await session();
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf || "" },
      body: JSON.stringify(data),
    });
    return check(response);
  }

  // el("td", {class: "x"}, "text", child...): text is always text, never HTML.
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    let s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d" + String(Math.floor(s % 86400 / 3600)).padStart(2, "0") + "h";
  }

  // Server-sent events; onEvent gets each JSON object. The caller closes the source when
  // the stream says it ended, so the browser does not open it again by itself.
  function stream(url, onEvent, onProblem) {
    const source = new EventSource(url);
    source.onmessage = (message) => onEvent(JSON.parse(message.data), source);
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED && onProblem) onProblem(source);
    };
    return source;
  }

  function problem(text) {
    const where = document.getElementById("problem");
    if (where) where.textContent = text || "";
  }

  function every(seconds, task) {
    const run = () => task().then(() => problem(""), (error) => problem(error.message));
    run();
    return setInterval(run, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = location.pathname.split("/")[1];
    for (const link of document.querySelectorAll("nav a")) {
      const target = link.dataset.page === "node" ? "nodes" : link.dataset.page;
      if (target === page) link.classList.add("current");
    }
    const logout = document.getElementById("logout");
    if (logout) {
      logout.addEventListener("click", async () => {
        await postJSON("/logout", {}).catch(() => null);
        location.href = "/login";
      });
    }
  });

  return { getJSON, postJSON, session, el, duration, stream, problem, every };
})();
