"""The dense (IRNN) recurrence with a hand-written BPTT and the weight gradient in one GEMM.

A step's state is a (B, H) row block of the (B, T, H) output, a strided matrix that BLAS reads
and writes in place, so no layout changes are needed anywhere.
"""

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .activations import activate_, times_derivative_


class DenseRecurrence(torch.autograd.Function):
    """states = act(h_{t-1} W^T + drive_t) for drive (B, T, H) (with every bias), W (H, H), and
    the last state (B, H) as its own output (a last-state loss sends no full-size gradient)."""

    @staticmethod
    def forward(ctx, drive: Tensor, h0: Tensor, weight: Tensor, activation: str):
        states = torch.empty_like(drive, memory_format=torch.contiguous_format)
        weight_t = weight.t()
        for t in range(drive.shape[1]):
            h = states[:, t]
            h.copy_(drive[:, t]).addmm_(h0 if t == 0 else states[:, t - 1], weight_t)
            activate_(h, activation)
        ctx.save_for_backward(states, h0, weight)
        ctx.activation = activation
        ctx.set_materialize_grads(False)
        return states, states[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states: Tensor | None, grad_last: Tensor | None):
        states, h0, weight = ctx.saved_tensors
        steps = states.shape[1]
        grad_drive = torch.empty_like(states)
        for t in range(steps - 1, -1, -1):
            dz = grad_drive[:, t]
            dz.zero_() if grad_states is None else dz.copy_(grad_states[:, t])
            if grad_last is not None and t == steps - 1:
                dz += grad_last
            if t + 1 < steps:
                dz.addmm_(grad_drive[:, t + 1], weight)
            times_derivative_(dz, states[:, t], ctx.activation)
        grad_h0 = grad_drive[:, 0] @ weight if ctx.needs_input_grad[1] else None
        grad_weight = weight_grad(grad_drive, states, h0) if ctx.needs_input_grad[2] else None
        return grad_drive, grad_h0, grad_weight, None


def weight_grad(grad_drive: Tensor, states: Tensor, h0: Tensor) -> Tensor:
    """sum over b, t of dz_t h_{t-1}^T: one GEMM over the rows shifted by one step, plus the
    first steps' dz_0 h0^T. In the shifted rows each sequence's first dz meets the previous
    sequence's last state; those dz rows are zeroed for the GEMM (and put back) rather than the
    products subtracted afterwards, which cancels catastrophically at large state magnitudes."""
    hidden = states.shape[2]
    first = grad_drive[:, 0].clone()
    grad_drive[:, 0] = 0
    rows_dz, rows_h = grad_drive.reshape(-1, hidden), states.reshape(-1, hidden)
    grad = rows_dz[1:].t() @ rows_h[:-1]
    grad_drive[:, 0] = first
    return grad.addmm_(first.t(), h0)


def dense_recurrence(
    drive: Tensor, h0: Tensor, weight: Tensor, activation: str
) -> tuple[Tensor, Tensor]:
    """States (B, T, H) and the last state (B, H) for drive (B, T, H) (with every bias), h0
    (B, H), weight (H, H)."""
    return DenseRecurrence.apply(drive, h0, weight, activation)
