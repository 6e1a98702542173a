"""The stop signals a fit received (SIGTERM, SIGUSR1), recorded by a handler that does nothing
else; run.preemption acts on them at a step boundary. Standard library only, so `wave-lightning
fit` installs the handler before its slow imports: SLURM may send its time-limit signal early.
"""

import os
import re
import signal
import threading
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
STOP, REQUEUE = 1, 2  # what a rank recorded; the ranks agree on the largest


class Signals:
    """The stop signals this process received, recorded by the handler and nothing more.

    Installed when a fit begins (`wave-lightning fit` first thing, and the trainer's signal
    registration), so a signal during imports, data setup or the sanity check stops the run
    after its first step. Once training has ended normally, SIGTERM (and SIGUSR1 outside
    SLURM) takes its default action again (the test after fit ends at once), while SLURM's
    time-limit SIGUSR1 is ignored: nothing is left to checkpoint, and the test finishes if it
    can before the limit. After a stop was agreed, while the checkpoint is written and the
    ranks exit, a late signal is only recorded.
    """

    recorded = 0
    ended = False

    @classmethod
    def begin(cls) -> None:
        """A fit begins in this process: nothing recorded yet, stop signals handled here."""
        cls.recorded, cls.ended = 0, False
        cls.install()

    @classmethod
    def install(cls) -> None:
        """Handle SIGTERM and SIGUSR1 here (main thread only: Python's rule for handlers)."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, cls.handle)

    @classmethod
    def handle(cls, signum: int, frame: Any) -> None:
        requeues = signum == signal.SIGUSR1 and slurm_job_id() is not None
        if cls.ended and not cls.recorded:
            if not requeues:  # the fit is over: the default action
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        cls.recorded = max(cls.recorded, REQUEUE if requeues else STOP)


def slurm_job_id() -> str | None:
    """This SLURM job's id as `scontrol requeue` takes it (array jobs: ARRAY_TASK), or None."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_]+", job) else None
