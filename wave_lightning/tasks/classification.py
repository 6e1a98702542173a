"""Classification objectives: one label per sequence, or one label per step (copy task)."""

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from .base import SequenceTask


class SequenceClassification(SequenceTask):
    """Cross-entropy on the readout of the last state; logs {val,test}/loss and /acc."""

    def make_metrics(self, stage: str) -> MetricCollection:
        accuracy = MulticlassAccuracy(self.hparams.output_size, average="micro")
        return MetricCollection({"acc": accuracy}, prefix=f"{stage}/")

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction, target)


class PerStepClassification(SequenceClassification):
    """Cross-entropy averaged over every step (the copy task); acc counts every step."""

    read_from = "all"

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(prediction.flatten(0, 1), target.flatten())

    def metric_inputs(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return prediction.flatten(0, 1), target.flatten()
