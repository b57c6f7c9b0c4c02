// brainxai web page: upload -> /v1/predict, show probabilities and heatmaps; jobs table.
// Vanilla JS, no build step, no CDN. The bearer token lives in sessionStorage only.
"use strict";

const TOKEN_KEY = "brainxai.token";
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function authHeaders() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function apiFetch(path, options) {
  const response = await fetch(path, { ...(options || {}), headers: { ...authHeaders() } });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(`HTTP ${response.status}: ${detail}`);
  }
  return body;
}

// The ticked methods; none ticked leaves the choice to the API's default.
function selectedMethods() {
  const boxes = document.querySelectorAll("#methods input:checked");
  return Array.from(boxes, (b) => b.value).join(",");
}

async function predict(file) {
  showError("");
  $("status").textContent = `Analysing ${file.name} ...`;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const methods = selectedMethods();
    const url = "/v1/predict" + (methods ? "?methods=" + encodeURIComponent(methods) : "");
    const result = await apiFetch(url, { method: "POST", body: form });
    renderResult(result);
    $("status").textContent = "";
  } catch (err) {
    $("status").textContent = "";
    showError(err.message);
  }
}

// A null class means the image is out of scope: the reason is shown, and the model's raw
// output is labelled as not a result.
function renderResult(r) {
  $("result").hidden = false;
  $("result-class").textContent = r.class === null ? "indeterminate" : r.class;
  $("result-sentence").textContent = r.sentence;
  $("result-reason").hidden = r.class !== null;
  $("result-reason").textContent = r.class === null
    ? `No class: ${r.reason}. Model output (${r.model_output}) below is not a result.` : "";
  $("result-disclaimer").textContent = r.disclaimer;
  $("result-model").textContent = `${r.model.name} ${r.model.version}`;
  const src = r.source;
  $("result-source").textContent = `${src.kind} ${src.columns}x${src.rows}` +
    (src.frame_count > 1 ? ` (slice ${src.frame_index + 1} of ${src.frame_count})` : "");
  const total = Object.values(r.timings_ms).reduce((a, b) => a + b, 0);
  $("result-timing").textContent = `${total.toFixed(0)} ms`;
  renderProbabilities(r.probabilities, r.class === null ? "" : r.class);
  renderViews(r);
}

function renderProbabilities(probs, top) {
  const box = $("probs");
  box.replaceChildren();
  const sorted = Object.entries(probs).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of sorted) {
    const fill = el("div", { style: `width:${(100 * p).toFixed(1)}%` });
    const row = el("div", { class: "row" + (name === top ? " top" : ""), "data-class": name },
      el("span", {}, name), el("div", { class: "bar" }, fill),
      el("span", {}, (100 * p).toFixed(1) + " %"));
    box.append(row);
  }
}

function renderViews(r) {
  const box = $("views");
  box.replaceChildren();
  for (const [method, ex] of Object.entries(r.explanations)) {
    const heat = el("img", { class: "heat", src: ex.overlay_png, alt: `${method} heatmap` });
    heat.style.opacity = "0.6";
    const slider = el("input", { type: "range", min: "0", max: "100", value: "60",
      "aria-label": `${method} opacity` });
    slider.addEventListener("input", () => { heat.style.opacity = String(slider.value / 100); });
    const quality = el("ul", { class: "quality" });
    for (const [k, v] of Object.entries(ex.quality)) {
      quality.append(el("li", {}, `${k}: ${v === null ? "n/a" : Number(v).toFixed(3)}`));
    }
    const raw = el("a", { href: ex.raw_png16, download: `${method}-raw16.png` }, "raw 16-bit map");
    box.append(el("div", { class: "view", "data-method": method },
      el("h3", {}, method),
      el("div", { class: "stack" }, el("img", { src: r.image_png, alt: "analysed image" }), heat),
      el("label", {}, "heatmap opacity ", slider), quality, raw));
  }
}

