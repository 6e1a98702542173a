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
from torch.autograd.function import once_differentiable

from .activation_grad import activate_, times_derivative_


def fill_halo_(step: Tensor, pad: int) -> None:
    """Copy each ring's ends into the circular halo cells of a step buffer (C, N + 2 pad, B)."""
    if pad:
        step[:, :pad].copy_(step[:, -2 * pad : -pad])
        step[:, -pad:].copy_(step[:, pad : 2 * pad])


def window(step: Tensor, start: int, n_hid: int) -> Tensor:
    """Positions start..start+N of a step buffer (C, N + 2p, B) as a (C, N B) matrix view."""
    return step[:, start : start + n_hid].flatten(1)


class TiedTaps:
    """The wRNN's circular convolution: taps (K, C, C) shared by every ring position."""

    @staticmethod
    def convolve_(out: Tensor, taps: Tensor, step: Tensor) -> None:
        """out (C, N, B) += U h for the halo-filled state h of a step buffer."""
        n_hid = out.shape[1]
        out = out.view(out.shape[0], -1)
        for k, tap in enumerate(taps):
            out.addmm_(tap, window(step, k, n_hid))

    @staticmethod
    def adjoint(taps: Tensor) -> Tensor:
        """The taps of U^T, read at mirrored windows by convolve_transposed_."""
        return taps.transpose(1, 2)

    @staticmethod
    def convolve_transposed_(out: Tensor, adjoint: Tensor, step: Tensor) -> None:
        """out (C, N, B) += U^T g for the halo-filled gradient g of a step buffer."""
        n_taps, n_hid = adjoint.shape[0], out.shape[1]
        out = out.flatten(1)
        for k, tap in enumerate(adjoint):
            out.addmm_(tap, window(step, n_taps - 1 - k, n_hid))

    @staticmethod
    def weight_grad(grad_rings: Tensor, rings: Tensor, taps: Tensor) -> Tensor:
        """dU_k = sum over steps of dz_t (h_{t-1} shifted by tap k)^T, one GEMM per tap.

        grad_rings (C, T, N + 2p, B) must have zero halos; in the flattened buffers the state
        that meets dz at a given place sits (k - p) B places further on, one step earlier.
        """
        n_ch, steps, width, batch = grad_rings.shape
        n_taps = taps.shape[0]
        pad, length = n_taps // 2, steps * width * batch
        dz = grad_rings.view(n_ch, -1)[:, pad * batch : length - pad * batch]
        flat, span = rings.view(n_ch, -1), dz.shape[1]
        return torch.stack([dz @ flat[:, k * batch : k * batch + span].t() for k in range(n_taps)])


class LocalTaps:
    """LocalRNN's untied neighbourhood: taps (K, N, C, C), one (C, C) block per ring position."""

    @staticmethod
    def convolve_(out: Tensor, taps: Tensor, step: Tensor) -> None:
        """out (C, N, B) += U h, a batched GEMM over ring positions per tap."""
        n_hid = out.shape[1]
        for k, tap in enumerate(taps):
            out.transpose(0, 1).baddbmm_(tap, step[:, k : k + n_hid].transpose(0, 1))

    @staticmethod
    def adjoint(taps: Tensor) -> Tensor:
        """U^T's blocks: position m of tap k takes the transposed block of position m - k + p."""
        pad = taps.shape[0] // 2
        return torch.stack(
            [tap.roll(k - pad, dims=0).transpose(1, 2) for k, tap in enumerate(taps)]
        )

    @staticmethod
    def convolve_transposed_(out: Tensor, adjoint: Tensor, step: Tensor) -> None:
        """out (C, N, B) += U^T g for the halo-filled gradient g of a step buffer."""
        n_taps, n_hid = adjoint.shape[0], out.shape[1]
        for k, tap in enumerate(adjoint):
            start = n_taps - 1 - k
            out.transpose(0, 1).baddbmm_(tap, step[:, start : start + n_hid].transpose(0, 1))

    @staticmethod
    def weight_grad(grad_rings: Tensor, rings: Tensor, taps: Tensor) -> Tensor:
        """dU[k, n] = sum over steps and batch of dz_t[:, n] (h_{t-1}[:, n + k - p])^T."""
        pad, n_hid = taps.shape[0] // 2, taps.shape[1]
        grad = torch.zeros_like(taps)
        for t in range(grad_rings.shape[1]):
            dz = grad_rings[:, t, pad : pad + n_hid].transpose(0, 1)
            for k in range(taps.shape[0]):
                grad[k].baddbmm_(dz, rings[:, t, k : k + n_hid].permute(1, 2, 0))
        return grad


