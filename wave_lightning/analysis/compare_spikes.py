"""`python -m wave_lightning.analysis.compare_spikes`: spike decoding of the compared layers
(wRNN, untied ring, iRNN, 2-D sheet) into one JSON table: built at init, or, with `--trained
NAME=CKPT`, each checkpoint's trained layer beside the same layer freshly initialised."""

import argparse

import torch
from lightning.pytorch.cli import instantiate_class
from torch import nn

from ..nn import IRNN, LocalRNN, WaveRNN, WaveSheetRNN
from ..run.checkpoints import load_checkpoint
from ..tasks.loading import load_task
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


def layer_at_init(ckpt: str, seed: int = 0) -> nn.Module:
    """The layer a checkpoint's run started from in kind and size, drawn afresh under `seed`:
    built from the layer config in the checkpoint's hyper-parameters, no weights loaded."""
    config = load_checkpoint(ckpt)["hyper_parameters"]["layer"]
    torch.manual_seed(seed)
    return instantiate_class((), config)


def trained_layers(named: list[str], seed: int = 0) -> dict[str, nn.Module]:
    """Per NAME=CKPT the checkpoint's trained layer ("NAME trained") and its twin at init."""
    layers = {}
    for item in named:
        name, sep, ckpt = item.partition("=")
        if not (sep and name and ckpt):
            raise SystemExit(f"error: --trained {item!r}: expected NAME=CHECKPOINT")
        layers[f"{name} trained"] = load_task(ckpt).model.layer
        layers[f"{name} init"] = layer_at_init(ckpt, seed)
    return layers


def main(argv: list[str] | None = None) -> None:
    """Write the spike decoding table of the compared layers at init, or of trained ones."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True, help="JSON file written")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--side", type=int, default=6, help="sheet side; rings have side^2 units")
    parser.add_argument("--n-ch", type=int, default=3, help="rings / sheets")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--spikes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--trained", nargs="+", metavar="NAME=CKPT", help="checkpoints' layers, not the init ones"
    )
    args = parser.parse_args(argv)
    if args.trained:
        layers = trained_layers(args.trained, args.seed)
    else:
        layers = layers_at_init(args.channels, args.side, args.n_ch, args.seed)
    rows = {
        name: spike_table(layer, args.spikes, args.steps, args.examples, args.seed)
        for name, layer in layers.items()
    }
    meta = {"at": "trained" if args.trained else "init", **vars(args)}
    if args.trained:  # the checkpoints' layers set their own sizes and inputs
        meta = {k: v for k, v in meta.items() if k not in ("channels", "side", "n_ch")}
    write_table(rows, args.out, meta)
    for name, results in rows.items():
        cells = ", ".join(f"{r.spikes}: {r.balanced_accuracy:.3f}/{r.exact:.3f}" for r in results)
        print(f"{name}: spikes -> balanced acc / exact: {cells}")


if __name__ == "__main__":
    main()
