"""A model's shape (its clips and its WanModel's width and depth) is a setting of the lab, recorded in the checkpoint's
metadata by the training script and read back by the evaluator, which samples and counts at that size; and the
Wan-shaped model's study (``quality.wan_shaped``) measures what its time allows, listing the rest as skipped."""
import json
import time

import pytest
import torch

from comfyui_fis.quality import model


def test_every_named_shape_round_trips_through_the_metadata_and_the_shipped_checkpoint_records_its_own():
    for name, shape in model.SHAPES.items():
        assert shape.name == name and model.Shape.from_metadata(json.loads(json.dumps(shape.metadata()))) == shape
    assert model.read_shape(model.MODELS_DIR / model.BASE_FILE) == model.SHIPPED
    assert model.SHIPPED.config == model.CONFIG == dict(dim=256, ffn_dim=512, num_heads=2, num_layers=8, in_dim=16, out_dim=16)
    wan = model.SHAPES["wan-shaped"]
    assert (wan.frames, wan.latent_size // 2, wan.config["num_heads"], wan.num_layers) == (21, 16, 4, 16)


@pytest.mark.parametrize("fields, words", [({"dim": 200}, "multiple of 128"), ({"size": 30}, "multiple of 4"),
                                           ({"frames": 0}, "positive")])
def test_a_shape_the_host_cannot_load_is_refused_at_once(fields, words):
    shipped = dict(frames=17, size=32, dim=256, ffn_dim=512, num_layers=8)
    assert model.Shape(**shipped) == model.SHIPPED
    with pytest.raises(ValueError, match=words):
        model.Shape(**{**shipped, **fields})


def test_a_file_without_the_shape_says_it_was_not_written_by_the_training_script(tmp_path):
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not written by quality.train"):
        model.read_shape(tmp_path / "other.safetensors")


TINY = model.SHAPES["wan-shaped-tiny"]


@pytest.fixture(scope="module")
def tiny_checkpoint(host, tmp_path_factory):
    """A wan-shaped-tiny model trained for a few seconds (9 frames of 64x64, dim 128, 3 blocks) with its LoRA."""
    from comfyui_fis.quality import train
    out = tmp_path_factory.mktemp("tiny")
    train.main(["--device", "cpu", "--minutes", "0.15", "--out", str(out), "--shape", "wan-shaped-tiny", "--batch", "1",
                "--distil-batch", "1", "--substeps", "1", "--log-every", "1", "--preview", "1"])
    return out


def test_the_shape_goes_from_training_through_the_checkpoint_into_the_evaluator(tiny_checkpoint):
    """The evaluator samples at the checkpoint's size and counts its tokens: a dense run saves exactly nothing (with the
    shipped shape assumed, 17 frames of 8x8 tokens, it would sample clips the model was not trained on and count
    another dense run)."""
    from comfyui_fis.quality import evaluate, host
    assert model.read_shape(tiny_checkpoint / model.BASE_FILE) == TINY
    assert json.loads((tiny_checkpoint / "train_log.json").read_text())["shape"] == "wan-shaped-tiny"
    runner = evaluate.Runner(4, evaluate.prompts(1), tiny_checkpoint)
    assert runner.shape == host.shape_of(host.with_fis(runner.model)) == TINY        # clones carry it
    assert model.config_of(runner.model.model.diffusion_model) == TINY.config
    assert runner.dense[0].shape == (1, 3, TINY.frames, TINY.size, TINY.size)
    with host.count_block_work(runner.model) as work:
        runner.clips(runner.model)
    assert work.tokens == evaluate.dense_block_work(runner.model, 4)[1] == 4 * 3 * TINY.frames * 16 ** 2
    assert evaluate.savings(runner.model, work, 1, 4) == {"compute_saved": 0.0, "tokens_skipped": 0.0}
    balanced = runner.measure(evaluate.FIS_DEFAULT)
    assert balanced["blocks"] == [1] and 0 < balanced["tokens_skipped"] < 1 / 3


def test_a_checkpoint_whose_metadata_disagrees_with_its_weights_is_refused(tiny_checkpoint, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from comfyui_fis.quality import host
    shutil.copy(tiny_checkpoint / model.LORA_FILE, tmp_path / model.LORA_FILE)
    claimed = model.Shape(frames=9, size=64, dim=128, ffn_dim=256, num_layers=4)
    save_file(load_file(str(tiny_checkpoint / model.BASE_FILE)), str(tmp_path / model.BASE_FILE),
              metadata={model.METADATA_KEY: json.dumps(claimed.metadata())})
    with pytest.raises(ValueError, match="its metadata records the model .*'num_layers': 4.*its weights are .*'num_layers': 3"):
        host.load_model(4, tmp_path)


def test_the_wan_shaped_study_puts_first_what_matters_most_and_measures_each_thing_once():
    from comfyui_fis.quality import evaluate, wan_shaped
    names = [wan_shaped.item_name(item) for item in wan_shaped.study_items(16)]
    assert len(names) == len(set(names))
    assert names[:3] == [evaluate.FIS_DEFAULT.name, "FIS G=3", "FIS G=3, every block"]
    for name in (evaluate.FIS_FASTEST.name, evaluate.FIS_FAITHFUL.name, "FIS G=4", "EasyCache 0.5", "EasyCache 0.05",
                 wan_shaped.ANOTHER_SEED):
        assert name in names
    assert names.index("FIS G=4") < names.index("EasyCache 0.5") < names.index("EasyCache 0.05")
    assert names[-1] == wan_shaped.FIT_ERRORS


def test_the_study_measures_while_time_is_left_and_lists_the_rest_as_skipped(tiny_checkpoint, tmp_path):
    from comfyui_fis.quality import evaluate, host, wan_shaped
    log = host.boot_study()
    sets = {"1 prompt": (1, None), "1 unseen prompt": (1, 12)}
    study = wan_shaped.Study(tiny_checkpoint, tmp_path, time.monotonic() + 600, sets, log, {})
    study.run([evaluate.FIS_DEFAULT, wan_shaped.ANOTHER_SEED], 2)
    study.deadline = time.monotonic()                          # time is up: nothing more is measured
    study.run([evaluate.FIS_FASTEST, evaluate.EASYCACHE_SETTINGS[0]], 2)
    results = json.loads((tmp_path / "wan_shaped_study.json").read_text())
    assert results["shape"] == TINY.metadata() and not results["errors"]
    assert results["skipped"] == [evaluate.FIS_FASTEST.name, evaluate.EASYCACHE_SETTINGS[0].name]
    for entry in results["sets"].values():
        rows = entry["steps"]["4"]["settings"]
        assert [row["name"] for row in rows] == [evaluate.FIS_DEFAULT.name] and "another_seed" in entry["steps"]["4"]
        assert len(entry["prompts"]) == 1 and rows[0]["compute_saved"] > 0
    assert (tmp_path / "wan_shaped_front.png").stat().st_size > 0
    assert evaluate.FIS_DEFAULT.name in (tmp_path / "wan_shaped_tables.md").read_text()


def test_a_host_that_cannot_run_the_study_is_named_before_any_training(host, monkeypatch):
    from comfyui_fis.quality import wan_shaped
    wan_shaped.check_host()                                    # this host has all of it
    monkeypatch.setattr(wan_shaped, "HOST_MODULES", wan_shaped.HOST_MODULES + ("comfy_extras.no_such_node",))
    with pytest.raises(SystemExit, match="nothing was trained.*comfy_extras.no_such_node: ModuleNotFoundError"):
        wan_shaped.check_host()


def test_the_lab_rows_and_probes_of_the_wan_shaped_study_run_at_its_shape(tiny_checkpoint, tmp_path):
    """Every row of ``quality.fit_study`` the Wan-shaped study measures (the lab's mechanisms, overrides and probes)
    and its dense-run errors run at another shape (9 frames of 16x16 tokens, one 128-channel map) without an error, so
    the GPU call spends no time on a failure; the probes come first among them."""
    from comfyui_fis.quality import fit_study, host, wan_shaped
    lab = [item for item in wan_shaped.study_items(TINY.num_layers) if isinstance(item, fit_study.Candidate)]
    assert {item.name for item in fit_study.CONFIRM} - {item.name for item in lab} <= {
        "G=2, auto blocks (balanced)", "G=2, every block (fastest)", "G=3, auto blocks", "G=3, every block"}
    probes = [i for i, item in enumerate(lab) if wan_shaped.item_kind(item) == "probe"]
    other_lab = [c.name for c in lab].index("G=3, every block, per-distance maps, both distances")
    assert len(probes) == 3 and max(probes) < other_lab          # the probes first among the lab's own rows
    log = host.boot_study()
    study = wan_shaped.Study(tiny_checkpoint, tmp_path, time.monotonic() + 600, {"1 prompt": (1, None)}, log, {})
    study.run([*lab, wan_shaped.FIT_ERRORS], 1)
    results = json.loads((tmp_path / "wan_shaped_study.json").read_text())
    assert not results["errors"] and not results["skipped"]
    assert len(results["sets"]["1 prompt"]["steps"]["4"]["settings"]) == len(lab)
    assert set(results["own_residual_error"]) == {"G=2, age 1", "G=3, age 1", "G=3, age 2"}