class RingRecurrence(torch.autograd.Function):
    """states = act(U h_{t-1} + V x_t + bias), U a ring operator given by taps and ops.

    x (B, T, I); h0 (B, C, N); input_weight V (C N, I); drive_bias (C N,) holds every bias;
    ops is TiedTaps or LocalTaps; returns the states (T, C, N, B). The input projection runs
    step by step into the state being computed, so no full-size drive tensor exists.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        h0: Tensor,
        input_weight: Tensor,
        drive_bias: Tensor,
        taps: Tensor,
        activation: str,
        ops,
    ) -> Tensor:
        batch, steps, _ = x.shape
        n_ch, n_hid = h0.shape[1:]
        pad = taps.shape[0] // 2
        states = x.new_empty(steps, n_ch, n_hid, batch)
        rings = x.new_empty(n_ch, steps + 1, n_hid + 2 * pad, batch)
        rings[:, 0, pad : pad + n_hid] = h0.permute(1, 2, 0)
        fill_halo_(rings[:, 0], pad)
        bias = drive_bias[:, None]
        for t in range(steps):
            z = states[t]
            torch.addmm(bias, input_weight, x[:, t].t(), out=z.view(-1, batch))
            ops.convolve_(z, taps, rings[:, t])
            activate_(z, activation)
            rings[:, t + 1, pad : pad + n_hid] = z
            fill_halo_(rings[:, t + 1], pad)
        ctx.save_for_backward(x, input_weight, rings, taps)
        ctx.activation, ctx.ops = activation, ops
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states: Tensor):
        x, input_weight, rings, taps = ctx.saved_tensors
        n_ch, steps, width, batch = rings.shape
        steps, pad = steps - 1, taps.shape[0] // 2
        n_hid = width - 2 * pad
        grad_rings = rings.new_empty(n_ch, steps, width, batch)
        grad_drive = rings.new_empty(steps, n_ch, n_hid, batch)
        adjoint = ctx.ops.adjoint(taps)
        for t in range(steps - 1, -1, -1):
            dz = grad_rings[:, t, pad : pad + n_hid]
            dz.copy_(grad_states[t])
            if t + 1 < steps:
                ctx.ops.convolve_transposed_(dz, adjoint, grad_rings[:, t + 1])
            times_derivative_(dz, rings[:, t + 1, pad : pad + n_hid], ctx.activation)
            grad_drive[t] = dz
            fill_halo_(grad_rings[:, t], pad)
        grads = input_grads(ctx, grad_drive.flatten(1, 2), x, input_weight)
        grad_h0 = grad_taps = None
        if ctx.needs_input_grad[1]:
            grad_h0 = rings.new_zeros(n_ch, n_hid, batch)
            ctx.ops.convolve_transposed_(grad_h0, adjoint, grad_rings[:, 0])
            grad_h0 = grad_h0.permute(2, 0, 1)
        if ctx.needs_input_grad[4]:
            if pad:
                grad_rings[:, :, :pad] = 0.0
                grad_rings[:, :, -pad:] = 0.0
            grad_taps = ctx.ops.weight_grad(grad_rings, rings, taps)
        return grads[0], grad_h0, grads[1], grads[2], grad_taps, None, None


def input_grads(ctx, grad_drive: Tensor, x: Tensor, input_weight: Tensor) -> list:
    """Gradients of x, V and the drive bias from the drive's gradient (T, H, B), where needed."""
    grad_x = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_x = torch.matmul(input_weight.t(), grad_drive).permute(2, 0, 1)
    if ctx.needs_input_grad[2]:
        grad_weight = torch.bmm(grad_drive, x.transpose(0, 1)).sum(0)
    if ctx.needs_input_grad[3]:
        grad_bias = grad_drive.sum((0, 2))
    return [grad_x, grad_weight, grad_bias]


def ring_recurrence(
    x: Tensor, h0: Tensor, input_weight: Tensor, drive_bias: Tensor, taps: Tensor, activation: str
) -> Tensor:
    """States (B, T, C N) of a ring network for inputs x (B, T, I), a view of time-major storage.

    input_weight (C N, I) is V; drive_bias (C N,) is V's bias plus the ring bias of every unit;
    taps is (K, C, C) for the wRNN's tied kernel or (K, N, C, C) for untied (local) weights;
    h0 is (B, C N).
    """
    batch, steps, _ = x.shape
    n_ch, hidden = taps.shape[-1], input_weight.shape[0]
    ops = LocalTaps if taps.dim() == 4 else TiedTaps
    states = RingRecurrence.apply(
        x, h0.view(batch, n_ch, -1), input_weight, drive_bias, taps.contiguous(), activation, ops
    )
    return states.view(steps, hidden, batch).permute(2, 0, 1)
