"""The wRNN recurrence with a hand-written BPTT: small GEMMs per kernel tap per step, no graph.

Layout: a step is computed batch innermost, in a step buffer (C, N + 2p, B) (p = K // 2) with p
circular halo cells on each side of each ring, and stored into the states (B, T, C, N), batch
first and contiguous like torch.nn.GRU(batch_first=True)'s output; the backward reads each
step's states and gradient back into step buffers. A state shifted by a kernel tap is a column
window of a (C, (N + 2p) B) matrix, so a step of the circular convolution is K GEMMs
(C x C) @ (C x N B) on strided views, without copies. The input projection runs inside the
loop, straight into the state being computed, and the backward walks the steps with rolling
step buffers, accumulating every weight and input gradient while the step is in cache: besides
the output and the input gradient nothing of full (B, T, H) size is allocated, so no fresh pages
fault inside the loop.
"""

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .activations import activate_, times_derivative_


def fill_halo_(step: Tensor, pad: int) -> None:
    """Copy each ring's ends into the circular halo cells of a step buffer (C, N + 2 pad, B)."""
    if pad:
        step[:, :pad].copy_(step[:, -2 * pad : -pad])
        step[:, -pad:].copy_(step[:, pad : 2 * pad])


def load_(step: Tensor, state: Tensor, pad: int) -> None:
    """Write a state (C, N, B) into a step buffer's interior and fill its halo."""
    step[:, pad : step.shape[1] - pad] = state
    fill_halo_(step, pad)


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
    def add_weight_grad_(grad: Tensor, dz: Tensor, step: Tensor) -> None:
        """grad[k] += dz (C, N B) @ (tap-k window of the halo-filled state h_{t-1})^T."""
        n_hid = step.shape[1] - grad.shape[0] + 1
        dz = dz.view(dz.shape[0], -1)
        for k, tap_grad in enumerate(grad):
            tap_grad.addmm_(dz, window(step, k, n_hid).t())


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
    def add_weight_grad_(grad: Tensor, dz: Tensor, step: Tensor) -> None:
        """grad[k, n] += dz[:, n] (C x B) @ (h_{t-1}[:, n + k - p])^T (B x C)."""
        n_hid = dz.shape[1]
        for k, tap_grad in enumerate(grad):
            tap_grad.baddbmm_(dz.transpose(0, 1), step[:, k : k + n_hid].permute(1, 2, 0))


