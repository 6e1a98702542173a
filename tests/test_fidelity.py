"""The authors' code's definitions (docs/fidelity.md) behind their switches, value by value."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch import Trainer
from torch import Generator

from tests.helpers import ROOT
from wave_lightning.cli import main
from wave_lightning.data import AddingTask, CopyTask
from wave_lightning.nn import IRNN, LocalRNN, WaveRNN
from wave_lightning.sweep.spec import load_sweep
from wave_lightning.tasks import PerStepClassification, Regression


def authors_copy_example(symbols: list[int], t: int) -> tuple[list[int], list[int]]:
    """Input and target of the authors' script for T = t, position by position."""
    length = t + 10
    inputs, targets = [], []
    for p in range(length):
        value = symbols[p] if p < 10 else 0
        inputs.append(9 if p == length - 11 else value)
        targets.append(symbols[p - (length - 10)] if p >= length - 10 else 0)
    return inputs, targets


@pytest.mark.parametrize("t", [10, 20, 50])
def test_authors_copy_layout_element_by_element(t):
    task = CopyTask(delay=t, layout="authors")
    x, y = task.sample(4, Generator().manual_seed(3))
    drawn = torch.randint(1, 9, (4, 10), generator=Generator().manual_seed(3))  # the same draw
    assert task.seq_len == t + 10 and x.shape == (4, t + 10, 10)
    assert torch.equal(x.sum(-1), torch.ones(4, t + 10))
    for row in range(4):
        inputs, targets = authors_copy_example(drawn[row].tolist(), t)
        assert x[row].argmax(-1).tolist() == inputs
        assert y[row].tolist() == targets


def test_at_t_10_the_delimiter_overwrites_the_last_symbol_the_target_keeps_it():
    x, y = CopyTask(delay=10, layout="authors").sample(1, Generator().manual_seed(0))
    drawn = torch.randint(1, 9, (1, 10), generator=Generator().manual_seed(0))[0]
    assert x[0].argmax(-1).tolist() == [*drawn[:9].tolist(), 9, *[0] * 10]
    assert y[0].tolist() == [0] * 10 + drawn.tolist()


def test_paper_layout_is_the_default_and_unchanged():
    x, y = CopyTask(delay=10).sample(1, Generator().manual_seed(0))
    drawn = torch.randint(1, 9, (1, 10), generator=Generator().manual_seed(0))[0].tolist()
    assert x[0].argmax(-1).tolist() == [*drawn, *[0] * 10, 9, *[0] * 9]
    assert y[0].tolist() == [0] * 20 + drawn


def test_bad_layouts_are_refused_with_the_allowed_values():
    message = "layout='their' is not allowed; choose one of paper, authors"
    with pytest.raises(ValueError, match=message):
        CopyTask(layout="their")
    with pytest.raises(ValueError, match="delay must be >= 10 with layout='authors', got 9"):
        CopyTask(delay=9, layout="authors")


def copy_task(**kwargs) -> PerStepClassification:
    return PerStepClassification(WaveRNN(10, 8, 2), 10, **kwargs)


def test_copy_loss_is_the_mean_cross_entropy_divided_by_the_batch():
    torch.manual_seed(0)
    prediction, target = torch.randn(7, 20, 10), torch.randint(0, 10, (7, 20))
    mean = F.cross_entropy(prediction.reshape(140, 10), target.reshape(140))
    task = copy_task(loss_reduction="mean_over_batch")
    assert task.training  # a fresh module trains: the training batch divides
    torch.testing.assert_close(task.loss(prediction, target), mean / 7)
    task.eval()  # val/loss and test/loss: the authors' test batch divides
    torch.testing.assert_close(task.loss(prediction, target), mean / 50)
    task = copy_task(loss_reduction="mean_over_batch", eval_batch_size=20).eval()
    torch.testing.assert_close(task.loss(prediction, target), mean / 20)
    torch.testing.assert_close(copy_task().loss(prediction, target), mean)
    torch.testing.assert_close(copy_task().eval().loss(prediction, target), mean)
    # the C++ form's every-step readout: a (B, T, classes) view of time-major (T, classes, B)
    time_major = prediction.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    torch.testing.assert_close(copy_task().loss(time_major, target), mean)


