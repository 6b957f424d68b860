"""The HTTP routes the schedule view asks: ``GET /fis/families`` (the families' usual models and the ``quality``
presets), ``GET /fis/model_info?folder=diffusion_models&name=<file>`` (:mod:`.model_files`), ``GET /fis/schedule``
(what the view draws for the node's widgets: :mod:`.schedule_view`) and ``GET /fis/profile?name=<profile>``
(:mod:`.profile_info`). Work that reads files runs off the event loop, so the server keeps answering.
"""
from __future__ import annotations

import asyncio

from .model_files import FOLDERS, HeaderError, model_info, usual_models


def register_routes():
    """Add ``GET /fis/families``, ``/fis/model_info``, ``/fis/schedule`` and ``/fis/profile`` to the running ComfyUI
    server (nothing when there is none)."""
    import server
    from aiohttp import web

    instance = getattr(server.PromptServer, "instance", None)
    if instance is None:
        return

    @instance.routes.get("/fis/families")
    async def get_families(request):
        from ..ui.fis_widgets import PRESETS
        return web.json_response({"usual_models": usual_models(), "presets": PRESETS})

    @instance.routes.get("/fis/schedule")
    async def get_schedule(request):
        from .profile_info import RequestError
        from .schedule_view import schedule_view
        try:
            return web.json_response(await asyncio.to_thread(schedule_view, dict(request.query)))
        except RequestError as error:
            return web.json_response({"error": str(error)}, status=error.status)

    @instance.routes.get("/fis/profile")
    async def get_profile(request):
        from .profile_info import RequestError, profile_info
        query = {key: request.query.get(key) for key in ("name", "count", "family", "blocks")}
        try:
            return web.json_response(await asyncio.to_thread(profile_info, query["name"] or "", query["count"],
                                                             query["family"], query["blocks"]))
        except RequestError as error:
            return web.json_response({"error": str(error)}, status=error.status)

    @instance.routes.get("/fis/model_info")
    async def get_model_info(request):
        import folder_paths
        folder, name = request.query.get("folder", ""), request.query.get("name", "")
        path = folder_paths.get_full_path(folder, name) if folder in FOLDERS else None
        if path is None or not path.endswith(".safetensors"):
            return web.json_response({"error": f"no safetensors file '{name}' in {folder or 'no folder'}"}, status=404)
        try:   # off the event loop: the server keeps answering while a large header is read
            info = await asyncio.to_thread(model_info, path)
        except Exception as error:  # any file the detection cannot make sense of
            return web.json_response({"error": f"cannot read {name}: {_reason(error)}"}, status=422)
        if info is None:
            return web.json_response({"error": f"{name} is not a model FIS supports"}, status=422)
        return web.json_response({**info, "name": name})


def _reason(error: Exception) -> str:
    """What went wrong, never an empty string: a HeaderError's own words, else the exception's type and message."""
    if isinstance(error, HeaderError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
