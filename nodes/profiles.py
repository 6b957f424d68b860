"""Calibration profiles: what FIS Calibrate measured on a model, kept as a small JSON file in ComfyUI's user directory
(``fis_profiles/NAME.json``) so that the FIS node can pick its sparse blocks from it in a later run.

A profile holds the model's ``family`` and number of ``blocks``, the sampling ``steps`` measured, ``defect_by_step``
(per step, per block: FIS's error in that block alone relative to the block's output, ``|fis(x) - y| / |y|``, or
null where not measured; see :mod:`.calibration`), ``defect`` (per block, its mean over the measured steps) and
``anchors`` (the latent frames FIS's ``auto`` anchors kept in every block of the run: ``[0]`` for image-to-video).
Profiles written before 2026-12-05 have no ``anchors`` (and those before 2026-12-04 were measured without them).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path

from ..fis_core.widget_text import quoted

PROFILE_DIR = "fis_profiles"
#: The largest profile file read: a profile of 100 blocks and 200 steps has about 500 kB.
MAX_PROFILE_BYTES = 2_000_000
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
LOG = logging.getLogger("ComfyUI-FIS")
#: the paths of the profiles without ``anchors`` already warned of, to warn once per profile and server run
_WARNED_WITHOUT_ANCHORS: set = set()


def check_name(name: str, widget: str) -> str:
    """``name`` if it is a valid profile name (a file name on every system: letters, digits, - and _)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{widget}: {quoted(name)} is not a profile name; use 1-64 letters, digits, '-' and '_', "
                         f"e.g. 'wan14b_720p'")
    return name


def profile_path(name: str, widget: str) -> Path:
    import folder_paths  # the host's; here, so that the module imports without it
    return Path(folder_paths.get_user_directory()) / PROFILE_DIR / f"{check_name(name, widget)}.json"


def profile_fingerprint(name: str) -> str:
    """What changes when profile ``name``'s file does: a hash of its content ("" when there is no such file or name),
    for the host's change detection (``IS_CHANGED``), so that a recalibrated profile makes the FIS node run again."""
    try:
        with open(profile_path(name, "sparse_blocks"), "rb") as file:
            return hashlib.sha256(file.read(MAX_PROFILE_BYTES + 1)).hexdigest()
    except (ValueError, OSError):   # the node's own check says what is wrong when it runs
        return ""


def save_profile(name: str, profile: dict, widget: str = "profile_name") -> Path:
    """Write profile ``name`` whole or not at all: into a temporary file beside it, renamed into place, so that a
    failed write (a full disk, the process stopped) leaves the earlier profile, never part of one."""
    path = profile_path(name, widget)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(profile, indent=1, allow_nan=False))   # NaN is no JSON: the view could not read it
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def load_profile(name: str, widget: str) -> dict:
    """The profile ``name``; a ValueError names ``widget`` when it is missing or not a profile."""
    path = profile_path(name, widget)
    if not path.is_file():
        raise ValueError(f"{widget}: there is no profile {quoted(name)} ({path} does not exist); run a FIS Calibrate "
                         f"node with profile_name '{name}' on this model first")
    size = path.stat().st_size
    if size > MAX_PROFILE_BYTES:
        raise ValueError(f"{widget}: {path} has {size} bytes, more than the {MAX_PROFILE_BYTES // 10**6} MB a FIS "
                         f"profile may have; calibrate again with profile_name '{name}'")
    try:
        profile = json.loads(path.read_text())
    except ValueError as error:   # not JSON, not UTF-8
        problem = f"not JSON: {str(error)[:80]}"
    except RecursionError:        # JSON nested deeper than Python recurses: refused by the parser, at once
        problem = "nested too deeply"
    else:
        problem = profile_problem(profile)
    if problem:
        raise ValueError(f"{widget}: {path} is not a FIS profile ({problem}); calibrate again with profile_name "
                         f"'{name}'")
    if "anchors" not in profile and path not in _WARNED_WITHOUT_ANCHORS:
        _WARNED_WITHOUT_ANCHORS.add(path)
        LOG.warning("FIS: profile '%s' was written by an earlier ComfyUI-FIS, which may have measured an image-to-video "
                    "model as if FIS skipped its given first frame (FIS never does); for an image-to-video model, "
                    "calibrate again with profile_name '%s' (text-to-video profiles are unaffected)", name, name)
    return profile


def profile_problem(profile) -> str | None:
    """Why parsed JSON is not a profile the node and the view can use (its values are checked: JSON numbers may be
    NaN or infinite, a boolean is no number), or None."""
    if not isinstance(profile, dict):
        return f"a JSON {type(profile).__name__}, not an object"
    if not isinstance(profile.get("family"), str):
        return "no model 'family'"
    blocks, defect, steps = profile.get("blocks"), profile.get("defect"), profile.get("steps")
    if type(blocks) is not int:
        return f"'blocks' is a {type(blocks).__name__}, not a number of blocks"
    if not isinstance(defect, list) or len(defect) != blocks:
        return f"'defect' is not a list of {blocks} defects, one per block"
    for block, value in enumerate(defect):
        if value is not None and type(value) not in (int, float):
            return f"the defect of block {block} is a {type(value).__name__}, not a number"
        if value is not None and not math.isfinite(value):
            return f"the defect of block {block} is NaN or infinite, not a finite number"
    if steps is not None and type(steps) is not int:
        return f"'steps' is a {type(steps).__name__}, not a number of steps"
    return None


def least_defect_blocks(profile: dict, count: int) -> tuple[int, ...]:
    """The ``count`` blocks of least mean defect (the lower block on a tie; blocks never measured last), in order."""
    defect = profile["defect"]
    ranked = sorted(range(len(defect)), key=lambda b: (math.inf if defect[b] is None else defect[b], b))
    return tuple(sorted(ranked[:count]))
