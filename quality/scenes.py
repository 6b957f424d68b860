"""Procedural training videos with real motion, made on the fly, and their scene descriptions.

A scene is two coloured shapes over a textured background, seen by a moving camera. The shapes move
in straight lines across the view and rotate (a shading across each shape makes the rotation of a
circle visible too); their paths cross near the middle of the clip, where the first shape occludes
the second. The camera pans or zooms over the background. Everything is drawn analytically with
anti-aliased edges, a batch at a time, on any device.

The description names, in this order, for each shape its colour, form and direction of motion, then
the background and the camera: eight words, e.g. ``"red square moving left, blue circle moving up,
checks background, camera pan-right"``. Positions, sizes, speeds, spins and background colours are
random and not described.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

FRAMES = 17
SIZE = 32

COLOURS = {
    "red": (0.92, 0.16, 0.14), "orange": (0.98, 0.55, 0.10), "yellow": (0.95, 0.88, 0.20),
    "green": (0.20, 0.78, 0.25), "cyan": (0.15, 0.85, 0.90), "blue": (0.18, 0.32, 0.95),
    "magenta": (0.88, 0.20, 0.85), "white": (0.96, 0.96, 0.96),
}
SHAPES = ("circle", "square", "triangle", "cross")
#: world directions; y grows downwards, as image rows do
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
BACKGROUNDS = ("stripes", "checks", "dots", "plain")
CAMERAS = ("static", "pan-left", "pan-right", "pan-up", "pan-down", "zoom-in", "zoom-out")

#: the words each of the eight description slots takes, in order
SLOTS = (tuple(COLOURS), SHAPES, tuple(DIRECTIONS), tuple(COLOURS), SHAPES, tuple(DIRECTIONS), BACKGROUNDS, CAMERAS)
TOKENS = len(SLOTS)


@dataclass(frozen=True)
class Scene:
    """The described part of a scene: two shapes (colour, form, direction), a background, a camera."""

    words: tuple[str, ...]

    def __post_init__(self):
        if len(self.words) != TOKENS or any(w not in slot for w, slot in zip(self.words, SLOTS)):
            raise ValueError(f"a scene is {TOKENS} words, one from each of {SLOTS}; got {self.words}")

    @property
    def description(self) -> str:
        c1, s1, d1, c2, s2, d2, background, camera = self.words
        return f"{c1} {s1} moving {d1}, {c2} {s2} moving {d2}, {background} background, camera {camera}"

    @property
    def indices(self) -> tuple[int, ...]:
        """Each word's index within its slot."""
        return tuple(slot.index(w) for w, slot in zip(self.words, SLOTS))

    @classmethod
    def parse(cls, description: str) -> "Scene":
        """The scene of a description as :attr:`description` writes it; other words are ignored."""
        vocabulary = set().union(*SLOTS)
        return cls(tuple(w for w in description.replace(",", " ").split() if w in vocabulary))


def random_scene(rng: random.Random) -> Scene:
    """A scene drawn as training draws them (two different colours), from a portable Python RNG."""
    c1, c2 = rng.sample(tuple(COLOURS), 2)
    return Scene((c1, rng.choice(SHAPES), rng.choice(tuple(DIRECTIONS)), c2, rng.choice(SHAPES),
                  rng.choice(tuple(DIRECTIONS)), rng.choice(BACKGROUNDS), rng.choice(CAMERAS)))


def random_indices(batch: int, generator: torch.Generator) -> torch.Tensor:
    """[batch, 8] slot indices of random scenes (two different colours), for training."""
    columns = [torch.randint(len(slot), (batch,), generator=generator) for slot in SLOTS]
    shift = torch.randint(1, len(COLOURS), (batch,), generator=generator)
    columns[3] = (columns[0] + shift) % len(COLOURS)
    return torch.stack(columns, dim=1)


def _uniform(generator, batch, low, high, *shape):
    return low + (high - low) * torch.rand(batch, *shape, generator=generator, device=generator.device)


def _box(q, half_x, half_y):
    d = q.abs() - torch.tensor([half_x, half_y], device=q.device)
    return d.clamp(min=0).norm(dim=-1) + d.amax(dim=-1).clamp(max=0)


def _shape_distance(q: torch.Tensor, form: torch.Tensor) -> torch.Tensor:
    """Signed distance (in shape units) of points ``q`` [..., 2] from the unit shape ``form`` [...]."""
    circle = q.norm(dim=-1) - 1.0
    square = _box(q, 0.85, 0.85)
    angles = torch.tensor([math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3], device=q.device)
    normals = torch.stack([angles.cos(), -angles.sin()], dim=-1)          # one vertex points up
    triangle = (q @ normals.T).amax(dim=-1) - 0.6
    cross = torch.minimum(_box(q, 1.0, 0.34), _box(q, 0.34, 1.0))
    return torch.stack([circle, square, triangle, cross], dim=-1).gather(-1, form.unsqueeze(-1)).squeeze(-1)


