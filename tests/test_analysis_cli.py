"""`wave-lightning analyze`: every file for wRNN, LocalRNN and IRNN checkpoints of real runs."""

import json
from pathlib import Path

import pytest
from PIL import Image

from wave_lightning.cli import main

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = [
    "--trainer.max_steps", "2", "--trainer.accelerator", "cpu", "--test_after_fit", "false",
    "--data.delay", "6", "--data.memory_length", "2", "--data.batch_size", "8",
    "--data.train_batches", "2", "--data.val_size", "8", "--data.test_size", "8",
]  # fmt: skip
RINGS = ["--model.layer.init_args.n_hid", "12", "--model.layer.init_args.n_ch", "2"]
LAYERS = {
    "wrnn": ("WaveRNN", RINGS),
    "local": ("LocalRNN", RINGS),
    "irnn": ("IRNN", ["--model.layer.init_args.hidden_size", "16"]),
}
FILES = ["fft.png", "measures.json", "rings.gif", "spacetime.png"]


def tiny_run(tmp_path: Path, model: str) -> Path:
    """Fit a tiny copy-task run of conf/model/<model>.yaml; its last.ckpt."""
    run = tmp_path / model
    data, layer = str(CONF / "data/copy.yaml"), str(CONF / f"model/{model}.yaml")
    root = ["--trainer.default_root_dir", str(run)]
    main(["fit", "--config", data, "--config", layer, *TINY, *LAYERS[model][1], *root])
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.slow
@pytest.mark.parametrize("model", list(LAYERS))
def test_analyze_writes_every_file_for_each_layer_kind(tmp_path, model, capsys):
    ckpt = tiny_run(tmp_path, model)
    main(["analyze", "--ckpt", str(ckpt), "--examples", "4", "--onset-examples", "64"])
    out = ckpt.parents[1] / "analysis" / "last"
    assert sorted(p.name for p in out.iterdir()) == FILES
    measures = json.loads((out / "measures.json").read_text())
    kind, rings = LAYERS[model][0], (1 if model == "irnn" else 2)
    units = 16 if model == "irnn" else 12
    assert (measures["layer"], measures["inputs"], measures["rings"]) == (kind, "data", rings)
    assert (measures["examples"], measures["steps"], measures["units"]) == (4, 10, units)
    assert len(measures["per_ring"]) == rings
    assert measures["onset"]["max_delay"] == units
    with Image.open(out / "rings.gif") as gif:
        assert gif.n_frames == 10
    assert kind in capsys.readouterr().out


@pytest.mark.slow
def test_analyze_with_impulses_needs_no_config_and_measures_the_shift_wave(tmp_path):
    ckpt = tiny_run(tmp_path, "wrnn")
    (ckpt.parents[1] / "config.yaml").unlink()
    out = tmp_path / "out"
    args = ["--ckpt", str(ckpt), "--out", str(out), "--inputs", "impulses", "--steps", "30"]
    main(["analyze", *args, "--examples", "6", "--onset-examples", "0"])
    measures = json.loads((out / "measures.json").read_text())
    assert measures["inputs"] == "impulses" and measures["steps"] == 30
    assert measures["speed"] == pytest.approx(1.0, rel=0.05)
    assert measures["onset"] is None
    with pytest.raises(FileNotFoundError, match="--inputs impulses"):
        main(["analyze", "--ckpt", str(ckpt), "--out", str(out)])


def test_analyze_reports_a_missing_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint"):
        main(["analyze", "--ckpt", str(tmp_path / "none.ckpt")])


@pytest.mark.parametrize(("flag", "value"), [("--max-rings", "0"), ("--examples", "-1")])
def test_analyze_rejects_counts_out_of_range_naming_the_option(flag, value, capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "--ckpt", "x.ckpt", flag, value])
    assert flag in capsys.readouterr().err
