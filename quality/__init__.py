"""Quality evidence for FIS on a small video model trained here.

- :mod:`quality.scenes`: procedural videos (moving, rotating, occluding shapes over textured
  backgrounds, camera pans and zooms) and their scene descriptions.
- :mod:`quality.latent`: the fixed, invertible linear map between RGB video and the model's
  16-channel latent (no VAE).
- :mod:`quality.text`: the text-like conditioning (fixed word and position vectors, 4096 wide).
- :mod:`quality.model`: the model (the host's own ``WanModel``), its shapes (the shipped one and one shaped
  more like Wan), its initialisation, the sampling schedule and the 4-step LoRA.
- :mod:`quality.train`: trains the base model (flow matching) and distils the 4-step LoRA.
- :mod:`quality.host`: loads the checkpoint through ComfyUI and samples with its samplers.
- :mod:`quality.metrics`, :mod:`quality.plot`: fidelity metrics (the product's, from
  ``fis_core.metrics``) and Pillow plots.
- :mod:`quality.evaluate`: FIS against dense and EasyCache, block sensitivity, the README table.
- :mod:`quality.demo`: the one-command demo.
- :mod:`quality.wan_shaped`: the model shaped more like Wan, trained and studied in one GPU call.

Everything but ``host``, ``evaluate`` and ``demo`` is pure torch; ``model`` and ``train`` need
ComfyUI's ``comfy`` package for the model class alone.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from host_path import import_pack  # noqa: E402

#: The study measures the product's own code (``comfyui_fis.fis_core``: pure torch, no host needed), also when it
#: runs as ``python -m quality.<module>`` from the pack folder.
import_pack()
