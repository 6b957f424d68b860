"""Write the example workflows in workflows/ (UI format, as the front end saves them) from the node definitions
of the ComfyUI host (found by ``host_path``). Run it after changing a workflow here:

    python scripts/make_workflows.py

tests/test_workflows_validate.py submits every workflow to the server's validation; the browser test checks that
the front end turns each into the same API prompt as ``workflow_api.to_api``.
"""
from __future__ import annotations

import asyncio
import json
import sys
import tempfile

from host_path import PACK_ROOT, find_comfyui
from workflow_api import extra_values, option_widgets, socket_inputs, widget_inputs

HF = "https://huggingface.co"
WAN22 = f"{HF}/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
WAN21 = f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
HY15 = f"{HF}/Comfy-Org/HunyuanVideo_1.5_repackaged/resolve/main/split_files"
SIGCLIP = f"{HF}/Comfy-Org/sigclip_vision_384/resolve/main"
#: Where each model file of the workflows comes from: file -> (models folder, download URL).
MODEL_FILES = {
    **{f"wan2.2_{kind}_{noise}_noise_14B_fp8_scaled.safetensors": "diffusion_models"
       for kind in ("t2v", "i2v") for noise in ("high", "low")},
    **{f"wan2.2_t2v_lightx2v_4steps_lora_v1.1_{noise}_noise.safetensors": "loras" for noise in ("high", "low")},
    **{f"wan2.2_i2v_lightx2v_4steps_lora_v1_{noise}_noise.safetensors": "loras" for noise in ("high", "low")},
    "wan2.2_ti2v_5B_fp16.safetensors": "diffusion_models",
    "wan_2.1_vae.safetensors": "vae",
    "wan2.2_vae.safetensors": "vae",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": "text_encoders",
    "hunyuanvideo1.5_480p_t2v_cfg_distilled_fp16.safetensors": "diffusion_models",
    "hunyuanvideo1.5_t2v_480p_lightx2v_4step_lora_rank_32_bf16.safetensors": "loras",
    "hunyuanvideo1.5_480p_i2v_step_distilled_fp16.safetensors": "diffusion_models",
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": "text_encoders",
    "byt5_small_glyphxl_fp16.safetensors": "text_encoders",
    "hunyuanvideo15_vae_fp16.safetensors": "vae",
    "sigclip_vision_patch14_384.safetensors": "clip_vision",
}


def model_url(name: str) -> str:
    folder = MODEL_FILES[name]
    if name.startswith("umt5"):
        return f"{WAN21}/{folder}/{name}"
    if name.startswith("wan"):
        return f"{WAN22}/{folder}/{name}"
    if name.startswith("sigclip"):
        return f"{SIGCLIP}/{name}"
    return f"{HY15}/{folder}/{name}"


NEGATIVE = ("blurry, low quality, worst quality, static, still frame, overexposed, washed out, jpeg artifacts, deformed, "
            "extra fingers, bad hands, bad face, watermark, subtitles, text")
FIS_DEFAULTS = {"quality": "balanced", "pattern": "interleave", "anchor_frames": "auto"}
#: The FIS node's property that names the layout of its saved widget values (web/fis_view.js, LAYOUT_PROPERTY).
FIS_LAYOUT = ("fis_widgets", 2)
FPS_DEFAULTS = {"precision": "fp8", "tile": "auto", "sparsity": 0.0, "pattern": "window", "dense_steps": "40-60"}
#: Loader widgets that name a model file.
FILE_WIDGETS = ("unet_name", "lora_name", "clip_name", "clip_name1", "clip_name2", "vae_name")


def default_value(spec):
    """A widget's default: its "default" option, else a list's (or a V3 COMBO's) first choice."""
    options = spec[1] if len(spec) > 1 else {}
    if "default" in options:
        return options["default"]
    choices = spec[0] if isinstance(spec[0], list) else options.get("options", [])
    if not choices:
        raise ValueError(f"no default for a widget of type {spec[0]!r}; give its value")
    return choices[0]


