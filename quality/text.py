"""Text-like conditioning: a scene description as 8 tokens of 4096 values, the width of Wan's text input.

Each word of the description's vocabulary (:data:`quality.scenes.SLOTS`, 27 distinct words) has a
fixed vector, and each of the 8 token positions another: rows of the 4096x4096 Sylvester-Hadamard
matrix (+-1 entries; word w takes row 1 + w, position p row 2048 + p), so all are orthogonal and
exactly reproducible without a random generator. A token is its word's vector plus half its
position's vector, as a text encoder's input layer adds word and position embeddings. There is no
learned text encoder: the model's own ``text_embedding`` layers learn to read these tokens.
"""
from __future__ import annotations

import torch

from .hadamard import hadamard_rows
from .scenes import SLOTS, TOKENS, Scene

WIDTH = 4096
VOCABULARY = tuple(dict.fromkeys(word for slot in SLOTS for word in slot))
_WORD_ROWS = 1
_POSITION_ROWS = 2048
_POSITION_WEIGHT = 0.5


def _tables() -> tuple[torch.Tensor, torch.Tensor]:
    words = hadamard_rows(range(_WORD_ROWS, _WORD_ROWS + len(VOCABULARY)), WIDTH)
    positions = hadamard_rows(range(_POSITION_ROWS, _POSITION_ROWS + TOKENS), WIDTH) * _POSITION_WEIGHT
    return words, positions


WORD_VECTORS, POSITION_VECTORS = _tables()
#: for each slot, the vocabulary index of each of its words
_SLOT_TO_VOCABULARY = [torch.tensor([VOCABULARY.index(w) for w in slot]) for slot in SLOTS]


def embed_indices(indices: torch.Tensor) -> torch.Tensor:
    """Tokens [B, 8, 4096] of scenes given as slot indices [B, 8] (as :func:`quality.scenes.random_indices`)."""
    cpu = indices.cpu()
    words = torch.stack([_SLOT_TO_VOCABULARY[k][cpu[:, k]] for k in range(TOKENS)], dim=1)
    tokens = WORD_VECTORS[words] + POSITION_VECTORS
    return tokens.to(indices.device)


def embed(scenes: list[Scene]) -> torch.Tensor:
    """Tokens [len(scenes), 8, 4096] of ``scenes``."""
    return embed_indices(torch.tensor([scene.indices for scene in scenes]))
