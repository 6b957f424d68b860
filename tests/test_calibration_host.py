"""FIS Calibrate on real ComfyUI models (a tiny Wan and a tiny HunyuanVideo 1.5, sampled on the CPU): the run stays
dense bit for bit, it writes a profile whose defect is the error FIS makes in a block, the FIS node applies the
profile's blocks, and bad names, missing profiles and profiles of another model stop the node naming the widget."""
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from tiny_models import (FAMILIES, block_output_recorder, fis, record_attention_tokens, relative_error, sample, text,
                         tiny_wan, wan_attention, wan_latent)

CALIBRATED = {f.name: f for f in FAMILIES if f.name in ("wan", "hunyuan_video_15")}
STEPS = 3


@contextmanager
def user_directory(path):
    """ComfyUI's user directory set to ``path`` for a while."""
    import folder_paths
    earlier = folder_paths.get_user_directory()
    folder_paths.set_user_directory(str(path))
    try:
        yield Path(path)
    finally:
        folder_paths.set_user_directory(earlier)


@pytest.fixture
def user_dir(host, tmp_path):
    """A fresh user directory for the test."""
    with user_directory(tmp_path) as path:
        yield path


def calibrate(model, name):
    from comfyui_fis.nodes import FISCalibrate
    return FISCalibrate().calibrate(model, name)[0]


def sparse_blocks_of(model):
    """The blocks the FIS node made sparse, by their position in the model's block keys."""
    from comfyui_fis.nodes.patcher import SparseBlockPatch, model_block_keys
    _, keys = model_block_keys(model)
    dit = model.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    return tuple(i for i, key in enumerate(keys) if isinstance(dit.get(key), SparseBlockPatch))


@pytest.fixture(scope="module", params=sorted(CALIBRATED))
def calibrated_run(request, host, tmp_path_factory):
    """One calibration run (CFG 3) per family: (family, model, user directory, the profile it wrote, the output)."""
    family = CALIBRATED[request.param]
    model = family.build()
    directory = tmp_path_factory.mktemp("user")
    with user_directory(directory):
        out = sample(calibrate(model, f"tiny_{family.name}"), family.latent(9), family.cond(), steps=STEPS, cfg=3.0)
    profile = json.loads((directory / "fis_profiles" / f"tiny_{family.name}.json").read_text())
    return family, model, directory, profile, out


def test_the_calibrated_run_is_the_dense_run(calibrated_run):
    family, model, _, _, out = calibrated_run
    assert torch.equal(out, sample(model, family.latent(9), family.cond(), steps=STEPS, cfg=3.0))


def test_the_profile_holds_a_defect_per_block_and_step(calibrated_run):
    family, _, _, profile, _ = calibrated_run
    assert profile["family"] == ("wan" if family.name == "wan" else "hunyuan_video")
    assert profile["blocks"] == 6 and profile["steps"] == STEPS
    assert len(profile["defect_by_step"]) == STEPS
    for row in profile["defect_by_step"]:
        assert len(row) == 6 and all(0.0 < d < 10.0 for d in row)
    for block, mean in enumerate(profile["defect"]):
        assert mean == pytest.approx(sum(row[block] for row in profile["defect_by_step"]) / STEPS)
    assert len(set(profile["defect"])) == 6   # the blocks differ, so the choice means something


def test_the_fis_node_applies_the_profiles_blocks(calibrated_run):
    family, model, directory, profile, _ = calibrated_run
    ranked = sorted(range(6), key=lambda b: profile["defect"][b])
    with user_directory(directory):
        chosen = fis(model, sparse_blocks=f"profile:tiny_{family.name}")
        assert sparse_blocks_of(chosen) == tuple(sorted(ranked[:4]))   # as many as auto (all but 2)
        assert sparse_blocks_of(fis(model, sparse_blocks=f" profile:tiny_{family.name}:2 ")) == tuple(sorted(ranked[:2]))
        assert sparse_blocks_of(fis(model, sparse_blocks=f"profile:tiny_{family.name}:0")) == ()
        out = sample(chosen, family.latent(9), family.cond(), steps=1)
    assert torch.isfinite(out).all()
    assert not torch.equal(out, sample(model, family.latent(9), family.cond(), steps=1))


