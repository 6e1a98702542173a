"""The wRNN recurrence with a hand-written BPTT: small GEMMs per kernel tap per step, no graph.

Layout: batch innermost and time major. The states handed back are (T, C, N, B), a permuted
view of which is the layer's (B, T, C N) output, as torch.nn.RNN does for batch_first. For the
backward every step's state is also kept in a ring buffer (C, T + 1, N + 2p, B) (p = K // 2)
with p circular halo cells on each side of each ring. A state shifted by a kernel tap is then a
column window of a (C, (N + 2p) B) matrix, so a step of the circular convolution is K GEMMs
(C x C) @ (C x N B) on strided views, without copies, and the weight gradient of every step is
one GEMM per tap after the loop, over the whole buffer.
"""

import torch
from torch import Tensor

from .activation_grad import activate_, times_derivative_


def fill_halo_(step: Tensor, pad: int) -> None:
    """Copy each ring's ends into the circular halo cells of a step buffer (C, N + 2 pad, B)."""
    if pad:
        step[:, :pad].copy_(step[:, -2 * pad : -pad])
        step[:, -pad:].copy_(step[:, pad : 2 * pad])


def window(step: Tensor, start: int, n_hid: int) -> Tensor:
    """Positions start..start+N of a step buffer (C, N + 2p, B) as a (C, N B) matrix view."""
    return step[:, start : start + n_hid].flatten(1)


def convolve_transposed_(out: Tensor, taps: Tensor, step: Tensor) -> None:
    """out (C, N B) += U^T g for the halo-filled gradient g of a step buffer."""
    n_taps = taps.shape[0]
    n_hid = step.shape[1] - n_taps + 1
    for k, tap in enumerate(taps):
        out.addmm_(tap.t(), window(step, n_taps - 1 - k, n_hid))


def convolve_(out: Tensor, drive: Tensor, taps: Tensor, step: Tensor) -> None:
    """out (C, N B) = drive + U h for the halo-filled state h of a step buffer."""
    n_hid = step.shape[1] - taps.shape[0] + 1
    torch.addmm(drive, taps[0], window(step, 0, n_hid), out=out)
    for k in range(1, taps.shape[0]):
        out.addmm_(taps[k], window(step, k, n_hid))


def tap_grads(grad_rings: Tensor, rings: Tensor, n_taps: int) -> Tensor:
    """dU_k = sum over steps of dz_t h_{t-1, shifted by tap k}^T, one GEMM per tap: (K, C, C).

    grad_rings (C, T, N + 2p, B) must have zero halos; in the flattened buffers the state that
    meets dz at a given place sits (k - p) B places further on, one step earlier.
    """
    n_ch, steps, width, batch = grad_rings.shape
    pad, length = n_taps // 2, steps * width * batch
    dz = grad_rings.view(n_ch, -1)[:, pad * batch : length - pad * batch]
    flat = rings.view(n_ch, -1)
    span = dz.shape[1]
    return torch.stack([dz @ flat[:, k * batch : k * batch + span].t() for k in range(n_taps)])


class RingRecurrence(torch.autograd.Function):
    """states = act(U h_{t-1} + drive_t), U the circular convolution with taps (K, C, C).

    drive (T, C, N, B) includes every bias; h0 (B, C, N); returns the states (T, C, N, B).
    """

    @staticmethod
    def forward(ctx, drive: Tensor, h0: Tensor, taps: Tensor, activation: str) -> Tensor:
        steps, n_ch, n_hid, batch = drive.shape
        pad = taps.shape[0] // 2
        states = torch.empty_like(drive, memory_format=torch.contiguous_format)
        rings = drive.new_empty(n_ch, steps + 1, n_hid + 2 * pad, batch)
        rings[:, 0, pad : pad + n_hid] = h0.permute(1, 2, 0)
        fill_halo_(rings[:, 0], pad)
        for t in range(steps):
            z = states[t].view(n_ch, -1)
            convolve_(z, drive[t].view(n_ch, -1), taps, rings[:, t])
            activate_(z, activation)
            rings[:, t + 1, pad : pad + n_hid] = states[t]
            fill_halo_(rings[:, t + 1], pad)
        ctx.save_for_backward(rings, taps)
        ctx.activation = activation
        return states

    @staticmethod
    def backward(ctx, grad_states: Tensor):
        rings, taps = ctx.saved_tensors
        n_ch, steps, width, batch = rings.shape
        steps, pad = steps - 1, taps.shape[0] // 2
        n_hid = width - 2 * pad
        grad_rings = rings.new_empty(n_ch, steps, width, batch)
        for t in range(steps - 1, -1, -1):
            dz = grad_rings[:, t, pad : pad + n_hid]
            dz.copy_(grad_states[t])
            if t + 1 < steps:
                convolve_transposed_(dz.flatten(1), taps, grad_rings[:, t + 1])
            times_derivative_(dz, rings[:, t + 1, pad : pad + n_hid], ctx.activation)
            fill_halo_(grad_rings[:, t], pad)
        grad_h0 = grad_taps = None
        if ctx.needs_input_grad[1]:
            grad_h0 = rings.new_zeros(n_ch, n_hid * batch)
            convolve_transposed_(grad_h0, taps, grad_rings[:, 0])
            grad_h0 = grad_h0.view(n_ch, n_hid, batch).permute(2, 0, 1)
        if pad:
            grad_rings[:, :, :pad] = 0.0
            grad_rings[:, :, -pad:] = 0.0
        if ctx.needs_input_grad[2]:
            grad_taps = tap_grads(grad_rings, rings, taps.shape[0])
        return grad_rings[:, :, pad : pad + n_hid].transpose(0, 1), grad_h0, grad_taps, None


def ring_recurrence(
    x: Tensor, h0: Tensor, input_weight: Tensor, drive_bias: Tensor, kernel: Tensor, activation: str
) -> Tensor:
    """States (B, T, C N) of the wRNN for inputs x (B, T, I), as a view of time-major storage.

    input_weight (C N, I) is V; drive_bias (C N,) is V's bias plus the ring bias of every unit;
    kernel is the Conv1d weight (C, C, K); h0 is (B, C N).
    """
    batch, steps, _ = x.shape
    n_ch, hidden = kernel.shape[0], input_weight.shape[0]
    drive = torch.baddbmm(
        drive_bias[:, None], input_weight.expand(steps, -1, -1), x.permute(1, 2, 0)
    )
    taps = kernel.permute(2, 0, 1).contiguous()
    states = RingRecurrence.apply(
        drive.view(steps, n_ch, -1, batch), h0.view(batch, n_ch, -1), taps, activation
    )
    return states.view(steps, hidden, batch).permute(2, 0, 1)