def test_bad_loss_reduction_is_refused():
    with pytest.raises(ValueError, match="loss_reduction='sum' is not allowed; choose one of"):
        copy_task(loss_reduction="sum")
    with pytest.raises(ValueError, match="eval_batch_size must be a positive integer, got 0"):
        copy_task(eval_batch_size=0)


def shift_kernel(n_ch: int, tap: int) -> torch.Tensor:
    kernel = torch.zeros(n_ch, n_ch, 3)
    for c in range(n_ch):
        kernel[c, c, tap] = 1.0
    return kernel


@pytest.mark.parametrize(("init", "tap"), [("shift", 0), ("identity", 1)])
def test_authors_ring_keeps_conv1d_default_bias(init, tap):
    torch.manual_seed(0)
    conv = WaveRNN(2, 16, 27, recurrent_init=init, init_style="authors").recurrent.conv
    bound = 1 / math.sqrt(27 * 3)  # Conv1d's default: 1/sqrt(in_channels * kernel_size)
    assert torch.equal(conv.weight, shift_kernel(27, tap))
    assert conv.bias.abs().le(bound).all() and conv.bias.ne(0).all()
    assert conv.bias.abs().max() > 0.8 * bound  # uniform over the whole range
    ours = WaveRNN(2, 16, 27, recurrent_init=init).recurrent.conv
    assert torch.equal(ours.weight, conv.weight) and ours.bias.eq(0).all()


def test_authors_normal_input_init_keeps_linear_default_bias():
    torch.manual_seed(1)
    layer = WaveRNN(2, 100, 27, input_init="normal", init_style="authors").input
    assert math.isclose(layer.weight.mean().item(), 0.0, abs_tol=5e-5)
    assert math.isclose(layer.weight.std().item(), 1e-3, rel_tol=0.05)  # 5400 draws
    bound = 1 / math.sqrt(2)
    assert layer.bias.abs().le(bound).all() and layer.bias.abs().max() > 0.9 * bound
    ours = WaveRNN(2, 100, 27, input_init="normal").input
    assert math.isclose(ours.weight.std().item(), 1e-3, rel_tol=0.05) and ours.bias.eq(0).all()


def test_authors_irnn_draws_its_input_from_n_0_1e_3_with_default_bias():
    torch.manual_seed(2)
    layer = IRNN(10, 625, input_init="default", init_style="authors").input
    assert math.isclose(layer.weight.mean().item(), 0.0, abs_tol=5e-5)
    assert math.isclose(layer.weight.std().item(), 1e-3, rel_tol=0.05)  # 6250 draws
    bound = 1 / math.sqrt(10)
    assert layer.bias.abs().le(bound).all() and layer.bias.abs().max() > 0.9 * bound
    ours = IRNN(10, 625, input_init="default").input  # nn.Linear's uniform +-1/sqrt(10)
    assert ours.weight.abs().max() > 0.9 * bound
    v_init = IRNN(10, 100, input_init="single", init_style="authors").input
    expected = torch.zeros(100, 10)
    expected[0] = 1.0  # V-init: every input feeds unit 0 of the (one) ring, as without authors
    assert torch.equal(v_init.weight, expected)
    assert v_init.bias.eq(0).all()


def test_authors_untied_random_ring_is_xavier_uniform_with_zero_bias():
    torch.manual_seed(3)
    ring = LocalRNN(2, 100, 6, recurrent_init="random", init_style="authors").recurrent
    bound = math.sqrt(6 / (2 * 6 * 3))  # xavier: fan_in = fan_out = C * K
    assert ring.weight.abs().le(bound).all() and ring.weight.abs().max() > 0.99 * bound
    assert math.isclose(ring.weight.var().item(), bound**2 / 3, rel_tol=0.05)  # 10800 draws
    assert ring.bias.eq(0).all()
    ours = LocalRNN(2, 100, 6, recurrent_init="random").recurrent
    assert ours.weight.abs().le(1 / math.sqrt(18)).all() and ours.bias.ne(0).all()
    shift = LocalRNN(2, 100, 6, recurrent_init="shift", init_style="authors").recurrent
    assert shift.bias.eq(0).all()  # not described for the untied ring: the paper's zero


def test_paper_style_draws_what_it_drew_before():
    torch.manual_seed(4)
    a = WaveRNN(2, 16, 3, recurrent_init="random", input_init="normal")
    torch.manual_seed(4)
    b = WaveRNN(2, 16, 3, recurrent_init="random", input_init="normal", init_style="paper")
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("layer", [WaveRNN, LocalRNN])
def test_bad_init_style_is_refused(layer):
    with pytest.raises(ValueError, match="init_style='theirs' is not allowed; choose one of"):
        layer(2, 16, 2, init_style="theirs")
    with pytest.raises(ValueError, match="init_style='theirs' is not allowed; choose one of"):
        IRNN(2, 16, init_style="theirs")


