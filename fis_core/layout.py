"""Where the latent frames lie in a block's token sequence."""
from __future__ import annotations

from typing import NamedTuple


class FrameLayout(NamedTuple):
    """A token sequence of ``prefix`` tokens, then ``frames`` frames of ``tokens_per_frame`` tokens, then ``suffix`` tokens.

    Prefix and suffix tokens (text in a single-stream block, a reference image, in-context latents)
    are not frames: every block computes them. (A NamedTuple of ints, so that ``torch.compile`` can
    rebuild it anywhere in a traced block.)
    """

    prefix: int
    frames: int
    tokens_per_frame: int
    suffix: int = 0

    @property
    def length(self) -> int:
        return self.prefix + self.frames * self.tokens_per_frame + self.suffix

    @property
    def frame_tokens(self) -> slice:
        """The slice of the sequence that holds the frames."""
        return slice(self.prefix, self.prefix + self.frames * self.tokens_per_frame)

    def with_prefix(self, extra: int) -> "FrameLayout":
        """The same frames behind ``extra`` more prefix tokens (e.g. text placed before the image tokens)."""
        return FrameLayout(self.prefix + extra, self.frames, self.tokens_per_frame, self.suffix)

    @staticmethod
    def fit(length: int, prefix: int, frames: int, tokens_per_frame: int) -> "FrameLayout | None":
        """The layout of a sequence of ``length`` tokens, the rest after the frames being suffix; None if it does not fit."""
        suffix = length - prefix - frames * tokens_per_frame
        if frames < 1 or tokens_per_frame < 1 or prefix < 0 or suffix < 0:
            return None
        return FrameLayout(prefix, frames, tokens_per_frame, suffix)
