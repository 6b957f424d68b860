"""ComfyUI nodes of ComfyUI-FIS."""
from .fis_node import FrameInterleavedSparsity
from .fps_node import FPSAttention

NODE_CLASS_MAPPINGS = {"FrameInterleavedSparsity": FrameInterleavedSparsity, "FPSAttention": FPSAttention}
NODE_DISPLAY_NAME_MAPPINGS = {"FrameInterleavedSparsity": "Frame Interleaved Sparsity (FIS)",
                              "FPSAttention": "FP8 + Sparse Attention (FPS)"}
