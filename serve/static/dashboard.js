// The live dashboard: one EventSource on /dashboard/events; every message adds the new metrics events
// and dialogues (format in serve/dashboard.py) and redraws. Learner and held-out curves are per weights
// version; actor-side series are over wall time. A malformed counselor output is shown as malformed
// (its raw text and why), never as the fallback sentence the simulated seeker was sent in its place.
"use strict";

// A new connection's first message carries the whole history again, so state starts empty then.
function emptyState() {
  return {
    learner: [], // learner events, one per update
    heldout: [], // held-out evaluation points (source "heldout"), one per evaluated weights version
    evals: [], // {time, sr, at, eval_format_rate}
    driver: [], // store size, queue depth, tokens/s per role
    rm: [], // online reward-model refreshes (source rm_trainer), one per published version
    verdicts: { rollouts: {}, evaluations: {} },
    staleness: {},
    restarts: 0,
    down: 0,
    dialogues: [],
  };
}
let state = emptyState();
const VERDICT_ORDER = ["worse", "same", "better", "solved", "none"];
const layoutBase = {
  margin: { l: 48, r: 40, t: 34, b: 30 },
  legend: { orientation: "h", x: 0, y: -0.18, yanchor: "top" },
  font: { size: 11 },
};
const config = { displayModeBar: false, responsive: true };

function series(events, key, x) {
  const pts = events.filter((e) => typeof e[key] === "number");
  return { x: pts.map(x), y: pts.map((e) => e[key]) };
}
const byVersion = (e) => e.weights_version;
const byTime = (e) => new Date(e.time * 1000);

function line(events, key, name, x, extra = {}) {
  return { ...series(events, key, x), name, mode: "lines+markers", type: "scatter", ...extra };
}

// A held-out metric with its 95% interval (`<key>_lo`, `<key>_hi`) as error bars.
function withCI(events, key, name, extra = {}) {
  const pts = events.filter((e) => typeof e[key] === "number");
  const bound = (e, suffix, sign) => (typeof e[key + suffix] === "number" ? sign * (e[key + suffix] - e[key]) : 0);
  return {
    x: pts.map(byVersion), y: pts.map((e) => e[key]), name, mode: "lines+markers", type: "scatter",
    line: { dash: "dot", width: 2.5 }, marker: { size: 8, symbol: "diamond" },
    error_y: { type: "data", symmetric: false, array: pts.map((e) => bound(e, "_hi", 1)),
      arrayminus: pts.map((e) => bound(e, "_lo", -1)), thickness: 1.5, width: 5 },
    ...extra,
  };
}

function add(counts, map) {
  for (const [k, v] of Object.entries(map || {})) counts[k] = (counts[k] || 0) + v;
}

function ingest(event) {
  if (event.source === "learner") {
    state.learner.push(event);
    add(state.staleness, event.staleness_hist);
  } else if (event.source === "heldout") {
    // a version measured twice (an evaluation point and the final one): the later point counts
    state.heldout = state.heldout.filter((e) => e.weights_version !== event.weights_version).concat([event]);
  } else if (event.source === "rm_trainer") {
    state.rm.push(event);
  } else if (event.source === "evaluate") {
    state.evals.push(event);
  } else if (event.source === "driver") {
    state.driver.push(event);
    if (typeof event.actor_restarts === "number") state.restarts = event.actor_restarts;
    if (typeof event.actors_down === "number") state.down = event.actors_down;
  } else if (event.judge_verdicts) {
    add(state.verdicts.rollouts, event.judge_verdicts);
  }
}

function draw(id, traces, title, extra = {}) {
  Plotly.react(id, traces, { ...layoutBase, title: { text: title, font: { size: 13 } }, ...extra }, config);
}

function roleTraces() {
  const names = new Set();
  state.driver.forEach((e) => Object.keys(e.role_tokens_per_s || {}).forEach((n) => names.add(n)));
  return [...names].sort().map((name) => {
    const pts = state.driver.filter((e) => e.role_tokens_per_s && name in e.role_tokens_per_s);
    return { x: pts.map(byTime), y: pts.map((e) => e.role_tokens_per_s[name]), name, mode: "lines", type: "scatter" };
  });
}

function barsOf(counts, name, order) {
  const keys = order || Object.keys(counts).sort((a, b) => Number(a) - Number(b));
  return { x: keys, y: keys.map((k) => counts[k] || 0), name, type: "bar" };
}

