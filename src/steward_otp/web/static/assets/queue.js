// Queue: the messages held in the outbox; cancel the active ones, retry the stopped ones.
"use strict";

let queueFilter = new URLSearchParams(location.search).get("toNode") || "";

async function act(operation, id) {
  try {
    await steward.postJSON("/api/queue/" + operation, { id });
    await showQueue();
  } catch (error) {
    steward.problem(error.message);
  }
}

async function showQueue() {
  const { el, duration } = steward;
  const query = queueFilter ? "?toNode=" + encodeURIComponent(queueFilter) : "";
  const data = await steward.getJSON("/api/queue" + query);
  const rows = data.messages.map((m) => {
    const active = m.state === "queued" || m.state === "in_flight";
    const button = active
      ? el("button", { type: "button", class: "cancel", onclick: () => act("cancel", m.id) }, "Cancel")
      : el("button", { type: "button", class: "retry", onclick: () => act("retry", m.id) }, "Retry");
    return el("tr", { "data-id": m.id, "data-node": m.toNode },
      el("td", { class: "id" }, m.id), el("td", {}, m.toNode), el("td", {}, m.method),
      el("td", { class: "state" }, m.state), el("td", {}, m.attempts),
      el("td", {}, duration(m.age)), el("td", {}, m.reason || ""), el("td", {}, button));
  });
  document.querySelector("#queue tbody").replaceChildren(...rows);
  document.getElementById("empty").hidden = rows.length > 0;
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("to-node");
  input.value = queueFilter;
  document.getElementById("filter").addEventListener("submit", (event) => {
    event.preventDefault();
    queueFilter = input.value.trim();
    showQueue().catch((error) => steward.problem(error.message));
  });
  steward.every(3, showQueue);
});
