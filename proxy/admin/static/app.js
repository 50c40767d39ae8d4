// memory-runtime inspector: plain JavaScript, no dependencies, no build step.
// Reads the /memory/* JSON routes as whoever the credentials typed in the header say: an API key
// (Authorization: Bearer; your own sessions), a tenant's or the operator's token
// (X-Memory-Access-Token; the operator sees every session, with its owner). They live in this
// page's memory only, never in localStorage, sessionStorage or a cookie: a reload forgets them.
// Stored content is only ever inserted as text, never as markup.
"use strict";

const PAGE = 50;
const PREVIEW = 600;
const credentials = { token: "", apikey: "" };
let identity = null; // GET /memory/whoami for the current credentials
let listCursors = [null]; // `after` cursor of each session-list page seen, for "Previous"
let flash = null; // a notice to show once the next view is drawn (e.g. after an erase)

// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–");
const sessionHash = (id) => "#/s/" + encodeURIComponent(id);

function headers() {
  const out = {};
  if (credentials.token) out["X-Memory-Access-Token"] = credentials.token;
  if (credentials.apikey) out["Authorization"] = "Bearer " + credentials.apikey;
  return out;
}

async function api(path, options) {
  const response = await fetch(path, { ...(options || {}), headers: headers(), credentials: "omit", cache: "no-store" });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    const err = new Error(message + " (" + response.status + ")");
    err.status = response.status;
    throw err;
  }
  return body;
}

const sessionPath = (id, rest) => "/memory/sessions/" + encodeURIComponent(id) + (rest || "");

function notice(text, kind) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = kind || "";
  box.hidden = !text;
}

function ask(text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

function section(title, id, ...body) {
  return el("section", { id }, el("h2", { text: title }), ...body);
}

function preview(text, reason) {
  if (text === null || text === undefined) {
    return el("p", { class: "muted", text: reason === "system" ? "(the app's own system message: memory does not store it)" : "(text not stored)" });
  }
  const long = text.length > PREVIEW;
  const pre = el("pre", { class: "text" }, long ? text.slice(0, PREVIEW) + " …" : text);
  if (!long) return pre;
  const more = el("button", { class: "link", type: "button", text: "show all " + fmt(text.length) + " characters",
    onclick: () => { pre.textContent = text; more.remove(); } });
  return el("div", {}, pre, more);
}

// ---------------------------------------------------------------- who the page is signed in as

async function signIn() {
  const box = document.getElementById("whoami");
  identity = null;
  try {
    identity = await api("/memory/whoami");
  } catch (err) {
    box.textContent = "not signed in";
    box.className = "whoami none";
    return;
  }
  const label = identity.operator ? "operator (every session)" : identity.kind === "tenant" ? "tenant " + identity.principal.slice(2)
    : identity.kind === "key" ? "API key " + identity.principal : "no key (local)";
  box.textContent = "signed in as " + label;
  box.className = "whoami " + (identity.operator ? "operator" : identity.kind);
  box.title = identity.principal;
}

// ---------------------------------------------------------------- session list

async function usageLine() {
  const usage = await api("/memory/usage?limit=1");
  const t = usage.totals;
  return el("p", { class: "facts", id: "usage" }, `${fmt(usage.sessions)} sessions · ${fmt(t.turns)} prompts forwarded · ` +
    `${fmt(t.sent_tokens)} tokens sent by clients, ${fmt(t.forwarded_tokens)} forwarded, ${fmt(t.cached_tokens)} cached by the provider`);
}

async function renderList(view, params) {
  const q = params.get("q") || "";
  const after = params.get("after");
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (q) query.set("q", q);
  if (after) query.set("after", after);
  const [page, usage] = await Promise.all([api("/memory/sessions?" + query), usageLine()]);
  const owners = Boolean(identity && identity.operator);
  const search = el("input", { type: "search", id: "search", value: q, placeholder: "part of a session id", "aria-label": "search sessions" });
  const form = el("form", { id: "search-form", onsubmit: (e) => {
    e.preventDefault();
    listCursors = [null];
    location.hash = "#/?q=" + encodeURIComponent(search.value.trim());
  } }, search, el("button", { type: "submit", text: "Search" }));
  const rows = page.data.map((s) => el("tr", {},
    el("td", {}, el("a", { href: sessionHash(s.id), class: "session-link", text: s.id })),
    owners ? el("td", { class: "owner", text: s.owner || "(none)" }) : null,
    el("td", { class: "num", text: fmt(s.events) }), el("td", { class: "num", text: fmt(s.messages) }),
    el("td", { class: "num", text: fmt(s.artifacts) }), el("td", { text: when(s.updated_at) })));
  const columns = ["session", owners ? "owner" : null, "events", "messages", "artifacts", "updated"].filter(Boolean);
  const table = el("table", { id: "sessions" },
    el("thead", {}, el("tr", {}, columns.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: columns.length, class: "muted", text: "no sessions" }))));
  const index = listCursors.indexOf(after || null);
  const go = (cursor) => {
    const next = new URLSearchParams();
    if (q) next.set("q", q);
    if (cursor) next.set("after", cursor);
    location.hash = "#/?" + next;
  };
  const pager = el("nav", { class: "pager" },
    el("button", { type: "button", id: "prev", disabled: index <= 0, text: "‹ Previous", onclick: () => go(listCursors[index - 1]) }),
    el("button", { type: "button", id: "next", disabled: !page.has_more, text: "Next ›", onclick: () => {
      if (!listCursors.includes(page.last_id)) listCursors.push(page.last_id);
      go(page.last_id);
    } }));
  view.replaceChildren(section("Sessions", "list", usage, form, table, pager));
}

