// The demo page's script: plain JavaScript on the public API, no build step.
"use strict";
const $ = (id) => document.getElementById(id);
// Counters the browser tests read; also handy in the console.
window.demo = { denoisedSamples: 0, partials: 0, finals: 0, keywords: 0, ended: 0, errors: [], runs: 0 };

// ---- settings ------------------------------------------------------------------------------------------------
function apiKey() { return $("api-key").value.trim(); }
function headers() { return apiKey() ? { "Authorization": "Bearer " + apiKey() } : {}; }
function threshold() {
  const value = Number($("threshold").value);
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0.5;
}
function beamSearch() { return document.querySelector("input[name=decoding]:checked").value === "beam"; }
function wsUrl(task) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // Browsers cannot set headers on a websocket: the key goes in the query string.
  const key = apiKey() ? "?api_key=" + encodeURIComponent(apiKey()) : "";
  return `${scheme}//${location.host}/v1/stream/${task}${key}`;
}
$("api-key").value = localStorage.getItem("centaurus-api-key") || "";
$("api-key").addEventListener("change", () => { localStorage.setItem("centaurus-api-key", apiKey()); listModels(); });

async function listModels() {
  const models = $("models");
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : `HTTP ${r.status}`);
    models.textContent = "Models: " + body.data.map((m) => `${m.id} (${m.task})`).join(", ");
    models.dataset.state = "done";
  } catch (e) {
    models.textContent = "Models: " + (e.message || String(e));
    models.dataset.state = "error";
  }
}
listModels();

function setStatus(element, state, text) {
  element.dataset.state = state;
  element.textContent = text;
}

// ---- spectrograms --------------------------------------------------------------------------------------------
function fft(re, im) {  // in place, radix 2
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = -2 * Math.PI / len;
    for (let i = 0; i < n; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(ang * k), wi = Math.sin(ang * k);
        const xr = re[i + k + len / 2] * wr - im[i + k + len / 2] * wi;
        const xi = re[i + k + len / 2] * wi + im[i + k + len / 2] * wr;
        re[i + k + len / 2] = re[i + k] - xr; im[i + k + len / 2] = im[i + k] - xi;
        re[i + k] += xr; im[i + k] += xi;
      }
    }
  }
}

function colour(t) {  // dark blue -> violet -> orange -> pale yellow, like a perceptual "magma" map
  const stops = [[13, 8, 60], [110, 30, 130], [215, 70, 90], [252, 160, 60], [252, 245, 190]];
  const x = Math.max(0, Math.min(1, t)) * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  return stops[i].map((c, k) => c + (stops[i + 1][k] - c) * f);
}

function drawSpectrogram(canvas, samples) {
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height, n = 512;
  const image = ctx.createImageData(w, h);
  const hop = Math.max(1, Math.floor((samples.length - n) / w));
  for (let x = 0; x < w; x++) {
    const re = new Float32Array(n), im = new Float32Array(n), start = x * hop;
    for (let i = 0; i < n; i++) re[i] = (samples[start + i] || 0) * (0.5 - 0.5 * Math.cos(2 * Math.PI * i / n));
    fft(re, im);
    for (let y = 0; y < h; y++) {
      const bin = Math.floor((h - 1 - y) * (n / 2) / h);
      const db = 10 * Math.log10(re[bin] * re[bin] + im[bin] * im[bin] + 1e-10);
      const [r, g, b] = colour((db + 80) / 85);
      const p = (y * w + x) * 4;
      image.data[p] = r; image.data[p + 1] = g; image.data[p + 2] = b; image.data[p + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  canvas.hidden = false;
  canvas.dataset.drawn = "1";
}

async function decodeForDisplay(blob) {
  const ctx = new OfflineAudioContext(1, 1, 16000);
  const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
  return audio.getChannelData(0);
}

async function showSpectrogram(canvasId, blob, isCurrent) {
  // Only a picture: the server decides whether the file is audio, so a file the browser cannot decode
  // (or that is not audio at all) never stops the page.
  const note = $(canvasId + "-note");
  try {
    const samples = await decodeForDisplay(blob);
    if (isCurrent()) drawSpectrogram($(canvasId), samples);
  } catch (e) {
    if (isCurrent()) { note.textContent = "This browser cannot draw a spectrogram of this file."; note.hidden = false; }
  }
}

// ---- file mode -----------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function post(path, file, fields) {
  const form = new FormData();
  form.append("file", file);
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  let r;
  try {
    r = await fetch(path, { method: "POST", body: form, headers: headers() });
  } catch (e) {
    throw new ApiError(0, "network", "The server could not be reached.");
  }
  if (r.ok) return r;
  let error = { code: `http_${r.status}`, message: `The server answered HTTP ${r.status}.` };
  try { error = (await r.json()).error || error; } catch (e) { /* not JSON: keep the status */ }
  throw new ApiError(r.status, error.code, error.message);
}

let run = 0;          // the current analysis; answers of an older one are dropped
let objectUrls = [];  // revoked when the next run starts

function chooseFile(file) {
  $("file-name").textContent = file ? file.name : "No file chosen";
  $("file-name").title = file ? file.name : "";
  $("file-name").closest(".file-picker").classList.toggle("chosen", Boolean(file));
}
$("file").addEventListener("change", () => chooseFile($("file").files[0]));
const dropZone = $("file-card");
dropZone.addEventListener("dragover", (e) => { e.preventDefault(); $("drop-zone").classList.add("dragging"); });
dropZone.addEventListener("dragleave", () => $("drop-zone").classList.remove("dragging"));
dropZone.addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop-zone").classList.remove("dragging");
  if (!e.dataTransfer.files.length) return;
  $("file").files = e.dataTransfer.files;
  chooseFile($("file").files[0]);
});

