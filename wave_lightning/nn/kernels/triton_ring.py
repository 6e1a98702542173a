"""The wRNN recurrence as fused Triton kernels: one program per sequence runs every step on chip.

Each program keeps its (C, N) state in registers, reads the K circularly shifted copies of the
previous state back from the output it has just written (cached on chip), and does each tap as
one tl.dot of (C x C) @ (C x N), padded to 16. The backward walks the steps in reverse the same
way and accumulates its (K, C, C) weight gradient per program; the host sums the programs.
Imports without Triton or CUDA; `available()` says whether the kernels can run. Under
TRITON_INTERPRET=1 (set before this module is imported) they run on the CPU, for tests.
"""

import os

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .activations import ACTIVATION_CODES

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - Triton ships with torch on Linux
    triton = None


def interpreted() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available(x: Tensor) -> bool:
    """Whether the kernels can run on x's device here."""
    return triton is not None and (x.is_cuda or interpreted())


if triton is not None:

    @triton.jit
    def _activate(z, act: tl.constexpr):
        if act == 0:
            z = tl.maximum(z, 0.0)
        elif act == 1:
            z = 2.0 * tl.sigmoid(2.0 * z) - 1.0
        return z

    @triton.jit
    def _derivative(h, act: tl.constexpr):
        if act == 0:
            d = (h > 0.0).to(h.dtype)
        elif act == 1:
            d = 1.0 - h * h
        else:
            d = tl.full(h.shape, 1.0, h.dtype)
        return d

    @triton.jit
    def _ring_forward(
        drive_ptr, buf_ptr, w_ptr, steps,
        C: tl.constexpr, N: tl.constexpr, K: tl.constexpr,
        BC: tl.constexpr, BN: tl.constexpr, ACT: tl.constexpr,
    ):  # fmt: skip
        """buf[b, t + 1] = act(drive[b, t] + conv(buf[b, t])); buf[b, 0] holds h0."""
        b = tl.program_id(0)
        c = tl.arange(0, BC)
        n = tl.arange(0, BN)
        mask = (c[:, None] < C) & (n[None, :] < N)
        wmask = (c[:, None] < C) & (c[None, :] < C)
        rows = c[:, None] * N
        for t in range(steps):
            z = tl.load(drive_ptr + (b * steps + t) * C * N + rows + n[None, :], mask, other=0.0)
            prev = buf_ptr + (b * (steps + 1) + t) * C * N
            for k in tl.static_range(K):
                shifted = (n + (k - K // 2) + N) % N
                h = tl.load(prev + rows + shifted[None, :], mask, other=0.0)
                w = tl.load(w_ptr + k * C * C + c[:, None] * C + c[None, :], wmask, other=0.0)
                z += tl.dot(w, h, input_precision="ieee")
            z = _activate(z, ACT)
            tl.store(prev + C * N + rows + n[None, :], z, mask)
            tl.debug_barrier()

    @triton.jit
    def _ring_backward(
        grad_ptr, buf_ptr, w_ptr, dz_ptr, dh0_ptr, dw_ptr, steps,
        C: tl.constexpr, N: tl.constexpr, K: tl.constexpr,
        BC: tl.constexpr, BN: tl.constexpr, ACT: tl.constexpr,
    ):  # fmt: skip
        """dz[b, t] = (grad[b, t] + U^T dz[b, t + 1]) act'(h_t), dz[b, steps] = 0; per-program
        weight gradient dw[b] and dh0[b] = U^T dz[b, 0]."""
        b = tl.program_id(0)
        c = tl.arange(0, BC)
        n = tl.arange(0, BN)
        mask = (c[:, None] < C) & (n[None, :] < N)
        wmask = (c[:, None] < C) & (c[None, :] < C)
        rows = c[:, None] * N
        for s in range(steps + 1):
            t = steps - 1 - s  # t = -1 computes dh0 from dz[b, 0]
            later = dz_ptr + (b * (steps + 1) + t + 1) * C * N
            g = tl.zeros((BC, BN), dtype=dz_ptr.dtype.element_ty)
            for k in tl.static_range(K):
                shifted = (n - (k - K // 2) + N) % N
                d = tl.load(later + rows + shifted[None, :], mask, other=0.0)
                wt = tl.load(w_ptr + k * C * C + c[None, :] * C + c[:, None], wmask, other=0.0)
                g += tl.dot(wt, d, input_precision="ieee")
            if t >= 0:
                here = (b * steps + t) * C * N + rows + n[None, :]
                g += tl.load(grad_ptr + here, mask, other=0.0)
                state = buf_ptr + (b * (steps + 1) + t) * C * N
                h = tl.load(state + C * N + rows + n[None, :], mask, other=0.0)
                dz = g * _derivative(h, ACT)
                tl.store(later - C * N + rows + n[None, :], dz, mask)
                for k in tl.static_range(K):
                    shifted = (n + (k - K // 2) + N) % N
                    hk = tl.load(state + rows + shifted[None, :], mask, other=0.0)
                    part = dw_ptr + (b * K + k) * C * C + c[:, None] * C + c[None, :]
                    acc = tl.load(part, wmask, other=0.0)
                    acc += tl.dot(dz, tl.trans(hk), input_precision="ieee")
                    tl.store(part, acc, wmask)
            else:
                tl.store(dh0_ptr + b * C * N + rows + n[None, :], g, mask)
            tl.debug_barrier()


def _launch_args(n_ch: int, n_hid: int, taps: Tensor, activation: str) -> dict:
    return {
        "C": n_ch,
        "N": n_hid,
        "K": taps.shape[0],
        "BC": max(16, triton.next_power_of_2(n_ch)),
        "BN": max(16, triton.next_power_of_2(n_hid)),
        "ACT": ACTIVATION_CODES[activation],
    }


class TritonRingRecurrence(torch.autograd.Function):
    """states (B, T, C N) = act(U h_{t-1} + drive_t) by the fused kernels; taps (K, C, C)."""

    @staticmethod
    def forward(ctx, drive: Tensor, h0: Tensor, taps: Tensor, activation: str) -> Tensor:
        batch, steps, hidden = drive.shape
        n_ch = taps.shape[1]
        buf = drive.new_empty(batch, steps + 1, hidden)
        buf[:, 0] = h0
        meta = _launch_args(n_ch, hidden // n_ch, taps, activation)
        _ring_forward[(batch,)](drive.contiguous(), buf, taps, steps, **meta)
        ctx.save_for_backward(buf, taps)
        ctx.meta = meta
        return buf[:, 1:]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states: Tensor):
        buf, taps = ctx.saved_tensors
        batch, steps, hidden = buf.shape[0], buf.shape[1] - 1, buf.shape[2]
        dz = buf.new_empty(batch, steps + 1, hidden)
        dz[:, steps] = 0.0
        dh0 = buf.new_empty(batch, hidden)
        dw = buf.new_zeros(batch, *taps.shape)
        _ring_backward[(batch,)](
            grad_states.contiguous(), buf, taps, dz, dh0, dw, steps, **ctx.meta
        )
        grad_taps = dw.sum(0) if ctx.needs_input_grad[2] else None
        return dz[:, :steps], dh0, grad_taps, None


def triton_ring_recurrence(drive: Tensor, h0: Tensor, kernel: Tensor, activation: str) -> Tensor:
    """States (B, T, C N) for drive (B, T, C N) (with every bias), h0 (B, C N), kernel (C, C, K)."""
    if not available(drive):
        raise RuntimeError("impl='triton' needs Triton and a CUDA tensor (or TRITON_INTERPRET=1)")
    taps = kernel.permute(2, 0, 1).contiguous()
    return TritonRingRecurrence.apply(drive, h0, taps, activation)
