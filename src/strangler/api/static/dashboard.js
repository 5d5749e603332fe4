// strangler's operator dashboard: plain JS, no dependencies, nothing fetched from elsewhere.
// Auth is the HttpOnly session cookie set at sign-in; changes also send the CSRF header.
"use strict";

const HEADERS = { "X-Strangler-Dashboard": "1", "Content-Type": "application/json" };
const POINTS = 120; // two minutes of one-second ticks
const COLORS = ["#0b6bcb", "#7aa7e0", "#c2410c", "#f0a46f", "#1a7f37"];
const $ = (id) => document.getElementById(id);
let overview = null;
let latestDivergence = null;
let pendingTarget = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v; // CSSOM: allowed by the page's CSP
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

async function api(path, options = {}) {
  const resp = await fetch(path, { credentials: "same-origin", ...options });
  if (resp.status === 401 || resp.status === 403) { location.reload(); throw new Error("signed out"); }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.detail || body.title || `HTTP ${resp.status}`);
  return body;
}

const fmt = {
  ms: (v) => (v == null ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(0)),
  pct: (v) => (v == null ? "–" : (v * 100).toFixed(1) + "%"),
  n: (v) => (v == null ? "–" : Number(v).toLocaleString()),
  bytes: (v) => {
    if (v == null) return "–";
    const u = ["B", "kB", "MB", "GB", "TB"]; let i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(v < 10 && i ? 1 : 0)} ${u[i]}`;
  },
  time: (iso) => (iso ? new Date(iso).toLocaleString() : "–"),
};

// --- charts -----------------------------------------------------------------------------

class Chart {
  constructor(id, series, { max = null, unit = "" } = {}) {
    this.canvas = $(`chart-${id}`);
    this.series = series.map((name) => ({ name, values: [] }));
    this.fixedMax = max;
    this.unit = unit;
    const legend = $(`legend-${id}`);
    this.series.forEach((s, i) => {
      s.label = el("span", {}, el("i", { style: `background:${COLORS[i]}` }), s.name + ": ", el("b", {}, "–"));
      legend.append(s.label);
    });
  }
  push(values) {
    this.series.forEach((s, i) => {
      s.values.push(values[i]);
      if (s.values.length > POINTS) s.values.shift();
      const last = values[i];
      s.label.querySelector("b").textContent = this.show(last);
    });
    this.draw();
  }
  show(v) {
    if (v == null) return "–";
    return this.unit === "%" ? fmt.pct(v) : this.unit === "n" ? fmt.n(Math.round(v)) : fmt.ms(v);
  }
  draw() {
    const c = this.canvas, ctx = c.getContext("2d"), w = c.width, h = c.height;
    ctx.clearRect(0, 0, w, h);
    let max = this.fixedMax;
    if (max == null) {
      max = 0;
      for (const s of this.series) for (const v of s.values) if (v != null && v > max) max = v;
      max = max > 0 ? max * 1.15 : 1;
      if (this.unit === "n") max = Math.max(4, Math.ceil(max));
    }
    ctx.strokeStyle = "#e3e6ec"; ctx.fillStyle = "#8a93a6"; ctx.font = "10px sans-serif"; ctx.lineWidth = 1;
    for (let g = 0; g <= 4; g++) {
      const y = h - 14 - (g / 4) * (h - 24);
      ctx.beginPath(); ctx.moveTo(30, y); ctx.lineTo(w, y); ctx.stroke();
      const label = this.show((max * g) / 4);
      ctx.fillText(label, 0, y + 3);
    }
    const x = (i) => 30 + (i / (POINTS - 1)) * (w - 32);
    const y = (v) => h - 14 - (v / max) * (h - 24);
    this.series.forEach((s, i) => {
      ctx.strokeStyle = COLORS[i]; ctx.lineWidth = 2; ctx.beginPath();
      let pen = false;
      const offset = POINTS - s.values.length;
      s.values.forEach((v, j) => {
        if (v == null) { pen = false; return; }
        if (pen) ctx.lineTo(x(offset + j), y(v)); else ctx.moveTo(x(offset + j), y(v));
        pen = true;
      });
      ctx.stroke();
    });
  }
}

const charts = {
  latency: new Chart("latency", ["MongoDB p50", "MongoDB p99", "Supabase p50", "Supabase p99"]),
  errors: new Chart("errors", ["MongoDB", "Supabase"], { unit: "%" }),
  consistency: new Chart("consistency", ["match rate"], { max: 1, unit: "%" }),
  lag: new Chart("lag", ["p99"]),
  queue: new Chart("queue", ["to MongoDB", "to Supabase"], { unit: "n" }),
};

function onTick(t) {
  const m = t.stores.MongoDB || {}, s = t.stores.Supabase || {};
  charts.latency.push([m.p50_ms, m.p99_ms, s.p50_ms, s.p99_ms]);
  charts.errors.push([m.error_rate, s.error_rate]);
  charts.consistency.push([t.consistency_rate]);
  charts.lag.push([t.lag_p99_ms]);
  charts.queue.push([t.repair_queue.MongoDB, t.repair_queue.Supabase]);
  if (overview && t.stage !== overview.stage) refresh();
  if (latestDivergence !== null && t.latest_divergence !== latestDivergence) refresh();
  latestDivergence = t.latest_divergence;
}

function connect() {
  const source = new EventSource("/admin/stream");
  source.addEventListener("open", () => $("live").classList.add("on"));
  source.addEventListener("error", () => $("live").classList.remove("on"));
  source.addEventListener("tick", (e) => onTick(JSON.parse(e.data)));
}

// --- panels -----------------------------------------------------------------------------

function renderStage(o) {
  document.querySelector("[data-testid=stage]").textContent = o.stage;
  $("stage-source").textContent = `(from the ${o.source})`;
  const ladder = $("ladder");
  ladder.replaceChildren();
  const idx = o.ladder.findIndex((s) => s.stage === o.stage);
  o.ladder.forEach((s, i) => {
    ladder.append(el("li", { class: i === idx ? "current" : i < idx ? "done" : "", "data-stage": s.stage },
      el("b", {}, s.stage),
      el("small", {}, `reads ${s.reads}`),
      el("small", {}, `writes ${s.writes.join(" → ")}`),
      el("small", {}, s.shadow ? "shadow compare" : "")));
  });
  const prev = o.ladder[idx - 1], next = o.ladder[idx + 1];
  $("advance").disabled = !next;
  $("rollback").disabled = !prev;
  $("advance").textContent = next ? `Advance to ${next.stage}` : "Advance";
  $("rollback").textContent = prev ? `Roll back to ${prev.stage}` : "Roll back";
  $("advance").dataset.target = next ? next.stage : "";
  $("rollback").dataset.target = prev ? prev.stage : "";
}

function kv(pairs) {
  const box = el("div", { class: "kv" });
  for (const [k, v, cls] of pairs) box.append(el("span", { class: "muted" }, k), el("span", { class: cls || "" }, v));
  return box;
}

function renderBackends(o) {
  const body = document.querySelector("#backends .body");
  body.replaceChildren();
  for (const b of Object.values(o.backends)) {
    body.append(el("h3", {}, `${b.role} (${b.store})`), kv([
      b.decommissioned ? ["health", "decommissioned: no longer used", "muted"]
        : ["health", b.healthy ? "healthy" : `down: ${b.error}`, b.healthy ? "ok" : "bad"],
      ["ping", `${fmt.ms(b.ping_ms)} ms`],
      ["operations", fmt.n(b.operations)],
      ["error rate", fmt.pct(b.error_rate), b.error_rate > 0.01 ? "bad" : ""],
      ["repair queue", fmt.n(b.repair_queue_depth), b.repair_queue_depth ? "warn" : ""],
      ["breaker", b.breaker.state === "closed" ? "closed"
        : `${b.breaker.state.replace("_", " ")} for ${b.breaker.open_for_s}s; next probe in ≤ ${b.breaker.next_probe_s}s; ${fmt.n(b.breaker.skipped_writes)} writes journaled untried`,
        b.breaker.state === "closed" ? "ok" : "bad"],
    ]));
  }
}

function runRows(run) {
  if (!run) return [["status", "never run", "muted"]];
  if (run.error) return [["status", run.error, "bad"]];
  const rows = [
    ["status", run.status, run.status === "done" ? "ok" : run.status === "running" ? "" : "bad"],
    ["started", fmt.time(run.started_at)],
    ["updated", fmt.time(run.updated_at)],
    ["by", run.origin],
  ];
  return rows;
}

function renderBackfill(run) {
  const box = $("backfill");
  box.replaceChildren(kv(runRows(run)));
  if (!run || run.error) return;
  const p = run.progress || {};
  for (const [coll, c] of Object.entries(p.collections || {})) {
    const total = c.total || 0, share = total ? Math.min(1, c.read / total) : null;
    box.append(el("h3", {}, coll), kv([
      ["read", `${fmt.n(c.read)}${total ? " / " + fmt.n(total) : ""}`],
      ["written", fmt.n(c.written)], ["repaired", fmt.n(c.repaired)],
      ["quarantined", fmt.n(c.quarantined), c.quarantined ? "warn" : ""],
      ["rate", c.rows_per_s ? `${fmt.n(c.rows_per_s)} rows/s` : "–"],
    ]));
    if (share != null) {
      const bar = el("div", { class: "bar", "data-testid": `backfill-bar-${coll}` }, el("div", { style: `width:${(share * 100).toFixed(1)}%` }));
      box.append(bar);
    }
  }
}

// A partitioned run (--partition K/N): one row per partition, and the total.
function partitionRows(kind, parts) {
  const rowsOf = (r) => {
    if (kind === "backfill") {
      const c = (r.result && r.result.counts) || (r.progress || {}).collections || {};
      return Object.values(c).reduce((n, x) => n + (x.read || 0), 0);
    }
    if (r.result && r.result.tables) return r.result.tables.reduce((n, t) => n + (t.compared || 0), 0);
    return Object.entries(r.progress || {}).filter(([k]) => k !== "resume")
      .reduce((n, [, v]) => n + (typeof v === "number" ? v : 0), 0);
  };
  const n = parts.length ? parts[0].params.partition.n : 0;
  const table = el("table", { "data-testid": `${kind}-partitions` },
    el("tr", {}, el("th", {}, "partition"), el("th", {}, "status"), el("th", {}, "rows"), el("th", {}, "by")));
  let total = 0, done = 0, clean = true;
  for (const r of parts) {
    const rows = rowsOf(r);
    total += rows;
    done += r.status === "done" ? 1 : 0;
    if (kind === "verify" && r.result && !r.result.equal) clean = false;
    table.append(el("tr", { class: r.status === "failed" ? "bad" : "" },
      el("td", {}, `${r.params.partition.k}/${n}`), el("td", {}, r.status),
      el("td", {}, fmt.n(rows)), el("td", {}, r.origin)));
  }
  table.append(el("tr", { "data-testid": `${kind}-partitions-total` },
    el("th", {}, "total"), el("th", {}, `${done} of ${n} done`), el("th", {}, fmt.n(total)), el("th", {}, "")));
  const out = [el("h3", {}, `partitions (${n})`), table];
  if (kind === "verify" && done === n && n) {
    out.push(el("p", { class: clean ? "ok" : "bad" }, clean ? "every slice equal" : "some slices differ: run strangler repair --partition K/N"));
  }
  return out;
}

function renderVerify(run, job) {
  const box = $("verify");
  box.replaceChildren(kv(runRows(run)));
  if (run && run.result) {
    box.append(el("p", { class: run.result.equal ? "ok" : "bad", "data-testid": "verify-result" },
      run.result.equal ? "stores are equal" : "stores differ: run strangler repair"));
    for (const t of run.result.tables || []) {
      box.append(el("div", { class: "muted" },
        `${t.table}: compared ${fmt.n(t.compared)}, missing ${fmt.n(t.missing)}, extra ${fmt.n(t.extra)}, different ${fmt.n(t.different)}`));
    }
  }
  if (job && job.status === "running") {
    const done = Object.entries(job.progress || {}).map(([k, v]) => `${k} ${fmt.n(v)}`).join(", ");
    box.append(el("p", { "data-testid": "verify-running" }, `verify running on this instance: ${done || "starting"}`));
  }
}

function renderPartitions(parts) {
  for (const kind of ["backfill", "verify"]) {
    const list = parts[kind] || [];
    if (list.length) $(kind).append(...partitionRows(kind, list));
  }
}

function renderQuotas(q) {
  const box = $("quotas");
  box.replaceChildren();
  if (!q) { box.append(el("p", { class: "muted" }, "only with the direct Postgres store")); return; }
  if (q.error) { box.append(el("p", { class: "bad" }, q.error)); return; }
  const table = el("table", {}, el("tr", {}, el("th", {}, "what"), el("th", {}, "used"), el("th", {}, "limit"), el("th", {}, "")));
  for (const it of q.items) {
    const show = it.unit === "bytes" ? fmt.bytes : fmt.n;
    const bar = el("div", { class: `bar${it.warn ? " warn" : ""}` }, el("div", { style: `width:${Math.min(100, (it.ratio || 0) * 100).toFixed(1)}%` }));
    table.append(el("tr", { class: it.warn ? "warn" : "", "data-quota": it.name },
      el("td", {}, it.name + (it.warn ? " ⚠" : "")), el("td", {}, show(it.used)),
      el("td", {}, it.limit == null ? "no limit set" : show(it.limit)),
      el("td", {}, it.ratio == null ? "" : fmt.pct(it.ratio), bar)));
  }
  box.append(table, el("p", { class: "muted" }, `flagged at ${fmt.pct(q.warn_ratio)} of a limit`));
}

function renderDivergences(rows) {
  const body = $("divergences");
  body.replaceChildren();
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: "8", class: "muted" }, "none recorded")));
  for (const d of rows) {
    const fields = Object.entries(d.diff || {});
    const first = fields.length ? fields : [["", {}]];
    first.forEach(([name, pair], i) => {
      const row = el("tr", { "data-record": d.record_id });
      if (i === 0) {
        const span = { rowspan: String(first.length) };
        row.append(el("td", span, fmt.time(d.at)), el("td", span, d.stage), el("td", span, d.table_name),
          el("td", span, el("code", {}, d.record_id)), el("td", span, d.kind));
      }
      row.append(el("td", {}, name), el("td", {}, el("code", {}, JSON.stringify(pair.authoritative))),
        el("td", {}, el("code", {}, JSON.stringify(pair.other))));
      body.append(row);
    });
  }
}

function renderFollowers(rows) {
  const box = $("followers");
  box.replaceChildren();
  for (const f of rows || []) {
    const here = f.here || {};
    const cls = f.state === "stale" ? "bad" : f.state === "running" ? "ok" : "muted";
    box.append(el("p", { "data-follower": f.name },
      el("strong", {}, f.name), " ", el("span", { class: cls, "data-testid": `follower-${f.name}-state` }, f.state),
      f.leader ? ` · led by ${f.leader}` : " · no instance follows now",
      here.state === "leading"
        ? ` · lag ${here.lag_seconds.toFixed(1)} s, ${here.lag_changes_exact ? "" : "≥ "}${fmt.n(here.lag_changes)} changes · ${here.applied_per_s} applied/s`
        : ""));
    box.append(el("p", { class: "muted" },
      `applied ${fmt.n(f.applied)} · bypass writes ${fmt.n(f.bypass)} · reported ${fmt.n(f.reported)}` +
      (f.last_change_at ? ` · last change ${fmt.time(f.last_change_at)}` : "")));
    if (f.reason) box.append(el("p", { class: "bad" }, f.reason));
  }
}

function renderGuard(g) {
  const box = $("guard");
  if (!g) { box.replaceChildren(el("p", { class: "muted" }, "off on this instance (STRANGLER_GUARD, or a pinned stage)")); return; }
  const breach = Object.entries(g.breach || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  const lines = [el("p", { class: breach ? "bad" : g.watching ? "ok" : "muted" },
    g.watching ? (breach ? `breach: ${breach}` : "watching: Supabase within limits") : "idle (it watches at live and rampdown)")];
  if (g.acted) lines.push(el("p", { class: "warn" }, `stepped back ${g.acted.from} → ${g.acted.to}`));
  box.replaceChildren(...lines);
}

function renderBypass(rows) {
  const body = $("bypass-writes");
  body.replaceChildren();
  if (!rows || !rows.length) body.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "none found")));
  for (const d of rows || []) {
    const detail = d.kind === "bypass_write" ? `${d.diff.op} in ${d.diff.store}` : (d.diff.reasons || []).join(", ");
    body.append(el("tr", { "data-record": d.record_id }, el("td", {}, fmt.time(d.at)), el("td", {}, d.table_name),
      el("td", {}, el("code", {}, d.record_id)), el("td", {}, d.kind), el("td", {}, detail)));
  }
}

function renderTransitions(rows) {
  const body = $("transitions");
  body.replaceChildren();
  for (const t of rows) {
    body.append(el("tr", {}, el("td", {}, fmt.time(t.at)), el("td", {}, t.from_stage), el("td", {}, t.to_stage),
      el("td", {}, t.origin), el("td", {}, (t.reason || "") + (t.forced ? ` (forced${t.missing ? ", without: " + t.missing.map((m) => m.key).join(", ") : ""})` : ""))));
  }
}

async function refresh() {
  const o = await api("/admin/overview");
  overview = o;
  // One panel that cannot render must not blank the others.
  const panels = [
    () => renderStage(o), () => renderBackends(o), () => renderBackfill(o.runs.backfill),
    () => renderVerify(o.runs.verify, o.verify_job),
    () => renderPartitions(o.partitions || {}), () => renderQuotas(o.quotas),
    () => renderDivergences(o.divergences), () => renderTransitions(o.transitions),
    () => renderFollowers(o.followers), () => renderGuard(o.guard), () => renderBypass(o.bypass_writes),
  ];
  for (const render of panels) {
    try { render(); } catch (e) { console.error("panel failed", e); }
  }
}

// --- stage changes ----------------------------------------------------------------------

async function confirmChange(target) {
  const p = await api(`/admin/stage/preview?to=${encodeURIComponent(target)}`);
  pendingTarget = target;
  $("confirm-title").textContent = `${p.direction === "advance" ? "Advance" : "Roll back"}: ${p.from.stage} → ${p.to.stage}`;
  $("confirm-changes").replaceChildren(...p.changes.map((c) => el("li", {}, c)));
  $("confirm-warnings").replaceChildren(...p.warnings.map((w) => el("p", {}, "⚠ " + w)));
  $("confirm-evidence").replaceChildren(...(p.evidence || []).map((c) =>
    el("li", { class: c.ok ? "ok" : "bad", "data-evidence": c.key, "data-ok": String(c.ok) },
      `${c.ok ? "✓" : "✗"} ${c.need}: ${c.found}` + (c.ok || !c.fix ? "" : ` → ${c.fix}`))));
  $("confirm-blocked").textContent = p.blocked || "";
  $("confirm-ok").disabled = Boolean(p.blocked);
  $("confirm-reason").value = "";
  $("confirm-force").checked = false;
  $("confirm").showModal();
}

async function applyChange() {
  const body = { stage: pendingTarget, reason: $("confirm-reason").value || null, force: $("confirm-force").checked, confirm: true };
  const msg = $("stage-message");
  try {
    const r = await api("/admin/stage", { method: "PUT", headers: HEADERS, body: JSON.stringify(body) });
    msg.textContent = `stage is now ${r.stage}`;
    msg.className = "ok";
  } catch (e) {
    msg.textContent = e.message;
    msg.className = "bad";
  }
  await refresh();
}

async function startVerify() {
  const button = $("start-verify");
  button.disabled = true;
  try {
    const job = await api("/admin/verify", { method: "POST", headers: HEADERS, body: "{}" });
    for (;;) {
      await new Promise((r) => setTimeout(r, 1000));
      const now = await api(`/admin/verify/${job.id}`);
      await refresh();
      if (now.status !== "running") break;
    }
  } catch (e) {
    $("verify").append(el("p", { class: "bad" }, e.message));
  } finally {
    button.disabled = false;
  }
}

$("advance").addEventListener("click", () => confirmChange($("advance").dataset.target));
$("rollback").addEventListener("click", () => confirmChange($("rollback").dataset.target));
$("confirm").addEventListener("close", () => { if ($("confirm").returnValue === "ok") applyChange(); });
$("start-verify").addEventListener("click", startVerify);
refresh().catch((e) => console.error(e)).finally(connect);
setInterval(refresh, 5000);
