// agekit's page: photos go to POST /v1/predict one by one; boxes and labels are drawn over each photo.
// No build step, nothing loaded from elsewhere (the server's Content-Security-Policy forbids it).
"use strict";

const CSV_FIELDS = ["source", "frame", "face", "x1", "y1", "x2", "y2", "age", "age_smoothed", "uncertainty",
                    "gender", "gender_female", "track", "detector", "error"];
const PARALLEL = 3;  // requests in flight from this page
const results = [];  // every record, in the order the photos were given
const $ = (id) => document.getElementById(id);
let queue = [], running = 0, total = 0, finished = 0;

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function options() {
  const q = new URLSearchParams();
  if ($("model").value) q.set("model", $("model").value);
  q.set("multi_face", $("multi-face").value);
  if ($("flip").value) q.set("flip", $("flip").value);
  return q;
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models");
    const info = await r.json();
    const sel = $("model");
    for (const name of info.served) {
      const o = el("option", { value: name }, name);
      if (name === info.default.model) o.selected = true;
      sel.appendChild(o);
    }
    $("notice-text").textContent = info.notice;
    const used = [info.default.model, info.default.gender_model].filter(Boolean);
    const licences = new Set();
    for (const m of info.models) {
      if (used.some((u) => u === m.name || m.aliases.includes(u)) && m.licence) licences.add(m.licence);
    }
    $("licence").textContent = "Licence of the models in use: " +
      (licences.size ? [...licences].join(" ") : "see their model cards") + " (model cards: /v1/models)";
  } catch (e) {
    $("licence").textContent = "Licence: see /v1/models (could not load it: " + e + ")";
  }
}

// Show a photo at most 340 x 340 px (and no wider than the window), keeping its shape.
function fit(img) {
  if (!img.naturalWidth) return;
  const s = Math.min(1, Math.min(340, window.innerWidth - 40) / img.naturalWidth, 340 / img.naturalHeight);
  img.style.width = (img.naturalWidth * s) + "px";
  img.style.height = (img.naturalHeight * s) + "px";
}

function gender(f) {
  return f.gender === "female" ? "F" : f.gender === "male" ? "M" : "";
}

function drawBoxes(layer, faces, width, height) {
  layer.replaceChildren();
  faces.forEach((f, i) => {
    const [x1, y1, x2, y2] = f.box;
    const b = el("div", { class: "face-box" + (f.gender === "female" ? " female" : ""), "data-face": i,
                          "data-age": f.age ?? "", "data-gender": f.gender ?? "", "data-box": f.box.join(",") });
    b.style.left = (100 * x1 / width) + "%";
    b.style.top = (100 * y1 / height) + "%";
    b.style.width = (100 * (x2 - x1) / width) + "%";
    b.style.height = (100 * (y2 - y1) / height) + "%";
    const age = f.age === undefined || f.age === null ? "?" : f.age.toFixed(1);
    b.appendChild(el("span", { class: "face-label" }, `${age} ${gender(f)}`.trim()));
    layer.appendChild(b);
  });
}

function rows(rec) {
  if (!rec.faces.length) return [{ source: rec.source, frame: rec.frame, face: null, error: rec.error }];
  return rec.faces.map((f, i) => ({
    source: rec.source, frame: rec.frame, face: i, x1: f.box[0], y1: f.box[1], x2: f.box[2], y2: f.box[3],
    age: f.age, age_smoothed: f.age_smoothed, uncertainty: f.uncertainty, gender: f.gender,
    gender_female: f.gender_female, track: f.track, detector: f.detector, error: rec.error,
  }));
}

function fmt(v, nd) {
  return v === undefined || v === null ? "" : typeof v === "number" ? v.toFixed(nd) : String(v);
}

function renderTable() {
  const body = $("table").querySelector("tbody");
  body.replaceChildren();
  for (const rec of results) {
    if (!rec) continue;
    for (const r of rows(rec)) {
      const tr = el("tr");
      const cells = [[r.source], [r.face ?? "-"], [r.face === null ? "" : [r.x1, r.y1, r.x2, r.y2].map((v) => v.toFixed(0)).join(", ")],
                     [fmt(r.age, 1), "num age"], [fmt(r.uncertainty, 1), "num"], [r.gender ?? ""],
                     [fmt(r.gender_female, 2), "num"], [r.error ?? ""]];
      for (const [text, cls] of cells) tr.appendChild(el("td", cls ? { class: cls } : {}, String(text)));
      body.appendChild(tr);
    }
  }
  const any = results.some(Boolean);
  $("download-csv").disabled = $("download-json").disabled = !any;
}