async function loadJobs() {
  const tbody = document.querySelector("#jobs tbody");
  try {
    const data = await apiFetch("/v1/jobs?limit=50");
    tbody.replaceChildren();
    for (const job of data.jobs) tbody.append(jobRow(job));
    $("jobs-status").textContent = data.count ? "" : "No jobs yet.";
  } catch (err) {
    $("jobs-status").textContent = "Jobs unavailable: " + err.message;
  }
}

function formatTime(value) {
  if (value === null || value === undefined) return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return isNaN(date) ? String(value) : date.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

// What a job came to: the error (failed) or the reasons nothing was analysable
// (no_result), else the study's decision sentence (the API's top-level job.sentence).
function jobOutcome(job) {
  if (job.error) return job.error;
  if (job.sentence) return job.sentence;
  return job.decision || "";
}

// The heatmap preview needs the bearer token, so it is fetched and shown as a blob URL.
async function loadPreview(job, cell) {
  try {
    const response = await fetch(`/v1/jobs/${encodeURIComponent(job.id)}/preview.png`,
      { headers: authHeaders() });
    if (!response.ok) return;
    const url = URL.createObjectURL(await response.blob());
    cell.append(el("img", { class: "preview", src: url, alt: "heatmap preview" }));
  } catch (err) { /* no preview: the cell stays empty */ }
}

async function loadModels() {
  const tbody = document.querySelector("#models tbody");
  try {
    const data = await apiFetch("/v1/models");
    const m = data.in_use;
    $("model-in-use").textContent = `In use: ${m.name} ${m.version}` +
      (m.registry_version ? ` (registry version ${m.registry_version})` : "") + ` from ${m.source}`;
    tbody.replaceChildren();
    for (const v of data.registered) {
      const acc = v.val_accuracy === null ? "" : v.val_accuracy.toFixed(3);
      tbody.append(el("tr", { "data-version": v.version }, el("td", {}, v.version),
        el("td", {}, v.aliases.join(", ")), el("td", {}, acc), el("td", {}, v.bundle_version || ""),
        el("td", {}, v.in_use ? "yes" : "")));
    }
    $("models-status").textContent = data.registry_error
      ? "Registry unavailable: " + data.registry_error
      : (data.registered.length ? "" : "No registered versions.");
  } catch (err) {
    $("models-status").textContent = "Models unavailable: " + err.message;
  }
}

const STATE_HELP = {
  no_result: "Nothing in the study could be analysed; the reasons are shown. No results sent.",
  failed: "Processing or delivery failed; Retry queues the study again.",
};

function jobRow(job) {
  const what = jobOutcome(job);
  const cell = el("td");
  if (job.state === "failed") {
    const button = el("button", { type: "button" }, "Retry");
    button.addEventListener("click", async () => {
      try { await apiFetch(`/v1/jobs/${encodeURIComponent(job.id)}/retry`, { method: "POST" }); }
      catch (err) { showError(err.message); }
      loadJobs();
    });
    cell.append(button);
  }
  const preview = el("td", { class: "preview" });
  if (job.state !== "failed" && job.outputs && job.outputs.length) loadPreview(job, preview);
  const viewer = el("td", { class: "viewer" });
  if (job.viewer_url) {
    viewer.append(el("a", { href: job.viewer_url, target: "_blank", rel: "noopener" }, "open"));
  }
  return el("tr", { "data-job": job.id },
    el("td", { class: "uid" }, job.id), el("td", { class: "uid" }, job.study_instance_uid),
    el("td", { class: "state-" + job.state, title: STATE_HELP[job.state] || "" }, job.state),
    el("td", {}, job.attempts),
    el("td", {}, formatTime(job.updated_at)),
    el("td", { class: "decision" }, what), preview, viewer, cell);
}

function setupDropzone() {
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) predict(file);
  });
  $("file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) predict(file);
  });
}

function setupToken() {
  $("token").value = token();
  $("token-state").textContent = token() ? "token set for this tab" : "no token";
  $("save-token").addEventListener("click", () => {
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token-state").textContent = token() ? "token set for this tab" : "no token";
    loadJobs();
    loadModels();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  setupDropzone();
  $("refresh-jobs").addEventListener("click", loadJobs);
  loadJobs();
  loadModels();
});
