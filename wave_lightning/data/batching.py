"""The global batch size of a config split over the processes of a distributed run."""

from lightning.pytorch import Trainer


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
