"""Checks on the devices a run asks for, made before Lightning starts any process."""

import os

import torch


def requested_gpus(devices: int | str | list[int] | None) -> int:
    """How many GPUs `trainer.devices` needs to exist (0 for "auto" and -1, which take what is)."""
    if isinstance(devices, str):
        devices = devices.strip()
        if "," in devices:
            devices = [int(d) for d in devices.split(",") if d.strip()]
        elif devices.lstrip("-").isdigit():
            devices = int(devices)
        else:
            return 0
    if isinstance(devices, (list, tuple)):
        return max(devices) + 1 if devices else 0
    return devices if isinstance(devices, int) and devices > 0 else 0


def check_devices(accelerator: object, devices: int | str | list[int] | None) -> None:
    """A ValueError with the numbers when a GPU run asks for more GPUs than this machine shows."""
    if str(accelerator) not in ("gpu", "cuda"):
        return
    wanted, available = requested_gpus(devices), torch.cuda.device_count()
    if wanted > available:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise ValueError(
            f"trainer.devices={devices!r} needs {wanted} GPU(s) but this machine shows "
            f"{available} (CUDA_VISIBLE_DEVICES={visible}); ask for at most {available} "
            "or use --trainer.devices -1 for all of them"
        )
