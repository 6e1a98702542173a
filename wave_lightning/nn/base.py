"""What the simple recurrent layers share: input projection, activation, freezing, checks."""

from torch import Tensor, nn

from .init import init_input_
from .options import ACTIVATIONS, check_choice, check_positive, check_sequence, check_state
from .recurrence import reference_recurrence


class SimpleRecurrence(nn.Module):
    """h_t = act(recurrent(h_{t-1}) + input(x_t)), batch first, like torch.nn.RNN.

    Subclasses set `self.recurrent`, a module mapping (B, H) states to U h + b_U.
    Hidden units form rings of `ring_size` consecutive units; the single input init feeds
    unit 0 of each ring.
    """

    recurrent: nn.Module

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        ring_size: int,
        input_init: str,
        activation: str,
        freeze_input: bool,
    ) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = hidden_size
        self.activation_name = check_choice("activation", activation, ACTIVATIONS)
        self.activation = ACTIVATIONS[activation]
        self.input = nn.Linear(input_size, hidden_size)
        init_input_(self.input, input_init, ring_size)
        self.input.requires_grad_(not freeze_input)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, input_size) -> (states (B, T, hidden_size), last state (B, hidden_size))."""
        check_sequence(x, self.input_size)
        if h0 is None:
            h0 = x.new_zeros(x.shape[0], self.hidden_size)
        check_state(h0, x.shape[0], self.hidden_size)
        output = self.recurrence(self.input(x), h0)
        return output, output[:, -1]

    def recurrence(self, drive: Tensor, h0: Tensor) -> Tensor:
        """States for a precomputed input drive (B, T, H); the reference form."""
        return reference_recurrence(drive, h0, self.recurrent, self.activation)
