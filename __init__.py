"""ComfyUI-FIS: Frame Interleaved Sparsity for few-step video diffusion transformers."""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.model_info import register_routes

#: The front-end extension (the schedule view inside the node) that ComfyUI serves to the browser.
WEB_DIRECTORY = "./web"
register_routes()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
