// Errors: the central error log, its last lines and then each new one as it is written.
"use strict";

const KEEP_LINES = 2000;

document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  const state = document.getElementById("log-state");
  steward.stream("/api/errors/events?lines=200", (event) => {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    if (event.first) log.replaceChildren(); // the stream opened again: it starts over
    for (const line of event.lines) log.append(steward.el("div", { class: "line" }, line));
    while (log.childElementCount > KEEP_LINES) log.firstElementChild.remove();
    state.textContent = log.childElementCount
      ? `live: ${log.childElementCount} lines shown`
      : "live: the error log is empty";
    if (atBottom) log.scrollTop = log.scrollHeight;
  }, () => { state.textContent = "the stream closed; reload the page"; });
});
