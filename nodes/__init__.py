"""ComfyUI nodes of ComfyUI-FIS."""
from .calibrate_node import FISCalibrate
from .compare_node import FISCompare
from .fis_node import FrameInterleavedSparsity
from .fps_node import FPSAttention
from .raylight_nodes import FPSAttentionRaylight, FrameInterleavedSparsityRaylight
from .timer_node import FISTimer

NODE_CLASS_MAPPINGS = {"FrameInterleavedSparsity": FrameInterleavedSparsity, "FPSAttention": FPSAttention,
                       "FISTimer": FISTimer, "FISCompare": FISCompare, "FISCalibrate": FISCalibrate,
                       "FrameInterleavedSparsityRaylight": FrameInterleavedSparsityRaylight,
                       "FPSAttentionRaylight": FPSAttentionRaylight}
NODE_DISPLAY_NAME_MAPPINGS = {"FrameInterleavedSparsity": "Frame Interleaved Sparsity (FIS)",
                              "FPSAttention": "FP8 + Sparse Attention (FPS)",
                              "FISTimer": "FIS Timer (sampling time)",
                              "FISCompare": "FIS Compare (A/B fidelity)",
                              "FISCalibrate": "FIS Calibrate (measure blocks)",
                              "FrameInterleavedSparsityRaylight": "Frame Interleaved Sparsity (FIS, Raylight)",
                              "FPSAttentionRaylight": "FP8 + Sparse Attention (FPS, Raylight)"}
