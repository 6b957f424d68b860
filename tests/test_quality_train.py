"""The training script at a tiny size on the CPU: both phases run within the budget, and what it writes
loads through ComfyUI (the base as Wan 2.1, the LoRA with every key)."""
import json
import logging


def test_training_writes_a_checkpoint_and_lora_that_comfyui_loads(host, tmp_path, caplog):
    import comfy.lora
    import comfy.sd
    import comfy.utils
    from comfyui_fis.quality import model, train
    train.main(["--device", "cpu", "--minutes", "0.3", "--out", str(tmp_path), "--batch", "1", "--distil-batch", "1", "--layers", "2",
                "--frames", "3", "--substeps", "1", "--log-every", "1", "--preview", "1"])
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["base"]["steps"] > 1 and log["lora"]["steps"] >= 1
    assert log["total_seconds"] < 0.3 * 60 + 10
    assert (tmp_path / "loss_curve.png").stat().st_size > 0 and (tmp_path / "samples.png").stat().st_size > 0
    patcher = comfy.sd.load_diffusion_model(str(tmp_path / model.BASE_FILE))
    assert type(patcher.model).__name__ == "WAN21" and len(patcher.model.diffusion_model.blocks) == 2
    lora = comfy.utils.load_torch_file(str(tmp_path / model.LORA_FILE))
    with caplog.at_level(logging.WARNING):
        patches = comfy.lora.load_lora(lora, comfy.lora.model_lora_keys_unet(patcher.model, {}))
    assert "lora key not loaded" not in caplog.text and len(patches) == 2 * 10 + 2
