// The gateway's status page: reads /status/events (server-sent events, read with fetch so an
// Authorization header can be sent), falls back to polling /status.json, and posts breaker
// actions to /status/breakers/<upstream> after asking for confirmation. Data is only ever
// put into the page as text (queries are user input).
"use strict";

const KEY_STORAGE = "harag-status-key";
const POLL_MS = 2000;
const RECONNECT_MS = 1000;
let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
let live = false;

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (apiKey) h["Authorization"] = "Bearer " + apiKey;
  return h;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const pct = (share) => (share === null || share === undefined ? "–" : (share * 100).toFixed(1) + " %");
const ratePct = (rate) => (rate === null || rate === undefined ? "–" : rate.toFixed(0) + " %");
const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(1) : v.toFixed(0));
const when = (epochS) => new Date(epochS * 1000).toLocaleTimeString();

function setConnection(text, isLive) {
  const c = document.getElementById("connection");
  c.textContent = text;
  c.dataset.live = String(isLive);
}

function needKey(message) {
  document.getElementById("key-form").hidden = false;
  document.getElementById("key-error").textContent = message || "";
  setConnection("needs an admin key", false);
}

function render(s) {
  const overall = document.getElementById("overall");
  overall.textContent = s.status;
  overall.dataset.status = s.status;
  document.getElementById("meta").textContent =
    "v" + s.version + " · up " + Math.round(s.uptime_s) + " s · updated " + when(s.generated_at);
  const a = s.activity;
  document.getElementById("rate").textContent = a.requests_per_s.toFixed(2);
  document.getElementById("degraded").textContent = pct(a.degraded_share);
  document.getElementById("shed").textContent = pct(a.shed_share);
  document.getElementById("cache").textContent = pct(a.cache_hit_rate);
  document.getElementById("cost").textContent = "$" + a.cost_usd.toFixed(4);
  document.getElementById("cost-per-answer").textContent =
    a.cost_per_answer_usd === null ? "" : "$" + a.cost_per_answer_usd.toFixed(6) + " per answer";
  document.getElementById("window-label").textContent =
    "tiers per stage, last " + Math.round(a.window_s / 60) + " min (" + a.answered + " answers)";
  renderTiers(a.tiers);
  renderUpstreams(s.upstreams);
  renderDegraded(s.degraded_queries);
}

function renderTiers(tiers) {
  const box = document.getElementById("tiers");
  box.replaceChildren();
  for (const [stage, t] of Object.entries(tiers)) {
    const bar = el("div", { class: "bar" });
    for (const cls of ["primary", "fallback", "last_resort"]) {
      const share = t[cls] || 0;
      if (share > 0) {
        const part = el("span", { class: cls, title: cls + " " + pct(share) });
        part.style.width = share * 100 + "%";
        bar.append(part);
      }
    }
    const label = t.runs ? pct(t.primary) + " primary" : "no runs";
    box.append(el("div", { class: "tier-row", "data-stage": stage },
      el("span", { class: "name" }, stage), bar, el("span", { class: "sub" }, label)));
  }
}

function stateChip(state) {
  return el("span", { class: "state", "data-state": state }, state || "none");
}

function renderUpstreams(upstreams) {
  const body = document.querySelector("#upstreams tbody");
  body.replaceChildren();
  for (const u of upstreams) {
    const health = (u.health || "").replace("UPSTREAM_HEALTH_STATUS_", "");
    const budget = u.retry_budget
      ? u.retry_budget.spent + " / " + u.retry_budget.allowance + (u.retry_budget.rejected ? " (" + u.retry_budget.rejected + " refused)" : "")
      : "–";
    const bulkhead = u.bulkhead ? u.bulkhead.in_flight + " / " + u.bulkhead.max_concurrent : "–";
    const reasons = el("ul", { class: "plain" },
      ...(u.degraded_reasons || []).map((r) => el("li", {}, r.detail)));
    const history = el("details", {}, el("summary", {}, (u.transitions_history || []).length + " transitions"),
      el("ul", { class: "plain" }, ...(u.transitions_history || []).map((t) =>
        el("li", {}, when(t.at) + " " + t.from + " → " + t.to + " (" + t.reason + ")"))));
    const actions = el("td", {});
    if (u.breaker_state) {
      for (const [action, label] of [["force_open", "force open"], ["disable", "disable"], ["reset", "reset"]]) {
        actions.append(el("button", { type: "button", "data-action": action, onclick: () => act(u.name, action, label) }, label));
      }
    }
    body.append(el("tr", { "data-upstream": u.name },
      el("td", {}, el("strong", {}, u.name), el("div", { class: "sub" }, u.component + " · tier " + u.tier + " · " + u.address)),
      el("td", { class: "health" }, stateChip(health)),
      el("td", { class: "breaker" }, el("span", { class: "state breaker-state", "data-state": u.breaker_state || "OFF" }, u.breaker_state || "off"), history),
      el("td", { class: "num" }, u.requests_per_s === null ? "–" : u.requests_per_s.toFixed(2)),
      el("td", { class: "num" }, ratePct(u.recent_failure_rate)),
      el("td", { class: "num" }, ratePct(u.recent_slow_call_rate)),
      el("td", { class: "num" }, ms(u.p50_latency_ms) + " / " + ms(u.p99_latency_ms) + " ms"),
      el("td", { class: "num" }, (u.hedges_won || 0) + " / " + (u.hedges_lost || 0)),
      el("td", { class: "num" }, budget),
      el("td", { class: "num" }, bulkhead),
      el("td", {}, reasons),
      actions));
  }
}

