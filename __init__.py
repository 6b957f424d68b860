"""ComfyUI-FIS: Frame Interleaved Sparsity for few-step video diffusion transformers.

Importing the package is cheap (the tests and the lab import ``fis_core`` without a host): the nodes, which need
ComfyUI, are imported when ComfyUI reads the mappings, and the web routes are added only inside ComfyUI.
"""
import sys

#: The front-end extensions (the FIS node's schedule view, FIS Compare's report) that ComfyUI serves to the browser.
WEB_DIRECTORY = "./web"
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]


def __getattr__(name):
    """``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS``, from the nodes imported on first use."""
    if name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"):
        from . import nodes
        return getattr(nodes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if hasattr(sys.modules.get("server"), "PromptServer"):   # inside ComfyUI: main.py imports its server first
    from .nodes.server.routes import register_routes
    register_routes()
