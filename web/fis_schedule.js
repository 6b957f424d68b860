// The FIS schedule and cost model for the schedule view, without DOM or ComfyUI imports.
// A mirror of fis_core/schedule.py (FisSchedule, the widget parsers), fis_core/cost.py (the estimate) and
// fis_core/schedule_image.py (cells, colours, text); tests/test_web_schedule.py checks that they agree.

export const PATTERNS = ["interleave", "contiguous"];
export const CELL_KINDS = ["computed", "interpolated", "anchor", "dense"];
export const COLORS = {
  computed: "#3ba55d",
  interpolated: "#30343e",
  anchor: "#e8a33d",
  dense: "#5f7ea8",
};
export const LEGEND = {
  computed: "computed",
  interpolated: "interpolated",
  anchor: "anchor",
  dense: "dense block",
};

// Milliseconds of one Wan-14B block on an H100 by resolution and latent frames computed (fis_core/cost.py).
export const ENVELOPE_FRAMES = 21;
export const BLOCK_MS = {
  "720p": { 21: 404.3, 11: 131.37, 7: 62.76, 5: 38.08 },
  "480p": { 21: 96.36, 11: 35.04, 7: 18.17, 5: 11.78 },
};

// Bounds and quoting of the widget lists (fis_core/widget_text.py, fis_core/schedule.py).
const QUOTE_CHARS = 40;
const NUMBER_CHARS = 15;
const MAX_FRAMES = 4096;

// `value` in quotes for an error message, its start only if it is long.
function quoted(value) {
  if (value.length <= QUOTE_CHARS) return `'${value}'`;
  return `'${value.slice(0, QUOTE_CHARS)}...' (${value.length} characters)`;
}

// The comma-separated parts of `spec`, spaces removed and empty parts skipped, one at a time.
function* listParts(spec) {
  for (const match of spec.replaceAll(" ", "").matchAll(/[^,]+/g)) yield match[0];
}

function parseInteger(text, widget, form) {
  if (!/^[+-]?[0-9]+(_[0-9]+)*$/.test(text)) {
    throw new Error(`${widget}: ${quoted(text)} is not a number; expected ${form}`);
  }
  if (text.length > NUMBER_CHARS) throw new Error(`${widget}: ${quoted(text)} is too large a number; expected ${form}`);
  return Number.parseInt(text.replaceAll("_", ""), 10);
}

// "4-35" or "0,2,5-9" -> sorted unique block numbers, each range checked against the model before it is
// expanded; errors read as the node's own.
export function parseBlockList(spec, numBlocks, widget = "sparse_blocks") {
  const form = "a list of block numbers and ranges such as '4-35' or '0,2,5-9'";
  const chosen = new Uint8Array(Math.max(numBlocks, 0));
  for (const part of listParts(spec)) {
    const dash = part.indexOf("-");
    const first = dash >= 0 ? part.slice(0, dash) : part;
    const last = dash >= 0 ? part.slice(dash + 1) : part;
    if (dash >= 0 && (!first || !last)) {
      throw new Error(`${widget}: ${quoted(part)} is not a block number or range; expected ${form}`);
    }
    const lo = parseInteger(first, widget, form);
    const hi = dash >= 0 ? parseInteger(last, widget, form) : lo;
    if (lo > hi) throw new Error(`${widget}: range ${quoted(part)} runs backwards; write it low-high, e.g. '${hi}-${lo}'`);
    if (hi >= numBlocks) {
      throw new Error(`${widget}: block ${hi} does not exist; this model has blocks 0-${numBlocks - 1}`);
    }
    chosen.fill(1, lo, hi + 1);
  }
  const blocks = [];
  chosen.forEach((flag, block) => { if (flag) blocks.push(block); });
  return blocks;
}

// "0,-1" -> sorted unique frame numbers (negative ones count from the end).
export function parseFrameList(spec, widget = "anchor_frames") {
  const form = "latent frame numbers separated by commas, e.g. '0' or '0,-1'";
  const frames = new Set();
  for (const part of listParts(spec)) {
    const frame = parseInteger(part, widget, form);
    if (frame < -MAX_FRAMES || frame >= MAX_FRAMES) {
      throw new Error(`${widget}: frame ${frame} is out of range; frames go from ${-MAX_FRAMES} to ${MAX_FRAMES - 1}`);
    }
    frames.add(frame);
  }
  return [...frames].sort((a, b) => a - b);
}

