"""The wRNN recurrence with a hand-written BPTT: one small GEMM per kernel tap per step, no graph.

Inside a step the state lives in a buffer of shape (C, N + 2p, B) (p = K // 2): ring, ring
position with p circular halo cells on each side, batch innermost. The state shifted by a kernel
tap is then a column window of the (C, (N + 2p) B) matrix, so the circular convolution is K GEMMs
(C x C) @ (C x N B) on strided views, with no copies. These buffers are kept for all steps
(T + 1, C, N + 2p, B) for the backward. Inputs, outputs and gradients are (T, B, C N), time
major like torch.nn.RNN, and move to and from the step buffer one step at a time by 2-D
transposes while the step is in cache; the weight gradient accumulates step by step from the
same buffers.
"""

import torch
from torch import Tensor

from .activation_grad import activate_, times_derivative_


def fill_halo_(buf: Tensor, pad: int) -> None:
    """Copy each ring's ends into the circular halo cells of buf (C, N + 2 pad, B)."""
    if pad:
        buf[:, :pad].copy_(buf[:, -2 * pad : -pad])
        buf[:, -pad:].copy_(buf[:, pad : 2 * pad])


def tap_view(buf: Tensor, start: int, n_hid: int) -> Tensor:
    """Positions start..start+N of a (C, N + 2p, B) buffer as a (C, N B) matrix view."""
    return buf[:, start : start + n_hid].flatten(1)


def load_(buf: Tensor, rows: Tensor, scratch: Tensor) -> None:
    """Write one step's rows (B, C N) into buf (C, N + 2p, B), interior and halo, via scratch."""
    n_ch, width, batch = buf.shape
    pad = (width - rows.shape[1] // n_ch) // 2
    scratch.copy_(rows.t())
    store_(buf, scratch, pad)


def store_(buf: Tensor, scratch: Tensor, pad: int) -> None:
    """Copy scratch (C N, B) into buf's interior and fill buf's halo."""
    n_ch = buf.shape[0]
    buf[:, pad : buf.shape[1] - pad].copy_(scratch.view(n_ch, -1, buf.shape[2]))
    fill_halo_(buf, pad)


def ring_step_(out: Tensor, taps: Tensor, buf: Tensor, transpose: bool) -> None:
    """out (C, N B) += U h, or U^T h, for the halo-filled state h in buf (C, N + 2p, B)."""
    pad = taps.shape[0] // 2
    n_hid = buf.shape[1] - 2 * pad
    for k, tap in enumerate(taps):
        if transpose:
            out.addmm_(tap.t(), tap_view(buf, 2 * pad - k, n_hid))
        else:
            out.addmm_(tap, tap_view(buf, k, n_hid))


def add_tap_grads_(grad_taps: Tensor, dz: Tensor, buf: Tensor) -> None:
    """grad_taps[k] += dz (C, N B) @ (tap-k window of the state in buf)^T."""
    n_hid = buf.shape[1] - grad_taps.shape[0] + 1
    for k, grad in enumerate(grad_taps):
        grad.addmm_(dz, tap_view(buf, k, n_hid).t())


class RingRecurrence(torch.autograd.Function):
    """states = act(U h_{t-1} + drive_t), U the circular convolution with taps (K, C, C).

    drive (T, B, C N) includes every bias; h0 (B, C N); returns the states (T, B, C N).
    """

    @staticmethod
    def forward(ctx, drive: Tensor, h0: Tensor, taps: Tensor, activation: str) -> Tensor:
        steps, batch, hidden = drive.shape
        n_ch, pad = taps.shape[1], taps.shape[0] // 2
        n_hid = hidden // n_ch
        states = drive.new_empty(steps, batch, hidden)
        rings = drive.new_empty(steps + 1, n_ch, n_hid + 2 * pad, batch)
        z = drive.new_empty(hidden, batch)
        load_(rings[0], h0, z)
        for t in range(steps):
            z.copy_(drive[t].t())
            ring_step_(z.view(n_ch, -1), taps, rings[t], transpose=False)
            activate_(z, activation)
            states[t].copy_(z.t())
            store_(rings[t + 1], z, pad)
        ctx.save_for_backward(rings, taps)
        ctx.activation = activation
        return states

    @staticmethod
    def backward(ctx, grad_states: Tensor):
        rings, taps = ctx.saved_tensors
        steps, n_ch, width, batch = rings.shape[0] - 1, *rings.shape[1:]
        pad = taps.shape[0] // 2
        n_hid = width - 2 * pad
        grad_drive = grad_states.new_empty(steps, batch, n_ch * n_hid)
        want_taps = ctx.needs_input_grad[2]
        grad_taps = torch.zeros_like(taps) if want_taps else None
        dz = grad_states.new_empty(n_ch * n_hid, batch)
        rows = grad_states.new_empty(batch, n_ch * n_hid)
        dz_rings = [rings.new_empty(n_ch, width, batch) for _ in range(2)]
        for t in range(steps - 1, -1, -1):
            dz.copy_(rows.copy_(grad_states[t]).t())
            if t + 1 < steps:
                ring_step_(dz.view(n_ch, -1), taps, dz_rings[1], transpose=True)
            times_derivative_(
                dz.view(n_ch, n_hid, batch), rings[t + 1, :, pad : pad + n_hid], ctx.activation
            )
            grad_drive[t].copy_(dz.t())
            store_(dz_rings[0], dz, pad)
            if want_taps:
                add_tap_grads_(grad_taps, dz.view(n_ch, -1), rings[t])
            dz_rings.reverse()
        grad_h0 = None
        if ctx.needs_input_grad[1]:
            dz.zero_()
            ring_step_(dz.view(n_ch, -1), taps, dz_rings[1], transpose=True)
            grad_h0 = dz.t()
        return grad_drive, grad_h0, grad_taps, None


def ring_recurrence(drive: Tensor, h0: Tensor, kernel: Tensor, activation: str) -> Tensor:
    """States (B, T, C N), a time-major view like torch.nn.RNN's, for drive (T, B, C N) (with
    every bias), h0 (B, C N) and the Conv1d kernel (C, C, K)."""
    taps = kernel.permute(2, 0, 1).contiguous()
    return RingRecurrence.apply(drive, h0, taps, activation).transpose(0, 1)