class ScriptedMSE(Regression):
    """A regression task whose training loss at step i is mses[i] (the criterion under test)."""

    def __init__(self, mses: list[float], **kwargs) -> None:
        super().__init__(IRNN(2, 4), **kwargs)
        self.mses = mses

    def loss(self, prediction, target):
        if not self.training:
            return super().loss(prediction, target)
        return prediction.sum() * 0 + self.mses[self.global_step]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


MSES = [1.0, 0.04, 0.5, 0.5, 0.05, 0.5, 0.5, 0.5, 0.03, 0.01, 0.5, 0.5]


@pytest.mark.parametrize(
    ("every", "mses", "solved"),
    [(1, MSES, 1), (4, MSES, 4), (4, [*MSES[:4], 0.06, *MSES[5:]], 8), (5, MSES, -1)],
)
def test_train_solved_step_is_the_first_logging_step_at_or_below_005(every, mses, solved):
    task = ScriptedMSE(mses, solved_train_every=every)
    data = AddingTask(seq_len=6, batch_size=4, train_batches=12, val_size=4, test_size=4)
    trainer = Trainer(max_steps=12, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, data)
    assert task.train_solved_step.item() == solved
    logged = trainer.callback_metrics.get("train/solved_step")
    assert (logged is None) if solved < 0 else (logged.item() == solved)


def test_without_solved_train_every_only_the_validation_criterion_exists():
    task = Regression(WaveRNN(2, 4, 1))
    assert not hasattr(task, "train_solved_step") and "train_solved_step" not in task.state_dict()
    with pytest.raises(ValueError, match="solved_train_every must be a positive integer, got 0"):
        Regression(WaveRNN(2, 4, 1), solved_train_every=0)


def printed_config(capsys, *files: str, extra: tuple[str, ...] = ()) -> dict:
    args = [a for f in files for a in ("--config", str(ROOT / f))]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, *extra, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


COPY_OVERLAY = "conf/fidelity/authors_code_copy.yaml"
ADDING_OVERLAY = "conf/fidelity/authors_code_adding.yaml"


@pytest.mark.parametrize(
    ("experiment", "overlay"),
    [(f"conf/experiment/{p.name}", COPY_OVERLAY)
     for p in sorted((ROOT / "conf/experiment").glob("copy_*.yaml"))]
    + [(f"conf/experiment/{p.name}", ADDING_OVERLAY)
       for p in sorted((ROOT / "conf/experiment").glob("adding_*.yaml"))],
    ids=lambda value: Path(value).stem,
)  # fmt: skip
def test_overlays_compose_with_every_experiment_file(capsys, experiment, overlay):
    plain = printed_config(capsys, experiment)
    config = printed_config(capsys, experiment, overlay)
    layer, task = config["model"]["init_args"]["layer"], config["model"]["init_args"]
    before = plain["model"]["init_args"]["layer"]
    assert layer["init_args"] == {**before["init_args"], "init_style": "authors"}
    assert layer["class_path"] == before["class_path"]
    if "copy" in experiment:
        assert config["data"]["init_args"]["layout"] == "authors"
        assert (task["loss_reduction"], task["eval_batch_size"]) == ("mean_over_batch", 50)
    else:
        assert task["solved_train_every"] == 100