class RingRecurrence(torch.autograd.Function):
    """states = act(U h_{t-1} + V x_t + bias), U a ring operator given by taps and ops.

    x (B, T, I); h0 (B, C, N); input_weight V (C N, I); drive_bias (C N,) holds every bias;
    ops is TiedTaps or LocalTaps; returns the states (B, T, C, N) and, as its own output, the
    last state (B, C N), so that a loss on the last state alone sends no full-size gradient
    (grad_states is then None). The input projection runs step by step into the state being
    computed, so no full-size drive tensor exists. A state's view in the step layout:
    `step_view`.
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
        states = x.new_empty(batch, steps, n_ch, n_hid)
        h0 = h0.permute(1, 2, 0)
        prev, cur = (x.new_empty(n_ch, n_hid + 2 * pad, batch) for _ in range(2))
        load_(prev, h0, pad)
        bias = drive_bias[:, None]
        z = x.new_empty(n_ch, n_hid, batch)
        for t in range(steps):
            torch.addmm(bias, input_weight, x[:, t].t(), out=z.view(-1, batch))
            ops.convolve_(z, taps, prev)
            activate_(z, activation)
            step_view(states, t).copy_(z)
            load_(cur, z, pad)
            prev, cur = cur, prev
        ctx.save_for_backward(x, h0, input_weight, states, taps)
        ctx.activation, ctx.ops = activation, ops
        ctx.set_materialize_grads(False)
        return states, last_state(states)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states: Tensor | None, grad_last: Tensor | None):
        x, h0, input_weight, states, taps = ctx.saved_tensors
        batch, steps, n_ch, n_hid = states.shape
        pad = taps.shape[0] // 2
        grads = InputGrads(ctx, x, input_weight)
        grad_taps = torch.zeros_like(taps) if ctx.needs_input_grad[4] else None
        adjoint = ctx.ops.adjoint(taps)
        dz = states.new_empty(n_ch, n_hid, batch)
        later, here, before = (states.new_empty(n_ch, n_hid + 2 * pad, batch) for _ in range(3))
        for t in range(steps - 1, -1, -1):
            step_grad_(dz, grad_states, grad_last if t == steps - 1 else None, t)
            if t + 1 < steps:
                ctx.ops.convolve_transposed_(dz, adjoint, later)
            times_derivative_(dz, step_view(states, t), ctx.activation)
            load_(here, dz, pad)
            grads.add_(t, dz.view(-1, batch))
            if grad_taps is not None:
                load_(before, step_view(states, t - 1) if t else h0, pad)
                ctx.ops.add_weight_grad_(grad_taps, dz, before)
            later, here = here, later
        grad_h0 = None
        if ctx.needs_input_grad[1]:
            grad_h0 = states.new_zeros(n_ch, n_hid, batch)
            ctx.ops.convolve_transposed_(grad_h0, adjoint, later)
            grad_h0 = grad_h0.permute(2, 0, 1)
        return grads.x, grad_h0, grads.weight, grads.bias, grad_taps, None, None


class InputGrads:
    """Gradients of x (B, T, I), V and the drive bias, accumulated from each step's dz (H, B).

    The products are taken in the orientation with the wide dimension last ((I x H) @ (H x B),
    (I x B) @ (B x H)): MKL runs the other one, a result only I columns wide, 4-10x slower.
    """

    def __init__(self, ctx, x: Tensor, input_weight: Tensor) -> None:
        want_x, _, want_weight, want_bias = ctx.needs_input_grad[:4]
        self.weight_t, self.inputs = input_weight.t(), x
        self.x = torch.zeros_like(x) if want_x else None
        self.weight_t_grad = torch.zeros_like(self.weight_t) if want_weight else None
        self.bias = x.new_zeros(input_weight.shape[0]) if want_bias else None
        self.ones = x.new_ones(x.shape[0])

    def add_(self, t: int, dz: Tensor) -> None:
        if self.x is not None:
            self.x[:, t] += (self.weight_t @ dz).t()
        if self.weight_t_grad is not None:
            self.weight_t_grad.addmm_(self.inputs[:, t].t(), dz.t())
        if self.bias is not None:
            self.bias.addmv_(dz, self.ones)

    @property
    def weight(self) -> Tensor | None:
        return None if self.weight_t_grad is None else self.weight_t_grad.t()


def step_view(states: Tensor, t: int) -> Tensor:
    """Step t of the states (B, T, C, N) as a (C, N, B) view, the step buffers' layout."""
    return states[:, t].permute(1, 2, 0)


def last_state(states: Tensor) -> Tensor:
    """The last of the states (B, T, C, N) as a new (B, C N) tensor."""
    return states[:, -1].flatten(1).clone(memory_format=torch.contiguous_format)


def step_grad_(dz: Tensor, grad_states: Tensor | None, grad_last: Tensor | None, t: int) -> None:
    """dz (C, N, B) = dL/dh_t from the gradient of the states (B, T, C, N) and grad_last, the
    gradient of the last state (B, C N) (None unless t is the last step); either may be None
    (not used by the loss)."""
    if grad_states is None:
        dz.zero_()
    else:
        dz.copy_(step_view(grad_states, t))
    if grad_last is not None:
        dz += grad_last.t().reshape(dz.shape)


def ring_recurrence(
    x: Tensor, h0: Tensor, input_weight: Tensor, drive_bias: Tensor, taps: Tensor, activation: str
) -> tuple[Tensor, Tensor]:
    """States (B, T, C N) of a ring network for inputs x (B, T, I), contiguous, and the last
    state (B, C N).

    input_weight (C N, I) is V; drive_bias (C N,) is V's bias plus the ring bias of every unit;
    taps is (K, C, C) for the wRNN's tied kernel or (K, N, C, C) for untied (local) weights;
    h0 is (B, C N).
    """
    batch = x.shape[0]
    n_ch = taps.shape[-1]
    ops = LocalTaps if taps.dim() == 4 else TiedTaps
    states, last = RingRecurrence.apply(
        x, h0.view(batch, n_ch, -1), input_weight, drive_bias, taps.contiguous(), activation, ops
    )
    return batch_first(states), last


def batch_first(states: Tensor) -> Tensor:
    """States (B, T, C, N) as the layer's (B, T, C N) output, a view."""
    return states.flatten(2)
