"""Span keys at full size: how fast the computed frames' widened attention of a G=3 sparse block can run, against a
dense block and plain G=3, on FlashAttention-3 (where it imports) and PyTorch's SDPA.

The mechanism is the lab's ``PooledKeys`` (quality/fit_study.py): a sparse block computes every G-th frame; each
computed frame's queries attend to every computed frame's keys, to the whole keys and values of the skipped frames
within G - 1 frames of it (its span), and to every other skipped frame's keys and values averaged over pool x pool
tokens (after the key projection, norm and RoPE), each averaged key weighted as the pool^2 tokens it stands for
(log(pool^2) added to its score). The keys of a call lie as [computed frames | skipped frames whole | skipped frames
averaged], each part in frame order; the computed frames are group 0's (every group has as many keys at 21 frames).

Rows, per shape (bf16, batch 1; inputs ``fps_kernel.video_qkv``: smooth content and Wan's 3D RoPE):

- attention: dense over all N tokens; plain G=3 (the computed N/3 queries against their own keys); span keys with
  ``flex_attention`` (compiled; a BlockMask from per-token frame lookups, a score_mod adding log(pool^2) to the
  averaged keys), and span keys in parts on each backend (the computed keys for every query in one call, then per
  computed frame its span's whole keys and the averaged keys before and after it, merged by their log-sum-exp).
  Each span row's error is against a float32 explicit masked softmax on two heads, the mask built as PooledKeys
  builds it.
- extra: what the skipped tokens cost besides: their key and value projections (2N/3 tokens, dim x dim), the key's
  RMS norm and RoPE, the averaging, and the copies into the key buffer.
- blocks, composed from measured parts, not an end-to-end run: a block's work other than its self-attention (the
  Q/K/V/O projections with the q/k norms and RoPE, Wan's cross-attention to 512 text tokens, the FFN, the norms and
  modulations; plain bf16 ops of the model's sizes, eager) timed at N and at N/3 tokens; dense block = dense
  attention + rest(N); plain G=3 = G=3 attention + rest(N/3); span keys = its attention + rest(N/3) + extra. Per
  step: the model's blocks with its ``auto`` sparse blocks sparse, the others dense. Left out: the restore of the
  skipped frames (the corrected restore, ~1.8 ms a sparse block at Wan-14B 720p on the H100,
  bench/results/h100_correction_cost_2026-12-07.json), the model's work outside its blocks, and HunyuanVideo's text
  stream (its 512 text tokens join the self-attention there; left out of every row).

    python bench/span_keys.py --out bench/out/span_keys.json     # H100/H200, ~2-3 min with compilation
    python bench/span_keys.py --shapes wan14b-720p --flex-options '[{}, {"BLOCK_M": 128, "BLOCK_N": 128}]'
    python bench/span_keys.py --tiny       # the CPU, seconds: checks the script and the errors, no speed claims

FlashAttention-3 comes from the fa3-fwd wheel on PYTHONPATH (``SPAN_ONLY=1 bash bench/gpu_session.sh`` unpacks it and
runs this alone); without it the rows are SDPA's. Needs no ComfyUI.
"""
from __future__ import annotations

import argparse
import bisect
import datetime
import json
import math
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fps_kernel import relative_error, video_qkv  # noqa: E402
from host_path import PACK_ROOT  # noqa: E402
from markdown import table  # noqa: E402
from timing import Clock  # noqa: E402
import backends as attn  # noqa: E402


@dataclass(frozen=True)
class Shape:
    """A model's sparse block at one resolution: latent frames x token rows x token columns, its attention heads, model
    and FFN widths, the text tokens of its cross-attention (0: none), its blocks and its ``auto`` sparse blocks."""

    grid: tuple[int, int, int]
    heads: int
    dim: int
    ffn: int
    text_tokens: int
    blocks: int
    sparse_blocks: int
    head_dim: int = 128