// ---------------------------------------------------------------- one session

function costChart(turns) {
  const width = 720, height = 200, pad = 36;
  const series = [["sent_tokens", "sent by the client", "sent"], ["forwarded_tokens", "forwarded", "forwarded"],
    ["cached_tokens", "cached by the provider", "cached"]];
  const top = Math.max(1, ...turns.flatMap((t) => series.map(([k]) => t[k] || 0)));
  const x = (i) => pad + (turns.length === 1 ? (width - 2 * pad) / 2 : (i * (width - 2 * pad)) / (turns.length - 1));
  const y = (v) => height - pad + 4 - ((v || 0) / top) * (height - 2 * pad);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": "tokens per turn" });
  chart.append(svg("line", { x1: pad, y1: y(0), x2: width - pad, y2: y(0), class: "axis" }));
  const label = (text, attrs) => { const t = svg("text", attrs); t.textContent = text; return t; };
  chart.append(label(fmt(top), { x: 2, y: y(top) + 4, class: "tick" }), label("0", { x: 2, y: y(0) + 4, class: "tick" }));
  chart.append(label("turn 1", { x: pad, y: height - 6, class: "tick" }),
    label("turn " + turns.length, { x: width - pad, y: height - 6, class: "tick end" }));
  for (const [key, , cls] of series) {
    const points = turns.map((t, i) => `${x(i).toFixed(1)},${y(t[key]).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points, class: "series " + cls }));
    if (turns.length <= 60) turns.forEach((t, i) => chart.append(svg("circle", { cx: x(i), cy: y(t[key]), r: 2.5, class: "dot " + cls })));
  }
  const readout = el("p", { class: "readout muted", text: "point at the chart to read a turn" });
  chart.addEventListener("mousemove", (event) => {
    const box = chart.getBoundingClientRect();
    const at = ((event.clientX - box.left) / box.width) * width;
    const i = Math.max(0, Math.min(turns.length - 1, Math.round(((at - pad) / (width - 2 * pad)) * (turns.length - 1))));
    const t = turns[i];
    readout.textContent = `turn ${t.n} (${t.mode}, ${t.model}): sent ${fmt(t.sent_tokens)}, forwarded ${fmt(t.forwarded_tokens)}, ` +
      `cached ${fmt(t.cached_tokens)}, completion ${fmt(t.completion_tokens)}`;
  });
  const legend = el("ul", { class: "legend" }, series.map(([, name, cls]) => el("li", { class: cls, text: name })));
  return el("div", {}, chart, legend, readout);
}

function costSection(usage, turns) {
  const share = usage.cached_share === null ? "–" : (usage.cached_share * 100).toFixed(1) + "%";
  const totals = el("dl", { class: "totals", id: "cost-totals" },
    [["turns", fmt(usage.turns)], ["tokens sent", fmt(usage.sent_tokens)], ["forwarded", fmt(usage.forwarded_tokens)],
      ["cached", fmt(usage.cached_tokens) + " (" + share + " of prompt)"], ["completion", fmt(usage.completion_tokens)],
      ["saved vs resending", fmt(usage.saved_tokens)]].map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: v }))));
  const body = turns.length ? costChart(turns) : el("p", { class: "muted", text: "no prompt forwarded yet" });
  return section("Cost per turn", "cost", totals, body);
}

function itemRow(item, index) {
  const score = item.score === null || item.score === undefined ? "–" : Number(item.score).toFixed(3);
  return el("li", { class: "item reason-" + item.reason },
    el("div", { class: "meta" },
      el("span", { class: "pos", text: "#" + (index + 1) }), el("span", { class: "badge", text: item.reason }),
      el("span", { text: item.kind || "" }), el("span", { class: "muted", text: item.source || "" }),
      el("span", { class: "num", text: "score " + score }), el("span", { class: "num tokens", text: fmt(item.tokens) + " tokens" })),
    preview(item.text, item.reason));
}

function promptSection(prompt) {
  if (!prompt) return section("Last prompt", "prompt", el("p", { class: "muted", text: "no prompt compiled yet" }));
  const frame = prompt.frame || {};
  const facts = el("p", { class: "facts" },
    `mode ${prompt.mode} · ${fmt(prompt.total_tokens)} of ${fmt(prompt.budget_tokens)} tokens · model ${prompt.model}` +
    (frame.window_start !== undefined ? ` · window from turn ${frame.window_start + 1}` : "") +
    (prompt.need ? ` · need ${prompt.need.need}` : ""));
  const included = el("ol", { class: "items", id: "included" }, (prompt.included || []).map(itemRow));
  const dropped = prompt.dropped || [];
  const droppedList = dropped.length
    ? el("ol", { class: "items dropped", id: "dropped" }, dropped.map(itemRow))
    : el("p", { class: "muted", text: "nothing dropped" });
  return section("Last prompt, as the model saw it", "prompt", facts, included,
    el("h3", { text: `Dropped (${fmt(prompt.dropped_count || dropped.length)})` }), droppedList, compactionList(prompt.compaction));
}

function compactionList(compaction) {
  // What the live tail's compaction stubbed, pointed, diffed, shortened or dropped, and what each saved.
  if (!compaction) return null;
  const counts = Object.entries(compaction.counts || {}).map(([k, v]) => `${v} ${k}`).join(", ");
  const rows = (compaction.changes || []).map((c) => el("li", { class: "item reason-compacted" },
    el("div", { class: "meta" },
      el("span", { class: "pos", text: "tail #" + (c.index + 1) }), el("span", { class: "badge", text: c.kind }),
      el("span", { text: c.tool || "" }), el("span", { class: "muted", text: c.call_id + (c.target ? " → " + c.target : "") }),
      el("span", { class: "muted", text: c.artifact || "" }),
      el("span", { class: "num tokens", text: `${fmt(c.tokens_before)} → ${fmt(c.tokens_after)} tokens (saved ${fmt(c.saved)})` }))));
  return el("div", { id: "compaction" },
    el("h3", { text: `Compacted tool loop (${counts}; saved ${fmt(compaction.saved)} of ${fmt(compaction.tokens_before)} tokens)` }),
    el("ol", { class: "items" }, rows));
}

function eventRow(e) {
  const who = e.role ? e.role : e.type;
  return el("li", { class: "event" + (e.detached ? " detached" : ""), "data-event": e.id },
    el("div", { class: "meta" }, el("span", { class: "pos", text: "event " + e.id }), el("span", { class: "badge", text: who }),
      e.source ? el("span", { class: "muted", text: e.source }) : null, e.detached ? el("span", { class: "badge warn", text: "detached" }) : null,
      el("span", { class: "muted", text: when(e.created_at) })),
    preview(e.content));
}

function stateSection(session, state) {
  const groups = [["decisions", "Decisions"], ["constraints", "Constraints"], ["open_questions", "Open questions"], ["glossary", "Glossary"]];
  const lists = groups.map(([key, title]) => {
    const items = state[key] || [];
    if (!items.length) return null;
    return el("div", { class: "state-group" }, el("h3", { text: title }), el("ul", {}, items.map((item) => {
      const sources = el("ol", { class: "items sources" });
      const ids = item.source_events || [];
      const button = el("button", { type: "button", class: "link", text: `from event${ids.length > 1 ? "s" : ""} ${ids.join(", ")}`,
        onclick: async () => {
          const found = await api(sessionPath(session, "/events?ids=" + ids.join(",")));
          sources.replaceChildren(...found.data.map(eventRow));
        } });
      return el("li", { class: "state-item" }, el("strong", { text: item.id + " " }), item.text, " ", button, sources);
    })));
  }).filter(Boolean);
  return section("State", "state", lists.length ? lists : el("p", { class: "muted", text: "no decisions, constraints, questions or glossary yet" }));
}

function artifactsSection(session, page) {
  const bySource = new Map();
  for (const a of page.data) {
    const key = (a.source || "(no source)") + " · " + a.kind;
    if (!bySource.has(key)) bySource.set(key, []);
    bySource.get(key).push(a);
  }
  const content = el("div", { id: "artifact-content" });
  const rows = [...bySource.entries()].map(([key, versions]) => el("li", {}, el("strong", { text: key }), " ",
    versions.map((a) => el("button", { type: "button", class: "link version", text: `v${a.version} (#${a.id}, ${fmt(a.chars)} chars)`,
      onclick: async () => {
        const full = await api(sessionPath(session, "/artifacts/" + a.id));
        content.replaceChildren(el("h3", { text: `${full.source || full.kind} v${full.version} · sha256 ${full.sha256.slice(0, 12)}` }),
          el("pre", { class: "text" }, full.content));
      } }))));
  const more = page.has_more ? el("p", { class: "muted", text: "more artifacts than shown: export the session to see them all" }) : null;
  return section("Artifacts and versions", "artifacts",
    rows.length ? el("ul", { class: "artifacts" }, rows) : el("p", { class: "muted", text: "no artifacts" }), more, content);
}

