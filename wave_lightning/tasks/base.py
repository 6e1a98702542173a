"""What every objective shares: the model, the loss loop, the non-finite guard, loss logging."""

import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.aggregation import CatMetric

from ..data.synthetic import mix_seed
from ..models import SequenceModel
from ..nn.options import check_positive
from ..run.errors import UserError


class NonFiniteLossError(UserError, RuntimeError):
    """Training produced a NaN or infinite loss or gradient; nothing after it is saved."""


def drop_impl(config: Any) -> None:
    """Remove `impl` from a layer's class_path/init_args config and from every layer nested in
    it (a residual stack's), in place."""
    if not isinstance(config, dict):
        return
    init_args = config.get("init_args") or {}
    init_args.pop("impl", None)
    for value in init_args.values():
        drop_impl(value)


class SequenceTask(LightningModule):
    """A sequence model trained on one objective; subclasses define the loss and metrics.

    `layer` is any recurrent layer of wave_lightning.nn (class_path/init_args in a config);
    output_size and seq_len are linked from the DataModule by the CLI.

    The authors' statistic (generated tasks only): with probe_every=N, after every N-th training
    step a fresh batch of probe_size examples, drawn from a stream of its own (probe_seed, the
    same in every rerun), is evaluated and logged as probe/loss in `probe_value`'s unit, with
    the lowest so far as probe/best; the test logs the last and best as test/probe_last and
    test/probe_best. With test_distribution, the test also logs the distribution of the
    per-sequence loss (`sequence_loss`) over the test set: median, p90, p99, max, and the
    fraction of sequences recalled exactly where the task defines it.
    """

    read_from = "last"

    def __init__(
        self,
        layer: nn.Module,
        output_size: int,
        readout: str = "linear",
        mlp_hidden: int = 100,
        seq_len: int | None = None,
        probe_every: int | None = None,
        probe_size: int = 50,
        probe_seed: int = 0,
        test_distribution: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if probe_every is not None:
            check_positive("probe_every", probe_every)
        check_positive("probe_size", probe_size)
        self.probe = {"last": math.nan, "best": math.inf}  # saved with the checkpoint
        self.test_losses, self.test_exact = CatMetric(), CatMetric()
        # the layer's form is a run-time choice, like the device: kept out of the checkpoint
        # (config.yaml records it) so that a resumed run takes the form its own config asks for
        drop_impl(self.hparams.get("layer"))
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

    def probe_value(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The probe batch's loss in the unit the authors logged (a task without one refuses)."""
        raise ValueError(f"probe_every: {type(self).__name__} has no probe statistic")

    def sequence_loss(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        """Each sequence's loss (B,), and whether it was recalled exactly (B,) or None."""
        raise ValueError(f"test_distribution: {type(self).__name__} has no per-sequence loss")

    def setup(self, stage: str) -> None:
        sample = getattr(self.trainer.datamodule, "sample", None) if self._trainer else None
        if self.hparams.probe_every is not None and sample is None:
            raise ValueError("probe_every needs a generated task (copy, adding) to draw from")

    def probe_batch(self, index: int) -> tuple[Tensor, Tensor]:
        """Probe batch `index` of the probe stream, the same in every run of the same seed."""
        generator = torch.Generator().manual_seed(mix_seed(self.hparams.probe_seed, index))
        x, y = self.trainer.datamodule.sample(self.hparams.probe_size, generator)
        return x.to(self.device), y.to(self.device)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = self.hparams.probe_every
        if every is None or self.global_step % every:
            return
        x, y = self.probe_batch(self.global_step // every)
        self.model.eval()
        with torch.no_grad():
            value = float(self.probe_value(self(x), y))
        self.model.train()
        self.probe = {"last": value, "best": min(value, self.probe["best"])}
        metrics = {"probe/loss": value, "probe/best": self.probe["best"]}
        for logger in self.loggers:  # every probe, whatever log_every_n_steps says
            logger.log_metrics(metrics, step=self.global_step)

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, *args: Any) -> None:
        if self.hparams.test_distribution:
            x, y = batch
            with torch.no_grad():
                losses, exact = self.sequence_loss(self(x), y)
            self.test_losses.update(losses)
            if exact is not None:
                self.test_exact.update(exact.float())

    def on_test_epoch_end(self) -> None:
        if self.hparams.probe_every is not None:
            self.log("test/probe_last", self.probe["last"])
            self.log("test/probe_best", self.probe["best"])
        if self.hparams.test_distribution:
            self.log_dict(distribution(self.test_losses.compute(), self.test_exact))
            self.test_losses.reset()
            self.test_exact.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["probe"] = dict(self.probe)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed fit continues the probe record, and so does a test in a process of its own;
        the test of the best checkpoint after fit keeps the run's last and best, not those of
        the checkpoint's step."""
        fitting = self._trainer is None or self.trainer.state.fn == TrainerFn.FITTING
        if fitting or math.isnan(self.probe["last"]):
            self.probe = dict(checkpoint.get("probe", self.probe))


QUANTILES = {"median": 0.5, "p90": 0.9, "p99": 0.99}


def distribution(losses: Tensor, exact: CatMetric) -> dict[str, float]:
    """test/seq_loss_{median,p90,p99,max} of per-sequence losses, and test/exact_recall (the
    fraction recalled exactly) when `exact` was fed."""
    losses = losses.double()
    summary = {f"test/seq_loss_{k}": float(losses.quantile(q)) for k, q in QUANTILES.items()}
    summary["test/seq_loss_max"] = float(losses.max())
    if exact.update_count:
        summary["test/exact_recall"] = float(exact.compute().mean())
    return summary
