"""Spike-train decoding: the generator's counts, exact decoding of shift-register states,
chance for noise, and the labels' layout."""

import json

import pytest
import torch
from PIL import Image

from tests.helpers import ROOT
from wave_lightning.analysis.cli import analysis_options, build_parser
from wave_lightning.analysis.compare_spikes import layer_at_init, layers_at_init
from wave_lightning.analysis.compare_spikes import main as compare_main
from wave_lightning.analysis.spikes import (
    balanced,
    decode_snapshots,
    history_targets,
    spike_decoding,
    spike_trains,
)
from wave_lightning.cli import main
from wave_lightning.nn import WaveRNN
from wave_lightning.nn.kernels import cpp_ring
from wave_lightning.tasks.loading import load_task


def test_spike_trains_have_exactly_the_requested_spikes_per_channel():
    generator = torch.Generator().manual_seed(3)
    x = spike_trains(50, 12, 4, 5, generator)
    assert x.shape == (50, 12, 4) and set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x.sum(1), torch.full((50, 4), 5.0))
    assert not torch.equal(x[0], x[1])  # random times
    assert torch.equal(spike_trains(1, 3, 2, 3), torch.ones(1, 3, 2))


@pytest.mark.parametrize("spikes", [0, 7])
def test_impossible_spike_counts_are_refused(spikes):
    with pytest.raises(ValueError, match=rf"spikes must be in \[1, steps=6\], got {spikes}"):
        spike_trains(2, 6, 1, spikes)


def test_history_labels_count_delays_back_from_the_read_time():
    x = torch.zeros(1, 5, 2)
    x[0, 4, 0] = 1.0  # channel 0 at the read time: delay 0
    x[0, 1, 1] = 1.0  # channel 1 three steps before it
    assert history_targets(x)[0].nonzero().flatten().tolist() == [0, 5 + 3]


def test_balanced_accuracy_averages_hit_and_rejection_rates():
    truth = torch.tensor([True, True, False, False, False, False])
    assert balanced(torch.tensor([True, False, False, False, False, False]), truth) == 0.75
    assert balanced(torch.zeros(6, dtype=torch.bool), truth) == 0.5
    assert balanced(torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)) == 1.0


def shift_register(channels: int, n_hid: int) -> WaveRNN:
    """One linear ring per input channel (channel c feeds unit 0 of ring c only): the state is
    the last n_hid steps of every channel, an exact shift register."""
    layer = WaveRNN(channels, n_hid, channels, activation="identity", impl="fast")
    with torch.no_grad():
        layer.input.weight.zero_()
        for c in range(channels):
            layer.input.weight[c * n_hid, c] = 1.0
    return layer


def test_a_shift_register_state_decodes_every_channel_and_onset_exactly():
    result = spike_decoding(shift_register(3, 10), spikes=4, steps=10, examples=400)
    assert (result.accuracy, result.balanced_accuracy, result.exact) == (1.0, 1.0, 1.0)
    assert result.delay_balanced_accuracy == [1.0] * 10
    assert (result.spikes, result.channels, result.steps, result.chance) == (4, 3, 10, 0.6)


def test_a_ring_shorter_than_the_window_loses_the_delays_that_wrap():
    result = spike_decoding(shift_register(2, 6), spikes=3, steps=12, examples=800)
    # spikes at d and d + 6 land on the same unit: only their sum is stored
    assert result.exact < 0.5 and max(result.delay_balanced_accuracy) < 1.0


def test_pure_noise_states_decode_at_chance():
    generator = torch.Generator().manual_seed(0)
    x = spike_trains(4000, 8, 3, 2, generator)
    noise = torch.randn(4000, 16, generator=generator, dtype=torch.float64)
    result = decode_snapshots(noise, history_targets(x), spikes=2, channels=3)
    assert abs(result.balanced_accuracy - 0.5) < 0.02
    assert all(abs(value - 0.5) < 0.05 for value in result.delay_balanced_accuracy)
    assert result.exact == 0.0 and abs(result.accuracy - result.chance) < 0.02


