"""What every objective shares: the model, the loss loop, the non-finite guard, loss logging."""

from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection

from ..models import SequenceModel
from ..run.errors import UserError


class NonFiniteLossError(UserError, RuntimeError):
    """Training produced a NaN or infinite loss or gradient; nothing after it is saved."""


class SequenceTask(LightningModule):
    """A sequence model trained on one objective; subclasses define the loss and metrics.

    `layer` is any recurrent layer of wave_lightning.nn (class_path/init_args in a config);
    output_size and seq_len are linked from the DataModule by the CLI.
    """

    read_from = "last"

    def __init__(
        self,
        layer: nn.Module,
        output_size: int,
        readout: str = "linear",
        mlp_hidden: int = 100,
        seq_len: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # the layer's form is a run-time choice, like the device: kept out of the checkpoint
        # (config.yaml records it) so that a resumed run takes the form its own config asks for
        if isinstance(self.hparams.get("layer"), dict):
            self.hparams["layer"].get("init_args", {}).pop("impl", None)
        self.model = SequenceModel(layer, output_size, readout, self.read_from, mlp_hidden)
        self.eval_metrics = nn.ModuleDict(
            {stage: self.make_metrics(stage) for stage in ("val", "test")}
        )
        self.eval_loss = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    def make_metrics(self, stage: str) -> MetricCollection:
        """torchmetrics logged as f"{stage}/<name>"."""
        raise NotImplementedError

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}); training stopped, "
                f"{self.kept_checkpoint()}"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()):
            raise NonFiniteLossError(
                f"non-finite gradient at step {self.global_step} (epoch {self.current_epoch}); "
                f"training stopped, {self.kept_checkpoint()}"
            )

    def kept_checkpoint(self) -> str:
        """What a non-finite loss leaves to resume from: the newest checkpoint saved, if any."""
        saved = [c.best_model_path for c in self.trainer.checkpoint_callbacks]
        saved = [Path(path) for path in saved if path and Path(path).is_file()]
        if not saved:
            return "no checkpoint was saved before it"
        return f"the last good checkpoint is kept: {max(saved, key=lambda p: p.stat().st_mtime_ns)}"

    def evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        prediction = self(x)
        self.eval_loss[stage].update(self.loss(prediction, y), weight=x.shape[0])
        self.eval_metrics[stage].update(*self.metric_inputs(prediction, y))
        self.log(f"{stage}/loss", self.eval_loss[stage], prog_bar=True)
        self.log_dict(self.eval_metrics[stage], prog_bar=True)

    def metric_inputs(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return prediction, target

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self(batch[0])
