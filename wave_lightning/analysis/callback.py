"""WaveAnalysis: a Lightning callback that measures and draws the waves every N epochs."""

from functools import partial
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from .inputs import driving_inputs, first_inputs
from .options import CALLBACK_DEFAULTS as DEFAULTS
from .options import AnalysisOptions
from .report import Analysis, analyze
from .spikes import spike_decoding


def recurrent_layer(pl_module: LightningModule) -> nn.Module:
    """The recurrent layer of a wave_lightning task (pl_module.model.layer)."""
    layer = getattr(getattr(pl_module, "model", None), "layer", None)
    if not isinstance(layer, nn.Module):
        name = type(pl_module).__name__
        raise TypeError(f"WaveAnalysis needs a wave_lightning task with model.layer, got {name}")
    return layer


def validation_inputs(trainer: Trainer, n: int) -> Tensor:
    """The first n inputs of the trainer's validation loader (the callback's "data")."""
    return first_inputs(trainer.datamodule.val_dataloader(), n)


class WaveAnalysis(Callback):
    """Every `every_n_epochs` training epochs: record the layer on a small fixed batch (no
    gradient), log waves/speed, waves/wave_speed, waves/score and the onset accuracies, and draw the
    space-time and 2D FFT figures into TensorBoard (when present) and <log_dir>/waves/*.png.

    The options, their defaults and checks are AnalysisOptions' (analysis/options.py), shared
    with `wave-lightning analyze`. inputs "data" takes the first `examples` sequences of the
    validation loader; "impulses" drives the layer with `impulses` random pulses per sequence
    of `steps` steps (default: the task's seq_len, else two laps of a ring); "spikes" with
    trains of `spikes` spikes per input over `spike_steps` steps (default: onset's delay
    window). onset_examples 0 skips onset decoding. spike_examples > 0 also decodes such spike
    trains from the last state and logs waves/spike_balanced_acc and waves/spike_exact
    (analysis/spikes.py).
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        inputs: str = DEFAULTS.inputs,
        examples: int = DEFAULTS.examples,
        steps: int | None = DEFAULTS.steps,
        impulses: int = DEFAULTS.impulses,
        onset_examples: int = DEFAULTS.onset_examples,
        max_delay: int | None = DEFAULTS.max_delay,
        max_rings: int = DEFAULTS.max_rings,
        seed: int = DEFAULTS.seed,
        spike_examples: int = DEFAULTS.spike_examples,
        spikes: int = DEFAULTS.spikes[0],
        spike_steps: int | None = DEFAULTS.spike_steps,
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.options = AnalysisOptions(
            inputs=inputs,
            examples=examples,
            steps=steps,
            impulses=impulses,
            onset_examples=onset_examples,
            max_delay=max_delay,
            max_rings=max_rings,
            seed=seed,
            spike_examples=spike_examples,
            spikes=(spikes,),
            spike_steps=spike_steps,
        )
        self.batch: Tensor | None = None

    def fixed_batch(self, trainer: Trainer, pl_module: LightningModule) -> Tensor:
        """The batch every analysis of this run uses, drawn once."""
        if self.batch is None:
            layer, seq_len = recurrent_layer(pl_module), pl_module.hparams.get("seq_len")
            data = partial(validation_inputs, trainer)
            self.batch = driving_inputs(self.options, layer, data, seq_len)
        return self.batch

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        layer = recurrent_layer(pl_module)
        batch = self.fixed_batch(trainer, pl_module)
        options = self.options
        result = analyze(layer, batch, options.seed, options.onset_examples, options.max_delay)
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
        options = self.options
        if not options.spike_examples:
            return {}
        steps = options.spike_window(layer)
        result = spike_decoding(
            layer, options.spikes[0], steps, options.spike_examples, seed=options.seed
        )
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
        for name, fig in result.figures(0, self.options.max_rings, f"epoch {epoch}: ").items():
            fig.savefig(folder / f"{name}_epoch{epoch:04d}.png", dpi=90)
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_figure(f"waves/{name}", fig, step)
