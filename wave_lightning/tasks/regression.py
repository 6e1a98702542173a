"""Regression on the last state (the adding task), with the step at which it was solved."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanSquaredError, MetricCollection

from .base import SequenceTask


class Regression(SequenceTask):
    """MSE on the readout of the last state; logs {val,test}/mse and val/solved_step, the
    first global step whose validation MSE was <= solved_mse (the paper's 0.05)."""

    def __init__(
        self, layer: nn.Module, output_size: int = 1, solved_mse: float = 0.05, **kwargs
    ) -> None:
        super().__init__(layer, output_size, **kwargs)
        self.solved_mse = solved_mse
        self.register_buffer("solved_step", torch.tensor(-1))

    def make_metrics(self, stage: str) -> MetricCollection:
        return MetricCollection({"mse": MeanSquaredError()}, prefix=f"{stage}/")

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(prediction, target)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        mse = self.eval_metrics["val"]["mse"].compute()
        if self.solved_step < 0 and mse <= self.solved_mse:
            self.solved_step.fill_(self.global_step)
        if self.solved_step >= 0:
            self.log("val/solved_step", self.solved_step.float())
