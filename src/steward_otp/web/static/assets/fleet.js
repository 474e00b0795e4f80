// Fleet: every node heard from, refreshed every few seconds.
"use strict";

async function showFleet() {
  const { el, duration } = steward;
  const data = await steward.getJSON("/api/fleet");
  const status = data.status;
  const security = status.security || {};
  document.getElementById("summary").textContent =
    `${status.node}: broker ${status.broker} ${status.connection}; delivery ` +
    `${(status.delivery || {}).mode || "core"}; signature check ` +
    (security.signature_check ? "on" : "OFF");
  const rows = data.nodes.map((node) =>
    el("tr", { "data-node": node.node },
      el("td", {}, el("a", { href: "/nodes/" + encodeURIComponent(node.node) }, node.node),
        node.self ? " (this node)" : ""),
      el("td", { class: "hello" }, node.helloAge === null ? "never" : duration(node.helloAge) + " ago"),
      el("td", { class: "queued" }, node.queued),
      el("td", { class: node.failed ? "failed bad" : "failed" }, node.failed),
      el("td", { class: "key" }, node.key || "-"),
      el("td", {}, el("a", { href: "/queue?toNode=" + encodeURIComponent(node.node) }, "queue"))));
  document.querySelector("#fleet tbody").replaceChildren(...rows);
}

document.addEventListener("DOMContentLoaded", () => steward.every(3, showFleet));
