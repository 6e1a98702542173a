"""Test callbacks that put a fault at a known point of a run (passed with --trainer.callbacks+=,
this folder on PYTHONPATH): a signal inside a chosen phase of a step on a chosen rank, and steps
slowed down from a chosen step on, announced by a file, so a test can act on a running job."""

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer

PHASES = ("forward", "backward", "end")


class SignalInStep(Callback):
    """Sends `signum` to the process of rank `rank` during the step that starts at global step
    `step`: inside the forward of the first submodule that runs ("forward"), when the first
    parameter's gradient is computed, in the middle of the backward and of DDP's gradient
    all-reduce ("backward"), or after the optimizer step ("end"). With `then_rank0` seconds, the
    same signal reaches rank 0 that much later (a signal that reaches the ranks far apart). A
    resumed run starts past `step`, so the signal comes once."""

    def __init__(
        self, step: int, signum: int, rank: int = 0, phase: str = "end", then_rank0: float = -1
    ) -> None:
        assert phase in PHASES, phase
        self.step, self.signum, self.rank, self.phase = step, signum, rank, phase
        self.then_rank0, self.pids = then_rank0, [os.getpid()]
        self.handles, self.fired = [], False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if dist.is_available() and dist.is_initialized():
            self.pids = [0] * trainer.world_size
            dist.all_gather_object(self.pids, os.getpid())

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if trainer.global_step != self.step or trainer.global_rank != self.rank:
            return
        if self.phase == "forward":
            modules = list(pl_module.modules())[1:]
            self.handles = [m.register_forward_pre_hook(lambda *_: self.fire()) for m in modules]
        elif self.phase == "backward":
            self.handles = [next(pl_module.parameters()).register_hook(lambda grad: self.fire())]

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        on_this_rank = trainer.global_rank == self.rank
        if self.phase == "end" and on_this_rank and trainer.global_step == self.step + 1:
            self.fire()

    def fire(self) -> None:
        if self.fired:
            return  # once: the first submodule's forward, not every one of them
        self.fired = True
        for handle in self.handles:
            handle.remove()
        os.kill(os.getpid(), self.signum)
        if self.then_rank0 >= 0:
            later = threading.Timer(self.then_rank0, signal_if_alive, (self.pids[0], self.signum))
            later.daemon = True
            later.start()


def signal_if_alive(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have stopped already
        os.kill(pid, signum)


class SlowSteps(Callback):
    """From global step `step` on, rank 0 writes the file `mark` in the run folder (once) and
    every step lasts at least `seconds` longer, so that a test can act while the run trains;
    with `restarts`, only in those starts of a SLURM job (SLURM_RESTART_COUNT, 0 if unset)."""

    def __init__(
        self, seconds: float, step: int = 0, mark: str = "training", restarts: list | None = None
    ) -> None:
        self.seconds, self.step, self.mark = seconds, step, mark
        restart = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        self.active = restarts is None or restart in restarts

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if trainer.global_step < self.step or not self.active:
            return
        mark = Path(trainer.default_root_dir) / self.mark
        if trainer.is_global_zero and not mark.exists():
            mark.write_text(str(trainer.global_step))
        time.sleep(self.seconds)


def callback_arg(name: str, **init_args: object) -> str:
    """The fit argument adding the callback `name` of this module."""
    spec = {"class_path": f"fault_points.{name}", "init_args": init_args}
    return f"--trainer.callbacks+={json.dumps(spec)}"
