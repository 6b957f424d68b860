// The schedule view inside the "Frame Interleaved Sparsity (FIS)" node: a grid of blocks x latent frames for the
// node's current widget values, with the estimated compute saved and speed-up; for sparse_blocks "profile:NAME[:K]",
// each block's measured defect beside it. The server computes all of it (GET /fis/schedule, with the node's own
// reading of the widgets); the view only draws.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_TYPE = "FrameInterleavedSparsity";
// The Raylight variant takes the FIS node's flat widgets after its RAY_ACTORS input: its saved values migrate alike.
const RAYLIGHT_TYPE = "FrameInterleavedSparsityRaylight";
const WIDGETS = ["quality", "sparse_blocks", "groups", "pattern", "anchor_frames"];
// The node's property naming the layout of its saved widget values (scripts/make_workflows.py writes it too):
// 1 flat (quality, then every widget: the V1 node), 2 quality a DynamicCombo whose custom option holds the widgets a
// preset sets. Without it, a file is of a release before the marker: flat, with or without quality (below).
const LAYOUT_PROPERTY = "fis_widgets";
// The flat widgets of the release before `quality` (its workflows ran them as they are: custom).
const BEFORE_QUALITY = ["sparse_blocks", "groups", "pattern", "interpolation", "anchor_frames", "start_percent", "end_percent"];
const DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3";
// Loader widgets that name a model file, and the model folder the server looks in.
const LOADER_WIDGETS = { unet_name: "diffusion_models", ckpt_name: "checkpoints" };
const BACKGROUND = "#202225";
const TEXT = "#d8dadf";
const MUTED = "#8d93a0";
const FONT = "11px sans-serif";
const LINE = 15;
// Width of the profile's defect bars beside the grid, and the gap before them.
const BARS = 56;
const BARS_GAP = 8;
// What the view draws for when the server sent no usual models and cannot read the connected file.
const NO_MODEL = { label: "no model", blocks: 0, frames: 1 };

const modelInfo = new Map(); // "folder/name" -> {state: "loading" | "done", info}
const schedules = new Map(); // the query of GET /fis/schedule -> {state: "loading" | "done", answer}
// Answers kept at most (each a few kB).
const SCHEDULES_KEPT = 256;
// A run may have written a profile anew (FIS Calibrate): ask again.
api.addEventListener("execution_success", () => schedules.clear());
// The model families' usual models, from the server's family adapters, loaded before the node is registered:
// [{key, label, blocks, frames, file_hints}], the default first.
let usualModels = [];
// The node's `quality` presets: {name: {widget: value}}, from the server (PRESETS of the FIS node).
let presets = {};

async function loadFamilies() {
  try {
    const response = await api.fetchApi("/fis/families");
    const body = response.ok ? await response.json() : {};
    usualModels = body.usual_models ?? [];
    presets = body.presets ?? {};
  } catch {
    usualModels = [];
    presets = {};
  }
}

// The file of the loader feeding the node's model input, following MODEL links upstream (LoRA, ModelSampling, ...).
function upstreamModelFile(node) {
  let current = node;
  for (let depth = 0; depth < 32 && current; depth++) {
    if (current !== node) {
      const widget = current.widgets?.find((w) => w.name in LOADER_WIDGETS);
      if (widget) return { folder: LOADER_WIDGETS[widget.name], name: String(widget.value) };
    }
    const slot = current.inputs?.findIndex((i) => i.type === "MODEL" || (current !== node && i.type === "*")) ?? -1;
    // a node outside any graph (the copy the front end configures while it makes a subgraph) has no links to follow
    current = slot >= 0 && current.graph ? current.getInputNode(slot) : null;
  }
  return null;
}

// What the server read from the connected model file (family, blocks), or null while unknown.
function connectedModel(file, onLoaded) {
  if (!file) return null;
  const key = `${file.folder}/${file.name}`;
  let entry = modelInfo.get(key);
  if (!entry) {
    entry = { state: "loading", info: null };
    modelInfo.set(key, entry);
    const query = new URLSearchParams(file);
    api.fetchApi(`/fis/model_info?${query}`)
      .then((response) => (response.ok ? response.json() : null))
      .catch(() => null)
      .then((info) => {
        entry.state = "done";
        entry.info = info;
        onLoaded();
      });
  }
  return entry.info;
}

