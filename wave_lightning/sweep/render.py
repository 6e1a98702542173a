"""How the report writes: a Markdown table row, a matplotlib figure saved and closed."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def save(ax: plt.Axes, path: Path) -> None:
    """Write the axes' figure as a PNG and close it."""
    figure = ax.figure
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
