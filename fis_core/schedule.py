"""The FIS schedule: which latent frames each transformer block computes."""
from __future__ import annotations

from dataclasses import dataclass, replace

PATTERNS = ("interleave", "contiguous")
INTERPOLATIONS = ("corrected", "linear", "nearest", "none")


def _parse_int(text: str, widget: str, form: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{widget}: '{text}' is not a number; expected {form}") from None


def check_choice(widget: str, value: str, choices: tuple[str, ...]):
    """Raise a ValueError naming ``widget`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{widget}: '{value}' is unknown; choose one of {', '.join(choices)}")


def parse_block_list(spec: str, num_blocks: int | None = None, widget: str = "sparse_blocks") -> tuple[int, ...]:
    """Parse a block range list such as ``"4-35"`` or ``"0,2,5-9"`` into sorted unique indices.

    An empty string gives no blocks. With ``num_blocks`` every index must be below it.
    Raises ``ValueError`` whose message names ``widget`` and the valid form.
    """
    form = "a list of block numbers and ranges such as '4-35' or '0,2,5-9'"
    blocks: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            first, last = part.split("-", 1)
            if not first or not last:
                raise ValueError(f"{widget}: '{part}' is not a block number or range; expected {form}")
            lo, hi = _parse_int(first, widget, form), _parse_int(last, widget, form)
            if lo > hi:
                raise ValueError(f"{widget}: range '{part}' runs backwards; write it low-high, e.g. '{hi}-{lo}'")
            blocks.update(range(lo, hi + 1))
        else:
            blocks.add(_parse_int(part, widget, form))
    if num_blocks is not None and blocks and max(blocks) >= num_blocks:
        raise ValueError(f"{widget}: block {max(blocks)} does not exist; this model has blocks 0-{num_blocks - 1}")
    return tuple(sorted(blocks))


def parse_frame_list(spec: str, widget: str = "anchor_frames") -> tuple[int, ...]:
    """Parse a comma-separated list of latent frame indices; negative ones count from the end (-1 = last)."""
    form = "latent frame numbers separated by commas, e.g. '0' or '0,-1'"
    return tuple(sorted({_parse_int(p, widget, form) for p in spec.replace(" ", "").split(",") if p}))


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

    def group_of_block(self, block: int, step: int = 0) -> int | None:
        """The group a sparse block takes at sampling step ``step``, or None for a dense block."""
        if not self.enabled or block not in self.sparse_blocks:
            return None
        return (self.sparse_blocks.index(block) + (step if self.rotate else 0)) % self.groups

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

    def computed_fraction(self, num_blocks: int, num_frames: int) -> float:
        """Share of frame-block work done, counting a block on k of F frames as k/F."""
        work = sum(len(f) / num_frames if (f := self.frames_for_block(b, num_frames)) else 1.0
                   for b in range(num_blocks))
        return work / num_blocks