SHAPES = {
    "wan14b-720p": Shape((21, 45, 80), 40, 5120, 13824, 512, 40, 38),
    "hv15-720p": Shape((21, 45, 80), 16, 2048, 8192, 0, 54, 52),
    "wan14b-480p": Shape((21, 30, 52), 40, 5120, 13824, 512, 40, 38),
}
TINY_SHAPES = {"tiny": Shape((9, 8, 8), 2, 32, 64, 8, 4, 2, head_dim=16)}
REFERENCE_HEADS = 2


@dataclass(frozen=True)
class SpanLayout:
    """One sparse call of ``group`` of ``groups``: its frames and where each key lies, [computed frames | skipped
    frames whole | skipped frames averaged over ``pool`` x ``pool`` tokens]."""

    grid: tuple[int, int, int]
    groups: int
    group: int = 0
    pool: int = 4

    @cached_property
    def computed(self) -> tuple[int, ...]:
        return tuple(range(self.group, self.grid[0], self.groups))

    @cached_property
    def skipped(self) -> tuple[int, ...]:
        return tuple(f for f in range(self.grid[0]) if f not in self.computed)

    @property
    def tokens(self) -> int:
        return self.grid[1] * self.grid[2]

    @property
    def averaged(self) -> int:
        """Averaged tokens of a frame (the last window of a row or column may be partial, as avg_pool2d's ceil_mode)."""
        return math.ceil(self.grid[1] / self.pool) * math.ceil(self.grid[2] / self.pool)

    @property
    def near(self) -> int:
        """How far a skipped frame may lie from a computed one and still give it its whole keys: G - 1."""
        return self.groups - 1

    @property
    def weight(self) -> float:
        """The score added to an averaged key: the log of the tokens it stands for."""
        return math.log(self.pool ** 2)

    @property
    def queries(self) -> int:
        return len(self.computed) * self.tokens

    @property
    def averaged_start(self) -> int:
        return self.queries + len(self.skipped) * self.tokens

    @property
    def keys(self) -> int:
        return self.averaged_start + len(self.skipped) * self.averaged

    def span(self, frame: int) -> tuple[int, int]:
        """[first, last): the places in ``skipped`` of the skipped frames within ``near`` of ``frame`` (one run: the
        skipped frames are sorted); those before and after it are given averaged."""
        return (bisect.bisect_left(self.skipped, frame - self.near), bisect.bisect_right(self.skipped, frame + self.near))

    def frame_lookups(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The frame of each query and of each key, for the mask."""
        computed, skipped = torch.tensor(self.computed), torch.tensor(self.skipped)
        keys = [computed.repeat_interleave(self.tokens), skipped.repeat_interleave(self.tokens),
                skipped.repeat_interleave(self.averaged)]
        return computed.repeat_interleave(self.tokens).to(device), torch.cat(keys).to(device)

    def key_pairs(self) -> int:
        """(query, key) pairs the mechanism computes: its FLOPs are 4 x pairs x heads x head dim."""
        pairs = 0
        for frame in self.computed:
            first, last = self.span(frame)
            whole = last - first
            pairs += self.tokens * (self.queries + whole * self.tokens + (len(self.skipped) - whole) * self.averaged)
        return pairs


def frame_tokens(frames, tokens: int, device) -> torch.Tensor:
    """The token indices of ``frames`` (frames of ``tokens`` tokens, in order)."""
    return (torch.tensor(frames).view(-1, 1) * tokens + torch.arange(tokens)).flatten().to(device)


def averaged(x: torch.Tensor, layout: SpanLayout) -> torch.Tensor:
    """The skipped frames' tokens ``x`` [B, S*T, H, D] averaged over pool x pool: [B, S*A, H, D] (as the lab's
    ``pooled_tokens``; a channels-last view, no copy before the pooling)."""
    batch, _, heads, dim = x.shape
    frames, rows, columns = len(layout.skipped), layout.grid[1], layout.grid[2]
    grid = x.reshape(batch * frames, rows, columns, heads * dim).permute(0, 3, 1, 2)
    pooled = F.avg_pool2d(grid, layout.pool, ceil_mode=True)
    return pooled.permute(0, 2, 3, 1).reshape(batch, frames * layout.averaged, heads, dim)


def span_inputs(q, k, v, layout: SpanLayout):
    """From all frames' q, k, v [B, N, H, D] in frame order: the computed frames' queries and the call's keys and
    values in the layout's order."""
    computed = frame_tokens(layout.computed, layout.tokens, q.device)
    skipped = frame_tokens(layout.skipped, layout.tokens, q.device)

    def gathered(x):
        whole = x[:, skipped]
        return torch.cat([x[:, computed], whole, averaged(whole, layout)], 1)
    return q[:, computed], gathered(k), gathered(v)