function redraw() {
  const L = state.learner;
  const H = state.heldout;
  const xVersion = { tickformat: "d", title: { text: "weights version", standoff: 4 } };
  const versionAxis = { xaxis: xVersion };
  const tall = { margin: { ...layoutBase.margin, b: 44 } };
  draw("plot-reward", [line(L, "reward_mean", "training reward", byVersion),
    line(L, "rm_score_mean", "training RM score", byVersion),
    withCI(H, "heldout_reward", "held-out reward (95% CI)", { line: { dash: "dot", width: 2.5, color: "#d62728" } }),
    withCI(H, "heldout_rm_score", "held-out RM score (95% CI)", { line: { dash: "dot", width: 2.5, color: "#9467bd" } })],
    "Reward: training vs held-out (never trained on)", { ...versionAxis, ...tall, yaxis: { title: { text: "reward" } } });
  draw("plot-format", [line(L, "format_rate", "training format compliance", byVersion),
    withCI(H, "heldout_format_rate", "held-out format compliance (95% CI)", { line: { dash: "dot", width: 2.5, color: "#d62728" } }),
    line(L, "unsafe_rate", "training unsafe", byVersion)],
    "Format compliance: training vs held-out (never trained on)",
    { ...versionAxis, ...tall, yaxis: { range: [-0.02, 1.05], title: { text: "share of replies" } } });
  draw("plot-heldout-quality", [withCI(H, "heldout_distinct2", "Distinct-2 (left)"),
    withCI(H, "heldout_rouge_l", "ROUGE-L F1 ×100 vs the real reply (right)", { yaxis: "y2" }),
    withCI(H, "heldout_answer_tokens", "answer tokens (right)", { yaxis: "y2" })],
    "Held-out replies (never trained on): diversity, overlap, length",
    { ...versionAxis, ...tall, yaxis: { range: [0, 1.05], title: { text: "Distinct-2" } },
      yaxis2: { overlaying: "y", side: "right", title: { text: "ROUGE-L ×100, tokens", standoff: 2 }, rangemode: "tozero",
        tickmode: "auto", tickformat: ".0f", showgrid: false } });
  draw("plot-kl", [line(L, "policy_kl", "KL(behaviour‖policy)", byVersion), line(L, "kl", "KL(policy‖reference)", byVersion),
    line(L, "is_weight_mean", "IS weight", byVersion, { yaxis: "y2" })],
    "Policy KL per token (IS weight, right)", { ...versionAxis, yaxis2: { overlaying: "y", side: "right" } });
  draw("plot-eval", [line(state.evals, "sr", "SR", byVersion), line(state.evals, "at", "AT", byVersion, { yaxis: "y2" })],
    "Periodic evaluations: SR (left), AT (right)",
    { ...versionAxis, yaxis: { range: [0, 1.05] }, yaxis2: { overlaying: "y", side: "right" } });
  draw("plot-verdicts", [barsOf(state.verdicts.rollouts, "rollouts", VERDICT_ORDER),
    barsOf(state.verdicts.evaluations, "evaluations", VERDICT_ORDER)], "Judge verdicts", { barmode: "group" });
  draw("plot-staleness", [barsOf(state.staleness, "groups")], "Staleness of sampled groups (versions behind)");
  const D = state.driver;
  draw("plot-tokens", [...roleTraces(), line(D, "tokens_per_s", "counselor (rollouts)", byTime)], "Tokens/s per role");
  draw("plot-store", [line(D, "store_size", "store records", byTime), line(D, "store_unconsumed", "unconsumed", byTime),
    line(D, "queue_depth", "queue depth", byTime)], "Replay store and queue");
  const byRM = (e) => e.rm_version;
  draw("plot-rm", [line(state.rm, "rm_heldout_accuracy", "held-out ranking accuracy", byRM),
    line(state.rm, "rm_judge_gap", "RM score − judge reward, unseen groups", byRM, { yaxis: "y2" })],
    "Online reward model: accuracy (left), gap to the judge (right)",
    { xaxis: { tickformat: "d", title: { text: "reward-model version", standoff: 4 } },
      yaxis: { range: [0, 1.05] }, yaxis2: { overlaying: "y", side: "right", zeroline: true } });
  const stages = ["sample", "score", "advantages", "update", "publish"];
  draw("plot-stages", stages.map((s) => ({ ...series(L, `stage_${s}_s`, byVersion), name: s, type: "bar" })),
    "Learner seconds per stage, per weights version", { ...versionAxis, barmode: "stack" });
}

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

const FALLBACK_NOTE = "the simulated seeker was sent the stock fallback sentence instead";

