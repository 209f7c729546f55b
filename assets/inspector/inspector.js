// The run inspector: a list of runs and a page per run, read from the API next to this page.
// Plain JavaScript, no build step. Every value from the API goes into the page as text, never
// as HTML.
"use strict";

const STATUSES = ["pending", "running", "waiting", "completed", "failed", "cancelled"];
const PAGE_SIZE = 20;
const REFRESH_MS = 1000;
let refreshTimer = null;

// --- helpers -------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "onclick") node.addEventListener("click", value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// The bearer token, when the server asks for one: entered once, kept for this tab only.
const TOKEN_KEY = "workflows-token";

class NeedsToken extends Error {}

// `fetch` with the token, if one was entered; a 401 asks for a token.
async function authorized(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", "Bearer " + token);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    let message = "this server needs a token";
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new NeedsToken(token ? "the token was not accepted: " + message : message);
  }
  return response;
}

function showTokenForm(error) {
  const input = el("input", { id: "token", type: "password", autocomplete: "off", "aria-label": "token" });
  const form = el("form", { id: "token-form" },
    el("p", { class: "error-text", id: "token-reason", text: error.message }),
    el("label", { for: "token", text: "API token " }), input,
    el("button", { id: "token-save", type: "submit", text: "use token" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    route();
  });
  document.getElementById("app").replaceChildren(form);
  input.focus();
}

async function api(path, options = {}) {
  const response = await authorized(path, options);
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response.status === 204 ? null : response.json();
}

function badge(status) {
  return el("span", { class: "badge " + status, "data-status": status, text: status });
}

function time(value) {
  return value ? new Date(value).toLocaleString() : "";
}

function runDuration(run) {
  if (!run.started_at) return "";
  const end = run.completed_at ? new Date(run.completed_at) : new Date();
  return ((end - new Date(run.started_at)) / 1000).toFixed(2) + " s";
}

function showError(error) {
  if (error instanceof NeedsToken) return showTokenForm(error);
  const app = document.getElementById("app");
  app.replaceChildren(el("p", { class: "error-text", id: "error", text: String(error.message || error) }),
    el("p", {}, el("a", { href: "#/", text: "back to the runs" })));
}

function schedule(fn) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(fn, REFRESH_MS);
}

// --- the list of runs ------------------------------------------------------------------------