function resetResults() {
  objectUrls.forEach((url) => URL.revokeObjectURL(url));
  objectUrls = [];
  $("file-error").hidden = true;
  $("file-error").textContent = "";
  $("results").dataset.state = "loading";
  $("results-empty").hidden = true;
  $("results-grid").hidden = false;
  $("transcript").textContent = "";
  $("transcript").dataset.state = "loading";
  $("words").querySelector("tbody").innerHTML = "";
  $("words-details").hidden = true;
  $("keywords").innerHTML = "";
  $("keywords").dataset.state = "loading";
  $("keywords-empty").hidden = true;
  for (const id of ["before", "after"]) {
    $(id).removeAttribute("src"); $(id).load(); $(id).hidden = true;
    $("spec-" + id).hidden = true; delete $("spec-" + id).dataset.drawn;
    $("spec-" + id + "-note").hidden = true;
  }
  $("after").dataset.state = "loading";
}

function showError(messages) {
  const box = $("file-error");
  box.innerHTML = "";
  const title = document.createElement("strong");
  const unreadable = messages.some((e) => e.status === 415 || e.code === "empty_audio" || e.code === "invalid_audio");
  title.textContent = unreadable ? "This file could not be read as audio." : "The analysis failed.";
  box.append(title);
  for (const text of [...new Set(messages.map((e) => e.message))]) {
    const line = document.createElement("div");
    line.textContent = text;
    box.append(line);
  }
  box.hidden = false;
}

function words(list) {
  return list.map((w) => `<tr><td>${escapeHtml(w.word)}</td><td>${w.start.toFixed(2)}</td><td>${w.end.toFixed(2)}</td>` +
                         `<td>${w.confidence.toFixed(2)}</td></tr>`).join("");
}
function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function keywordItem(d) {
  const item = document.createElement("li");
  item.innerHTML = `<b>${escapeHtml(d.keyword)}</b> ${d.start.toFixed(2)}–${d.end.toFixed(2)} s · ${d.score.toFixed(2)}`;
  return item;
}