function csvCell(v) {
  if (v === undefined || v === null) return "";
  const s = String(v);
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

function download(name, type, text) {
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function toCSV() {
  const lines = [CSV_FIELDS.join(",")];
  for (const rec of results) if (rec) for (const r of rows(rec)) lines.push(CSV_FIELDS.map((k) => csvCell(r[k])).join(","));
  return lines.join("\r\n") + "\r\n";
}

function status() {
  $("status").textContent = total ? `${finished} of ${total} photos done` : "";
  $("photos").dataset.done = String(finished);
  $("photos").dataset.total = String(total);
}

async function predict(body, name) {
  const q = options();
  let init;
  if (body instanceof Blob && !(body instanceof File)) {
    q.set("name", name);
    init = { method: "POST", body, headers: { "Content-Type": body.type || "application/octet-stream" } };
  } else {
    const fd = new FormData();
    fd.append("image", body, name);
    init = { method: "POST", body: fd };
  }
  const r = await fetch("/v1/predict?" + q.toString(), init);
  let data;
  try { data = await r.json(); } catch (e) { data = { detail: r.statusText }; }
  if (!r.ok) throw new Error(`${r.status}: ${data.detail ?? r.statusText}`);
  return data[0];
}

async function runOne(item) {
  const { file, index, fig, img, layer, caption } = item;
  try {
    await img.decode().catch(() => {});
    fit(img);
    const rec = await predict(file, file.name);
    results[index] = rec;
    if (img.naturalWidth) drawBoxes(layer, rec.faces, img.naturalWidth, img.naturalHeight);
    const n = rec.faces.length;
    caption.textContent = rec.error ? `${file.name}: ${rec.error}` : `${file.name}: ${n} face${n === 1 ? "" : "s"}`;
    if (rec.error) caption.classList.add("error");
    fig.dataset.state = "done";
  } catch (e) {
    results[index] = { source: file.name, faces: [], dropped: [], error: e.message };
    caption.textContent = `${file.name}: ${e.message}`;
    caption.classList.add("error");
    fig.dataset.state = "error";
  }
  finished += 1;
  status();
  renderTable();
}

function pump() {
  while (running < PARALLEL && queue.length) {
    const item = queue.shift();
    running += 1;
    runOne(item).finally(() => { running -= 1; pump(); });
  }
}

function addFiles(files) {
  for (const file of files) {
    const index = results.length;
    results.push(null);
    const fig = el("figure", { "data-state": "pending", "data-index": index });
    const frame = el("div", { class: "photo-frame" });
    const img = el("img", { alt: file.name });
    img.src = URL.createObjectURL(file);
    const layer = el("div", { class: "boxes" });
    frame.append(img, layer);
    const caption = el("figcaption", {}, `${file.name}: working...`);
    fig.append(frame, caption);
    $("photos").appendChild(fig);
    queue.push({ file, index, fig, img, layer, caption });
    total += 1;
  }
  status();
  pump();
}

// webcam: one frame in flight at a time, boxes drawn over the live video (frames are not kept)
let stream = null;
async function webcamLoop() {
  const video = $("video"), canvas = document.createElement("canvas");
  let frames = 0;
  const t0 = performance.now();
  while (stream) {
    if (!video.videoWidth) { await new Promise((r) => setTimeout(r, 100)); continue; }
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.85));
    try {
      const rec = await predict(blob, `webcam-${frames}.jpg`);
      drawBoxes($("video-boxes"), rec.faces, canvas.width, canvas.height);
      frames += 1;
      $("camera-status").textContent = `${(1000 * frames / (performance.now() - t0)).toFixed(1)} frames/s` +
        (rec.error ? ` - ${rec.error}` : "");
    } catch (e) {
      $("camera-status").textContent = e.message;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

async function toggleWebcam() {
  if (stream) {
    stream.getTracks().forEach((t) => t.stop());
    stream = null;
    $("camera").hidden = true;
    $("webcam").textContent = "Start webcam";
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    $("status").textContent = "No camera: " + e.message;
    return;
  }
  $("video").srcObject = stream;
  $("camera").hidden = false;
  $("webcam").textContent = "Stop webcam";
  webcamLoop();
}

function init() {
  loadModels();
  const drop = $("drop");
  $("files").addEventListener("change", (e) => { addFiles([...e.target.files]); e.target.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles([...e.dataTransfer.files].filter((f) => f.type.startsWith("image/") || f.type === ""));
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("files").click(); });
  $("download-csv").addEventListener("click", () => download("agekit-results.csv", "text/csv", toCSV()));
  $("download-json").addEventListener("click", () =>
    download("agekit-results.json", "application/json", JSON.stringify(results.filter(Boolean), null, 1)));
  $("clear").addEventListener("click", () => {
    results.length = 0; queue = []; total = finished = 0;
    $("photos").replaceChildren();
    renderTable(); status();
  });
  $("webcam").addEventListener("click", toggleWebcam);
  if (!navigator.mediaDevices) $("webcam").disabled = true;
}

document.addEventListener("DOMContentLoaded", init);
