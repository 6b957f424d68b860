"""The FIS schedule: which latent frames each transformer block computes."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from .widget_text import list_parts, parse_int, quoted

PATTERNS = ("interleave", "contiguous")
INTERPOLATIONS = ("corrected", "linear", "nearest", "none")
#: Block numbers a list may name for a model whose block count is unknown (one FIS does not support).
MAX_BLOCKS = 4096
#: Latent frames an anchor may count, from the start or (negative) from the end.
MAX_FRAMES = 4096


def check_choice(widget: str, value: str, choices: tuple[str, ...]):
    """Raise a ValueError naming ``widget`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{widget}: {quoted(str(value))} is unknown; choose one of {', '.join(choices)}")


def parse_block_list(spec: str, num_blocks: int | None = None, widget: str = "sparse_blocks") -> tuple[int, ...]:
    """Parse a block range list such as ``"4-35"`` or ``"0,2,5-9"`` into sorted unique indices.

    An empty string gives no blocks. Every index must be below ``num_blocks`` (or :data:`MAX_BLOCKS`), checked per
    range before it is expanded, so a typo such as ``0-99999999999`` is refused at once.
    Raises ``ValueError`` whose message names ``widget`` and the valid form.
    """
    form = "a list of block numbers and ranges such as '4-35' or '0,2,5-9'"
    limit = MAX_BLOCKS if num_blocks is None else num_blocks
    chosen = bytearray(max(limit, 0))
    for part in list_parts(spec):
        first, dash, last = part.partition("-")
        if dash and (not first or not last):
            raise ValueError(f"{widget}: {quoted(part)} is not a block number or range; expected {form}")
        lo = parse_int(first, widget, form)
        hi = parse_int(last, widget, form) if dash else lo
        if lo > hi:
            raise ValueError(f"{widget}: range {quoted(part)} runs backwards; write it low-high, e.g. '{hi}-{lo}'")
        if hi >= limit:
            if num_blocks is None:
                raise ValueError(f"{widget}: block {hi} is out of range; block numbers go up to {MAX_BLOCKS - 1}")
            raise ValueError(f"{widget}: block {hi} does not exist; this model has blocks 0-{num_blocks - 1}")
        chosen[lo:hi + 1] = b"\x01" * (hi + 1 - lo)
    return tuple(i for i, flag in enumerate(chosen) if flag)


def parse_frame_list(spec: str, widget: str = "anchor_frames") -> tuple[int, ...]:
    """Parse a comma-separated list of latent frame indices; negative ones count from the end (-1 = last)."""
    form = "latent frame numbers separated by commas, e.g. '0' or '0,-1'"
    frames = set()
    for part in list_parts(spec):
        frame = parse_int(part, widget, form)
        if not -MAX_FRAMES <= frame < MAX_FRAMES:
            raise ValueError(f"{widget}: frame {frame} is out of range; frames go from {-MAX_FRAMES} to {MAX_FRAMES - 1}")
        frames.add(frame)
    return tuple(sorted(frames))


def format_block_list(blocks: tuple[int, ...]) -> str:
    """Inverse of :func:`parse_block_list`: ``(1, 2, 3, 7)`` -> ``"1-3,7"``."""
    parts, start = [], None
    for i, b in enumerate(blocks):
        if start is None:
            start = b
        if i + 1 == len(blocks) or blocks[i + 1] != b + 1:
            parts.append(str(start) if start == b else f"{start}-{b}")
            start = None
    return ",".join(parts)


@dataclass(frozen=True)
class FisSchedule:
    """Which frames each block computes.

    ``sparse_blocks`` run on a subset of the latent frames; at sampling step s the k-th of them (in
    block order) takes group ``(k + s) mod groups`` with ``rotate``, else ``k mod groups``. Rotation
    moves every frame's computed and interpolated blocks from step to step, so a frame's interpolation
    errors do not pile up in the same blocks at every step (they average out instead of flickering).
    Anchors are computed by every block; negative anchors count from the last frame.
    """

    sparse_blocks: tuple[int, ...]
    groups: int
    pattern: str = "interleave"
    anchors: tuple[int, ...] = ()
    rotate: bool = True

    def __post_init__(self):
        if self.groups < 1:
            raise ValueError(f"groups: must be at least 1 (1 turns FIS off); got {self.groups}")
        check_choice("pattern", self.pattern, PATTERNS)
        object.__setattr__(self, "sparse_blocks", tuple(sorted(set(self.sparse_blocks))))

    @property
    def enabled(self) -> bool:
        return self.groups > 1 and len(self.sparse_blocks) > 0

    def fit_to(self, num_frames: int) -> "FisSchedule":
        """The same schedule with ``groups`` lowered to ``num_frames`` where there are fewer frames than groups."""
        return self if num_frames >= self.groups else replace(self, groups=max(num_frames, 1))

    @cached_property
    def _rank(self) -> dict[int, int]:
        """Each sparse block's place among the sparse blocks (a lookup, not a search of the tuple)."""
        return {block: k for k, block in enumerate(self.sparse_blocks)}

    def group_of_block(self, block: int, step: int = 0) -> int | None:
        """The group a sparse block takes at sampling step ``step``, or None for a dense block."""
        rank = self._rank.get(block)
        if not self.enabled or rank is None:
            return None
        return (rank + (step if self.rotate else 0)) % self.groups

    def group_frames(self, group: int, num_frames: int) -> tuple[int, ...]:
        """Frames computed by blocks of ``group``: the group's own frames plus the anchors."""
        if num_frames < self.groups:
            raise ValueError(f"{num_frames} latent frames cannot be split into {self.groups} groups; "
                             f"use groups <= {num_frames} (FisSchedule.fit_to does this)")
        if self.pattern == "interleave":
            own = range(group, num_frames, self.groups)
        else:
            own = range(group * num_frames // self.groups, (group + 1) * num_frames // self.groups)
        anchors = {a % num_frames for a in self.anchors if -num_frames <= a < num_frames}
        return tuple(sorted(set(own) | anchors))

    def frames_for_block(self, block: int, num_frames: int, step: int = 0) -> tuple[int, ...] | None:
        """The frames ``block`` computes at sampling step ``step``, or None when it computes all of them."""
        group = self.group_of_block(block, step)
        if group is None:
            return None
        frames = self.group_frames(group, num_frames)
        return None if len(frames) == num_frames else frames

    def frames_by_block(self, num_frames: int, step: int = 0) -> dict[int, tuple[int, ...] | None]:
        """:meth:`frames_for_block` of every sparse block, with ``groups`` fitted to ``num_frames``: what a model call
        finds once and its blocks look up."""
        fitted = self.fit_to(num_frames)
        return {block: fitted.frames_for_block(block, num_frames, step) for block in fitted.sparse_blocks}

    def computed_fraction(self, num_blocks: int, num_frames: int) -> float:
        """Share of frame-block work done, counting a block on k of F frames as k/F."""
        work = sum(len(f) / num_frames if (f := self.frames_for_block(b, num_frames)) else 1.0
                   for b in range(num_blocks))
        return work / num_blocks