function verdictHtml(verdict) {
  return verdict ? `<span class="verdict ${verdict}">${verdict}</span>` : "";
}

// A simulated seeker turn's role mark, when the run's seeker-role checker rated it.
function roleHtml(t) {
  if (typeof t.in_role !== "boolean") return "";
  const p = typeof t.seeker_p === "number" ? ` (p=${t.seeker_p.toFixed(2)})` : "";
  const title = "probability that a help-seeker wrote this, by the run's seeker-role checker";
  return t.in_role ? `<span class="badge in-role" title="${title}">seeker${p}</span>`
    : `<span class="badge out-of-role" title="${title}">out of role${p}</span>`;
}

// A counselor output: the answer when well formed; otherwise a marked box with the raw output and,
// where the seeker was sent the fallback sentence, a note saying so instead of that sentence.
function outputHtml(o, label, verdict) {
  if (o.well_formed !== false) {
    const text = o.fallback ? `<span class="badge fallback">fallback</span> <span class="muted">${FALLBACK_NOTE}</span>` : escapeHtml(o.text);
    return `<div class="candidate"><span class="who">${label}:</span> ${text}${verdictHtml(verdict)}</div>`;
  }
  let sent = `<div class="muted">the seeker was sent the salvaged text: ${escapeHtml(o.text)}</div>`;
  if (o.fallback) sent = `<div class="muted"><span class="badge fallback">fallback</span> ${FALLBACK_NOTE}</div>`;
  else if (o.raw == null) sent = `<div class="muted">(a feed written before raw outputs were recorded) sent: ${escapeHtml(o.text)}</div>`;
  return `<div class="candidate malformed"><span class="who">${label}:</span> ` +
    `<span class="badge malformed">malformed: ${escapeHtml(o.malformed || "not <think>/<answer>")}</span>${verdictHtml(verdict)}` +
    `<pre class="raw">${escapeHtml(o.raw || "")}</pre>${sent}</div>`;
}

function turnHtml(t, verdict) {
  if (t.role === "counselor" && ("well_formed" in t || t.fallback)) return outputHtml(t, "Counselor", verdict);
  const who = t.role === "seeker" ? (t.simulated ? "Seeker (simulated)" : "Seeker") : "Counselor";
  return `<div class="turn"><span class="who">${who}:</span> ${escapeHtml(t.text)}${roleHtml(t)}${verdictHtml(verdict)}</div>`;
}

function dialogueHtml(d) {
  const when = new Date(d.time * 1000).toLocaleTimeString();
  let body = "";
  if (d.kind === "evaluation") {
    let judged = 0;
    body = d.turns.map((t) => turnHtml(t, t.role === "counselor" ? d.verdicts[judged++] : null)).join("");
    body += `<div class="meta">${d.success ? "success" : "not solved"}</div>`;
  } else {
    body = d.context.map((t) => turnHtml(t)).join("");
    body += d.candidates.map((c, i) => outputHtml(c, `candidate ${i + 1}`, c.verdict) +
      ((c.future || []).length ? `<div class="future">${c.future.map((t) => turnHtml(t)).join("")}</div>` : "")).join("");
  }
  return `<div class="dialogue"><div class="meta">${when} · ${d.kind} · ${escapeHtml(d.source)} · policy v${d.policy_version} · ` +
    `${escapeHtml(d.problem)} / ${escapeHtml(d.emotion)}</div>${body}</div>`;
}

