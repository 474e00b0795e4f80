// Node: the live supervision tree (this node's, or another's as it answers REQOpProcessList).
"use strict";

function treeRows(entry, depth, rows) {
  const { el, duration } = steward;
  const info = Object.entries(entry.info || {})
    .filter(([key, value]) => key !== "path" && value !== null && value !== "")
    .map(([key, value]) => `${key}=${typeof value === "object" ? JSON.stringify(value) : value}`);
  const failure = entry.last_failure;
  if (failure) info.push(`last failure ${duration(failure.seconds_ago)} ago: ${failure.reason}`);
  const name = el("td", { class: "process" }, entry.id);
  name.style.paddingLeft = `${0.3 + depth * 1.4}em`; // a style property: the CSP forbids inline styles
  rows.push(el("tr", { "data-process": entry.id, class: "state-" + (entry.state || "") },
    name,
    el("td", {}, entry.strategy || entry.kind || ""),
    el("td", { class: "state" }, entry.state || ""),
    el("td", { class: "restarts" }, entry.restart_count || 0),
    el("td", {}, duration(entry.uptime)),
    el("td", { class: "info" }, info.join(" "))));
  for (const child of entry.children || []) treeRows(child, depth + 1, rows);
  return rows;
}

function openTree() {
  const { el } = steward;
  const section = document.getElementById("tree");
  const name = section.dataset.node;
  const state = document.getElementById("tree-state");
  const again = document.getElementById("refresh");
  again.hidden = true;
  state.textContent = "waiting for the tree…";
  const url = "/api/nodes/" + encodeURIComponent(name) + "/tree/events";
  steward.stream(url, (event, source) => {
    const when = new Date((event.time || Date.now() / 1000) * 1000).toLocaleTimeString();
    if (event.event === "tree" && event.tree) {
      const header = el("tr", {}, ...["Process", "Kind", "State", "Restarts", "Uptime", "Info"]
        .map((title) => el("th", {}, title)));
      section.replaceChildren(el("table", { class: "tree" },
        el("thead", {}, header), el("tbody", {}, ...treeRows(event.tree, 0, []))));
      state.textContent = `live, as of ${when}`;
    } else if (event.event === "tree") {
      section.replaceChildren(el("pre", { class: event.error ? "tree bad" : "tree" }, event.text));
      state.textContent = `as ${name} answered at ${when}; asked again every few seconds`;
    } else if (event.event === "unanswered" || event.event === "error") {
      source.close();
      state.textContent = event.error || `${name} did not answer`;
      again.hidden = false;
    }
  }, () => {
    state.textContent = "the stream closed";
    again.hidden = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("refresh").addEventListener("click", openTree);
  openTree();
});
