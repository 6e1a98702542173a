"""WaveAnalysis: a Lightning callback that measures and draws the waves every N epochs."""

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from .inputs import first_inputs
from .record import impulse_inputs
from .report import Analysis, analyze, default_max_delay
from .spikes import spike_decoding

INPUTS = ("data", "impulses")


def recurrent_layer(pl_module: LightningModule) -> nn.Module:
    """The recurrent layer of a wave_lightning task (pl_module.model.layer)."""
    layer = getattr(getattr(pl_module, "model", None), "layer", None)
    if not isinstance(layer, nn.Module):
        name = type(pl_module).__name__
        raise TypeError(f"WaveAnalysis needs a wave_lightning task with model.layer, got {name}")
    return layer


class WaveAnalysis(Callback):
    """Every `every_n_epochs` training epochs: record the layer on a small fixed batch (no
    gradient), log waves/speed, waves/wave_speed, waves/score and the onset accuracies, and draw the
    space-time and 2D FFT figures into TensorBoard (when present) and <log_dir>/waves/*.png.

    inputs "data" takes the first `examples` sequences of the DataModule's validation loader;
    "impulses" drives the layer with `impulses` random pulses per sequence of `steps` steps.
    onset_examples 0 skips onset decoding. spike_examples > 0 also decodes spike trains of
    `spikes` spikes per input over `spike_steps` steps (default: onset's delay window) from the
    last state and logs waves/spike_balanced_acc and waves/spike_exact (analysis/spikes.py).
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        inputs: str = "data",
        examples: int = 8,
        steps: int | None = None,
        impulses: int = 3,
        onset_examples: int = 256,
        max_delay: int | None = None,
        max_rings: int = 4,
        seed: int = 0,
        spike_examples: int = 0,
        spikes: int = 2,
        spike_steps: int | None = None,
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
        self.every_n_epochs, self.inputs = every_n_epochs, inputs
        self.examples, self.steps, self.impulses = examples, steps, impulses
        self.onset_examples, self.max_delay = onset_examples, max_delay
        self.max_rings, self.seed = max_rings, seed
        self.spike_examples, self.spikes, self.spike_steps = spike_examples, spikes, spike_steps
        self.batch: Tensor | None = None

    def fixed_batch(self, trainer: Trainer, pl_module: LightningModule) -> Tensor:
        """The batch every analysis of this run uses, drawn once."""
        if self.batch is None:
            if self.inputs == "data":
                self.batch = first_inputs(trainer.datamodule.val_dataloader(), self.examples)
            else:
                layer = recurrent_layer(pl_module)
                steps = self.steps or pl_module.hparams.get("seq_len") or 2 * layer.hidden_size
                generator = torch.Generator().manual_seed(self.seed)
                self.batch = impulse_inputs(
                    self.examples, steps, layer.input_size, self.impulses, generator
                )
        return self.batch

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        layer = recurrent_layer(pl_module)
        batch = self.fixed_batch(trainer, pl_module)
        result = analyze(layer, batch, self.seed, self.onset_examples, self.max_delay)
        metrics = self.metrics(result) | self.spike_metrics(layer)
        pl_module.log_dict(metrics, on_epoch=True, sync_dist=True)
        self.draw(trainer, result)

    def metrics(self, result: Analysis) -> dict[str, float]:
        """waves/speed, waves/wave_speed, waves/score, and the onset accuracies when decoded."""
        summary = result.summary()
        metrics = {f"waves/{name}": summary[name] for name in ("speed", "wave_speed", "score")}
        if result.onset:
            metrics["waves/onset_delay_acc"] = result.onset.delay_accuracy
            metrics["waves/onset_input_acc"] = result.onset.channel_accuracy
        return metrics

    def spike_metrics(self, layer: nn.Module) -> dict[str, float]:
        """waves/spike_balanced_acc and waves/spike_exact, or nothing when spike_examples is 0."""
        if not self.spike_examples:
            return {}
        steps = self.spike_steps or default_max_delay(layer)
        result = spike_decoding(layer, self.spikes, steps, self.spike_examples, seed=self.seed)
        return {
            "waves/spike_balanced_acc": result.balanced_accuracy,
            "waves/spike_exact": result.exact,
        }

    @rank_zero_only
    def draw(self, trainer: Trainer, result: Analysis) -> None:
        """Figures to every TensorBoard logger and as PNGs in <log_dir>/waves/."""
        epoch, step = trainer.current_epoch, trainer.global_step
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "waves"
        folder.mkdir(parents=True, exist_ok=True)
        for name, fig in result.figures(0, self.max_rings, f"epoch {epoch}: ").items():
            fig.savefig(folder / f"{name}_epoch{epoch:04d}.png", dpi=90)
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_figure(f"waves/{name}", fig, step)
