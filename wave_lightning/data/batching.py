"""Data over the processes of a distributed run: the global batch split, evaluation sets shared."""

from collections.abc import Sized

from lightning.pytorch import Trainer
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Sampler


def process_count(trainer: Trainer | None) -> int:
    """Processes of the run (devices x nodes); 1 outside a Trainer."""
    return trainer.world_size if trainer is not None else 1


def split_batch(batch_size: int, world_size: int) -> int:
    """batch_size / world_size, or a ValueError saying why the global batch cannot be split."""
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} is the global batch and must divide evenly over "
            f"{world_size} processes (devices x nodes); choose a batch_size that is a multiple "
            f"of {world_size}"
        )
    return batch_size // world_size


def per_device_batch_size(batch_size: int, trainer: Trainer | None) -> int:
    """batch_size / world size; a config's batch size is global whatever the number of devices."""
    return split_batch(batch_size, process_count(trainer))


def evaluation_sampler(dataset: Sized, trainer: Trainer | None, name: str) -> Sampler | None:
    """This process's share of an evaluation set, without padding; None on one process.

    Lightning's default DistributedSampler pads the set with repeats to split it evenly, which
    biases metrics reduced across ranks; this one gives ranks sizes differing by at most one,
    so torchmetrics' reduction covers every example exactly once. `name` is for the error.
    """
    world_size = process_count(trainer)
    if world_size == 1:
        return None
    if len(dataset) < world_size:
        raise ValueError(
            f"{name} {len(dataset)} is smaller than the {world_size} processes of this run; "
            "every process needs at least one example"
        )
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=world_size, rank=trainer.global_rank, shuffle=False
    )