$("analyse").addEventListener("click", async () => {
  const file = $("file").files[0];
  if (!file) { setStatus($("file-status"), "error", "Choose a file first."); return; }
  const mine = ++run, isCurrent = () => mine === run;
  window.demo.runs += 1;
  const started = performance.now(), limit = threshold();
  $("analyse").disabled = true;
  resetResults();
  setStatus($("file-status"), "working", `Analysing ${file.name}…`);
  try {
    const beforeUrl = URL.createObjectURL(file);
    objectUrls.push(beforeUrl);
    const jobs = [
      post("/transcribe", file, { word_timestamps: "true", beam_search: String(beamSearch()),
                                  denoise: String($("denoise-first").checked) })
        .then((r) => r.json()).then((t) => {
          if (!isCurrent()) return;
          $("transcript").textContent = t.text || "(no words recognised)";
          $("words").querySelector("tbody").innerHTML = words(t.words || []);
          $("words-details").hidden = !(t.words || []).length;
          $("transcript").dataset.state = "done";
        }),
      post("/keywords", file, { threshold: String(limit) }).then((r) => r.json()).then((k) => {
        if (!isCurrent()) return;
        $("keywords").replaceChildren(...k.detections.map(keywordItem));
        $("keywords-empty").textContent = `No keyword scored ${limit} or more.`;
        $("keywords-empty").hidden = k.detections.length > 0;
        $("keywords").dataset.state = "done";
      }),
      post("/denoise", file, { response_format: "wav" }).then((r) => r.blob()).then(async (clean) => {
        if (!isCurrent()) return;
        const url = URL.createObjectURL(clean);
        objectUrls.push(url);
        $("before").src = beforeUrl; $("before").hidden = false;
        $("after").src = url; $("after").hidden = false;
        $("after").dataset.state = "done";
        await Promise.all([showSpectrogram("spec-before", file, isCurrent), showSpectrogram("spec-after", clean, isCurrent)]);
      }),
    ];
    const results = await Promise.allSettled(jobs);
    if (!isCurrent()) return;
    const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    for (const [id, state] of [["transcript", "error"], ["keywords", "error"], ["after", "error"]]) {
      if ($(id).dataset.state === "loading") $(id).dataset.state = state;
    }
    if (failed.length) {
      showError(failed.map((e) => (e instanceof ApiError ? e : new ApiError(0, "client", String(e)))));
      if (failed.length === jobs.length) {  // nothing to show: back to the empty state, the error says why
        $("results-grid").hidden = true;
        $("results").dataset.state = "error";
      } else {
        $("results").dataset.state = "partial";
      }
      // All failed: the error box says it all; some failed: the rest of the results stand.
      setStatus($("file-status"), "error", failed.length === jobs.length ? "" : "Partly done: see the error below.");
    } else {
      $("results").dataset.state = "done";
      setStatus($("file-status"), "done", `Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
    }
  } catch (e) {  // never leave the page on "working"
    if (isCurrent()) { showError([new ApiError(0, "client", String(e))]); setStatus($("file-status"), "error", "Failed."); }
  } finally {
    if (isCurrent()) $("analyse").disabled = false;
  }
});

// ---- microphone mode -----------------------------------------------------------------------------------------
// The AudioWorklet posts each 128-sample render quantum of the microphone to the page.
const CAPTURE = `class Capture extends AudioWorkletProcessor {
  process(inputs) { if (inputs[0][0]) this.port.postMessage(inputs[0][0].slice()); return true; }
}
registerProcessor("capture", Capture);`;
let live = null;

function liveError(text) {
  setStatus($("mic-status"), "error", text);
}

function openStream(task, rate, onMessage, onAudio) {
  const ws = new WebSocket(wsUrl(task));
  ws.binaryType = "arraybuffer";
  const start = { type: "session.start", sample_rate: rate, encoding: "pcm_f32le", interim_results: true,
                  threshold: threshold() };
  if (task === "transcribe") start.beam_search = beamSearch();
  ws.onopen = () => ws.send(JSON.stringify(start));
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") { onAudio && onAudio(new Float32Array(event.data)); return; }
    const message = JSON.parse(event.data);
    if (message.type === "error") { window.demo.errors.push(message.code); liveError(message.message); }
    if (message.type === "session.ended") window.demo.ended += 1;
    onMessage(message);
  };
  ws.onclose = (event) => {
    if (event.code === 1000) return;
    window.demo.errors.push("close " + event.code);
    if (live && live.sockets[task] === ws) stopCapture($("mic-status").dataset.state === "error" ? null
      : `The ${task} stream closed (code ${event.code}).`);
  };
  return ws;
}

function drawScope(samples) {
  const canvas = $("live-scope"), ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  const style = getComputedStyle(document.body);
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = style.getPropertyValue("--accent").trim() || "#3b5bdb";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  for (let x = 0; x < w; x++) {
    const y = h / 2 - (samples[Math.floor(x * samples.length / w)] || 0) * h / 2;
    x ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  }
  ctx.stroke();
}

function resetLive() {
  Object.assign(window.demo, { denoisedSamples: 0, partials: 0, finals: 0, keywords: 0, ended: 0, errors: [] });
  $("live").dataset.state = "live";
  $("live-empty").hidden = true;
  $("live-grid").hidden = false;
  $("live-transcript").querySelector(".final").textContent = "";
  $("live-transcript").querySelector(".partial").textContent = "";
  $("live-transcript-empty").hidden = false;
  $("live-transcript-empty").textContent = "Listening…";
  $("live-keywords").innerHTML = "";
  $("live-keywords-empty").hidden = false;
  const canvas = $("live-scope");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

function stopCapture(errorText) {
  if (!live) return;
  const { context, media, sockets } = live;
  live = null;
  media.getTracks().forEach((t) => t.stop());
  for (const ws of Object.values(sockets)) if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "session.end" }));
  setTimeout(() => context.close(), 2000);
  $("mic-stop").disabled = true; $("mic-start").disabled = false;
  if (!$("live-transcript").textContent.trim()) $("live-transcript-empty").textContent = "No words recognised.";
  if (errorText) liveError(errorText);
  else if ($("mic-status").dataset.state !== "error") setStatus($("mic-status"), "stopped", "Stopped.");
}

$("mic-start").addEventListener("click", async () => {
  $("mic-start").disabled = true;
  setStatus($("mic-status"), "starting", "Starting the microphone…");
  let media = null, context = null;
  try {
    if (!navigator.mediaDevices || !window.AudioWorkletNode) throw new Error("This browser (or an http:// page on " +
      "another host) gives no microphone access; open the page on localhost or over https.");
    context = new AudioContext({ sampleRate: 16000 });
    media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false,
                                                               noiseSuppression: false, autoGainControl: false } });
    await context.audioWorklet.addModule(URL.createObjectURL(new Blob([CAPTURE], { type: "text/javascript" })));
    const source = context.createMediaStreamSource(media);
    const capture = new AudioWorkletNode(context, "capture");
    source.connect(capture);
    const rate = context.sampleRate;
    let playAt = 0;
    resetLive();
    const finals = $("live-transcript").querySelector(".final"), partial = $("live-transcript").querySelector(".partial");
    const sockets = {
      transcribe: openStream("transcribe", rate, (m) => {
        if (m.type === "transcript.partial") {
          window.demo.partials += 1; partial.textContent = (finals.textContent ? " " : "") + m.text;
        }
        if (m.type === "transcript.final") {
          window.demo.finals += 1; partial.textContent = "";
          if (m.text) finals.textContent += (finals.textContent ? " " : "") + m.text;
        }
        $("live-transcript-empty").hidden = Boolean($("live-transcript").textContent.trim());
      }),
      keywords: openStream("keywords", rate, (m) => {
        if (m.type !== "keyword.detected") return;
        window.demo.keywords += 1;
        $("live-keywords").prepend(keywordItem(m));
        $("live-keywords-empty").hidden = true;
      }),
      denoise: openStream("denoise", rate, () => {}, (samples) => {
        window.demo.denoisedSamples += samples.length;
        drawScope(samples);
        if (!$("monitor").checked || !samples.length) return;
        const buffer = context.createBuffer(1, samples.length, rate);
        buffer.copyToChannel(samples, 0);
        const node = context.createBufferSource();
        node.buffer = buffer; node.connect(context.destination);
        playAt = Math.max(playAt, context.currentTime + 0.05);
        node.start(playAt); playAt += buffer.duration;
      }),
    };
    // Frames of 20 ms: 160 render quanta would be too chatty, one big buffer too late.
    let pending = [], pendingLength = 0;
    capture.port.onmessage = (event) => {
      pending.push(event.data); pendingLength += event.data.length;
      if (pendingLength < rate / 50) return;
      const frame = new Float32Array(pendingLength);
      let offset = 0;
      for (const part of pending) { frame.set(part, offset); offset += part.length; }
      pending = []; pendingLength = 0;
      for (const ws of Object.values(sockets)) if (ws.readyState === WebSocket.OPEN) ws.send(frame.buffer);
    };
    live = { context, media, sockets };
    $("mic-stop").disabled = false;
    setStatus($("mic-status"), "live", `Listening at ${rate / 1000} kHz.`);
  } catch (e) {
    if (media) media.getTracks().forEach((t) => t.stop());
    if (context) context.close();
    const denied = e && (e.name === "NotAllowedError" || e.name === "SecurityError");
    liveError(denied ? "Microphone access was refused; allow it in the browser and try again."
      : e && e.name === "NotFoundError" ? "No microphone was found." : (e && e.message) || String(e));
    $("mic-start").disabled = false;
  }
});

$("mic-stop").addEventListener("click", () => stopCapture(null));