function ago(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

const QUIET_S = 30 * 60; // silent steps of a run on 2 cores, such as a held-out point, took 6-15 min

// "update 3 / 8 · started 12 min ago · last event 4 s ago", from what the server knows cheaply.
function progressText(s, lastLearner, lastTime) {
  const p = s.progress || {};
  const done = lastLearner ? lastLearner.weights_version : 0;
  const parts = [p.planned_updates ? `update ${done} / ${p.planned_updates}` : `update ${done}`];
  if (p.started && s.now) parts.push(`started ${ago(s.now - p.started)} ago`);
  if (lastTime && s.now) parts.push(`last event ${ago(Math.max(0, s.now - lastTime))} ago`);
  if (p.planned_updates && done >= p.planned_updates) parts.push("all updates done");
  // held-out points take minutes with nothing else moving on the page: say which one is under way
  const measured = new Set(state.heldout.map((e) => e.weights_version));
  if (p.heldout && !lastLearner && !measured.has(0)) parts.push("measuring version 0 on held-out contexts first");
  else if (p.heldout && p.planned_updates && done >= p.planned_updates && !measured.has(done)) {
    parts.push(`measuring version ${done} on held-out contexts`);
  }
  // a run killed from outside writes no last event: after a long silence, say that it may have stopped
  const finished = p.planned_updates && done >= p.planned_updates && (!p.heldout || measured.has(done));
  if (!finished && lastTime && s.now && s.now - lastTime > QUIET_S) {
    parts.push(`no event for ${ago(s.now - lastTime)}: the run may have stopped (see its run.log)`);
  }
  return parts.join(" · ");
}

// Counselor outputs in the listed dialogues: [malformed, all].
function malformedCount(dialogues) {
  let bad = 0, all = 0;
  for (const d of dialogues) {
    const outputs = d.kind === "evaluation" ? d.turns.filter((t) => t.role === "counselor" && "well_formed" in t) : d.candidates;
    for (const o of outputs) { all += 1; bad += o.well_formed === false ? 1 : 0; }
  }
  return [bad, all];
}

function update(message) {
  (message.metrics || []).forEach(ingest);
  for (const d of message.dialogues || []) {
    if (d.kind === "evaluation") (d.verdicts || []).forEach((v) => add(state.verdicts.evaluations, { [v || "none"]: 1 }));
    state.dialogues.unshift(d);
  }
  state.dialogues = state.dialogues.slice(0, 20);
  const s = message.status || {};
  text("run-name", s.run || "run");
  text("weights-version", s.weights_version ?? "–");
  const lastLearner = state.learner[state.learner.length - 1];
  text("learner-version", lastLearner ? lastLearner.weights_version : 0);
  const times = ["learner", "heldout", "driver", "evals"].map((k) => state[k].length ? state[k][state[k].length - 1].time : 0);
  text("progress", progressText(s, lastLearner, Math.max(...times)));
  const h = state.heldout[state.heldout.length - 1];
  const fmt = (v) => (typeof v === "number" ? v.toFixed(2) : "–");
  text("heldout-last", h ? `${fmt(h.heldout_reward)} / ${fmt(h.heldout_format_rate)} (v${h.weights_version})` : "not yet");
  const role = s.seeker_role || {};
  text("seeker-role", !role.checker ? "no checker" : role.turns
    ? `${Math.round((100 * role.in_role) / role.turns)}% (${role.in_role}/${role.turns})` : "no simulated turns yet");
  const rm = s.reward_model;
  text("rm-accuracy", rm && rm.rank_real_vs_other != null
    ? `${rm.rank_real_vs_other.toFixed(2)} / ${rm.label_correlation != null ? rm.label_correlation.toFixed(2) : "–"}`
    : "not trained");
  const lastRM = state.rm[state.rm.length - 1];
  const scoring = lastLearner && typeof lastLearner.rm_version === "number" ? lastLearner.rm_version : 0;
  text("rm-online", lastRM ? `v${lastRM.rm_version} · ${fmt(lastRM.rm_heldout_accuracy)} · ${fmt(lastRM.rm_judge_gap)}`
    + ` (learner on v${scoring})` : scoring ? `v${scoring}` : "v0, trained before the run");
  const lastDriver = state.driver[state.driver.length - 1];
  if (lastDriver) {
    const tokens = Object.entries(lastDriver.role_tokens || {}).filter(([, n]) => n > 0).sort();
    const kilo = (n) => (n >= 1000 ? `${(n / 1000).toFixed(1)}k` : `${n}`);
    text("role-tokens", tokens.length ? tokens.map(([name, n]) => `${name} ${kilo(n)}`).join(" · ") : "–");
    text("store", `${lastDriver.store_size} / ${lastDriver.store_unconsumed}`);
    text("queue", lastDriver.queue_depth);
  }
  text("restarts", `${state.restarts} / ${state.down}`);
  const lastEval = state.evals[state.evals.length - 1];
  if (lastEval) text("sr-at", `${lastEval.sr.toFixed(2)} / ${lastEval.at.toFixed(2)}`);
  if (state.dialogues.length) {
    document.getElementById("dialogues").innerHTML = state.dialogues.map(dialogueHtml).join("");
    const [bad, all] = malformedCount(state.dialogues);
    text("malformed-share", all ? `${bad} of ${all}` : "–");
  }
  redraw();
}

const source = new EventSource("/dashboard/events");
source.onopen = () => {
  state = emptyState();
  text("connection", "live");
};
source.onerror = () => text("connection", "reconnecting…");
source.onmessage = (e) => update(JSON.parse(e.data));
redraw();
