"""What the simple recurrent layers share: input projection, activation, freezing, checks."""

from torch import Tensor, nn

from .init import init_input_
from .kernels.reference import reference_recurrence
from .options import ACTIVATIONS, check_choice, check_positive, check_sequence, check_state

IMPLS = ("auto", "reference", "fast", "cpp", "triton", "parallel")


class SimpleRecurrence(nn.Module):
    """h_t = act(recurrent(h_{t-1}) + input(x_t)), batch first, like torch.nn.RNN.

    Subclasses set `self.recurrent`, a module mapping (B, H) states to U h + b_U, and may offer
    a fast form of the same recurrence (`fast_recurrence`, listed in `fast_impls`). The attribute
    `impl` picks the form: "auto" (default: see `resolve_impl`), "reference" (the per-step loop
    every fast form is tested against), "fast" (the hand-written BPTT in eager PyTorch, any
    device), "cpp" (the time loop as a compiled C++ extension, ring layers on the CPU) or
    "triton" (fused GPU kernels, WaveRNN only; opt-in until it has been measured on a GPU) or
    "parallel" (the linear ring as a state-space model, in parallel over time by FFT: WaveRNN
    with the identity activation only; docs/state-space.md).
    `impl` is a constructor argument (so a config can set it) but no part of the state dict: a
    checkpoint written under one form loads under any other.
    Hidden units form rings of `ring_size` consecutive units; the single input init feeds
    unit 0 of each ring.
    """

    recurrent: nn.Module
    fast_impls: tuple[str, ...] = ()

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        ring_size: int,
        input_init: str,
        activation: str,
        freeze_input: bool,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = hidden_size
        self.activation_name = check_choice("activation", activation, ACTIVATIONS)
        self.activation = ACTIVATIONS[activation]
        self.input = nn.Linear(input_size, hidden_size)
        init_input_(self.input, input_init, ring_size)
        self.input.requires_grad_(not freeze_input)
        self.impl = impl

    @property
    def impl(self) -> str:
        """Which form of the recurrence forward runs: auto, reference, fast, cpp, triton or
        parallel."""
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        check_choice("impl", value, IMPLS)
        if value not in ("auto", "reference", *self.fast_impls):
            raise ValueError(f"{type(self).__name__} has no impl={value!r} form")
        if value == "parallel" and self.activation_name != "identity":
            raise ValueError(
                f"impl='parallel' needs activation='identity' (a linear ring), "
                f"got activation={self.activation_name!r}"
            )
        self._impl = value

    def resolve_impl(self, x: Tensor) -> str:
        """The form forward runs for input x: `impl`, with "auto" resolved ("fast" where the
        layer has it, else "reference"; WaveRNN may pick "cpp")."""
        if self.impl != "auto":
            return self.impl
        return "fast" if "fast" in self.fast_impls else "reference"

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, input_size) -> (states (B, T, hidden_size), last state (B, hidden_size))."""
        h0 = self.initial_state(x, h0)
        impl = self.resolve_impl(x)
        if impl == "reference":
            output = self.recurrence(self.input(x), h0)
            return output, output[:, -1]
        return self.fast_recurrence(x, h0, impl)

    def initial_state(self, x: Tensor, h0: Tensor | None) -> Tensor:
        """h0, zeros if None, once x and h0 are checked (a clear error for a wrong shape)."""
        check_sequence(x, self.input_size)
        if h0 is None:
            h0 = x.new_zeros(x.shape[0], self.hidden_size)
        check_state(h0, x.shape[0], self.hidden_size)
        return h0

    def last_state(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        """The last state (B, hidden_size) alone, for a model that reads nothing else: forms
        that can skip writing the states of every step do (the C++ one)."""
        return self(x, h0)[1]

    def read_every_step(
        self, x: Tensor, readout: nn.Linear, h0: Tensor | None = None
    ) -> Tensor | None:
        """readout(h_t) of every step as (T, out, B), fused into the recurrence by the forms
        that can (the C++ one), or None: then the caller reads the states."""
        return None

    def recurrence(self, drive: Tensor, h0: Tensor) -> Tensor:
        """States for a precomputed input drive (B, T, H); the reference form."""
        return reference_recurrence(drive, h0, self.recurrent, self.activation)

    def fast_recurrence(self, x: Tensor, h0: Tensor, impl: str) -> tuple[Tensor, Tensor]:
        """States (B, T, H) and the last state (B, H), a tensor of its own (so that a loss on
        it alone sends no full-size gradient), for inputs x by the fast form `impl`."""
        raise NotImplementedError(f"{type(self).__name__} has no fast form")