@pytest.mark.parametrize("block", [0, 2])
def test_the_defect_is_the_error_fis_makes_in_that_block(user_dir, block):
    """At the first step a block's defect is the relative error of its output when the FIS node makes it (alone)
    sparse, against its dense output: the computed frames' error and the interpolation's (blocks 0 and 2 compute
    group 0 there, as the calibration has them)."""
    wan, latent, cond = tiny_wan(num_layers=6), FAMILIES[0].latent(9), FAMILIES[0].cond()
    sample(calibrate(wan, "first_step"), latent, cond, steps=1)
    defect = json.loads((user_dir / "fis_profiles" / "first_step.json").read_text())["defect_by_step"][0][block]
    outputs = []
    for model in (wan, fis(wan, quality="custom", sparse_blocks=str(block))):
        recorded, record = block_output_recorder(model)
        sample(recorded, latent, cond, steps=1)
        outputs.append(record[0][block])
    assert defect == pytest.approx(relative_error(outputs[1], outputs[0]), rel=1e-4)
    assert defect > 0.01


def test_image_to_video_is_measured_with_the_first_frame_computed_as_fis_runs_it(user_dir):
    """FIS's ``auto`` anchors keep an image-to-video first frame in every sparse block; the calibration's second run
    of each block computes it too (a block never skips it, so its defect must not count skipping it)."""
    model = tiny_wan(in_dim=36, num_layers=4)
    mask = torch.ones(1, 1, 9, 8, 8)
    mask[:, :, 0] = 0.0   # ComfyUI's WanImageToVideo: 0 where a frame is given
    positive = text(concat_latent_image=torch.randn(1, 16, 9, 8, 8), concat_mask=mask)
    with record_attention_tokens(wan_attention(model)) as calls:
        sample(calibrate(model, "i2v"), wan_latent(9), positive, steps=2)
    subsets = [s for _, _, s in calls if s is not None]
    assert subsets == [(0, 2, 4, 6, 8), (0, 1, 3, 5, 7)] * 2 + [(0, 1, 3, 5, 7), (0, 2, 4, 6, 8)] * 2   # step 2 rotated
    profile = json.loads((user_dir / "fis_profiles" / "i2v.json").read_text())
    assert profile["steps"] == 2 and profile["anchors"] == [0]


def test_a_profile_from_before_the_anchors_warns_once(user_dir, caplog):
    """A profile without ``anchors`` was measured by a version that counted skipping an image-to-video first frame:
    the node still takes it (text-to-video profiles are right), and says once that an I2V model needs calibrating
    again."""
    sample(calibrate(tiny_wan(num_layers=4), "t2v"), FAMILIES[0].latent(5), FAMILIES[0].cond(), steps=1)
    path = user_dir / "fis_profiles" / "t2v.json"
    profile = json.loads(path.read_text())
    assert profile["anchors"] == []
    del profile["anchors"]
    path.write_text(json.dumps(profile))
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        first = sparse_blocks_of(fis(tiny_wan(num_layers=4), sparse_blocks="profile:t2v"))
        second = sparse_blocks_of(fis(tiny_wan(num_layers=4), sparse_blocks="profile:t2v"))
    assert first == second and len(first) == 2
    assert caplog.text.count("profile 't2v' was written by an earlier ComfyUI-FIS") == 1
    assert "calibrate again with profile_name 't2v'" in caplog.text


@pytest.mark.parametrize("name", ["", "../escape", "a b", "wan/14b", "x" * 65, "ünï"])
def test_a_bad_profile_name_names_the_widget(host, name):
    with pytest.raises(ValueError, match="^profile_name: .* is not a profile name; use 1-64 letters, digits"):
        calibrate(tiny_wan(num_layers=4), name)
    with pytest.raises(ValueError, match="^sparse_blocks: .* is not a profile name"):
        fis(tiny_wan(num_layers=4), sparse_blocks=f"profile:{name}")


class NotAVideoModel:
    """A ModelPatcher's face over a model no family takes."""

    def clone(self):
        return self

    def get_model_object(self, name):
        return torch.nn.Linear(1, 1)


def test_a_model_fis_does_not_support_cannot_be_calibrated(host):
    model = NotAVideoModel()
    with pytest.raises(ValueError, match="^model: Linear is not a model FIS supports"):
        calibrate(model, "x")


