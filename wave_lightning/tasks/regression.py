"""Regression on the last state (the adding task), with the step at which it was solved."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanSquaredError, MetricCollection

from ..nn.options import check_positive
from .base import SequenceTask


class Regression(SequenceTask):
    """MSE on the readout of the last state; logs {val,test}/mse and the step it was solved at.

    val/solved_step (the paper's text): the first global step whose validation MSE was
    <= solved_mse (the paper's 0.05). With solved_train_every=N, also train/solved_step (the
    authors' script): the first training step i with i % N == 0 (i counted from 0, the batch
    before its update, as their log interval does) whose training batch MSE was <= solved_mse.
    Both are logged at every validation once found.
    """

    def __init__(
        self,
        layer: nn.Module,
        output_size: int = 1,
        solved_mse: float = 0.05,
        solved_train_every: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(layer, output_size, **kwargs)
        self.solved_mse = solved_mse
        self.solved_train_every = solved_train_every
        self.register_buffer("solved_step", torch.tensor(-1))
        if solved_train_every is not None:
            check_positive("solved_train_every", solved_train_every)
            self.register_buffer("train_solved_step", torch.tensor(-1))

    def make_metrics(self, stage: str) -> MetricCollection:
        return MetricCollection({"mse": MeanSquaredError()}, prefix=f"{stage}/")

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prediction, target)

    def probe_value(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The authors' adding test MSE: the mean squared error of a fresh batch."""
        return F.mse_loss(prediction, target)

    def sequence_loss(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, None]:
        """Each sequence's squared error (the adding task has no exact recall)."""
        return (prediction - target).square().flatten(1).mean(1), None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = super().training_step(batch, batch_idx)
        every = self.solved_train_every
        if every is not None and self.global_step % every == 0 and self.train_solved_step < 0:
            mse = self.trainer.strategy.reduce(loss.detach(), reduce_op="mean")
            if mse <= self.solved_mse:
                self.train_solved_step.fill_(self.global_step)
        return loss

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        mse = self.eval_metrics["val"]["mse"].compute()
        if self.solved_step < 0 and mse <= self.solved_mse:
            self.solved_step.fill_(self.global_step)
        if self.solved_step >= 0:
            self.log("val/solved_step", self.solved_step.float())
        if self.solved_train_every is not None and self.train_solved_step >= 0:
            self.log("train/solved_step", self.train_solved_step.float())