// The frames `block` computes, or null when it computes all of them (FisSchedule.frames_for_block).
function framesForBlock(schedule, block, numFrames) {
  const { sparseBlocks, groups, pattern, anchors } = schedule;
  const position = sparseBlocks.indexOf(block);
  if (groups <= 1 || position < 0) return null;
  const group = position % groups;
  const frames = new Set();
  if (pattern === "interleave") {
    for (let f = group; f < numFrames; f += groups) frames.add(f);
  } else {
    const start = Math.floor((group * numFrames) / groups);
    const end = Math.floor(((group + 1) * numFrames) / groups);
    for (let f = start; f < end; f++) frames.add(f);
  }
  for (const a of anchors) {
    if (a >= -numFrames && a < numFrames) frames.add(((a % numFrames) + numFrames) % numFrames);
  }
  return frames.size === numFrames ? null : frames;
}

// The schedule for `numFrames` frames: groups lowered to the frame count where there are fewer frames.
export function makeSchedule({ sparseBlocks, groups, pattern = "interleave", anchors = [] }, numFrames) {
  if (!PATTERNS.includes(pattern)) {
    throw new Error(`pattern: '${pattern}' is unknown; choose one of ${PATTERNS.join(", ")}`);
  }
  const blocks = [...new Set(sparseBlocks)].sort((a, b) => a - b);
  return { sparseBlocks: blocks, groups: numFrames >= groups ? groups : Math.max(numFrames, 1), pattern, anchors };
}

// One row per block, one cell per latent frame: "computed", "interpolated", "anchor" or "dense".
export function scheduleCells(schedule, numBlocks, numFrames) {
  const anchors = new Set(schedule.anchors
    .filter((a) => a >= -numFrames && a < numFrames)
    .map((a) => ((a % numFrames) + numFrames) % numFrames));
  const rows = [];
  for (let block = 0; block < numBlocks; block++) {
    const frames = framesForBlock(schedule, block, numFrames);
    const row = [];
    for (let f = 0; f < numFrames; f++) {
      if (frames === null) row.push("dense");
      else if (anchors.has(f)) row.push("anchor");
      else row.push(frames.has(f) ? "computed" : "interpolated");
    }
    rows.push(row);
  }
  return rows;
}

// Share of frame-block work done (FisSchedule.computed_fraction).
export function computedFraction(schedule, numBlocks, numFrames) {
  let work = 0;
  for (let block = 0; block < numBlocks; block++) {
    const frames = framesForBlock(schedule, block, numFrames);
    work += frames ? frames.size / numFrames : 1.0;
  }
  return work / numBlocks;
}

// Estimated time of one block computing `share` of the frames (cost.block_ms).
export function blockMs(share, resolution = "720p") {
  const table = BLOCK_MS[resolution];
  const frames = share * ENVELOPE_FRAMES;
  const points = [[0, 0.0], ...Object.entries(table).map(([f, ms]) => [Number(f), ms]).sort((a, b) => a[0] - b[0])];
  for (let i = 0; i + 1 < points.length; i++) {
    const [f0, ms0] = points[i];
    const [f1, ms1] = points[i + 1];
    if (frames <= f1) return ms0 + ((ms1 - ms0) * (frames - f0)) / (f1 - f0);
  }
  return (table[ENVELOPE_FRAMES] * frames) / ENVELOPE_FRAMES;
}

// Dense block time over FIS block time (cost.estimated_speedup).
export function estimatedSpeedup(schedule, numBlocks, numFrames, resolution = "720p") {
  let total = 0.0;
  for (let block = 0; block < numBlocks; block++) {
    const frames = framesForBlock(schedule, block, numFrames);
    total += blockMs(frames === null ? 1.0 : frames.size / numFrames, resolution);
  }
  return (blockMs(1.0, resolution) * numBlocks) / total;
}

const percent = (x) => `${Math.floor(x * 100 + 0.5)}%`;
const times = (x) => `${(Math.floor(x * 100 + 0.5) / 100).toFixed(2)}x`;

