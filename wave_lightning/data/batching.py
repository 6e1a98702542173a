"""The global batch size of a config split over the processes of a distributed run."""

from lightning.pytorch import Trainer


def per_device_batch_size(batch_size: int, trainer: Trainer | None) -> int:
    """batch_size / world size; a config's batch size is global whatever the number of devices."""
    world_size = trainer.world_size if trainer is not None else 1
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} is the global batch and must divide evenly over "
            f"{world_size} processes (devices x nodes)"
        )
    return batch_size // world_size