def render(indices: torch.Tensor, generator: torch.Generator, frames: int = FRAMES, size: int = SIZE,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """Videos [B, 3, frames, size, size] in [-1, 1] of the scenes ``indices`` [B, 8] (slot indices).

    ``generator`` (on the CPU or on ``device``) draws the undescribed parameters: positions, sizes, speeds,
    spins, background colours, scale and angle, camera speed.
    """
    b = indices.shape[0]
    g = generator
    idx = indices.to(device)
    colours = torch.tensor(list(COLOURS.values()), device=device)
    directions = torch.tensor(list(DIRECTIONS.values()), device=device)

    def rand(low, high, *shape):
        return _uniform(g, b, low, high, *shape).to(device)

    # time and camera: pans move the view centre, zooms scale the view, both centred on mid-clip
    tau = torch.linspace(-0.5, 0.5, frames, device=device).view(1, frames, 1, 1, 1)
    cam_dirs = torch.cat([torch.zeros(1, 2, device=device), directions, torch.zeros(2, 2, device=device)])
    pan = (cam_dirs[idx[:, 7]] * rand(0.4, 0.6, 1)).view(b, 1, 1, 1, 2)
    zoom_sign = torch.tensor([0, 0, 0, 0, 0, 1, -1], device=device, dtype=torch.float32)[idx[:, 7]]
    zoom = torch.exp(zoom_sign.view(b, 1, 1, 1, 1) * rand(0.35, 0.55, 1).view(b, 1, 1, 1, 1) * 2 * tau)
    pixels = (torch.arange(size, device=device) + 0.5) / size * 2 - 1
    screen = torch.stack(torch.meshgrid(pixels, pixels, indexing="xy"), dim=-1).view(1, 1, size, size, 2)
    world = pan * tau + screen / zoom                                        # [B, F, H, W, 2]
    px_per_unit = zoom.squeeze(-1) * size / 2                               # [B, F, 1, 1]

    # background: two muted colours in a pattern fixed to the world
    base = rand(0.25, 0.6, 1) + rand(-0.12, 0.12, 3)
    contrast = rand(0.15, 0.3, 1) * torch.where(base.mean(1, keepdim=True) > 0.42, -1.0, 1.0)
    colour_a, colour_b = base, base + contrast
    angle = rand(0, math.pi, 1)
    period = rand(0.3, 0.5, 1).view(b, 1, 1, 1)
    rot = torch.cat([angle.cos(), angle.sin(), -angle.sin(), angle.cos()], dim=1).view(b, 1, 1, 1, 2, 2)
    uv = (rot @ world.unsqueeze(-1)).squeeze(-1)
    u, v = uv[..., 0], uv[..., 1]
    stripes = 0.5 + 0.5 * torch.tanh(3 * torch.sin(2 * math.pi * u / period))
    checks = 0.5 + 0.5 * torch.tanh(6 * torch.sin(2 * math.pi * u / period) * torch.sin(2 * math.pi * v / period))
    cell = torch.stack([u / period - torch.round(u / period), v / period - torch.round(v / period)], -1)
    dots = (0.5 - (cell.norm(dim=-1) - 0.28) * period * px_per_unit).clamp(0, 1)
    plain = 0.5 + 0.5 * torch.tanh(1.2 * u)
    pattern = torch.stack([stripes, checks, dots, plain], dim=1)            # [B, 4, F, H, W]
    beta = pattern.gather(1, idx[:, 6].view(b, 1, 1, 1, 1).expand(b, 1, *pattern.shape[2:]))
    video = colour_a.view(b, 3, 1, 1, 1) * (1 - beta) + colour_b.view(b, 3, 1, 1, 1) * beta

    # shapes: the second is drawn first, the first over it; their paths cross near the middle
    middle = rand(-0.3, 0.3, 2)
    for colour_slot, form_slot, dir_slot, offset in ((3, 4, 5, rand(-0.3, 0.3, 2)), (0, 1, 2, 0.0)):
        centre0 = (middle + offset).view(b, 1, 1, 1, 2)
        travel = rand(0.7, 1.1, 1).view(b, 1, 1, 1, 1)
        centre = centre0 + directions[idx[:, dir_slot]].view(b, 1, 1, 1, 2) * travel * tau
        radius = rand(0.2, 0.3, 1).view(b, 1, 1, 1)
        spin = rand(1.5, 3.0, 1) * torch.where(rand(0, 1, 1) > 0.5, 1.0, -1.0)
        theta = (rand(0, 2 * math.pi, 1) .view(b, 1, 1, 1, 1) + spin.view(b, 1, 1, 1, 1) * tau).squeeze(-1)
        c, s = theta.cos(), theta.sin()
        d = world - centre
        local = torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], dim=-1) / radius.unsqueeze(-1)
        form = idx[:, form_slot].view(b, 1, 1, 1).expand(local.shape[:-1])
        distance_px = _shape_distance(local, form) * radius * px_per_unit
        alpha = (0.5 - distance_px).clamp(0, 1).unsqueeze(1)
        shade = 0.8 + 0.2 * local[..., 0].clamp(-1, 1).unsqueeze(1)
        colour = colours[idx[:, colour_slot]].view(b, 3, 1, 1, 1) * shade
        video = video * (1 - alpha) + colour * alpha
    return (video.clamp(0, 1) * 2 - 1).float()