// The two estimate lines under the grid (schedule_image.estimate_lines).
export function estimateLines(schedule, numBlocks, numFrames) {
  const saved = 1.0 - computedFraction(schedule, numBlocks, numFrames);
  const fast720 = estimatedSpeedup(schedule, numBlocks, numFrames, "720p");
  const fast480 = estimatedSpeedup(schedule, numBlocks, numFrames, "480p");
  return [
    `Estimate: ${percent(saved)} of the block compute saved`,
    `blocks ${times(fast720)} faster at 720p, ${times(fast480)} at 480p (H100 envelope)`,
  ];
}

// Everything the view shows for the node's widget values, or {error} for values the node would refuse.
// `autoAnchors` are the anchors "auto" stands for (the given first frame of image-to-video, or none).
// The widgets as the node applies them: a `quality` preset other than custom sets the widgets it names.
export function withQuality(widgets, qualityPresets) {
  const preset = qualityPresets[widgets.quality];
  return preset ? { ...widgets, ...preset } : widgets;
}

// Lines for a preset's dense steps (faithful: the first and the final one): the estimate above is for the others,
// so a whole run's speed-up depends on its steps (each dense step at 1x, the others at `perStep`, the 720p estimate).
export function denseStepLines(widgets, perStep) {
  const steps = [widgets.dense_first_step && "first", widgets.dense_final_step && "final"].filter(Boolean);
  if (!steps.length) return [];
  const run = (n) => times(n / (steps.length + (n - steps.length) / perStep));
  return [
    `the ${steps.join(" and ")} sampling step${steps.length > 1 ? "s run" : " runs"} dense; the estimate is for the others`,
    `a whole run at 720p: about ${run(4)} in 4 steps, ${run(8)} in 8, ${run(20)} in 20`,
  ];
}

// The profile `sparse_blocks` names ("profile:NAME" or "profile:NAME:K", as the node reads it) as the query of the
// server's GET /fis/profile: {name, count?}; null for any other value.
export function profileQuery(sparseBlocks) {
  const spec = String(sparseBlocks).trim();
  if (!spec.toLowerCase().startsWith("profile:")) return null;
  const [name, ...count] = spec.slice("profile:".length).split(":");
  return count.length ? { name, count: count.join(":") } : { name };
}

// `profile` is the server's answer for a `profile:` value ({chosen, defect, ...} or {error}; null while it is asked):
// the server picks the blocks with the node's own function, so the view draws what the node applies.
export function describeSchedule(widgets, numBlocks, numFrames, autoAnchors = [], profile = null) {
  try {
    const groups = Number(widgets.groups);
    if (!(groups >= 1)) throw new Error(`groups: must be at least 1 (1 turns FIS off); got ${widgets.groups}`);
    const blocksSpec = String(widgets.sparse_blocks).trim().toLowerCase();
    const profiled = blocksSpec.startsWith("profile:");
    if (profiled && !profile) throw new Error("sparse_blocks: asking the server for the profile...");
    if (profiled && profile.error) throw new Error(profile.error);
    const sparseBlocks = profiled ? profile.chosen : blocksSpec === "auto"
      ? (numBlocks > 2 ? Array.from({ length: numBlocks - 2 }, (_, i) => i + 1) : [])
      : blocksSpec === "all" ? Array.from({ length: numBlocks }, (_, i) => i) : parseBlockList(blocksSpec, numBlocks);
    const anchorSpec = String(widgets.anchor_frames).trim().toLowerCase();
    const anchors = anchorSpec === "auto" ? autoAnchors : parseFrameList(anchorSpec);
    const schedule = makeSchedule({ sparseBlocks, groups, pattern: widgets.pattern, anchors }, numFrames);
    return {
      schedule,
      cells: scheduleCells(schedule, numBlocks, numFrames),
      lines: [...estimateLines(schedule, numBlocks, numFrames),
              ...denseStepLines(widgets, estimatedSpeedup(schedule, numBlocks, numFrames, "720p"))],
      profile: profiled ? profile : null,
    };
  } catch (error) {
    return { error: error.message };
  }
}