def test_missing_profile_names_the_widget(user_dir):
    with pytest.raises(ValueError, match="^sparse_blocks: there is no profile 'nope' .*run a FIS Calibrate node with "
                                         "profile_name 'nope'"):
        fis(tiny_wan(num_layers=4), sparse_blocks="profile:nope")


def test_a_broken_profile_file_names_the_widget(user_dir):
    (user_dir / "fis_profiles").mkdir()
    (user_dir / "fis_profiles" / "broken.json").write_text("{\"family\": \"wan\"")
    with pytest.raises(ValueError, match="^sparse_blocks: .*broken.json is not a FIS profile"):
        fis(tiny_wan(num_layers=4), sparse_blocks="profile:broken")


def test_a_profile_of_another_model_names_the_widget(user_dir):
    sample(calibrate(tiny_wan(num_layers=6), "six"), FAMILIES[0].latent(5), FAMILIES[0].cond(), steps=1)
    with pytest.raises(ValueError, match="^sparse_blocks: profile 'six' was measured on a wan model of 6 blocks, and "
                                         "this is a wan model of 4 blocks; calibrate this model"):
        fis(tiny_wan(num_layers=4), sparse_blocks="profile:six")
    with pytest.raises(ValueError, match="^sparse_blocks: 7 sparse blocks is out of range; expected 'profile:six:K'"):
        fis(tiny_wan(num_layers=6), sparse_blocks="profile:six:7")
    with pytest.raises(ValueError, match="^sparse_blocks: 'two' is not a number"):
        fis(tiny_wan(num_layers=6), sparse_blocks="profile:six:two")


def test_a_run_on_one_frame_writes_no_profile(user_dir, caplog):
    sample(calibrate(tiny_wan(num_layers=4), "one"), FAMILIES[0].latent(1), FAMILIES[0].cond(), steps=1)
    assert not (user_dir / "fis_profiles" / "one.json").exists()
    assert "nothing to measure; profile 'one' not written" in caplog.text


def test_a_non_finite_defect_is_said_and_writes_no_profile(user_dir, caplog):
    """A model whose block 3 gives NaN (a bad LoRA: a weight patch of NaN, applied by ComfyUI's own patcher) measures
    a NaN defect there and after: the log says so and names the blocks, and neither a new profile nor NaN (no JSON)
    is written; an earlier profile of that name is left as it was."""
    path = user_dir / "fis_profiles" / "bad_lora.json"
    path.parent.mkdir()
    path.write_text("earlier")
    model = tiny_wan(num_layers=6).clone()
    weight = model.model.diffusion_model.blocks[3].ffn[2].weight
    model.add_patches({"diffusion_model.blocks.3.ffn.2.weight": (torch.full_like(weight, float("nan")),)}, 1.0)
    with caplog.at_level(logging.WARNING, logger="ComfyUI-FIS"):
        out = sample(calibrate(model, "bad_lora"), FAMILIES[0].latent(5), FAMILIES[0].cond(), steps=1)
    assert out.isnan().any()
    assert path.read_text() == "earlier"
    assert "FIS Calibrate: the defect measured in blocks 3-5 is NaN or infinite" in caplog.text, caplog.text
    assert "profile 'bad_lora' not written" in caplog.text


@contextmanager
def file_size_limit(size: int):
    """Writes past ``size`` bytes fail (EFBIG), as on a full disk, for a while in this process."""
    import resource
    import signal
    earlier = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # fail the write instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, earlier[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, earlier)
        signal.signal(signal.SIGXFSZ, handler)


def test_a_failed_write_keeps_the_earlier_profile(user_dir):
    """The profile is written whole or not at all: a write that fails part-way (here past a file size limit) leaves
    the earlier profile as it was and no temporary file."""
    from comfyui_fis.nodes.profiles import load_profile, save_profile
    earlier = {"family": "wan", "blocks": 2, "steps": 1, "defect": [0.1, 0.2], "anchors": []}
    path = save_profile("kept", earlier)
    written = path.read_bytes()
    larger = {**earlier, "steps": 400, "defect_by_step": [[0.123456789, 0.2]] * 400}
    with file_size_limit(4096), pytest.raises(OSError, match="File too large"):
        save_profile("kept", larger)
    assert path.read_bytes() == written and load_profile("kept", "sparse_blocks") == earlier
    assert sorted(p.name for p in path.parent.iterdir()) == ["kept.json"]