class Workflow:
    """A UI-format workflow under construction; ``node`` adds a node with its widget values and input links."""

    def __init__(self, definitions: dict):
        self.definitions = definitions
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def node(self, kind: str, pos, widgets: dict | None = None, *, title=None, size=None, control="fixed", **sources):
        """Add a ``kind`` node at ``pos``; ``widgets`` by name (others take their defaults), ``sources`` are
        ``input_name=(node, output_slot)``; ``control`` is the value of a seed's control_after_generate."""
        definition = self.definitions[kind]
        widgets = dict(widgets or {})
        values, files = [], []
        pending = widget_inputs(definition)
        while pending:
            name, spec = pending.pop(0)
            value = widgets.pop(name) if name in widgets else default_value(spec)
            values.append(value)
            pending[:0] = option_widgets(name, spec, value)
            if extra_values(spec):
                values.append(control if spec[1].get("control_after_generate") else "image")
            if name in FILE_WIDGETS:
                files.append(value)
        if widgets:
            raise KeyError(f"{kind} has no widgets {sorted(widgets)}")
        sockets = socket_inputs(definition)
        outputs = list(zip(definition["output_name"], definition["output"]))
        height = 36 + 22 * max(len(sockets), len(outputs)) + 24 * len(values)
        node = {
            "id": len(self.nodes) + 1, "type": kind, "pos": list(pos), "size": list(size or (320, height)),
            "flags": {}, "order": len(self.nodes), "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in sockets],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": kind},
            "widgets_values": values,
        }
        if files:
            node["properties"]["models"] = [{"name": f, "url": model_url(f), "directory": MODEL_FILES[f]} for f in files]
        if title:
            node["title"] = title
        self.nodes.append(node)
        for name, (source, slot) in sources.items():
            self.link(source, slot, node, name)
        return node

    def link(self, source: dict, slot: int, target: dict, input_name: str):
        target_slot = next(i for i, entry in enumerate(target["inputs"]) if entry["name"] == input_name)
        kind = source["outputs"][slot]["type"]
        link_id = len(self.links) + 1
        self.links.append([link_id, source["id"], slot, target["id"], target_slot, kind])
        source["outputs"][slot]["links"].append(link_id)
        target["inputs"][target_slot]["link"] = link_id

    def note(self, pos, size, text: str, title: str):
        self.nodes.append({"id": len(self.nodes) + 1, "type": "MarkdownNote", "pos": list(pos), "size": list(size),
                           "flags": {}, "order": len(self.nodes), "mode": 0, "inputs": [], "outputs": [],
                           "properties": {}, "widgets_values": [text], "title": title,
                           "color": "#432", "bgcolor": "#653"})

    def models_note(self, pos, extra: str = "", place: str = "between the model loader and the LoRA"):
        files = sorted({m["name"] for n in self.nodes for m in n["properties"].get("models", [])},
                       key=lambda f: (MODEL_FILES[f], f))
        rows = "\n".join(f"| `{MODEL_FILES[f]}` | [{f}]({model_url(f)}) |" for f in files)
        text = ("## Models\n\nThe official Comfy-Org repackaged files. Put each one in `ComfyUI/models/<folder>`:\n\n"
                f"| folder | file |\n| --- | --- |\n{rows}\n\n"
                f"## FIS\n\nThe **Frame Interleaved Sparsity (FIS)** node sits {place}. "
                "Its schedule view shows which blocks compute which latent frames and the estimated speed-up; "
                "`groups` 1 turns it off for a comparison." + (f"\n\n{extra}" if extra else ""))
        self.note(pos, (560, 520), text, "Models and notes")

    def save(self, name: str):
        data = {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {},
                "extra": {"ds": {"scale": 0.6, "offset": [160, 120]}}, "version": 0.4}
        path = PACK_ROOT / "workflows" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {path.relative_to(PACK_ROOT)}")


