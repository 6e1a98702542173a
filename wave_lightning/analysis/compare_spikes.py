"""`python -m wave_lightning.analysis.compare_spikes`: spike decoding of the compared layers at
init (wRNN, untied ring, iRNN, 2-D sheet) into one JSON table; trained layers: analyze --ckpt."""

import argparse

import torch
from torch import nn

from ..nn import IRNN, LocalRNN, WaveRNN, WaveSheetRNN
from .spikes import spike_table, write_table


def layers_at_init(channels: int, side: int, n_ch: int, seed: int = 0) -> dict[str, nn.Module]:
    """The compared layers at init, each of n_ch * side^2 hidden units: wRNN and the untied ring
    (n_ch rings of side^2 units, shift init), iRNN (identity init), the 2-D sheet (n_ch sheets
    of side x side, shift along cycling directions); rings and sheet with input_init single
    (the paper's V-init) and normal."""
    torch.manual_seed(seed)
    ring = dict(n_hid=side * side, n_ch=n_ch)
    sheet = dict(height=side, width=side, n_ch=n_ch, direction="cycle")
    layers: dict[str, nn.Module] = {"irnn": IRNN(channels, n_ch * side * side)}
    for init in ("single", "normal"):
        layers[f"wrnn_{init}"] = WaveRNN(channels, input_init=init, **ring)
        layers[f"local_{init}"] = LocalRNN(channels, input_init=init, **ring)
        layers[f"sheet_{init}"] = WaveSheetRNN(channels, input_init=init, **sheet)
    return layers


def main(argv: list[str] | None = None) -> None:
    """Write the spike decoding table of the compared layers at init."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True, help="JSON file written")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--side", type=int, default=6, help="sheet side; rings have side^2 units")
    parser.add_argument("--n-ch", type=int, default=3, help="rings / sheets")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--spikes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    layers = layers_at_init(args.channels, args.side, args.n_ch, args.seed)
    rows = {
        name: spike_table(layer, args.spikes, args.steps, args.examples, args.seed)
        for name, layer in layers.items()
    }
    write_table(rows, args.out, {"at": "init", **vars(args)})
    for name, results in rows.items():
        cells = ", ".join(f"{r.spikes}: {r.balanced_accuracy:.3f}/{r.exact:.3f}" for r in results)
        print(f"{name}: spikes -> balanced acc / exact: {cells}")


if __name__ == "__main__":
    main()
