// Send: compose a command (or a message document), pick nodes, watch each node's replies.
"use strict";

function chosenNodes() {
  const picked = [...document.querySelectorAll("#node-choices input:checked")].map((box) => box.value);
  const others = document.getElementById("other-nodes").value.split(",").map((n) => n.trim());
  return [...new Set([...picked, ...others.filter((n) => n)])];
}

function panelFor(node) {
  const { el } = steward;
  const replies = document.getElementById("replies");
  let panel = replies.querySelector(`[data-node="${CSS.escape(node)}"]`);
  if (!panel) {
    panel = el("article", { class: "reply", "data-node": node },
      el("h2", {}, node), el("p", { class: "state" }, "waiting…"));
    replies.append(panel);
  }
  return panel;
}

// The server closes idle-looking connections now and then (it reads nothing from an event
// stream); the watch then opens again with the time left, and replies already shown are
// not shown twice.
function watchReplies(watch, timeout, nodesById) {
  const { el } = steward;
  const summary = document.getElementById("send-summary");
  const seen = new Set();
  const started = Date.now();
  let ended = false;
  summary.textContent = "waiting for the replies…";

  function onEvent(event, source) {
    if (event.event === "reply") {
      if (seen.has(event.replyId)) return;
      seen.add(event.replyId);
      const panel = panelFor(event.node);
      panel.classList.toggle("bad", Boolean(event.error));
      panel.querySelector(".state").textContent = event.error ? "error" : "replied";
      panel.append(el("pre", { class: event.error ? "output bad" : "output" }, event.output || "(no output)"));
    } else if (event.event === "state") {
      const panel = panelFor(event.node || nodesById[event.id] || "?");
      if (!panel.querySelector("pre") || event.state !== "delivered") {
        const why = event.reason ? `: ${event.reason}` : "";
        panel.querySelector(".state").textContent = event.state + why;
      }
    } else if (event.event === "end") {
      ended = true;
      source.close();
      for (const message of event.messages) {
        const panel = panelFor(message.node || nodesById[message.id] || "?");
        if (!message.replies) panel.querySelector(".state").textContent = message.state + ` (id ${message.id})`;
      }
      summary.textContent = event.text;
    }
  }

  function open(seconds) {
    const query = new URLSearchParams({
      ids: watch.ids.join(","),
      deliveryIds: watch.deliveryIds.join(","),
      afterSeq: String(watch.afterSeq),
      timeout: String(seconds),
    });
    const source = new EventSource("/api/replies?" + query);
    source.onmessage = (message) => onEvent(JSON.parse(message.data), source);
    source.onerror = () => {
      source.close();
      if (ended) return;
      const left = timeout - (Date.now() - started) / 1000;
      if (left >= 1) setTimeout(() => open(Math.floor(left)), 500);
      else summary.textContent = "the reply stream closed before the end; see the queue";
    };
  }

  open(timeout);
}

async function send(event) {
  event.preventDefault();
  const { el } = steward;
  steward.problem("");
  document.getElementById("answers").replaceChildren();
  document.getElementById("replies").replaceChildren();
  document.getElementById("send-summary").textContent = "";
  const mode = document.querySelector("input[name=mode]:checked").value;
  const timeout = Number(document.getElementById("timeout").value || "60");
  const body = mode === "command"
    ? { nodes: chosenNodes(), command: document.getElementById("command").value }
    : { document: document.getElementById("document").value };
  let result;
  try {
    result = await steward.postJSON("/api/send", body);
  } catch (error) {
    if (!error.body || !error.body.answers) {
      steward.problem(error.message);
      return;
    }
    result = error.body;
  }
  const nodesById = {};
  const answers = result.answers.map((answer) => {
    if (answer.status === "accepted") {
      nodesById[answer.id] = answer.toNode;
      panelFor(answer.toNode);
      return el("li", { class: "accepted" }, `${answer.toNode}: accepted, id ${answer.id}`,
        ...answer.warnings.map((w) => el("div", { class: "warning" }, "warning: " + w)));
    }
    return el("li", { class: "rejected bad" }, "rejected: " + answer.error,
      ...answer.warnings.map((w) => el("div", { class: "warning" }, "warning: " + w)));
  });
  document.getElementById("answers").replaceChildren(...answers);
  if (!result.sent) {
    steward.problem("Nothing was sent: fix the message above.");
    return;
  }
  if (result.watch.ids.length || result.watch.deliveryIds.length) {
    watchReplies(result.watch, timeout, nodesById);
  }
}

async function showNodeChoices() {
  const { el } = steward;
  const data = await steward.getJSON("/api/fleet");
  const choices = data.nodes.map((node) =>
    el("label", { class: "choice" },
      el("input", { type: "checkbox", value: node.node, name: "node" }), " ", node.node));
  document.getElementById("node-choices").replaceChildren(...choices);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("send").addEventListener("submit", send);
  showNodeChoices().catch((error) => steward.problem(error.message));
});