def fis(w: Workflow, pos, model, title="Frame Interleaved Sparsity (FIS)"):
    node = w.node("FrameInterleavedSparsity", pos, FIS_DEFAULTS, title=title, size=(420, 640), model=model)
    node["properties"][FIS_LAYOUT[0]] = FIS_LAYOUT[1]
    return node


def text_encoders(w: Workflow, clip, prompt: str, y=700):
    positive = w.node("CLIPTextEncode", (440, y), {"text": prompt}, title="Positive prompt", size=(420, 200), clip=(clip, 0))
    negative = w.node("CLIPTextEncode", (440, y + 240), {"text": NEGATIVE}, title="Negative prompt", size=(420, 160),
                      clip=(clip, 0))
    return positive, negative


def save_webp(w: Workflow, pos, images, prefix: str, fps: float):
    return w.node("SaveAnimatedWEBP", pos, {"filename_prefix": prefix, "fps": fps, "lossless": False, "quality": 90},
                  size=(420, 460), images=(images, 0))


def save_video(w: Workflow, pos, latent, vae, prefix: str, fps: float):
    decode = w.node("VAEDecode", pos, samples=(latent, 0), vae=(vae, 0))
    return save_webp(w, (pos[0], pos[1] + 120), decode, prefix, fps)


def fps_attention(w: Workflow, pos, model, title="FP8 + Sparse Attention (FPS)"):
    return w.node("FPSAttention", pos, FPS_DEFAULTS, title=title, size=(420, 230), model=model)


