"""ComfyUI nodes of ComfyUI-FIS."""
from .calibrate_node import FISCalibrate
from .compare_node import FISCompare
from .fis_node import FrameInterleavedSparsity
from .fps_node import FPSAttention
from .timer_node import FISTimer

NODE_CLASS_MAPPINGS = {"FrameInterleavedSparsity": FrameInterleavedSparsity, "FPSAttention": FPSAttention,
                       "FISTimer": FISTimer, "FISCompare": FISCompare, "FISCalibrate": FISCalibrate}
NODE_DISPLAY_NAME_MAPPINGS = {"FrameInterleavedSparsity": "Frame Interleaved Sparsity (FIS)",
                              "FPSAttention": "FP8 + Sparse Attention (FPS)",
                              "FISTimer": "FIS Timer (sampling time)",
                              "FISCompare": "FIS Compare (A/B fidelity)",
                              "FISCalibrate": "FIS Calibrate (measure blocks)"}
