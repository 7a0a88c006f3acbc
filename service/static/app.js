// ATNL Playground: a client of the service's public REST API, nothing else.
// Plain browser JavaScript, no libraries, no network beyond this origin.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const PAD_INK = 22; // stroke width on the 280 px pads: about 2 px at 28 x 28, as MNIST's pen
  const MAP_PATH_POINTS = 48;
  const POLL_MS = 1000;
  const TICK_RADIUS = 0.72; // label names inside the order circle, clear of the clusters on it
  const DIGITS_SHAPE = [1, 28, 28]; // [C, H, W] of a model that records none (the first checkpoints: MNIST)
  const LARGE = 1.5; // a picture wider than 1.5 boxes is a photo: shrunk smoothly, not scaled in whole pixels
  // Display boxes, CSS px: each picture is shown at a whole multiple of its own size near these.
  const BOX = { live: 112, strip: 52, gallery: 48, fewshot: 52, made: 48, slot: 200 };

  const state = {
    modelId: null,
    family: null,
    labels: [],
    shape: DIGITS_SHAPE, // [C, H, W] of the active model's pictures (GET /v1/models)
    drawing: true, // grey digit models take drawn digits; the others take image files only
    spherical: null, // from GET /v1/latent-map; until then, guessed from the family
    samples: null, // GET /v1/samples answer
    map: null, // GET /v1/latent-map answer
    slots: { a: { ink: false, blob: null, url: null }, b: { ink: false, blob: null, url: null } },
    latents: null, // the two morph inputs' unit latents (POST /v1/encode)
    frames: null, // {slerp, lerp}: POST /v1/interpolate answers
    fewshot: [], // [{blob, url, label}]
    mapPicks: [],
    job: null,
    tokenRequired: false,
  };

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(detail, status) {
      super(detail);
      this.status = status;
    }
  }

  /** fetch() an API path; throws ApiError carrying the problem+json's detail. */
  async function api(path, { method, json, body, auth = false, as = "json" } = {}) {
    const headers = new Headers();
    if (auth && $("#token").value.trim()) headers.set("Authorization", "Bearer " + $("#token").value.trim());
    if (json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(json);
    }
    let resp;
    try {
      resp = await fetch(path, { method: method || (body ? "POST" : "GET"), headers, body });
    } catch (err) {
      throw new ApiError(`the server cannot be reached (${err.message})`, 0);
    }
    if (!resp.ok) {
      let detail = `${resp.status} ${resp.statusText}`;
      if ((resp.headers.get("content-type") || "").includes("json")) {
        try {
          const problem = await resp.json();
          if (problem.detail) detail = problem.detail;
        } catch (_) {
          /* keep the status line */
        }
      }
      if (resp.status === 401) showTokenField();
      throw new ApiError(detail, resp.status);
    }
    return as === "blob" ? resp.blob() : resp.json();
  }

  function showError(sel, err) {
    $(sel).textContent = err ? err.message || String(err) : "";
  }

  /** Run ``fn`` and show what it throws under ``sel`` (cleared on success). */
  async function guarded(sel, fn) {
    try {
      const out = await fn();
      showError(sel, null);
      return out;
    } catch (err) {
      showError(sel, err);
      return undefined;
    }
  }

  // ---------------------------------------------------------------- small helpers

  const pngSrc = (b64) => "data:image/png;base64," + b64;

  function b64Blob(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Blob([bytes], { type: "image/png" });
  }

  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k.startsWith("aria-") || k === "role") node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) node.append(child);
    return node;
  }

  /** Display size of a w × h picture near ``box`` px: the model's own small pictures grow by a whole
   * factor (square, crisp pixels at any side, any aspect); a large photo shrinks to the box, smoothly. */
  function displaySize(w, h, box) {
    const side = Math.max(w, h, 1);
    const k = side > box * LARGE ? box / side : Math.max(1, Math.round(box / side));
    return { width: Math.round(w * k), height: Math.round(h * k), smooth: k < 1 };
  }

  /** Size ``img`` for ``box``: first as the model's pictures, then, once loaded, as its own. */
  function sized(img, box) {
    const fit = (w, h) => {
      const size = displaySize(w, h, box);
      img.width = size.width;
      img.height = size.height;
      img.classList.toggle("smooth", size.smooth);
    };
    fit(state.shape[2], state.shape[1]);
    img.addEventListener("load", () => fit(img.naturalWidth, img.naturalHeight));
    return img;
  }

  function image(src, alt, box = BOX.strip, title = alt) {
    return sized(el("img", { src, alt, title }), box);
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function download(blob, name) {
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  const colour = (k) => (k < PALETTE.length ? PALETTE[k] : `hsl(${(k * 137.5) % 360} 65% 45%)`);
  const labelIndex = (name) => state.labels.indexOf(name);
  const fmt = (x) => (Math.abs(x) >= 100 ? x.toFixed(0) : Number(x.toPrecision(3)).toString());

  // slerp and lerp of two latents, as models/geometry.py computes them.
  function slerp(z1, z2, w) {
    const dot = Math.min(1, Math.max(-1, z1.reduce((s, v, i) => s + v * z2[i], 0)));
    const omega = Math.acos(dot);
    if (omega < 1e-4) return normalize(lerp(z1, z2, w));
    if (omega > Math.PI - 1e-3) {
      // antipodal: the great circle through z1 and its least aligned axis (deterministic)
      let k = 0;
      z1.forEach((v, i) => { if (Math.abs(v) < Math.abs(z1[k])) k = i; });
      const u = normalize(z1.map((v, i) => (i === k ? 1 : 0) - z1[k] * v));
      return normalize(z1.map((v, i) => Math.cos(w * omega) * v + Math.sin(w * omega) * u[i]));
    }
    const s = Math.sin(omega);
    const a = Math.sin((1 - w) * omega) / s;
    const b = Math.sin(w * omega) / s;
    return normalize(z1.map((v, i) => a * v + b * z2[i]));
  }
  const lerp = (z1, z2, w) => z1.map((v, i) => (1 - w) * v + w * z2[i]);
  function normalize(z) {
    const n = Math.hypot(...z) || 1;
    return z.map((v) => v / n);
  }

  // ---------------------------------------------------------------- model state

  async function refreshModel() {
    let ready;
    try {
      ready = await api("/readyz");
    } catch (err) {
      $("#model-id").textContent = "none yet";
      const why = err.status === 503 ? "no model is loaded yet (a first start trains the default model)" : err.message;
      $("#model-state").textContent = `(${why}; retrying)`;
      setTimeout(refreshModel, 3000);
      return;
    }
    const changed = ready.model_id !== state.modelId;
    state.modelId = ready.model_id;
    $("#model-id").textContent = ready.model_id;
    $("#model-state").textContent = "";
    if (changed) await onModelChanged();
  }

  async function onModelChanged() {
    state.samples = state.map = state.latents = state.frames = null;
    state.spherical = null;
    state.mapPicks = [];
    await loadModels();
    await Promise.all([loadSamples(), loadMap()]);
    morphSoon();
  }

  const shapeText = ([c, h, w]) => `${c === 3 ? "colour" : "grey"} ${w}×${h}`;
  const PREPARED = {
    digits: "cropped to the ink and centred, as MNIST",
    fit: "centre-cropped and resized",
    none: "resized as they are",
  }; // what each of the models' preprocessings does to a picture (docs/API.md)

  /** Follow the active model (its GET /v1/models entry): its pictures' [C, H, W], how it
   * prepares them, its label names. Grey digit models keep the drawing pads; the others read
   * pictures that a drawn digit is not, so they take image files (chosen or dropped) only. */
  function applyModel(m) {
    state.family = m.family;
    state.shape = m.image_shape || DIGITS_SHAPE;
    const prepared = m.preprocess || "digits";
    const drawing = state.shape[0] === 1 && prepared === "digits";
    if (drawing !== state.drawing) {
      state.drawing = drawing;
      clearSlot("a");
      clearSlot("b");
    }
    if (m.labels && m.labels.length) setLabels(m.labels);
    for (const slot of ["a", "b"]) {
      pad(slot).hidden = !drawing;
      drop(slot).hidden = drawing;
    }
    const kind = shapeText(state.shape);
    $("#model-kind").textContent = `(${kind}, ${state.labels.length} labels)`;
    $("#morph-how").textContent = drawing
      ? "Draw a digit in each box (mouse, pen or finger), drop or choose an image, or pick two of the model's own test images."
      : "Choose or drop an image for each end, or pick two of the model's own test images.";
    $("#pad-note").hidden = drawing;
    $("#pad-note").textContent = drawing
      ? ""
      : `No drawing pads: this model reads ${kind} pictures (${PREPARED[prepared] || prepared}), not drawn digits.`;
  }

  /** The model's label names, in order: the pickers' defaults and the layout follow them. */
  function setLabels(names) {
    const changed = names.join("\n") !== state.labels.join("\n");
    state.labels = names;
    const longest = Math.max(1, ...names.map((name) => name.length));
    document.documentElement.style.setProperty("--label-chars", longest); // label columns as wide as the longest name
    const pick = $("#hall-pick-labels");
    if (!pick.value.split(",").every((name) => names.includes(name.trim()))) {
      const k = names.length;
      pick.value = [...new Set([names[0], names[k >> 1], names[k - 1]])].join(","); // first, middle and last
    }
    pick.size = Math.max(8, pick.value.length + 2);
    if (changed && state.fewshot.length) {
      // Examples labelled with another model's names: start the set again.
      state.fewshot.forEach((item) => URL.revokeObjectURL(item.url));
      state.fewshot = [];
      renderFewshot();
      $("#hall-grid").replaceChildren();
      $("#hall-check").textContent = "";
    }
    const [first, next] = [names[0], names[Math.min(5, names.length - 1)]];
    const between = names.slice(1, names.indexOf(next));
    $("#morph-example").textContent = between.length
      ? `A semantic morph goes through the labels in between: ${first} becomes ${between.join(", ")}, then ${next}.`
      : "A semantic morph goes through the labels in between.";
  }

  // ---------------------------------------------------------------- Morph

  function pad(slot) {
    return $("#canvas-" + slot);
  }

  function drop(slot) {
    return $("#drop-" + slot);
  }

  /** Empty a slot: its pad black again, its dropped picture gone. */
  function clearSlot(slot) {
    const canvas = pad(slot);
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (state.slots[slot].url) URL.revokeObjectURL(state.slots[slot].url);
    const shown = $("img", drop(slot));
    shown.hidden = true;
    shown.removeAttribute("src");
    drop(slot).classList.remove("filled");
    state.slots[slot] = { ink: false, blob: null, url: null };
  }

  function setupPad(slot) {
    const canvas = pad(slot);
    const ctx = canvas.getContext("2d");
    clearSlot(slot);
    let last = null;
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
    };
    const stroke = (from, to) => {
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = PAD_INK;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(...from);
      ctx.lineTo(...to);
      ctx.stroke();
    };
    canvas.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      if (state.slots[slot].blob) clearSlot(slot); // drawing replaces a dropped or picked image
      canvas.setPointerCapture(e.pointerId);
      last = at(e);
      stroke(last, last);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!last) return;
      const p = at(e);
      stroke(last, p);
      last = p;
    });
    const end = () => {
      if (!last) return;
      last = null;
      state.slots[slot].ink = true;
      morphSoon();
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    const keys = (e) => {
      if (e.key === "Delete" || e.key === "Backspace") {
        clearSlot(slot);
        morphSoon();
      } else if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        $(`[data-file="${slot}"]`).click();
      }
    };
    canvas.addEventListener("keydown", keys);
    dropTarget(canvas, (files) => files[0] && setSlotImage(slot, files[0]));
    // Models that take no drawing: a drop zone in the pad's place, showing the picture chosen.
    const zone = drop(slot);
    zone.addEventListener("keydown", keys);
    zone.addEventListener("click", () => $(`[data-file="${slot}"]`).click());
    dropTarget(zone, (files) => files[0] && setSlotImage(slot, files[0]));
    sized($("img", zone), BOX.slot);
    $(`[data-clear="${slot}"]`).addEventListener("click", () => {
      clearSlot(slot);
      morphSoon();
    });
    $(`[data-file="${slot}"]`).addEventListener("change", (e) => {
      if (e.target.files[0]) setSlotImage(slot, e.target.files[0]);
      e.target.value = "";
    });
  }

  function dropTarget(node, onFiles) {
    node.addEventListener("dragover", (e) => {
      e.preventDefault();
      node.classList.add("dragover");
    });
    node.addEventListener("dragleave", () => node.classList.remove("dragover"));
    node.addEventListener("drop", (e) => {
      e.preventDefault();
      node.classList.remove("dragover");
      const files = Array.from(e.dataTransfer.files).filter((f) => /^image\//.test(f.type));
      if (files.length) onFiles(files);
    });
  }

  /** Show ``blob`` on the slot's pad (fitted, on black) or in its drop zone, and send the blob itself to the API. */
  async function setSlotImage(slot, blob) {
    if (!state.drawing) {
      clearSlot(slot);
      const url = URL.createObjectURL(blob);
      const shown = $("img", drop(slot));
      shown.src = url;
      shown.alt = `${slot === "a" ? "start" : "end"} image`;
      shown.hidden = false;
      drop(slot).classList.add("filled");
      state.slots[slot] = { ink: true, blob, url };
      morphSoon();
      return;
    }
    const canvas = pad(slot);
    const ctx = canvas.getContext("2d");
    try {
      const bitmap = await createImageBitmap(blob);
      clearSlot(slot);
      const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
      const w = bitmap.width * scale;
      const h = bitmap.height * scale;
      ctx.imageSmoothingEnabled = scale < 1;
      ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    } catch (_) {
      clearSlot(slot); // not an image the browser can show: the API will say why
    }
    state.slots[slot] = { ink: true, blob, url: null };
    morphSoon();
  }

  function slotBlob(slot) {
    const s = state.slots[slot];
    if (s.blob) return Promise.resolve(s.blob);
    return new Promise((resolve) => pad(slot).toBlob(resolve, "image/png"));
  }

  function pairForm(a, b, extra) {
    const form = new FormData();
    form.append("start", a, "start.png");
    form.append("end", b, "end.png");
    for (const [k, v] of Object.entries(extra)) form.append(k, v);
    return form;
  }

  function renderStrip(sel, answer, caption) {
    const list = $(sel);
    list.replaceChildren(
      ...answer.frames.map((png, i) => {
        const w = answer.omegas[i].toFixed(2);
        return el("li", {}, [image(pngSrc(png), `${caption || answer.method} frame ${i + 1}, ω = ${w}`), el("span", { textContent: `ω ${w}` })]);
      }),
    );
  }

  let morphSeq = 0;
  async function morph() {
    const seq = ++morphSeq;
    if (!state.slots.a.ink || !state.slots.b.ink) {
      state.latents = state.frames = null;
      $("#strip-slerp").replaceChildren();
      $("#strip-lerp").replaceChildren();
      $("#live-note").textContent = `${state.drawing ? "Draw, drop" : "Choose, drop"} or pick both images to morph.`;
      return;
    }
    const [a, b] = await Promise.all([slotBlob("a"), slotBlob("b")]);
    const steps = $("#steps").value;
    const encodeForm = new FormData();
    encodeForm.append("files", a, "start.png");
    encodeForm.append("files", b, "end.png");
    await guarded("#morph-error", async () => {
      const [slerpPath, lerpPath, encoded] = await Promise.all([
        api("/v1/interpolate", { body: pairForm(a, b, { steps, method: "slerp" }) }),
        api("/v1/interpolate", { body: pairForm(a, b, { steps, method: "lerp" }) }),
        api("/v1/encode", { body: encodeForm }),
      ]);
      if (seq !== morphSeq) return; // a newer morph is on its way
      state.frames = { slerp: slerpPath, lerp: lerpPath };
      state.latents = encoded.latents;
      renderStrip("#strip-slerp", slerpPath);
      renderStrip("#strip-lerp", lerpPath);
      await decodeLive();
    });
  }
  const morphSoon = debounce(morph, 250);

  let liveSeq = 0;
  /** Decode slerp and lerp at the slider's ω (spherical models: exact, any ω). */
  async function decodeLive() {
    const w = Number($("#omega").value);
    $("#omega-value").textContent = w.toFixed(2);
    if (!state.latents || !state.frames) return;
    const seq = ++liveSeq;
    const spherical = state.spherical ?? state.family === "atnl";
    const live = [$("#live-slerp"), $("#live-lerp")];
    if (!spherical) {
      // The decoder reads raw codes that /v1/encode does not return: show the nearest strip frame.
      const { slerp: s, lerp: l } = state.frames;
      const i = Math.round(w * (s.frames.length - 1));
      live[0].src = pngSrc(s.frames[i]);
      live[1].src = pngSrc(l.frames[i]);
      $("#live-note").textContent = `This model's decoder reads raw codes: showing the strip frame at ω = ${s.omegas[i].toFixed(2)}.`;
    } else {
      const [za, zb] = state.latents;
      await guarded("#morph-error", async () => {
        const out = await api("/v1/decode", { json: { latents: [slerp(za, zb, w), lerp(za, zb, w)] } });
        if (seq !== liveSeq) return;
        live[0].src = pngSrc(out.images[0]);
        live[1].src = pngSrc(out.images[1]);
        $("#live-note").textContent = "";
      });
    }
    live[0].alt = `slerp at ω = ${w.toFixed(2)}`;
    live[1].alt = `lerp at ω = ${w.toFixed(2)}`;
    live[0].dataset.omega = live[1].dataset.omega = w.toFixed(2);
  }

  async function downloadPath(format) {
    if (!state.slots.a.ink || !state.slots.b.ink) {
      showError("#morph-error", new Error(`${state.drawing ? "draw, drop" : "choose, drop"} or pick both images first`));
      return;
    }
    const [a, b] = await Promise.all([slotBlob("a"), slotBlob("b")]);
    const method = $("#download-method").value;
    await guarded("#morph-error", async () => {
      const blob = await api("/v1/interpolate", { body: pairForm(a, b, { steps: $("#steps").value, method, format }), as: "blob" });
      download(blob, `morph-${method}.${format}`);
    });
  }

  // ---------------------------------------------------------------- test images (gallery)

  async function loadSamples() {
    await guarded("#morph-error", async () => {
      state.samples = await api("/v1/samples?per_label=6");
      setLabels(state.samples.labels);
      renderGallery();
      renderFewshot();
    });
  }

  function renderGallery() {
    const rows = state.labels.map((name) => {
      const buttons = state.samples.samples
        .filter((s) => s.label === name)
        .map((s) => {
          const button = el("button", { type: "button", title: `Use test image #${s.index} (label ${name})` }, [
            image(pngSrc(s.png), `test image #${s.index}, label ${name}`, BOX.gallery),
          ]);
          button.dataset.index = s.index;
          button.dataset.label = name;
          button.addEventListener("click", () => pickSample(s));
          return button;
        });
      return el("div", { className: "label-row" }, [el("span", { textContent: name }), ...buttons]);
    });
    $("#gallery").replaceChildren(...rows);
  }

  function pickSample(sample) {
    const into = $('input[name="pick-into"]:checked').value;
    setSlotImage(into, b64Blob(sample.png));
    $(`input[name="pick-into"][value="${into === "a" ? "b" : "a"}"]`).checked = true; // next pick fills the other
  }

  // ---------------------------------------------------------------- Hallucinate

  function addFewshot(blob, label) {
    state.fewshot.push({ blob, url: URL.createObjectURL(blob), label });
  }

  function guessLabel(filename) {
    // "3.png", "3b.png", "7_photo.jpg": a label name at the start of the file name
    const stem = filename.replace(/\.[^.]*$/, "");
    const byLength = [...state.labels].sort((x, y) => y.length - x.length);
    return byLength.find((name) => stem.startsWith(name)) ?? state.labels[0];
  }

  function renderFewshot() {
    const items = state.fewshot.map((item, i) => {
      const select = el(
        "select",
        { "aria-label": `Label of image ${i + 1}` },
        state.labels.map((name) => el("option", { value: name, textContent: name, selected: name === item.label })),
      );
      select.addEventListener("change", () => (item.label = select.value));
      const remove = el("button", { type: "button", textContent: "Remove", "aria-label": `Remove image ${i + 1}` });
      remove.addEventListener("click", () => {
        URL.revokeObjectURL(item.url);
        state.fewshot.splice(i, 1);
        renderFewshot();
      });
      const read = item.disagreement && item.disagreement.given === item.label ? item.disagreement.read : null;
      const note = read ? [el("span", { className: "misread-note", textContent: `model reads ${read}` })] : [];
      const shown = image(item.url, `example ${i + 1}, label ${item.label}`, BOX.fewshot);
      return el("li", {}, [markedImage(shown, read), select, ...note, remove]);
    });
    $("#fewshot").replaceChildren(...items);
  }

  async function addTestImages() {
    await guarded("#hall-error", async () => {
      const wanted = $("#hall-pick-labels").value.split(",").map((s) => s.trim()).filter(Boolean);
      const unknown = wanted.filter((name) => !state.labels.includes(name));
      if (unknown.length) throw new Error(`unknown label(s) ${unknown.join(", ")}; the model's labels are ${state.labels.join(", ")}`);
      const count = Math.max(1, Number($("#hall-pick-count").value) || 1);
      const listed = await api(`/v1/samples?per_label=${count}`);
      for (const s of listed.samples) if (wanted.includes(s.label)) addFewshot(b64Blob(s.png), s.label);
      renderFewshot();
    });
  }

  function hallucinateForm(format) {
    if (!state.fewshot.length) throw new Error("add a few labelled images first");
    const form = new FormData();
    state.fewshot.forEach((item, i) => form.append("files", item.blob, `example-${i}.png`));
    form.append("labels", JSON.stringify(state.fewshot.map((item) => item.label)));
    form.append("per_class", $("#per-class").value);
    if ($("#strategy").value) form.append("strategy", $("#strategy").value);
    form.append("seed", $("#hall-seed").value || "0");
    form.append("filter", $("#hall-filter").value);
    form.append("format", format);
    return form;
  }

  async function hallucinate() {
    const button = $("#hall-run");
    button.disabled = true;
    await guarded("#hall-error", async () => {
      const examples = state.fewshot.slice();
      const answer = await api("/v1/hallucinate", { body: hallucinateForm("json") });
      markDisagreements(answer, examples);
      renderHallucinations(answer, examples);
    });
    button.disabled = false;
  }

  // The examples the model reads as another label than the one given: marked in the set (their
  // label is still used), and a line on what the self-check did.
  function markDisagreements(answer, examples) {
    const byFile = new Map(answer.disagreements.map((d) => [d.file, d]));
    examples.forEach((item, i) => (item.disagreement = byFile.get(i) ?? null));
    renderFewshot();
    const c = answer.self_check;
    const parts = [];
    if (answer.disagreements.length) {
      const list = answer.disagreements.map((d) => `example ${d.file + 1} (given ${d.given}, reads ${d.read})`).join(", ");
      parts.push(`The model reads ${list} as another label; the label you gave is used.`);
    }
    if (!c.checked) parts.push("This model cannot read labels: nothing checked the images.");
    else if (c.filter === "model") parts.push(`Self-check: ${c.replaced} redrawn, ${c.dropped} left out.`);
    else parts.push(`Self-check: ${c.flagged} image(s) the model reads as another label are marked.`);
    $("#hall-check").textContent = parts.join(" ");
  }

  function renderHallucinations(answer, examples) {
    const groups = state.labels
      .map((name) => {
        const sources = examples
          .map((item, i) => [item, i])
          .filter(([item]) => item.label === name)
          .map(([item, i]) => markedImage(image(item.url, `example ${i + 1}, label ${name}`, BOX.made), item.disagreement?.read));
        const made = answer.images
          .filter((m) => m.label === name)
          .map((m) =>
            markedImage(
              image(pngSrc(m.png), `hallucinated ${name}`, BOX.made, `label ${name}: from examples ${m.sources[0] + 1} and ${m.sources[1] + 1}, ω = ${m.omega.toFixed(2)}`),
              m.read !== null && m.read !== m.label ? m.read : null,
            ),
          );
        if (!sources.length && !made.length) return null;
        const group = el("div", { className: "hall-group", role: "group", "aria-label": `label ${name}: ${sources.length} examples, ${made.length} made` }, [
          el("h3", { textContent: name }),
          el("div", { className: "sources", title: "the examples of this label" }, sources),
          el("div", { className: "made" }, made),
        ]);
        group.dataset.label = name;
        return group;
      })
      .filter(Boolean);
    $("#hall-grid").replaceChildren(...groups);
  }

  // An image the model reads as another label: outlined, and the reading in its title and alt.
  function markedImage(img, read) {
    if (read) {
      img.classList.add("misread");
      img.title = `${img.title ? img.title + "; " : ""}the model reads ${read}`;
      img.alt = `${img.alt} (the model reads ${read})`;
    }
    return img;
  }

  async function hallucinateZip() {
    await guarded("#hall-error", async () => {
      download(await api("/v1/hallucinate", { body: hallucinateForm("zip"), as: "blob" }), "hallucinated.zip");
    });
  }

  // ---------------------------------------------------------------- Latent map

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs = {}, children = []) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    for (const child of children) node.append(child);
    return node;
  }

  /** Place a unit latent on the map, as GET /v1/latent-map documents. */
  function project(z) {
    const p = state.map.projection;
    if (state.map.method === "pca") {
      const c = z.map((v, i) => v - p.mean[i]);
      return p.components.map((row) => row.reduce((s, v, i) => s + v * c[i], 0));
    }
    const psi = Math.atan2(z[1], z[0]);
    const rho = Math.hypot(z[0], z[1]) / p.radius;
    const style = z.slice(2).map((v, i) => v - p.mean[i]);
    const [s1, s2] = p.components.map((row) => row.reduce((s, v, i) => s + v * style[i], 0));
    return [rho * Math.sin(psi) + p.style_scale * s1, rho * Math.cos(psi) + p.style_scale * s2];
  }

  async function loadMap() {
    await guarded("#map-error", async () => {
      const map = await api("/v1/latent-map");
      state.map = map;
      state.spherical = map.spherical;
      setLabels(map.labels);
      renderMap();
    });
  }

  function renderMap() {
    const map = state.map;
    const root = $("#map-svg");
    const pts = map.points;
    const xs = pts.map((p) => p.x);
    const ys = pts.map((p) => -p.y);
    const centres = map.centres || [];
    for (const c of centres) {
      xs.push(c.x * TICK_RADIUS);
      ys.push(-c.y * TICK_RADIUS);
    }
    const spread = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys), 1e-3);
    // Label names inside the circle's top, each within its share of the arc however long the names are,
    // and the view wide enough for the outermost ones.
    const longest = Math.max(1, ...state.labels.map((name) => name.length));
    const gap = centres.length > 1 ? Math.hypot(centres[1].x - centres[0].x, centres[1].y - centres[0].y) * TICK_RADIUS : 1;
    const fontSize = Math.min((spread * 1.12) / 28, (0.95 * gap) / (0.6 * longest));
    for (const c of centres) {
      const half = 0.3 * fontSize * c.label.length;
      xs.push(c.x * TICK_RADIUS - half, c.x * TICK_RADIUS + half);
      ys.push(-c.y * TICK_RADIUS - fontSize / 2, -c.y * TICK_RADIUS + fontSize / 2);
    }
    const pad = 0.06 * Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys), 1e-3);
    const [x0, y0] = [Math.min(...xs) - pad, Math.min(...ys) - pad];
    const [w, h] = [Math.max(...xs) + pad - x0, Math.max(...ys) + pad - y0];
    root.setAttribute("viewBox", `${x0} ${y0} ${w} ${h}`);
    const side = Math.max(w, h);
    const r = side / 130;
    const layers = [];
    if (map.centres) {
      layers.push(svg("circle", { class: "circle", cx: 0, cy: 0, r: 1 }));
      const ang = map.centres.map((c) => Math.atan2(c.x, c.y));
      const arc = [];
      for (let i = 0; i <= 60; i++) {
        const a = ang[0] + ((ang[ang.length - 1] - ang[0]) * i) / 60;
        arc.push(`${Math.sin(a).toFixed(4)},${(-Math.cos(a)).toFixed(4)}`);
      }
      layers.push(svg("polyline", { class: "arc", points: arc.join(" ") }));
      for (const c of map.centres) {
        layers.push(svg("text", { class: "tick", x: (c.x * TICK_RADIUS).toFixed(4), y: (-c.y * TICK_RADIUS).toFixed(4) }, [document.createTextNode(c.label)]));
      }
    }
    const dots = pts.map((p, i) => {
      const dot = svg("circle", { class: "pt", cx: p.x, cy: -p.y, r, fill: colour(labelIndex(p.label)), "data-i": i, "data-index": p.index, "data-label": p.label });
      dot.append(svg("title", {}, [document.createTextNode(`label ${p.label}, test image #${p.index}`)]));
      return dot;
    });
    const paths = svg("g", { id: "map-paths" });
    root.replaceChildren(...layers, svg("g", { id: "map-points" }, dots), paths);
    for (const t of $$(".tick", root)) t.setAttribute("font-size", fontSize.toFixed(4));
    $("#map-legend").replaceChildren(
      ...state.labels.map((name, k) => {
        const item = el("li", { textContent: name });
        item.style.setProperty("--swatch", colour(k));
        return item;
      }),
    );
    const how =
      map.method === "order-circle"
        ? "Each point sits at its order angle on the order circle (the labels over its top), offset by its style's first two principal components."
        : "PCA of the latents (this model has no order circle).";
    $("#map-caption").textContent = `${pts.length} test images of model ${map.model_id}, coloured by label. ${how} Click two points to morph between them.`;
    for (const sel of ["#map-from", "#map-to"]) {
      $(sel).replaceChildren(...state.labels.map((name) => el("option", { value: name, textContent: name })));
    }
    $("#map-to").value = state.labels[Math.min(5, state.labels.length - 1)]; // a few labels on, as the morph hint says
    state.mapPicks = [];
  }

  function pickPoint(i) {
    const point = state.map.points[i];
    if (state.mapPicks.length >= 2) state.mapPicks = [];
    state.mapPicks.push(point);
    $$("#map-points .picked").forEach((n) => n.classList.remove("picked"));
    for (const p of state.mapPicks) $(`#map-points [data-index="${p.index}"]`).classList.add("picked");
    if (state.mapPicks.length === 1) {
      $("#map-picked").textContent = `From label ${point.label} (#${point.index}): now click a second point.`;
      $("#map-paths").replaceChildren();
    } else {
      mapMorph(...state.mapPicks);
    }
  }

  async function mapMorph(from, to) {
    $("#map-picked").textContent = `From label ${from.label} (#${from.index}) to label ${to.label} (#${to.index}).`;
    await guarded("#map-error", async () => {
      const [a, b] = await Promise.all([api(`/v1/samples/${from.index}`, { as: "blob" }), api(`/v1/samples/${to.index}`, { as: "blob" })]);
      const encodeForm = new FormData();
      encodeForm.append("files", a, "start.png");
      encodeForm.append("files", b, "end.png");
      const [path, encoded] = await Promise.all([
        api("/v1/interpolate", { body: pairForm(a, b, { steps: 10, method: "slerp" }) }),
        api("/v1/encode", { body: encodeForm }),
      ]);
      renderStrip("#map-strip", path);
      $("#map-strip-caption").textContent = `slerp from ${from.label} to ${to.label}; on the map, the slerp path (black) and the lerp path (red, dashed)`;
      const [za, zb] = encoded.latents;
      const line = (fn) =>
        Array.from({ length: MAP_PATH_POINTS + 1 }, (_, i) => {
          const [x, y] = project(fn(za, zb, i / MAP_PATH_POINTS));
          return `${x.toFixed(4)},${(-y).toFixed(4)}`;
        }).join(" ");
      $("#map-paths").replaceChildren(
        svg("polyline", { class: "path-lerp", points: line(lerp) }),
        svg("polyline", { class: "path-slerp", points: line(slerp) }),
      );
    });
  }

  function mapMorphByLabel() {
    if (!state.map) return;
    const first = (name) => state.map.points.findIndex((p) => p.label === name);
    const [i, j] = [first($("#map-from").value), first($("#map-to").value)];
    if (i < 0 || j < 0) return;
    state.mapPicks = [];
    pickPoint(i);
    pickPoint(j);
  }

  // ---------------------------------------------------------------- Models and training

  function showTokenField() {
    $("#token-row").hidden = false;
  }

  async function loadAuth() {
    await guarded("#models-error", async () => {
      state.tokenRequired = (await api("/v1/auth")).token_required;
      if (state.tokenRequired) showTokenField();
    });
  }

  function metricsCell(metrics) {
    const scalars = Object.entries(metrics || {}).filter(([, v]) => typeof v === "number");
    const shown = scalars.slice(0, 3).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") || "none";
    const full = el("details", {}, [el("summary", { textContent: shown }), el("pre", { textContent: JSON.stringify(metrics, null, 1) })]);
    return full;
  }

  async function loadModels() {
    await guarded("#models-error", async () => {
      const listing = await api("/v1/models");
      const rows = listing.models
        .slice()
        .reverse()
        .map((m) => {
          const active = m.id === listing.active;
          if (active) applyModel(m);
          let action;
          if (active) {
            action = el("span", { className: "badge", textContent: "active" });
          } else {
            action = el("button", { type: "button", textContent: "Activate", "aria-label": `Activate model ${m.id}` });
            action.addEventListener("click", () => activate(m.id, action));
          }
          const cells = [
            ["Model", [el("code", { textContent: m.id })]],
            ["Family", [m.family ?? "?"]],
            ["Data", [(m.dataset ?? "?") + (m.image_shape ? `, ${shapeText(m.image_shape)}` : "")]],
            ["Created", [(m.created_at || "").replace("T", " ").slice(0, 16)]],
            ["Metrics", [metricsCell(m.metrics)]],
            ["", [action]],
          ].map(([name, content]) => {
            const cell = el("td", {}, content);
            cell.dataset.label = name; // the column's name, shown beside the value on a phone
            return cell;
          });
          const row = el("tr", { className: active ? "active" : "" }, cells);
          row.dataset.model = m.id;
          return row;
        });
      $("#model-table tbody").replaceChildren(...rows);
    });
  }

  /** Offer the uploaded data sets (GET /v1/datasets) as training data, beside the built-in ones. */
  async function loadDatasets() {
    await guarded("#train-error", async () => {
      const { datasets } = await api("/v1/datasets");
      $$("#datasets option.upload").forEach((option) => option.remove());
      for (const d of datasets) {
        const label = `${d.name}: ${d.labels.join(", ")} (${shapeText(d.image_shape)})`;
        $("#datasets").append(el("option", { className: "upload", value: `upload:${d.id}`, label }));
      }
    });
  }

  async function activate(modelId, button) {
    button.disabled = true;
    const ok = await guarded("#models-error", async () => {
      await api(`/v1/models/${encodeURIComponent(modelId)}/activate`, { json: {}, auth: true });
      return true;
    });
    button.disabled = false;
    if (ok) await refreshModel();
  }

  async function startTraining(e) {
    e.preventDefault();
    const body = {
      family: $("#train-family").value,
      dataset: $("#train-dataset").value.trim(),
      epochs: Number($("#train-epochs").value),
      latent_dim: Number($("#train-latent").value),
      activate: $("#train-activate").checked,
    };
    await guarded("#train-error", async () => {
      const accepted = await api("/v1/train", { json: body, auth: true });
      state.job = accepted.job_id;
      $("#job").hidden = false;
      $("#job-id").textContent = accepted.job_id;
      $("#job-cancel").disabled = false;
      showJob({ status: "queued", progress: null });
      pollJob(accepted.job_id);
    });
  }

  const ENDED = ["finished", "failed", "stopped", "canceled"];

  function showJob(job) {
    $("#job-status").textContent = job.status + (job.error ? `: ${job.error}` : "") + (job.model_id ? ` (model ${job.model_id})` : "");
    const bar = $("#job-progress");
    const p = job.progress || {};
    let done = 0;
    let text = job.status === "queued" ? "waiting for a worker" : p.phase || job.status;
    if (p.epochs) {
      const within = p.steps ? p.step / p.steps : 0;
      done = Math.min(1, Math.max(0, ((p.epoch || 1) - 1 + within) / p.epochs));
      if (p.phase === "loading") done = 0;
      text = `epoch ${p.epoch}/${p.epochs}` + (p.steps ? `, step ${p.step}/${p.steps}` : "") + (p.loss != null ? `, loss ${fmt(p.loss)}` : "");
    }
    if (job.status === "finished") done = 1;
    bar.value = done;
    bar.setAttribute("aria-valuetext", text);
    $("#job-progress-label").textContent = `Progress: ${text}`;
    $("#job-cancel").disabled = ENDED.includes(job.status);
  }

  async function pollJob(jobId) {
    while (state.job === jobId) {
      let job;
      try {
        job = await api(`/v1/jobs/${encodeURIComponent(jobId)}`);
        showError("#train-error", null);
      } catch (err) {
        showError("#train-error", err);
        if (err.status === 404) return;
        await new Promise((r) => setTimeout(r, POLL_MS * 3));
        continue;
      }
      if (state.job !== jobId) return;
      showJob(job);
      if (ENDED.includes(job.status)) {
        if (job.status === "finished") {
          await loadModels();
          await refreshModel();
        }
        return;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  async function cancelJob() {
    if (!state.job) return;
    const jobId = state.job;
    await guarded("#train-error", async () => {
      const answer = await api(`/v1/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE", auth: true });
      $("#job-status").textContent = answer.status;
    });
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    setupPad("a");
    setupPad("b");
    sized($("#live-slerp"), BOX.live);
    sized($("#live-lerp"), BOX.live);
    $("#omega").addEventListener("input", debounce(decodeLive, 60));
    $("#omega").addEventListener("input", () => ($("#omega-value").textContent = Number($("#omega").value).toFixed(2)));
    $("#steps").addEventListener("change", morphSoon);
    $("#morph-run").addEventListener("click", morph);
    $("#download-gif").addEventListener("click", () => downloadPath("gif"));
    $("#download-png").addEventListener("click", () => downloadPath("png"));

    $("#hall-files").addEventListener("change", (e) => {
      for (const file of e.target.files) addFewshot(file, guessLabel(file.name));
      e.target.value = "";
      renderFewshot();
    });
    dropTarget($("#fewshot"), (files) => {
      for (const file of files) addFewshot(file, guessLabel(file.name));
      renderFewshot();
    });
    $("#hall-pick").addEventListener("click", addTestImages);
    $("#hall-clear").addEventListener("click", () => {
      state.fewshot.forEach((item) => URL.revokeObjectURL(item.url));
      state.fewshot = [];
      renderFewshot();
      $("#hall-grid").replaceChildren();
    });
    $("#hall-run").addEventListener("click", hallucinate);
    $("#hall-zip").addEventListener("click", hallucinateZip);

    $("#map-svg").addEventListener("click", (e) => {
      const dot = e.target.closest(".pt");
      if (dot) pickPoint(Number(dot.dataset.i));
    });
    $("#map-go").addEventListener("click", mapMorphByLabel);

    $("#train-form").addEventListener("submit", startTraining);
    $("#job-cancel").addEventListener("click", cancelJob);

    loadAuth();
    loadDatasets();
    refreshModel();
    setInterval(() => state.modelId && refreshModel(), 10000); // follow swaps made elsewhere
  }

  init();
})();