// The server's picture of the node's `widgets` on `model` (its family, blocks, frames, i2v): {cells, lines, profile,
// legend}, or {error} as the node would say it; null while it is asked.
function askSchedule(widgets, model, onLoaded) {
  const search = String(new URLSearchParams({
    ...widgets, family: model.family, blocks: model.blocks, frames: model.frames, image_to_video: model.i2v ? 1 : 0,
  }));
  let entry = schedules.get(search);
  if (!entry) {
    if (schedules.size >= SCHEDULES_KEPT) schedules.clear();
    entry = { state: "loading", answer: null };
    schedules.set(search, entry);
    api.fetchApi(`/fis/schedule?${search}`)
      .then((response) => response.json())
      .catch(() => ({ error: "the server did not answer GET /fis/schedule" }))
      .then((answer) => {
        entry.state = "done";
        entry.answer = answer;
        onLoaded();
      });
  }
  return entry.answer;
}

// The usual model a file name suggests when the server cannot read the file (e.g. GGUF): the one with the longest
// file hint the name contains, else the default.
function guessUsualModel(name = "") {
  const lower = name.toLowerCase();
  let best = usualModels[0];
  let longest = 0;
  for (const model of usualModels) {
    for (const hint of model.file_hints) {
      if (hint.length > longest && lower.includes(hint)) [best, longest] = [model, hint.length];
    }
  }
  return best?.key;
}

function element(tag, attributes = {}, children = []) {
  const el = document.createElement(tag);
  Object.assign(el, attributes);
  el.append(...children);
  return el;
}

class ScheduleView {
  constructor(node) {
    this.node = node;
    this.key = null;
    this.select = element("select", { title: "Model the view assumes: the connected model where the server can read it, else a family default" });
    this.frames = element("input", { type: "number", min: 1, max: 256, step: 1, title: "Latent frames the view draws; by default those of the model's usual clip" });
    this.firstFrame = element("input", { type: "checkbox", title: "anchor_frames 'auto' computes the frames the conditioning gives: the first frame of image-to-video" });
    this.canvas = element("canvas");
    this.canvas.style.cssText = "display:block;width:100%;flex:1 1 auto;min-height:0;border-radius:4px";
    const controls = element("div", {}, [
      this.select,
      element("label", { title: this.frames.title }, [" frames ", this.frames]),
      element("label", { title: this.firstFrame.title }, [this.firstFrame, " i2v"]),
    ]);
    controls.style.cssText = `display:flex;gap:6px;align-items:center;font:${FONT};color:${TEXT};margin-bottom:4px;pointer-events:auto`;
    for (const control of [this.select, this.frames]) {
      control.style.cssText = `font:${FONT};background:${BACKGROUND};color:${TEXT};border:1px solid #555;border-radius:3px`;
    }
    this.frames.style.width = "4em";
    this.select.style.maxWidth = "60%";
    this.root = element("div", { className: "fis-schedule-view" }, [controls, this.canvas]);
    this.root.style.cssText = "display:flex;flex-direction:column;width:100%;height:100%;box-sizing:border-box;pointer-events:none";
    this.select.addEventListener("change", () => this.setProperty("fis_view_model", this.select.value));
    this.frames.addEventListener("change", () => this.setProperty("fis_view_frames", Number(this.frames.value)));
    this.firstFrame.addEventListener("change", () => this.setProperty("fis_view_i2v", this.firstFrame.checked));
    new ResizeObserver(() => this.refresh(true)).observe(this.canvas);
  }

  setProperty(name, value) {
    this.node.properties[name] = value;
    this.refresh();
  }

