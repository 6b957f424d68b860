"""ComfyUI nodes of ComfyUI-FIS."""
from .compare_node import FISCompare
from .fis_node import FrameInterleavedSparsity
from .fps_node import FPSAttention
from .timer_node import FISTimer

NODE_CLASS_MAPPINGS = {"FrameInterleavedSparsity": FrameInterleavedSparsity, "FPSAttention": FPSAttention,
                       "FISTimer": FISTimer, "FISCompare": FISCompare}
NODE_DISPLAY_NAME_MAPPINGS = {"FrameInterleavedSparsity": "Frame Interleaved Sparsity (FIS)",
                              "FPSAttention": "FP8 + Sparse Attention (FPS)",
                              "FISTimer": "FIS Timer (sampling time)",
                              "FISCompare": "FIS Compare (A/B fidelity)"}
