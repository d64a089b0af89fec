// Conveyor console: confirm dialogs for forms that change things, and live trace pages.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// A trace page polls its JSON every 2 s while the trace is young or spans keep arriving,
// and reloads its waterfall when something changed.
function pollTrace(box) {
  const base = document.body.dataset.base;
  const id = box.dataset.trace;
  let spans = box.dataset.spans;
  let ended = box.dataset.ended;
  let changedAt = Date.now();
  const started = parseFloat(box.dataset.started) * 1000;
  const tick = async () => {
    try {
      const answer = await fetch(`${base}/api/traces/${encodeURIComponent(id)}`, { headers: { Accept: "application/json" } });
      if (answer.ok) {
        const trace = await answer.json();
        if (String(trace.spans) !== spans || String(trace.endedAt) !== ended) {
          spans = String(trace.spans);
          ended = String(trace.endedAt);
          changedAt = Date.now();
          const open = new Set([...box.querySelectorAll("details[open]")].map((d) => d.closest("li") && d.closest("li").id));
          const fragment = await fetch(`${base}/traces/${encodeURIComponent(id)}?fragment=1`);
          if (fragment.ok) {
            box.innerHTML = await fragment.text();
            open.forEach((li) => { const d = li && document.getElementById(li); if (d) d.querySelector("details").open = true; });
          }
        }
      }
    } catch (error) {
      // the gateway restarting: try again on the next tick
    }
    const now = Date.now();
    if (now - started < 60000 || now - changedAt < 60000) {
      window.setTimeout(tick, 2000);
    }
  };
  window.setTimeout(tick, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("waterfall");
  if (box && box.dataset.live) {
    pollTrace(box);
  }
  if (location.hash.startsWith("#span-")) {
    const target = document.getElementById(location.hash.slice(1));
    if (target) {
      target.classList.add("target");
      target.querySelectorAll("details.more").forEach((d) => { d.open = true; });
    }
  }
});