  // The model the view draws for: {label, blocks, frames, i2v, source}; without usual models or a readable file, a
  // model of no blocks (the view then says why).
  model() {
    const props = this.node.properties ?? {};
    const file = upstreamModelFile(this.node);
    const info = connectedModel(file, () => this.refresh());
    const choices = usualModels.map((m) => [m.key, `${m.label}: ${m.blocks} blocks`]);
    if (info) choices.unshift(["connected", `${info.label}: ${info.blocks} blocks (connected)`]);
    const fallback = info ? "connected" : guessUsualModel(file?.name);
    const choice = choices.some(([key]) => key === props.fis_view_model) ? props.fis_view_model : fallback;
    const shown = (choice === "connected" ? info : usualModels.find((m) => m.key === choice)) ?? NO_MODEL;
    const i2vDefault = Boolean(info?.image_to_video) || /i2v/i.test(file?.name ?? "");
    return {
      choices,
      choice,
      family: shown.family,
      label: shown.label,
      blocks: shown.blocks,
      frames: Number(props.fis_view_frames) > 0 ? Number(props.fis_view_frames) : shown.frames,
      i2v: typeof props.fis_view_i2v === "boolean" ? props.fis_view_i2v : i2vDefault,
      source: choice === "connected" ? "connected" : "default",
    };
  }

  // Redraw when anything the picture depends on changed (or always, with `force`).
  refresh(force = false) {
    const widgets = Object.fromEntries(this.node.widgets.map((w) => [w.name.replace(/^quality\./, ""), w.value])
      .filter(([name]) => WIDGETS.includes(name)));
    const model = this.model();
    const view = model.blocks > 0
      ? askSchedule(widgets, model, () => this.refresh())
      : { error: "No model to draw: the server sent no model families (GET /fis/families)" };
    const key = JSON.stringify([widgets, model, view]);
    if (key === this.key && !force) return;
    this.key = key;
    this.select.replaceChildren(...model.choices.map(([value, text]) => element("option", { value, textContent: text })));
    this.select.value = model.choice;
    this.frames.value = String(model.frames);
    this.firstFrame.checked = model.i2v;
    if (!view) return; // the server is asked: the picture stays until it answers
    Object.assign(this.root.dataset, {
      blocks: model.blocks, frames: model.frames, source: model.source,
      summary: view.error ? "" : view.lines.join(" | "), error: view.error ?? "",
      profile: view.profile ? view.profile.chosen.join(",") : "", cells: view.error ? "" : view.cells.join(","),
    });
    this.draw(model, view);
  }

  draw(model, view) {
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    if (width < 10 || height < 10) return;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, width, height);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    const margin = 6;
    if (view.error) {
      ctx.fillStyle = "#ff7b72";
      wrapText(ctx, view.error, margin, margin + LINE / 2, width - 2 * margin);
      return;
    }
    const { cells } = view;
    const colors = Object.fromEntries(view.legend.map(({ code, color }) => [code, color]));
    const blocks = cells.length;
    const frames = model.frames;
    ctx.fillStyle = MUTED;
    ctx.textAlign = "left";
    ctx.fillText(`${model.label}: blocks 0-${blocks - 1} (rows) x latent frames 0-${frames - 1}`, margin, margin + LINE / 2);
    const labelWidth = ctx.measureText(String(blocks - 1)).width + 6;
    const gridX = margin + labelWidth;
    const gridY = margin + 2 * LINE;
    const lines = view.profile ? [...view.lines, profileLine(view.profile)] : view.lines;
    const gridHeight = height - gridY - (1 + lines.length) * LINE - margin - 4;
    const bars = view.profile ? BARS + BARS_GAP : 0;
    const cw = Math.max(1, Math.floor((width - gridX - margin - bars) / frames));
    const ch = Math.max(1, gridHeight / blocks);
    const gap = cw >= 5 && ch >= 4 ? 1 : 0;
    const frameStep = frames <= 12 ? 1 : 5;
    ctx.textAlign = "center";
    for (let f = 0; f < frames; f += frameStep) ctx.fillText(String(f), gridX + f * cw + cw / 2, gridY - LINE / 2);
    const blockStep = Math.max(1, Math.ceil(LINE / ch / 5) * 5);
    ctx.textAlign = "right";
    for (let b = 0; b < blocks; b++) {
      if (b % blockStep === 0 || b === blocks - 1) ctx.fillText(String(b), gridX - 4, gridY + b * ch + ch / 2);
      for (let f = 0; f < frames; f++) {
        ctx.fillStyle = colors[cells[b][f]];
        ctx.fillRect(gridX + f * cw, gridY + b * ch, cw - gap, Math.max(1, ch - gap));
      }
      ctx.fillStyle = MUTED;
    }
    if (view.profile) drawDefects(ctx, view.profile, gridX + frames * cw + BARS_GAP, gridY, ch, gap, view.legend);
    let x = margin;
    const legendY = gridY + blocks * ch + 4 + LINE / 2;
    ctx.textAlign = "left";
    for (const { color, label } of view.legend) {
      ctx.fillStyle = color;
      ctx.fillRect(x, legendY - 5, 10, 10);
      ctx.fillStyle = TEXT;
      ctx.fillText(label, x + 14, legendY);
      x += ctx.measureText(label).width + 24;
    }
    lines.forEach((line, i) => ctx.fillText(line, margin, legendY + LINE * (i + 1)));
  }
}

