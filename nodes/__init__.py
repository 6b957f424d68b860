"""ComfyUI nodes of ComfyUI-FIS."""
from .fis_node import FrameInterleavedSparsity

NODE_CLASS_MAPPINGS = {"FrameInterleavedSparsity": FrameInterleavedSparsity}
NODE_DISPLAY_NAME_MAPPINGS = {"FrameInterleavedSparsity": "Frame Interleaved Sparsity (FIS)"}
