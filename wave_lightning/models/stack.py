"""A deep residual stack of recurrent layers, as in the S4 / LRU line of work.

encoder -> n_layers x (norm, layer, output mixing, dropout, residual) -> pool; the task's
readout is the decoder. The stack has the layers' own API, so it goes wherever a layer goes
(a task's `layer`).
"""

from collections.abc import Callable

from torch import Tensor, nn

from ..nn.options import check_choice, check_positive, check_sequence

NORMS = ("layer", "batch", "none")
POOLS = ("last", "mean")
MIXINGS = ("none", "gelu", "glu")


class FeatureBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the last dimension of (B, T, D): statistics over batch and time."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def make_norm(kind: str, width: int) -> nn.Module:
    """The normalisation `kind` of `width` features: layer, batch or none (the identity)."""
    check_choice("norm", kind, NORMS)
    if kind == "layer":
        return nn.LayerNorm(width)
    return FeatureBatchNorm(width) if kind == "batch" else nn.Identity()


def make_output(mixing: str, hidden: int, d_model: int) -> nn.Module:
    """What maps a layer's states back to d_model features.

    none: a Linear only when hidden != d_model (else the identity); gelu: GELU, then a Linear;
    glu: GELU, then a Linear to 2 * d_model and a GLU (the S4D and LRU papers' block, which
    gives their channel-wise linear layers the channel mixing and nonlinearity they lack).
    """
    check_choice("mixing", mixing, MIXINGS)
    if mixing == "glu":
        return nn.Sequential(nn.GELU(), nn.Linear(hidden, 2 * d_model), nn.GLU(dim=-1))
    if mixing == "gelu":
        return nn.Sequential(nn.GELU(), nn.Linear(hidden, d_model))
    return nn.Linear(hidden, d_model) if hidden != d_model else nn.Identity()


class ResidualBlock(nn.Module):
    """One block: x + dropout(project(layer(norm(x)))) (prenorm) or norm(x + dropout(...)).

    `project` maps the layer's hidden_size back to d_model (see make_output); without
    `residual` the block's output is the dropped-out projection alone.
    """

    def __init__(
        self,
        layer: nn.Module,
        width: int,
        d_model: int,
        norm: str,
        prenorm: bool,
        dropout: float,
        residual: bool,
        mixing: str = "none",
    ) -> None:
        super().__init__()
        self.layer, self.prenorm, self.residual = layer, prenorm, residual
        self.norm = make_norm(norm, width if prenorm else d_model)
        self.project = make_output(mixing, layer.hidden_size, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        z = self.norm(x) if self.prenorm else x
        z = self.dropout(self.project(self.layer(z)[0]))
        z = x + z if self.residual else z
        return z if self.prenorm else self.norm(z)


class ResidualStack(nn.Module):
    """encoder -> n_layers residual blocks of `layer` -> final norm (prenorm only) -> pool.

    `layer` builds one recurrent layer from its input size: a config gives its class_path and
    init_args without input_size (as for an optimizer); in Python, e.g.
    `functools.partial(WaveRNN, n_hid=32, n_ch=2)`. Each of the n_layers layers is built by its
    own call, so each is initialised independently. mixing: what follows each layer (see
    make_output; "glu" for S4D and LRU as published). encoder: Linear(input_size, d_model), else
    the first layer reads the input itself (a residual then needs input_size == d_model).
    forward returns (output (B, T, d_model), pooled (B, d_model)): the last block's sequence and
    its last step (pool "last") or its mean over time (pool "mean"), which a task's readout
    reads as a layer's last state. Every layer starts from zero states: h0 must be None.
    Dropout draws its mask in the memory order of what it drops: where a layer's output goes to
    dropout unprojected, two forms of the layer that store states differently draw different
    masks from the same seed.
    """

    def __init__(
        self,
        input_size: int,
        layer: Callable[[int], nn.Module],
        d_model: int = 64,
        n_layers: int = 2,
        encoder: bool = True,
        norm: str = "layer",
        prenorm: bool = True,
        dropout: float = 0.0,
        residual: bool = True,
        pool: str = "last",
        mixing: str = "none",
    ) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = check_positive("d_model", d_model)
        check_positive("n_layers", n_layers)
        check_choice("norm", norm, NORMS)
        check_choice("mixing", mixing, MIXINGS)
        self.pool = check_choice("pool", pool, POOLS)
        if isinstance(layer, nn.Module) or not callable(layer):
            raise ValueError(
                "layer must build a layer from its input size (class_path and init_args without "
                f"input_size), got {type(layer).__name__}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        width = d_model if encoder else input_size
        if residual and width != d_model:
            raise ValueError(
                "residual=True with encoder=False needs input_size == d_model, "
                f"got input_size={input_size}, d_model={d_model}"
            )
        self.encoder = nn.Linear(input_size, d_model) if encoder else nn.Identity()
        widths = [width] + [d_model] * (n_layers - 1)
        self.blocks = nn.ModuleList(
            ResidualBlock(layer(w), w, d_model, norm, prenorm, dropout, residual, mixing)
            for w in widths
        )
        self.final_norm = make_norm(norm if prenorm else "none", d_model)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, input_size) -> (output (B, T, d_model), pooled output (B, d_model))."""
        if h0 is not None:
            raise ValueError("h0 must be None: every layer of a ResidualStack starts from zeros")
        check_sequence(x, self.input_size)
        z = self.encoder(x)
        for block in self.blocks:
            z = block(z)
        output = self.final_norm(z)
        return output, output[:, -1] if self.pool == "last" else output.mean(1)