// What the defect bars show, under the estimates.
function profileLine(profile) {
  return `profile ${profile.name}: the ${profile.chosen.length} blocks of least defect (bars: FIS's error per block)`;
}

// Beside each block's row, a bar of the defect the profile measured there (green: sparse, blue: dense), and a line at
// the largest defect the chosen blocks have: the cut the profile's K makes.
function drawDefects(ctx, profile, x, y, rowHeight, gap, legend) {
  const color = (kind) => legend.find((entry) => entry.kind === kind).color;
  const most = Math.max(1e-12, ...profile.defect.filter((d) => d !== null));
  const chosen = new Set(profile.chosen);
  ctx.textAlign = "left";
  ctx.fillStyle = MUTED;
  ctx.fillText("defect", x, y - LINE / 2);
  profile.defect.forEach((defect, block) => {
    if (defect === null) return;
    ctx.fillStyle = color(chosen.has(block) ? "computed" : "dense");
    ctx.fillRect(x, y + block * rowHeight, Math.max(1, (BARS * defect) / most), Math.max(1, rowHeight - gap));
  });
  if (!profile.chosen.length) return;
  const cut = Math.max(...profile.chosen.map((block) => profile.defect[block] ?? 0));
  ctx.strokeStyle = TEXT;
  ctx.beginPath();
  ctx.moveTo(x + (BARS * cut) / most + 0.5, y - 2);
  ctx.lineTo(x + (BARS * cut) / most + 0.5, y + profile.defect.length * rowHeight + 2);
  ctx.stroke();
}

