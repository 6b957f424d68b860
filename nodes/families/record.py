"""A model family's static facts, as data: one :class:`FamilyRecord` per family (as diffusers'
``TransformerBlockRegistry`` keeps model facts), beside the adapter class that cuts its blocks' arguments."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ModelInfo:
    """What the schedule view draws for a model: its name, its blocks as ``sparse_blocks`` numbers them, the
    latent frames of its usual clip, and whether it takes a concatenated image (then ``auto`` anchors a frame)."""

    label: str
    blocks: int
    frames: int
    image_to_video: bool = False


@dataclass(frozen=True)
class UsualModel:
    """A model of the family the schedule view offers when it cannot read the connected file; a file name containing
    one of ``file_hints`` suggests it (the longest hint that matches wins)."""

    key: str
    model: ModelInfo
    file_hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class FamilyRecord:
    """What FIS knows of one model family of the host, apart from how its blocks' arguments are cut."""

    #: the family's name in profiles, log lines and the view
    name: str
    #: the models as the nodes' tooltips and log lines name them
    label: str
    #: the host's diffusion model class, as ``module:Class``, and the names of its subclasses FIS cannot run
    model_class: str
    #: the lists of transformer blocks in execution order, each as (the diffusion model's attribute, which is also
    #: the weights' prefix in a file, the ``patches_replace["dit"]`` key of its blocks)
    blocks: tuple[tuple[str, str], ...]
    #: how a model file is recognised: the ``image_model`` of ComfyUI's detected config, and a function of that config
    #: and the file's block counts (one per list of ``blocks``) giving the view's :class:`ModelInfo`, or None where the
    #: file is not a model FIS runs
    image_model: str
    describe: Callable[[dict, tuple[int, ...]], ModelInfo | None]
    #: the family's usual models, for the schedule view
    usual_models: tuple[UsualModel, ...]
    excluded_classes: tuple[str, ...] = ()
    #: blocks ``auto`` leaves dense at each end (they shape the input and the output)
    dense_ends: int = 1
    #: the frames ``auto`` anchors in an image-to-video clip, as the view draws it (the node reads each call's
    #: conditioning: :meth:`~.base.FamilyAdapter.default_anchors`)
    image_anchors: tuple[int, ...] = (0,)
    #: whether FPS attention takes the family's video self-attention, and whether that attention puts text (of any
    #: length) in front of the frames
    takes_fps: bool = False
    text_first: bool = False
    #: a sentence for the node's model tooltip (how to use FIS on this family), or ""
    model_note: str = ""
    #: a sentence for the ``sparse_blocks`` tooltip (how this family's blocks are numbered), or ""
    blocks_note: str = ""

    def default_blocks(self, num_blocks: int) -> tuple[int, ...]:
        """The ``auto`` sparse blocks: all but :attr:`dense_ends` at each end."""
        return tuple(range(self.dense_ends, num_blocks - self.dense_ends))
