"""How long the commands that should answer at once take: help, `sweep status`, a sweep file's
one-line error. Each is run as a user runs it (a new process of the installed `wave-lightning`),
`--repeats` times; the table gives the median and the slowest, against the 2 s target.

    python benchmarks/cli_startup.py                      # prints a Markdown table
    python benchmarks/cli_startup.py --json startup.json  # and writes the rows

Time it on an idle machine: another busy process beside it slows the imports several-fold.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 2.0
WAVE_LIGHTNING = str(Path(sys.executable).with_name("wave-lightning"))  # this venv's


def commands(scratch: Path) -> dict[str, list[str]]:
    """The commands timed, by label; `scratch` holds a broken and a missing sweep file."""
    broken = scratch / "broken.yaml"
    broken.write_text("study: [unclosed\n")
    return {
        "wave-lightning --help": ["--help"],
        "wave-lightning sweep --help": ["sweep", "--help"],
        "sweep status (journal sweep)": [
            "sweep",
            "status",
            str(ROOT / "sweeps/copy_table4_cpu.yaml"),
        ],
        "sweep status (missing file)": ["sweep", "status", str(scratch / "missing.yaml")],
        "sweep status (broken YAML)": ["sweep", "status", str(broken)],
    }


def seconds(argv: list[str]) -> float:
    """Wall time of one `wave-lightning ARGV`, output discarded."""
    start = time.perf_counter()
    subprocess.run([WAVE_LIGHTNING, *argv], cwd=ROOT, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, argv in commands(Path(scratch)).items():
            seconds(argv)  # warm the file cache: the first run after an install is not the case
            times = [seconds(argv) for _ in range(args.repeats)]
            median = statistics.median(times)
            rows.append({"command": label, "median_s": median, "max_s": max(times),
                         "within_target": median < TARGET_S})  # fmt: skip
    cpus = os.cpu_count()
    print(f"machine: {platform.machine()}, {cpus} CPUs, python {platform.python_version()}")
    print(f"| command | median s | slowest s | under {TARGET_S:g} s |\n|---|---|---|---|")
    for row in rows:
        verdict = "yes" if row["within_target"] else "NO"
        print(f"| {row['command']} | {row['median_s']:.2f} | {row['max_s']:.2f} | {verdict} |")
    if args.json:
        meta = {"machine": platform.machine(), "python": platform.python_version(),
                "repeats": args.repeats, "target_s": TARGET_S}  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
