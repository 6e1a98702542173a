"""The helpers of scripts/reproduction_report.py that read runs and format the tables."""

import importlib.util
import math

from tests.helpers import ROOT

SPEC = importlib.util.spec_from_file_location("report", ROOT / "scripts/reproduction_report.py")
report = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(report)

METRICS = """epoch,step,train/loss,val/mse,val/solved_step
0,24,0.5,,
0,49,,0.3,
1,99,,0.04,99.0
2,149,,0.01,99.0
"""


def test_curve_and_solved_step_read_metrics_csv(tmp_path):
    (tmp_path / "metrics.csv").write_text(METRICS)
    assert report.curve(tmp_path, "val/mse") == ([49, 99, 149], [0.3, 0.04, 0.01])
    assert report.solved_step(tmp_path) == 99


def test_unsolved_run_has_no_solved_step(tmp_path):
    (tmp_path / "metrics.csv").write_text(METRICS.replace(",99.0\n", ",\n"))
    assert report.solved_step(tmp_path) is None


def test_cells_give_mean_std_range_and_unsolved_runs():
    assert report.loss_cell([1e-4, 3e-4]) == "2.0e-04 ± 1.4e-04 (1.0e-04–3.0e-04)"
    assert report.steps_cell([100, 300], 600) == "200 (100, 300)"
    assert report.steps_cell([100, None], 600) == "100, not in 600"
    assert (report.loss_cell([2e-5]), report.steps_cell([400], 600)) == ("2.0e-05", "400")


def test_max_steps_is_the_last_trainer_override():
    sweep = report.load_sweep(ROOT / "sweeps/adding_table1_cpu.yaml")
    assert report.max_steps(sweep) == 300


def test_paper_tables_cover_the_shipped_sweep_levels():
    copy = report.load_sweep(ROOT / "sweeps/copy_table4_cpu.yaml")
    models, delays = (list(f.distribution.choices) for f in copy.factors)
    assert sorted(models) == sorted(report.PAPER_COPY) and delays == report.COPY_DELAYS
    adding = report.load_sweep(ROOT / "sweeps/adding_table1_cpu.yaml")
    models, _ = (list(f.distribution.choices) for f in adding.factors)
    assert sorted(models) == sorted(report.PAPER_ADDING)
    assert report.lengths(adding) == report.ADDING_LENGTHS


def test_memoryless_copy_loss_is_the_uniform_guess_over_the_recalled_steps():
    assert math.isclose(report.memoryless_loss(30), 10 * math.log(8) / 50)
