// The outbox page: the list stays live through server-sent events (/api/v1/events); one email's
// page revokes its links and shows their state. Plain JavaScript, no build step. Every value from
// an email goes into the page as text (textContent), never as markup.
"use strict";

function cell(tr, className, text) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (text !== undefined) td.textContent = text;
  tr.appendChild(td);
  return td;
}

function row(m) {
  const tr = document.createElement("tr");
  tr.dataset.id = m.id;
  tr.dataset.outcome = m.outcome;
  cell(tr, "time", (m.time || "").slice(0, 19).replace("T", " "));
  cell(tr, "sender", m.sender);
  const link = document.createElement("a");
  link.href = "/message/" + encodeURIComponent(m.id);
  link.textContent = m.subject || "(no subject)";
  cell(tr, "subject").appendChild(link);
  const badge = document.createElement("span");
  badge.className = "badge " + m.outcome;
  badge.textContent = m.outcome;
  cell(tr).appendChild(badge);
  cell(tr, "num recipients", String(m.recipients));
  cell(tr, "num attachments", String(m.attachments));
  return tr;
}

function matches(m, outcome, query) {
  if (outcome && m.outcome !== outcome) return false;
  if (!query) return true;
  const q = query.toLowerCase();
  return (m.subject || "").toLowerCase().includes(q) || (m.sender || "").toLowerCase().includes(q);
}

async function liveList(table) {
  const all = new Map();
  const outcome = document.getElementById("outcome");
  const query = document.getElementById("query");
  const render = () => {
    const shown = [...all.values()].filter((m) => matches(m, outcome.value, query.value.trim()));
    shown.sort((a, b) => b.seq - a.seq);
    table.tBodies[0].replaceChildren(...shown.map(row));
    document.getElementById("empty").hidden = shown.length > 0;
    const params = new URLSearchParams();
    if (outcome.value) params.set("outcome", outcome.value);
    if (query.value.trim()) params.set("query", query.value.trim());
    history.replaceState(null, "", params.size ? "?" + params : "/");
  };
  const listed = await (await fetch("/api/v1/messages")).json();
  for (const m of listed.messages) all.set(m.id, m);
  outcome.addEventListener("change", render);
  query.addEventListener("input", render);
  document.getElementById("filters").addEventListener("submit", (e) => { e.preventDefault(); render(); });
  render();
  const events = new EventSource("/api/v1/events?since=" + listed.version);
  events.addEventListener("open", () => { document.getElementById("live").hidden = false; });
  events.addEventListener("error", () => { document.getElementById("live").hidden = true; });
  events.addEventListener("message", (e) => {
    const m = JSON.parse(e.data);
    all.set(m.id, m);
    render();
  });
}

function showLinks(states) {
  states.forEach((s, i) => {
    const span = document.querySelector(`tr[data-link="${i}"] .state`);
    if (!span) return;
    span.className = "state " + s.state.replace(" ", "-");
    span.textContent = s.state;
    span.title = s.detail;
  });
}

function journey(section) {
  const button = document.getElementById("revoke");
  if (button) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      const result = document.getElementById("revoke-result");
      const response = await fetch(button.dataset.url, { method: "POST", headers: { "X-Sensormail-Outbox": "1" } });
      if (!response.ok) {
        result.textContent = "revoke failed: " + (await response.text());
        button.disabled = false;
        return;
      }
      const body = await response.json();
      result.textContent = `revoked: ${body.revoked.length} file(s) moved under revoked/`;
      showLinks(body.links);
    });
  }
  // The worker may settle this email after the page was drawn: draw it again then.
  const events = new EventSource("/api/v1/events");
  events.addEventListener("message", (e) => {
    const m = JSON.parse(e.data);
    if (m.id !== section.dataset.id) return;
    const drawn = section.dataset;
    if (m.outcome !== drawn.outcome || String(m.attachments) !== drawn.attachments
        || String(m.emails_sent) !== drawn.emailsSent || String(m.notice_published) !== drawn.noticePublished) {
      location.reload();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("messages");
  if (table) liveList(table);
  const section = document.getElementById("journey");
  if (section) journey(section);
});