function renderDegraded(queries) {
  const body = document.querySelector("#degraded-queries tbody");
  body.replaceChildren();
  document.getElementById("no-degraded").hidden = queries.length > 0;
  for (const q of queries) {
    const served = el("td", {}, ...q.stages.map((st) =>
      el("span", { class: "chip tier-" + Math.min(st.tier || 0, 3), title: st.detail || "" },
        (st.stage || "").replace("STAGE_", "").toLowerCase() + ": " + st.served_by)));
    const receipt = el("details", {}, el("summary", {}, "attempts"),
      el("ul", { class: "plain" }, ...q.stages.flatMap((st) => (st.attempts || []).map((at) =>
        el("li", {}, at.upstream + " " + at.outcome + " " + ms(at.latency_ms) + " ms" +
          (at.retry ? " retry" : "") + (at.hedge ? " hedge" : "") + (at.error ? " — " + at.error : ""))))));
    const trace = q.trace_url
      ? el("a", { href: q.trace_url, target: "_blank", rel: "noopener" }, q.trace_id.slice(0, 12))
      : el("span", { class: "sub" }, q.trace_id ? q.trace_id.slice(0, 12) : "no trace");
    body.append(el("tr", { "data-request-id": q.request_id },
      el("td", { class: "num" }, when(q.at)),
      el("td", {}, q.query, el("div", { class: "sub" }, q.request_id + (q.cached ? " · cached" : ""))),
      served, el("td", {}, receipt), el("td", {}, trace)));
  }
}

async function act(upstream, action, label) {
  if (!window.confirm(label + " the breaker of " + upstream + "?")) return;
  const out = document.getElementById("action-result");
  try {
    const r = await fetch("/status/breakers/" + encodeURIComponent(upstream), {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ action }),
    });
    const body = await r.json();
    if (r.status === 401 || r.status === 403) return needKey(body.message);
    out.textContent = r.ok ? upstream + ": breaker " + body.state : "refused: " + JSON.stringify(body);
    if (!live) poll();
  } catch (err) {
    out.textContent = "failed: " + err;
  }
}

async function poll() {
  const r = await fetch("/status.json", { headers: headers(), cache: "no-store" });
  if (r.status === 401 || r.status === 403) {
    needKey((await r.json()).message);
    return false;
  }
  if (!r.ok) throw new Error("HTTP " + r.status);
  render(await r.json());
  return true;
}

// Server-sent events over fetch: EventSource cannot send an Authorization header.
async function stream() {
  const r = await fetch("/status/events", { headers: headers(), cache: "no-store" });
  if (r.status === 401 || r.status === 403) {
    needKey((await r.json()).message);
    return "auth";
  }
  if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  setConnection("live", true);
  live = true;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return "ended";
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const message = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = message.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
      if (data) render(JSON.parse(data));
    }
  }
}

async function run() {
  for (;;) {
    try {
      if ((await stream()) === "auth") return;
    } catch (err) {
      // No stream (a proxy that buffers, an old browser): poll until it works again.
      live = false;
      setConnection("polling", false);
      try {
        if (!(await poll())) return;
      } catch (pollErr) {
        setConnection("gateway unreachable", false);
      }
      await new Promise((done) => setTimeout(done, POLL_MS));
      continue;
    }
    live = false;
    setConnection("reconnecting…", false);
    await new Promise((done) => setTimeout(done, RECONNECT_MS));
  }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = document.getElementById("key").value.trim();
  sessionStorage.setItem(KEY_STORAGE, apiKey);
  document.getElementById("key-form").hidden = true;
  run();
});

run();