function wrapText(ctx, text, x, y, width) {
  let line = "";
  for (const word of text.split(" ")) {
    if (line && ctx.measureText(`${line} ${word}`).width > width) {
      ctx.fillText(line, x, y);
      line = word;
      y += LINE;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  ctx.fillText(line, x, y);
}

// Call `hook` after the node's own handler of `name` (if any).
function chain(node, name, hook) {
  const original = node[name];
  node[name] = function (...args) {
    const result = original?.apply(this, args);
    hook.apply(this, args);
    return result;
  };
}

// An artist who edits a widget a `quality` preset sets means to use it: the preset switches to custom.
function switchToCustomOnEdit(node) {
  const presetWidgets = new Set(Object.values(presets).flatMap((preset) => Object.keys(preset)));
  for (const widget of node.widgets ?? []) {
    if (!presetWidgets.has(widget.name)) continue;
    const original = widget.callback;
    widget.callback = function (...args) {
      const quality = node.widgets.find((w) => w.name === "quality");
      if (quality && quality.value !== "custom") quality.value = "custom";
      return original?.apply(this, args);
    };
  }
}

// The node's widget names in the order it saves them, for `quality` = `choice`: the DynamicCombo's option widgets
// (named "quality.NAME") right after it; otherwise the definition's order.
function widgetOrder(nodeData, choice) {
  const required = nodeData.input?.required ?? {};
  const names = (nodeData.input_order?.required ?? Object.keys(required)).filter((n) => n !== "model" && n !== "ray_actors");
  const quality = required.quality;
  if (quality?.[0] !== DYNAMIC_COMBO) return names;
  const inputs = quality[1].options.find((o) => o.key === choice)?.inputs ?? {};
  const own = [...Object.keys(inputs.required ?? {}), ...Object.keys(inputs.optional ?? {})].map((n) => `quality.${n}`);
  return names.flatMap((n) => (n === "quality" ? [n, ...own] : [n]));
}

function defaultValue(nodeData, name) {
  const required = nodeData.input?.required ?? {};
  const spec = required[name] ?? required.quality?.[1]?.options?.find((o) => o.key === "custom")?.inputs
    ?.optional?.[name.replace(/^quality\./, "")];
  if (!spec) return undefined;
  if (spec[1]?.default !== undefined) return spec[1].default;
  return Array.isArray(spec[0]) ? spec[0][0] : spec[1]?.options?.[0]?.key ?? spec[1]?.options?.[0];
}

// The saved widget values of a node `info` by name (without the "quality." prefix), from whichever layout saved
// them; null where they fit none.
function savedWidgets(info, choices) {
  const values = info.widgets_values ?? [];
  const zip = (names) => Object.fromEntries(names.map((n, i) => [n, values[i]]));
  const layout = info.properties?.[LAYOUT_PROPERTY];
  if (layout === 2 && choices.includes(values[0])) {
    const own = values[0] === "custom" ? ["sparse_blocks", "groups", "interpolation", "start_percent", "end_percent"] : [];
    if (values.length === 3 + own.length) return zip(["quality", ...own, "pattern", "anchor_frames"]);
  }
  if (layout === undefined || layout === 1) {
    if (values.length === 8 && choices.includes(values[0])) return zip(["quality", ...BEFORE_QUALITY]);
    if (values.length === 7 && typeof values[0] === "string" && typeof values[1] === "number" && layout === undefined)
      return { quality: "custom", ...zip(BEFORE_QUALITY) };
  }
  return null;
}

// A saved FIS node in this version's layout: its values by name placed where this node has them, so a workflow
// of any earlier release loads into the settings it ran. Values that fit no layout leave the defaults and say so.
function migrateWidgets(node, nodeData, info) {
  const quality = nodeData.input?.required?.quality;
  const choices = quality?.[0] === DYNAMIC_COMBO ? quality[1].options.map((o) => o.key) : quality?.[0] ?? [];
  const saved = savedWidgets(info, choices);
  if (!saved) {
    const message = `FIS node #${info.id} (${info.title ?? nodeData.display_name}): its saved widget values ` +
      `${JSON.stringify(info.widgets_values)} match no layout this version of ComfyUI-FIS knows; its widgets are at ` +
      "their defaults: set quality (and custom's widgets) again and save the workflow.";
    console.error(message);
    app.extensionManager?.toast?.add({ severity: "error", summary: "ComfyUI-FIS", detail: message });
  }
  const named = saved ?? {};
  const choice = choices.includes(named.quality) ? named.quality : defaultValue(nodeData, "quality");
  const values = widgetOrder(nodeData, choice).map((name) => {
    const plain = name.replace(/^quality\./, "");
    return name === "quality" ? choice : plain in named ? named[plain] : defaultValue(nodeData, name);
  });
  return { ...info, widgets_values: values, widgets_values_named: undefined };
}

app.registerExtension({
  name: "ComfyUI-FIS.ScheduleView",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE && nodeData.name !== RAYLIGHT_TYPE) return;
    const layout = nodeData.input?.required?.quality?.[0] === DYNAMIC_COMBO ? 2 : 1;
    const configure = nodeType.prototype.configure;
    nodeType.prototype.configure = function (info) {
      configure.call(this, migrateWidgets(this, nodeData, info));
      this.properties[LAYOUT_PROPERTY] = layout;
    };
    if (nodeData.name === RAYLIGHT_TYPE) {
      chain(nodeType.prototype, "onNodeCreated", function () {
        this.properties[LAYOUT_PROPERTY] = layout;
        switchToCustomOnEdit(this);
      });
      return;
    }
    await loadFamilies();
    chain(nodeType.prototype, "onNodeCreated", function () {
      this.properties[LAYOUT_PROPERTY] = layout;
      const view = new ScheduleView(this);
      const widget = this.addDOMWidget("fis_schedule_view", "fis-schedule-view", view.root, {
        serialize: false, hideOnZoom: false,
      });
      widget.serialize = false;
      widget.computeLayoutSize = () => ({ minHeight: 380, minWidth: 360 });
      this.fisScheduleView = view;
      this.setSize([Math.max(this.size[0], 420), Math.max(this.size[1], this.computeSize()[1])]);
      for (const name of ["onWidgetChanged", "onConnectionsChange", "onConfigure", "onDrawForeground"]) {
        chain(this, name, () => view.refresh());
      }
      switchToCustomOnEdit(this);
    });
  },
});
