"""The rings' GIF: large enough to read, every ring named, its radius as docs/analysis.md says."""

import torch
from PIL import Image

from tests.helpers import ROOT
from wave_lightning.analysis.plots import RING_RADIUS_OFFSET, animate_rings, ring_figure


def test_ring_figure_names_each_ring_at_its_radius():
    states = torch.rand(5, 4, 12)
    fig, draw = ring_figure(states, "WaveRNN")
    ax = fig.axes[0]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["0", "1", "2", "3"]
    assert list(ax.get_xticks()) == [r + RING_RADIUS_OFFSET for r in range(4)]
    assert "radius r + 2" in ax.get_xlabel()
    draw(3)
    assert ax.get_title() == "WaveRNN: t = 3 steps"


def test_docs_give_the_rings_radius_the_plot_draws():
    assert RING_RADIUS_OFFSET == 2.0
    assert "ring r at radius r + 2" in (ROOT / "docs" / "analysis.md").read_text()


def test_animate_rings_writes_one_700x600_frame_per_step(tmp_path):
    path = animate_rings(torch.rand(6, 3, 10), tmp_path / "rings.gif", title="rings")
    with Image.open(path) as gif:
        assert (gif.size, gif.n_frames) == ((700, 600), 6)
