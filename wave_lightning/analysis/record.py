"""Record a layer's hidden states as rings (B, T, rings, units), and impulses to drive it."""

import torch
from torch import Generator, Tensor, nn


def ring_shape(layer: nn.Module) -> tuple[int, int]:
    """(rings, units per ring): WaveRNN/LocalRNN rings, or one ring of all units in unit order."""
    if hasattr(layer, "n_ch") and hasattr(layer, "n_hid"):
        return int(layer.n_ch), int(layer.n_hid)
    return 1, int(layer.hidden_size)


@torch.no_grad()
def record_states(layer: nn.Module, x: Tensor) -> Tensor:
    """The states of `layer` driven by x (B, T, input_size), as (B, T, rings, units) on the CPU.

    No gradient; x moves to the layer's device; the layer runs in eval mode and is put back in
    its former mode afterwards.
    """
    was_training = layer.training
    layer.eval()
    try:
        states, _ = layer(x.to(next(layer.parameters()).device))
    finally:
        layer.train(was_training)
    return states.reshape(*states.shape[:2], *ring_shape(layer)).float().cpu()


def impulse_inputs(
    n: int, steps: int, input_size: int, impulses: int = 3, generator: Generator | None = None
) -> Tensor:
    """n sequences (n, steps, input_size), each with `impulses` one-hot pulses at random times
    and random input dimensions (distinct times within a sequence), zero elsewhere."""
    if impulses > steps:
        raise ValueError(f"impulses ({impulses}) must not exceed steps ({steps})")
    x = torch.zeros(n, steps, input_size)
    for row in range(n):
        times = torch.randperm(steps, generator=generator)[:impulses]
        dims = torch.randint(0, input_size, (impulses,), generator=generator)
        x[row, times, dims] = 1.0
    return x
