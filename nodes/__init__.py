"""ComfyUI nodes of ComfyUI-FIS."""
from .ui.calibrate_node import FISCalibrate
from .ui.compare_node import FISCompare
from .ui.fis_node import FrameInterleavedSparsity
from .ui.fis_node_v3 import build_node_class, dynamic_combo_available
from .ui.fps_node import FPSAttention
from .ui.raylight_nodes import FPSAttentionRaylight, FrameInterleavedSparsityRaylight
from .ui.timer_node import FISTimer

#: The FIS node in the host's V3 schema (quality a DynamicCombo) where the host has one, else the V1 node.
FIS_NODE = build_node_class() if dynamic_combo_available() else FrameInterleavedSparsity
NODE_CLASS_MAPPINGS = {"FrameInterleavedSparsity": FIS_NODE, "FPSAttention": FPSAttention,
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