function eventsSection(session, first) {
  const list = el("ol", { class: "items", id: "events" }, first.data.map(eventRow));
  const older = el("button", { type: "button", id: "older", text: "Older events", disabled: !first.has_more });
  let cursor = first.next_before;
  older.addEventListener("click", async () => {
    const page = await api(sessionPath(session, `/events?limit=${PAGE}&before=${cursor}`));
    list.append(...page.data.map(eventRow));
    cursor = page.next_before;
    older.disabled = !page.has_more;
  });
  return section("Event log (newest first)", "log", list, older);
}

async function exportSession(id) {
  if (!(await ask(`Download everything stored for session "${id}" as a JSON file?`, "Export"))) return;
  const data = await api(sessionPath(id, "/export"));
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const link = el("a", { href: URL.createObjectURL(blob), download: "memory-session-" + id.replace(/[^A-Za-z0-9._-]+/g, "_") + ".json" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  notice(`exported session "${id}"`);
}

async function eraseSession(id) {
  if (!(await ask(`Erase session "${id}" for good? Its events, artifacts, state and costs are deleted; this cannot be undone.`, "Erase"))) return;
  await api(sessionPath(id), { method: "DELETE" });
  flash = `session "${id}" erased`;
  location.hash = "#/";
}

async function renderSession(view, id) {
  const missing = (err) => { if (err.status === 404) return null; throw err; };
  const [info, prompt, turns, artifacts, events] = await Promise.all([
    api(sessionPath(id)), api(sessionPath(id, "/prompt")).catch(missing), api(sessionPath(id, "/turns")),
    api(sessionPath(id, "/artifacts?limit=200")), api(sessionPath(id, `/events?limit=${PAGE}`)),
  ]);
  const c = info.counts;
  const head = el("section", { id: "session-head" },
    el("p", {}, el("a", { href: "#/", text: "‹ all sessions" })),
    el("h1", { text: id }),
    el("p", { class: "facts" }, `${fmt(c.events)} events · ${fmt(c.messages)} messages · ${fmt(c.artifacts)} artifacts · ` +
      `${fmt(c.chunks)} chunks · updated ${when(info.updated_at)}`),
    el("div", { class: "actions" },
      el("button", { type: "button", id: "export", text: "Export…", onclick: () => exportSession(id).catch(fail) }),
      el("button", { type: "button", id: "erase", class: "danger", text: "Erase…", onclick: () => eraseSession(id).catch(fail) })));
  view.replaceChildren(head, costSection(info.usage, turns.data), promptSection(prompt), stateSection(id, info.state),
    artifactsSection(id, artifacts), eventsSection(id, events));
}

// ---------------------------------------------------------------- routing

function fail(err) {
  notice(err.status === 401 ? "not allowed: enter an access token or your API key above" : String(err.message || err), "error");
}

async function route() {
  const view = document.getElementById("view");
  const hash = location.hash || "#/";
  document.body.dataset.loaded = "";
  notice(flash || "");
  flash = null;
  try {
    if (hash.startsWith("#/s/")) {
      await renderSession(view, decodeURIComponent(hash.slice(4)));
      document.body.dataset.loaded = "session";
    } else {
      const params = new URLSearchParams(hash.includes("?") ? hash.slice(hash.indexOf("?") + 1) : "");
      await renderList(view, params);
      document.body.dataset.loaded = "list";
    }
    // Time from navigation start to the page drawn with its data (read by the benchmark).
    requestAnimationFrame(() => { window.inspectorReadyMs = performance.now(); });
  } catch (err) {
    view.replaceChildren();
    fail(err);
    document.body.dataset.loaded = "error";
  }
}

function start() {
  const form = document.getElementById("credentials");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const name of ["token", "apikey"]) credentials[name] = document.getElementById(name).value.trim();
    listCursors = [null];
    await signIn();
    // Another identity sees other sessions: start again from its list.
    if (location.hash && location.hash !== "#/") location.hash = "#/"; else route();
  });
  window.addEventListener("hashchange", route);
  signIn().then(route);
}

document.addEventListener("DOMContentLoaded", start);