def reference(q, keys, values, layout: SpanLayout, heads: list[int], weight: float | None = None) -> torch.Tensor:
    """Float32 span-keys attention of ``heads``: per computed frame one explicit softmax over all the call's keys with
    an additive bias built as PooledKeys builds it (0: the computed keys and the span's whole keys; -inf: the other
    skipped frames' whole keys and the span's averaged ones; ``weight``: the other averaged keys). [B, Q, heads, D]."""
    weight = layout.weight if weight is None else weight
    q, keys, values = (x[:, :, heads].float() for x in (q, keys, values))
    skipped, tokens = torch.tensor(layout.skipped), layout.tokens
    outs = []
    for place, frame in enumerate(layout.computed):
        near = (skipped - frame).abs() <= layout.near
        bias = torch.cat([torch.zeros(layout.queries), torch.where(near, 0.0, -math.inf).repeat_interleave(tokens),
                          torch.where(near, -math.inf, weight).repeat_interleave(layout.averaged)]).to(q.device)
        rows = q[:, place * tokens:(place + 1) * tokens]
        scores = torch.einsum("bqhd,bkhd->bhqk", rows, keys) * q.shape[-1] ** -0.5 + bias
        outs.append(torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), values))
    return torch.cat(outs, 1)


#: flex_attention compiled once (a shape or options of its own recompile it); on the CPU it runs eagerly.
_FLEX = {}