def sweep_config(capsys, sweep_file: str, model: str) -> dict:
    """The config a trial of `sweep_file` with model `model` trains (no searched values)."""
    sweep = load_sweep(ROOT / sweep_file)
    files = [str(c) for c in sweep.configs] + [str(sweep.factors[0].config_files[model])]
    args = [a for f in files for a in ("--config", f)]
    with pytest.raises(SystemExit):
        main(["fit", *args, *sweep.args, "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("sweep_file", "model", "overlay"),
    [("sweeps/copy_table4_authors_cpu.yaml", "irnn_sigma_init", COPY_OVERLAY),
     ("sweeps/adding_table1_authors_cpu.yaml", "wrnn", ADDING_OVERLAY)],
)  # fmt: skip
def test_authors_sweeps_train_what_the_overlay_selects(capsys, sweep_file, model, overlay):
    sweep = load_sweep(ROOT / sweep_file)
    experiment = str(sweep.factors[0].config_files[model].relative_to(ROOT.resolve()))
    trained = sweep_config(capsys, sweep_file, model)
    expected = printed_config(capsys, experiment, overlay)
    for key in ("layout",):
        assert trained["data"]["init_args"].get(key) == expected["data"]["init_args"].get(key)
    for key in ("loss_reduction", "eval_batch_size", "solved_train_every"):
        assert trained["model"]["init_args"].get(key) == expected["model"]["init_args"].get(key)
    layer = trained["model"]["init_args"]["layer"]["init_args"]
    assert layer == expected["model"]["init_args"]["layer"]["init_args"]


def report_module():
    """scripts/reproduction_report.py, imported by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("report", ROOT / "scripts/reproduction_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_puts_every_copy_sweep_in_the_authors_units():
    report = report_module()
    plain, authors = (
        load_sweep(ROOT / f"sweeps/{n}.yaml")
        for n in ("copy_table4_cpu", "copy_table4_authors_cpu")
    )
    assert (report.to_authors_units(plain), report.copy_layout(plain)) == (1 / 50, "paper")
    assert (report.to_authors_units(authors), report.copy_layout(authors)) == (1.0, "authors")
    assert report.copy_delays(authors) == [10, 20, 50, 100]
    # no memory of the symbols: ln 8 at each of the 10 recall steps, 0 elsewhere, over L steps
    assert math.isclose(report.memoryless_loss(30), 10 * math.log(8) / 50)
    assert math.isclose(report.memoryless_loss(20, "authors"), 10 * math.log(8) / 30)
    results = {"copy": {"runs": [{"model": "wrnn", "length": 0, "seed": s, "test/loss": v}
                                 for s, v in ((1, 5e-4), (0, 1e-4))]}}  # fmt: skip
    assert report.copy_losses_from_json(results) == {("wrnn", 0): [1e-4 / 50, 5e-4 / 50]}
    table = report.copy_table({"ours": {("wrnn", 20): [2e-6]}}, [10, 20, 50, 100], "authors")
    assert "| T=10 (script T=20) paper | T=10 (script T=20) ours |" in table
    assert "| wrnn | 9.0e-12 | - | 1.0e-10 | 2.0e-06 |" in table  # one seed: its value
    assert f"| {10 * math.log(8) / 20 / 50:.1e} |" in table  # the baseline at script T = 10


def test_report_pairs_one_trained_delay_with_its_paper_column_and_gives_every_measure():
    report = report_module()
    assert report.paper_column(20, "authors") == 1 and report.paper_column(30, "paper") == 2
    measures = {"best": {("irnn", 50): [1e-3, 3e-3]}, "final": {("irnn", 50): [2e-3, 4e-3]}}
    table = [
        line.split(" | ") for line in report.copy_table(measures, [50], "authors").splitlines()
    ]
    assert table[0][1:] == [
        "T=30 (script T=50) paper",
        "T=30 (script T=50) best",
        "T=30 (script T=50) final |",
    ]
    irnn = next(cells for cells in table if cells[0] == "| irnn")
    assert irnn[1:] == [
        "2.0e-03",
        "2.0e-03 ± 1.4e-03 (1.0e-03–3.0e-03)",
        "3.0e-03 ± 1.4e-03 (2.0e-03–4.0e-03) |",
    ]
    assert table[-1][1:] == [
        "",
        f"{10 * math.log(8) / 60 / 50:.1e}",
        " |",
    ]  # the baseline, first column
    t20 = report.load_sweep(ROOT / "sweeps/copy_table4_authors_t20_cpu.yaml")
    paper = report.paper_values(t20, "copy")
    assert paper == {(m, 20): values[1] for m, values in report.PAPER_COPY.items()}


def test_report_shows_the_authors_solve_criterion_where_the_sweep_logs_it():
    report = report_module()
    ours = [("val/solved_step", "solved at, ours (validation)")]
    theirs = ("train/solved_step", "solved at, ours (training batch)")
    assert report.solve_criteria(load_sweep(ROOT / "sweeps/adding_table1_cpu.yaml")) == ours
    authors = load_sweep(ROOT / "sweeps/adding_table1_authors_cpu.yaml")
    assert report.solve_criteria(authors) == [*ours, theirs]