def wan22_a14b_inputs(w: Workflow, kind: str, prompt: str):
    """Text encoder, VAE and latent of Wan 2.2 A14B at 1280x720, 81 frames: the VAE and the (positive, negative,
    latent) sources of the samplers."""
    clip = w.node("CLIPLoader", (0, 1400), {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"})
    vae = w.node("VAELoader", (0, 1560), {"vae_name": "wan_2.1_vae.safetensors"})
    positive, negative = text_encoders(w, clip, prompt, y=1400)
    if kind == "t2v":
        latent = w.node("EmptyHunyuanLatentVideo", (900, 1400), {"width": 1280, "height": 720, "length": 81})
        return vae, ((positive, 0), (negative, 0), (latent, 0))
    image = w.node("LoadImage", (0, 1700), {"image": "example.png"}, size=(320, 360))
    latent = w.node("WanImageToVideo", (900, 1400), {"width": 1280, "height": 720, "length": 81},
                    positive=(positive, 0), negative=(negative, 0), vae=(vae, 0), start_image=(image, 0))
    return vae, ((latent, 0), (latent, 1), (latent, 2))


def wan22_a14b_samplers(w: Workflow, pos, experts, conditioning, control="randomize", label=""):
    """The high-noise expert samples steps 0-2 (seed 42), the low-noise one steps 2-4; returns the low one."""
    x, y = pos
    common = {"steps": 4, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple"}
    high = w.node("KSamplerAdvanced", (x, y), {**common, "add_noise": "enable", "noise_seed": 42, "start_at_step": 0,
                                               "end_at_step": 2, "return_with_leftover_noise": "enable"},
                  title=f"KSampler{label} (high-noise expert, steps 0-2)", control=control, size=(360, 340),
                  model=(experts[0], 0), positive=conditioning[0], negative=conditioning[1], latent_image=conditioning[2])
    return w.node("KSamplerAdvanced", (x, y + 700), {**common, "add_noise": "disable", "noise_seed": 0,
                                                     "start_at_step": 2, "end_at_step": 10000,
                                                     "return_with_leftover_noise": "disable"},
                  title=f"KSampler{label} (low-noise expert, steps 2-4)", size=(360, 340),
                  model=(experts[1], 0), positive=conditioning[0], negative=conditioning[1], latent_image=(high, 0))


def wan22_a14b(definitions, kind: str, prompt: str, fps: bool = False):
    """Wan 2.2 A14B, 4 steps with the lightx2v LoRAs: high-noise expert for steps 0-2, low-noise for 2-4, FIS on both
    (and with ``fps``, FPS attention after each FIS)."""
    w = Workflow(definitions)
    lora = "v1.1" if kind == "t2v" else "v1"
    experts = []
    for row, noise in enumerate(("high", "low")):
        y = row * 700
        loader = w.node("UNETLoader", (0, y), {"unet_name": f"wan2.2_{kind}_{noise}_noise_14B_fp8_scaled.safetensors"},
                        title=f"Load {noise}-noise expert")
        patched = fis(w, (340, y), (loader, 0), title=f"FIS ({noise}-noise expert)")
        lora_y = y
        if fps:
            patched = fps_attention(w, (780, y), (patched, 0), title=f"FPS ({noise}-noise expert)")
            lora_y = y + 270
        with_lora = w.node("LoraLoaderModelOnly", (780, lora_y),
                           {"lora_name": f"wan2.2_{kind}_lightx2v_4steps_lora_{lora}_{noise}_noise.safetensors",
                            "strength_model": 1.0}, model=(patched, 0))
        experts.append(w.node("ModelSamplingSD3", (780, lora_y + 140), {"shift": 5.0}, model=(with_lora, 0)))
    vae, conditioning = wan22_a14b_inputs(w, kind, prompt)
    low = wan22_a14b_samplers(w, (1240, 0), experts, conditioning)
    save_video(w, (1660, 0), low, vae, f"video/FIS_wan22_a14b_{kind}{'_fps' if fps else ''}", 16.0)
    extra = "" if kind == "t2v" else ("With a start image, FIS's `auto` anchors keep the given first latent frame "
                                      "computed in every block.")
    if fps:
        extra = ("**FPS** (FP8 + Sparse Attention) follows each FIS node and runs the video self-attention in FP8 "
                 "(exact in the middle of the schedule, `dense_steps` 40-60): with FIS about 4x per step on an H100. "
                 "It needs an Ada or Hopper GPU with Triton for its speed (elsewhere it runs a slow reference path and "
                 "says so in the log). Raise `sparsity` (0.5: about 5x with FIS) while comparing by eye.")
    w.models_note((1660, 700), extra)
    return w


def wan22_ti2v_5b(definitions):
    """Wan 2.2 TI2V-5B: text (and an optional start image) to 121 frames at 1280x704, 20 steps."""
    w = Workflow(definitions)
    loader = w.node("UNETLoader", (0, 0), {"unet_name": "wan2.2_ti2v_5B_fp16.safetensors"})
    patched = fis(w, (340, 0), (loader, 0))
    model = w.node("ModelSamplingSD3", (780, 0), {"shift": 8.0}, model=(patched, 0))
    clip = w.node("CLIPLoader", (0, 700), {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"})
    vae = w.node("VAELoader", (0, 860), {"vae_name": "wan2.2_vae.safetensors"})
    image = w.node("LoadImage", (0, 1000), {"image": "example.png"}, size=(320, 360))
    positive, negative = text_encoders(w, clip, "A red fox trots through fresh snow in a quiet birch forest at dawn, "
                                               "breath steaming, the camera tracking beside it at eye level.")
    latent = w.node("Wan22ImageToVideoLatent", (900, 700), {"width": 1280, "height": 704, "length": 121},
                    vae=(vae, 0), start_image=(image, 0))
    sampler = w.node("KSampler", (1240, 0), {"seed": 42, "steps": 20, "cfg": 5.0, "sampler_name": "uni_pc",
                                             "scheduler": "simple"}, control="randomize", size=(360, 300),
                     model=(model, 0), positive=(positive, 0), negative=(negative, 0), latent_image=(latent, 0))
    save_video(w, (1660, 0), sampler, vae, "video/FIS_wan22_ti2v_5b", 24.0)
    w.models_note((1660, 700), "121 frames are 31 latent frames. Disconnect the image for text-to-video; with it, "
                               "FIS's `auto` anchors keep the given first frame computed in every block.")
    return w


HUNYUAN15_NOTE = "81 frames are 21 latent frames; FIS counts the 54 double blocks."
HUNYUAN15_T2V_NOTE = (" HunyuanVideo 1.5 has no step-distilled T2V model: the lightx2v 4-step LoRA on the CFG-distilled "
                      "model makes it few-step.")


def hunyuan15_inputs(w: Workflow, kind: str):
    """Text encoders, VAE and latent of HunyuanVideo 1.5 at 848x480, 81 frames: the VAE and the (positive, negative,
    latent) sources of the sampler."""
    clip = w.node("DualCLIPLoader", (0, 700), {"clip_name1": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                                               "clip_name2": "byt5_small_glyphxl_fp16.safetensors",
                                               "type": "hunyuan_video_15"})
    vae = w.node("VAELoader", (0, 880), {"vae_name": "hunyuanvideo15_vae_fp16.safetensors"})
    prompt = ("A paper boat drifts down a rain-filled street gutter, carried past glowing shop windows; "
              "the camera follows it low to the water.")
    positive, negative = text_encoders(w, clip, prompt)
    size = {"width": 848, "height": 480, "length": 81}
    if kind == "t2v":
        latent = w.node("EmptyHunyuanVideo15Latent", (900, 700), size)
        return vae, ((positive, 0), (negative, 0), (latent, 0))
    image = w.node("LoadImage", (0, 1020), {"image": "example.png"}, size=(320, 360))
    vision = w.node("CLIPVisionLoader", (0, 1420), {"clip_name": "sigclip_vision_patch14_384.safetensors"})
    encoded = w.node("CLIPVisionEncode", (440, 1160), {"crop": "center"}, clip_vision=(vision, 0), image=(image, 0))
    latent = w.node("HunyuanVideo15ImageToVideo", (900, 700), size, positive=(positive, 0), negative=(negative, 0),
                    vae=(vae, 0), start_image=(image, 0), clip_vision_output=(encoded, 0))
    return vae, ((latent, 0), (latent, 1), (latent, 2))


def hunyuan15_sampler(w: Workflow, pos, model, conditioning, steps: int, control="randomize", title=None):
    return w.node("KSampler", pos, {"seed": 42, "steps": steps, "cfg": 1.0, "sampler_name": "euler",
                                    "scheduler": "simple"}, title=title, control=control, size=(360, 300),
                  model=(model, 0), positive=conditioning[0], negative=conditioning[1], latent_image=conditioning[2])


def hunyuan15(definitions, kind: str):
    """HunyuanVideo 1.5 at 480p, few steps: T2V with the lightx2v 4-step LoRA, I2V with the step-distilled model."""
    w = Workflow(definitions)
    if kind == "t2v":
        loader = w.node("UNETLoader", (0, 0), {"unet_name": "hunyuanvideo1.5_480p_t2v_cfg_distilled_fp16.safetensors"})
        patched = fis(w, (340, 0), (loader, 0))
        lora = w.node("LoraLoaderModelOnly", (780, 0), {
            "lora_name": "hunyuanvideo1.5_t2v_480p_lightx2v_4step_lora_rank_32_bf16.safetensors", "strength_model": 1.0},
            model=(patched, 0))
        model = w.node("ModelSamplingSD3", (780, 140), {"shift": 7.0}, model=(lora, 0))
        steps = 4
    else:
        loader = w.node("UNETLoader", (0, 0), {"unet_name": "hunyuanvideo1.5_480p_i2v_step_distilled_fp16.safetensors"})
        patched = fis(w, (340, 0), (loader, 0))
        model = w.node("ModelSamplingSD3", (780, 0), {"shift": 7.0}, model=(patched, 0))
        steps = 8
    vae, conditioning = hunyuan15_inputs(w, kind)
    sampler = hunyuan15_sampler(w, (1240, 0), model, conditioning, steps)
    save_video(w, (1660, 0), sampler, vae, f"video/FIS_hunyuanvideo15_{kind}", 24.0)
    note = HUNYUAN15_NOTE + (
        " The step-distilled I2V model is made for 8-12 steps; FIS's `auto` anchors keep the given first frame "
        "computed in every block." if kind == "i2v" else HUNYUAN15_T2V_NOTE)
    w.models_note((1660, 700), note)
    return w


#: Where FIS sits in the A/B workflows: after the LoRA, so that both branches share the LoRA-patched weights (no
#: re-patching when the samplers switch branch).
COMPARE_PLACE = "on the accelerated branch, after the LoRA and ModelSamplingSD3 that both branches share"
COMPARE_NOTE = ("## A/B: dense against FIS\n\nOne model, two branches: the reference (dense) and the accelerated one, "
                "sampled with the same seed (fixed at 42 on both: change both). An **FIS Timer** right before each "
                "branch's samplers times their denoising steps; **FIS Compare** shows PSNR, the worst frame, SSIM, the "
                "temporal error and the speed-up on the node and saves reference | accelerated | difference. The first "
                "run after starting ComfyUI includes warm-up: run twice for steady times.")


def timers(w: Workflow, pos, models, label: str):
    """An FIS Timer on each model of a branch, chained into one timing; returns them (model out: slot 0)."""
    out = []
    for i, model in enumerate(models):
        chained = {"timing": (out[-1], 1)} if out else {}
        out.append(w.node("FISTimer", (pos[0], pos[1] + 110 * i), title=f"FIS Timer ({label})", size=(320, 90),
                          model=(model, 0), **chained))
    return out


def compare_and_save(w: Workflow, pos, latents, vae, timings, prefix: str, fps: float):
    """Decode both branches, FIS Compare them, save the side-by-side."""
    x, y = pos
    decoded = [w.node("VAEDecode", (x, y + 110 * i), samples=(latent, 0), vae=(vae, 0)) for i, latent in enumerate(latents)]
    compare = w.node("FISCompare", (x + 360, y), size=(460, 420), reference=(decoded[0], 0), accelerated=(decoded[1], 0),
                     reference_timing=(timings[0], 1), accelerated_timing=(timings[1], 1))
    return save_webp(w, (x + 360, y + 460), compare, prefix, fps)


def wan22_a14b_compare(definitions, prompt: str):
    """Wan 2.2 A14B T2V, 4 steps: dense against FIS + FPS on both experts, same seed, with FIS Compare."""
    w = Workflow(definitions)
    experts = []
    for row, noise in enumerate(("high", "low")):
        y = row * 700
        loader = w.node("UNETLoader", (0, y), {"unet_name": f"wan2.2_t2v_{noise}_noise_14B_fp8_scaled.safetensors"},
                        title=f"Load {noise}-noise expert")
        with_lora = w.node("LoraLoaderModelOnly", (340, y),
                           {"lora_name": f"wan2.2_t2v_lightx2v_4steps_lora_v1.1_{noise}_noise.safetensors",
                            "strength_model": 1.0}, model=(loader, 0))
        experts.append(w.node("ModelSamplingSD3", (340, y + 140), {"shift": 5.0}, model=(with_lora, 0)))
    vae, conditioning = wan22_a14b_inputs(w, "t2v", prompt)
    dense = timers(w, (800, 0), experts, "dense")
    accelerated = [fps_attention(w, (1700 + 460 * row, 680), (fis(w, (1700 + 460 * row, 0), (expert, 0),
                                                                  title=f"FIS ({noise}-noise expert)"), 0),
                                 title=f"FPS ({noise}-noise expert)")
                   for row, (noise, expert) in enumerate(zip(("high", "low"), experts))]
    fast = timers(w, (2620, 0), accelerated, "FIS + FPS")
    latents = [wan22_a14b_samplers(w, (1240, 0), dense, conditioning, control="fixed", label=" dense"),
               wan22_a14b_samplers(w, (3000, 0), fast, conditioning, control="fixed", label=" FIS + FPS")]
    compare_and_save(w, (3420, 0), latents, vae, (dense[-1], fast[-1]), "video/FIS_compare_wan22_a14b_t2v", 16.0)
    w.models_note((4280, 0), COMPARE_NOTE, COMPARE_PLACE)
    return w


def hunyuan15_t2v_compare(definitions):
    """HunyuanVideo 1.5 480p T2V, 4 steps: dense against FIS, same seed, with FIS Compare."""
    w = Workflow(definitions)
    loader = w.node("UNETLoader", (0, 0), {"unet_name": "hunyuanvideo1.5_480p_t2v_cfg_distilled_fp16.safetensors"})
    lora = w.node("LoraLoaderModelOnly", (340, 0), {
        "lora_name": "hunyuanvideo1.5_t2v_480p_lightx2v_4step_lora_rank_32_bf16.safetensors", "strength_model": 1.0},
        model=(loader, 0))
    model = w.node("ModelSamplingSD3", (340, 140), {"shift": 7.0}, model=(lora, 0))
    vae, conditioning = hunyuan15_inputs(w, "t2v")
    dense = timers(w, (800, 0), [model], "dense")
    fast = timers(w, (2160, 0), [fis(w, (1700, 0), (model, 0))], "FIS")
    latents = [hunyuan15_sampler(w, (1240, 0), dense[0], conditioning, 4, control="fixed", title="KSampler dense"),
               hunyuan15_sampler(w, (2540, 0), fast[0], conditioning, 4, control="fixed", title="KSampler FIS")]
    compare_and_save(w, (2960, 0), latents, vae, (dense[0], fast[0]), "video/FIS_compare_hunyuanvideo15_t2v", 24.0)
    w.models_note((3820, 0), f"{HUNYUAN15_NOTE}{HUNYUAN15_T2V_NOTE}\n\n{COMPARE_NOTE}", COMPARE_PLACE)
    return w


TRAM_PROMPT = "A vintage red tram climbs a steep cobblestone street at sunset, passengers waving, the camera panning left."
WORKFLOWS = {
    "wan22_a14b_t2v_4step_fis": lambda d: wan22_a14b(d, "t2v", TRAM_PROMPT),
    "wan22_a14b_i2v_4step_fis": lambda d: wan22_a14b(d, "i2v", "The scene comes alive: a gentle breeze moves through "
                                                               "it and the camera slowly pushes in."),
    "wan22_a14b_t2v_4step_fis_fps": lambda d: wan22_a14b(d, "t2v", TRAM_PROMPT, fps=True),
    "wan22_ti2v_5b_fis": wan22_ti2v_5b,
    "hunyuanvideo15_t2v_4step_fis": lambda d: hunyuan15(d, "t2v"),
    "hunyuanvideo15_i2v_step_distilled_fis": lambda d: hunyuan15(d, "i2v"),
    "wan22_a14b_t2v_4step_compare": lambda d: wan22_a14b_compare(d, TRAM_PROMPT),
    "hunyuanvideo15_t2v_4step_compare": hunyuan15_t2v_compare,
}


def load_definitions() -> dict:
    """Node definitions of the host's built-in nodes and this pack's node."""
    host = find_comfyui()
    if host is None:
        raise SystemExit("No ComfyUI host found (set COMFYUI_PATH)")
    sys.path.insert(0, str(host))
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import folder_paths
    import nodes
    from workflow_api import node_definitions
    with tempfile.TemporaryDirectory() as scratch:  # some node definitions make folders in the input folder
        folder_paths.set_input_directory(scratch)
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        asyncio.run(nodes.load_custom_node(str(PACK_ROOT)))
        return node_definitions()


def main():
    definitions = load_definitions()
    for name, build in WORKFLOWS.items():
        build(definitions).save(name)


if __name__ == "__main__":
    main()