def flex_span(layout: SpanLayout, device, weight: float | None = None, options: dict | None = None) -> Callable:
    """Span-keys attention with ``flex_attention`` on q [B, Q, H, D] and the call's keys and values: the mask from the
    frame of each query and key, the averaged keys' ``weight`` (default log(pool^2)) added by a score_mod. Compiled on
    the GPU (the block mask too), eager on the CPU."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    weight = layout.weight if weight is None else weight
    query_frame, key_frame = layout.frame_lookups(device)
    whole_start, averaged_start, near = layout.queries, layout.averaged_start, layout.near

    def mask_mod(b, h, q_idx, kv_idx):
        close = (query_frame[q_idx] - key_frame[kv_idx]).abs() <= near
        return (kv_idx < whole_start) | ((kv_idx < averaged_start) & close) | ((kv_idx >= averaged_start) & ~close)

    def score_mod(score, b, h, q_idx, kv_idx):
        return torch.where(kv_idx >= averaged_start, score + weight, score)

    compiled = torch.device(device).type == "cuda"
    block_mask = create_block_mask(mask_mod, None, None, layout.queries, layout.keys, device=device, _compile=compiled)
    if compiled and "fn" not in _FLEX:
        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
    attend = _FLEX["fn"] if compiled else flex_attention

    def run(q, keys, values):
        out = attend(q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2), score_mod=score_mod,
                     block_mask=block_mask, kernel_options=options or None)
        return out.transpose(1, 2)
    return run


def merge(out, lse, parts, parts_lse):
    """Attention over keys split in parts, from each part's output and log-sum-exp: out, lse [B, Q, H, D], [B, H, Q];
    parts, parts_lse the same with a leading part axis (an empty part: zeros and -inf)."""
    top = torch.maximum(lse, parts_lse.amax(0))
    weight = torch.exp(lse - top).transpose(1, 2)[..., None]
    total, merged = weight, weight * out.float()
    for part in range(parts.shape[0]):
        weight = torch.exp(parts_lse[part] - top).transpose(1, 2)[..., None]
        total, merged = total + weight, merged + weight * parts[part].float()
    return (merged / total).to(out.dtype)


_MERGE = {}


def parts_span(layout: SpanLayout, attend_lse: Callable, device, weight: float | None = None) -> Callable:
    """Span-keys attention in parts on a backend that returns the softmax's log-sum-exp: every query against the
    computed keys in one call, then per computed frame its span's whole keys and the averaged keys before and after
    its span (slices of the key buffer, no gather; the averaged parts' log-sum-exp raised by ``weight``), merged by
    log-sum-exp (compiled on the GPU)."""
    weight = layout.weight if weight is None else weight
    tokens, whole_start, averaged_start, count = layout.tokens, layout.queries, layout.averaged_start, layout.averaged
    if torch.device(device).type == "cuda" and "fn" not in _MERGE:
        _MERGE["fn"] = torch.compile(merge, dynamic=False)
    merged = _MERGE["fn"] if torch.device(device).type == "cuda" else merge
    slices = []                                         # per computed frame: (part, first key, end key, added score)
    for frame in layout.computed:
        first, last = layout.span(frame)
        slices.append([(0, whole_start + first * tokens, whole_start + last * tokens, 0.0),
                       (1, averaged_start, averaged_start + first * count, weight),
                       (2, averaged_start + last * count, layout.keys, weight)])

    def run(q, keys, values):
        out, lse = attend_lse(q, keys[:, :whole_start], values[:, :whole_start])
        parts, parts_lse = q.new_empty((3, *q.shape)), lse.new_empty((3, *lse.shape))
        for place, frame_slices in enumerate(slices):
            rows = slice(place * tokens, (place + 1) * tokens)
            for part, first, end, added in frame_slices:
                if end > first:
                    parts[part, :, rows], parts_lse[part, :, :, rows] = attend_lse(q[:, rows], keys[:, first:end],
                                                                                   values[:, first:end])
                    parts_lse[part, :, :, rows] += added
                else:                                   # no keys (a frame at an end): no weight
                    parts[part, :, rows], parts_lse[part, :, :, rows] = 0.0, -math.inf
        return merged(out, lse, parts, parts_lse)
    return run


def dense_backends(device) -> list[tuple[str, Callable, Callable]]:
    """(name, attention, attention with its log-sum-exp) on [B, L, H, D]: FlashAttention-3 where it imports (the
    target's reference), and PyTorch's SDPA flash kernel (the CPU's own on the CPU)."""
    found = []
    if torch.device(device).type == "cuda":
        try:
            found.append(("FlashAttention-3 bf16", attn.fa3_bf16()[0], attn.fa3_bf16_lse()[0]))
        except Exception as error:          # not installed, or no kernel for this GPU: named, the rows go on without
            print(f"FlashAttention-3: not used ({type(error).__name__}: {error})"[:300], flush=True)
    return found + [("SDPA flash", attn.sdpa("FLASH_ATTENTION")[0], attn.sdpa_flash_lse()[0])]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE's work on x [B, L, H, D] (pairs of channels turned by angles [L, 1, D/2], in float32 as the host does)."""
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2).to(x.dtype)


def block_weights(shape: Shape, device, dtype) -> dict[str, torch.Tensor]:
    """Random weights of one block's linear layers and norms (their values do not change the cost)."""
    generator = torch.Generator(device=device).manual_seed(0)
    dim, ffn = shape.dim, shape.ffn
    sizes = dict(q=(dim, dim), k=(dim, dim), v=(dim, dim), o=(dim, dim), ffn_in=(ffn, dim), ffn_out=(dim, ffn))
    if shape.text_tokens:
        sizes.update(cross_q=(dim, dim), cross_k=(dim, dim), cross_v=(dim, dim), cross_o=(dim, dim))
    weights = {}
    for name, size in sizes.items():
        weights[name] = torch.randn(size, generator=generator, device=device, dtype=dtype) * 0.02
        weights[name + "_bias"] = torch.zeros(size[0], device=device, dtype=dtype)
    for name in ("norm_q", "norm_k", "cross_norm_q", "cross_norm_k", "norm_3", "norm_3_bias"):
        weights[name] = torch.ones(dim, device=device, dtype=dtype)
    weights["modulation"] = torch.randn(6, dim, generator=generator, device=device, dtype=dtype) * 0.02
    return weights


def projected(x, w, name, heads, norm=None):
    """``x``'s projection ``name`` [B, L, heads, D], RMS-normed with ``norm`` where given."""
    y = F.linear(x, w[name], w[name + "_bias"])
    y = F.rms_norm(y, (y.shape[-1],), w[norm]) if norm else y
    return y.unflatten(-1, (heads, -1))


def block_rest(x, context, w, cos, sin, heads: int, cross_attention: Callable):
    """A Wan block's work other than its self-attention on x [B, L, dim] (without ``context``: HunyuanVideo 1.5's
    image stream, no cross-attention): the self-attention's output is stood in by its queries."""
    dim, mod = x.shape[-1], w["modulation"]
    y = F.layer_norm(x, (dim,)) * (1 + mod[0]) + mod[1]
    q = rotate(projected(y, w, "q", heads, "norm_q"), cos, sin)
    keys_and_values = rotate(projected(y, w, "k", heads, "norm_k"), cos, sin), projected(y, w, "v", heads)
    del keys_and_values                             # what the self-attention, timed apart, would take
    x = x + F.linear(q.flatten(2), w["o"], w["o_bias"]) * mod[2]
    if context is not None:
        y = F.layer_norm(x, (dim,), w["norm_3"], w["norm_3_bias"])
        cross = cross_attention(projected(y, w, "cross_q", heads, "cross_norm_q"),
                                projected(context, w, "cross_k", heads, "cross_norm_k"),
                                projected(context, w, "cross_v", heads))
        x = x + F.linear(cross.flatten(2), w["cross_o"], w["cross_o_bias"])
    y = F.layer_norm(x, (dim,)) * (1 + mod[3]) + mod[4]
    return x + F.linear(F.gelu(F.linear(y, w["ffn_in"], w["ffn_in_bias"]), approximate="tanh"),
                        w["ffn_out"], w["ffn_out_bias"]) * mod[5]


def extra_work(x_skipped, w, cos, sin, heads: int, layout: SpanLayout, keys, values):
    """The skipped tokens' own cost in a span-keys block: their key (RMS norm, RoPE) and value projections, written
    into the call's key buffer whole and averaged."""
    k = rotate(projected(x_skipped, w, "k", heads, "norm_k"), cos, sin)
    v = projected(x_skipped, w, "v", heads)
    start = layout.averaged_start
    keys[:, layout.queries:start], values[:, layout.queries:start] = k, v
    keys[:, start:], values[:, start:] = averaged(k, layout), averaged(v, layout)


def compose(attention: dict | None, rest: dict, extra: dict | None = None) -> tuple[float, float, float] | None:
    """A block's measured parts (attention, the rest, the extra) in ms, or None where one failed."""
    parts = [attention or {}, rest] + ([extra] if extra is not None else [])
    if any("ms" not in part for part in parts):
        return None
    return attention["ms"], rest["ms"], extra["ms"] if extra is not None else 0.0


class Rows:
    """One shape's timed rows: each a call's median ms, or why it failed, printed as it comes."""

    def __init__(self, name: str, args, device):
        self.name, self.clock, self.reps, self.warmup = name, Clock(device), args.reps, args.warmup

    def timed(self, label: str, fn: Callable) -> dict:
        """``fn``'s median ms (the first call's wall time, compilation included, apart), or why it failed."""
        try:
            started = time.perf_counter()
            fn()
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            first_s = time.perf_counter() - started
            ms = self.clock.median_ms(fn, self.reps, self.warmup)
        except Exception as error:             # a kernel that fails at this shape is a row that says so
            print(f"{self.name}: {label}: failed ({type(error).__name__}: {error})"[:400], flush=True)
            return dict(failed=f"{type(error).__name__}: {error}"[:300])
        print(f"{self.name}: {label}: {ms:.2f} ms (first call {first_s:.1f} s)", flush=True)
        return dict(ms=round(ms, 3), first_call_s=round(first_s, 2))


def attention_rows(rows: Rows, shape: Shape, layout: SpanLayout, backends, device, dtype, flex_options) -> list[dict]:
    """Dense, plain G and span-keys attention at ``shape``; the span rows with their error against the float32
    reference on two heads."""
    heads, tokens = shape.heads, shape.grid[0] * layout.tokens
    q, k, v = video_qkv(shape.grid, heads=heads, dim=shape.head_dim, device=device, dtype=dtype)
    q_c, keys, values = span_inputs(q, k, v, layout)
    picked = [0, heads // 2][:REFERENCE_HEADS]
    exact = reference(q_c, keys, values, layout, picked)
    found = []

    def row(label, kind, backend, fn, queries, pairs, check=False):
        result = dict(shape=rows.name, attention=label, kind=kind, backend=backend, keys_per_query=round(pairs / queries, 1),
                      **rows.timed(label, fn))
        if "ms" in result:
            result["effective_tflops"] = round(4.0 * heads * shape.head_dim * pairs / result["ms"] / 1e9, 1)
            if check:
                result["rel_error"] = float(f"{relative_error(fn()[:, :, picked], exact):.3e}")
                print(f"{rows.name}: {label}: error against the float32 reference {result['rel_error']:.2e}", flush=True)
        found.append(result)

    for backend, fn, _ in backends:
        row(f"dense, {backend}", "dense", backend, lambda: fn(q, k, v), tokens, tokens ** 2)
    computed_keys, computed_values = keys[:, :layout.queries], values[:, :layout.queries]
    for backend, fn, _ in backends:
        row(f"plain G={layout.groups}, {backend}", "plain", backend, lambda: fn(q_c, computed_keys, computed_values),
            layout.queries, layout.queries ** 2)
    span_pairs = layout.key_pairs()
    for options in flex_options:
        label = "span keys, flex_attention" + (f" {json.dumps(options)}" if options else "")
        try:
            run = flex_span(layout, device, options=options)
        except Exception as error:           # the block mask failed to build: a row that says so
            print(f"{rows.name}: {label}: failed ({type(error).__name__}: {error})"[:400], flush=True)
            found.append(dict(shape=rows.name, attention=label, kind="flex", failed=f"{type(error).__name__}: {error}"[:300]))
            continue
        row(label, "flex", None, lambda: run(q_c, keys, values), layout.queries, span_pairs, check=True)
    for backend, _, fn_lse in backends:
        run = parts_span(layout, fn_lse, device)
        row(f"span keys in parts + LSE merge, {backend}", "parts", backend, lambda: run(q_c, keys, values),
            layout.queries, span_pairs, check=True)
    return found


def linear_rows(rows: Rows, shape: Shape, layout: SpanLayout, backends, device, dtype) -> dict:
    """A block's work other than its self-attention at all tokens and at the computed ones (per backend: its
    cross-attention), and the skipped tokens' extra work (and its K and V projections alone)."""
    heads, tokens, kept = shape.heads, shape.grid[0] * layout.tokens, layout.queries
    generator = torch.Generator(device=device).manual_seed(2)
    weights = block_weights(shape, device, dtype)
    angles = torch.rand(tokens, 1, shape.head_dim // 2, generator=generator, device=device) * math.pi
    cos, sin = angles.cos(), angles.sin()
    x = torch.randn(1, tokens, shape.dim, generator=generator, device=device, dtype=dtype)
    context = (torch.randn(1, shape.text_tokens, shape.dim, generator=generator, device=device, dtype=dtype)
               if shape.text_tokens else None)
    found = {}
    for backend, fn, _ in backends:
        for label, count in (("all", tokens), ("computed", kept)):
            found[label, backend] = rows.timed(
                f"block without self-attention, {label} tokens ({count}), {backend}",
                lambda: block_rest(x[:, :count], context, weights, cos[:count], sin[:count], heads, fn))
    x_skipped = x[:, kept:]
    keys = torch.empty(1, layout.keys, heads, shape.head_dim, device=device, dtype=dtype)
    values = torch.empty_like(keys)
    found["extra"] = rows.timed("extra (skipped tokens' K, V, norm, RoPE, averaging, into the key buffer)",
                                lambda: extra_work(x_skipped, weights, cos[kept:], sin[kept:], heads, layout, keys, values))
    found["projections"] = rows.timed(
        f"of which the K and V projections ({tokens - kept} x {shape.dim} @ {shape.dim} x {shape.dim}, twice)",
        lambda: (F.linear(x_skipped, weights["k"], weights["k_bias"]), F.linear(x_skipped, weights["v"], weights["v_bias"])))
    return found


def composed_blocks(name: str, shape: Shape, groups: int, attention: list[dict], linear: dict, backends) -> list[dict]:
    """Dense, plain-G and span-keys blocks on each backend from the measured parts (the fastest flex row), and a
    step of the model's blocks with its auto sparse blocks so."""
    timed = {(r["kind"], r.get("backend")): r for r in attention if "ms" in r}
    flex = min((r for r in attention if r["kind"] == "flex" and "ms" in r), key=lambda r: r["ms"], default=None)
    blocks = []
    for backend, _, _ in backends:
        dense = compose(timed.get(("dense", backend)), linear["all", backend])
        kinds = [("dense", dense), (f"plain G={groups}", compose(timed.get(("plain", backend)), linear["computed", backend])),
                 ("span keys, flex_attention", compose(flex, linear["computed", backend], linear["extra"])),
                 ("span keys in parts + LSE merge", compose(timed.get(("parts", backend)), linear["computed", backend],
                                                            linear["extra"]))]
        for kind, parts in kinds:
            if dense is None or parts is None:
                continue
            block_ms, dense_ms = sum(parts), sum(dense)
            step_ms = shape.sparse_blocks * block_ms + (shape.blocks - shape.sparse_blocks) * dense_ms
            blocks.append(dict(shape=name, backend=backend, block=kind, attention_ms=parts[0], rest_ms=parts[1],
                               extra_ms=parts[2], block_ms=round(block_ms, 3), block_speedup=round(dense_ms / block_ms, 3),
                               step_ms=round(step_ms, 1), step_speedup=round(shape.blocks * dense_ms / step_ms, 3)))
    return blocks


def measure(name: str, shape: Shape, args, device, dtype) -> dict:
    """One shape's rows and its composed blocks."""
    rows, backends = Rows(name, args, device), dense_backends(device)
    layout = SpanLayout(shape.grid, args.groups, args.group, args.pool)
    attention = attention_rows(rows, shape, layout, backends, device, dtype, args.flex_options)
    linear = linear_rows(rows, shape, layout, backends, device, dtype)
    return dict(shape=name, grid=list(shape.grid), heads=shape.heads, head_dim=shape.head_dim, dim=shape.dim, ffn=shape.ffn,
                text_tokens=shape.text_tokens, blocks=shape.blocks, sparse_blocks=shape.sparse_blocks, groups=args.groups,
                pool=args.pool, computed=list(layout.computed), skipped=list(layout.skipped),
                tokens=shape.grid[0] * layout.tokens, queries=layout.queries, keys=layout.keys,
                span_keys_per_query=round(layout.key_pairs() / layout.queries, 1), extra=linear["extra"],
                kv_projections=linear["projections"], attention=attention,
                composed_blocks=composed_blocks(name, shape, args.groups, attention, linear, backends))


def attention_cells(r: dict) -> list:
    if "ms" not in r:
        return [r["shape"], r["attention"], "-", "-", "-", r["failed"][:60]]
    return [r["shape"], r["attention"], f"{r['ms']:.2f}", f"{r['keys_per_query']:.0f}", f"{r['effective_tflops']:.0f}",
            f"{r['rel_error']:.1e}" if "rel_error" in r else "-"]


def block_cells(b: dict, report: dict) -> list:
    return [b["shape"], b["backend"], b["block"], f"{b['attention_ms']:.2f}", f"{b['rest_ms']:.2f}", f"{b['extra_ms']:.2f}",
            f"{b['block_ms']:.2f}", f"**{b['block_speedup']:.2f}x**",
            f"{b['step_ms']:.0f} ({report['sparse_blocks']} of {report['blocks']})", f"**{b['step_speedup']:.2f}x**"]


def markdown(reports: list[dict]) -> str:
    attention = table(["shape", "attention", "ms", "keys per query", "effective TFLOPS", "error vs fp32"],
                      [attention_cells(r) for report in reports for r in report["attention"]])
    blocks = table(["shape", "backend", "block", "attention ms", "rest ms", "extra ms", "block ms", "vs dense block",
                    "step ms (sparse of blocks)", "vs dense step"],
                   [block_cells(b, report) for report in reports for b in report["composed_blocks"]])
    return (f"{attention}\n\nBlocks composed from the measured parts above (not an end-to-end run): dense = dense attention + "
            f"rest(N); plain G = its attention + rest(N/G); span keys = its attention + rest(N/G) + extra. Per step: the "
            f"model's auto sparse blocks so, the others dense; the restore of the skipped frames left out.\n\n{blocks}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma list of {', '.join(SHAPES)}")
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--group", type=int, default=0, help="the group whose frames are computed")
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--flex-options", type=json.loads, default=[{}],
                        help="JSON list of flex_attention kernel_options, a row each (default: [{}], its own choice)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="a tiny shape on the CPU: checks the script, no speed claims")
    parser.add_argument("--out", default=str(PACK_ROOT / "bench" / "out" / "span_keys.json"))
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("span_keys: the full-size shapes need a CUDA GPU; --tiny checks the script on the CPU")
    device, dtype = (torch.device("cpu"), torch.float32) if args.tiny else (torch.device("cuda"), torch.bfloat16)
    shapes = TINY_SHAPES if args.tiny else {name: SHAPES[name] for name in args.shapes.split(",")}
    if args.tiny:
        args.reps, args.warmup = 2, 1
    torch._dynamo.config.recompile_limit = 64       # a compile per shape, flex option and merge
    reports = []
    with torch.no_grad():
        for name, shape in shapes.items():
            reports.append(measure(name, shape, args, device, dtype))
            torch.cuda.empty_cache() if device.type == "cuda" else None
    print(markdown(reports))
    report = dict(what="span-keys attention (quality/fit_study.py PooledKeys) against dense and plain G=3; blocks composed "
                       "from measured parts, not an end-to-end run", date=datetime.date.today().isoformat(),
                  device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu", torch=torch.__version__,
                  dtype=str(dtype), tiny=args.tiny, flex_options=args.flex_options, reps=args.reps, shapes=reports)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"\n{report['device']}, torch {report['torch']}, {report['date']}; written to {args.out}")
    return report


if __name__ == "__main__":
    main()