async function showRuns(params) {
  const status = params.get("status") || "";
  const workflow = params.get("workflow_name") || "";
  const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  const query = new URLSearchParams({ page, page_size: PAGE_SIZE });
  if (status) query.set("status", status);
  if (workflow) query.set("workflow_name", workflow);
  const [result, workflows] = await Promise.all([
    api("workflows/runs?" + query), api("workflows"),
  ]);
  const go = (changes) => {
    const next = new URLSearchParams({ status, workflow_name: workflow, page: 1, ...changes });
    for (const [key, value] of [...next]) if (!value) next.delete(key);
    location.hash = "#/?" + next;
  };

  const filters = el("div", { class: "filters", id: "filters" },
    ["", ...STATUSES].map((s) => el("button", {
      class: s === status ? "active" : "", "data-filter": s || "all", text: s || "all",
      onclick: () => go({ status: s }),
    })),
    (() => {
      const select = el("select", { id: "workflow-filter", "aria-label": "workflow" },
        el("option", { value: "", text: "all workflows" }),
        workflows.map((w) => el("option", { value: w.name, text: w.name })));
      select.value = workflow;
      select.addEventListener("change", () => go({ workflow_name: select.value }));
      return select;
    })());

  const rows = result.data.map((run) => el("tr", { "data-run-id": run.id },
    el("td", {}, el("a", { href: "#/runs/" + run.id, class: "mono", text: run.id.slice(0, 8) })),
    el("td", { text: run.workflow_name }),
    el("td", {}, badge(run.status)),
    el("td", { text: time(run.created_at) }),
    el("td", { text: runDuration(run) })));
  const table = el("table", { id: "runs" },
    el("thead", {}, el("tr", {}, ["run", "workflow", "status", "created", "duration"].map((h) => el("th", { text: h })))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted", text: "no runs" }))));
  const pager = el("div", { class: "pager" },
    el("button", { id: "prev", onclick: () => go({ page: page - 1 }), text: "← newer" }),
    el("span", { id: "page-info", text: `page ${result.page} of ${result.total_pages} · ${result.total} runs` }),
    el("button", { id: "next", onclick: () => go({ page: page + 1 }), text: "older →" }));
  pager.querySelector("#prev").disabled = page <= 1;
  pager.querySelector("#next").disabled = page >= result.total_pages;

  document.getElementById("app").replaceChildren(el("h1", { text: "Runs" }), filters, table, pager);
  if (result.data.some((run) => ["running", "pending", "waiting"].includes(run.status))) {
    schedule(route);
  }
}

// --- one run ---------------------------------------------------------------------------------

async function showRun(id) {
  const [run, stages, decisions, interrupts] = await Promise.all([
    api("workflows/runs/" + id), api(`workflows/runs/${id}/stages`), api(`workflows/runs/${id}/decisions`),
    api(`workflows/runs/${id}/interrupts`),
  ]);
  // A run waiting for an answer is not refreshed: that would wipe an answer being typed.
  const live = ["running", "pending"].includes(run.status) || (run.status === "waiting" && !!run.wake_at);
  document.title = `${run.workflow_name} ${run.id.slice(0, 8)} · workflows`;
  document.getElementById("app").replaceChildren(
    el("p", {}, el("a", { href: "#/", text: "← runs" })),
    summary(run, live),
    interrupts.length ? el("div", { class: "card" }, el("h2", { text: "Questions" }), questionTable(run, interrupts)) : "",
    el("div", { class: "card" }, el("h2", { text: "Graph path" }), graph(stages, decisions)),
    el("div", { class: "card" }, el("h2", { text: "Stage timeline" }), timeline(run, stages)),
    el("div", { class: "card" }, el("h2", { text: "Stages" }), stageTable(stages)),
    el("div", { class: "card" }, el("h2", { text: "Decisions" }), decisionTable(decisions)));
  if (live) schedule(route);
}

function summary(run, live) {
  const facts = el("dl", { class: "facts" });
  const fact = (name, value) => facts.append(el("dt", { text: name }), el("dd", {}, value));
  fact("run", el("span", { class: "mono", id: "run-id", text: run.id }));
  fact("workflow", el("span", { id: "run-workflow", text: run.workflow_name }));
  fact("status", el("span", { id: "run-status" }, badge(run.status), live ? " (live)" : ""));
  fact("created", time(run.created_at));
  if (run.started_at) fact("started", time(run.started_at));
  if (run.completed_at) fact("ended", time(run.completed_at));
  if (run.wake_at) fact("due", time(run.wake_at));
  if (run.started_at) fact("duration", runDuration(run));
  if (run.error_message) fact("error", el("span", { class: "error-text", id: "run-error", text: run.error_message }));
  if (run.params) fact("params", snapshotToggle("params", run.params));
  if (run.result) fact("result", snapshotToggle("result", run.result));

  const act = (label, path, enabled) => el("button", {
    id: label, text: label, onclick: async (event) => {
      event.target.disabled = true;
      try {
        if (label === "resume") {
          // The answer is the resumed run's progress stream: take its headers, then let go;
          // the run goes on without the stream, and this page follows it.
          const controller = new AbortController();
          const response = await authorized(path, { method: "POST", signal: controller.signal });
          if (!response.ok) throw new Error((await response.json()).error);
          controller.abort();
        } else {
          await api(path, { method: "POST" });
        }
        route();
      } catch (error) {
        showError(error);
      }
    },
  });
  const actions = el("div", { class: "actions" },
    act("cancel", `workflows/runs/${run.id}/cancel`),
    act("resume", `workflows/runs/${run.id}/resume`));
  actions.querySelector("#cancel").disabled = !(live || run.status === "waiting");
  actions.querySelector("#resume").disabled = !(run.status === "failed" || run.status === "cancelled");
  return el("div", { class: "card" }, el("h2", { text: "Run" }), facts, actions);
}

// The path as a picture: each node once, in the order first reached, and every edge taken,
// labelled with its predicate and how many times it was taken.
function graph(stages, decisions) {
  const nodes = [];
  const lastStatus = {};
  for (const stage of stages) {
    if (!nodes.includes(stage.node_name)) nodes.push(stage.node_name);
    lastStatus[stage.node_name] = stage.status;
  }
  for (const d of decisions) {
    for (const name of [d.from_node, d.to_node]) if (name && !nodes.includes(name)) nodes.push(name);
  }
  if (!nodes.length) return el("p", { class: "muted", text: "no node has started yet" });

  const edges = new Map();
  let exit = null;
  for (const d of decisions) {
    if (!d.to_node) { exit = d; continue; }
    const key = d.from_node + "\u0000" + d.to_node;
    const edge = edges.get(key) || { from: d.from_node, to: d.to_node, count: 0, label: d.predicate_name || "" };
    edge.count += 1;
    edges.set(key, edge);
  }

  const boxW = 170, boxH = 34, gap = 30, left = 40;
  const y = (i) => 20 + i * (boxH + gap);
  const height = y(nodes.length) + (exit ? 30 : 0);
  const picture = svg("svg", { id: "graph", width: 560, height, viewBox: `0 0 560 ${height}`, role: "img",
    "aria-label": "graph path" });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b7280" }));
  defs.append(marker);
  picture.append(defs);

  let bend = 0;
  for (const edge of edges.values()) {
    const a = nodes.indexOf(edge.from), b = nodes.indexOf(edge.to);
    const x = left + boxW / 2;
    let path, lx, ly;
    if (a === b) {
      // A node that loops on itself: a small loop on its right.
      const right = left + boxW;
      path = `M${right},${y(a) + 8} C${right + 45},${y(a) - 12} ${right + 45},${y(a) + boxH + 12} ${right},${y(a) + boxH - 8}`;
      lx = right + 40; ly = y(a) + boxH / 2 + 4;
    } else if (b === a + 1) {
      path = `M${x},${y(a) + boxH} L${x},${y(b)}`;
      lx = x + 8; ly = (y(a) + boxH + y(b)) / 2 + 4;
    } else {
      bend += 1;
      const side = left + boxW + 20 + bend * 28;
      path = `M${left + boxW},${y(a) + boxH / 2} C${side},${y(a) + boxH / 2} ${side},${y(b) + boxH / 2} ${left + boxW},${y(b) + boxH / 2}`;
      lx = side - 10; ly = (y(a) + y(b)) / 2 + boxH / 2;
    }
    picture.append(svg("path", { d: path, fill: "none", stroke: "#6b7280", "stroke-width": 1.5,
      "marker-end": "url(#arrow)", class: "edge", "data-from": edge.from, "data-to": edge.to }));
    const label = (edge.label ? edge.label + " " : "") + (edge.count > 1 ? "×" + edge.count : "");
    if (label.trim()) picture.append(svg("text", { x: lx, y: ly, fill: "#374151", class: "edge-label" }, label.trim()));
  }
  nodes.forEach((name, i) => {
    const status = lastStatus[name] || "pending";
    const color = { completed: "#1f8f4e", failed: "#c23b32", started: "#2f5bd3" }[status] || "#9ca3af";
    const group = svg("g", { class: "node", "data-node": name, "data-status": status });
    group.append(svg("rect", { x: left, y: y(i), width: boxW, height: boxH, rx: 6, fill: "#fff", stroke: color, "stroke-width": 2 }));
    group.append(svg("text", { x: left + boxW / 2, y: y(i) + boxH / 2 + 4, "text-anchor": "middle", fill: "#1d2330" }, name));
    picture.append(group);
  });
  if (exit) {
    const i = nodes.indexOf(exit.from_node);
    picture.append(svg("text", { x: left + boxW / 2, y: height - 8, "text-anchor": "middle", fill: "#1f8f4e", id: "graph-exit" },
      "■ exit after " + exit.from_node));
    picture.append(svg("path", { d: `M${left + boxW / 2},${y(i) + boxH} L${left + boxW / 2},${height - 24}`,
      stroke: "#1f8f4e", "stroke-dasharray": "3 3", fill: "none" }));
  }
  return picture;
}

// When each stage ran, relative to the first, and for how long.
function timeline(run, stages) {
  if (!stages.length) return el("p", { class: "muted", text: "no stages yet" });
  const start = Math.min(...stages.map((s) => Date.parse(s.created_at)));
  const ends = stages.map((s) => Date.parse(s.created_at) + (s.duration_ms || 0));
  const end = Math.max(...ends, run.completed_at ? Date.parse(run.completed_at) : 0, start + 1);
  const span = end - start;
  return el("div", { class: "timeline", id: "timeline" }, stages.map((s) => {
    const offset = ((Date.parse(s.created_at) - start) / span) * 100;
    const width = ((s.duration_ms || 0) / span) * 100;
    return el("div", { class: "bar-row", "data-node": s.node_name },
      el("span", { class: "mono", text: `${s.iteration}. ${s.node_name}${attemptNote(s)}` }),
      el("div", { class: "bar-track" },
        el("div", { class: "bar " + s.status, style: `left:${offset}%;width:${Math.max(width, 0.3)}%` })),
      el("span", { class: "muted", text: s.duration_ms === undefined ? s.status : s.duration_ms + " ms" }));
  }));
}

function snapshotToggle(name, value) {
  return lazyToggle(name, async () => value);
}

// A button that shows (and hides again) the JSON `load` gives, loaded when first asked for.
function lazyToggle(name, load, attributes = {}) {
  const holder = el("span");
  const button = el("button", { class: "snapshot-toggle", "data-snapshot": name, ...attributes, text: "show " + name,
    onclick: async () => {
      const open = holder.querySelector("pre");
      if (open) { open.remove(); button.textContent = "show " + name; return; }
      let text;
      try { text = JSON.stringify(await load(), null, 2); } catch (error) { text = String(error.message || error); }
      holder.append(el("pre", { class: "snapshot", text }));
      button.textContent = "hide " + name;
    } });
  holder.append(button);
  return holder;
}

// A retried node has a stage per attempt (the JSON leaves `attempt` out when it is 1).
const attemptNote = (s) => (s.attempt > 1 ? ` (attempt ${s.attempt})` : "");

// Each stage stores its node's update (what it changed); the whole state after it is rebuilt
// by the API on demand. Stages the Go service wrote hold whole snapshots instead.
function stageTable(stages) {
  if (!stages.length) return el("p", { class: "muted", text: "no stages yet" });
  const stateAfter = (s) => api(`workflows/runs/${s.run_id}/state?step=${s.iteration}`).then((at) => at.state);
  return el("table", { id: "stages" },
    el("thead", {}, el("tr", {}, ["#", "node", "status", "duration", "state"].map((h) => el("th", { text: h })))),
    el("tbody", {}, stages.map((s) => el("tr", { "data-node": s.node_name },
      el("td", { text: s.iteration }),
      el("td", { class: "mono", text: s.node_name + attemptNote(s), "data-attempt": s.attempt || 1 }),
      el("td", {}, badge(s.status), s.error_message ? el("div", { class: "error-text", text: s.error_message }) : null),
      el("td", { text: s.duration_ms === undefined ? "" : s.duration_ms + " ms" }),
      el("td", {},
        s.state_update !== undefined ? snapshotToggle("update", s.state_update) : null, " ",
        s.status === "completed" ? lazyToggle("state after", () => stateAfter(s), { "data-state-step": s.iteration }) : null, " ",
        s.input_snapshot !== undefined ? snapshotToggle("input", s.input_snapshot) : null, " ",
        s.output_snapshot !== undefined ? snapshotToggle("output", s.output_snapshot) : null)))));
}

// What the run's nodes asked. An open question of a waiting run can be answered here: the
// answer is JSON (a string is "yes", with the quotes), and must fit the question's schema
// if it has one.
function questionTable(run, interrupts) {
  const answerForm = (q) => {
    const input = el("textarea", { id: `answer-${q.key}`, rows: 2, placeholder: 'JSON, e.g. true or "yes"' });
    // A refused answer (not JSON, or not fitting the schema) is shown beside the form,
    // which keeps what was typed so that it can be mended.
    const refusal = el("p", { class: "error-text answer-error", id: `refused-${q.key}` });
    const send = el("button", {
      id: `send-${q.key}`, text: "answer",
      onclick: async () => {
        try {
          const value = JSON.parse(input.value);
          await api(`workflows/runs/${run.id}/answer`, {
            method: "POST", headers: { "content-type": "application/json" },
            body: JSON.stringify({ key: q.key, value }),
          });
          route();
        } catch (error) {
          refusal.textContent = String(error.message || error);
        }
      },
    });
    // The server checks an answer against the question's schema; shown here so that the
    // person answering knows the shape before the refusal tells them.
    const schema = q.answer_schema === undefined ? "" : el("details", { class: "answer-schema" },
      el("summary", { text: "the answer must fit this schema" }),
      el("pre", { class: "snapshot", text: JSON.stringify(q.answer_schema, null, 2) }));
    return el("div", { class: "answer" }, input, send, refusal, schema);
  };
  return el("table", { id: "questions" },
    el("thead", {}, el("tr", {}, ["#", "node", "key", "question", "answer"].map((h) => el("th", { text: h })))),
    el("tbody", {}, interrupts.map((q) => el("tr", { "data-key": q.key },
      el("td", { text: q.iteration }),
      el("td", { class: "mono", text: q.node_name }),
      el("td", { class: "mono", text: q.key }),
      el("td", {}, el("pre", { text: JSON.stringify(q.payload, null, 2) })),
      el("td", {}, q.answer !== undefined
        ? el("pre", { class: "answered", text: JSON.stringify(q.answer) })
        : run.status === "waiting" ? answerForm(q) : el("span", { class: "muted", text: "unanswered" }))))));
}

function decisionTable(decisions) {
  if (!decisions.length) return el("p", { class: "muted", text: "no decisions yet" });
  return el("table", { id: "decisions" },
    el("thead", {}, el("tr", {}, ["from", "to", "predicate", "result", "reason"].map((h) => el("th", { text: h })))),
    el("tbody", {}, decisions.map((d) => el("tr", {},
      el("td", { class: "mono", text: d.from_node }),
      el("td", { class: "mono", text: d.to_node || "(exit)" }),
      el("td", { text: d.predicate_name || "" }),
      el("td", { text: d.predicate_result === undefined ? "" : String(d.predicate_result) }),
      el("td", { text: d.reason || "" })))));
}

// --- routing ---------------------------------------------------------------------------------

async function route() {
  clearTimeout(refreshTimer);
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  try {
    const run = path.match(/^\/runs\/([0-9a-fA-F-]{36})$/);
    if (run) await showRun(run[1]);
    else await showRuns(new URLSearchParams(query || ""));
  } catch (error) {
    showError(error);
  }
}

window.addEventListener("hashchange", route);
route();
