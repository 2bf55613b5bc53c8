// The live dashboard: one EventSource on /dashboard/events; every message adds the new metrics events
// and dialogues (format in serve/dashboard.py) and redraws. Learner curves are per weights version;
// actor-side series are over wall time.
"use strict";

// A new connection's first message carries the whole history again, so state starts empty then.
function emptyState() {
  return {
    learner: [], // learner events, one per update
    evals: [], // {time, sr, at, eval_format_rate}
    driver: [], // store size, queue depth, tokens/s per role
    verdicts: { rollouts: {}, evaluations: {} },
    staleness: {},
    restarts: 0,
    down: 0,
    dialogues: [],
  };
}
let state = emptyState();
const VERDICT_ORDER = ["worse", "same", "better", "solved"];
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

function add(counts, map) {
  for (const [k, v] of Object.entries(map || {})) counts[k] = (counts[k] || 0) + v;
}

function ingest(event) {
  if (event.source === "learner") {
    state.learner.push(event);
    add(state.staleness, event.staleness_hist);
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
  const versionAxis = { xaxis: { tickformat: "d" } };
  draw("plot-reward", [line(L, "reward_mean", "reward", byVersion), line(L, "rm_score_mean", "RM score", byVersion)],
    "Reward and RM score, per weights version", versionAxis);
  draw("plot-format", [line(L, "format_rate", "format compliance", byVersion), line(L, "unsafe_rate", "unsafe", byVersion)],
    "Format compliance, per weights version", { ...versionAxis, yaxis: { range: [0, 1.05] } });
  draw("plot-kl", [line(L, "policy_kl", "KL(behaviour‖policy)", byVersion), line(L, "kl", "KL(policy‖reference)", byVersion),
    line(L, "is_weight_mean", "IS weight", byVersion, { yaxis: "y2" })],
    "Policy KL per token (IS weight, right)", { ...versionAxis, yaxis2: { overlaying: "y", side: "right" } });
  draw("plot-eval", [line(state.evals, "sr", "SR", byTime), line(state.evals, "at", "AT", byTime, { yaxis: "y2" })],
    "Periodic evaluations: SR (left), AT (right)", { yaxis: { range: [0, 1.05] }, yaxis2: { overlaying: "y", side: "right" } });
  draw("plot-verdicts", [barsOf(state.verdicts.rollouts, "rollouts", VERDICT_ORDER),
    barsOf(state.verdicts.evaluations, "evaluations", VERDICT_ORDER)], "Judge verdicts", { barmode: "group" });
  draw("plot-staleness", [barsOf(state.staleness, "groups")], "Staleness of sampled groups (versions behind)");
  const D = state.driver;
  draw("plot-tokens", [...roleTraces(), line(D, "tokens_per_s", "counselor (rollouts)", byTime)], "Tokens/s per role");
  draw("plot-store", [line(D, "store_size", "store records", byTime), line(D, "store_unconsumed", "unconsumed", byTime),
    line(D, "queue_depth", "queue depth", byTime)], "Replay store and queue");
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

function turnHtml(t, verdict) {
  const who = t.role === "seeker" ? "Seeker" : "Counselor";
  const tag = verdict ? `<span class="verdict ${verdict}">${verdict}</span>` : "";
  return `<div class="turn"><span class="who">${who}:</span> ${escapeHtml(t.text)}${tag}</div>`;
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
    body += d.candidates.map((c, i) => `<div class="turn">candidate ${i + 1}${c.well_formed ? "" : " (malformed)"}: ` +
      `${escapeHtml(c.text)}${c.verdict ? `<span class="verdict ${c.verdict}">${c.verdict}</span>` : ""}</div>` +
      (c.future || []).map((t) => turnHtml(t)).join("")).join("");
  }
  return `<div class="dialogue"><div class="meta">${when} · ${d.kind} · ${escapeHtml(d.source)} · policy v${d.policy_version} · ` +
    `${escapeHtml(d.problem)} / ${escapeHtml(d.emotion)}</div>${body}</div>`;
}

function update(message) {
  (message.metrics || []).forEach(ingest);
  for (const d of message.dialogues || []) {
    if (d.kind === "evaluation") (d.verdicts || []).forEach((v) => v && add(state.verdicts.evaluations, { [v]: 1 }));
    state.dialogues.unshift(d);
  }
  state.dialogues = state.dialogues.slice(0, 20);
  const s = message.status || {};
  text("run-name", s.run || "run");
  text("weights-version", s.weights_version ?? "–");
  const lastLearner = state.learner[state.learner.length - 1];
  text("learner-version", lastLearner ? lastLearner.weights_version : 0);
  const rm = s.reward_model;
  text("rm-accuracy", rm && rm.accuracy != null ? `${rm.accuracy.toFixed(3)} (${rm.majority_baseline.toFixed(3)})` : "not trained");
  const lastDriver = state.driver[state.driver.length - 1];
  if (lastDriver) {
    text("store", `${lastDriver.store_size} / ${lastDriver.store_unconsumed}`);
    text("queue", lastDriver.queue_depth);
  }
  text("restarts", `${state.restarts} / ${state.down}`);
  const lastEval = state.evals[state.evals.length - 1];
  if (lastEval) text("sr-at", `${lastEval.sr.toFixed(2)} / ${lastEval.at.toFixed(2)}`);
  if (state.dialogues.length) document.getElementById("dialogues").innerHTML = state.dialogues.map(dialogueHtml).join("");
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
