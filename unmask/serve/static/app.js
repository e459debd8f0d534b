// unmask web page: reads the model panel, posts settings, draws the Server-Sent-Event frames.
// Token text is only ever set with textContent: a token that spells <script> stays text.
"use strict";

const MASK = "\u2593";
const $ = (id) => document.getElementById(id);
let cells = [];       // one <span> per position
let recent = [];      // positions highlighted at the last step
let generated = 0;    // positions to fill
let controller = null;

function setStatus(text, kind) {
  $("status").textContent = text;
  $("status").className = kind;
}

function fmtInt(n) { return Number(n).toLocaleString("en-US"); }
function fmtBytes(n) { return n == null ? "–" : (n / 2 ** 20).toFixed(1) + " MiB"; }
function fmtParams(n) { return n >= 1e6 ? (n / 1e6).toFixed(2) + "M" : fmtInt(n); }

function addInfo(list, name, value) {
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = name;
  dd.textContent = value;
  list.append(dt, dd);
}

async function loadModel() {
  const response = await fetch("/api/model");
  const info = await response.json();
  const list = $("model-info");
  list.replaceChildren();
  addInfo(list, "checkpoint", info.checkpoint);
  addInfo(list, "kind", `${info.mode} · ${info.objective}`);
  addInfo(list, "parameters", fmtParams(info.parameters));
  addInfo(list, "shape", `${info.layers} layers · ${info.heads} heads · ${info.width} wide`);
  addInfo(list, "context", fmtInt(info.context));
  addInfo(list, "vocabulary", `${fmtInt(info.vocab_size)} (${info.tokenizer})`);
  addInfo(list, "device", info.device);
  addInfo(list, "memory", `${fmtBytes(info.memory.weights_bytes)} weights · ` +
                          `${fmtBytes(info.memory.process_rss_bytes)} process`);
  addInfo(list, "training step", info.training_step == null ? "–" : fmtInt(info.training_step));
  const ckpts = $("checkpoints");
  ckpts.replaceChildren();
  for (const c of info.checkpoints) {
    const li = document.createElement("li");
    li.textContent = `${c.name}${c.step == null ? "" : " · step " + fmtInt(c.step)}`;
    if (c.loaded) li.className = "loaded";
    li.title = c.path;
    ckpts.append(li);
  }
  const policy = $("policy");
  policy.replaceChildren();
  for (const [name, summary] of Object.entries(info.samplers)) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    option.title = summary;
    option.selected = name === info.default_sampler;
    policy.append(option);
  }
  const d = info.defaults, l = info.limits;
  $("length").value = d.length; $("length").max = l.max_length;
  $("steps").value = d.steps; $("steps").max = l.max_steps;
  $("temperature").value = d.temperature;
  $("top-k").value = d.top_k;
  $("top-p").value = d.top_p;
  $("seed").value = d.seed;
  $("prompt").maxLength = l.max_prompt_chars;
}

function speed() {  // steps per second; the slider's last notch is "as fast as possible" (0)
  const v = Number($("speed").value);
  return v > 60 ? 0 : v;
}

function showSpeed() {
  $("speed-value").textContent = speed() ? `${speed()} steps/s` : "max";
}

function numberOrNull(id) {
  const text = $(id).value.trim();
  return text === "" ? null : Number(text);
}

function settings() {
  return {
    prompt: $("prompt").value,
    policy: $("policy").value || null,
    length: numberOrNull("length"),
    steps: numberOrNull("steps"),
    temperature: numberOrNull("temperature"),
    top_k: numberOrNull("top-k"),
    top_p: numberOrNull("top-p"),
    seed: numberOrNull("seed") ?? 0,
    speed: speed(),
  };
}

function drawCell(cell, text, kind) {
  cell.className = "cell " + kind;
  cell.textContent = kind === "masked" || kind === "remasked" ? MASK : text;
}

function onStart(frame) {
  const output = $("output");
  output.replaceChildren();
  cells = frame.cells.map(([text, kind]) => {
    const span = document.createElement("span");
    drawCell(span, text, kind);
    return span;
  });
  output.append(...cells);
  recent = [];
  generated = frame.generated;
  $("stat-policy").textContent = `${frame.policy} · seed ${frame.seed}`;
  showProgress(0, frame.steps, generated);
}

function showProgress(step, steps, masked) {
  $("step").textContent = `step ${step} / ${steps}`;
  $("masked-count").textContent = masked;
  $("progress").value = generated ? (generated - masked) / generated : 1;
}

function showStats(frame) {
  $("stat-time").textContent = `${frame.seconds.toFixed(2)} s`;
  $("stat-tps").textContent = fmtInt(Math.round(frame.tokens_per_second));
  if (frame.network_calls != null) $("stat-calls").textContent = frame.network_calls;
}

function settle() {
  for (const i of recent) {
    const kind = cells[i].classList.contains("new") ? "settled" : "masked";
    drawCell(cells[i], cells[i].textContent, kind);
  }
  recent = [];
}

function onStep(frame) {
  settle();
  for (const [i, text, confidence] of frame.revealed) {
    drawCell(cells[i], text, "new");
    cells[i].title = `p = ${confidence}`;
    recent.push(i);
  }
  for (const i of frame.remasked) {
    drawCell(cells[i], "", "remasked");
    recent.push(i);
  }
  showProgress(frame.step, frame.steps, frame.masked);
  showStats(frame);
}

function onEnd(frame) {
  settle();
  showStats(frame);
  if (frame.type === "done") setStatus("done", "done");
  else if (frame.type === "cancelled") setStatus("cancelled", "cancelled");
  else { setStatus("error", "error"); $("message").textContent = frame.message; }
}

function handle(frame) {
  if (frame.type === "start") onStart(frame);
  else if (frame.type === "step") onStep(frame);
  else onEnd(frame);
}

async function readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6)).join("\n");
      if (data) handle(JSON.parse(data));
    }
  }
}

async function start(event) {
  event.preventDefault();
  if (controller) return;
  $("message").textContent = "";
  controller = new AbortController();
  $("start").disabled = true;
  $("cancel").disabled = false;
  setStatus("generating", "running");
  try {
    const response = await fetch("/api/generate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(settings()),
      signal: controller.signal,
    });
    if (!response.ok) {
      let detail = `HTTP ${response.status}`;
      try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
      $("message").textContent = detail;
      setStatus("refused", "error");
    } else {
      await readEvents(response);
    }
  } catch (err) {
    if (err.name === "AbortError") setStatus("cancelled", "cancelled");
    else { $("message").textContent = String(err); setStatus("error", "error"); }
  } finally {
    controller = null;
    $("start").disabled = false;
    $("cancel").disabled = true;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("controls").addEventListener("submit", start);
  $("cancel").addEventListener("click", () => controller && controller.abort());
  $("speed").addEventListener("input", showSpeed);
  showSpeed();
  loadModel().catch((err) => { $("message").textContent = `cannot load the model: ${err}`; });
});