def test_analyze_with_spike_inputs_writes_the_decoding_table_and_the_sheet_figures(
    tmp_path, capsys
):
    root = ["--trainer.default_root_dir", str(tmp_path / "run")]
    main([
        "fit", "--config", str(ROOT / "conf/data/copy.yaml"),
        "--config", str(ROOT / "conf/model/wsheet.yaml"),
        "--model.layer.init_args.height", "3", "--model.layer.init_args.width", "4",
        "--model.layer.init_args.n_ch", "2", "--data.delay", "2", "--data.batch_size", "4",
        "--data.train_batches", "1", "--data.val_size", "4", "--data.test_size", "4",
        "--trainer.max_steps", "1", "--test_after_fit", "false", *root,
    ])  # fmt: skip
    out = tmp_path / "out"
    args = ["--ckpt", str(tmp_path / "run/checkpoints/last.ckpt"), "--out", str(out)]
    spikes = ["--inputs", "spikes", "--steps", "5", "--spikes", "1", "3", "--spike-examples", "64"]
    main(["analyze", *args, *spikes, "--examples", "3", "--onset-examples", "0"])
    names = {"fft.png", "measures.json", "rings.gif", "spacetime.png", "sheets.png"}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        names | {"sheets.gif", "spikes.json", "velocity.json"}
    )
    table = json.loads((out / "spikes.json").read_text())
    assert (table["layer"], table["inputs"]) == ("WaveSheetRNN", "spikes")
    rows = table["layers"]["WaveSheetRNN"]  # the copy task's 10 inputs are the channels
    shapes = [(row["spikes"], row["steps"], row["channels"]) for row in rows]
    assert shapes == [(1, 5, 10), (3, 5, 10)]
    assert all(len(row["delay_balanced_accuracy"]) == 5 for row in rows)
    velocity = json.loads((out / "velocity.json").read_text())
    assert len(velocity["channels"]) == 2
    with Image.open(out / "sheets.gif") as gif:
        assert gif.n_frames == 5
    assert "spike decoding, 3 per channel over 5 steps" in capsys.readouterr().out


def test_analyze_refuses_more_spikes_than_steps(tmp_path):
    args = ["--ckpt", "x", "--inputs", "spikes", "--spikes", "5", "--steps", "4"]
    match = "spikes must not exceed the 4 steps of the spike trains, got \\[5\\]"
    with pytest.raises(SystemExit, match=match):
        analysis_options(build_parser().parse_args(args))


def test_the_comparison_at_init_writes_one_row_per_layer_and_spike_count(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(cpp_ring, "available", lambda: False)  # the eager forms: no C++ load
    layers = layers_at_init(channels=2, side=3, n_ch=2)
    assert {name: layer.hidden_size for name, layer in layers.items()} == dict.fromkeys(
        ["irnn", *(f"{kind}_{init}" for init in ("single", "normal")
                   for kind in ("wrnn", "local", "sheet"))], 18
    )  # fmt: skip
    out = tmp_path / "table.json"
    compare_main(["--out", str(out), "--channels", "2", "--side", "3", "--n-ch", "1",
                  "--steps", "3", "--spikes", "1", "2", "--examples", "64"])  # fmt: skip
    table = json.loads(out.read_text())
    assert (table["at"], table["steps"], len(table["layers"])) == ("init", 3, 7)
    assert all([row["spikes"] for row in rows] == [1, 2] for rows in table["layers"].values())
    # a 3x3 sheet holds 3 steps of the history before its wave wraps: exact with normal V
    assert table["layers"]["sheet_normal"][0]["exact"] == 1.0
    assert "sheet_normal: spikes -> balanced acc / exact: 1: 1.000/1.000" in capsys.readouterr().out


def test_the_comparison_of_a_checkpoint_gives_its_trained_layer_and_the_same_layer_at_init(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(cpp_ring, "available", lambda: False)
    main([
        "fit", "--config", str(ROOT / "conf/experiment/copy_wrnn.yaml"),
        "--model.layer.init_args.n_hid", "6", "--model.layer.init_args.n_ch", "2",
        "--data.delay", "2", "--data.batch_size", "8", "--data.train_batches", "3",
        "--data.val_size", "8", "--data.test_size", "8", "--optimizer.init_args.lr", "0.05",
        "--trainer.max_steps", "3", "--test_after_fit", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"),
    ])  # fmt: skip
    ckpt = tmp_path / "run/checkpoints/last.ckpt"
    out = tmp_path / "table.json"
    compare_main(["--out", str(out), "--trained", f"wrnn={ckpt}", "--steps", "4",
                  "--spikes", "1", "--examples", "64"])  # fmt: skip
    table = json.loads(out.read_text())
    assert (table["at"], sorted(table["layers"])) == ("trained", ["wrnn init", "wrnn trained"])
    assert "side" not in table and table["trained"] == [f"wrnn={ckpt}"]
    assert table["layers"]["wrnn trained"][0]["channels"] == 10  # the copy task's inputs
    trained = load_task(ckpt).model.layer
    fresh = layer_at_init(str(ckpt))
    assert type(fresh) is WaveRNN and fresh.hidden_size == trained.hidden_size == 12
    shift = torch.zeros_like(fresh.recurrent.conv.weight)
    shift[[0, 1], [0, 1], 0] = 1.0  # the shift init: each ring takes its left neighbour
    assert torch.equal(fresh.recurrent.conv.weight, shift)
    assert not torch.allclose(trained.recurrent.conv.weight, shift, atol=1e-3)  # 3 Adam steps
    with pytest.raises(SystemExit, match="--trained 'wrnn': expected NAME=CHECKPOINT"):
        compare_main(["--out", str(out), "--trained", "wrnn"])
