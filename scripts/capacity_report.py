"""The memory-capacity report (docs/analysis.md) of the complete trials of capacity sweeps.

    python scripts/capacity_report.py sweeps/memory_capacity_cpu.yaml \
        sweeps/memory_capacity_dense_cpu.yaml sweeps/memory_capacity_sheet_cpu.yaml \
        --out docs/capacity
"""

import argparse

from wave_lightning.analysis.capacity import write_capacity_report
from wave_lightning.sweep.report import complete
from wave_lightning.sweep.spec import load_sweep
from wave_lightning.sweep.storage import read_study


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", help="capacity sweep files (sweeps/*.yaml)")
    parser.add_argument("--out", required=True, help="folder for capacity.json and capacity.png")
    parser.add_argument("--examples", type=int, default=512, help="test sequences per run")
    args = parser.parse_args(argv)
    runs = []
    for path in args.sweeps:
        sweep = load_sweep(path)
        runs += [(trial, sweep.root) for trial in complete(read_study(sweep))]
    for written in write_capacity_report(runs, args.out, args.examples):
        print(f"wrote {written}")


if __name__ == "__main__":
    main()
